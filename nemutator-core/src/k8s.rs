//! The Kubernetes API through kube-rs: one way to build a [`Client`] from a
//! kubeconfig, the in-cluster service account or explicit flags, and the
//! calls nemutator makes with it, with errors as one line that never holds a
//! token.
//!
//! ```no_run
//! # async fn demo() -> Result<(), nemutator_core::k8s::K8sError> {
//! use nemutator_core::k8s::{get_pod, ClientOptions};
//!
//! // KUBECONFIG, ~/.kube/config, else the pod's service account.
//! let client = ClientOptions::default().client().await?;
//! let pod = get_pod(&client, "kube-system", "coredns-0").await?;
//! println!("{:?}", pod.status.and_then(|s| s.pod_ip));
//! # Ok(()) }
//! ```

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
pub use kube::Client;

use crate::secret::BearerToken;

/// Why an API call or the client's configuration failed. Messages are one
/// line and never contain a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum K8sError {
    /// No kubeconfig and not inside a pod.
    #[error("no Kubernetes API configured: no kubeconfig (KUBECONFIG, ~/.kube/config) and not in a pod; give --kubeconfig or --kube-api")]
    NotConfigured,
    /// The configuration is unusable.
    #[error("kubernetes API configuration: {0}")]
    Config(String),
    /// A namespace or name that is not a valid Kubernetes name.
    #[error("invalid {what} {value:?}")]
    InvalidName {
        /// `namespace` or `name`.
        what: &'static str,
        /// The rejected value.
        value: String,
    },
    /// 401.
    #[error("Kubernetes API refused our credentials (401): {0}")]
    Unauthorized(String),
    /// 403.
    #[error("Kubernetes API denied the request (403): {0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// Any other error status.
    #[error("Kubernetes API error {code}: {message}")]
    Api {
        /// The HTTP status.
        code: u16,
        /// The `Status` message.
        message: String,
    },
    /// The API server could not be reached or answered garbage.
    #[error("Kubernetes API: {0}")]
    Transport(String),
}

impl From<kube::Error> for K8sError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => {
                let message = if status.message.is_empty() {
                    status.reason.clone()
                } else {
                    status.message.replace('\n', " ")
                };
                match status.code {
                    401 => K8sError::Unauthorized(message),
                    403 => K8sError::Forbidden(message),
                    404 => K8sError::NotFound(message),
                    code => K8sError::Api { code, message },
                }
            }
            other => K8sError::Transport(one_line(&other)),
        }
    }
}

fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s.replace('\n', " ")
}

/// Where the API server is and how to authenticate. The default infers it as
/// kubectl does: `KUBECONFIG`, `~/.kube/config`, else the pod's service
/// account.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// A kubeconfig file to read instead of inferring one.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    pub context: Option<String>,
    /// An API server URL, bypassing kubeconfig and service account.
    pub api_url: Option<String>,
    /// With `api_url`: the bearer token's file (re-read as it rotates).
    pub token_file: Option<PathBuf>,
    /// With `api_url`: a fixed bearer token.
    pub token: Option<BearerToken>,
    /// With `api_url`: the CA bundle (PEM) that signed the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// With `api_url`: the CA bundle as PEM.
    pub ca_pem: Option<Vec<u8>>,
}

impl ClientOptions {
    /// An API server at `url` (`https://` or, for local test servers, `http://`).
    pub fn url(url: impl Into<String>) -> Self {
        ClientOptions {
            api_url: Some(url.into()),
            ..ClientOptions::default()
        }
    }

    /// The kube-rs configuration these options describe.
    pub async fn config(&self) -> Result<kube::Config, K8sError> {
        if let Some(url) = &self.api_url {
            return self.explicit(url);
        }
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        if let Some(path) = &self.kubeconfig {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| K8sError::Config(format!("{}: {}", path.display(), one_line(&e))))?;
            return kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| K8sError::Config(format!("{}: {}", path.display(), one_line(&e))));
        }
        if self.context.is_some() {
            return kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| K8sError::Config(one_line(&e)));
        }
        let has_kubeconfig = std::env::var_os("KUBECONFIG").is_some()
            || std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".kube/config").exists())
                .unwrap_or(false);
        let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        if !has_kubeconfig && !in_pod {
            return Err(K8sError::NotConfigured);
        }
        kube::Config::infer()
            .await
            .map_err(|e| K8sError::Config(one_line(&e)))
    }

    fn explicit(&self, url: &str) -> Result<kube::Config, K8sError> {
        let bad = |why: &str| K8sError::Config(format!("API URL {url:?}: {why}"));
        let uri: http::Uri = url
            .trim_end_matches('/')
            .parse()
            .map_err(|_| bad("not a URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(bad("expected http:// or https://"));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        let mut config = kube::Config::new(uri);
        if let Some(token) = &self.token {
            config.auth_info.token = Some(token.expose().to_owned().into());
        }
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| K8sError::Config(format!("{}: {e}", path.display())))?;
            if text.trim() == text {
                // kube-rs re-reads the file as the token rotates.
                config.auth_info.token_file = Some(path.display().to_string());
            } else {
                // A hand-written file ends with a newline, which kube-rs would
                // send as part of the header; such a file is read once, trimmed.
                config.auth_info.token = Some(BearerToken::new(text).expose().to_owned().into());
            }
        }
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| K8sError::Config(format!("{}: {e}", path.display())))?;
            config.root_cert = Some(pem_certs(&pem)?);
        }
        if let Some(pem) = &self.ca_pem {
            config.root_cert = Some(pem_certs(pem)?);
        }
        Ok(config)
    }

    /// A client for these options.
    pub async fn client(&self) -> Result<Client, K8sError> {
        let config = self.config().await?;
        Client::try_from(config).map_err(|e| K8sError::Config(one_line(&e)))
    }
}

fn pem_certs(pem: &[u8]) -> Result<Vec<Vec<u8>>, K8sError> {
    use rustls::pki_types::pem::PemObject as _;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| K8sError::Config(format!("CA bundle: {e}")))?;
    if certs.is_empty() {
        return Err(K8sError::Config("CA bundle: no certificate found".into()));
    }
    Ok(certs)
}

/// The pod `namespace/name`; names are checked before they reach a URL.
pub async fn get_pod(client: &Client, namespace: &str, name: &str) -> Result<Pod, K8sError> {
    check_name("namespace", namespace, is_dns_label)?;
    check_name("name", name, is_dns_subdomain)?;
    let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
    Ok(api.get(name).await?)
}

fn check_name(what: &'static str, value: &str, ok: fn(&str) -> bool) -> Result<(), K8sError> {
    if ok(value) {
        Ok(())
    } else {
        Err(K8sError::InvalidName {
            what,
            value: value.to_owned(),
        })
    }
}

/// An RFC 1123 label (namespaces, container names): 1 to 63 of `a-z0-9-`,
/// starting and ending alphanumeric.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// An RFC 1123 subdomain (most object names): at most 253 characters,
/// dot-separated labels.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_they_reach_a_path() {
        assert!(is_dns_label("kube-system"));
        assert!(is_dns_subdomain("web-7f9c6d5b8-x2x4z"));
        assert!(is_dns_subdomain("a.b-c.d"));
        for bad in [
            "", "-a", "a-", "A", "a/b", "..", "a..b", "a_b", "a b", "%2e%2e",
        ] {
            assert!(!is_dns_subdomain(bad), "{bad:?}");
        }
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(!is_dns_subdomain(&format!(
            "{}.{}",
            "a".repeat(63),
            "b".repeat(200)
        )));
    }

    #[test]
    fn api_statuses_become_one_line_errors() {
        let status = |code: u16, message: &str| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                message: message.into(),
                reason: "Reason".into(),
                ..kube::core::Status::default()
            }))
        };
        let e = K8sError::from(status(404, "pods \"nope\" not found"));
        assert!(matches!(e, K8sError::NotFound(_)));
        assert_eq!(e.to_string(), "pods \"nope\" not found");
        let e = K8sError::from(status(401, ""));
        assert_eq!(
            e.to_string(),
            "Kubernetes API refused our credentials (401): Reason"
        );
        let e = K8sError::from(status(502, "bad\ngateway"));
        assert_eq!(e.to_string(), "Kubernetes API error 502: bad gateway");
    }

    #[tokio::test]
    async fn explicit_options_check_the_url_and_hide_the_token() {
        for bad in ["ftp://x", "http://", "not a url"] {
            let e = ClientOptions::url(bad).config().await.expect_err(bad);
            assert!(e.to_string().contains("API URL"), "{e}");
        }
        let mut o = ClientOptions::url("http://127.0.0.1:8080/");
        o.token = Some(BearerToken::new("s3cr3t-token\n"));
        let config = o.config().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.cluster_url.to_string(), "http://127.0.0.1:8080/");
        assert!(!format!("{o:?}").contains("s3cr3t"));
        assert!(!format!("{config:?}").contains("s3cr3t"));
        o.ca_pem = Some(b"no certificate here".to_vec());
        let e = o.config().await.expect_err("bad CA");
        assert!(e.to_string().contains("CA bundle"), "{e}");
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_names_the_file() {
        let o = ClientOptions {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            ..ClientOptions::default()
        };
        let e = o.config().await.expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/kubeconfig"), "{e}");
    }

    #[tokio::test]
    async fn an_unreachable_server_and_a_bad_name_are_errors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        drop(listener);
        let client = ClientOptions::url(format!("http://{addr}"))
            .client()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let err = get_pod(&client, "default", "x").await.expect_err("refused");
        assert!(matches!(err, K8sError::Transport(_)), "{err}");
        assert!(!err.to_string().contains('\n'), "{err}");
        let err = get_pod(&client, "default", "../x")
            .await
            .expect_err("bad name");
        assert!(matches!(err, K8sError::InvalidName { .. }), "{err}");
    }
}
