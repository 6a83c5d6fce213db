//! A drift pass over 2,000 running pods of 200 Deployments against the real
//! API server (scripts/apiserver.sh), every pod 100m CPU under a 250m
//! recommendation: the decision alone (pure: right-sizing and `decide`
//! for every pod), then a dry-run pass (one dry-run `pods/resize` per pod).
//! Prints wall times, API requests and the process's peak memory.
//!
//! ```sh
//! scripts/apiserver.sh start /tmp/api && . /tmp/api/env
//! cargo run --release -p nemutator-core --example reconcile_bench
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt as _};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use nemutator_core::config::Config;
use nemutator_core::controller::cache::pod_cache;
use nemutator_core::controller::drift;
use nemutator_core::controller::reconcile::{DriftMode, DriftReconciler, ResizeLimits};
use nemutator_core::evict::{EvictionPolicy, KubeEvictor};
use nemutator_core::mutate::ResourcesLayer;
use nemutator_core::quantity::Quantity;
use nemutator_core::recommend::{Recommendation, RecommendationStore, ResourceRecommendation};
use nemutator_core::workload::{ContainerRef, WorkloadKey, WorkloadKind};
use nemutator_testkit::cluster::TestCluster;
use serde_json::json;

const WORKLOADS: usize = 200;
const PODS_PER_WORKLOAD: usize = 10;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let Some(cluster) = TestCluster::from_env("reconcile_bench").await else {
        return;
    };
    let client = cluster.client.clone();
    let ns = format!("bench-{}", std::process::id());
    let mk_ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap_or_else(|e| panic!("{e}"));
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &mk_ns)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let start = Instant::now();
    let jobs = (0..WORKLOADS).flat_map(|w| (0..PODS_PER_WORKLOAD).map(move |p| (w, p)));
    stream::iter(jobs)
        .for_each_concurrent(32, |(w, p)| {
            let pods = pods.clone();
            let ns = ns.clone();
            async move {
                let name = format!("w{w}-5f7d8c9b6-p{p}");
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": name, "namespace": ns,
                        "labels": {"app": format!("w{w}"), "pod-template-hash": "5f7d8c9b6"},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                            "name": format!("w{w}-5f7d8c9b6"),
                            "uid": "0b6c2a52-0000-4000-8000-00000000000b", "controller": true}]},
                    "spec": {"nodeName": format!("n{}", p % 20), "containers": [{"name": "app",
                        "image": "registry.invalid/app:1",
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                      "limits": {"memory": "128Mi"}}}]},
                }))
                .unwrap_or_else(|e| panic!("{e}"));
                pods.create(&PostParams::default(), &pod)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let status = json!({"status": {"phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True"}]}});
                pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        })
        .await;
    eprintln!(
        "setup: {} pods in {:.1} s",
        WORKLOADS * PODS_PER_WORKLOAD,
        start.elapsed().as_secs_f64()
    );

    let store = Arc::new(RecommendationStore::new());
    store.replace((0..WORKLOADS).map(|w| Recommendation {
        target: ContainerRef::new(
            WorkloadKey::new(&ns, WorkloadKind::Deployment, format!("w{w}")),
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
    }));
    let resources = ResourcesLayer::new(store, Arc::new(Config::default().policies));
    let (cache, task) = pod_cache(client.clone());
    tokio::spawn(task);
    cache
        .wait_until_ready()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    while cache
        .state()
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .count()
        < WORKLOADS * PODS_PER_WORKLOAD
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let t = Instant::now();
    let mut resize = 0;
    for pod in cache.state().iter() {
        let desired = resources.desired(pod, 0);
        if matches!(
            drift::decide(pod, &desired, true, 0),
            drift::DriftAction::Resize(_)
        ) {
            resize += 1;
        }
    }
    let decide = t.elapsed();
    eprintln!(
        "decision pass: {} pods, {resize} to resize, {:.3} s",
        cache.state().len(),
        decide.as_secs_f64()
    );

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
        resources,
        Arc::new(evictor),
        DriftMode::DryRun,
    );
    // Every resize of the 2,000 asked in one pass (the API side's cost);
    // the controller's defaults spread them over passes.
    reconciler.limits = ResizeLimits {
        per_pass: u32::MAX,
        per_node: u32::MAX,
    };
    let t = Instant::now();
    let report = reconciler.pass(0, true).await;
    let pass = t.elapsed();
    eprintln!(
        "dry-run pass: {:.2} s, {} API requests ({} dry-run resizes, {} evictions asked), {report:?}",
        pass.as_secs_f64(),
        report.resized + report.resize_failed + usize::from(report.to_evict > 0),
        report.resized,
        report.to_evict
    );
    eprintln!("peak RSS: {} MiB", peak_rss_kib() / 1024);
}
