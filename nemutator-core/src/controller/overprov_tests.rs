use super::*;

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
/// 2026-12-07 00:00 UTC, a Monday.
const MIDNIGHT: i64 = 1_796_601_600;

/// A daily profile peaking 09:00–17:00 UTC with a lead of `lead` seconds.
fn daily(lead: i64) -> SeasonProfile {
    let mut v =
        serde_json::to_value(SeasonProfile::flat(1.0, lead)).unwrap_or_else(|e| panic!("{e}"));
    v["cycle"] = DAY.into();
    v["periods"] = serde_json::json!([DAY]);
    v["peak_windows"] = serde_json::json!([{"period": DAY, "start": 9 * HOUR, "end": 17 * HOUR}]);
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
}

fn config() -> OverprovisioningConfig {
    OverprovisioningConfig {
        enabled: true,
        replicas_peak: 4,
        replicas_off_peak: 1,
        ..OverprovisioningConfig::default()
    }
}

#[test]
fn peak_replicas_from_the_lead_before_the_window_until_its_end() {
    let profile = daily(HOUR);
    let c = config();
    let at = |h: i64, m: i64| desired(&c, Some(&profile), MIDNIGHT + h * HOUR + m * 60).replicas;
    assert_eq!(at(7, 59), 1, "before the lead: off-peak");
    assert_eq!(at(8, 0), 4, "within the lead: the peak's headroom already");
    assert_eq!(at(8, 30), 4);
    assert_eq!(at(12, 0), 4, "inside the window");
    assert_eq!(at(16, 59), 4);
    assert_eq!(at(17, 0), 1, "after the window: shrunk again");
    assert_eq!(at(23, 0), 1);
    assert_eq!(
        desired(&c, Some(&profile), MIDNIGHT + 12 * HOUR).season,
        Season::Peak
    );
}

#[test]
fn no_lead_means_the_window_only() {
    let profile = daily(0);
    let c = config();
    assert_eq!(desired(&c, Some(&profile), MIDNIGHT + 8 * HOUR).replicas, 1);
    assert_eq!(desired(&c, Some(&profile), MIDNIGHT + 9 * HOUR).replicas, 4);
}

#[test]
fn without_a_cluster_profile_or_rhythm_off_peak() {
    let c = config();
    let p = desired(&c, None, MIDNIGHT + 12 * HOUR);
    assert_eq!((p.season, p.replicas), (Season::OffPeak, 1));
    let flat = SeasonProfile::flat(5.0, HOUR);
    assert_eq!(desired(&c, Some(&flat), MIDNIGHT + 12 * HOUR).replicas, 1);
}

#[test]
fn the_deployment_carries_the_size_priority_and_opt_out() {
    let p = desired(&config(), Some(&daily(HOUR)), MIDNIGHT + 12 * HOUR);
    let d = deployment("nemutator", PAUSE_IMAGE, &p);
    let v = serde_json::to_value(&d).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["kind"], "Deployment");
    assert_eq!(v["metadata"]["namespace"], "nemutator");
    assert_eq!(v["metadata"]["annotations"]["nemutator.io/season"], "peak");
    assert_eq!(v["spec"]["replicas"], 4);
    let pod = &v["spec"]["template"];
    assert_eq!(
        pod["metadata"]["annotations"]["nemutator.io/resources"],
        "off"
    );
    assert_eq!(pod["spec"]["priorityClassName"], PRIORITY_CLASS);
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["image"], PAUSE_IMAGE);
    assert_eq!(c["resources"]["requests"]["cpu"], "500m");
    assert_eq!(c["resources"]["requests"]["memory"], "512Mi");
    // The selector matches the template's labels.
    for (k, val) in v["spec"]["selector"]["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
    {
        assert_eq!(&pod["metadata"]["labels"][k], val, "{k}");
    }
}

#[test]
fn config_keys_and_defaults() {
    let c: OverprovisioningConfig = serde_yaml::from_str(
        "{ enabled: true, replicas_peak: 6, replicas_off_peak: 0, cpu: 1, memory: 1Gi, image: registry.example/pause:3.10 }",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((c.replicas_peak, c.replicas_off_peak), (6, 0));
    assert_eq!(c.cpu, Quantity::from_units(1));
    assert_eq!(c.memory, Quantity::from_units(1 << 30));
    let d: OverprovisioningConfig = serde_yaml::from_str("{}").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d, OverprovisioningConfig::default());
    assert!(!d.enabled);
    let bad = serde_yaml::from_str::<OverprovisioningConfig>("{ replicas: 3 }");
    assert!(bad.is_err(), "unknown keys are errors");
    let negative = serde_yaml::from_str::<OverprovisioningConfig>("{ replicas_peak: -1 }");
    assert!(negative.is_err());
}
