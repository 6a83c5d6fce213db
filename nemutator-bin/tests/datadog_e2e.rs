//! `nemutator recommend --config` with `metrics.source: datadog`, against a
//! local server of Datadog's documented timeseries API
//! (`nemutator_testkit::datadog`; Datadog cannot be reached from here): the
//! per-step maximum across a Deployment's pods, the page's charts with the
//! current requests, the keys read from the variables the configuration
//! names, sent, and never printed (not even at trace level); a refused key
//! is one line.

mod support;

use nemutator_testkit::datadog::{DatadogServer, StoredSeries};
use support::{run_cli, tmpdir};

const API_KEY: &str = "e2e-api-key-2b7e151628aed2a6abf7158809cf4f3c";
const APP_KEY: &str = "e2e-app-key-3243f6a8885a308d313198a2e03707344a409382";
const END: i64 = 1_764_547_200;
const MI: f64 = 1_048_576.0;

/// Two pods of Deployment `web` in `shop` for two days, a point a minute:
/// 0.1 and 0.2 cores, 100Mi and 200Mi, each asking 1 core and 512Mi.
fn mk_series() -> Vec<StoredSeries> {
    let times: Vec<i64> = (END - 2 * 86_400..=END).step_by(60).collect();
    let mut out = Vec::new();
    for (pod, cores, bytes) in [
        ("web-7d9f8b6c5d-x2k9p", 0.1, 100.0 * MI),
        ("web-7d9f8b6c5d-q8z4m", 0.2, 200.0 * MI),
    ] {
        let tags = vec![
            "kube_namespace:shop".to_string(),
            "kube_deployment:web".to_string(),
            "kube_container_name:app".to_string(),
            format!("pod_name:{pod}"),
        ];
        for (metric, value) in [
            ("kubernetes.cpu.usage.total", cores * 1e9),
            ("kubernetes.memory.working_set", bytes),
            ("kubernetes.cpu.requests", 1.0),
            ("kubernetes.memory.requests", 512.0 * MI),
        ] {
            out.push(StoredSeries {
                metric: metric.into(),
                tags: tags.clone(),
                points: times.iter().map(|&t| (t, value)).collect(),
            });
        }
    }
    out
}

fn config(dir: &std::path::Path, name: &str, site: &str, app_env: &str) -> String {
    let path = dir.join(name);
    let text = format!(
        "metrics:\n  source: datadog\n  datadog: {{ site: \"{site}\", api_key_env: NEMUTATOR_E2E_DD_API, app_key_env: {app_env}, retries: 0, end: {END} }}\npolicies: [{{ name: default, min_history: 1h }}]\n"
    );
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommend_from_datadog() {
    let server = DatadogServer::start(mk_series(), API_KEY, APP_KEY)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    std::env::set_var("NEMUTATOR_E2E_DD_API", API_KEY);
    std::env::set_var("NEMUTATOR_E2E_DD_APP", APP_KEY);
    std::env::set_var("NEMUTATOR_E2E_DD_WRONG", "wrong-application-key-000111");
    std::env::set_var("NEMUTATOR_LOG", "trace");
    let dir = tmpdir("datadog-recommend");
    let good = config(&dir, "dd.yaml", &server.url(), "NEMUTATOR_E2E_DD_APP");
    let bad = config(&dir, "bad.yaml", &server.url(), "NEMUTATOR_E2E_DD_WRONG");
    let run = move |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_cli(&args, None)
        })
    };
    let args = |config: &str, output: &str| -> Vec<String> {
        ["recommend", "--config", config, "-o", output]
            .map(String::from)
            .to_vec()
    };

    let (code, json, err) = run(args(&good, "json"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    let recs = v.as_array().cloned().unwrap_or_default();
    assert_eq!(recs.len(), 1, "{json}");
    let rec = &recs[0];
    assert_eq!(rec["target"]["workload"]["name"], "web");
    // The largest pod at every step: 0.2 cores, 200Mi.
    let cpu = rec["cpu"]["usage"].as_f64().unwrap_or_default();
    assert!((cpu - 0.2).abs() < 1e-9, "{rec}");
    assert_eq!(rec["memory"]["usage"].as_f64(), Some(200.0 * MI), "{rec}");
    assert_eq!(rec["memory"]["samples"], 48, "two days of hours: {rec}");

    let (code, html, err) = run(args(&good, "html"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 0, "{err}");
    assert!(html.contains("<title>current request 1</title>"), "{html}");
    assert!(html.contains("<title>current request 512Mi</title>"));
    assert_eq!(html.matches("<svg ").count(), 2);

    let (code, out, refused) = run(args(&bad, "table"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(code, 0, "{out}");
    let last = refused.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.contains("HTTP 403") && last.contains("$NEMUTATOR_E2E_DD_WRONG"),
        "{refused}"
    );

    let seen = server.seen();
    assert!(seen
        .iter()
        .filter(|s| s.status == 200)
        .all(|s| s.api_key == API_KEY && s.app_key == APP_KEY));
    // Per run: a listing, then per resource one request per 1,440 steps
    // (7 days of 5 minutes: 2); the page's run asks no more.
    let ok = seen.iter().filter(|s| s.status == 200).count();
    assert_eq!(ok, 2 * (1 + 2 * 2), "{ok}");
    assert!(err.contains("datadog"), "trace logs on stderr: {err}");
    for text in [&json, &err, &html, &out, &refused] {
        for secret in [API_KEY, APP_KEY, "wrong-application-key-000111"] {
            assert!(!text.contains(secret), "a key printed");
        }
    }
}
