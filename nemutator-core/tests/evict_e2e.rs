//! The Evictor against a real kube-apiserver and etcd (scripts/apiserver.sh):
//! the Eviction subresource with real PodDisruptionBudgets, readiness and
//! Events.
//!
//! No kubelet and no controller-manager run there, so the test plays both:
//! it sets the pods' phase and `Ready` condition through the pod status
//! subresource (the kubelet), and writes each PodDisruptionBudget's status
//! (`observedGeneration`, `disruptionsAllowed`, `currentHealthy`, ...)
//! through its status subresource (the disruption controller). Without that
//! status the API server answers every eviction 429 (budget not yet
//! processed), and without phase `Running` it evicts Pending pods without
//! looking at budgets at all.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use nemutator_core::controller::cache::pod_cache;
use nemutator_core::evict::{
    EvictionPolicy, EvictionRequest, Evictor, KubeEvictor, Outcome, PodKey, Rule,
    REPORTING_CONTROLLER,
};
use nemutator_testkit::cluster::{eventually, TestCluster};
use serde_json::json;

const RS: &str = "web-6b7c9d8f5";

fn ns_of_run(tag: &str) -> String {
    format!("evict-{tag}-{}", std::process::id())
}

async fn mk_namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))
        .unwrap_or_else(|e| panic!("{e}"));
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
}

/// A pod of Deployment `web` (owned by ReplicaSet `RS`, which need not
/// exist: nothing garbage-collects here), bound to `node`; `ready` as the
/// kubelet would report it.
async fn mk_pod(client: &Client, ns: &str, name: &str, node: &str, ready: bool) -> Pod {
    mk_pod_with(client, ns, name, node, ready, |_| {}).await
}

async fn mk_pod_with(
    client: &Client,
    ns: &str,
    name: &str,
    node: &str,
    ready: bool,
    tweak: impl FnOnce(&mut serde_json::Value),
) -> Pod {
    let mut v = json!({
        "metadata": {
            "name": name, "namespace": ns,
            "labels": {"app": "web", "pod-template-hash": "6b7c9d8f5"},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": RS,
                "uid": "6f1c2a52-0000-4000-8000-000000000001", "controller": true,
            }],
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "web", "image": "registry.invalid/web:1"}],
        },
    });
    tweak(&mut v);
    let pod: Pod = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    pods.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("pod {ns}/{name}: {e}"));
    set_ready(client, ns, name, ready).await
}

/// The kubelet's part: phase Running and the Ready condition.
async fn set_ready(client: &Client, ns: &str, name: &str, ready: bool) -> Pod {
    let status = json!({"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
    }});
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("status of {ns}/{name}: {e}"))
}

/// A budget over the `web` pods, its status written as the disruption
/// controller would with `allowed` disruptions.
async fn mk_pdb(client: &Client, ns: &str, allowed: i32) {
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let api = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns);
    if api.get_opt("web").await.ok().flatten().is_none() {
        api.create(&PostParams::default(), &pdb)
            .await
            .unwrap_or_else(|e| panic!("pdb: {e}"));
    }
    set_pdb_allowed(client, ns, allowed).await;
}

async fn set_pdb_allowed(client: &Client, ns: &str, allowed: i32) {
    let api = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns);
    let generation = api
        .get("web")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .metadata
        .generation
        .unwrap_or(1);
    let status = json!({"status": {
        "observedGeneration": generation,
        "disruptionsAllowed": allowed,
        "currentHealthy": 2 + allowed,
        "desiredHealthy": 2,
        "expectedPods": 2 + allowed,
    }});
    api.patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("pdb status: {e}"));
}

/// Waits until the cache holds `name` as `check` wants it.
async fn cached(store: &Store<Pod>, ns: &str, name: &str, check: impl Fn(&Pod) -> bool) {
    let key = ObjectRef::new(name).within(ns);
    let seen = eventually(Duration::from_secs(10), || async {
        store.get(&key).filter(|p| check(p)).map(|_| ())
    })
    .await;
    assert!(
        seen.is_some(),
        "{ns}/{name} never reached the cache as wanted"
    );
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn request(ns: &str, names: &[&str], dry_run: bool) -> EvictionRequest {
    EvictionRequest {
        pods: names.iter().map(|n| PodKey::new(ns, *n)).collect(),
        dry_run,
        reason: "e2e".into(),
        requester: Some("tester".into()),
    }
}

async fn outcomes(evictor: &KubeEvictor, req: &EvictionRequest) -> Vec<Outcome> {
    evictor
        .evict(req)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|o| o.outcome)
        .collect()
}

async fn events_of(client: &Client, ns: &str, pod: &str) -> Vec<Event> {
    let list = Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod))
        .collect()
}

async fn setup(test: &str) -> Option<(Client, Store<Pod>, kube::Config)> {
    let cluster = TestCluster::from_env(test).await?;
    let (store, task) = pod_cache(cluster.client.clone());
    tokio::spawn(task);
    Some((cluster.client, store, cluster.config))
}

fn mk_evictor(config: &kube::Config, store: &Store<Pod>) -> KubeEvictor {
    KubeEvictor::new(
        config.clone(),
        store.clone(),
        EvictionPolicy::default(),
        Some("e2e".into()),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn pod_disruption_budgets_hold_and_dry_run_changes_nothing() {
    let Some((client, store, config)) =
        setup("pod_disruption_budgets_hold_and_dry_run_changes_nothing").await
    else {
        return;
    };
    let ns = &ns_of_run("pdb");
    mk_namespace(&client, ns).await;
    for (i, node) in ["n1", "n2", "n3", "n4"].iter().enumerate() {
        mk_pod(&client, ns, &format!("{RS}-p{i}"), node, true).await;
    }
    let last = format!("{RS}-p3");
    cached(&store, ns, &last, is_ready).await;
    let evictor = mk_evictor(&config, &store);
    let p0 = format!("{RS}-p0");
    let pods = Api::<Pod>::namespaced(client.clone(), ns);

    // The budget allows nothing: 429, reported blocked, for real and in a dry-run.
    mk_pdb(&client, ns, 0).await;
    for dry_run in [true, false] {
        let got = outcomes(&evictor, &request(ns, &[&p0], dry_run)).await;
        let [Outcome::Blocked { message }] = &got[..] else {
            panic!("dry_run {dry_run}: {got:?}");
        };
        assert!(message.contains("disruption budget"), "{message}");
    }
    let p = pods.get(&p0).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(p.metadata.deletion_timestamp.is_none(), "never forced");
    let events = events_of(&client, ns, &p0).await;
    assert_eq!(
        events.len(),
        1,
        "one Event, none for the dry-run: {events:?}"
    );
    assert_eq!(events[0].reason.as_deref(), Some("EvictionBlocked"));
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    assert_eq!(
        events[0].reporting_controller.as_deref(),
        Some(REPORTING_CONTROLLER)
    );

    // One disruption allowed: a dry-run says it would go and leaves the pod.
    set_pdb_allowed(&client, ns, 1).await;
    let got = outcomes(&evictor, &request(ns, &[&p0], true)).await;
    assert_eq!(got, [Outcome::DryRun]);
    let p = pods.get(&p0).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        p.metadata.deletion_timestamp.is_none(),
        "a dry-run deletes nothing"
    );

    // For real: evicted (bound to a node, the pod stays Terminating with no kubelet).
    let got = outcomes(&evictor, &request(ns, &[&p0], false)).await;
    assert_eq!(got, [Outcome::Evicted]);
    let p = pods.get(&p0).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(p.metadata.deletion_timestamp.is_some(), "evicted");
    let events = events_of(&client, ns, &p0).await;
    assert!(
        events.iter().any(|e| e.reason.as_deref() == Some("Evicted")
            && e.note
                .as_deref()
                .is_some_and(|n| n.contains("e2e") && n.contains("tester"))),
        "{events:?}"
    );

    // The next pass on the same workload cools down; a pod that does not
    // exist is gone.
    let got = outcomes(
        &evictor,
        &request(ns, &[&format!("{RS}-p1"), "nope"], false),
    )
    .await;
    assert!(
        matches!(
            &got[..],
            [
                Outcome::Refused {
                    rule: Rule::CoolDown,
                    ..
                },
                Outcome::Gone
            ]
        ),
        "{got:?}"
    );
    let metrics = evictor.metrics();
    assert_eq!(metrics.count("evicted"), 1);
    assert_eq!(metrics.count("dry_run"), 1);
    assert_eq!(metrics.count("blocked"), 2);
    assert_eq!(metrics.count("refused"), 1);
}

#[tokio::test]
async fn ready_replicas_are_counted_from_the_pods_status() {
    let Some((client, store, config)) =
        setup("ready_replicas_are_counted_from_the_pods_status").await
    else {
        return;
    };
    let ns = &ns_of_run("ready");
    mk_namespace(&client, ns).await;
    let a = format!("{RS}-ra");
    let b = format!("{RS}-rb");
    mk_pod(&client, ns, &a, "n1", true).await;
    mk_pod(&client, ns, &b, "n2", false).await;
    cached(&store, ns, &b, |p| p.status.is_some()).await;
    let evictor = mk_evictor(&config, &store);
    // One of two pods ready: below the minimum of 2.
    let got = outcomes(&evictor, &request(ns, &[&a], true)).await;
    assert!(
        matches!(
            &got[..],
            [Outcome::Refused {
                rule: Rule::MinReplicas,
                ..
            }]
        ),
        "{got:?}"
    );
    // The kubelet reports the second ready: one of the two may go (no
    // budget here), not both (the tolerance keeps one).
    set_ready(&client, ns, &b, true).await;
    cached(&store, ns, &b, is_ready).await;
    let got = outcomes(&evictor, &request(ns, &[&a, &b], true)).await;
    assert!(
        matches!(
            &got[..],
            [
                Outcome::DryRun,
                Outcome::Refused {
                    rule: Rule::Tolerance,
                    ..
                }
            ]
        ),
        "{got:?}"
    );
}

#[tokio::test]
async fn pods_the_rules_protect_are_never_sent_to_the_api() {
    let Some((client, store, config)) =
        setup("pods_the_rules_protect_are_never_sent_to_the_api").await
    else {
        return;
    };
    let ns = &ns_of_run("rules");
    mk_namespace(&client, ns).await;
    let owner = |kind: &str, name: &str| {
        json!([{"apiVersion": "apps/v1", "kind": kind, "name": name,
                "uid": "6f1c2a52-0000-4000-8000-000000000002", "controller": true}])
    };
    let ds = owner("DaemonSet", "agent");
    mk_pod_with(&client, ns, "agent-x2x4z", "n1", true, |v| {
        v["metadata"]["ownerReferences"] = ds;
    })
    .await;
    mk_pod_with(&client, ns, "bare", "n1", true, |v| {
        v["metadata"]
            .as_object_mut()
            .map(|m| m.remove("ownerReferences"));
    })
    .await;
    mk_pod_with(&client, ns, "critical", "n1", true, |v| {
        v["spec"]["priorityClassName"] = json!("system-node-critical");
    })
    .await;
    for name in ["agent-x2x4z", "bare", "critical"] {
        cached(&store, ns, name, is_ready).await;
    }
    let evictor = mk_evictor(&config, &store);
    let got = outcomes(
        &evictor,
        &request(ns, &["agent-x2x4z", "bare", "critical"], false),
    )
    .await;
    let rules: Vec<Option<Rule>> = got
        .iter()
        .map(|o| match o {
            Outcome::Refused { rule, .. } => Some(*rule),
            _ => None,
        })
        .collect();
    assert_eq!(
        rules,
        [
            Some(Rule::DaemonSet),
            Some(Rule::Bare),
            Some(Rule::SystemCritical)
        ],
        "{got:?}"
    );
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    for name in ["agent-x2x4z", "bare", "critical"] {
        let p = pods.get(name).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(p.metadata.deletion_timestamp.is_none(), "{name} untouched");
        let events = events_of(&client, ns, name).await;
        assert!(
            events
                .iter()
                .any(|e| e.reason.as_deref() == Some("EvictionBlocked")),
            "{name}: {events:?}"
        );
    }
}
