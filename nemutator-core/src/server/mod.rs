//! The webhook HTTPS server: `POST /mutate`, `GET /healthz`, `GET /readyz`,
//! `GET /metrics`.
//!
//! [`Router`] is a plain tower service over any request body, so tests can
//! drive it with `ServiceExt::oneshot`; [`serve`] puts it behind rustls and
//! hyper (HTTP/1.1 and HTTP/2) and drains connections on shutdown.

pub mod body;
pub mod telemetry;
pub mod threads;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::Service;

use crate::admission::{Admission, Outcome};
use crate::install::WEBHOOK_TIMEOUT_SECONDS;
use crate::recommend::RecommendationStore;
pub use telemetry::Telemetry;
pub use threads::ConnectionThreads;

/// Largest accepted AdmissionReview body (the API server's own limit is 3 MiB
/// per object).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Time limit for one review: a second less than the webhook's
/// `timeoutSeconds` ([`WEBHOOK_TIMEOUT_SECONDS`]), so that nemutator answers
/// (503, `review timed out`) before the API server gives up on it, with a
/// second left for the network and TLS in between. Derived from it, so the
/// two cannot drift apart.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(WEBHOOK_TIMEOUT_SECONDS as u64 - 1);
const _: () = assert!(
    WEBHOOK_TIMEOUT_SECONDS >= 2,
    "the webhook's timeoutSeconds must leave the server at least a second"
);

/// What the routes share.
#[derive(Debug)]
pub struct WebhookState {
    /// The review handler.
    pub admission: Admission,
    /// The recommendation store (for readiness and metrics).
    pub store: Arc<RecommendationStore>,
    /// Request metrics.
    pub telemetry: Telemetry,
    /// Body limit for `/mutate`.
    pub max_body: usize,
    /// Time limit for one request.
    pub timeout: Duration,
    /// `/readyz` fails when the last successful refresh of the store is
    /// older than this (`None`: never, once loaded).
    pub stale_after: Option<Duration>,
    /// The shared store's side of this replica, when there is one (for
    /// metrics).
    pub shared: Option<Arc<crate::recommend::SharedHealth>>,
}

impl WebhookState {
    /// State with the default limits ([`MAX_BODY_BYTES`], [`REQUEST_TIMEOUT`])
    /// and no staleness bound.
    pub fn new(admission: Admission, store: Arc<RecommendationStore>) -> Self {
        WebhookState {
            admission,
            store,
            telemetry: Telemetry::new(),
            max_body: MAX_BODY_BYTES,
            timeout: REQUEST_TIMEOUT,
            stale_after: None,
            shared: None,
        }
    }
}

/// The webhook's routes as a tower service.
#[derive(Clone, Debug)]
pub struct Router {
    state: Arc<WebhookState>,
}

impl Router {
    /// Routes over `state`.
    pub fn new(state: Arc<WebhookState>) -> Self {
        Router { state }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn mutate<B>(state: &WebhookState, req: Request<B>) -> (Outcome, Response<Full<Bytes>>)
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let body = match body::read_limited(req, state.max_body).await {
        Ok(body) => body,
        Err(e) => return (Outcome::Invalid, text(e.status(), format!("{e}\n"))),
    };
    match state.admission.review(&body).await {
        Ok(reviewed) => {
            tracing::debug!(
                uid = %reviewed.response.uid,
                outcome = reviewed.outcome.as_str(),
                "reviewed"
            );
            (reviewed.outcome, json(reviewed.response.into_review_json()))
        }
        Err(e) => {
            let outcome = e.outcome();
            if outcome == Outcome::Unavailable {
                tracing::warn!(error = %e, "not reviewed (503): the failurePolicy decides");
            } else {
                tracing::info!(error = %e, "rejected a malformed review");
            }
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            (outcome, text(status, format!("{e}\n")))
        }
    }
}

async fn route<B>(state: Arc<WebhookState>, req: Request<B>) -> Response<Full<Bytes>>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::POST, "/mutate") => {
            let start = Instant::now();
            let (outcome, resp) =
                match tokio::time::timeout(state.timeout, mutate(&state, req)).await {
                    Ok(r) => r,
                    Err(_) => (
                        Outcome::Invalid,
                        text(StatusCode::SERVICE_UNAVAILABLE, "review timed out\n"),
                    ),
                };
            state.telemetry.observe(outcome, start.elapsed());
            resp
        }
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => match state.store.readiness(state.stale_after) {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
        },
        (&Method::GET, "/metrics") => {
            let mut r = text(
                StatusCode::OK,
                state
                    .telemetry
                    .render(&state.store, state.shared.as_deref()),
            );
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (_, "/mutate" | "/healthz" | "/readyz" | "/metrics") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

impl<B> Service<Request<B>> for Router
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move { Ok(route(state, req).await) })
    }
}

/// Serve `service` (the webhook's [`Router`], or any tower service of the
/// same shape, such as the profiling agent's) over TLS on `listener` until
/// `shutdown` resolves, then stop accepting and let open connections finish
/// (at most `drain`). HTTP/1.1 and HTTP/2 (ALPN).
///
/// Accepted connections are dealt to `threads` in turn and live there (see
/// [`threads`] for why); the accept loop itself runs on the caller's
/// runtime. `threads` are stopped when this returns.
pub async fn serve<S, B>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: S,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    threads: ConnectionThreads,
) where
    S: Service<Request<hyper::body::Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(threads.executor());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        // The socket moves to the reactor of the thread that will serve it.
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "could not hand over a connection");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(service.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        threads.spawn(async move {
            let tcp = match tokio::net::TcpStream::from_std(tcp) {
                Ok(tcp) => tcp,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "could not register a connection");
                    return;
                }
            };
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("draining connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(drain) => tracing::warn!("drain timed out"),
    }
    drop(threads);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutate::Pipeline;

    #[test]
    fn the_server_gives_up_before_the_api_server() {
        let state = WebhookState::new(
            Admission::new(Pipeline::builder().build()),
            Arc::new(RecommendationStore::new()),
        );
        let api_server = Duration::from_secs(WEBHOOK_TIMEOUT_SECONDS as u64);
        // At least a second to spare for the network and TLS in between.
        assert!(
            state.timeout + Duration::from_secs(1) <= api_server,
            "{:?} vs timeoutSeconds {WEBHOOK_TIMEOUT_SECONDS}",
            state.timeout
        );
        assert!(state.timeout >= Duration::from_secs(1));
    }
}
