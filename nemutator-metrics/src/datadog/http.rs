//! The Datadog HTTP client: `POST /api/v2/query/timeseries` with the
//! `DD-API-KEY` and `DD-APPLICATION-KEY` headers (marked sensitive; the keys
//! are held as [`SecretString`]s, so no `Debug`, log line or error prints
//! them).
//!
//! Rate limits are honoured inside the client: after an answer with
//! `X-RateLimit-Remaining: 0` the next request waits for
//! `X-RateLimit-Reset` seconds, and a `429` is retried after the reset (or
//! an exponential backoff when the headers are missing), up to
//! [`RATE_LIMIT_WAITS`] times, before it becomes a transient error for the
//! retry layer. A refused key (401, 403) is one permanent line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use nemutator_core::metrics::MetricsError;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::time::Instant;

use super::query::{ResponseAttributes, TimeseriesRequest, TimeseriesResponse};
use super::DatadogError;

const BACKEND: &str = "datadog";

/// The path of the timeseries API.
pub const PATH: &str = "/api/v2/query/timeseries";

/// 429 answers waited out per request before it fails (transiently).
pub const RATE_LIMIT_WAITS: u32 = 4;

/// Longest wait for a rate limit to reset.
const MAX_WAIT: Duration = Duration::from_secs(120);

/// The keys, and the names of the variables they came from (for messages).
pub(super) struct Keys {
    pub api: SecretString,
    pub app: SecretString,
    pub api_env: String,
    pub app_env: String,
}

/// What the `X-RateLimit-*` headers of an answer said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per period.
    pub limit: Option<u64>,
    /// The period, seconds.
    pub period: Option<u64>,
    /// Requests left in this period.
    pub remaining: Option<u64>,
    /// Seconds until the period resets.
    pub reset: Option<u64>,
}

impl RateLimit {
    /// The headers of an answer.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        RateLimit {
            limit: get("x-ratelimit-limit"),
            period: get("x-ratelimit-period"),
            remaining: get("x-ratelimit-remaining"),
            reset: get("x-ratelimit-reset"),
        }
    }

    /// How long to wait before the next request: until the reset when
    /// nothing remains (or on a 429), else not at all. `attempt` counts the
    /// 429s of this request, for the backoff without headers.
    pub fn wait(&self, throttled: bool, attempt: u32) -> Option<Duration> {
        if !throttled && self.remaining != Some(0) {
            return None;
        }
        let secs = self.reset.or(self.period);
        let wait = match secs {
            Some(s) => Duration::from_secs(s.max(1)),
            None => Duration::from_secs(1) * 2u32.saturating_pow(attempt.min(6)),
        };
        Some(wait.min(MAX_WAIT))
    }
}

/// The client.
pub(super) struct Http {
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    keys: Keys,
    /// No request before this instant (a rate limit is spent).
    not_before: Mutex<Option<Instant>>,
    requests: AtomicU64,
    throttled: AtomicU64,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("url", &self.url)
            .field("api_key_env", &self.keys.api_env)
            .field("app_key_env", &self.keys.app_env)
            .finish_non_exhaustive()
    }
}

fn sensitive(secret: &SecretString, env: &str) -> Result<HeaderValue, DatadogError> {
    let mut v = HeaderValue::from_str(secret.expose_secret().trim())
        .map_err(|_| DatadogError::BadKey(env.to_string()))?;
    v.set_sensitive(true);
    Ok(v)
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
    pub(super) fn new(base: &str, keys: Keys) -> Result<Self, DatadogError> {
        // rustls' provider for the process: ring, as everywhere in nemutator.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = HeaderMap::new();
        headers.insert("dd-api-key", sensitive(&keys.api, &keys.api_env)?);
        headers.insert("dd-application-key", sensitive(&keys.app, &keys.app_env)?);
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("nemutator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DatadogError::Client(one_line(&e.without_url().to_string(), 200)))?;
        Ok(Http {
            client,
            url: format!("{}{PATH}", base.trim_end_matches('/')),
            headers,
            keys,
            not_before: Mutex::new(None),
            requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        })
    }

    /// HTTP requests sent so far.
    pub(super) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// 429 answers received so far.
    pub(super) fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    fn hold_until(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut slot = self.not_before.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(slot.map_or(until, |t| t.max(until)));
    }

    async fn wait_turn(&self) {
        let until = *self.not_before.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }

    /// Send one timeseries request; its answer's attributes.
    pub(super) async fn query(
        &self,
        request: &TimeseriesRequest,
    ) -> Result<ResponseAttributes, MetricsError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| MetricsError::Data(format!("datadog request: {e}")))?;
        let mut attempt = 0;
        loop {
            self.wait_turn().await;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let started = std::time::Instant::now();
            for q in &request.data.attributes.queries {
                tracing::trace!(query = %q.query, "datadog query");
            }
            let response = self
                .client
                .post(&self.url)
                .headers(self.headers.clone())
                .body(body.clone())
                .send()
                .await
                .map_err(|e| {
                    let e = e.without_url();
                    MetricsError::transient(
                        BACKEND,
                        format!(
                            "{PATH}: {}",
                            one_line(&nemutator_core::error::Chain(&e).to_string(), 300)
                        ),
                    )
                })?;
            let status = response.status();
            let limit = RateLimit::from_headers(response.headers());
            let bytes = response.bytes().await;
            tracing::debug!(
                status = status.as_u16(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                rate_limit_remaining = limit.remaining,
                rate_limit_reset = limit.reset,
                "datadog answered"
            );
            let throttled = status.as_u16() == 429;
            if let Some(wait) = limit.wait(throttled, attempt) {
                self.hold_until(wait);
            }
            if throttled {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                if attempt < RATE_LIMIT_WAITS {
                    attempt += 1;
                    tracing::info!(
                        limit = limit.limit,
                        period = limit.period,
                        reset = limit.reset,
                        "datadog rate limit reached; waiting for its reset"
                    );
                    continue;
                }
                return Err(MetricsError::transient(
                    BACKEND,
                    format!(
                        "{PATH}: HTTP 429: rate limited ({} requests per {} s) after {attempt} waits",
                        limit.limit.map_or("?".into(), |l| l.to_string()),
                        limit.period.map_or("?".into(), |p| p.to_string()),
                    ),
                ));
            }
            let bytes = bytes.map_err(|e| {
                MetricsError::transient(
                    BACKEND,
                    format!(
                        "{PATH}: reading the answer: {}",
                        one_line(&e.without_url().to_string(), 200)
                    ),
                )
            })?;
            if matches!(status.as_u16(), 401 | 403) {
                return Err(MetricsError::permanent(
                    BACKEND,
                    format!(
                        "{PATH}: HTTP {status}: the API key (${}) or the application key (${}) was refused, or lacks the timeseries_query permission",
                        self.keys.api_env, self.keys.app_env
                    ),
                ));
            }
            let parsed = TimeseriesResponse::decode(&bytes);
            if !status.is_success() {
                let reason = match &parsed {
                    Ok(TimeseriesResponse {
                        errors: Some(errors),
                        ..
                    }) => errors.join("; "),
                    _ => String::from_utf8_lossy(&bytes).into_owned(),
                };
                let message = format!("{PATH}: HTTP {status}: {}", one_line(&reason, 300));
                return Err(if status.is_server_error() {
                    MetricsError::transient(BACKEND, message)
                } else {
                    MetricsError::permanent(BACKEND, message)
                });
            }
            return match parsed? {
                TimeseriesResponse {
                    data: Some(data), ..
                } => Ok(data.attributes),
                TimeseriesResponse { errors, .. } => Err(MetricsError::permanent(
                    BACKEND,
                    format!(
                        "{PATH}: no data: {}",
                        one_line(&errors.unwrap_or_default().join("; "), 300)
                    ),
                )),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_headers_set_the_wait() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-ratelimit-limit", "100"),
            ("x-ratelimit-period", "60"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "7"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        let r = RateLimit::from_headers(&h);
        assert_eq!(r.limit, Some(100));
        assert_eq!(r.wait(false, 0), Some(Duration::from_secs(7)));
        let left = RateLimit {
            remaining: Some(3),
            ..r
        };
        assert_eq!(left.wait(false, 0), None);
        assert_eq!(left.wait(true, 0), Some(Duration::from_secs(7)));
        let bare = RateLimit::default();
        assert_eq!(bare.wait(false, 0), None);
        assert_eq!(bare.wait(true, 2), Some(Duration::from_secs(4)));
        let long = RateLimit {
            reset: Some(86_400),
            ..r
        };
        assert_eq!(long.wait(true, 0), Some(MAX_WAIT));
    }
}
