//! Each safety rule refuses the case it exists for, and only that rule: a
//! test per rule that would pass the pod if the rule were removed.

use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

/// A pod of Deployment `web` in `shop` (ReplicaSet `web-7d9f8c6b5`), on
/// `node`, ready, changed by `tweak` (JSON, as the API server would send it).
fn mk_pod(name: &str, node: &str, tweak: impl FnOnce(&mut serde_json::Value)) -> Pod {
    let mut v = json!({
        "metadata": {
            "name": name, "namespace": "shop",
            "labels": {"app": "web", "pod-template-hash": "7d9f8c6b5"},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8c6b5",
                "uid": "u1", "controller": true,
            }],
        },
        "spec": {"nodeName": node, "containers": [{"name": "web"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    });
    tweak(&mut v);
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
}

fn mk_facts(name: &str, node: &str) -> PodFacts {
    PodFacts::of(&mk_pod(name, node, |_| {}))
}

fn mk_count(pods: u32, ready: u32) -> WorkloadCount {
    WorkloadCount { pods, ready }
}

fn rule_of(r: Result<(), Refusal>) -> Option<Rule> {
    r.err().map(|(rule, _)| rule)
}

/// Decide for `pod` in a fresh window and pass, 4 of 4 pods ready.
fn fresh(pod: &PodFacts) -> Option<Rule> {
    let policy = EvictionPolicy::default();
    let ledger = Ledger::new();
    rule_of(decide(
        &policy,
        &ledger,
        &PassTally::default(),
        pod,
        mk_count(4, 4),
        Instant::now(),
    ))
}

#[test]
fn a_ready_pod_of_a_healthy_deployment_may_go() {
    let pod = mk_facts("web-7d9f8c6b5-abcde", "n1");
    assert_eq!(
        pod.workload.as_ref().map(|w| w.to_string()).as_deref(),
        Some("shop/Deployment/web")
    );
    assert!(pod.ready);
    assert_eq!(fresh(&pod), None);
}

#[test]
fn rule_terminating() {
    let pod = PodFacts::of(&mk_pod("web-1", "n1", |v| {
        v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }));
    assert!(!pod.ready, "a terminating pod is not counted ready");
    assert_eq!(fresh(&pod), Some(Rule::Terminating));
}

#[test]
fn rule_mirror() {
    let pod = PodFacts::of(&mk_pod("etcd-n1", "n1", |v| {
        v["metadata"]["annotations"] = json!({MIRROR_ANNOTATION: "abc"});
        // Mirror pods are owned by their Node, with controller: true.
        v["metadata"]["ownerReferences"][0]["kind"] = json!("Node");
    }));
    assert_eq!(fresh(&pod), Some(Rule::Mirror));
}

#[test]
fn rule_bare() {
    for tweak in [
        (|v: &mut serde_json::Value| {
            v["metadata"]
                .as_object_mut()
                .map(|m| m.remove("ownerReferences"));
        }) as fn(&mut serde_json::Value),
        // An owner that is not the controller re-creates nothing.
        |v| v["metadata"]["ownerReferences"][0]["controller"] = json!(false),
    ] {
        let pod = PodFacts::of(&mk_pod("web-1", "n1", tweak));
        assert_eq!(fresh(&pod), Some(Rule::Bare));
    }
}

#[test]
fn rule_daemonset() {
    let pod = PodFacts::of(&mk_pod("agent-x2x4z", "n1", |v| {
        v["metadata"]["ownerReferences"][0]["kind"] = json!("DaemonSet");
        v["metadata"]["ownerReferences"][0]["name"] = json!("agent");
    }));
    assert_eq!(fresh(&pod), Some(Rule::DaemonSet));
}

#[test]
fn rule_system_critical() {
    for class in [
        "system-cluster-critical",
        "system-node-critical",
        "system-x",
    ] {
        let pod = PodFacts::of(&mk_pod("dns-1", "n1", |v| {
            v["spec"]["priorityClassName"] = json!(class);
        }));
        assert_eq!(fresh(&pod), Some(Rule::SystemCritical), "{class}");
    }
    let pod = PodFacts::of(&mk_pod("dns-1", "n1", |v| {
        v["spec"]["priority"] = json!(CRITICAL_PRIORITY);
    }));
    assert_eq!(fresh(&pod), Some(Rule::SystemCritical));
    let pod = PodFacts::of(&mk_pod("web-1", "n1", |v| {
        v["spec"]["priority"] = json!(CRITICAL_PRIORITY - 1);
        v["spec"]["priorityClassName"] = json!("high");
    }));
    assert_eq!(fresh(&pod), None, "high but not critical");
}

#[test]
fn rule_cool_down() {
    let policy = EvictionPolicy::default();
    let t0 = Instant::now();
    let mut ledger = Ledger::new();
    ledger.roll(t0, policy.window, policy.cooldown);
    ledger.commit(&[mk_facts("web-1", "n1")], t0);
    let pod = mk_facts("web-2", "n2");
    // A later pass, in a later window: only the cool-down refuses.
    let later = t0 + policy.window + Duration::from_secs(1);
    ledger.roll(later, policy.window, policy.cooldown);
    let decide_at = |ledger: &Ledger, at| {
        rule_of(decide(
            &policy,
            ledger,
            &PassTally::default(),
            &pod,
            mk_count(4, 4),
            at,
        ))
    };
    assert_eq!(decide_at(&ledger, later), Some(Rule::CoolDown));
    let after = t0 + policy.cooldown;
    ledger.roll(after, policy.window, policy.cooldown);
    assert_eq!(decide_at(&ledger, after), None);
}

#[test]
fn rule_min_replicas() {
    let policy = EvictionPolicy::default();
    let pod = mk_facts("web-1", "n1");
    let with = |count| {
        rule_of(decide(
            &policy,
            &Ledger::new(),
            &PassTally::default(),
            &pod,
            count,
            Instant::now(),
        ))
    };
    // One pod, ready: the tolerance alone would let it go.
    assert_eq!(with(mk_count(1, 1)), Some(Rule::MinReplicas));
    // Three pods, one ready.
    assert_eq!(with(mk_count(3, 1)), Some(Rule::MinReplicas));
    assert_eq!(with(mk_count(2, 2)), None);
}

#[test]
fn rule_tolerance_keeps_half_of_the_pods_ready() {
    let policy = EvictionPolicy::default();
    let t = Instant::now();
    // 4 pods, 4 ready, tolerance 0.5: two may go in a pass, not a third.
    let mut pass = PassTally::default();
    let mut went = 0;
    for i in 0..4 {
        let pod = mk_facts(&format!("web-{i}"), &format!("n{i}"));
        if decide(&policy, &Ledger::new(), &pass, &pod, mk_count(4, 4), t).is_ok() {
            pass.take(&pod);
            went += 1;
        } else {
            assert_eq!(
                rule_of(decide(
                    &policy,
                    &Ledger::new(),
                    &pass,
                    &pod,
                    mk_count(4, 4),
                    t
                )),
                Some(Rule::Tolerance)
            );
        }
    }
    assert_eq!(went, 2);
    // 4 pods, 2 ready: none may go (at least 2 must stay ready).
    let pod = mk_facts("web-0", "n0");
    let r = decide(
        &policy,
        &Ledger::new(),
        &PassTally::default(),
        &pod,
        mk_count(4, 2),
        t,
    );
    assert_eq!(rule_of(r), Some(Rule::Tolerance));
    // 2 pods with min_replicas 1 and tolerance 0.2 (rounds to none): one may go
    // when both are ready, not when one is not.
    let policy = EvictionPolicy {
        min_replicas: 1,
        tolerance: 0.2,
        ..EvictionPolicy::default()
    };
    let at = |count| {
        rule_of(decide(
            &policy,
            &Ledger::new(),
            &PassTally::default(),
            &pod,
            count,
            t,
        ))
    };
    assert_eq!(at(mk_count(2, 2)), None);
    assert_eq!(at(mk_count(2, 1)), Some(Rule::Tolerance));
    assert_eq!(tolerated(5, 0.5), 2);
    assert_eq!(tolerated(3, 7.0), 3, "clamped");
}

#[test]
fn rule_limits_per_node_namespace_and_total() {
    let t = Instant::now();
    let roomy = EvictionPolicy {
        tolerance: 1.0,
        min_replicas: 0,
        ..EvictionPolicy::default()
    };
    // Pods of different workloads, so that only the limits count.
    let pod = |name: &str, ns: &str, node: &str| {
        PodFacts::of(&mk_pod(name, node, |v| {
            v["metadata"]["namespace"] = json!(ns);
            v["metadata"]["ownerReferences"][0]["name"] = json!(format!("{name}-7d9f8c6b5"));
        }))
    };
    let count = mk_count(10, 10);
    // Node: per_node 2 (this pass counts with the window).
    let mut ledger = Ledger::new();
    ledger.commit(&[pod("a", "x", "n1")], t);
    let mut pass = PassTally::default();
    pass.take(&pod("b", "y", "n1"));
    let r = decide(&roomy, &ledger, &pass, &pod("c", "z", "n1"), count, t);
    assert_eq!(rule_of(r), Some(Rule::NodeLimit));
    assert_eq!(
        rule_of(decide(
            &roomy,
            &ledger,
            &pass,
            &pod("c", "z", "n2"),
            count,
            t
        )),
        None
    );
    // Namespace: per_namespace 5.
    let policy = EvictionPolicy {
        per_node: 100,
        ..roomy.clone()
    };
    let mut pass = PassTally::default();
    for i in 0..5 {
        pass.take(&pod(&format!("p{i}"), "x", &format!("n{i}")));
    }
    let r = decide(
        &policy,
        &Ledger::new(),
        &pass,
        &pod("q", "x", "n9"),
        count,
        t,
    );
    assert_eq!(rule_of(r), Some(Rule::NamespaceLimit));
    // Total: 10.
    let policy = EvictionPolicy {
        per_node: 100,
        per_namespace: 100,
        ..roomy
    };
    let mut ledger = Ledger::new();
    let old: Vec<_> = (0..6)
        .map(|i| pod(&format!("o{i}"), &format!("ns{i}"), "n"))
        .collect();
    ledger.commit(&old, t);
    let mut pass = PassTally::default();
    for i in 0..4 {
        pass.take(&pod(&format!("p{i}"), &format!("ms{i}"), "n"));
    }
    let r = decide(&policy, &ledger, &pass, &pod("q", "fresh", "m"), count, t);
    assert_eq!(rule_of(r), Some(Rule::TotalLimit));
}

#[test]
fn counts_skip_terminating_pods_and_pods_without_workload() {
    let pods = [
        mk_facts("web-1", "n1"),
        PodFacts::of(&mk_pod("web-2", "n1", |v| {
            v["status"]["conditions"][0]["status"] = json!("False");
        })),
        PodFacts::of(&mk_pod("web-3", "n1", |v| {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        })),
        PodFacts::of(&mk_pod("bare", "n1", |v| {
            v["metadata"]
                .as_object_mut()
                .map(|m| m.remove("ownerReferences"));
        })),
    ];
    let counts = WorkloadCount::of_all(&pods);
    assert_eq!(counts.len(), 1);
    assert_eq!(counts.values().next(), Some(&mk_count(2, 1)));
}

#[test]
fn every_rule_has_a_name() {
    for rule in Rule::ALL {
        let json = serde_json::to_value(rule).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json, rule.as_str());
    }
}
