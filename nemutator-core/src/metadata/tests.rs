use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::config::Config;

fn mk_rules(yaml: &str) -> MetadataConfig {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn mk_map(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn config_error(yaml: &str) -> String {
    let e = Config::from_yaml(yaml, Path::new("c.yaml")).expect_err(yaml);
    crate::error::Chain(&e).to_string()
}

#[test]
fn namespaces_are_globs_and_kube_system_only_by_name() {
    let rules = mk_rules(
        "rules:\n\
         - { name: all, labels: { a: b } }\n\
         - { name: teams, namespaces: [\"team-*\"], exclude_namespaces: [team-x], labels: { a: b } }\n\
         - { name: sys, namespaces: [kube-system, \"*\"], labels: { a: b } }\n",
    );
    let [all, teams, sys] = &rules.rules[..] else {
        panic!("three rules")
    };
    assert!(all.covers("shop"));
    assert!(!all.covers("kube-system"));
    assert!(teams.covers("team-a"));
    assert!(!teams.covers("team-x"));
    assert!(!teams.covers("shop"));
    assert!(sys.covers("kube-system"));
    assert!(sys.covers("shop"));
}

#[test]
fn later_rules_win_and_selectors_pick_pods() {
    let rules = mk_rules(
        "rules:\n\
         - { name: base, labels: { team: core, tier: web }, annotations: { owner: core } }\n\
         - name: payments\n\
         \x20 selector: { matchLabels: { app: pay } }\n\
         \x20 labels: { team: payments }\n\
         \x20 remove_labels: [tier, legacy]\n\
         \x20 remove_annotations: [owner]\n",
    );
    let mut labels = mk_map(&[("app", "pay"), ("legacy", "1")]);
    let mut annotations = None;
    let applied = rules.apply("shop", &mut labels, &mut annotations, Stage::Admission);
    assert_eq!(applied.rules, ["base", "payments"]);
    assert_eq!(labels, mk_map(&[("app", "pay"), ("team", "payments")]));
    assert_eq!(
        annotations,
        mk_map(&[(
            METADATA_APPLIED,
            r#"{"labels":{"legacy":{"from":"1"},"team":{"to":"payments"}}}"#
        )])
    );
    assert_eq!(applied.changes, ["label -legacy", "label team=payments"]);

    // Another app: only the first rule.
    let mut labels = mk_map(&[("app", "web")]);
    let mut annotations = None;
    let applied = rules.apply("shop", &mut labels, &mut annotations, Stage::Admission);
    assert_eq!(applied.rules, ["base"]);
    assert_eq!(
        labels,
        mk_map(&[("app", "web"), ("team", "core"), ("tier", "web")])
    );
    assert_eq!(
        annotations
            .unwrap_or_default()
            .get("owner")
            .map(String::as_str),
        Some("core")
    );
}

#[test]
fn no_rules_and_no_record_leave_the_pod_as_it_is() {
    let rules = MetadataConfig::default();
    let mut labels = None;
    let mut annotations = None;
    let applied = rules.apply("shop", &mut labels, &mut annotations, Stage::Admission);
    assert_eq!(applied, Applied::default());
    assert_eq!((labels, annotations), (None, None));
    // A rule that matches nothing leaves absent maps absent.
    let rules = mk_rules("rules: [{ name: r, namespaces: [other], labels: { a: b } }]");
    let mut labels = None;
    let mut annotations = None;
    rules.apply("shop", &mut labels, &mut annotations, Stage::Admission);
    assert_eq!((labels, annotations), (None, None));
}

#[test]
fn what_a_removed_rule_changed_is_undone_unless_changed_since() {
    let one = mk_rules(
        "rules: [{ name: r, labels: { team: a, env: prod, tier: x }, remove_labels: [old], annotations: { n: x } }]",
    );
    let mut labels = mk_map(&[("app", "web"), ("tier", "front"), ("old", "1")]);
    let mut annotations = None;
    one.apply("shop", &mut labels, &mut annotations, Stage::Admission);
    // Someone relabels env by hand.
    if let Some(l) = labels.as_mut() {
        l.insert("env".into(), "staging".into());
    }
    let none = MetadataConfig::default();
    let applied = none.apply("shop", &mut labels, &mut annotations, Stage::Running);
    assert_eq!(
        labels,
        mk_map(&[
            ("app", "web"),
            ("env", "staging"),
            ("old", "1"),
            ("tier", "front")
        ])
    );
    assert_eq!(annotations, mk_map(&[]));
    assert_eq!(
        applied.changes,
        [
            "label old=1",
            "label -team",
            "label tier=front",
            "annotation -n"
        ]
    );
    // Converged: nothing more to do.
    let before = (labels.clone(), annotations.clone());
    let applied = none.apply("shop", &mut labels, &mut annotations, Stage::Running);
    assert!(applied.changes.is_empty());
    assert_eq!((labels, annotations), before);
}

#[test]
fn a_rule_may_rewrite_the_label_it_selects_on() {
    let rules = mk_rules(
        "rules: [{ name: rename, selector: { matchLabels: { env: prod } }, labels: { env: production } }]",
    );
    let mut labels = mk_map(&[("env", "prod")]);
    let mut annotations = None;
    rules.apply("shop", &mut labels, &mut annotations, Stage::Admission);
    assert_eq!(labels, mk_map(&[("env", "production")]));
    // Running: still selected (by the value before the rule), nothing to do.
    let applied = rules.apply("shop", &mut labels, &mut annotations, Stage::Running);
    assert_eq!(applied.rules, ["rename"]);
    assert!(applied.changes.is_empty(), "{applied:?}");
    // The rule gone: the old value is back.
    MetadataConfig::default().apply("shop", &mut labels, &mut annotations, Stage::Running);
    assert_eq!(labels, mk_map(&[("env", "prod")]));
}

#[test]
fn a_value_the_pod_had_already_is_not_recorded() {
    let rules = mk_rules("rules: [{ name: r, labels: { team: a } }]");
    let mut labels = mk_map(&[("team", "a")]);
    let mut annotations = None;
    let applied = rules.apply("shop", &mut labels, &mut annotations, Stage::Admission);
    assert!(applied.changes.is_empty());
    assert_eq!(annotations, None);
    MetadataConfig::default().apply("shop", &mut labels, &mut annotations, Stage::Running);
    assert_eq!(labels, mk_map(&[("team", "a")]));
}

#[test]
fn selectors_do_not_see_what_nemutator_set() {
    // A rule that sets the label its selector excludes would switch itself
    // off on the next pass; it does not.
    let rules = mk_rules(
        "rules:\n- name: r\n  selector: { matchExpressions: [{ key: seen, operator: DoesNotExist }] }\n  labels: { seen: \"yes\" }\n",
    );
    let mut labels = None;
    let mut annotations = None;
    rules.apply("shop", &mut labels, &mut annotations, Stage::Admission);
    for _ in 0..2 {
        let applied = rules.apply("shop", &mut labels, &mut annotations, Stage::Running);
        assert!(applied.changes.is_empty(), "{applied:?}");
        assert_eq!(applied.rules, ["r"]);
    }
    assert_eq!(labels, mk_map(&[("seen", "yes")]));
}

#[test]
fn admission_only_rules_are_left_alone_on_running_pods() {
    let rules = mk_rules(
        "rules:\n\
         - { name: once, running_pods: false, labels: { born: \"1\" }, remove_labels: [tmp] }\n",
    );
    let mut labels = mk_map(&[("tmp", "x")]);
    let mut annotations = None;
    rules.apply("shop", &mut labels, &mut annotations, Stage::Admission);
    assert_eq!(labels, mk_map(&[("born", "1")]));
    // On the running pod: kept, and a tmp label added later stays.
    if let Some(l) = labels.as_mut() {
        l.insert("tmp".into(), "y".into());
    }
    let applied = rules.apply("shop", &mut labels, &mut annotations, Stage::Running);
    assert!(applied.changes.is_empty(), "{applied:?}");
    assert_eq!(labels, mk_map(&[("born", "1"), ("tmp", "y")]));
    // A running pod that never went through admission gets nothing.
    let mut labels = None;
    let mut annotations = None;
    rules.apply("shop", &mut labels, &mut annotations, Stage::Running);
    assert_eq!((labels, annotations), (None, None));
}

mod properties {
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;

    use super::*;

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_owned)
    }

    fn value() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["1", "2"]).prop_map(str::to_owned)
    }

    fn map() -> impl Strategy<Value = BTreeMap<String, String>> {
        btree_map(key(), value(), 0..3)
    }

    fn selector() -> impl Strategy<Value = Option<Selector>> {
        let operator = prop::sample::select(vec![
            Operator::In,
            Operator::NotIn,
            Operator::Exists,
            Operator::DoesNotExist,
        ]);
        prop::option::of(
            (map(), key(), operator, value()).prop_map(|(m, k, operator, v)| {
                let values = match operator {
                    Operator::In | Operator::NotIn => vec![v],
                    _ => vec![],
                };
                Selector {
                    match_labels: m,
                    match_expressions: vec![Requirement {
                        key: k,
                        operator,
                        values,
                    }],
                }
            }),
        )
    }

    fn rule() -> impl Strategy<Value = MetadataRule> {
        (selector(), map(), map(), vec(key(), 0..2), vec(key(), 0..2)).prop_map(
            |(selector, labels, annotations, remove_labels, remove_annotations)| MetadataRule {
                name: "r".into(),
                namespaces: vec!["*".into()],
                exclude_namespaces: vec![],
                selector,
                labels,
                annotations,
                remove_labels,
                remove_annotations,
                running_pods: true,
            },
        )
    }

    proptest! {
        /// A running pod gets nothing more than admission gave it.
        #[test]
        fn running_pods_converge_in_one_pass(
            rules in vec(rule(), 0..4), labels in map(), annotations in map()
        ) {
            let rules = MetadataConfig { rules };
            let (mut l, mut a) = (Some(labels), Some(annotations));
            rules.apply("shop", &mut l, &mut a, Stage::Admission);
            let before = (l.clone(), a.clone());
            let applied = rules.apply("shop", &mut l, &mut a, Stage::Running);
            prop_assert!(applied.changes.is_empty(), "{:?}", applied);
            prop_assert_eq!((l, a), before);
        }

        /// Without the rules, the pod is as it was before them.
        #[test]
        fn removed_rules_are_undone(
            rules in vec(rule(), 0..4), labels in map(), annotations in map()
        ) {
            let rules = MetadataConfig { rules };
            let (mut l, mut a) = (Some(labels.clone()), Some(annotations.clone()));
            rules.apply("shop", &mut l, &mut a, Stage::Admission);
            MetadataConfig::default().apply("shop", &mut l, &mut a, Stage::Running);
            prop_assert_eq!(l, Some(labels));
            prop_assert_eq!(a, Some(annotations));
        }
    }
}

#[test]
fn validation_errors_are_one_line_and_name_the_rule() {
    for (yaml, needle) in [
        (
            "metadata: { rules: [{ name: r1, labels: { nemutator.io/tier: precious } }] }",
            "metadata rule \"r1\": label key \"nemutator.io/tier\" is under nemutator.io/",
        ),
        (
            "metadata: { rules: [{ name: r2, remove_annotations: [x.nemutator.io/a] }] }",
            "metadata rule \"r2\": annotation key",
        ),
        (
            "metadata: { rules: [{ name: r3 }] }",
            "metadata rule \"r3\": does nothing",
        ),
        (
            "metadata: { rules: [{ name: r4, labels: { a: \"has space\" } }] }",
            "metadata rule \"r4\": label value",
        ),
        (
            "metadata: { rules: [{ name: r5, labels: { a: b }, remove_labels: [a] }] }",
            "metadata rule \"r5\": label \"a\" is both set and removed",
        ),
        (
            "metadata: { rules: [{ name: r6, labels: { a: b } }, { name: r6, labels: { c: d } }] }",
            "metadata rule \"r6\": another rule has this name",
        ),
        (
            "metadata: { rules: [{ name: r7, namespaces: [], labels: { a: b } }] }",
            "metadata rule \"r7\": namespaces must not be empty",
        ),
        (
            "metadata: { rules: [{ name: r8, selector: { matchExpressions: [{ key: a, operator: In }] }, labels: { a: b } }] }",
            "metadata rule \"r8\": selector: In on a needs values",
        ),
        (
            "metadata: { rules: [{ name: r9, annotations: { \"bad key\": x } }] }",
            "metadata rule \"r9\": annotation \"bad key\" is not a valid key",
        ),
    ] {
        let e = config_error(yaml);
        assert!(e.starts_with("c.yaml: "), "{e}");
        assert!(e.contains(needle), "{yaml}\n{e}");
        assert!(!e.contains('\n'), "{e}");
    }
    // Unknown keys, in a rule and in the section.
    assert!(
        config_error("metadata: { rules: [{ name: r, lables: { a: b } }] }").contains("lables")
    );
    assert!(config_error("metadata: { rulez: [] }").contains("rulez"));
    // Selectors may read nemutator's own labels.
    let ok = "metadata: { rules: [{ name: r, selector: { matchLabels: { nemutator.io/tier: precious } }, labels: { a: b } }] }";
    assert!(Config::from_yaml(ok, Path::new("c.yaml")).is_ok());
}

#[test]
fn the_section_round_trips() {
    let yaml = "metadata:\n  rules:\n  - name: r\n    namespaces: [\"team-*\"]\n    selector:\n      matchLabels: { app: web }\n      matchExpressions: [{ key: env, operator: NotIn, values: [dev] }]\n    labels: { team: a }\n    annotations: { example.com/owner: a }\n    remove_labels: [old]\n    remove_annotations: [example.com/old]\n    running_pods: false\n";
    let config = Config::from_yaml(yaml, Path::new("c.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let rule = &config.metadata.rules[0];
    assert!(!rule.running_pods);
    assert_eq!(rule.remove_annotations, ["example.com/old"]);
    let text = serde_yaml::to_string(&config).unwrap_or_else(|e| panic!("{e}"));
    let again = Config::from_yaml(&text, Path::new("c.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, config);
}
