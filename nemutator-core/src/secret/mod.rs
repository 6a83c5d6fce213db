//! Secrets: references to them (`vault:PATH#KEY[#VERSION]`), the
//! [`SecretResolver`] trait its backends implement (nemutator-secrets), which
//! namespace may reference which path, and values that cannot be printed.
//!
//! A value is a [`SecretValue`]: no `Display`, a `Debug` that shows nothing,
//! so it cannot reach a log line, an error or a panic message by accident.
//! Errors name the reference (path, key, version), never a value.

mod authz;
mod config;
mod reference;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use authz::{AllowedPaths, PathDenied};
pub use config::{
    FileSecretsConfig, Injection, RegistryConfig, ResolverKind, SecretsConfig, VaultAuth,
    VaultConfig, SERVICE_ACCOUNT_TOKEN,
};
pub use reference::{RefError, SecretRef, REF_PREFIX};
pub use secrecy::ExposeSecret;

/// A secret's value. Read it with [`ExposeSecret::expose_secret`], where it
/// is handed over (an environment variable of the process to exec).
pub type SecretValue = secrecy::SecretString;

/// A bearer token (the agent's, or one for the Kubernetes API).
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wraps a token (surrounding whitespace is trimmed).
    pub fn new(token: impl Into<String>) -> Self {
        BearerToken(token.into().trim().to_owned())
    }

    /// The token itself, for an `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

/// Why a reference could not be resolved. One line; names the reference,
/// never a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// No secret at the path (or no such version).
    #[error("secret {0} not found")]
    NotFound(String),
    /// The secret has no such key.
    #[error("secret {path} has no key {key:?}")]
    NoKey {
        /// The path.
        path: String,
        /// The key asked for.
        key: String,
    },
    /// The version asked for (or the latest) was deleted.
    #[error("secret {path} version {version} is deleted")]
    Deleted {
        /// The path.
        path: String,
        /// The version.
        version: u64,
    },
    /// The version asked for (or the latest) was destroyed.
    #[error("secret {path} version {version} is destroyed")]
    Destroyed {
        /// The path.
        path: String,
        /// The version.
        version: u64,
    },
    /// The value is not a string (a nested object or a number).
    #[error("secret {path} key {key:?} is not a string")]
    NotAString {
        /// The path.
        path: String,
        /// The key.
        key: String,
    },
    /// The backend refused our credentials or the path (403).
    #[error("permission denied reading {0}")]
    PermissionDenied(String),
    /// Logging in to the backend failed.
    #[error("secrets backend login: {0}")]
    Login(String),
    /// The backend could not be reached or answered garbage: not the pod's
    /// fault, so an admission error rather than a denial.
    #[error("secrets backend unreachable: {0}")]
    Unavailable(String),
    /// The backend's configuration is unusable.
    #[error("secrets backend configuration: {0}")]
    Config(String),
}

impl SecretError {
    /// Whether the backend, not the reference, is at fault (retrying later
    /// may succeed).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, SecretError::Unavailable(_))
    }
}

/// A boxed future of a resolution.
pub type ResolveFuture<'a> =
    Pin<Box<dyn Future<Output = Result<SecretValue, SecretError>> + Send + 'a>>;

/// Resolves references to values: Vault KV v2, a file, a cache in front of
/// either (nemutator-secrets).
pub trait SecretResolver: Send + Sync + fmt::Debug {
    /// The value `reference` points to.
    fn resolve<'a>(&'a self, reference: &'a SecretRef) -> ResolveFuture<'a>;
}

impl<R: SecretResolver + ?Sized> SecretResolver for std::sync::Arc<R> {
    fn resolve<'a>(&'a self, reference: &'a SecretRef) -> ResolveFuture<'a> {
        (**self).resolve(reference)
    }
}

/// Resolves nothing: the webhook's resolver where `env` injection is off (no
/// namespace may use it, so it is never asked; the webhook then needs no
/// Vault login of its own).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoResolver;

impl SecretResolver for NoResolver {
    fn resolve<'a>(&'a self, _: &'a SecretRef) -> ResolveFuture<'a> {
        Box::pin(std::future::ready(Err(SecretError::Config(
            "env injection is off (secrets.injection, secrets.env_namespaces)".into(),
        ))))
    }
}

/// Picks `key` out of a secret's key/value data, as every backend must.
pub fn pick(
    path: &str,
    key: &str,
    data: &serde_json::Map<String, serde_json::Value>,
) -> Result<SecretValue, SecretError> {
    match data.get(key) {
        Some(serde_json::Value::String(s)) => Ok(SecretValue::from(s.clone())),
        Some(_) => Err(SecretError::NotAString {
            path: path.to_owned(),
            key: key.to_owned(),
        }),
        None => Err(SecretError::NoKey {
            path: path.to_owned(),
            key: key.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token_and_the_value() {
        let t = BearerToken::new(" s3cr3t\n");
        assert_eq!(t.expose(), "s3cr3t");
        assert!(!format!("{t:?}").contains("s3cr3t"));
        let v = SecretValue::from("hunter2".to_owned());
        assert!(!format!("{v:?}").contains("hunter2"));
        assert_eq!(v.expose_secret(), "hunter2");
    }

    #[test]
    fn pick_names_the_key_not_the_value() {
        let data = serde_json::json!({"password": "hunter2", "n": 7});
        let data = data.as_object().cloned().unwrap_or_default();
        assert_eq!(
            pick("kv/data/db", "password", &data)
                .map(|v| v.expose_secret().to_owned())
                .ok(),
            Some("hunter2".to_owned())
        );
        let e = pick("kv/data/db", "user", &data).expect_err("no key");
        assert_eq!(e.to_string(), "secret kv/data/db has no key \"user\"");
        let e = pick("kv/data/db", "n", &data).expect_err("number");
        assert!(!e.to_string().contains('7'), "{e}");
    }
}
