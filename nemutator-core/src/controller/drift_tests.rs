//! The drift decision on plain fixtures: each rule (QoS kept, resize only
//! where served, the resize conditions and their time limits) has a case
//! that would take the other branch without it.

use serde_json::json;

use super::*;

/// A running Burstable pod: `app` requests 100m / 64Mi, limits memory
/// 128Mi; `tweak` changes its JSON.
fn mk_pod(tweak: impl FnOnce(&mut serde_json::Value)) -> Pod {
    let mut v = json!({
        "metadata": {"name": "web-1", "namespace": "shop"},
        "spec": {"containers": [{"name": "app", "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"memory": "128Mi"},
        }}]},
        "status": {"phase": "Running"},
    });
    tweak(&mut v);
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
}

/// The desired view of `pod` with `app`'s resources set to `resources`.
fn mk_desired(pod: &Pod, resources: serde_json::Value) -> PodView {
    let mut view = PodView::from(pod);
    if let Some(spec) = view.spec.as_mut() {
        spec.containers[0].resources =
            Some(serde_json::from_value(resources).unwrap_or_else(|e| panic!("{e}")));
    }
    view
}

const NOW: i64 = 1_800_000_000;

fn condition(type_: &str, reason: &str, age_secs: i64) -> serde_json::Value {
    let at =
        k8s_openapi::jiff::Timestamp::from_second(NOW - age_secs).unwrap_or_else(|e| panic!("{e}"));
    json!({"type": type_, "status": "True", "reason": reason,
           "lastTransitionTime": at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()})
}

fn more_cpu() -> serde_json::Value {
    json!({"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}})
}

#[test]
fn qos_classes_as_the_kubelet_computes_them() {
    let rr = |v: serde_json::Value| -> ResourceRequirements {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    };
    let g = rr(
        json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1Gi"}}),
    );
    let limits_only = rr(json!({"limits": {"cpu": "1", "memory": "1Gi"}}));
    let b = rr(json!({"requests": {"cpu": "1"}}));
    assert_eq!(qos_class([Some(&g)]), QosClass::Guaranteed, "1 == 1000m");
    assert_eq!(
        qos_class([Some(&limits_only)]),
        QosClass::Guaranteed,
        "requests default to limits"
    );
    assert_eq!(qos_class([Some(&g), Some(&b)]), QosClass::Burstable);
    assert_eq!(qos_class([None, None]), QosClass::BestEffort);
}

#[test]
fn a_pod_at_its_recommendation_is_in_sync() {
    let pod = mk_pod(|_| {});
    assert_eq!(
        decide(&pod, &PodView::from(&pod), true, NOW),
        DriftAction::InSync
    );
}

#[test]
fn drift_within_the_qos_class_is_resized_in_place() {
    let pod = mk_pod(|_| {});
    let desired = mk_desired(&pod, more_cpu());
    let DriftAction::Resize(changed) = decide(&pod, &desired, true, NOW) else {
        panic!("{:?}", decide(&pod, &desired, true, NOW));
    };
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].0, "app");
    let patch = resize_patch(&changed);
    assert_eq!(
        patch["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "250m"
    );
}

#[test]
fn without_the_resize_subresource_the_pod_is_re_created() {
    let pod = mk_pod(|_| {});
    let desired = mk_desired(&pod, more_cpu());
    assert!(matches!(
        decide(&pod, &desired, false, NOW),
        DriftAction::Evict(_)
    ));
}

#[test]
fn a_change_of_qos_class_is_re_created_not_resized() {
    let pod = mk_pod(|_| {});
    // Requests equal to limits for both resources: Guaranteed.
    let desired = mk_desired(
        &pod,
        json!({"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"cpu": "250m", "memory": "128Mi"}}),
    );
    let action = decide(&pod, &desired, true, NOW);
    assert!(
        matches!(&action, DriftAction::Evict(why) if why.contains("QoS")),
        "{action:?}"
    );
}

#[test]
fn resize_conditions_wait_then_give_up_for_an_eviction() {
    let with = |c: serde_json::Value| {
        let pod = mk_pod(|v| v["status"]["conditions"] = json!([c]));
        let desired = mk_desired(&pod, more_cpu());
        decide(&pod, &desired, true, NOW)
    };
    assert!(matches!(
        with(condition(RESIZE_PENDING, "Infeasible", 1)),
        DriftAction::Evict(_)
    ));
    assert!(matches!(
        with(condition(RESIZE_PENDING, "Deferred", 60)),
        DriftAction::Wait(_)
    ));
    assert!(matches!(
        with(condition(RESIZE_PENDING, "Deferred", 301)),
        DriftAction::Evict(_)
    ));
    assert!(matches!(
        with(condition(RESIZE_IN_PROGRESS, "", 600)),
        DriftAction::Wait(_)
    ));
    assert!(matches!(
        with(condition(RESIZE_IN_PROGRESS, "", 3601)),
        DriftAction::Evict(_)
    ));
    // A condition that is not True does not count.
    let mut off = condition(RESIZE_PENDING, "Infeasible", 1);
    off["status"] = json!("False");
    assert!(matches!(with(off), DriftAction::Resize(_)));
}
