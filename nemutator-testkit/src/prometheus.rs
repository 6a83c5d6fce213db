//! The real Prometheus of the tests, and a proxy that breaks it on demand.
//!
//! `scripts/test.sh` starts Debian's `prometheus` on loopback with history
//! backfilled from OpenMetrics files (`scripts/prometheus.sh`) and exports
//! `NEMUTATOR_TEST_PROMETHEUS` (its URL) and `NEMUTATOR_TEST_PROMETHEUS_DATA`
//! (the files, `:`-separated). A test calls [`TestPrometheus::from_env`];
//! without the variable it prints one line saying why it skips, unless
//! `NEMUTATOR_REQUIRE_APISERVER=1` (CI), where it fails.
//!
//! [`FaultProxy`] stands between a client and that Prometheus and, when told,
//! hangs, answers 503 as Prometheus does when overloaded, or does so only for
//! requests whose body holds a string (one namespace's queries): what a
//! failing backend looks like from the client, with real answers otherwise.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::cluster::REQUIRE_ENV;

/// The variable holding the test Prometheus' URL.
pub const URL_ENV: &str = "NEMUTATOR_TEST_PROMETHEUS";
/// The variable holding the files backfilled into it.
pub const DATA_ENV: &str = "NEMUTATOR_TEST_PROMETHEUS_DATA";

/// The Prometheus that `scripts/test.sh` started.
#[derive(Clone, Debug)]
pub struct TestPrometheus {
    /// Base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// The OpenMetrics files (or directories of them) its history came from.
    pub data: Vec<PathBuf>,
}

impl TestPrometheus {
    /// The Prometheus named by `NEMUTATOR_TEST_PROMETHEUS`, or `None` (with
    /// one printed line) when there is none and none is required.
    pub fn from_env(test: &str) -> Option<TestPrometheus> {
        let Some(url) = std::env::var(URL_ENV).ok().filter(|u| !u.is_empty()) else {
            let why = format!(
                "{URL_ENV} is not set (./scripts/test.sh starts a real Prometheus and sets it)"
            );
            if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
                panic!("{test}: {REQUIRE_ENV}=1 but {why}");
            }
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "skipping {test}: {why}");
            return None;
        };
        let data = std::env::var(DATA_ENV)
            .unwrap_or_default()
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        Some(TestPrometheus { url, data })
    }
}

/// What the [`FaultProxy`] does with the next requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Pass them on.
    None,
    /// Never answer.
    Hang,
    /// Answer `503` with Prometheus' error JSON.
    Unavailable,
    /// Answer `503` to requests whose body contains this, pass the others.
    UnavailableIf(String),
}

/// A loopback HTTP/1.1 proxy to a Prometheus that injects [`Fault`]s. It
/// runs on the tokio runtime it was started on and stops with it.
#[derive(Clone, Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    requests: Arc<Mutex<Vec<String>>>,
    authorizations: Arc<Mutex<Vec<String>>>,
}

const UNAVAILABLE: &str =
    r#"{"status":"error","errorType":"unavailable","error":"injected by the test: overloaded"}"#;

impl FaultProxy {
    /// Listen on a free loopback port and pass requests to `upstream`
    /// (`http://host:port`).
    pub async fn start(upstream: &str) -> std::io::Result<FaultProxy> {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let proxy = FaultProxy {
            addr: listener.local_addr()?,
            fault: Arc::new(Mutex::new(Fault::None)),
            requests: Arc::default(),
            authorizations: Arc::default(),
        };
        let state = proxy.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        let upstream = upstream.clone();
                        async move { Ok::<_, Infallible>(state.handle(req, &upstream).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(proxy)
    }

    /// The URL clients should use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Change what happens to the next requests.
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// The bodies of the requests seen so far (form-encoded queries).
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The `Authorization` headers of the requests seen so far (empty for
    /// a request without one): what a test checks credentials with.
    pub fn authorizations(&self) -> Vec<String> {
        self.authorizations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn handle(&self, req: Request<Incoming>, upstream: &str) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let auth = parts
            .headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        self.authorizations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(auth);
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body).into_owned();
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(text.clone());
        let fault = self.fault.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let fail = match &fault {
            Fault::None => false,
            Fault::Hang => return std::future::pending().await,
            Fault::Unavailable => true,
            Fault::UnavailableIf(needle) => text.contains(needle.as_str()),
        };
        if fail {
            return status(503, UNAVAILABLE);
        }
        match forward(Request::from_parts(parts, Full::new(body)), upstream).await {
            Ok(r) => r,
            Err(e) => status(
                502,
                &format!(
                    "{{\"status\":\"error\",\"errorType\":\"proxy\",\"error\":{:?}}}",
                    e.to_string()
                ),
            ),
        }
    }
}

fn status(code: u16, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn forward(
    mut req: Request<Full<Bytes>>,
    upstream: &str,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(upstream).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    req.headers_mut()
        .insert(hyper::header::HOST, upstream.parse()?);
    let response = sender.send_request(req).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}
