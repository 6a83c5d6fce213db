//! Entrypoints of images from their registry (OCI distribution API, through
//! oci-client): the [`ImageLookup`] backend of `exec` injection.
//!
//! A lookup reads the manifest (a HEAD for a tag, to learn its digest) and
//! the image config, and keeps the config's `Entrypoint` and `Cmd` by
//! digest for good (a digest's config cannot change) and a tag's digest for
//! `secrets.registry.tag_ttl`. Both caches are per credential: what one
//! namespace's pull secrets let nemutator read is never answered to a pod
//! that could not read it. With `secrets.registry.pull_secrets`, the pod's
//! `imagePullSecrets` are read with kube-rs for the image's registry; an
//! authenticated lookup gets a client of its own (oci-client keeps the first
//! credentials it sees per registry). The whole lookup is bounded by
//! `secrets.registry.timeout`.

mod pull_secrets;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nemutator_core::image::{ImageCommand, ImageError, ImageFuture, ImageLookup, ImageQuery};
use nemutator_core::secret::{ExposeSecret, RegistryConfig};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

/// Entries a cache holds before it is emptied.
const CACHE_LIMIT: usize = 4096;

/// Looks image commands up in their registries.
pub struct RegistryLookup {
    config: RegistryConfig,
    /// For pull secrets (`secrets.registry.pull_secrets`).
    kube: Option<kube::Client>,
    anonymous: Client,
    /// (credential, reference) -> (when, digest).
    tags: Mutex<HashMap<(String, String), (Instant, String)>>,
    /// (credential, digest) -> command.
    digests: Mutex<HashMap<(String, String), ImageCommand>>,
}

impl std::fmt::Debug for RegistryLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLookup")
            .field("pull_secrets", &self.kube.is_some())
            .field("insecure", &self.config.insecure)
            .finish_non_exhaustive()
    }
}

fn client_config(config: &RegistryConfig) -> ClientConfig {
    ClientConfig {
        protocol: if config.insecure.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(config.insecure.clone())
        },
        read_timeout: Some(config.timeout.0),
        connect_timeout: Some(config.timeout.0),
        user_agent: concat!("nemutator/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    }
}

/// The image config's part nemutator reads.
#[derive(serde::Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    config: Option<ExecConfig>,
}

#[derive(serde::Deserialize, Default)]
struct ExecConfig {
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
}

/// A registry error as an [`ImageError`]: the registry or the network at
/// fault is `Unavailable`, the image or the credentials are the pod's.
fn classify(image: &str, e: OciDistributionError) -> ImageError {
    let denied = |why: String| ImageError::Denied {
        image: image.to_owned(),
        why,
    };
    let unavailable = |why: String| ImageError::Unavailable {
        image: image.to_owned(),
        why,
    };
    match e {
        OciDistributionError::RequestError(e) => {
            unavailable(nemutator_core::error::Chain(&e).to_string())
        }
        OciDistributionError::UnauthorizedError { .. } => denied("401 Unauthorized".to_owned()),
        OciDistributionError::AuthenticationFailure(why) => denied(why),
        OciDistributionError::ImageManifestNotFoundError(_) => {
            ImageError::NotFound(image.to_owned())
        }
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                denied(format!("{codes:?}"))
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Toomanyrequests))
            {
                unavailable("429 Too Many Requests".to_owned())
            } else {
                ImageError::NotFound(image.to_owned())
            }
        }
        OciDistributionError::ServerError { code, .. } => match code {
            401 | 403 => denied(format!("status {code}")),
            404 => ImageError::NotFound(image.to_owned()),
            _ => unavailable(format!("status {code}")),
        },
        other => ImageError::Registry {
            image: image.to_owned(),
            why: other.to_string().replace('\n', " "),
        },
    }
}

fn insert_bounded<K: std::hash::Hash + Eq, V>(map: &Mutex<HashMap<K, V>>, key: K, value: V) {
    if let Ok(mut m) = map.lock() {
        if m.len() >= CACHE_LIMIT {
            m.clear();
        }
        m.insert(key, value);
    }
}

impl RegistryLookup {
    /// Lookups as `config` says; `kube` reads pull secrets (given when
    /// `config.pull_secrets` is on).
    pub fn new(config: RegistryConfig, kube: Option<kube::Client>) -> Self {
        // reqwest's rustls takes the process's crypto provider: ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let anonymous = Client::new(client_config(&config));
        let kube = kube.filter(|_| config.pull_secrets);
        RegistryLookup {
            config,
            kube,
            anonymous,
            tags: Mutex::new(HashMap::new()),
            digests: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, credential: &str, reference: &Reference) -> Option<ImageCommand> {
        let digest = match reference.digest() {
            Some(d) => d.to_owned(),
            None => {
                let tags = self.tags.lock().ok()?;
                let (at, digest) = tags.get(&(credential.to_owned(), reference.whole()))?;
                (at.elapsed() < self.config.tag_ttl.0).then(|| digest.clone())?
            }
        };
        self.digests
            .lock()
            .ok()?
            .get(&(credential.to_owned(), digest))
            .cloned()
    }

    async fn fetch(
        &self,
        query: ImageQuery<'_>,
        reference: &Reference,
        credential: &str,
    ) -> Result<ImageCommand, ImageError> {
        let image = query.image;
        let mut auth = RegistryAuth::Anonymous;
        if let (Some(kube), false) = (&self.kube, credential.is_empty()) {
            let registry = reference.resolve_registry();
            if let Some(c) =
                pull_secrets::lookup(kube, query.namespace, query.pull_secrets, registry, image)
                    .await?
            {
                auth = RegistryAuth::Basic(c.username, c.password.expose_secret().to_owned());
            }
        }
        // oci-client keeps the first credentials per registry: an
        // authenticated lookup has a client of its own.
        let own;
        let client = match auth {
            RegistryAuth::Anonymous => &self.anonymous,
            _ => {
                own = Client::new(client_config(&self.config));
                &own
            }
        };
        let digest = match reference.digest() {
            Some(d) => d.to_owned(),
            None => client
                .fetch_manifest_digest(reference, &auth)
                .await
                .map_err(|e| classify(image, e))?,
        };
        let key = (credential.to_owned(), digest.clone());
        let known = self.digests.lock().ok().and_then(|d| d.get(&key).cloned());
        let command = match known {
            Some(c) => c,
            None => {
                let (_, _, config) = client
                    .pull_manifest_and_config(reference, &auth)
                    .await
                    .map_err(|e| classify(image, e))?;
                let file: ConfigFile =
                    serde_json::from_str(&config).map_err(|e| ImageError::Registry {
                        image: image.to_owned(),
                        why: format!("image config: {e}"),
                    })?;
                let exec = file.config.unwrap_or_default();
                let command = ImageCommand {
                    entrypoint: exec.entrypoint.unwrap_or_default(),
                    cmd: exec.cmd.unwrap_or_default(),
                };
                insert_bounded(&self.digests, key, command.clone());
                command
            }
        };
        if reference.digest().is_none() {
            insert_bounded(
                &self.tags,
                (credential.to_owned(), reference.whole()),
                (Instant::now(), digest),
            );
        }
        Ok(command)
    }
}

impl ImageLookup for RegistryLookup {
    fn command<'a>(&'a self, query: ImageQuery<'a>) -> ImageFuture<'a> {
        Box::pin(async move {
            let reference: Reference = query
                .image
                .parse()
                .map_err(|_| ImageError::Reference(query.image.to_owned()))?;
            // Anonymous lookups share one cache; others are kept per
            // namespace and pull secrets.
            let credential = match (&self.kube, query.pull_secrets) {
                (Some(_), names) if !names.is_empty() => {
                    format!("{}/{}", query.namespace, names.join(","))
                }
                _ => String::new(),
            };
            if let Some(c) = self.cached(&credential, &reference) {
                return Ok(c);
            }
            let limit: Duration = self.config.timeout.0;
            match tokio::time::timeout(limit, self.fetch(query, &reference, &credential)).await {
                Ok(result) => result,
                Err(_) => Err(ImageError::Unavailable {
                    image: query.image.to_owned(),
                    why: format!("no answer within {}", self.config.timeout),
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_registry_is_unavailable_and_a_bad_name_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        drop(listener);
        let config = RegistryConfig {
            insecure: vec![addr.to_string()],
            ..RegistryConfig::default()
        };
        let lookup = RegistryLookup::new(config, None);
        let image = format!("{addr}/app:1");
        let q = ImageQuery {
            image: &image,
            namespace: "ns",
            pull_secrets: &[],
        };
        let e = lookup.command(q).await.expect_err("refused");
        assert!(e.is_unavailable(), "{e}");
        let q = ImageQuery {
            image: "UPPER/Case:x",
            namespace: "ns",
            pull_secrets: &[],
        };
        let e = lookup.command(q).await.expect_err("bad");
        assert_eq!(e.to_string(), "invalid image reference \"UPPER/Case:x\"");
    }
}
