//! The controller's HTTPS server: the REST API under `/api/v1/`, its
//! OpenAPI document at `/openapi.json`, and `/healthz`, `/readyz`,
//! `/metrics`.
//!
//! Every `/api/v1/` request carries a bearer token; [`auth`] asks the API
//! server who it belongs to and whether they may ([`auth::Access`]). A
//! request without a token is answered 401, one without the right 403, and
//! every error is one line of JSON (`{"error": "..."}`).
//!
//! [`ApiRouter`] is a tower service over any body (tests drive it with
//! `ServiceExt::oneshot`); [`crate::server::serve`] serves it over TLS.

pub mod auth;
mod handlers;
pub mod openapi;
mod telemetry;
pub mod types;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::Store;
use kube::Client;
use tower::Service;

use self::auth::Authorizer;
pub use self::telemetry::ApiTelemetry;
use super::leader::Leadership;
use crate::evict::{EvictionMetrics, Evictor};
use crate::recommend::RecommendationStore;
use crate::season::SeasonStore;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Time limit of one request (an eviction pass included): answered 503
/// after it.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What the routes share.
pub struct ApiState {
    /// For metadata patches.
    pub client: Client,
    /// Token and access checks.
    pub auth: Authorizer,
    /// Every pod (the controller's cache).
    pub pods: Store<Pod>,
    /// Evictions.
    pub evictor: Arc<dyn Evictor>,
    /// The evictor's counters, for `/metrics`.
    pub eviction_metrics: Arc<EvictionMetrics>,
    /// The drift reconciler's counters, for `/metrics`.
    pub drift_metrics: Arc<super::reconcile::DriftMetrics>,
    /// The overprovisioning placeholder's figures.
    pub overprovisioning_metrics: Arc<super::overprov::OverprovisioningMetrics>,
    /// Whether the noisy-neighbour loop runs (`controller.noisy.enabled`).
    pub noisy_enabled: bool,
    /// The noisy-neighbour loop's last scores.
    pub noisy_scores: Arc<super::noisy::NoisyScores>,
    /// Its counters, for `/metrics`.
    pub noisy_metrics: Arc<super::noisy::NoisyMetrics>,
    /// The metadata patcher's counters.
    pub metadata_metrics: Arc<super::labels::MetadataMetrics>,
    /// The recommendations (the webhook's store, filled by the refresher).
    pub recommendations: Arc<RecommendationStore>,
    /// Season profiles, when the season model is enabled.
    pub seasons: Option<Arc<SeasonStore>>,
    /// Whether this replica leads.
    pub leadership: Leadership,
    /// Request counters.
    pub telemetry: ApiTelemetry,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("evictor", &self.evictor)
            .field("leadership", &self.leadership)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// Ready once the pod cache holds the first list.
    pub fn is_ready(&self) -> bool {
        matches!(self.pods.wait_until_ready().now_or_never(), Some(Ok(())))
    }
}

/// The routes as a tower service.
#[derive(Clone, Debug)]
pub struct ApiRouter {
    state: Arc<ApiState>,
}

impl ApiRouter {
    /// Routes over `state`.
    pub fn new(state: Arc<ApiState>) -> Self {
        ApiRouter { state }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Reply = Response<Full<Bytes>>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Reply {
    let (status, body) = match serde_json::to_vec(value) {
        Ok(b) => (status, b),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({ "error": e.to_string() })
                .to_string()
                .into_bytes(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// A one-line JSON error answer.
fn error(status: StatusCode, message: impl std::fmt::Display) -> Reply {
    let line = message.to_string().replace('\n', " ");
    json(status, &types::ErrorBody { error: line })
}

/// The route name of `method` `path` (the `route` label of the metrics),
/// or `None` for an unknown path.
fn route_of(path: &str) -> Option<&'static str> {
    Some(match path {
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        "/openapi.json" => "openapi",
        "/api/v1/evictions" => "evictions",
        "/api/v1/recommendations" => "recommendations",
        "/api/v1/seasons" => "seasons",
        "/api/v1/noisy" => "noisy",
        p if handlers::metadata_target(p).is_some() => "metadata",
        _ => return None,
    })
}

async fn route<B>(state: Arc<ApiState>, req: Request<B>) -> Reply
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let name = route_of(req.uri().path());
    let reply = match tokio::time::timeout(REQUEST_TIMEOUT, answer(&state, name, req)).await {
        Ok(reply) => reply,
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the request timed out"),
    };
    if let Some(name) = name {
        state.telemetry.observe(name, reply.status().as_u16());
    }
    reply
}

async fn answer<B>(state: &Arc<ApiState>, name: Option<&'static str>, req: Request<B>) -> Reply
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let Some(name) = name else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let method = req.method().clone();
    match (name, &method) {
        ("healthz", &Method::GET) => text(StatusCode::OK, "ok\n"),
        ("readyz", &Method::GET) => {
            if state.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the pod cache is not synced yet\n",
                )
            }
        }
        ("metrics", &Method::GET) => {
            let mut r = text(StatusCode::OK, telemetry::render(state));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        ("openapi", &Method::GET) => json(StatusCode::OK, &openapi::document()),
        ("evictions", &Method::POST) => handlers::evictions(state, req).await,
        ("recommendations", &Method::GET) => handlers::recommendations(state, req).await,
        ("seasons", &Method::GET) => handlers::seasons(state, req).await,
        ("noisy", &Method::GET) => handlers::noisy(state, req).await,
        ("metadata", &Method::PATCH) => handlers::metadata(state, req).await,
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

impl<B> Service<Request<B>> for ApiRouter
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move { Ok(route(state, req).await) })
    }
}
