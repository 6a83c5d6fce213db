//! The agent's router driven with `tower::ServiceExt::oneshot`: a fake
//! profiler (no privileges needed), the shared Kubernetes API double for pod
//! lookups and a fake `/proc` for container discovery.

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use nemutator_core::k8s::{Client as KubeClient, ClientOptions};
use nemutator_core::secret::BearerToken;
use nemutator_ebpf::agent::{AgentRouter, AgentState};
use nemutator_ebpf::{
    Discovery, Frame, Profile, ProfileError, ProfileRequest, ProfileTarget, Profiler,
};
use nemutator_testkit::{mk_pod, ApiServer, DEFAULT_TOKEN};
use tower::ServiceExt;

const TOKEN: &str = "agent-secret";
const CTR: &str = "3f7a9c1e2b4d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
const ELSEWHERE: &str = "aa7a9c1e2b4d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";

/// What the fake profiler does.
enum Behaviour {
    Answer,
    Fail(fn() -> ProfileError),
    /// Waits for a message before answering.
    Wait(Mutex<mpsc::Receiver<()>>),
}

struct FakeProfiler {
    behaviour: Behaviour,
    seen: Mutex<Vec<ProfileRequest>>,
}

impl std::fmt::Debug for FakeProfiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeProfiler")
    }
}

impl Profiler for FakeProfiler {
    fn profile(&self, req: &ProfileRequest) -> Result<Profile, ProfileError> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(req.clone());
        }
        match &self.behaviour {
            Behaviour::Answer => {}
            Behaviour::Fail(f) => return Err(f()),
            Behaviour::Wait(rx) => {
                let _ = rx.lock().map(|rx| rx.recv());
            }
        }
        Ok(Profile {
            stacks: vec![
                (vec![Frame::user("main"), Frame::user("nemutator_hot")], 9),
                (vec![Frame::user("main")], 1),
            ],
            backend: "fake",
            samples: 10,
            lost: 0,
        })
    }

    fn name(&self) -> &'static str {
        "fake"
    }
}

fn mk_profiler(behaviour: Behaviour) -> Arc<FakeProfiler> {
    Arc::new(FakeProfiler {
        behaviour,
        seen: Mutex::new(Vec::new()),
    })
}

/// A fake `/proc` where PID 4242 is in container `CTR` (containerd, cgroup v2).
fn mk_proc(dir: &Path) -> Discovery {
    let p = dir.join("4242");
    std::fs::create_dir_all(&p).expect("mkdir");
    std::fs::write(
        p.join("cgroup"),
        format!("0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{CTR}.scope\n"),
    )
    .expect("write");
    Discovery {
        proc_root: dir.to_path_buf(),
        cgroup2_root: None,
    }
}

fn mk_api() -> ApiServer {
    let api = ApiServer::start().expect("API double");
    let store = api.store();
    store
        .insert(&mk_pod(
            "shop",
            "web-0",
            &[
                ("app", &format!("containerd://{CTR}")),
                ("sidecar", &format!("containerd://{ELSEWHERE}")),
            ],
        ))
        .expect("seed");
    store
        .insert(&mk_pod("shop", "starting", &[("app", "")]))
        .expect("seed");
    api
}

async fn mk_kube(api: &ApiServer, token: &str) -> KubeClient {
    let mut options = ClientOptions::url(api.url());
    options.token = Some(BearerToken::new(token));
    options.client().await.expect("client")
}

struct Agent {
    router: AgentRouter,
    profiler: Arc<FakeProfiler>,
    state: Arc<AgentState>,
    _proc: tempfile::TempDir,
}

fn mk_agent(behaviour: Behaviour, kube: Option<KubeClient>) -> Agent {
    let profiler = mk_profiler(behaviour);
    let proc = tempfile::tempdir().expect("tempdir");
    let mut state = AgentState::new(profiler.clone(), BearerToken::new(TOKEN))
        .with_discovery(mk_proc(proc.path()));
    if let Some(k) = kube {
        state = state.with_kube(k);
    }
    let state = Arc::new(state);
    Agent {
        router: AgentRouter::new(state.clone()),
        profiler,
        state,
        _proc: proc,
    }
}

async fn call(
    router: &AgentRouter,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, String, http::HeaderMap) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        String::from_utf8_lossy(&bytes).into_owned(),
        headers,
    )
}

async fn post(router: &AgentRouter, token: Option<&str>, body: &str) -> (StatusCode, String) {
    let (s, b, _) = call(router, "POST", "/api/v1/profiles", token, body).await;
    (s, b)
}

#[tokio::test]
async fn pid_profiles_come_back_as_svg_or_folded() {
    let agent = mk_agent(Behaviour::Answer, None);
    let (status, body, headers) = call(
        &agent.router,
        "POST",
        "/api/v1/profiles",
        Some(TOKEN),
        r#"{"pid": 77, "duration": "3s", "frequency": 49}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "image/svg+xml");
    assert_eq!(headers["x-nemutator-backend"], "fake");
    assert_eq!(headers["x-nemutator-samples"], "10");
    assert!(body.contains("<svg") && body.contains("nemutator_hot"));
    let seen = agent.profiler.seen.lock().expect("lock").clone();
    assert_eq!(seen[0].target, ProfileTarget::Pid(77));
    assert_eq!(seen[0].duration.as_secs(), 3);
    assert_eq!(seen[0].frequency_hz, 49);

    let (status, body, headers) = call(
        &agent.router,
        "POST",
        "/api/v1/profiles",
        Some(TOKEN),
        r#"{"pid": 77, "format": "folded"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(body, "main 1\nmain;nemutator_hot 9\n");
}

#[tokio::test]
async fn tokens_are_required_and_compared_exactly() {
    let agent = mk_agent(Behaviour::Answer, None);
    let body = r#"{"pid": 1}"#;
    for token in [None, Some("agent-secre"), Some("agent-secret2"), Some("")] {
        let (status, text, headers) =
            call(&agent.router, "POST", "/api/v1/profiles", token, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        assert!(!text.contains(TOKEN));
    }
    // Basic auth with the right secret is still not a bearer token.
    let req = Request::post("/api/v1/profiles")
        .header(header::AUTHORIZATION, format!("Basic {TOKEN}"))
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let resp = agent.router.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(agent.profiler.seen.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn bad_requests_are_400_with_one_line() {
    let agent = mk_agent(Behaviour::Answer, None);
    for (body, want) in [
        ("not json", "invalid request"),
        (r#"{"pid": 1, "duration": "61s"}"#, "1s to 60s"),
        (r#"{"pid": 1, "duration": "2m"}"#, "1s to 60s"),
        (r#"{"pid": 1, "frequency": 0}"#, "1 to 1000"),
        (r#"{"pid": 1, "frequency": 5000}"#, "1 to 1000"),
        (r#"{"pid": 1, "pod": "a/b"}"#, "exactly one"),
        (r#"{"pod": "a/b/c"}"#, "namespace/name"),
        (r#"{"pid": 1, "format": "png"}"#, "unknown variant"),
    ] {
        let (status, text) = post(&agent.router, Some(TOKEN), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        assert!(text.contains(want), "{body}: {text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }
    let huge = format!(r#"{{"pid": 1, "container": "{}"}}"#, "x".repeat(70_000));
    let (status, _) = post(&agent.router, Some(TOKEN), &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(agent.profiler.seen.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn pods_are_looked_up_and_found_on_this_node() {
    let api = mk_api();
    let agent = mk_agent(Behaviour::Answer, Some(mk_kube(&api, DEFAULT_TOKEN).await));
    let (status, text) = post(
        &agent.router,
        Some(TOKEN),
        r#"{"pod": "shop/web-0", "container": "app", "format": "folded"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let seen = agent.profiler.seen.lock().expect("lock").clone();
    assert_eq!(seen[0].target, ProfileTarget::Pids(vec![4242]));
    assert!(api
        .requests()
        .iter()
        .any(|r| r.path == "/api/v1/namespaces/shop/pods/web-0" && r.bearer));

    for (body, code, want) in [
        (
            r#"{"pod": "shop/nope"}"#,
            StatusCode::NOT_FOUND,
            "pods \"nope\" not found",
        ),
        (
            r#"{"pod": "shop/web-0", "container": "db"}"#,
            StatusCode::NOT_FOUND,
            "has no container \"db\"",
        ),
        (
            r#"{"pod": "shop/web-0", "container": "sidecar"}"#,
            StatusCode::NOT_FOUND,
            "not found on this node",
        ),
        (
            r#"{"pod": "shop/starting"}"#,
            StatusCode::CONFLICT,
            "has not started",
        ),
    ] {
        let (status, text) = post(&agent.router, Some(TOKEN), body).await;
        assert_eq!(status, code, "{body}: {text}");
        assert!(text.contains(want), "{body}: {text}");
    }
}

#[tokio::test]
async fn pod_lookups_without_a_working_api_are_5xx() {
    let agent = mk_agent(Behaviour::Answer, None);
    let (status, text) = post(&agent.router, Some(TOKEN), r#"{"pod": "shop/web-0"}"#).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(text.contains("\"pid\""), "{text}");

    let api = mk_api();
    let agent = mk_agent(Behaviour::Answer, Some(mk_kube(&api, "stale-token").await));
    let (status, text) = post(&agent.router, Some(TOKEN), r#"{"pod": "shop/web-0"}"#).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{text}");
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("stale-token"), "{text}");
}

#[tokio::test]
async fn profiler_errors_map_to_statuses() {
    for (f, code, want) in [
        (
            (|| ProfileError::PermissionDenied) as fn() -> ProfileError,
            StatusCode::FORBIDDEN,
            "needs CAP_BPF and CAP_PERFMON, or root",
        ),
        (
            || ProfileError::NoSuchProcess(77),
            StatusCode::NOT_FOUND,
            "no such process: 77",
        ),
        (
            || ProfileError::Bpf("verifier said no".into()),
            StatusCode::INTERNAL_SERVER_ERROR,
            "verifier said no",
        ),
    ] {
        let agent = mk_agent(Behaviour::Fail(f), None);
        let (status, text) = post(&agent.router, Some(TOKEN), r#"{"pid": 77}"#).await;
        assert_eq!(status, code, "{text}");
        assert!(text.contains(want), "{text}");
    }
}

#[tokio::test]
async fn one_profile_at_a_time() {
    let (tx, rx) = mpsc::channel();
    let agent = mk_agent(Behaviour::Wait(Mutex::new(rx)), None);
    let first = {
        let router = agent.router.clone();
        tokio::spawn(async move { post(&router, Some(TOKEN), r#"{"pid": 1}"#).await })
    };
    // Wait until the first request holds the slot.
    for _ in 0..500 {
        if !agent.profiler.seen.lock().expect("lock").is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (status, body, headers) = call(
        &agent.router,
        "POST",
        "/api/v1/profiles",
        Some(TOKEN),
        r#"{"pid": 2, "duration": "7s"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "7");
    let (_, metrics, _) = call(&agent.router, "GET", "/metrics", None, "").await;
    assert!(metrics.contains("nemutator_agent_busy 1\n"), "{metrics}");

    tx.send(()).expect("release");
    let (status, _) = first.await.expect("first request");
    assert_eq!(status, StatusCode::OK);
    // The slot is free again.
    tx.send(()).expect("pre-release the next one");
    let (status, _) = post(&agent.router, Some(TOKEN), r#"{"pid": 3}"#).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn health_metrics_and_unknown_routes() {
    let agent = mk_agent(Behaviour::Answer, None);
    let (status, body, _) = call(&agent.router, "GET", "/healthz", None, "").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    post(&agent.router, Some(TOKEN), r#"{"pid": 1}"#).await;
    post(&agent.router, None, r#"{"pid": 1}"#).await;
    post(&agent.router, Some(TOKEN), r#"{"pid": 1, "frequency": 0}"#).await;
    let (status, text, headers) = call(&agent.router, "GET", "/metrics", None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .is_ok_and(|v| v.starts_with("text/plain; version=0.0.4")));
    for line in [
        "nemutator_agent_profiles_total{outcome=\"ok\"} 1\n",
        "nemutator_agent_profiles_total{outcome=\"unauthorized\"} 1\n",
        "nemutator_agent_profiles_total{outcome=\"bad_request\"} 1\n",
        "nemutator_agent_profile_duration_seconds_count 1\n",
        "nemutator_agent_busy 0\n",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    assert!(agent.state.metrics().render(false).contains("# TYPE"));
    let (status, _, _) = call(&agent.router, "GET", "/api/v1/profiles", Some(TOKEN), "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _, _) = call(&agent.router, "GET", "/nope", None, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
