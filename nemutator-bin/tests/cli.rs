//! The `review` and `recommend` commands, run as a user would.

mod support;

use support::{root, run_cli, tmpdir};

#[test]
fn review_prints_a_response_with_a_patch() {
    let (code, out, err) = run_cli(&["review", "examples/admission-review.json"], None);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["response"]["allowed"], true);
    assert_eq!(v["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert!(v["response"]["patch"].is_string());
}

#[test]
fn review_patched_prints_the_mutated_object_from_stdin() {
    let input = std::fs::read(root().join("examples/admission-review.json")).unwrap_or_default();
    let (code, out, err) = run_cli(&["review", "--patched", "-"], Some(&input));
    assert_eq!(code, 0, "{err}");
    let pod: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(pod["kind"], "Pod");
    let applied = pod["metadata"]["annotations"]["nemutator.io/resources-applied"]
        .as_str()
        .unwrap_or_default();
    assert!(applied.starts_with("app: cpu 500m->"), "{applied}");
    assert_ne!(
        pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "500m"
    );
    // Fields outside the typed model survive (ports, serviceAccountName).
    assert_eq!(pod["spec"]["serviceAccountName"], "web");
}

#[test]
fn review_of_a_non_pod_exits_zero_without_patch() {
    let (code, out, _) = run_cli(
        &["review", "nemutator-core/tests/data/deployment-create.json"],
        None,
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    assert!(v["response"].get("patch").is_none());
}

#[test]
fn malformed_input_is_one_line_and_non_zero() {
    let dir = tmpdir("cli-bad");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"apiVersion\": 3").unwrap_or_default();
    for args in [
        vec!["review", bad.to_str().unwrap_or_default()],
        vec!["review", "/nonexistent/review.json"],
    ] {
        let (code, out, err) = run_cli(&args, None);
        assert_ne!(code, 0, "{args:?}");
        assert!(out.is_empty());
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.starts_with("nemutator: "), "{err}");
    }
    let (code, _, err) = run_cli(&["review", "-"], Some(b"\x00\xff garbage"));
    assert_ne!(code, 0);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn bad_config_is_one_line() {
    let dir = tmpdir("cli-config");
    let cfg = dir.join("c.yaml");
    std::fs::write(
        &cfg,
        "policies:\n  - name: p\n    cpu: { percentile: 150 }\n",
    )
    .unwrap_or_default();
    let (code, _, err) = run_cli(
        &["recommend", "--config", cfg.to_str().unwrap_or_default()],
        None,
    );
    assert_ne!(code, 0);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("percentile"), "{err}");
}

#[test]
fn recommend_outputs() {
    let (code, table, err) = run_cli(&["recommend"], None);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAMESPACE"));
    assert!(lines
        .iter()
        .any(|l| l.contains("Deployment") && l.contains("web") && l.contains("app")));
    assert!(
        !table.contains("kube-system"),
        "excluded by the default policy"
    );

    let (code, json, _) = run_cli(&["recommend", "-o", "json", "--namespace", "shop"], None);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    let recs = v.as_array().cloned().unwrap_or_default();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["target"]["workload"]["name"], "api");
    assert!(recs[0]["cpu"]["request"].is_string());

    let (code, csv, _) = run_cli(&["recommend", "-o", "csv"], None);
    assert_eq!(code, 0);
    assert!(csv.starts_with("namespace,kind,workload,container,cpu_request"));
    assert_eq!(csv.lines().count(), 1 + lines.len() - 1);
}
