//! The mutation model: layers that add whole elements (an init container, a
//! volume, a volume mount, an env var) and rewrite a command get a patch
//! that is minimal, applies with the json-patch crate to the object the API
//! server sent, keeps every field nemutator does not model, and is not made
//! again on reinvocation. A backend that cannot be reached is a 503.

mod support;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use nemutator_core::admission::{patched_object, Admission, AdmissionError, Outcome};
use nemutator_core::mutate::{ContainerView, MutationError, Pipeline, PodReview};
use nemutator_core::recommend::RecommendationStore;
use nemutator_core::server::{Router, WebhookState};
use serde_json::{json, Value};
use std::sync::Arc;
use std::task::{Context, Poll};
use support::{DownLayer, InjectLayer, DOWN_LABEL};
use tower::{Layer, Service, ServiceExt};

/// A pod with fields the view does not model everywhere: in the spec, in
/// each container, in a volume, in the status, and one no version of
/// k8s-openapi knows (`futureField`).
fn mk_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "web-0", "namespace": "shop", "labels": {"app": "web"},
            "creationTimestamp": null,
            "managedFields": [{"manager": "kubectl", "operation": "Update"}]
        },
        "spec": {
            "initContainers": [{
                "name": "migrate", "image": "web:1", "command": ["/migrate"],
                "terminationMessagePolicy": "FallbackToLogsOnError"
            }],
            "containers": [
                {
                    "name": "app", "image": "web:1",
                    "command": ["/app/server"], "args": ["--port", "8080"],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                    "securityContext": {"runAsNonRoot": true},
                    "env": [{"name": "MODE", "value": "prod"}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    "futureField": {"x": 1}
                },
                {
                    "name": "sidecar", "image": "proxy:2",
                    "ports": [{"containerPort": 15001}]
                }
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "futureField": true
        },
        "status": {"phase": "Pending"}
    })
}

fn mk_review(object: &Value) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE", "object": object
        }
    })
    .to_string()
    .into_bytes()
}

fn mk_admission() -> Admission {
    Admission::new(Pipeline::builder().layer(InjectLayer).build())
}

fn ops_of(reviewed: &nemutator_core::admission::Reviewed) -> Value {
    reviewed
        .patch
        .as_ref()
        .map(|p| serde_json::from_slice(p.as_json()).unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or(Value::Null)
}

/// What the API server applies: the json-patch crate on the object as sent.
fn applied(object: &Value, reviewed: &nemutator_core::admission::Reviewed) -> Value {
    let mut out = object.clone();
    if let Some(p) = reviewed.patch.as_ref() {
        let p = p.to_patch().unwrap_or_else(|e| panic!("{e}"));
        json_patch::patch(&mut out, &p).unwrap_or_else(|e| panic!("{e}"));
    }
    out
}

#[tokio::test]
async fn injection_patch_is_minimal_and_gives_the_expected_object() {
    let object = mk_pod();
    let reviewed = mk_admission()
        .review(&mk_review(&object))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reviewed.outcome, Outcome::Patched);
    let init = json!({
        "name": "nemutator-init", "image": "nemutator:test",
        "command": ["cp", "/nemutator", "/nemutator-bin/nemutator"],
        "volumeMounts": [{"name": "nemutator-bin", "mountPath": "/nemutator-bin"}],
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
    });
    let command = json!([
        "/nemutator-bin/nemutator",
        "env",
        "--",
        "/app/server",
        "--port",
        "8080"
    ]);
    let env = json!({"name": "NEMUTATOR_INJECTED", "value": "1"});
    let mount = json!({"name": "nemutator-bin", "mountPath": "/nemutator-bin", "readOnly": true});
    let volume = json!({"name": "nemutator-bin", "emptyDir": {"medium": "Memory"}});
    // One operation per change; new elements whole, at their index or at
    // the end; nothing about the fields the layer left alone.
    assert_eq!(
        ops_of(&reviewed),
        json!([
            {"op": "replace", "path": "/spec/containers/0/command", "value": command},
            {"op": "remove", "path": "/spec/containers/0/args"},
            {"op": "add", "path": "/spec/containers/0/env/-", "value": env},
            {"op": "add", "path": "/spec/containers/0/volumeMounts/-", "value": mount},
            {"op": "add", "path": "/spec/initContainers/0", "value": init},
            {"op": "add", "path": "/spec/volumes/-", "value": volume},
        ])
    );
    let mut expected = object.clone();
    let app = &mut expected["spec"]["containers"][0];
    app["command"] = command;
    app.as_object_mut().map(|a| a.remove("args"));
    app["env"] = json!([{"name": "MODE", "value": "prod"}, env]);
    app["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}, mount]);
    expected["spec"]["initContainers"] = json!([init, object["spec"]["initContainers"][0]]);
    expected["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}, volume]);
    assert_eq!(applied(&object, &reviewed), expected);
    // `review --patched` gives the same.
    let body = mk_review(&object);
    assert_eq!(
        patched_object(&body, reviewed.patch.as_ref()).ok(),
        Some(expected)
    );
}

#[tokio::test]
async fn reinvocation_of_a_patched_pod_yields_no_patch() {
    let admission = mk_admission();
    let object = mk_pod();
    let first = admission
        .review(&mk_review(&object))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let patched = applied(&object, &first);
    let second = admission
        .review(&mk_review(&patched))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(second.outcome, Outcome::Unchanged);
    assert!(second.patch.is_none(), "{:?}", ops_of(&second));
}

/// Adds a whole container in front of the pod's: every field the view
/// models, and one it does not.
#[derive(Clone, Debug)]
struct AddFirstLayer;

impl<S> Layer<S> for AddFirstLayer {
    type Service = AddFirst<S>;
    fn layer(&self, inner: S) -> AddFirst<S> {
        AddFirst(inner)
    }
}

#[derive(Clone, Debug)]
struct AddFirst<S>(S);

impl<S> Service<PodReview> for AddFirst<S>
where
    S: Service<PodReview, Response = PodReview, Error = MutationError>,
{
    type Response = PodReview;
    type Error = MutationError;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MutationError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut review: PodReview) -> S::Future {
        let full: ContainerView = serde_json::from_value(json!({
            "name": "first", "image": "first:1", "command": ["/first"], "args": ["-v"],
            "restartPolicy": "Always",
            "resources": {"requests": {"cpu": "10m"}, "limits": {"memory": "16Mi"}},
            "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}],
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let mut full = full;
        full.extra
            .0
            .insert("ports".into(), json!([{"containerPort": 9}]));
        if let Some(spec) = review.pod.spec.as_mut() {
            spec.containers.insert(0, full);
        }
        self.0.call(review)
    }
}

#[tokio::test]
async fn a_new_element_is_added_whole_and_old_ones_keep_their_fields() {
    let admission = Admission::new(Pipeline::builder().layer(AddFirstLayer).build());
    let object = mk_pod();
    let reviewed = admission
        .review(&mk_review(&object))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = json!({
        "name": "first", "image": "first:1", "command": ["/first"], "args": ["-v"],
        "restartPolicy": "Always",
        "resources": {"requests": {"cpu": "10m"}, "limits": {"memory": "16Mi"}},
        "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}],
        "ports": [{"containerPort": 9}],
    });
    // One operation: the whole element at its index. Nothing is written
    // field by field onto the container that was at index 0 before.
    assert_eq!(
        ops_of(&reviewed),
        json!([{"op": "add", "path": "/spec/containers/0", "value": first}])
    );
    let out = applied(&object, &reviewed);
    assert_eq!(out["spec"]["containers"][0], first);
    assert_eq!(
        out["spec"]["containers"][1], object["spec"]["containers"][0],
        "the old first container is whole, probes, ports and unknown fields included"
    );
    assert_eq!(
        out["spec"]["containers"][2],
        object["spec"]["containers"][1]
    );
}

#[tokio::test]
async fn an_unreachable_backend_is_a_503_not_a_denial() {
    let pipeline = Pipeline::builder()
        .layer(DownLayer)
        .layer(InjectLayer)
        .build();
    let admission = Admission::new(pipeline);
    let mut object = mk_pod();
    object["metadata"]["labels"][DOWN_LABEL] = json!("down");
    let err = admission.review(&mk_review(&object)).await.err();
    let Some(err @ AdmissionError::Unavailable(_)) = err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert_eq!(err.status(), 503);
    assert_eq!(err.outcome(), Outcome::Unavailable);
    let text = err.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(
        text.contains("secret store at https://127.0.0.1:1 unreachable: connection refused"),
        "{text}"
    );

    // Over HTTP: a 503 with one line, counted as `unavailable`.
    let state = Arc::new(WebhookState::new(
        admission,
        Arc::new(RecommendationStore::new()),
    ));
    let request = Request::builder()
        .method(Method::POST)
        .uri("/mutate")
        .body(Full::new(Bytes::from(mk_review(&object))))
        .unwrap_or_else(|e| panic!("{e}"));
    let response = Router::new(state.clone())
        .oneshot(request)
        .await
        .unwrap_or_else(|e| match e {});
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get(http::header::RETRY_AFTER).is_none());
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    assert_eq!(body.iter().filter(|&&b| b == b'\n').count(), 1);
    assert_eq!(state.telemetry.count(Outcome::Unavailable), 1);

    // Pods the layer does not need the backend for are reviewed.
    let ok = state
        .admission
        .review(&mk_review(&mk_pod()))
        .await
        .map(|r| r.outcome);
    assert_eq!(ok, Ok(Outcome::Patched));
}
