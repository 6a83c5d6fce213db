//! A minimal, read-only Kubernetes API client: what the profiler and the
//! agent need (`get pod`), nothing more. The controllers will bring a full
//! kube-rs client; this one has no watch, no pooling and no kubeconfig.
//!
//! Configured either from inside a pod ([`KubeConfig::in_cluster`]:
//! `KUBERNETES_SERVICE_HOST`/`_PORT` and the service-account token and CA
//! under `/var/run/secrets/kubernetes.io/serviceaccount/`) or explicitly
//! ([`KubeConfig::new`] with a base URL, an optional bearer token and an
//! optional CA bundle). HTTPS uses rustls (ring) and trusts only the given
//! CA; plain `http://` is accepted for local test doubles.
//!
//! The token is re-read from its file on every request (the kubelet rotates
//! projected tokens) and never appears in an error, a log line or `Debug`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), nemutator_core::kube::KubeError> {
//! use nemutator_core::kube::{KubeClient, KubeConfig};
//!
//! let client = KubeClient::new(KubeConfig::in_cluster()?)?;
//! let pod = client.get_pod("kube-system", "coredns-0").await?;
//! println!("{:?}", pod.status.and_then(|s| s.pod_ip));
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};

/// Where a pod's service-account credentials are mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Largest response body read (a big PodList still fits).
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Why an API call failed. Messages are one line and never contain the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KubeError {
    /// Not inside a pod and no API URL given.
    #[error("not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set); give the API URL (--kube-api)")]
    NotInCluster,
    /// The configuration is unusable.
    #[error("kubernetes API configuration: {0}")]
    Config(String),
    /// A token or CA file could not be read.
    #[error("reading {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A namespace or name that is not a valid Kubernetes name.
    #[error("invalid {what} {value:?}")]
    InvalidName {
        /// `namespace` or `name`.
        what: &'static str,
        /// The rejected value.
        value: String,
    },
    /// The API server could not be reached.
    #[error("connecting to the Kubernetes API at {url}: {source}")]
    Connect {
        /// The base URL.
        url: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("Kubernetes API request failed: {0}")]
    Http(String),
    /// No answer in time.
    #[error("Kubernetes API did not answer within {0:?}")]
    Timeout(Duration),
    /// 401: the token is missing, wrong or expired.
    #[error("Kubernetes API refused our credentials (401): {0}")]
    Unauthorized(String),
    /// 403: the service account may not do this (RBAC).
    #[error("Kubernetes API forbids it (403): {0}")]
    Forbidden(String),
    /// 404: the object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Any other error status.
    #[error("Kubernetes API error {code}: {message}")]
    Api {
        /// The HTTP status.
        code: u16,
        /// The `Status` message or the body.
        message: String,
    },
    /// The body is not the expected object.
    #[error("decoding the Kubernetes API response: {0}")]
    Decode(#[source] serde_json::Error),
}

/// A bearer token whose `Debug` shows nothing of it.
#[derive(Clone)]
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

/// Where the bearer token comes from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// A fixed token.
    Static(BearerToken),
    /// A file, re-read on every request.
    File(PathBuf),
}

impl TokenSource {
    fn read(&self) -> Result<BearerToken, KubeError> {
        match self {
            TokenSource::Static(t) => Ok(t.clone()),
            TokenSource::File(path) => {
                std::fs::read_to_string(path)
                    .map(BearerToken::new)
                    .map_err(|source| KubeError::ReadFile {
                        path: path.clone(),
                        source,
                    })
            }
        }
    }
}

/// How to reach the API server.
#[derive(Debug, Clone)]
pub struct KubeConfig {
    base: Uri,
    token: Option<TokenSource>,
    ca_pem: Option<Vec<u8>>,
    timeout: Duration,
}

impl KubeConfig {
    /// An API server at `base_url` (`https://host:port` or `http://host:port`),
    /// no token, no CA.
    pub fn new(base_url: &str) -> Result<Self, KubeError> {
        let base: Uri = base_url
            .trim_end_matches('/')
            .parse()
            .map_err(|e| KubeError::Config(format!("API URL {base_url:?}: {e}")))?;
        match base.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(KubeError::Config(format!(
                    "API URL {base_url:?}: expected http:// or https://"
                )))
            }
        }
        if base.host().is_none() {
            return Err(KubeError::Config(format!("API URL {base_url:?}: no host")));
        }
        if base.path() != "/" && !base.path().is_empty() {
            return Err(KubeError::Config(format!(
                "API URL {base_url:?}: a path prefix is not supported"
            )));
        }
        Ok(KubeConfig {
            base,
            token: None,
            ca_pem: None,
            timeout: Duration::from_secs(10),
        })
    }

    /// The in-cluster configuration of a pod: `KUBERNETES_SERVICE_HOST`,
    /// `KUBERNETES_SERVICE_PORT` and the mounted service-account token and CA.
    pub fn in_cluster() -> Result<Self, KubeError> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| KubeError::NotInCluster)?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        Self::from_service(&host, &port, Path::new(SERVICE_ACCOUNT_DIR))
    }

    /// Like [`in_cluster`](Self::in_cluster) with the host, port and
    /// service-account directory given.
    pub fn from_service(host: &str, port: &str, sa_dir: &Path) -> Result<Self, KubeError> {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Self::new(&format!("https://{host}:{port}"))?
            .with_ca_file(&sa_dir.join("ca.crt"))
            .map(|c| c.with_token_file(sa_dir.join("token")))
    }

    /// Sends this token.
    pub fn with_token(mut self, token: BearerToken) -> Self {
        self.token = Some(TokenSource::Static(token));
        self
    }

    /// Sends the token in `path`, re-read on every request.
    pub fn with_token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.token = Some(TokenSource::File(path.into()));
        self
    }

    /// Trusts the CA certificates (PEM) in `path` for HTTPS.
    pub fn with_ca_file(self, path: &Path) -> Result<Self, KubeError> {
        let pem = std::fs::read(path).map_err(|source| KubeError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(self.with_ca_pem(pem))
    }

    /// Trusts these CA certificates (PEM) for HTTPS.
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Limits each request (connect, TLS, answer) to `timeout` (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The API server's base URL.
    pub fn base_url(&self) -> String {
        self.base.to_string().trim_end_matches('/').to_owned()
    }
}

/// A read-only client of one API server.
#[derive(Debug, Clone)]
pub struct KubeClient {
    config: Arc<KubeConfig>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl KubeClient {
    /// A client for `config`; HTTPS needs a CA bundle.
    pub fn new(config: KubeConfig) -> Result<Self, KubeError> {
        let tls = match config.base.scheme_str() {
            Some("https") => {
                let pem = config.ca_pem.as_deref().ok_or_else(|| {
                    KubeError::Config(
                        "an https API URL needs a CA bundle (--kube-ca or the service-account ca.crt)"
                            .into(),
                    )
                })?;
                Some(tls_config(pem)?)
            }
            _ => None,
        };
        Ok(KubeClient {
            config: Arc::new(config),
            tls,
        })
    }

    /// `GET /api/v1/namespaces/{namespace}/pods/{name}`.
    pub async fn get_pod(&self, namespace: &str, name: &str) -> Result<Pod, KubeError> {
        check_name("namespace", namespace, is_dns_label)?;
        check_name("name", name, is_dns_subdomain)?;
        self.get(&format!("/api/v1/namespaces/{namespace}/pods/{name}"))
            .await
    }

    /// `GET path` (e.g. `/api/v1/namespaces/ns/pods/x`), decoded as `T`.
    /// Error statuses become [`KubeError`]s with the `Status` message.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, KubeError> {
        let timeout = self.config.timeout;
        let (status, body) = tokio::time::timeout(timeout, self.exchange(path))
            .await
            .map_err(|_| KubeError::Timeout(timeout))??;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(KubeError::Decode);
        }
        Err(status_error(status, &body))
    }

    async fn exchange(&self, path: &str) -> Result<(StatusCode, Bytes), KubeError> {
        let base = &self.config.base;
        let host = base.host().unwrap_or_default();
        let tls = self.tls.is_some();
        let port = base.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authority = base
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let mut req = Request::get(path)
            .header(header::HOST, authority)
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("nemutator/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(source) = &self.config.token {
            let token = source.read()?;
            let mut value = header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| {
                    KubeError::Config("the token has characters not allowed in a header".into())
                })?;
            value.set_sensitive(true);
            req = req.header(header::AUTHORIZATION, value);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| KubeError::Http(e.to_string()))?;

        let connect_host = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = tokio::net::TcpStream::connect((connect_host, port))
            .await
            .map_err(|source| KubeError::Connect {
                url: self.config.base_url(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some(config) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let name = ServerName::try_from(connect_host.to_owned())
                    .map_err(|e| KubeError::Config(format!("server name {host:?}: {e}")))?;
                let stream =
                    connector
                        .connect(name, tcp)
                        .await
                        .map_err(|source| KubeError::Connect {
                            url: self.config.base_url(),
                            source,
                        })?;
                send(stream, req).await
            }
            None => send(tcp, req).await,
        }
    }
}

async fn send<S>(io: S, req: Request<Empty<Bytes>>) -> Result<(StatusCode, Bytes), KubeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| KubeError::Http(e.to_string()))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| KubeError::Http(e.to_string()))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| KubeError::Http(format!("reading the response: {e}")))?
        .to_bytes();
    driver.abort();
    Ok((status, body))
}

fn tls_config(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, KubeError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| KubeError::Config(format!("CA bundle: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| KubeError::Config(format!("CA bundle: {e}")))?;
    }
    if roots.is_empty() {
        return Err(KubeError::Config("CA bundle: no certificate found".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| KubeError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The error for a non-2xx answer, with the `Status` message when the body
/// is one (the body otherwise, cut to one short line).
fn status_error(status: StatusCode, body: &[u8]) -> KubeError {
    let message = serde_json::from_slice::<Status>(body)
        .ok()
        .and_then(|s| s.message)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let line: String = line.chars().take(200).collect();
            if line.is_empty() {
                status.canonical_reason().unwrap_or("error").to_owned()
            } else {
                line
            }
        });
    match status {
        StatusCode::UNAUTHORIZED => KubeError::Unauthorized(message),
        StatusCode::FORBIDDEN => KubeError::Forbidden(message),
        StatusCode::NOT_FOUND => KubeError::NotFound(message),
        _ => KubeError::Api {
            code: status.as_u16(),
            message,
        },
    }
}

fn check_name(what: &'static str, value: &str, ok: fn(&str) -> bool) -> Result<(), KubeError> {
    if ok(value) {
        Ok(())
    } else {
        Err(KubeError::InvalidName {
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
    fn status_bodies_become_one_line_errors() {
        let body = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"nope\" not found","reason":"NotFound","details":{"name":"nope","kind":"pods"},"code":404}"#;
        let e = status_error(StatusCode::NOT_FOUND, body);
        assert!(matches!(e, KubeError::NotFound(_)));
        assert_eq!(e.to_string(), "pods \"nope\" not found");
        let e = status_error(StatusCode::UNAUTHORIZED, b"");
        assert_eq!(
            e.to_string(),
            "Kubernetes API refused our credentials (401): Unauthorized"
        );
        let e = status_error(StatusCode::BAD_GATEWAY, b"<html>\n<b>bad</b>\n</html>");
        assert_eq!(
            e.to_string(),
            "Kubernetes API error 502: <html> <b>bad</b> </html>"
        );
    }

    #[test]
    fn config_checks_the_url_and_hides_the_token() {
        assert!(KubeConfig::new("ftp://x").is_err());
        assert!(KubeConfig::new("http://").is_err());
        assert!(KubeConfig::new("https://h:6443/prefix").is_err());
        let c = KubeConfig::new("http://127.0.0.1:8080/")
            .expect("valid")
            .with_token(BearerToken::new("s3cr3t-token\n"));
        assert_eq!(c.base_url(), "http://127.0.0.1:8080");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
        // https without a CA bundle is refused, not silently insecure.
        let err = KubeClient::new(KubeConfig::new("https://h:6443").expect("valid"))
            .expect_err("needs a CA");
        assert!(err.to_string().contains("CA bundle"), "{err}");
    }

    #[test]
    fn in_cluster_config_reads_the_service_account_dir() {
        let dir = std::env::temp_dir().join(format!("nemutator-kube-sa-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let missing = KubeConfig::from_service("10.0.0.1", "443", &dir).expect_err("no ca.crt");
        assert!(missing.to_string().contains("ca.crt"), "{missing}");
        let ca = rcgen::generate_simple_self_signed(vec!["kubernetes".into()]).expect("cert");
        std::fs::write(dir.join("ca.crt"), ca.cert.pem()).expect("write");
        let c = KubeConfig::from_service("fd00::1", "6443", &dir).expect("config");
        assert_eq!(c.base_url(), "https://[fd00::1]:6443");
        assert!(KubeClient::new(c).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn unreachable_server_and_missing_token_file_are_errors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let client = KubeClient::new(KubeConfig::new(&format!("http://{addr}")).expect("valid"))
            .expect("client");
        let err = client.get_pod("default", "x").await.expect_err("refused");
        assert!(matches!(err, KubeError::Connect { .. }), "{err}");

        let client = KubeClient::new(
            KubeConfig::new(&format!("http://{addr}"))
                .expect("valid")
                .with_token_file("/nonexistent/token"),
        )
        .expect("client");
        let err = client.get_pod("default", "x").await.expect_err("no token");
        assert!(err.to_string().contains("/nonexistent/token"), "{err}");
        let err = client
            .get_pod("default", "../x")
            .await
            .expect_err("bad name");
        assert!(matches!(err, KubeError::InvalidName { .. }), "{err}");
    }
}
