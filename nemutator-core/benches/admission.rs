//! Decode + mutate + encode of an AdmissionReview for a 4-container pod.
//!
//! `cargo bench -p nemutator-core --bench admission`

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use nemutator_core::admission::Admission;
use nemutator_core::mutate::{Pipeline, ResourcesLayer};
use nemutator_core::policy::{Policy, PolicySet};
use nemutator_core::quantity::Quantity;
use nemutator_core::recommend::{Recommendation, RecommendationStore, ResourceRecommendation};
use nemutator_core::units::HumanDuration;
use nemutator_core::workload::{ContainerRef, WorkloadKey, WorkloadKind};
use serde_json::json;

fn block<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            return v;
        }
    }
}

fn mk_res(q: Quantity) -> Option<ResourceRecommendation> {
    Some(ResourceRecommendation {
        request: q,
        percentile: 95.0,
        usage: q.as_f64(),
        samples: 1000,
        history_secs: 604_800,
        oom_killed: false,
        current: None,
        distribution: Vec::new(),
    })
}

fn mk_review() -> Vec<u8> {
    let containers: Vec<_> = (0..4)
        .map(|i| {
            json!({
                "name": format!("c{i}"),
                "image": format!("registry.example.com/team/app-{i}:1.2.3"),
                "args": ["--port", "8080", "--log-level", "info"],
                "ports": [{"containerPort": 8080 + i, "protocol": "TCP", "name": "http"}],
                "env": [{"name": "MODE", "value": "production"}, {"name": "REGION", "value": "eu-west-1"}],
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
                "volumeMounts": [{"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 10},
                "imagePullPolicy": "IfNotPresent",
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File"
            })
        })
        .collect();
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "generateName": "web-5c8d7f9b4-",
                    "labels": {"app": "web", "pod-template-hash": "5c8d7f9b4"},
                    "annotations": {"example.com/owner": "team-a"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5c8d7f9b4", "uid": "3e9f", "controller": true}]
                },
                "spec": {
                    "containers": containers,
                    "volumes": [{"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}],
                    "serviceAccountName": "web",
                    "restartPolicy": "Always"
                }
            },
            "dryRun": false
        }
    });
    serde_json::to_vec(&review).unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let store = Arc::new(RecommendationStore::new());
    store.replace((0..4).map(|i| Recommendation {
        target: ContainerRef::new(
            WorkloadKey::new("default", WorkloadKind::Deployment, "web"),
            format!("c{i}"),
        ),
        policy: "default".into(),
        season: None,
        window: HumanDuration::from_secs(604_800),
        cpu: mk_res(Quantity::from_millis(250)),
        memory: mk_res(Quantity::from_units(640 << 20)),
        skipped: vec![],
    }));
    let pipeline = Pipeline::builder()
        .layer(ResourcesLayer::new(
            store,
            Arc::new(PolicySet(vec![Policy::default()])),
        ))
        .build();
    let admission = Admission::new(pipeline);
    let body = mk_review();
    // Sanity: the benchmark measures a real patch.
    assert!(block(admission.review(&body)).is_ok_and(|r| r.patch.is_some()));
    c.bench_function("review_4_containers", |b| {
        b.iter(|| {
            let reviewed = block(admission.review(black_box(&body)));
            black_box(reviewed.map(|r| r.response.into_review_json()))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
