//! The mutation model against a real kube-apiserver (scripts/apiserver.sh):
//! a webhook assembled from the library (as `examples/custom_webhook.rs`
//! does) with the test layers of `tests/support`, served on loopback and
//! registered by URL.
//!
//! - A layer that adds an init container, an `emptyDir` volume, a volume
//!   mount and an env var and rewrites the command: the pod is stored with
//!   them, the fields nemutator does not model as sent. The webhook is
//!   registered twice with `reinvocationPolicy: IfNeeded`, so the second
//!   call reviews the pod the first patched, and must patch nothing.
//! - A layer that reports its backend unreachable: with `failurePolicy:
//!   Ignore` the pod is admitted unchanged, with `Fail` it is refused.
//!
//! Without `NEMUTATOR_TEST_KUBECONFIG` this test prints one line and skips
//! (it fails instead where `NEMUTATOR_REQUIRE_APISERVER=1`).

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use nemutator_core::admission::{Admission, Outcome};
use nemutator_core::mutate::Pipeline;
use nemutator_core::recommend::RecommendationStore;
use nemutator_core::server::tls::{self, CertStore};
use nemutator_core::server::{self, ConnectionThreads, Router, WebhookState};
use nemutator_testkit::cluster::{eventually, TestCluster};
use serde_json::{json, Value};
use support::{DownLayer, InjectLayer, BINARY, DOWN_LABEL, ENV, INIT, VOLUME};

const NS: &str = "nemutator-mutation-e2e";
const CONFIG: &str = "nemutator-mutation-e2e";
const POLICY_LABEL: &str = "e2e.nemutator.io/policy";

/// The test's webhook on a loopback port: its state (for the counts of
/// outcomes), its URL and the PEM of its self-signed certificate.
async fn start_webhook() -> (Arc<WebhookState>, String, String) {
    let pipeline = Pipeline::builder()
        .layer(DownLayer)
        .layer(InjectLayer)
        .build();
    let state = Arc::new(WebhookState::new(
        Admission::new(pipeline),
        Arc::new(RecommendationStore::new()),
    ));
    let (key, ca_pem) =
        tls::self_signed(&["127.0.0.1".to_string()]).unwrap_or_else(|e| panic!("certificate: {e}"));
    let tls = Arc::new(
        tls::server_config(Arc::new(CertStore::fixed(key))).unwrap_or_else(|e| panic!("{e}")),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let url = format!(
        "https://{}/mutate",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    let threads = ConnectionThreads::start(1, "e2e-conn").unwrap_or_else(|e| panic!("{e}"));
    let router = Router::new(state.clone());
    tokio::spawn(async move {
        server::serve(
            listener,
            tls,
            router,
            std::future::pending(),
            Duration::from_secs(1),
            threads,
        )
        .await;
    });
    (state, url, ca_pem)
}

/// One webhook of the configuration: pods in [`NS`] matching `selector`.
fn mk_hook(name: &str, url: &str, ca: &str, failure: &str, selector: Value) -> Value {
    json!({
        "name": format!("{name}.e2e.nemutator.io"),
        "clientConfig": {"url": url, "caBundle": ca},
        "rules": [{
            "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
            "resources": ["pods"], "scope": "Namespaced",
        }],
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}},
        "objectSelector": selector,
        "failurePolicy": failure,
        "reinvocationPolicy": "IfNeeded",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 5,
    })
}

fn mk_config(url: &str, ca_pem: &str) -> MutatingWebhookConfiguration {
    let ca = base64_simd::STANDARD.encode_to_string(ca_pem);
    let not_down = json!({"matchExpressions": [{"key": DOWN_LABEL, "operator": "DoesNotExist"}]});
    let down = |policy: &str| json!({"matchLabels": {DOWN_LABEL: "down", POLICY_LABEL: policy}});
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": CONFIG},
        "webhooks": [
            mk_hook("inject", url, &ca, "Fail", not_down.clone()),
            mk_hook("inject-again", url, &ca, "Fail", not_down),
            mk_hook("down-ignore", url, &ca, "Ignore", down("ignore")),
            mk_hook("down-fail", url, &ca, "Fail", down("fail")),
        ],
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A pod of this run with fields nemutator does not model (ports, a probe,
/// a security context), labelled `labels`.
fn mk_pod(name: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "registry.invalid/web:1",
                                "command": ["/migrate"]}],
            "containers": [{
                "name": "app", "image": "registry.invalid/web:1",
                "command": ["/app/server"], "args": ["--port", "8080"],
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                "securityContext": {"runAsNonRoot": true},
                "env": [{"name": "MODE", "value": "prod"}],
            }],
        },
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A name unique to this run: nothing deletes pods or namespaces on the
/// test API server, so the test can run again on it.
fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{tag}-{}-{nanos}", std::process::id())
}

fn to_json(pod: &Pod) -> Value {
    serde_json::to_value(pod).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_add_elements_and_an_unreachable_backend_leaves_it_to_the_failure_policy() {
    let Some(cluster) = TestCluster::from_env(
        "layers_add_elements_and_an_unreachable_backend_leaves_it_to_the_failure_policy",
    )
    .await
    else {
        return;
    };
    let client = cluster.client.clone();
    let (state, url, ca_pem) = start_webhook().await;
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(NS.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let _ = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await;
    let configs = Api::<MutatingWebhookConfiguration>::all(client.clone());
    configs
        .patch(
            CONFIG,
            &PatchParams::apply("nemutator-mutation-e2e").force(),
            &Patch::Apply(&mk_config(&url, &ca_pem)),
        )
        .await
        .unwrap_or_else(|e| panic!("registering the webhook: {e}"));
    let pods = Api::<Pod>::namespaced(client.clone(), NS);

    // The API server takes the configuration up within a moment.
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let probe = mk_pod(&unique("probe"), json!({}));
    let seen = eventually(Duration::from_secs(60), || async {
        let pod = pods.create(&dry, &probe).await.ok()?;
        let init = pod.spec.as_ref()?.init_containers.as_ref()?;
        init.iter().any(|c| c.name == INIT).then_some(())
    })
    .await;
    assert!(seen.is_some(), "the API server never called the webhook");

    // A backend that cannot be reached: a 503, so the failurePolicy decides.
    let unavailable_before = state.telemetry.count(Outcome::Unavailable);
    let name = unique("down-ignore");
    let sent = mk_pod(&name, json!({DOWN_LABEL: "down", POLICY_LABEL: "ignore"}));
    let stored = pods
        .create(&PostParams::default(), &sent)
        .await
        .unwrap_or_else(|e| panic!("failurePolicy Ignore must admit {name}: {e}"));
    // As stored with no webhook's change: the reference for what follows.
    let (plain, sent) = (to_json(&stored), to_json(&sent));
    let stored = &plain;
    assert_eq!(
        stored["spec"]["initContainers"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        stored["spec"]["containers"][0]["command"],
        sent["spec"]["containers"][0]["command"]
    );
    assert_eq!(
        stored["spec"]["containers"][0]["env"],
        sent["spec"]["containers"][0]["env"]
    );
    assert_eq!(
        state.telemetry.count(Outcome::Unavailable),
        unavailable_before + 1
    );

    // Elements added whole; what the layer does not model, as sent.
    let patched_before = state.telemetry.count(Outcome::Patched);
    let unchanged_before = state.telemetry.count(Outcome::Unchanged);
    let name = unique("inject");
    let sent = mk_pod(&name, json!({}));
    let stored = pods
        .create(&PostParams::default(), &sent)
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    let spec = to_json(&stored)["spec"].clone();
    let init_names: Vec<&str> = spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(init_names, [INIT, "migrate"]);
    let init = &spec["initContainers"][0];
    assert_eq!(
        init["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(init["volumeMounts"][0]["name"], VOLUME);
    let volume = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == VOLUME)
        .cloned();
    assert_eq!(
        volume.map(|v| v["emptyDir"].clone()),
        Some(json!({"medium": "Memory"}))
    );
    let app = &spec["containers"][0];
    assert_eq!(
        app["command"],
        json!([BINARY, "env", "--", "/app/server", "--port", "8080"])
    );
    assert!(app.get("args").is_none(), "{app}");
    assert_eq!(
        app["env"],
        json!([{"name": "MODE", "value": "prod"}, {"name": ENV, "value": "1"}])
    );
    assert!(
        app["volumeMounts"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["mountPath"] == "/nemutator-bin")),
        "{app}"
    );
    // Fields the layer does not model: as in the pod stored unchanged
    // (defaulted by the API server alike).
    let plain_app = &plain["spec"]["containers"][0];
    for kept in [
        "ports",
        "readinessProbe",
        "securityContext",
        "image",
        "terminationMessagePath",
        "imagePullPolicy",
    ] {
        assert_eq!(app[kept], plain_app[kept], "{kept}");
    }
    assert_eq!(
        spec["initContainers"][1],
        plain["spec"]["initContainers"][0]
    );
    // The second webhook reviewed the patched pod and changed nothing.
    assert_eq!(state.telemetry.count(Outcome::Patched), patched_before + 1);
    assert!(state.telemetry.count(Outcome::Unchanged) > unchanged_before);

    // A backend that cannot be reached and `failurePolicy: Fail`: refused.
    let name = unique("down-fail");
    let refused = pods
        .create(
            &PostParams::default(),
            &mk_pod(&name, json!({DOWN_LABEL: "down", POLICY_LABEL: "fail"})),
        )
        .await;
    match refused {
        Err(kube::Error::Api(status)) => {
            assert!(
                status.message.contains("failed calling webhook")
                    && status.message.contains("down-fail.e2e.nemutator.io"),
                "{status:?}"
            );
        }
        other => panic!("failurePolicy Fail must refuse {name}: {other:?}"),
    }
    assert!(pods.get_opt(&name).await.ok().flatten().is_none());

    // Leave no webhook registered for other tests.
    let _ = configs.delete(CONFIG, &Default::default()).await;
}
