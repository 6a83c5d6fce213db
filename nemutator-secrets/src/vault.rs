//! Vault or OpenBao KV v2 through vaultrs, with token or Kubernetes auth.
//!
//! Kubernetes auth logs in on first use with the service-account token
//! (re-read from its file at every login: the kubelet rotates it), renews the
//! Vault token at two thirds of its lease and logs in again when renewal
//! fails or Vault refuses the token. The address and the auth come from the
//! configuration only, never from anything a pod author writes.

use std::time::{Duration, Instant};

use nemutator_core::secret::{
    pick, ResolveFuture, SecretError, SecretRef, SecretResolver, VaultAuth, VaultConfig,
};
use tokio::sync::Mutex;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

/// A KV v2 resolver of one Vault.
pub struct VaultResolver {
    config: VaultConfig,
    session: Mutex<Session>,
}

struct Session {
    client: VaultClient,
    /// When the token should be renewed; `None` before a login.
    renew_at: Option<Instant>,
    renewable: bool,
}

impl std::fmt::Debug for VaultResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultResolver")
            .field("address", &self.config.address)
            .field("auth", &self.config.auth)
            .field("role", &self.config.role)
            .finish_non_exhaustive()
    }
}

fn config_error(e: impl std::fmt::Display) -> SecretError {
    SecretError::Config(e.to_string())
}

impl VaultResolver {
    /// A resolver for `config`; checks the address and the auth settings now,
    /// logs in on first use.
    pub fn new(config: VaultConfig) -> Result<Self, SecretError> {
        // vaultrs' rustls takes the process's crypto provider: ring, as
        // everywhere in nemutator (a second install is refused, harmlessly).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = url::Url::parse(&config.address).map_err(|e| {
            config_error(format!("secrets.vault.address {:?}: {e}", config.address))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(config_error(format!(
                "secrets.vault.address {:?}: want http(s)://HOST[:PORT]",
                config.address
            )));
        }
        if config.auth == VaultAuth::Kubernetes && config.role.is_none() {
            return Err(config_error(
                "secrets.vault.auth is kubernetes but secrets.vault.role is not set",
            ));
        }
        let mut settings = VaultClientSettingsBuilder::default();
        settings
            .address(url.as_str())
            .verify(true)
            .ca_certs(
                config
                    .ca_file
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            )
            .timeout(Some(config.timeout.0))
            .token(String::new());
        let client = VaultClient::new(settings.build().map_err(config_error)?)
            .map_err(|e| config_error(describe(&e)))?;
        Ok(VaultResolver {
            config,
            session: Mutex::new(Session {
                client,
                renew_at: None,
                renewable: false,
            }),
        })
    }

    /// Logs in (or renews) when the session needs it.
    async fn ensure_session(&self, session: &mut Session) -> Result<(), SecretError> {
        let due = session.renew_at.is_none_or(|at| Instant::now() >= at);
        if !due {
            return Ok(());
        }
        if session.renew_at.is_some() && session.renewable {
            match vaultrs::token::renew_self(&session.client, None).await {
                Ok(auth) => {
                    session.renew_at = Some(renew_time(auth.lease_duration));
                    tracing::debug!(lease_s = auth.lease_duration, "vault token renewed");
                    return Ok(());
                }
                Err(e) => {
                    tracing::info!(error = %describe(&e), "vault token not renewed; logging in again")
                }
            }
        }
        self.login(session).await
    }

    async fn login(&self, session: &mut Session) -> Result<(), SecretError> {
        match self.config.auth {
            VaultAuth::Token => {
                let token = std::env::var(&self.config.token_env).map_err(|_| {
                    SecretError::Login(format!(
                        "secrets.vault.auth is token but {} is not set",
                        self.config.token_env
                    ))
                })?;
                session.client.set_token(token.trim());
                // A token given is used as it is, checked by the first read.
                session.renew_at = Some(Instant::now() + Duration::from_secs(365 * 24 * 3600));
                session.renewable = false;
            }
            VaultAuth::Kubernetes => {
                let path = &self.config.jwt_file;
                let jwt = std::fs::read_to_string(path).map_err(|e| {
                    SecretError::Login(format!(
                        "reading the service-account token {}: {e}",
                        path.display()
                    ))
                })?;
                let role = self.config.role.as_deref().unwrap_or_default();
                let auth = vaultrs::auth::kubernetes::login(
                    &session.client,
                    &self.config.mount,
                    role,
                    jwt.trim(),
                )
                .await
                .map_err(|e| match status(&e) {
                    Some(code) if code < 500 => SecretError::Login(format!(
                        "auth/{}/login as role {role}: {}",
                        self.config.mount,
                        describe(&e)
                    )),
                    _ => SecretError::Unavailable(describe(&e)),
                })?;
                session.client.set_token(&auth.client_token);
                session.renew_at = Some(renew_time(auth.lease_duration));
                session.renewable = auth.renewable;
                tracing::debug!(lease_s = auth.lease_duration, role, "logged in to vault");
            }
        }
        Ok(())
    }

    async fn read(
        &self,
        session: &Session,
        reference: &SecretRef,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ClientError> {
        let (mount, path) = reference.mount_and_path();
        match reference.version {
            Some(v) => vaultrs::kv2::read_version(&session.client, mount, path, v).await,
            None => vaultrs::kv2::read(&session.client, mount, path).await,
        }
    }

    /// After a 404: a missing secret, or a deleted or destroyed version.
    async fn why_missing(&self, session: &Session, reference: &SecretRef) -> SecretError {
        let (mount, path) = reference.mount_and_path();
        let Ok(meta) = vaultrs::kv2::read_metadata(&session.client, mount, path).await else {
            return SecretError::NotFound(reference.path.clone());
        };
        let version = reference.version.unwrap_or(meta.current_version);
        match meta.versions.get(&version.to_string()) {
            Some(v) if v.destroyed => SecretError::Destroyed {
                path: reference.path.clone(),
                version,
            },
            Some(v) if !v.deletion_time.is_empty() => SecretError::Deleted {
                path: reference.path.clone(),
                version,
            },
            _ => SecretError::NotFound(format!("{}#{version}", reference.path)),
        }
    }
}

impl SecretResolver for VaultResolver {
    fn resolve<'a>(&'a self, reference: &'a SecretRef) -> ResolveFuture<'a> {
        Box::pin(async move {
            let mut session = self.session.lock().await;
            self.ensure_session(&mut session).await?;
            let mut result = self.read(&session, reference).await;
            // A token revoked or expired early: log in once more and retry.
            if status(result.as_ref().err()) == Some(403)
                && self.config.auth == VaultAuth::Kubernetes
            {
                self.login(&mut session).await?;
                result = self.read(&session, reference).await;
            }
            let data = match result {
                Ok(data) => data,
                Err(e) => {
                    return Err(match status(&e) {
                        Some(404) => self.why_missing(&session, reference).await,
                        Some(403) => SecretError::PermissionDenied(reference.path.clone()),
                        Some(code) if code < 500 => SecretError::Unavailable(format!(
                            "reading {}: {}",
                            reference.path,
                            describe(&e)
                        )),
                        _ => SecretError::Unavailable(describe(&e)),
                    })
                }
            };
            drop(session);
            pick(&reference.path, &reference.key, &data)
        })
    }
}

fn renew_time(lease_seconds: u64) -> Instant {
    // Two thirds into the lease; a zero lease (root tokens) never expires.
    let lease = if lease_seconds == 0 {
        365 * 24 * 3600
    } else {
        lease_seconds
    };
    Instant::now() + Duration::from_secs(lease * 2 / 3)
}

/// The HTTP status of a Vault answer: from Vault's error list, or from a body
/// vaultrs could not read as one (a deleted version's 404 carries metadata).
fn status<'e>(e: impl Into<Option<&'e ClientError>>) -> Option<u16> {
    match e.into()? {
        ClientError::APIError { code, .. } => Some(*code),
        ClientError::RestClientError {
            source: rustify::errors::ClientError::ServerResponseError { code, .. },
        } => Some(*code),
        _ => None,
    }
}

/// One line for a vaultrs error: its message and Vault's own errors, which
/// name paths and reasons, never values.
fn describe(e: &ClientError) -> String {
    match e {
        ClientError::APIError { code, errors } if !errors.is_empty() => {
            format!("{code}: {}", errors.join("; ").replace('\n', " "))
        }
        // The body is not quoted: it may hold data.
        ClientError::RestClientError {
            source: rustify::errors::ClientError::ServerResponseError { code, .. },
        } => format!("status {code}"),
        other => {
            let mut s = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(inner) = source {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                source = inner.source();
            }
            s.replace('\n', " ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_one_line_errors() {
        for (address, auth, role, want) in [
            ("not a url", VaultAuth::Token, None, "secrets.vault.address"),
            ("ftp://x", VaultAuth::Token, None, "want http(s)"),
            (
                "http://127.0.0.1:8200",
                VaultAuth::Kubernetes,
                None,
                "role is not set",
            ),
        ] {
            let mut c = VaultConfig::new(address);
            c.auth = auth;
            c.role = role;
            let e = VaultResolver::new(c).expect_err(want);
            assert!(e.to_string().contains(want), "{e}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_vault_is_unavailable_not_a_denial() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        drop(listener);
        let mut c = VaultConfig::new(format!("http://{addr}"));
        c.auth = VaultAuth::Token;
        c.token_env = "NEMUTATOR_TEST_UNREACHABLE_TOKEN".into();
        // A variable of this test's own.
        std::env::set_var(&c.token_env, "t0ken");
        let r = VaultResolver::new(c).unwrap_or_else(|e| panic!("{e}"));
        let reference = SecretRef::parse("vault:kv/data/a#k").unwrap_or_else(|e| panic!("{e}"));
        let e = r.resolve(&reference).await.expect_err("unreachable");
        assert!(e.is_unavailable(), "{e}");
        assert!(!e.to_string().contains("t0ken"), "{e}");
    }
}
