use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::metrics::{PodContainerRef, PodSignals, PodSignalsBatch};

/// A running pod `ns/name` on `node`, one container `app` with `resources`.
fn mk_pod(name: &str, node: &str, labels: serde_json::Value, resources: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop", "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "x", "resources": resources}]},
        "status": {"phase": "Running"},
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Requests 500m CPU, limits 1 CPU and 1000 bytes of memory.
fn mk_limited() -> serde_json::Value {
    json!({"requests": {"cpu": "500m", "memory": "100"}, "limits": {"cpu": "1", "memory": "1000"}})
}

fn mk_signals(cpu: Option<f64>, memory: Option<f64>, throttled: Option<f64>) -> PodSignals {
    PodSignals {
        cpu,
        memory,
        throttled,
    }
}

fn mk_app(s: PodSignals) -> BTreeMap<String, PodSignals> {
    BTreeMap::from([("app".to_owned(), s)])
}

fn mk_batch(entries: &[(&str, PodSignals)]) -> PodSignalsBatch {
    PodSignalsBatch {
        containers: entries
            .iter()
            .map(|(pod, s)| {
                (
                    PodContainerRef {
                        namespace: "shop".into(),
                        pod: (*pod).into(),
                        container: "app".into(),
                    },
                    *s,
                )
            })
            .collect(),
    }
}

fn config() -> NoisyConfig {
    NoisyConfig::default()
}

/// All quiet: 0.5 cores of a 500m request (ratio 1), no throttling, 10% of memory.
fn quiet() -> PodSignals {
    mk_signals(Some(0.5), Some(100.0), Some(0.0))
}

#[test]
fn cpu_far_above_its_request_is_noisy() {
    let pod = mk_pod("a", "n1", json!({}), mk_limited());
    // 1.0 cores on a 500m request: twice the request, the threshold.
    let s = score(
        &pod,
        &mk_app(mk_signals(Some(1.0), Some(100.0), Some(0.0))),
        &config(),
    );
    assert_eq!(s.verdict, Verdict::Noisy);
    assert_eq!(s.reasons.len(), 1);
    assert_eq!(s.reasons[0].rule, NoisyRule::CpuOverRequest);
    assert_eq!(s.reasons[0].container, "app");
    assert!((s.reasons[0].value - 2.0).abs() < 1e-9);
    assert!((s.score - 1.0).abs() < 1e-9);
    // Just under: not noisy.
    let s = score(
        &pod,
        &mk_app(mk_signals(Some(0.99), Some(100.0), Some(0.0))),
        &config(),
    );
    assert_ne!(s.verdict, Verdict::Noisy);
}

#[test]
fn an_unset_cpu_request_is_the_limit() {
    let pod = mk_pod("a", "n1", json!({}), json!({"limits": {"cpu": "250m"}}));
    let s = score(
        &pod,
        &mk_app(mk_signals(Some(0.5), None, Some(0.0))),
        &config(),
    );
    assert_eq!(s.verdict, Verdict::Noisy, "{s:?}");
    assert_eq!(s.reasons[0].rule, NoisyRule::CpuOverRequest);
}

#[test]
fn cpu_throttling_is_noisy() {
    let pod = mk_pod("a", "n1", json!({}), mk_limited());
    let s = score(
        &pod,
        &mk_app(mk_signals(Some(0.5), Some(100.0), Some(0.3))),
        &config(),
    );
    assert_eq!(s.verdict, Verdict::Noisy);
    assert_eq!(s.reasons[0].rule, NoisyRule::Throttled);
    assert!((s.score - 0.3 / 0.25).abs() < 1e-9);
}

#[test]
fn memory_near_its_limit_is_noisy() {
    let pod = mk_pod("a", "n1", json!({}), mk_limited());
    let s = score(
        &pod,
        &mk_app(mk_signals(Some(0.5), Some(950.0), Some(0.0))),
        &config(),
    );
    assert_eq!(s.verdict, Verdict::Noisy);
    assert_eq!(s.reasons[0].rule, NoisyRule::MemoryNearLimit);
    assert!((s.reasons[0].value - 0.95).abs() < 1e-9);
}

#[test]
fn reasons_are_largest_first() {
    let pod = mk_pod("a", "n1", json!({}), mk_limited());
    // cpu 4x (2x threshold), throttled 0.3 (1.2x), memory 0.95 (1.06x).
    let s = score(
        &pod,
        &mk_app(mk_signals(Some(2.0), Some(950.0), Some(0.3))),
        &config(),
    );
    let rules: Vec<NoisyRule> = s.reasons.iter().map(|r| r.rule).collect();
    assert_eq!(
        rules,
        [
            NoisyRule::CpuOverRequest,
            NoisyRule::Throttled,
            NoisyRule::MemoryNearLimit
        ]
    );
    assert!((s.score - 2.0).abs() < 1e-9);
}

#[test]
fn a_rule_applies_only_where_the_spec_gives_a_measure() {
    // No limits: neither throttling nor memory can be judged; huge values
    // of those signals do not make it noisy.
    let pod = mk_pod("a", "n1", json!({}), json!({"requests": {"cpu": "1"}}));
    let s = score(
        &pod,
        &mk_app(mk_signals(Some(0.5), Some(1e12), Some(0.9))),
        &config(),
    );
    assert_eq!(s.verdict, Verdict::Quiet, "{s:?}");
    assert!(s.reasons.is_empty());
    // No requests or limits at all: nothing is known, nothing decided.
    let pod = mk_pod("b", "n1", json!({}), json!({}));
    let s = score(
        &pod,
        &mk_app(mk_signals(Some(8.0), Some(1e12), Some(0.9))),
        &config(),
    );
    assert_eq!(s.verdict, Verdict::Unsure);
    assert_eq!(s.score, 0.0);
}

#[test]
fn quiet_needs_every_rule_known_and_clearly_below() {
    let pod = mk_pod("a", "n1", json!({}), mk_limited());
    assert_eq!(
        score(&pod, &mk_app(quiet()), &config()).verdict,
        Verdict::Quiet
    );
    // The throttled signal missing while the container has a CPU limit.
    let s = score(
        &pod,
        &mk_app(mk_signals(Some(0.5), Some(100.0), None)),
        &config(),
    );
    assert_eq!(s.verdict, Verdict::Unsure);
    // No signals for the pod at all.
    let s = score(&pod, &BTreeMap::new(), &config());
    assert_eq!(s.verdict, Verdict::Unsure);
    // Within the band: cpu 1.8x (0.9 of the threshold, above clear_at 0.8).
    let s = score(
        &pod,
        &mk_app(mk_signals(Some(0.9), Some(100.0), Some(0.0))),
        &config(),
    );
    assert_eq!(s.verdict, Verdict::Unsure);
}

#[test]
fn a_container_without_signals_is_unknown_and_a_finished_init_container_is_not() {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "a", "namespace": "shop"},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "x", "resources": {"limits": {"cpu": "1", "memory": "10"}}}],
            "containers": [
                {"name": "app", "image": "x", "resources": mk_limited()},
                {"name": "side", "image": "x", "resources": {"limits": {"memory": "10"}}},
            ],
        },
        "status": {"phase": "Running"},
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    // `side` has no signals: the pod cannot be cleared.
    assert_eq!(
        score(&pod, &mk_app(quiet()), &config()).verdict,
        Verdict::Unsure
    );
    // With `side` known, the finished init container does not hold it back.
    let mut s = mk_app(quiet());
    s.insert("side".into(), mk_signals(None, Some(1.0), None));
    assert_eq!(score(&pod, &s, &config()).verdict, Verdict::Quiet);
}

#[test]
fn nonsense_signals_are_unknown() {
    let pod = mk_pod("a", "n1", json!({}), mk_limited());
    for bad in [f64::NAN, f64::INFINITY, -1.0] {
        let s = score(
            &pod,
            &mk_app(mk_signals(Some(bad), Some(100.0), Some(0.0))),
            &config(),
        );
        assert_eq!(s.verdict, Verdict::Unsure, "{bad}");
    }
}

/// Fails without the hysteresis: a labelled pod in the band between
/// `clear_at` and the threshold keeps its label, an unlabelled one stays
/// unlabelled; only clearly below does the label go.
#[test]
fn hysteresis_keeps_a_pod_from_flapping() {
    let in_band = mk_app(mk_signals(Some(0.9), Some(100.0), Some(0.0)));
    let labelled = mk_pod("a", "n1", json!({NOISY_LABEL: NOISY_VALUE}), mk_limited());
    let unlabelled = mk_pod("b", "n1", json!({}), mk_limited());
    let pods = [Arc::new(labelled), Arc::new(unlabelled)];
    let batch = mk_batch(&[("a", in_band["app"]), ("b", in_band["app"])]);
    let judged = judge(&pods, &batch, &config());
    let of = |name: &str| {
        judged
            .iter()
            .find(|j| j.key.name == name)
            .unwrap_or_else(|| panic!("{name} not judged"))
            .clone()
    };
    assert!(of("a").noisy, "a labelled pod in the band keeps the label");
    assert!(!of("a").label_changes());
    assert!(
        !of("b").noisy,
        "an unlabelled pod in the band stays unlabelled"
    );
    // Clearly below: the label goes.
    let batch = mk_batch(&[("a", quiet())]);
    let judged = judge(&pods, &batch, &config());
    assert!(!judged[0].noisy && judged[0].label_changes(), "{judged:?}");
}

#[test]
fn a_pod_without_signals_keeps_its_label() {
    let labelled = mk_pod("a", "n1", json!({NOISY_LABEL: NOISY_VALUE}), mk_limited());
    let other = mk_pod("b", "n1", json!({}), mk_limited());
    let judged = judge(
        &[Arc::new(labelled), Arc::new(other)],
        &PodSignalsBatch::default(),
        &config(),
    );
    assert_eq!(
        judged.len(),
        1,
        "only the labelled pod is listed: {judged:?}"
    );
    assert!(judged[0].noisy && !judged[0].has_signals && !judged[0].label_changes());
}

fn noisy_signals() -> PodSignals {
    mk_signals(Some(2.0), Some(100.0), Some(0.0))
}

#[test]
fn a_noisy_pod_on_a_precious_pods_node_is_evicted_and_one_elsewhere_is_not() {
    let pods = [
        Arc::new(mk_pod(
            "db",
            "n1",
            json!({TIER_LABEL: PRECIOUS}),
            mk_limited(),
        )),
        Arc::new(mk_pod("near", "n1", json!({}), mk_limited())),
        Arc::new(mk_pod("far", "n2", json!({}), mk_limited())),
        Arc::new(mk_pod("calm", "n1", json!({}), mk_limited())),
    ];
    let batch = mk_batch(&[
        ("near", noisy_signals()),
        ("far", noisy_signals()),
        ("calm", quiet()),
        ("db", quiet()),
    ]);
    let judged = judge(&pods, &batch, &config());
    let of = |name: &str| {
        judged
            .iter()
            .find(|j| j.key.name == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    assert!(of("near").evict && of("near").noisy);
    assert_eq!(of("near").precious_neighbours, ["shop/db"]);
    assert!(of("far").noisy && !of("far").evict);
    assert!(!of("calm").noisy && !of("calm").evict);
    assert!(!of("db").evict && of("db").precious);
    assert_eq!(
        judged[0].key.name, "far",
        "largest score first, then by name"
    );
}

/// A precious pod is what is protected: noisy or not, never evicted as a
/// noisy neighbour (even of another precious pod).
#[test]
fn a_precious_pod_is_never_evicted_as_a_noisy_neighbour() {
    let pods = [
        Arc::new(mk_pod(
            "db",
            "n1",
            json!({TIER_LABEL: PRECIOUS}),
            mk_limited(),
        )),
        Arc::new(mk_pod(
            "cache",
            "n1",
            json!({TIER_LABEL: PRECIOUS}),
            mk_limited(),
        )),
    ];
    let batch = mk_batch(&[("db", noisy_signals()), ("cache", quiet())]);
    let judged = judge(&pods, &batch, &config());
    let db = judged
        .iter()
        .find(|j| j.key.name == "db")
        .unwrap_or_else(|| panic!());
    assert!(db.noisy && db.precious_neighbours == ["shop/cache"]);
    assert!(!db.evict);
}

/// A label kept by hysteresis (or without signals) is no ground for an
/// eviction: only what the signals say now is.
#[test]
fn only_a_pod_noisy_now_is_evicted() {
    let labelled = json!({NOISY_LABEL: NOISY_VALUE});
    let pods = [
        Arc::new(mk_pod(
            "db",
            "n1",
            json!({TIER_LABEL: PRECIOUS}),
            mk_limited(),
        )),
        Arc::new(mk_pod("band", "n1", labelled.clone(), mk_limited())),
        Arc::new(mk_pod("silent", "n1", labelled, mk_limited())),
    ];
    let batch = mk_batch(&[("band", mk_signals(Some(0.9), Some(100.0), Some(0.0)))]);
    let judged = judge(&pods, &batch, &config());
    assert_eq!(judged.len(), 2, "{judged:?}");
    for j in &judged {
        assert!(j.noisy && !j.evict, "{j:?}");
    }
}

#[test]
fn pods_that_do_not_run_are_not_judged() {
    let mut pending = mk_pod("p", "n1", json!({}), mk_limited());
    pending.status = None;
    let mut deleted = mk_pod("d", "n1", json!({}), mk_limited());
    deleted.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    // A precious pod being deleted protects nobody.
    let mut gone_db = mk_pod("db", "n1", json!({TIER_LABEL: PRECIOUS}), mk_limited());
    gone_db.metadata.deletion_timestamp = deleted.metadata.deletion_timestamp.clone();
    let near = mk_pod("near", "n1", json!({}), mk_limited());
    let pods = [pending, deleted, gone_db, near].map(Arc::new);
    let batch = mk_batch(&[
        ("p", noisy_signals()),
        ("d", noisy_signals()),
        ("near", noisy_signals()),
    ]);
    let judged = judge(&pods, &batch, &config());
    assert_eq!(judged.len(), 1);
    assert!(judged[0].noisy && !judged[0].evict && judged[0].precious_neighbours.is_empty());
}

#[test]
fn the_label_patch_sets_and_removes() {
    assert_eq!(
        label_patch(true),
        json!({"metadata": {"labels": {"nemutator.io/noisy": "true"}}})
    );
    assert_eq!(
        label_patch(false),
        json!({"metadata": {"labels": {"nemutator.io/noisy": null}}})
    );
}

#[test]
fn the_config_has_defaults_and_refuses_nonsense() {
    let c: NoisyConfig = serde_yaml::from_str("enabled: true").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.window.as_secs(), 300);
    assert_eq!(c.interval.as_secs(), 60);
    assert_eq!(c.cpu_over_request.get(), 2.0);
    assert_eq!(c.evict, NoisyMode::DryRun);
    assert_eq!(c.label, NoisyMode::On);
    let c: NoisyConfig = serde_yaml::from_str("evict: on\nthrottled: 0.5\nwindow: 10m")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.evict, NoisyMode::On);
    assert_eq!(c.throttled.get(), 0.5);
    for bad in [
        "throttled: 1.5",
        "memory_near_limit: 0",
        "cpu_over_request: -1",
        "clear_at: 2",
        "evict: yes-please",
        "treshold: 1",
    ] {
        let e = serde_yaml::from_str::<NoisyConfig>(bad).map(|_| ());
        assert!(e.is_err(), "{bad} accepted");
    }
}

proptest! {
    /// The verdict agrees with the score: noisy exactly when the score
    /// reaches 1, and a pod is never both labelled quiet and over a threshold.
    #[test]
    fn the_verdict_follows_the_score(
        cpu in proptest::option::of(0.0f64..10.0),
        memory in proptest::option::of(0.0f64..2000.0),
        throttled in proptest::option::of(0.0f64..1.0),
        labelled in any::<bool>(),
    ) {
        let pod = mk_pod("a", "n1", json!({}), mk_limited());
        let s = score(&pod, &mk_app(mk_signals(cpu, memory, throttled)), &config());
        prop_assert_eq!(s.verdict == Verdict::Noisy, s.score >= 1.0);
        if s.verdict == Verdict::Quiet {
            prop_assert!(s.score < config().clear_at.get());
        }
        let after = labelled_after(labelled, s.verdict);
        prop_assert!(after || s.verdict != Verdict::Noisy);
    }
}

proptest! {
    /// Whatever the pods, labels and signals: only a pod noisy now, not
    /// precious, with a running precious pod on its node is handed over;
    /// the label follows [`labelled_after`].
    #[test]
    fn only_noisy_non_precious_pods_beside_a_precious_one_are_evicted(
        pods in proptest::collection::vec(
            (0u8..3, any::<bool>(), any::<bool>(), proptest::option::of(0.0f64..2.0)),
            1..12,
        ),
    ) {
        let mut list = Vec::new();
        let mut entries = Vec::new();
        for (i, (node, precious, labelled, cpu)) in pods.iter().enumerate() {
            let name = format!("p{i}");
            let mut labels = serde_json::Map::new();
            if *precious {
                labels.insert(TIER_LABEL.into(), json!(PRECIOUS));
            }
            if *labelled {
                labels.insert(NOISY_LABEL.into(), json!(NOISY_VALUE));
            }
            list.push(Arc::new(mk_pod(&name, &format!("n{node}"), labels.into(), mk_limited())));
            if let Some(cpu) = cpu {
                entries.push((name, mk_signals(Some(*cpu), Some(100.0), Some(0.0))));
            }
        }
        let refs: Vec<(&str, PodSignals)> = entries.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        let judged = judge(&list, &mk_batch(&refs), &config());
        for j in &judged {
            let i: usize = j.key.name[1..].parse().unwrap_or_else(|e| panic!("{e}"));
            let (node, precious, labelled, _) = pods[i];
            prop_assert_eq!(j.noisy, labelled_after(labelled, j.score.verdict));
            let beside = pods.iter().enumerate().any(|(k, p)| k != i && p.0 == node && p.1);
            prop_assert_eq!(j.evict, j.score.verdict == Verdict::Noisy && !precious && beside);
        }
    }
}
