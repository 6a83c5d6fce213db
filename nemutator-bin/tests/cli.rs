//! The `review`, `recommend` and `season` commands, run as a user would.

mod support;

use support::{root, run_cli, run_cli_in, tmpdir, Webhook};

/// The embedded defaults are in the binary: run from an empty directory, as
/// an installed binary is, the commands still find their data.
#[test]
fn commands_work_from_any_directory() {
    let dir = tmpdir("cli-anywhere");

    let (code, table, err) = run_cli_in(&dir, &["recommend"], None);
    assert_eq!(code, 0, "{err}");
    assert!(table.starts_with("NAMESPACE"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("Deployment") && l.contains("web") && l.contains("app")),
        "{table}"
    );

    let input = std::fs::read(root().join("examples/admission-review.json")).unwrap_or_default();
    let (code, out, err) = run_cli_in(&dir, &["review", "--patched", "-"], Some(&input));
    assert_eq!(code, 0, "{err}");
    let pod: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let applied = pod["metadata"]["annotations"]["nemutator.io/resources-applied"]
        .as_str()
        .unwrap_or_default();
    assert!(applied.starts_with("app: cpu 500m->"), "{applied}");

    // Without --input: the cluster-wide CPU of the (embedded) metrics source.
    let (code, out, err) = run_cli_in(&dir, &["season", "-o", "json"], None);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["periods"][0], 86_400, "{out}");

    // A config that sets no metrics file uses the embedded sample too.
    let config = root().join("examples/config-seasons.yaml");
    let config = config.to_str().unwrap_or_default();
    let (code, table, err) = run_cli_in(&dir, &["recommend", "--config", config], None);
    assert_eq!(code, 0, "{err}");
    assert!(table.contains("seasonal"), "{table}");

    // Nothing was read from or written to the working directory.
    let left = std::fs::read_dir(&dir)
        .map(|d| d.count())
        .unwrap_or_default();
    assert_eq!(left, 0);
}

#[test]
fn webhook_becomes_ready_from_any_directory() {
    let dir = tmpdir("webhook-anywhere");
    let webhook = Webhook::spawn_in(&dir, "webhook", &[], &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(webhook.client().wait_ready());
}

/// One sample file: the README's `examples/data/usage.om` is the one embedded.
#[test]
fn the_readme_sample_is_the_embedded_one() {
    let file = std::fs::read_to_string(root().join("examples/data/usage.om")).unwrap_or_default();
    assert!(
        file == nemutator_metrics::SAMPLE_USAGE,
        "examples/data/usage.om differs from nemutator-metrics/data/usage.om"
    );
}

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
    // The sample review with its envelope as the array of its fields.
    let sample: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join("examples/admission-review.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    let array = serde_json::json!([sample["apiVersion"], sample["kind"], sample["request"]]);
    let (code, out, err) = run_cli(&["review", "-"], Some(array.to_string().as_bytes()));
    assert_ne!(code, 0, "{out}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("expected a JSON object"), "{err}");
}

/// Asserts that `err` is one line `nemutator: ...` in which no part of the
/// error chain is said twice.
fn assert_one_clean_line(args: &[&str], err: &str) {
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    let line = err.trim_end();
    let rest = line.strip_prefix("nemutator: ");
    assert!(rest.is_some(), "{args:?}: {err}");
    let parts: Vec<&str> = rest.unwrap_or_default().split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].contains(part),
            "{args:?}: {part:?} is said twice in {err}"
        );
    }
}

#[test]
fn every_command_says_a_missing_config_once() {
    let review = root().join("examples/admission-review.json");
    let review = review.to_str().unwrap_or_default();
    for args in [
        vec!["recommend", "--config", "/nonexistent"],
        vec!["review", review, "--config", "/nonexistent"],
        vec!["season", "--config", "/nonexistent"],
        vec![
            "webhook",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "/nonexistent",
        ],
        vec!["install", "--config", "/nonexistent"],
    ] {
        let (code, _, err) = run_cli(&args, None);
        assert_ne!(code, 0, "{args:?}");
        assert_one_clean_line(&args, &err);
        assert!(
            err.contains("/nonexistent: No such file or directory (os error 2)"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn errors_with_causes_are_said_once() {
    let dir = tmpdir("cli-causes");
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        "policies:\n  - name: p\n    cpu: { percentile: 150 }\n",
    )
    .unwrap_or_default();
    let bad_om = dir.join("bad.om");
    std::fs::write(&bad_om, "not openmetrics\n").unwrap_or_default();
    let metrics = dir.join("metrics.yaml");
    std::fs::write(
        &metrics,
        format!("metrics:\n  file: {{ path: {} }}\n", bad_om.display()),
    )
    .unwrap_or_default();
    let not_a_dir = dir.join("file");
    std::fs::write(&not_a_dir, "").unwrap_or_default();
    let cert_dir = not_a_dir.join("certs");
    for (args, cause) in [
        (
            vec!["recommend", "--config", policy.to_str().unwrap_or_default()],
            "percentile 150",
        ),
        (
            vec![
                "recommend",
                "--config",
                metrics.to_str().unwrap_or_default(),
            ],
            "line 1",
        ),
        (
            vec![
                "install",
                "--cert-dir",
                cert_dir.to_str().unwrap_or_default(),
            ],
            "Not a directory",
        ),
    ] {
        let (code, _, err) = run_cli(&args, None);
        assert_ne!(code, 0, "{args:?}");
        let last = err.lines().last().unwrap_or_default();
        assert_one_clean_line(&args, last);
        assert!(last.contains(cause), "{args:?}: {err}");
    }
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

    // The page: a chart per container and resource from the embedded
    // sample's distribution and current requests, nothing fetched.
    let (code, html, _) = run_cli(&["recommend", "-o", "html"], None);
    assert_eq!(code, 0);
    assert!(html.starts_with("<!doctype html>") && html.ends_with("</html>\n"));
    assert_eq!(html.matches("<figure>").count(), lines.len() - 1);
    assert_eq!(html.matches("<svg ").count(), 2 * (lines.len() - 1));
    assert!(
        html.contains("<title>current request 500m</title>"),
        "web/app asks 500m"
    );
    assert!(!html.contains("<script") && !html.contains("https:"));
    assert!(!json.contains("distribution"), "only the page asks for it");

    let (code, csv, _) = run_cli(&["recommend", "-o", "csv"], None);
    assert_eq!(code, 0);
    assert!(csv.starts_with("namespace,kind,workload,container,cpu_request"));
    assert_eq!(csv.lines().count(), 1 + lines.len() - 1);

    // JSON gives requests as the Kubernetes quantities the table and the CSV
    // show (and a pod spec holds): `260m`, `642Mi`, not bytes.
    let (code, json, _) = run_cli(&["recommend", "-o", "json"], None);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    let recs = v.as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(recs.len(), rows.len());
    for (rec, row) in recs.iter().zip(&rows) {
        for (resource, column) in [("cpu", 4), ("memory", 7)] {
            let request = &rec[resource]["request"];
            if row[column].is_empty() {
                assert!(rec[resource].is_null(), "{rec}");
                continue;
            }
            assert_eq!(request.as_str(), Some(row[column]), "{resource} of {rec}");
        }
    }
    assert!(
        recs.iter()
            .filter_map(|r| r["memory"]["request"].as_str())
            .all(|m| m.ends_with("Mi") || m.ends_with("Gi") || m.ends_with("Ki")),
        "{json}"
    );
}

#[test]
fn recommend_for_a_namespace_without_workloads_says_so() {
    let (code, out, err) = run_cli(&["recommend", "-n", "nosuchns"], None);
    assert_ne!(code, 0, "{out}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(
        err.trim_end(),
        "nemutator: no workloads in namespace \"nosuchns\" \
         (namespaces with history: default, kube-system, shop)"
    );
    // History, but no policy for it (kube-system is excluded by default).
    let (code, out, err) = run_cli(&["recommend", "-n", "kube-system", "-o", "json"], None);
    assert_ne!(code, 0, "{out}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("no policy covers namespace \"kube-system\""),
        "{err}"
    );
}

#[test]
fn season_json_has_the_documented_shape() {
    let (code, out, err) = run_cli(
        &[
            "season",
            "--input",
            "examples/data/taylor.csv",
            "--output",
            "json",
            "--predict-from",
            "967766400",
            "--predict-to",
            "967852800",
            "--step",
            "1800",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["periods"], serde_json::json!([86400, 604800]));
    assert!(v["peak_windows"].as_array().is_some_and(|w| !w.is_empty()));
    let predictions = v["predictions"].as_array().cloned().unwrap_or_default();
    assert_eq!(predictions.len(), 49);
    assert_eq!(predictions[0]["timestamp"], 967766400);
    assert!(matches!(
        predictions[0]["season"].as_str(),
        Some("peak" | "off-peak")
    ));
    assert!(predictions[0]["forecast"]
        .as_f64()
        .is_some_and(|f| f > 10_000.0));
}

#[test]
fn season_takes_its_lead_from_the_config_and_the_flag_wins() {
    let dir = tmpdir("cli-season-lead");
    let cfg = dir.join("c.yaml");
    std::fs::write(&cfg, "seasons:\n  lead: 3h\n").unwrap_or_default();
    let cfg = cfg.to_str().unwrap_or_default();
    let season = |extra: &[&str]| {
        let mut args = vec!["season", "-i", "examples/data/taylor.csv"];
        args.extend_from_slice(extra);
        let (code, out, err) = run_cli(&args, None);
        assert_eq!(code, 0, "{args:?}: {err}");
        out.lines()
            .find_map(|l| l.strip_prefix("lead time: "))
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(season(&[]), "1h");
    assert_eq!(season(&["--config", cfg]), "3h");
    assert_eq!(season(&["--config", cfg, "--lead", "30m"]), "30m");
    // The lead moves the turn to peak earlier in the predictions too.
    let predict = |extra: &[&str]| {
        let mut args = vec![
            "season",
            "-i",
            "examples/data/taylor.csv",
            "-o",
            "csv",
            "--predict-from",
            "967766400",
            "--predict-to",
            "967852800",
            "--step",
            "1800",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = run_cli(&args, None);
        assert_eq!(code, 0, "{err}");
        out.lines().filter(|l| l.contains(",peak,")).count()
    };
    assert!(predict(&["--config", cfg]) > predict(&[]));
}

#[test]
fn season_csv_html_and_no_rhythm() {
    let (code, csv, _) = run_cli(
        &[
            "season",
            "-i",
            "examples/data/taylor.csv",
            "-o",
            "csv",
            "--predict-from",
            "967766400",
            "--predict-to",
            "967773600",
            "--step",
            "30m",
        ],
        None,
    );
    assert_eq!(code, 0);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "timestamp,season,forecast");
    assert_eq!(lines.len(), 1 + 5);
    assert!(lines[1].starts_with("967766400,"));

    let (code, html, _) = run_cli(
        &["season", "-i", "examples/data/taylor.csv", "-o", "html"],
        None,
    );
    assert_eq!(code, 0);
    assert!(html.contains("<svg") && html.contains("</html>"));

    // White noise: no period, one season.
    let mut noise = String::from("timestamp,value\n");
    let mut x: u64 = 12345;
    for i in 0..4032 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise += &format!("{},{}\n", 960163200 + i * 1800, x % 1000);
    }
    let (code, out, _) = run_cli(&["season", "-i", "-", "-o", "json"], Some(noise.as_bytes()));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    assert_eq!(v["periods"], serde_json::json!([]));
    assert_eq!(v["peak_windows"], serde_json::json!([]));
}

#[test]
fn season_bad_input_is_one_line() {
    for (input, needle) in [("timestamp,value\n1,2\nx,3\n", "line 3"), ("", "line 1")] {
        let (code, out, err) = run_cli(&["season", "-i", "-"], Some(input.as_bytes()));
        assert_ne!(code, 0);
        assert!(out.is_empty());
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn recommend_with_brainsets_gives_one_row_per_season() {
    let (code, out, err) = run_cli(
        &[
            "--config",
            "examples/config-seasons.yaml",
            "recommend",
            "-o",
            "csv",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let web_app: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("default,Deployment,web,app,"))
        .collect();
    assert_eq!(web_app.len(), 2, "{out}");
    assert!(web_app.iter().any(|l| l.contains(",seasonal,peak,")));
    assert!(web_app.iter().any(|l| l.contains(",seasonal,off-peak,")));
}

/// The reviews `scripts/build-pgo.sh` trains the release build on take the
/// paths they are in the set for (a training set that fell to the error path
/// would tune the build for errors).
#[test]
fn pgo_training_reviews_take_their_paths() {
    let patched = |file: &str| -> serde_json::Value {
        let (code, out, err) = run_cli(&["review", "--patched", file], None);
        assert_eq!(code, 0, "{file}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{file}: {e}: {out}"))
    };
    let applied = |pod: &serde_json::Value| -> String {
        pod["metadata"]["annotations"]["nemutator.io/resources-applied"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    // Compact, as the API server sends it, with fields the view skips.
    let pod = patched("scripts/pgo/shop-api-compact.json");
    assert!(applied(&pod).starts_with("api: cpu 1->"), "{pod}");
    assert_ne!(
        pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "1"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["livenessProbe"]["periodSeconds"],
        10
    );

    // A native sidecar is sized like a container.
    let pod = patched("scripts/pgo/web-sidecar.json");
    assert!(applied(&pod).contains("\nenvoy: cpu 200m->"), "{pod}");
    assert_ne!(
        pod["spec"]["initContainers"][0]["resources"]["requests"]["cpu"],
        "200m"
    );

    // Dry-run records and changes nothing else.
    let pod = patched("scripts/pgo/node-agent-dry-run.json");
    assert!(
        applied(&pod).starts_with("dry-run: agent: cpu 250m->"),
        "{pod}"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "250m"
    );

    // An excluded namespace is left alone.
    let pod = patched("scripts/pgo/coredns-excluded.json");
    assert_eq!(applied(&pod), "");
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "100m"
    );
}

/// `metadata:` rules of the configuration applied by `review`: labels and
/// annotations set and removed, the record of what nemutator set, the audit.
#[test]
fn review_applies_the_metadata_rules_of_the_config() {
    let dir = tmpdir("cli-metadata");
    let cfg = dir.join("c.yaml");
    std::fs::write(
        &cfg,
        "metadata:\n  rules:\n\
         \x20   - name: team\n\
         \x20     namespaces: [\"def*\"]\n\
         \x20     selector: { matchExpressions: [{ key: app, operator: In, values: [web] }] }\n\
         \x20     labels: { example.com/team: payments }\n\
         \x20     annotations: { example.com/oncall: pay-team }\n\
         \x20     remove_annotations: [example.com/owner]\n\
         \x20   - name: elsewhere\n\
         \x20     namespaces: [prod]\n\
         \x20     labels: { env: prod }\n",
    )
    .unwrap_or_default();
    let cfg = cfg.to_str().unwrap_or_default();
    let (code, out, err) = run_cli(
        &[
            "review",
            "--patched",
            "examples/admission-review.json",
            "--config",
            cfg,
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let pod: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let meta = &pod["metadata"];
    assert_eq!(meta["labels"]["example.com/team"], "payments", "{meta}");
    assert_eq!(meta["labels"]["app"], "web");
    assert_eq!(meta["labels"].get("env"), None);
    assert_eq!(meta["annotations"]["example.com/oncall"], "pay-team");
    assert_eq!(meta["annotations"].get("example.com/owner"), None);
    assert_eq!(
        meta["annotations"]["nemutator.io/metadata-applied"],
        r#"{"labels":{"example.com/team":{"to":"payments"}},"annotations":{"example.com/oncall":{"to":"pay-team"},"example.com/owner":{"from":"team-a"}}}"#
    );

    let (code, out, err) = run_cli(
        &["review", "examples/admission-review.json", "--config", cfg],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        v["response"]["auditAnnotations"]["metadata"],
        "team: label example.com/team=payments, annotation example.com/oncall, annotation -example.com/owner"
    );
}

#[test]
fn a_reserved_key_in_a_metadata_rule_is_one_line_naming_the_rule() {
    let dir = tmpdir("cli-metadata-bad");
    let cfg = dir.join("c.yaml");
    std::fs::write(
        &cfg,
        "metadata:\n  rules:\n    - { name: mine, labels: { nemutator.io/noisy: \"true\" } }\n",
    )
    .unwrap_or_default();
    let (code, _, err) = run_cli(
        &[
            "review",
            "examples/admission-review.json",
            "--config",
            cfg.to_str().unwrap_or_default(),
        ],
        None,
    );
    assert_ne!(code, 0);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("metadata rule \"mine\""), "{err}");
    assert!(err.contains("nemutator.io/noisy"), "{err}");
}
