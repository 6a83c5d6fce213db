use super::*;
use proptest::prelude::*;

fn q(s: &str) -> Quantity {
    Quantity::parse(s).unwrap_or_default()
}

#[test]
fn defaults_match_the_design() {
    let p = Policy::default().effective(None);
    assert_eq!(p.cpu.percentile, 95.0);
    assert_eq!(p.cpu.headroom, Percent(15.0));
    assert_eq!(p.memory.min, q("32Mi"));
    assert_eq!(p.memory.max, q("16Gi"));
    assert_eq!(p.min_change, 0.1);
    assert!(!Policy::default().covers("kube-system"));
    assert!(Policy::default().covers("team-a"));
}

#[test]
fn brainsets_override_only_what_they_name() {
    let yaml = r#"
name: p
cpu: { percentile: 95, headroom: 15% }
brainsets:
  peak: { cpu: { percentile: 99, headroom: 30% } }
  off-peak: { cpu: { percentile: 90, headroom: 10% }, limits: remove }
"#;
    let p: Policy = serde_yaml::from_str(yaml).unwrap_or_default();
    let peak = p.effective(Some(Season::Peak));
    assert_eq!(peak.cpu.percentile, 99.0);
    assert_eq!(peak.cpu.headroom, Percent(30.0));
    assert_eq!(peak.memory, ResourcePolicy::default_for(Resource::Memory));
    let off = p.effective(Some(Season::OffPeak));
    assert_eq!(off.cpu.percentile, 90.0);
    assert_eq!(off.limits, LimitStrategy::Remove);
    assert_eq!(p.effective(None).cpu.percentile, 95.0);
}

#[test]
fn unknown_keys_and_bad_values_are_rejected() {
    assert!(serde_yaml::from_str::<Policy>("name: p\ncpu: { percentil: 9 }").is_err());
    let p: Policy = serde_yaml::from_str("name: p\ncpu: { percentile: 120 }").unwrap_or_default();
    assert!(p.validate().is_err());
    let p: Policy =
        serde_yaml::from_str("name: p\nmemory: { min: 1Gi, max: 1Mi }").unwrap_or_default();
    assert!(p
        .validate()
        .unwrap_err()
        .to_string()
        .contains("min is larger than max"));
}

#[test]
fn globs() {
    assert!(glob_match("*", "anything"));
    assert!(glob_match("team-*", "team-a"));
    assert!(!glob_match("team-*", "prod"));
    assert!(glob_match("*-prod", "shop-prod"));
    assert!(glob_match("a*b*c", "axxbyyc"));
    assert!(!glob_match("a*b*c", "ac"));
    assert!(glob_match("exact", "exact"));
    assert!(glob_match("a**b", "ab"));
    assert!(glob_match("*a*", "xay"));
    assert!(!glob_match("ab*ba", "aba"));
    assert!(glob_match("a*b*b*c", "abbc"));
    assert!(!glob_match("a*b*b*c", "abc"));
}

#[test]
fn selection_takes_the_first_covering_policy() {
    let mut a = Policy {
        name: "a".into(),
        namespaces: vec!["team-*".into()],
        ..Policy::default()
    };
    a.exclude_namespaces = vec!["team-x".into()];
    let b = Policy {
        name: "b".into(),
        ..Policy::default()
    };
    let set = PolicySet(vec![a, b]);
    assert_eq!(set.select("team-a").map(|p| p.name.as_str()), Some("a"));
    assert_eq!(set.select("team-x").map(|p| p.name.as_str()), Some("b"));
    assert_eq!(set.select("kube-system"), None);
}

#[test]
fn keep_ratio_scales_limits() {
    let plan = plan_resource(
        Resource::Cpu,
        Some(q("500m")),
        Some(q("1")),
        q("250m"),
        LimitStrategy::KeepRatio,
        0.1,
    );
    assert_eq!(
        plan,
        Some(ResourcePlan {
            request: q("250m"),
            limit: Some(q("500m"))
        })
    );
}

#[test]
fn guaranteed_stays_guaranteed() {
    for (req, lim) in [(Some(q("1Gi")), Some(q("1Gi"))), (None, Some(q("1Gi")))] {
        let plan = plan_resource(
            Resource::Memory,
            req,
            lim,
            q("640Mi"),
            LimitStrategy::KeepRatio,
            0.1,
        );
        assert_eq!(
            plan,
            Some(ResourcePlan {
                request: q("640Mi"),
                limit: Some(q("640Mi"))
            })
        );
    }
}

#[test]
fn no_limit_stays_no_limit() {
    let plan = plan_resource(
        Resource::Cpu,
        Some(q("1")),
        None,
        q("300m"),
        LimitStrategy::KeepRatio,
        0.1,
    );
    assert_eq!(
        plan,
        Some(ResourcePlan {
            request: q("300m"),
            limit: None
        })
    );
}

#[test]
fn other_strategies() {
    let (r, l, t) = (Some(q("1")), Some(q("2")), q("500m"));
    let p = |s| plan_resource(Resource::Cpu, r, l, t, s, 0.0);
    assert_eq!(
        p(LimitStrategy::Remove),
        Some(ResourcePlan {
            request: t,
            limit: None
        })
    );
    assert_eq!(
        p(LimitStrategy::EqualToRequests),
        Some(ResourcePlan {
            request: t,
            limit: Some(t)
        })
    );
    assert_eq!(
        p(LimitStrategy::Unchanged),
        Some(ResourcePlan {
            request: t,
            limit: l
        })
    );
    // Unchanged limits cap the request.
    let capped = plan_resource(Resource::Cpu, r, l, q("3"), LimitStrategy::Unchanged, 0.0);
    assert_eq!(
        capped,
        Some(ResourcePlan {
            request: q("2"),
            limit: l
        })
    );
}

#[test]
fn small_changes_are_skipped() {
    assert_eq!(
        plan_resource(
            Resource::Cpu,
            Some(q("100m")),
            None,
            q("95m"),
            LimitStrategy::KeepRatio,
            0.1
        ),
        None
    );
    assert!(plan_resource(
        Resource::Cpu,
        Some(q("100m")),
        None,
        q("80m"),
        LimitStrategy::KeepRatio,
        0.1
    )
    .is_some());
    // No request yet: always set.
    assert!(plan_resource(
        Resource::Cpu,
        None,
        None,
        q("80m"),
        LimitStrategy::KeepRatio,
        0.1
    )
    .is_some());
}

#[test]
fn planning_twice_changes_nothing() {
    let first = plan_resource(
        Resource::Memory,
        Some(q("1Gi")),
        Some(q("2Gi")),
        q("640Mi"),
        LimitStrategy::KeepRatio,
        0.0,
    );
    let Some(first) = first else {
        panic!("expected a plan")
    };
    let second = plan_resource(
        Resource::Memory,
        Some(first.request),
        first.limit,
        q("640Mi"),
        LimitStrategy::KeepRatio,
        0.0,
    );
    assert_eq!(second, None);
}

fn arb_strategy() -> impl Strategy<Value = LimitStrategy> {
    prop_oneof![
        Just(LimitStrategy::KeepRatio),
        Just(LimitStrategy::Unchanged),
        Just(LimitStrategy::Remove),
        Just(LimitStrategy::EqualToRequests),
    ]
}

proptest! {
    #[test]
    fn target_is_clamped_and_monotonic(
        usage in 0.0f64..100.0, more in 0.0f64..10.0, headroom in 0.0f64..100.0,
        min in 1i64..1000, span in 0i64..100_000,
    ) {
        let rp = ResourcePolicy {
            percentile: 95.0,
            headroom: Percent(headroom),
            min: Quantity::from_millis(min),
            max: Quantity::from_millis(min + span),
        };
        let a = rp.target(Resource::Cpu, usage);
        let b = rp.target(Resource::Cpu, usage + more);
        prop_assert!(a >= rp.min && a <= rp.max);
        prop_assert!(a <= b, "monotonic in usage");
    }

    #[test]
    fn limit_is_never_below_request(
        req in proptest::option::of(0i64..100_000),
        lim in proptest::option::of(0i64..100_000),
        target in 1i64..100_000,
        strategy in arb_strategy(),
        min_change in 0.0f64..0.5,
        memory in any::<bool>(),
    ) {
        let r = if memory { Resource::Memory } else { Resource::Cpu };
        if let Some(plan) = plan_resource(r, req.map(Quantity::from_millis), lim.map(Quantity::from_millis), Quantity::from_millis(target), strategy, min_change) {
            if let Some(l) = plan.limit {
                prop_assert!(l >= plan.request);
            }
            if lim.is_none() && strategy == LimitStrategy::KeepRatio {
                prop_assert_eq!(plan.limit, None);
            }
        }
    }

    #[test]
    fn replanning_is_idempotent(
        req in proptest::option::of(1i64..100_000),
        lim in proptest::option::of(1i64..100_000),
        target in 1i64..100_000,
        strategy in arb_strategy(),
    ) {
        let t = Quantity::from_millis(target);
        if let Some(p) = plan_resource(Resource::Cpu, req.map(Quantity::from_millis), lim.map(Quantity::from_millis), t, strategy, 0.1) {
            prop_assert_eq!(plan_resource(Resource::Cpu, Some(p.request), p.limit, t, strategy, 0.1), None);
        }
    }
}
