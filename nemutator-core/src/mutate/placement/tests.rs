//! The placement rules ([`place`]), the layer, and the patches they give.

use std::path::Path;

use serde_json::{json, Value};

use super::*;
use crate::config::Config;
use crate::mutate::{Pipeline, PodView};
use crate::patch::PodSnapshot;
use crate::workload::{WorkloadKey, WorkloadKind};

/// A pod of the `api` Deployment in `shop` with `labels`, `annotations`
/// and extra `spec` fields, as the API server sends it (with fields the
/// view does not model).
fn mk_object(labels: Value, annotations: Value, spec: Value) -> Value {
    let mut object = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "api-6b7c9d8f5-", "namespace": "shop",
            "labels": labels, "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": true,
                                 "name": "api-6b7c9d8f5", "uid": "u1"}]
        },
        "spec": {"containers": [{"name": "api", "image": "x", "ports": [{"containerPort": 80}]}],
                 "priority": 0}
    });
    if let (Some(s), Value::Object(extra)) = (object["spec"].as_object_mut(), spec) {
        s.extend(extra);
    }
    object
}

fn mk_review(object: &Value) -> PodReview {
    let pod: PodView = serde_json::from_value(object.clone()).unwrap_or_else(|e| panic!("{e}"));
    PodReview::new("shop", pod)
}

fn mk_config(yaml: &str) -> PlacementConfig {
    Config::from_yaml(yaml, Path::new("c.yaml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .placement
}

fn api() -> WorkloadKey {
    WorkloadKey::new("shop", WorkloadKind::Deployment, "api")
}

/// `object` after the rules, through the JSON Patch of the view's diff
/// (which must apply to the object as sent).
fn patched(object: &Value, config: &PlacementConfig, noisy: bool) -> (Value, PodReview) {
    let mut review = mk_review(object);
    let snap = PodSnapshot::of(&review.pod);
    place(&mut review, config, noisy);
    let patch = snap.diff(&review.pod).unwrap_or_else(|e| panic!("{e}"));
    let mut out = object.clone();
    json_patch::patch(&mut out, &patch).unwrap_or_else(|e| panic!("{e}: {patch:?}"));
    (out, review)
}

fn precious() -> Value {
    json!({"app": "api", "nemutator.io/tier": "precious"})
}

const ANTI: &str = "/spec/affinity/podAntiAffinity";
const PREFERRED: &str = "preferredDuringSchedulingIgnoredDuringExecution";
const REQUIRED: &str = "requiredDuringSchedulingIgnoredDuringExecution";

#[test]
fn a_precious_pod_without_affinity_gets_a_term_against_noisy_pods() {
    let object = mk_object(precious(), json!({}), json!({}));
    let (out, review) = patched(&object, &PlacementConfig::default(), false);
    assert_eq!(
        out.pointer(&format!("{ANTI}/{PREFERRED}")),
        Some(&json!([{
            "weight": 100,
            "podAffinityTerm": {
                "labelSelector": {"matchLabels": {"nemutator.io/noisy": "true"}},
                "namespaceSelector": {},
                "topologyKey": "kubernetes.io/hostname"
            }
        }]))
    );
    assert!(out["metadata"]["labels"]
        .get("nemutator.io/noisy")
        .is_none());
    assert_eq!(
        out["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80}])
    );
    assert_eq!(
        review.audit["placement"],
        "precious: preferred pod anti-affinity against nemutator.io/noisy=true per kubernetes.io/hostname"
    );
    assert!(review.warnings.is_empty());
}

#[test]
fn existing_terms_and_tolerations_are_kept_and_appended_to() {
    let own_term = json!({"weight": 5, "podAffinityTerm": {
        "labelSelector": {"matchLabels": {"app": "api"}}, "topologyKey": "zone",
        "futureField": "kept"}});
    let spec = json!({
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "arch", "operator": "In", "values": ["arm64"]}]}]}},
            "podAntiAffinity": {PREFERRED: [own_term.clone()],
                                REQUIRED: [{"topologyKey": "kubernetes.io/hostname",
                                            "labelSelector": {"matchLabels": {"app": "api"}}}]}
        },
        "tolerations": [{"key": "own", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"disk": "ssd"}
    });
    let object = mk_object(json!({"app": "api"}), json!({}), spec);
    let config = mk_config(
        "placement:
  enabled: true
  noisy:
    node_selector: { pool: noisy }
    tolerations: [{ key: pool, value: noisy, effect: NoSchedule }]
",
    );
    let (out, review) = patched(&object, &config, true);
    let preferred = &out["spec"]["affinity"]["podAntiAffinity"][PREFERRED];
    assert_eq!(preferred[0], own_term, "the pod's own term, untouched");
    assert_eq!(
        preferred[1]["podAffinityTerm"]["labelSelector"],
        json!({"matchLabels": {"nemutator.io/tier": "precious"}})
    );
    assert_eq!(
        out["spec"]["affinity"]["podAntiAffinity"][REQUIRED],
        object["spec"]["affinity"]["podAntiAffinity"][REQUIRED]
    );
    assert_eq!(
        out["spec"]["affinity"]["nodeAffinity"],
        object["spec"]["affinity"]["nodeAffinity"]
    );
    assert_eq!(
        out["spec"]["tolerations"],
        json!([{"key": "own", "operator": "Exists", "effect": "NoSchedule"},
               {"key": "pool", "operator": "Equal", "value": "noisy", "effect": "NoSchedule"}])
    );
    assert_eq!(
        out["spec"]["nodeSelector"],
        json!({"disk": "ssd", "pool": "noisy"})
    );
    assert_eq!(out["metadata"]["labels"]["nemutator.io/noisy"], "true");
    assert_eq!(
        review.audit["placement"],
        "labelled nemutator.io/noisy=true (shop/Deployment/api has noisy pods); \
         noisy: preferred pod anti-affinity against nemutator.io/tier=precious per kubernetes.io/hostname; \
         nodeSelector pool=noisy; 1 toleration(s) of the noisy pool"
    );
}

#[test]
fn the_patch_adds_terms_at_the_end_without_rewriting_the_list() {
    let spec = json!({"affinity": {"podAntiAffinity": {REQUIRED: [
        {"topologyKey": "zone", "labelSelector": {"matchLabels": {"a": "b"}}}]}}});
    let object = mk_object(precious(), json!({}), spec);
    let mut review = mk_review(&object);
    let snap = PodSnapshot::of(&review.pod);
    place(
        &mut review,
        &mk_config("placement: { strength: required }"),
        false,
    );
    let ops = serde_json::to_value(snap.diff(&review.pod).unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_default();
    assert_eq!(
        ops,
        json!([{"op": "add", "path": format!("{ANTI}/{REQUIRED}/-"), "value": {
            "labelSelector": {"matchLabels": {"nemutator.io/noisy": "true"}},
            "namespaceSelector": {}, "topologyKey": "kubernetes.io/hostname"}}])
    );
}

#[test]
fn the_pods_own_node_selector_keys_are_never_overwritten() {
    let object = mk_object(
        precious(),
        json!({}),
        json!({"nodeSelector": {"pool": "mine"}}),
    );
    let config = mk_config(
        "placement: { precious: { node_selector: { pool: gold, tier: a }, \
         tolerations: [{ key: gold, operator: Exists }] } }",
    );
    let (out, review) = patched(&object, &config, false);
    assert_eq!(
        out["spec"]["nodeSelector"],
        json!({"pool": "mine", "tier": "a"})
    );
    assert_eq!(
        out["spec"]["tolerations"],
        json!([{"key": "gold", "operator": "Exists"}])
    );
    assert_eq!(
        review.warnings,
        [
            "nemutator.io/placement: nodeSelector pool=mine kept as the pod sets it; \
          the precious pool's pool=gold not applied"
        ]
    );
    assert!(
        review.audit["placement"].contains("nodeSelector pool=mine kept (the pod's own), not gold"),
        "{}",
        review.audit["placement"]
    );
}

#[test]
fn an_annotated_pod_is_untouched_and_a_bad_value_warns() {
    for (value, warns) in [("off", false), ("sometimes", true)] {
        let object = mk_object(
            precious(),
            json!({"nemutator.io/placement": value}),
            json!({}),
        );
        let mut review = mk_review(&object);
        let before = review.pod.clone();
        place(&mut review, &PlacementConfig::default(), true);
        assert_eq!(review.pod, before, "{value}");
        assert_eq!(review.warnings.len(), usize::from(warns), "{value}");
        assert!(review.audit["placement"].contains("nemutator.io/placement"));
    }
}

#[test]
fn other_pods_are_untouched_and_labelled_noisy_pods_count_as_noisy() {
    let object = mk_object(json!({"app": "api"}), json!({}), json!({}));
    let mut review = mk_review(&object);
    let before = review.pod.clone();
    place(&mut review, &PlacementConfig::default(), false);
    assert_eq!(review.pod, before);
    assert!(review.audit.is_empty());

    // A pod that comes labelled noisy (its template says so): the noisy
    // rules, the label left as it is.
    let object = mk_object(json!({"nemutator.io/noisy": "true"}), json!({}), json!({}));
    let (out, review) = patched(&object, &PlacementConfig::default(), false);
    assert_eq!(
        out.pointer(&format!(
            "{ANTI}/{PREFERRED}/0/podAffinityTerm/labelSelector"
        )),
        Some(&json!({"matchLabels": {"nemutator.io/tier": "precious"}}))
    );
    assert!(!review.audit["placement"].contains("labelled"));
}

#[test]
fn a_precious_pod_of_a_noisy_workload_gets_the_precious_rules_only() {
    let object = mk_object(precious(), json!({}), json!({}));
    let (out, review) = patched(&object, &PlacementConfig::default(), true);
    assert!(out["metadata"]["labels"]
        .get("nemutator.io/noisy")
        .is_none());
    let terms = out
        .pointer(&format!("{ANTI}/{PREFERRED}"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(terms.as_array().map(Vec::len), Some(1));
    assert_eq!(
        terms[0]["podAffinityTerm"]["labelSelector"]["matchLabels"],
        json!({"nemutator.io/noisy": "true"})
    );
    assert!(review.audit["placement"].starts_with("precious and noisy"));
}

#[test]
fn a_daemon_set_pod_is_left_alone() {
    let mut object = mk_object(precious(), json!({}), json!({}));
    object["metadata"]["ownerReferences"][0]["kind"] = json!("DaemonSet");
    let mut review = mk_review(&object);
    let before = review.pod.clone();
    place(&mut review, &PlacementConfig::default(), true);
    assert_eq!(review.pod, before);
    assert_eq!(
        review.audit["placement"],
        "a DaemonSet pod runs where it is made for: left alone"
    );
}

#[test]
fn placing_twice_adds_nothing_the_second_time() {
    let object = mk_object(precious(), json!({}), json!({}));
    let config =
        mk_config("placement: { precious: { tolerations: [{ key: a, operator: Exists }] } }");
    let (once, _) = patched(&object, &config, false);
    let (twice, review) = patched(&once, &config, false);
    assert_eq!(once, twice);
    assert!(review.audit["placement"].contains("(already there)"));
}

#[tokio::test]
async fn the_layer_reads_the_noisy_workloads_and_does_nothing_when_disabled() {
    let object = mk_object(
        json!({"app": "api", "pod-template-hash": "6b7c9d8f5"}),
        json!({}),
        json!({}),
    );
    let noisy = NoisyWorkloads::new();
    let meta = |ns: &str, rs: &str| -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        serde_json::from_value(json!({"name": format!("{rs}-x2x4z"), "namespace": ns,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": true,
                                 "name": rs, "uid": "u"}]}))
        .unwrap_or_default()
    };
    let run = |config: PlacementConfig, noisy: NoisyWorkloads| {
        let object = object.clone();
        async move {
            let pipeline = Pipeline::builder()
                .layer(PlacementLayer::new(&config, noisy))
                .build();
            let out = pipeline.run(mk_review(&object)).await;
            out.unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let labelled = |r: &PodReview| {
        r.pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("nemutator.io/noisy"))
            .cloned()
    };
    let on = mk_config("placement: { enabled: true }");
    assert_eq!(labelled(&run(on.clone(), noisy.clone()).await), None);

    // Another namespace's `api` is another workload.
    noisy.replace([&meta("other", "api-6b7c9d8f5")]);
    assert_eq!(labelled(&run(on.clone(), noisy.clone()).await), None);
    noisy.replace([
        &meta("other", "api-6b7c9d8f5"),
        &meta("shop", "api-7d9f5c6b8"),
    ]);
    assert!(noisy.contains(&api()));
    assert_eq!(
        labelled(&run(on, noisy.clone()).await).as_deref(),
        Some("true")
    );
    assert_eq!(
        labelled(&run(PlacementConfig::default(), noisy).await),
        None,
        "disabled"
    );
}

#[test]
fn the_configuration_is_checked_as_it_is_read() {
    let c = mk_config("");
    assert_eq!(
        (c.enabled, c.strength, c.weight, c.topology_key.as_str()),
        (false, Strength::Preferred, 100, "kubernetes.io/hostname")
    );
    let c = mk_config("placement: { enabled: true, strength: required, weight: 1, topology_key: topology.kubernetes.io/zone }");
    assert_eq!((c.strength, c.weight), (Strength::Required, 1));
    // Left out of the written configuration when it is the default.
    let text = serde_yaml::to_string(&Config::default()).unwrap_or_default();
    assert!(!text.contains("placement"), "{text}");
    for (bad, says) in [
        ("placement: { weight: 0 }", "weight 0: expected 1 to 100"),
        ("placement: { weight: 101 }", "expected 1 to 100"),
        ("placement: { strength: hard }", "unknown variant `hard`"),
        ("placement: { topology_key: \"\" }", "is not a label key"),
        ("placement: { enable: true }", "unknown field `enable`"),
        (
            "placement: { noisy: { node_selector: { \"a b\": x } } }",
            "is not a label key",
        ),
        (
            "placement: { noisy: { node_selector: { a: \"-x\" } } }",
            "is not a label value",
        ),
        (
            "placement: { noisy: { tolerations: [{ key: a, operator: Exists, value: b }] } }",
            "takes no value",
        ),
        (
            "placement: { noisy: { tolerations: [{ value: b }] } }",
            "needs operator Exists",
        ),
        (
            "placement: { noisy: { tolerations: [{ key: a, tolerationSeconds: 5 }] } }",
            "needs effect NoExecute",
        ),
        (
            "placement: { noisy: { tolerations: [{ key: a, effect: NoWay }] } }",
            "unknown variant `NoWay`",
        ),
        (
            "placement: { noisy: { tolerations: [{ key: a, colour: b }] } }",
            "unknown field `colour`",
        ),
    ] {
        let e = Config::from_yaml(bad, Path::new("c.yaml")).expect_err(bad);
        let e = crate::error::Chain(&e).to_string();
        assert!(e.contains(says) && !e.contains('\n'), "{bad}: {e}");
    }
}
