//! The Prometheus HTTP API client: `POST /api/v1/query`, `/api/v1/query_range`
//! and `/api/v1/series` (form-encoded, so long queries fit), with a bearer
//! token or basic authentication and an extra CA. Errors are one line,
//! transient (connection, 5xx, 429) or not (400, 422, 401, 403); no error
//! and no log line holds a credential or the URL's query.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nemutator_core::metrics::MetricsError;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::PrometheusError;

const BACKEND: &str = "prometheus";

/// How requests authenticate.
#[derive(Debug)]
pub(super) enum Auth {
    /// None.
    None,
    /// A bearer token read from a file on every request (rotation).
    BearerFile(PathBuf),
    /// A bearer token read once.
    Bearer(SecretString),
    /// Basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: SecretString,
    },
}

/// One series of an instant vector.
#[derive(Debug, Deserialize)]
pub(super) struct VectorSample {
    /// Its labels.
    pub metric: HashMap<String, String>,
    /// `[time, "value"]`.
    pub value: (f64, String),
}

/// One series of a range matrix.
#[derive(Debug, Deserialize)]
pub(super) struct MatrixSeries {
    /// Its labels.
    pub metric: HashMap<String, String>,
    /// `[[time, "value"], ...]`.
    pub values: Vec<(f64, String)>,
}

#[derive(Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct QueryData<T> {
    #[serde(rename = "resultType")]
    result_type: String,
    result: T,
}

/// The client.
#[derive(Debug)]
pub(super) struct Http {
    client: reqwest::Client,
    base: String,
    auth: Auth,
    timeout: Duration,
    requests: AtomicU64,
}

/// At most `n` characters of `s`, on one line.
fn one_line(s: &str, n: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(n)
        .collect();
    if s.chars().count() > n {
        out.push('…');
    }
    out
}

impl Http {
    pub(super) fn new(
        base: &str,
        auth: Auth,
        ca: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Self, PrometheusError> {
        // rustls' provider for the process: ring, as everywhere in nemutator.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("nemutator/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca {
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| PrometheusError::Ca(one_line(&e.to_string(), 200)))?;
            if certs.is_empty() {
                return Err(PrometheusError::Ca("no PEM certificate in the file".into()));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| PrometheusError::Client(one_line(&e.without_url().to_string(), 200)))?;
        Ok(Http {
            client,
            base: base.trim_end_matches('/').to_string(),
            auth,
            timeout,
            requests: AtomicU64::new(0),
        })
    }

    /// HTTP requests sent so far.
    pub(super) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<T, MetricsError> {
        let mut request = self.client.post(format!("{}{path}", self.base)).form(form);
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(token) => request = request.bearer_auth(token.expose_secret()),
            Auth::BearerFile(file) => {
                let token = tokio::fs::read_to_string(file).await.map_err(|e| {
                    MetricsError::permanent(
                        BACKEND,
                        format!("bearer token file {}: {e}", file.display()),
                    )
                })?;
                request = request.bearer_auth(token.trim());
            }
            Auth::Basic { username, password } => {
                request = request.basic_auth(username, Some(password.expose_secret()));
            }
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        if let Some((_, q)) = form.iter().find(|(k, _)| *k == "query") {
            tracing::trace!(path, query = %q, "prometheus query");
        }
        let response = request.send().await.map_err(|e| {
            // Without the URL: it may carry a path prefix users consider private.
            let e = e.without_url();
            MetricsError::transient(BACKEND, format!("{path}: {}", one_line(&chain(&e), 300)))
        })?;
        let status = response.status();
        let body = response.bytes().await;
        tracing::debug!(
            path,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "prometheus answered"
        );
        let body = body.map_err(|e| {
            MetricsError::transient(
                BACKEND,
                format!(
                    "{path}: reading the answer: {}",
                    one_line(&chain(&e.without_url()), 200)
                ),
            )
        })?;
        let envelope: Result<Envelope<T>, _> = serde_json::from_slice(&body);
        let envelope = match envelope {
            Ok(e) => e,
            Err(e) => {
                let message = format!(
                    "{path}: HTTP {status}: not a Prometheus API answer ({}): {}",
                    one_line(&e.to_string(), 100),
                    one_line(&String::from_utf8_lossy(&body), 120)
                );
                return Err(if status.is_server_error() || status.as_u16() == 429 {
                    MetricsError::transient(BACKEND, message)
                } else {
                    MetricsError::permanent(BACKEND, message)
                });
            }
        };
        if envelope.status == "success" {
            if let Some(data) = envelope.data {
                return Ok(data);
            }
        }
        let message = format!(
            "{path}: HTTP {status}: {}: {}",
            envelope.error_type.as_deref().unwrap_or("error"),
            one_line(envelope.error.as_deref().unwrap_or("no data"), 300)
        );
        // 503 and 429 pass; a timeout inside Prometheus may pass too.
        let transient = status.is_server_error()
            || status.as_u16() == 429
            || envelope.error_type.as_deref() == Some("timeout");
        Err(if transient {
            MetricsError::transient(BACKEND, message)
        } else {
            MetricsError::permanent(BACKEND, message)
        })
    }

    /// `/api/v1/query` at `time`: the samples of an instant vector.
    pub(super) async fn instant(
        &self,
        query: &str,
        time: i64,
    ) -> Result<Vec<VectorSample>, MetricsError> {
        let form = [
            ("query", query.to_string()),
            ("time", time.to_string()),
            ("timeout", format!("{}s", self.timeout.as_secs().max(1))),
        ];
        let data: QueryData<serde_json::Value> = self.post("/api/v1/query", &form).await?;
        if data.result_type != "vector" {
            return Err(MetricsError::Data(format!(
                "prometheus answered a {} where a vector was expected",
                one_line(&data.result_type, 20)
            )));
        }
        serde_json::from_value(data.result).map_err(|e| {
            MetricsError::Data(format!(
                "prometheus vector: {}",
                one_line(&e.to_string(), 200)
            ))
        })
    }

    /// `/api/v1/query_range` from `start` to `end` every `step` seconds.
    pub(super) async fn range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Vec<MatrixSeries>, MetricsError> {
        let form = [
            ("query", query.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", step.to_string()),
            ("timeout", format!("{}s", self.timeout.as_secs().max(1))),
        ];
        let data: QueryData<serde_json::Value> = self.post("/api/v1/query_range", &form).await?;
        if data.result_type != "matrix" {
            return Err(MetricsError::Data(format!(
                "prometheus answered a {} where a matrix was expected",
                one_line(&data.result_type, 20)
            )));
        }
        serde_json::from_value(data.result).map_err(|e| {
            MetricsError::Data(format!(
                "prometheus matrix: {}",
                one_line(&e.to_string(), 200)
            ))
        })
    }

    /// `/api/v1/series`: the label sets of the series matching any of
    /// `matches` with samples in `[start, end]`.
    pub(super) async fn series(
        &self,
        matches: &[String],
        start: i64,
        end: i64,
    ) -> Result<Vec<HashMap<String, String>>, MetricsError> {
        let mut form: Vec<(&str, String)> =
            matches.iter().map(|m| ("match[]", m.clone())).collect();
        form.push(("start", start.to_string()));
        form.push(("end", end.to_string()));
        self.post("/api/v1/series", &form).await
    }
}

/// An error and its sources on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    nemutator_core::error::Chain(e).to_string()
}
