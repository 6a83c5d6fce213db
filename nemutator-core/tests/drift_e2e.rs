//! The drift reconciler's resize against the real API server's validation
//! (scripts/apiserver.sh, Kubernetes 1.35): the `pods/resize` subresource
//! is served, a resize within the QoS class is accepted, and one that would
//! change the QoS class, which [`drift::decide`] never asks for, is refused
//! by the API server too. No kubelet runs there, so the test sets the pod's
//! phase (the kubelet's part) and nothing acts on the resize: the pod's
//! spec changes, its status does not.

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use nemutator_core::controller::drift::{self, DriftAction};
use nemutator_core::mutate::PodView;
use nemutator_testkit::cluster::TestCluster;
use serde_json::json;

fn mk<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn resizes_keep_the_qos_class_as_the_api_server_requires() {
    let test = "resizes_keep_the_qos_class_as_the_api_server_requires";
    let Some(cluster) = TestCluster::from_env(test).await else {
        return;
    };
    let client = cluster.client.clone();
    let ns = format!("drift-{}", std::process::id());
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &mk(json!({"metadata": {"name": ns}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        drift::supports_resize(&client)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        "Kubernetes 1.35 serves pods/resize"
    );
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let pod: Pod = mk(json!({
        "metadata": {"name": "web-1", "namespace": ns},
        "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "registry.invalid/web:1",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}}]},
    }));
    pods.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let running = pods
        .patch_status(
            "web-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Within the class (Burstable): decided as a resize, accepted.
    let mut desired = PodView::from(&running);
    if let Some(spec) = desired.spec.as_mut() {
        spec.containers[0].resources = Some(mk(json!({
            "requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}})));
    }
    let DriftAction::Resize(changed) = drift::decide(&running, &desired, true, 0) else {
        panic!("expected a resize");
    };
    let dry = drift::resize(client.clone(), &ns, "web-1", &changed, true)
        .await
        .unwrap_or_else(|e| panic!("dry-run resize: {e}"));
    assert_eq!(cpu_request(&dry), Some("250m".into()));
    assert_eq!(
        cpu_request(&pods.get("web-1").await.unwrap_or_else(|e| panic!("{e}"))),
        Some("100m".into()),
        "a dry-run changes nothing"
    );
    let resized = drift::resize(client.clone(), &ns, "web-1", &changed, false)
        .await
        .unwrap_or_else(|e| panic!("resize: {e}"));
    assert_eq!(cpu_request(&resized), Some("250m".into()));

    // Across classes (Guaranteed): decided as an eviction, and the API
    // server refuses the resize.
    let mut desired = PodView::from(&resized);
    if let Some(spec) = desired.spec.as_mut() {
        spec.containers[0].resources = Some(mk(json!({
            "requests": {"cpu": "250m", "memory": "128Mi"},
            "limits": {"cpu": "250m", "memory": "128Mi"}})));
    }
    let action = drift::decide(&resized, &desired, true, 0);
    assert!(matches!(action, DriftAction::Evict(_)), "{action:?}");
    let guaranteed = vec![(
        "app".to_owned(),
        mk(json!({"requests": {"cpu": "250m", "memory": "128Mi"},
                  "limits": {"cpu": "250m", "memory": "128Mi"}})),
    )];
    match drift::resize(client.clone(), &ns, "web-1", &guaranteed, false).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.to_lowercase().contains("qos"),
                "{}",
                status.message
            );
        }
        other => panic!("the API server accepted a QoS change: {other:?}"),
    }
}

fn cpu_request(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.containers[0]
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("cpu")
        .map(|q| q.0.clone())
}

/// A pass of the reconciler over the real pod cache: a running pod of
/// Deployment `web` requesting 100m CPU, recommended 250m, is resized in
/// place (a dry-run pass first changes nothing).
#[tokio::test]
async fn a_drift_pass_resizes_a_pod_that_left_its_recommendation() {
    use std::sync::Arc;

    use nemutator_core::config::Config;
    use nemutator_core::controller::cache::pod_cache;
    use nemutator_core::controller::reconcile::{DriftMode, DriftReconciler, ResizeLimits};
    use nemutator_core::evict::{EvictionPolicy, KubeEvictor};
    use nemutator_core::mutate::ResourcesLayer;
    use nemutator_core::quantity::Quantity;
    use nemutator_core::recommend::{Recommendation, RecommendationStore, ResourceRecommendation};
    use nemutator_core::workload::{ContainerRef, WorkloadKey, WorkloadKind};

    let test = "a_drift_pass_resizes_a_pod_that_left_its_recommendation";
    let Some(cluster) = TestCluster::from_env(test).await else {
        return;
    };
    let client = cluster.client.clone();
    let ns = format!("drift-pass-{}", std::process::id());
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &mk(json!({"metadata": {"name": ns}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let name = "web-5f7d8c9b6-a1";
    let pod: Pod = mk(json!({
        "metadata": {"name": name, "namespace": ns,
            "labels": {"app": "web", "pod-template-hash": "5f7d8c9b6"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5f7d8c9b6",
                "uid": "0b6c2a52-0000-4000-8000-00000000000a", "controller": true}]},
        "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "registry.invalid/web:1",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}}]},
    }));
    pods.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let store = Arc::new(RecommendationStore::new());
    store.replace([Recommendation {
        target: ContainerRef::new(
            WorkloadKey::new(&ns, WorkloadKind::Deployment, "web"),
            "app",
        ),
        policy: "default".into(),
        season: None,
        window: "7d".parse().unwrap_or_else(|e| panic!("{e:?}")),
        cpu: Some(ResourceRecommendation {
            request: Quantity::parse("250m").unwrap_or_else(|e| panic!("{e}")),
            percentile: 95.0,
            usage: 0.2,
            samples: 10_000,
            history_secs: 7 * 86_400,
            oom_killed: false,
            current: None,
            distribution: vec![],
        }),
        memory: None,
        skipped: vec![],
    }]);
    let policies = Arc::new(Config::default().policies);
    let (cache, task) = pod_cache(client.clone());
    tokio::spawn(task);
    cache
        .wait_until_ready()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let key = kube::runtime::reflector::ObjectRef::new(name).within(&ns);
    let cached =
        nemutator_testkit::cluster::eventually(std::time::Duration::from_secs(10), || async {
            cache
                .get(&key)
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        })
        .await;
    assert!(cached.is_some(), "the pod never reached the cache running");
    let evictor = KubeEvictor::new(
        cluster.config.clone(),
        cache.clone(),
        EvictionPolicy::default(),
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut reconciler = DriftReconciler::new(
        client.clone(),
        cache.clone(),
        ResourcesLayer::new(store, policies),
        Arc::new(evictor),
        DriftMode::DryRun,
    );
    let only_ours = |r: &nemutator_core::controller::reconcile::PassReport| r.resized;
    let report = reconciler.pass(0, true).await;
    assert!(only_ours(&report) >= 1, "{report:?}");
    let p = pods.get(name).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cpu_request(&p),
        Some("100m".into()),
        "a dry-run pass changes nothing"
    );
    reconciler.mode = DriftMode::On;
    reconciler.limits = ResizeLimits {
        per_pass: 100,
        per_node: 0,
    };
    let report = reconciler.pass(0, true).await;
    assert!(report.over_limit >= 1, "{report:?}");
    let p = pods.get(name).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cpu_request(&p),
        Some("100m".into()),
        "no resize past the per-node limit"
    );
    reconciler.limits = ResizeLimits::default();
    let report = reconciler.pass(0, true).await;
    assert!(report.resized >= 1, "{report:?}");
    let p = pods.get(name).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cpu_request(&p),
        Some("250m".into()),
        "resized in place, not re-created"
    );
    assert!(p.metadata.deletion_timestamp.is_none());
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let resized: Vec<_> = events
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Resized"))
        .collect();
    assert_eq!(
        resized.len(),
        1,
        "one Event, none for the dry-run: {:?}",
        events.items
    );
    assert!(
        resized[0]
            .note
            .as_deref()
            .is_some_and(|n| n.contains("cpu 250m")),
        "{resized:?}"
    );
    let mut text = String::new();
    reconciler.metrics().render(&mut text);
    assert!(
        text.lines().any(
            |l| l.starts_with("nemutator_drift_decisions_total{action=\"resized\"}")
                && !l.ends_with(" 0")
        ),
        "{text}"
    );
}
