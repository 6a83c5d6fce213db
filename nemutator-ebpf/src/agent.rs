//! The per-node profiling agent's routes, as a tower [`Service`]:
//!
//! | route | answer |
//! | --- | --- |
//! | `POST /api/v1/profiles` | bearer token required; body a [`ProfileSpec`] (JSON); 200 with `image/svg+xml` or `text/plain` folded stacks |
//! | `GET /healthz` | `ok` |
//! | `GET /metrics` | Prometheus text: `nemutator_agent_profiles_total{outcome}`, `nemutator_agent_profile_duration_seconds` |
//!
//! Errors are one line of `text/plain`: 400 (bad JSON, duration outside
//! 1s..=60s, frequency outside 1..=1000 Hz), 401 (no or wrong token), 403
//! (the agent lacks CAP_BPF and CAP_PERFMON), 404 (no such pod, container or
//! process on this node), 409 (container not started), 429 (a profile is
//! already running: one at a time per agent), 502 (the Kubernetes API
//! failed), 503 (no Kubernetes API configured, for the `pod` form).
//!
//! The transport (TLS, accept loop) is the binary's; tests drive the router
//! with `tower::ServiceExt::oneshot`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use nemutator_core::error::Chain;
use nemutator_core::k8s::{Client as KubeClient, K8sError};
use nemutator_core::profile::{
    ProfileError, ProfileRequest, ProfileSpec, ProfileTarget, Profiler, SpecTarget, ValidSpec,
};
use nemutator_core::secret::BearerToken;
use nemutator_core::server::body::read_limited;
use tokio::sync::Semaphore;
use tower::Service;

use crate::container::{Discovery, DiscoveryError};
use crate::pod::{pod_target, PodTargetError};
use crate::profile_to_output;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The profiles route.
pub const PROFILES_PATH: &str = "/api/v1/profiles";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a profile request ended, the `outcome` label of
/// `nemutator_agent_profiles_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200.
    Ok,
    /// 400 or 413.
    BadRequest,
    /// 401.
    Unauthorized,
    /// 403.
    Forbidden,
    /// 404.
    NotFound,
    /// 409.
    Conflict,
    /// 429.
    Busy,
    /// 5xx.
    Error,
}

impl Outcome {
    const ALL: [Outcome; 8] = [
        Outcome::Ok,
        Outcome::BadRequest,
        Outcome::Unauthorized,
        Outcome::Forbidden,
        Outcome::NotFound,
        Outcome::Conflict,
        Outcome::Busy,
        Outcome::Error,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::BadRequest => "bad_request",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Forbidden => "forbidden",
            Outcome::NotFound => "not_found",
            Outcome::Conflict => "conflict",
            Outcome::Busy => "busy",
            Outcome::Error => "error",
        }
    }

    fn of(status: StatusCode) -> Outcome {
        match status.as_u16() {
            200..=299 => Outcome::Ok,
            401 => Outcome::Unauthorized,
            403 => Outcome::Forbidden,
            404 => Outcome::NotFound,
            409 => Outcome::Conflict,
            429 => Outcome::Busy,
            400..=499 => Outcome::BadRequest,
            _ => Outcome::Error,
        }
    }
}

/// Counters behind `/metrics`.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    outcomes: [AtomicU64; 8],
    /// (sum of seconds, count) of the profiles that ran.
    duration: Mutex<(f64, u64)>,
}

impl AgentMetrics {
    fn count(&self, outcome: Outcome) {
        let i = Outcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(Outcome::ALL.len() - 1);
        self.outcomes[i].fetch_add(1, Ordering::Relaxed);
    }

    fn observe(&self, seconds: f64) {
        if let Ok(mut d) = self.duration.lock() {
            d.0 += seconds;
            d.1 += 1;
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self, busy: bool) -> String {
        let mut out = String::from(
            "# HELP nemutator_agent_profiles_total Profile requests, by outcome.\n\
             # TYPE nemutator_agent_profiles_total counter\n",
        );
        for (o, n) in Outcome::ALL.iter().zip(&self.outcomes) {
            out.push_str(&format!(
                "nemutator_agent_profiles_total{{outcome=\"{}\"}} {}\n",
                o.as_str(),
                n.load(Ordering::Relaxed)
            ));
        }
        let (sum, count) = self.duration.lock().map(|d| *d).unwrap_or((0.0, 0));
        out.push_str(&format!(
            "# HELP nemutator_agent_profile_duration_seconds Time from request to answer of the profiles that were started.\n\
             # TYPE nemutator_agent_profile_duration_seconds summary\n\
             nemutator_agent_profile_duration_seconds_sum {sum}\n\
             nemutator_agent_profile_duration_seconds_count {count}\n\
             # HELP nemutator_agent_busy Whether a profile is running.\n\
             # TYPE nemutator_agent_busy gauge\n\
             nemutator_agent_busy {}\n",
            u8::from(busy)
        ));
        out
    }
}

/// What the routes share.
pub struct AgentState {
    profiler: Arc<dyn Profiler>,
    token: BearerToken,
    kube: Option<KubeClient>,
    discovery: Discovery,
    slot: Arc<Semaphore>,
    metrics: AgentMetrics,
}

impl std::fmt::Debug for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // kube's Client has no Debug; the token's shows nothing.
        f.debug_struct("AgentState")
            .field("profiler", &self.profiler)
            .field("token", &self.token)
            .field(
                "kube",
                &self.kube.as_ref().map(|c| c.default_namespace().to_owned()),
            )
            .field("discovery", &self.discovery)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl AgentState {
    /// An agent sampling with `profiler` and accepting `token`; no
    /// Kubernetes API (only the `pid` form works until
    /// [`with_kube`](Self::with_kube)); containers found on this host.
    pub fn new(profiler: Arc<dyn Profiler>, token: BearerToken) -> Self {
        AgentState {
            profiler,
            token,
            kube: None,
            discovery: Discovery::host(),
            slot: Arc::new(Semaphore::new(1)),
            metrics: AgentMetrics::default(),
        }
    }

    /// Looks pods up through this API client.
    pub fn with_kube(mut self, kube: KubeClient) -> Self {
        self.kube = Some(kube);
        self
    }

    /// Finds containers with this discovery (other `/proc`, cgroup root).
    pub fn with_discovery(mut self, discovery: Discovery) -> Self {
        self.discovery = discovery;
        self
    }

    /// The counters.
    pub fn metrics(&self) -> &AgentMetrics {
        &self.metrics
    }
}

/// The agent's routes over any request body.
#[derive(Debug, Clone)]
pub struct AgentRouter {
    state: Arc<AgentState>,
}

impl AgentRouter {
    /// Routes over `state`.
    pub fn new(state: Arc<AgentState>) -> Self {
        AgentRouter { state }
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut body = body.into().replace('\n', " ");
    body.push('\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Compares without stopping at the first difference (the length still
/// shows, which says nothing about the content).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

fn authorized<B>(state: &AgentState, req: &Request<B>) -> bool {
    let want = state.token.expose().as_bytes();
    !want.is_empty()
        && req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), want))
}

/// Where an error answer comes from: its status and one-line message.
#[derive(Debug)]
struct Failure(StatusCode, String);

impl From<ProfileError> for Failure {
    fn from(e: ProfileError) -> Self {
        let status = match &e {
            ProfileError::NoSuchProcess(_) | ProfileError::EmptyTarget(_) => StatusCode::NOT_FOUND,
            ProfileError::PermissionDenied => StatusCode::FORBIDDEN,
            ProfileError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(status, Chain(&e).to_string())
    }
}

impl From<PodTargetError> for Failure {
    fn from(e: PodTargetError) -> Self {
        let status = match &e {
            PodTargetError::Kube(K8sError::NotFound(_)) => StatusCode::NOT_FOUND,
            PodTargetError::Kube(K8sError::InvalidName { .. }) => StatusCode::BAD_REQUEST,
            PodTargetError::Kube(_) => StatusCode::BAD_GATEWAY,
            PodTargetError::Container(nemutator_core::profile::ContainerError::NotStarted {
                ..
            }) => StatusCode::CONFLICT,
            PodTargetError::Container(_) => StatusCode::NOT_FOUND,
            PodTargetError::Discovery(DiscoveryError::NotFound(_)) => StatusCode::NOT_FOUND,
            PodTargetError::Discovery(DiscoveryError::InvalidId(_)) => StatusCode::BAD_GATEWAY,
            PodTargetError::Discovery(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(status, Chain(&e).to_string())
    }
}

async fn read_spec<B>(req: Request<B>) -> Result<ValidSpec, Failure>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let body = read_limited(req, MAX_BODY_BYTES)
        .await
        .map_err(|e| Failure(e.status(), e.to_string()))?;
    let spec: ProfileSpec = serde_json::from_slice(&body)
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, format!("invalid request: {e}")))?;
    spec.validate()
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, e.to_string()))
}

/// Takes the profile the spec asks for; holds the agent's single slot until
/// the sampling ends (even if the client goes away).
#[tracing::instrument(skip_all, fields(target = %spec.target))]
async fn run_profile(
    state: &AgentState,
    spec: ValidSpec,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Result<Response<Full<Bytes>>, Failure> {
    let (target, title) = match &spec.target {
        SpecTarget::Pid(pid) => (ProfileTarget::Pid(*pid), spec.target.to_string()),
        SpecTarget::Pod {
            namespace,
            name,
            container,
        } => {
            let kube = state.kube.as_ref().ok_or_else(|| {
                Failure(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "this agent has no Kubernetes API to look pods up (run it in a pod or give --kubeconfig or --kube-api); use \"pid\"".into(),
                )
            })?;
            let found = pod_target(
                kube,
                &state.discovery,
                namespace,
                name,
                container.as_deref(),
            )
            .await?;
            (
                found.target,
                format!("pod {namespace}/{name} container {}", found.container),
            )
        }
    };
    let request = ProfileRequest {
        target,
        duration: spec.duration,
        frequency_hz: spec.frequency_hz,
    };
    tracing::info!(target = ?request.target, duration = ?request.duration, frequency_hz = request.frequency_hz, "profiling");
    let profiler = state.profiler.clone();
    let format = spec.format;
    let (profile, body) = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let profile = profiler.profile(&request)?;
        let body = profile_to_output(&profile, format, &title);
        Ok::<_, ProfileError>((profile, body))
    })
    .await
    .map_err(|e| {
        Failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("profiler task failed: {e}"),
        )
    })??;
    tracing::info!(
        backend = profile.backend,
        samples = profile.samples,
        lost = profile.lost,
        "profile taken"
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    let headers = r.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(
        "x-nemutator-backend",
        HeaderValue::from_static(profile.backend),
    );
    headers.insert("x-nemutator-samples", HeaderValue::from(profile.samples));
    Ok(r)
}

async fn profiles<B>(state: &AgentState, req: Request<B>) -> Response<Full<Bytes>>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    if !authorized(state, &req) {
        let mut r = text(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required (Authorization: Bearer <token>)",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let spec = match read_spec(req).await {
        Ok(s) => s,
        Err(Failure(status, msg)) => return text(status, msg),
    };
    let Ok(slot) = state.slot.clone().try_acquire_owned() else {
        let mut r = text(
            StatusCode::TOO_MANY_REQUESTS,
            "a profile is already running on this agent; retry when it is done",
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(spec.duration.as_secs().max(1)),
        );
        return r;
    };
    let started = Instant::now();
    let resp = match run_profile(state, spec, slot).await {
        Ok(r) => r,
        Err(Failure(status, msg)) => {
            tracing::info!(status = status.as_u16(), error = %msg, "profile request failed");
            text(status, msg)
        }
    };
    state.metrics.observe(started.elapsed().as_secs_f64());
    resp
}

async fn route<B>(state: Arc<AgentState>, req: Request<B>) -> Response<Full<Bytes>>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    match (req.method(), req.uri().path()) {
        (&Method::POST, PROFILES_PATH) => {
            let resp = profiles(&state, req).await;
            state.metrics.count(Outcome::of(resp.status()));
            resp
        }
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok"),
        (&Method::GET, "/metrics") => {
            let busy = state.slot.available_permits() == 0;
            let mut r = Response::new(Full::new(Bytes::from(state.metrics.render(busy))));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (_, PROFILES_PATH | "/healthz" | "/metrics") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

impl<B> Service<Request<B>> for AgentRouter
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn outcomes_follow_the_status() {
        assert_eq!(Outcome::of(StatusCode::OK), Outcome::Ok);
        assert_eq!(
            Outcome::of(StatusCode::PAYLOAD_TOO_LARGE),
            Outcome::BadRequest
        );
        assert_eq!(Outcome::of(StatusCode::TOO_MANY_REQUESTS), Outcome::Busy);
        assert_eq!(Outcome::of(StatusCode::BAD_GATEWAY), Outcome::Error);
        let m = AgentMetrics::default();
        m.count(Outcome::Busy);
        m.observe(1.5);
        let text = m.render(true);
        assert!(text.contains("nemutator_agent_profiles_total{outcome=\"busy\"} 1\n"));
        assert!(text.contains("nemutator_agent_profile_duration_seconds_sum 1.5\n"));
        assert!(text.contains("nemutator_agent_profile_duration_seconds_count 1\n"));
        assert!(text.contains("nemutator_agent_busy 1\n"));
    }

    #[test]
    fn empty_tokens_never_match() {
        // An agent must never be started with an empty token; even so, an
        // empty "Bearer " header is not taken as a match of a non-empty one.
        assert!(!constant_time_eq(b"", b"secret"));
    }
}
