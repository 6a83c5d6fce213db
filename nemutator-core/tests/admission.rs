//! The webhook router driven in-process with `tower::ServiceExt::oneshot` and
//! the AdmissionReview fixtures under `tests/data/`.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use nemutator_core::admission::Admission;
use nemutator_core::mutate::{NoSeasons, Pipeline, ResourcesLayer, SeasonOracle};
use nemutator_core::policy::{Brainset, Brainsets, LimitStrategy, Policy, PolicySet};
use nemutator_core::quantity::Quantity;
use nemutator_core::recommend::{Recommendation, RecommendationStore, ResourceRecommendation};
use nemutator_core::season::Season;
use nemutator_core::server::{Router, WebhookState};
use nemutator_core::units::HumanDuration;
use nemutator_core::units::Percent;
use nemutator_core::workload::{ContainerRef, WorkloadKey, WorkloadKind};
use serde_json::{json, Value};
use tower::ServiceExt;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn mk_res(request: Quantity, percentile: f64) -> ResourceRecommendation {
    ResourceRecommendation {
        request,
        percentile,
        usage: request.as_f64(),
        samples: 1000,
        history_secs: 7 * 86_400,
        oom_killed: false,
        current: None,
        distribution: Vec::new(),
    }
}

fn mk_rec(
    ns: &str,
    kind: WorkloadKind,
    name: &str,
    container: &str,
    cpu: &str,
    mem: &str,
) -> Recommendation {
    Recommendation {
        target: ContainerRef::new(WorkloadKey::new(ns, kind, name), container),
        policy: "default".into(),
        season: None,
        window: HumanDuration::from_secs(7 * 86_400),
        cpu: Some(mk_res(Quantity::parse(cpu).unwrap_or_default(), 95.0)),
        memory: Some(mk_res(Quantity::parse(mem).unwrap_or_default(), 100.0)),
        skipped: vec![],
    }
}

fn mk_default_recs() -> Vec<Recommendation> {
    vec![
        mk_rec(
            "default",
            WorkloadKind::Deployment,
            "web",
            "app",
            "250m",
            "640Mi",
        ),
        mk_rec(
            "default",
            WorkloadKind::Deployment,
            "web",
            "envoy",
            "40m",
            "64Mi",
        ),
        mk_rec(
            "default",
            WorkloadKind::Deployment,
            "web",
            "migrate",
            "5m",
            "8Mi",
        ),
        mk_rec(
            "default",
            WorkloadKind::StatefulSet,
            "db",
            "postgres",
            "1",
            "3Gi",
        ),
        mk_rec(
            "kube-system",
            WorkloadKind::Deployment,
            "web",
            "app",
            "250m",
            "640Mi",
        ),
    ]
}

struct Harness {
    router: Router,
    state: Arc<WebhookState>,
}

fn mk_harness(policies: PolicySet, recs: Option<Vec<Recommendation>>) -> Harness {
    mk_harness_in(policies, recs, Arc::new(NoSeasons))
}

/// Every workload in one season.
#[derive(Debug)]
struct Always(Season);

impl SeasonOracle for Always {
    fn season(&self, _: &WorkloadKey, _: i64) -> Option<Season> {
        Some(self.0)
    }
}

fn mk_harness_in(
    policies: PolicySet,
    recs: Option<Vec<Recommendation>>,
    seasons: Arc<dyn SeasonOracle>,
) -> Harness {
    let store = Arc::new(RecommendationStore::new());
    if let Some(recs) = recs {
        store.replace(recs);
    }
    let pipeline = Pipeline::builder()
        .layer(ResourcesLayer::new(store.clone(), Arc::new(policies)).with_seasons(seasons))
        .build();
    let state = Arc::new(WebhookState::new(Admission::new(pipeline), store));
    Harness {
        router: Router::new(state.clone()),
        state,
    }
}

fn mk_default() -> Harness {
    mk_harness(PolicySet(vec![Policy::default()]), Some(mk_default_recs()))
}

async fn call(h: &Harness, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, Bytes) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|e| panic!("{e}"));
    let resp = h
        .router
        .clone()
        .oneshot(req)
        .await
        .unwrap_or_else(|e| match e {});
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, body)
}

async fn review(h: &Harness, body: &Value) -> Value {
    let (status, bytes) = call(
        h,
        Method::POST,
        "/mutate",
        serde_json::to_vec(body).unwrap_or_default(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"))
}

fn patch_of(resp: &Value) -> Option<json_patch::Patch> {
    let b64 = resp["response"]["patch"].as_str()?;
    assert_eq!(resp["response"]["patchType"], "JSONPatch");
    let raw = base64_simd::STANDARD
        .decode_to_vec(b64)
        .unwrap_or_else(|e| panic!("{e}"));
    Some(serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("{e}")))
}

/// Apply the response's patch to the review's object, as the API server would.
fn apply(review: &Value, resp: &Value) -> Value {
    let mut object = review["request"]["object"].clone();
    if let Some(p) = patch_of(resp) {
        json_patch::patch(&mut object, &p).unwrap_or_else(|e| panic!("patch does not apply: {e}"));
    }
    object
}

fn with_object(review: &Value, object: Value) -> Value {
    let mut r = review.clone();
    r["request"]["object"] = object;
    r
}

#[tokio::test]
async fn pod_creation_gets_a_patch_that_applies_and_echoes_the_uid() {
    let h = mk_default();
    let input = fixture("pod-create.json");
    let resp = review(&h, &input).await;
    assert_eq!(resp["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(resp["kind"], "AdmissionReview");
    assert_eq!(resp["response"]["uid"], input["request"]["uid"]);
    assert_eq!(resp["response"]["allowed"], true);
    let pod = apply(&input, &resp);
    let app = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(app["requests"], json!({"cpu": "250m", "memory": "640Mi"}));
    // keep-ratio: cpu limit was 2x the request, memory limit equal to it.
    assert_eq!(app["limits"], json!({"cpu": "500m", "memory": "640Mi"}));
    // Native sidecar sized, ordinary init container untouched.
    assert_eq!(
        pod["spec"]["initContainers"][1]["resources"]["requests"],
        json!({"cpu": "40m", "memory": "64Mi"})
    );
    assert_eq!(
        pod["spec"]["initContainers"][0],
        input["request"]["object"]["spec"]["initContainers"][0]
    );
    // Recorded, with the original annotations kept.
    let applied = pod["metadata"]["annotations"]["nemutator.io/resources-applied"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        applied,
        "app: cpu 500m->250m limit 1->500m memory 1Gi->640Mi limit 1Gi->640Mi (cpu p95, memory p100, 7d)\n\
         envoy: cpu 100m->40m memory 128Mi->64Mi (cpu p95, memory p100, 7d)"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["example.com/owner"],
        "team-a"
    );
    // Fields nemutator does not touch are unchanged.
    assert_eq!(
        pod["spec"]["containers"][0]["ports"],
        input["request"]["object"]["spec"]["containers"][0]["ports"]
    );
}

#[tokio::test]
async fn patch_is_minimal() {
    let h = mk_default();
    let resp = review(&h, &fixture("pod-create.json")).await;
    let patch = patch_of(&resp).unwrap_or_else(|| panic!("expected a patch"));
    let paths: Vec<String> = patch.0.iter().map(|op| op.path().to_string()).collect();
    assert_eq!(
        paths,
        [
            "/metadata/annotations/nemutator.io~1resources-applied",
            "/spec/containers/0/resources/limits/cpu",
            "/spec/containers/0/resources/limits/memory",
            "/spec/containers/0/resources/requests/cpu",
            "/spec/containers/0/resources/requests/memory",
            "/spec/initContainers/1/resources/requests/cpu",
            "/spec/initContainers/1/resources/requests/memory",
        ]
    );
}

#[tokio::test]
async fn reinvocation_changes_nothing() {
    let h = mk_default();
    let input = fixture("pod-create.json");
    let first = review(&h, &input).await;
    let again = with_object(&input, apply(&input, &first));
    let second = review(&h, &again).await;
    assert_eq!(second["response"]["allowed"], true);
    assert!(second["response"].get("patch").is_none(), "{second}");
}

#[tokio::test]
async fn guaranteed_stays_guaranteed_and_keys_are_escaped() {
    let h = mk_default();
    let input = fixture("guaranteed-pod.json");
    let resp = review(&h, &input).await;
    let pod = apply(&input, &resp);
    let res = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(res["requests"], json!({"cpu": "1", "memory": "3Gi"}));
    assert_eq!(res["limits"], res["requests"]);
    assert_eq!(pod["metadata"]["annotations"]["odd~key/with-slash"], "kept");
    // The exporter has no history: left alone, and the audit log says why.
    assert!(pod["spec"]["containers"][1].get("resources").is_none());
    let audit = resp["response"]["auditAnnotations"]["resources"]
        .as_str()
        .unwrap_or_default();
    assert!(audit.contains("exporter: no recommendation"), "{audit}");
}

#[tokio::test]
async fn no_limit_stays_no_limit() {
    let h = mk_default();
    let mut input = fixture("pod-create.json");
    input["request"]["object"]["spec"]["containers"][0]["resources"] =
        json!({"requests": {"cpu": "2", "memory": "2Gi"}});
    let pod = apply(&input, &review(&h, &input).await);
    let res = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(res["requests"], json!({"cpu": "250m", "memory": "640Mi"}));
    assert!(res.get("limits").is_none(), "{res}");
}

#[tokio::test]
async fn container_without_resources_gets_requests() {
    let h = mk_default();
    let mut input = fixture("pod-create.json");
    input["request"]["object"]["spec"]["containers"][0]
        .as_object_mut()
        .map(|c| c.remove("resources"));
    let pod = apply(&input, &review(&h, &input).await);
    assert_eq!(
        pod["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "250m", "memory": "640Mi"}})
    );
}

#[tokio::test]
async fn other_limit_strategies() {
    for (strategy, expected) in [
        (LimitStrategy::Remove, Value::Null),
        (
            LimitStrategy::EqualToRequests,
            json!({"cpu": "250m", "memory": "640Mi"}),
        ),
        (
            LimitStrategy::Unchanged,
            json!({"cpu": "1", "memory": "1Gi"}),
        ),
    ] {
        let policy = Policy {
            limits: strategy,
            ..Policy::default()
        };
        let h = mk_harness(PolicySet(vec![policy]), Some(mk_default_recs()));
        let input = fixture("pod-create.json");
        let pod = apply(&input, &review(&h, &input).await);
        let limits = pod["spec"]["containers"][0]["resources"]
            .get("limits")
            .cloned()
            .unwrap_or(Value::Null);
        assert_eq!(limits, expected, "{strategy:?}");
    }
}

#[tokio::test]
async fn small_changes_are_not_applied() {
    let h = mk_default();
    let mut input = fixture("pod-create.json");
    // 260m vs 250m recommended: 4% < min_change 10%.
    input["request"]["object"]["spec"]["containers"][0]["resources"] =
        json!({"requests": {"cpu": "260m", "memory": "640Mi"}});
    input["request"]["object"]["spec"]["initContainers"][1]["resources"] =
        json!({"requests": {"cpu": "41m", "memory": "64Mi"}});
    let resp = review(&h, &input).await;
    assert!(resp["response"].get("patch").is_none(), "{resp}");
}

#[tokio::test]
async fn annotation_off_and_dry_run() {
    let h = mk_default();
    let mut input = fixture("pod-create.json");
    input["request"]["object"]["metadata"]["annotations"]["nemutator.io/resources"] = json!("off");
    let resp = review(&h, &input).await;
    assert!(resp["response"].get("patch").is_none());

    input["request"]["object"]["metadata"]["annotations"]["nemutator.io/resources"] =
        json!("dry-run");
    let resp = review(&h, &input).await;
    let patch = patch_of(&resp).unwrap_or_else(|| panic!("dry-run records"));
    assert_eq!(patch.0.len(), 1, "only the annotation: {patch:?}");
    let pod = apply(&input, &resp);
    let applied = pod["metadata"]["annotations"]["nemutator.io/resources-applied"]
        .as_str()
        .unwrap_or_default();
    assert!(
        applied.starts_with("dry-run: app: cpu 500m->250m"),
        "{applied}"
    );
    assert_eq!(pod["spec"], input["request"]["object"]["spec"]);
    // And a dry-run reinvocation adds nothing.
    let again = review(&h, &with_object(&input, pod)).await;
    assert!(again["response"].get("patch").is_none());

    input["request"]["object"]["metadata"]["annotations"]["nemutator.io/resources"] =
        json!("sometimes");
    let resp = review(&h, &input).await;
    assert!(resp["response"].get("patch").is_none());
    assert!(resp["response"]["warnings"][0]
        .as_str()
        .unwrap_or_default()
        .contains("unknown value"));
}

#[tokio::test]
async fn excluded_namespaces_and_other_kinds_pass_unchanged() {
    let h = mk_default();
    let mut input = fixture("pod-create.json");
    input["request"]["namespace"] = json!("kube-system");
    let resp = review(&h, &input).await;
    assert_eq!(resp["response"]["allowed"], true);
    assert!(resp["response"].get("patch").is_none());

    let resp = review(&h, &fixture("deployment-create.json")).await;
    assert_eq!(
        resp["response"]["uid"],
        "b1c2d3e4-0000-4000-8000-000000000001"
    );
    assert_eq!(resp["response"]["allowed"], true);
    assert!(resp["response"].get("patch").is_none());

    let mut update = fixture("pod-create.json");
    update["request"]["operation"] = json!("UPDATE");
    assert!(review(&h, &update).await["response"].get("patch").is_none());
}

#[tokio::test]
async fn pod_namespace_wins_over_request_namespace() {
    let h = mk_default();
    let mut input = fixture("pod-create.json");
    input["request"]["namespace"] = json!("kube-system");
    input["request"]["object"]["metadata"]["namespace"] = json!("default");
    assert!(patch_of(&review(&h, &input).await).is_some());
}

#[tokio::test]
async fn short_history_is_skipped() {
    let mut recs = mk_default_recs();
    recs[0].cpu = None;
    recs[0].memory = None;
    recs[0].skipped = vec!["cpu: 3h of history < min_history 1d".into()];
    let h = mk_harness(PolicySet(vec![Policy::default()]), Some(recs));
    let input = fixture("pod-create.json");
    let resp = review(&h, &input).await;
    let pod = apply(&input, &resp);
    assert_eq!(
        pod["spec"]["containers"][0],
        input["request"]["object"]["spec"]["containers"][0]
    );
    let audit = resp["response"]["auditAnnotations"]["resources"]
        .as_str()
        .unwrap_or_default();
    assert!(audit.contains("min_history"), "{audit}");
}

#[tokio::test]
async fn bad_input_is_a_400_with_one_line() {
    let h = mk_default();
    for body in [
        b"{not json".to_vec(),
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
        br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}"#.to_vec(),
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","object":{"spec":{"containers":"nope"}}}}"#.to_vec(),
        // Arrays of the fields, in order, where objects belong.
        br#"["admission.k8s.io/v1","AdmissionReview",{"uid":"x","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","object":{}}]"#.to_vec(),
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":["x",{"group":"","version":"v1","kind":"Pod"},null,"default","CREATE",{}]}"#.to_vec(),
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","object":[{},{"containers":[]}]}}"#.to_vec(),
        Vec::new(),
    ] {
        let (status, text) = call(&h, Method::POST, "/mutate", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&body));
        let text = String::from_utf8_lossy(&text);
        assert_eq!(text.trim_end().lines().count(), 1, "{text}");
    }
    let (status, _) = call(&h, Method::POST, "/mutate", vec![b' '; 3 * 1024 * 1024 + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        call(&h, Method::GET, "/mutate", vec![]).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        call(&h, Method::GET, "/nope", vec![]).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let h = mk_harness(PolicySet(vec![Policy::default()]), None);
    assert_eq!(
        call(&h, Method::GET, "/healthz", vec![]).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&h, Method::GET, "/readyz", vec![]).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    h.state.store.replace(mk_default_recs());
    assert_eq!(
        call(&h, Method::GET, "/readyz", vec![]).await.0,
        StatusCode::OK
    );
    review(&h, &fixture("pod-create.json")).await;
    review(&h, &fixture("deployment-create.json")).await;
    call(&h, Method::POST, "/mutate", b"{".to_vec()).await;
    let (status, text) = call(&h, Method::GET, "/metrics", vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("nemutator_admission_requests_total{outcome=\"patched\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("nemutator_admission_requests_total{outcome=\"skipped\"} 1\n"));
    assert!(text.contains("nemutator_admission_requests_total{outcome=\"invalid\"} 1\n"));
    assert!(text.contains("nemutator_admission_duration_seconds_count{outcome=\"patched\"} 1\n"));
    assert!(text.contains("nemutator_recommendations 5\n"));
}

/// Readiness says when the recommendations have not been refreshed for too
/// long (the last good ones are still served), and metrics give their age.
#[tokio::test(start_paused = true)]
async fn readiness_fails_on_stale_recommendations() {
    let store = Arc::new(RecommendationStore::new());
    let pipeline = Pipeline::builder()
        .layer(ResourcesLayer::new(
            store.clone(),
            Arc::new(PolicySet(vec![Policy::default()])),
        ))
        .build();
    let mut state = WebhookState::new(Admission::new(pipeline), store.clone());
    state.stale_after = Some(std::time::Duration::from_secs(30));
    let state = Arc::new(state);
    let h = Harness {
        router: Router::new(state.clone()),
        state,
    };
    store.replace(mk_default_recs());
    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    assert_eq!(
        call(&h, Method::GET, "/readyz", vec![]).await.0,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (status, text) = call(&h, Method::GET, "/readyz", vec![]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let text = String::from_utf8_lossy(&text);
    assert_eq!(text.trim_end().lines().count(), 1, "{text}");
    assert!(text.contains("stale"), "{text}");
    // Still served.
    let resp = review(&h, &fixture("pod-create.json")).await;
    assert!(resp["response"]["patch"].is_string(), "{resp}");
    let (_, metrics) = call(&h, Method::GET, "/metrics", vec![]).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("nemutator_recommendations_age_seconds 32\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nemutator_refresher_restarts_total 0\n"),
        "{metrics}"
    );
    store.replace(mk_default_recs());
    assert_eq!(
        call(&h, Method::GET, "/readyz", vec![]).await.0,
        StatusCode::OK
    );
}

/// The brainset of the season the workload is in applies at admission: a
/// peak brainset whose minimum change no resize reaches leaves the pod alone
/// at peak, and off peak the base policy resizes it and says the season.
#[tokio::test]
async fn the_brainset_of_the_workloads_season_applies() {
    let policy = Policy {
        brainsets: Brainsets {
            peak: Some(Brainset {
                min_change: Some(Percent(1000.0)),
                ..Brainset::default()
            }),
            off_peak: None,
        },
        ..Policy::default()
    };
    let input = fixture("pod-create.json");
    let in_season = |season| {
        mk_harness_in(
            PolicySet(vec![policy.clone()]),
            Some(mk_default_recs()),
            Arc::new(Always(season)),
        )
    };
    let peak = review(&in_season(Season::Peak), &input).await;
    assert!(patch_of(&peak).is_none(), "{peak}");
    let off = review(&in_season(Season::OffPeak), &input).await;
    let pod = apply(&input, &off);
    assert_eq!(
        pod["metadata"]["annotations"]["nemutator.io/season"],
        "off-peak"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["requests"],
        json!({"cpu": "250m", "memory": "640Mi"})
    );
}
