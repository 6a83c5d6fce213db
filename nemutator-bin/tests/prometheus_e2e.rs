//! `nemutator recommend --config` with `metrics.source: prometheus`, against
//! the real Prometheus that `scripts/test.sh` starts (history backfilled by
//! promtool from the same OpenMetrics files): the same recommendations as
//! the file source on the same data, credentials sent and never printed.

mod support;

use nemutator_testkit::prometheus::{FaultProxy, TestPrometheus};
use support::{run_cli, tmpdir};

/// `recommend -o json` with `config`.
fn recommend(dir: &std::path::Path, name: &str, config: &str) -> (i32, String, String) {
    let path = dir.join(name);
    std::fs::write(&path, config).unwrap_or_else(|e| panic!("{e}"));
    let path = path.display().to_string();
    run_cli(&["recommend", "--config", &path, "-o", "json"], None)
}

/// The newest sample of `file`, and the `step` and `rate_window` keys of
/// the resolution the file source chooses for it.
fn describe(file: &std::path::Path) -> (i64, String) {
    use nemutator_core::metrics::MetricsSource as _;
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{e}"));
    let info = nemutator_metrics::FileSource::from_text(&text)
        .unwrap_or_else(|e| panic!("{e}"))
        .info();
    let res = info.resolution;
    let keys = format!(
        "step: {}s\n  rate_window: {}s\n  ",
        res.step.as_secs(),
        res.rate_window.as_secs()
    );
    (info.now, keys)
}

/// Requests, samples and history equal; usage within 1e-9. The server holds
/// the history of every test file, in namespaces of their own: only the
/// file's namespaces are compared.
fn assert_same(file: &str, prom: &str) {
    let a: serde_json::Value = serde_json::from_str(file).unwrap_or_else(|e| panic!("{e}: {file}"));
    let b: serde_json::Value = serde_json::from_str(prom).unwrap_or_else(|e| panic!("{e}: {prom}"));
    let a = a.as_array().cloned().unwrap_or_default();
    let namespaces: Vec<&serde_json::Value> = a
        .iter()
        .map(|r| &r["target"]["workload"]["namespace"])
        .collect();
    let b: Vec<serde_json::Value> = b
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| namespaces.contains(&&r["target"]["workload"]["namespace"]))
        .cloned()
        .collect();
    assert!(!a.is_empty());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["target"], y["target"]);
        assert_eq!(x["skipped"], y["skipped"], "{x} {y}");
        for r in ["cpu", "memory"] {
            for k in ["request", "samples", "history_secs", "oom_killed"] {
                assert_eq!(x[r][k], y[r][k], "{r}.{k} of {}", x["target"]);
            }
            let (u, v) = (
                x[r]["usage"].as_f64().unwrap_or(0.0),
                y[r]["usage"].as_f64().unwrap_or(0.0),
            );
            assert!(
                (u - v).abs() <= 1e-9 * u.abs().max(1.0),
                "{r} usage of {}: {u} {v}",
                x["target"]
            );
        }
    }
}

#[test]
fn recommend_from_prometheus_equals_the_file_source() {
    let Some(prom) = TestPrometheus::from_env("recommend_from_prometheus_equals_the_file_source")
    else {
        return;
    };
    let dir = tmpdir("prometheus-recommend");
    for file in &prom.data {
        let path = file.display();
        // The file source's resolution follows its samples (15 minutes for
        // the embedded sample); both are told the same.
        let (end, resolution) = describe(file);
        let policies = "policies: [{ name: default, min_history: 1h }]\n";
        let (code, from_file, err) = recommend(
            &dir,
            "file.yaml",
            &format!(
                "metrics:\n  source: file\n  {resolution}file: {{ path: \"{path}\" }}\n{policies}"
            ),
        );
        assert_eq!(code, 0, "{err}");
        let (code, from_prom, err) = recommend(
            &dir,
            "prom.yaml",
            &format!("metrics:\n  source: prometheus\n  {resolution}prometheus: {{ url: \"{}\", end: {end} }}\n{policies}", prom.url),
        );
        assert_eq!(code, 0, "{err}");
        assert_same(&from_file, &from_prom);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_sent_and_never_printed() {
    let Some(prom) = TestPrometheus::from_env("credentials_are_sent_and_never_printed") else {
        return;
    };
    let proxy = FaultProxy::start(&prom.url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tmpdir("prometheus-credentials");
    let token = dir.join("token");
    std::fs::write(&token, "s3cr3t-t0ken\n").unwrap_or_else(|e| panic!("{e}"));
    let config = format!(
        "metrics:\n  source: prometheus\n  prometheus: {{ url: \"{}\", end: 1764547200, bearer_token_file: \"{}\" }}\n",
        proxy.url(),
        token.display()
    );
    let run = {
        let dir = dir.clone();
        let config = config.clone();
        move || recommend(&dir, "token.yaml", &config)
    };
    let (code, out, err) = tokio::task::spawn_blocking(run)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("s3cr3t") && !err.contains("s3cr3t"));
    let auths = proxy.authorizations();
    assert!(
        !auths.is_empty() && auths.iter().all(|a| a == "Bearer s3cr3t-t0ken"),
        "{auths:?}"
    );

    // Basic auth from an environment variable; then an unreachable server:
    // one line, no password.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    let config = format!(
        "metrics:\n  source: prometheus\n  prometheus: {{ url: \"http://{closed}\", retries: 0, basic_auth: {{ username: nemutator, password_file: \"{}\" }} }}\n",
        token.display()
    );
    let dir2 = dir.clone();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || recommend(&dir2, "basic.yaml", &config))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(code, 0, "{out}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("metrics backend prometheus"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
}
