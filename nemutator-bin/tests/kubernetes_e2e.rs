//! End-to-end: `nemutator recommend` with `metrics.source: kubernetes`
//! against the real API server, pod metrics reached through its aggregation
//! layer (the testkit's stand-in for metrics-server), continuing the history
//! a previous run saved.

mod support;

use std::process::{Command, Stdio};

use nemutator_metrics::kubernetes::{History, Reading};
use nemutator_testkit::cluster::TestCluster;
use nemutator_testkit::metrics_server::{MetricsServer, PodUsage};
use support::{tmpdir, BIN};

const T0: i64 = 1_764_547_200;

fn mk_pods(minute: i64) -> Vec<PodUsage> {
    let a_cpu = if minute < 30 { "100m" } else { "300m" };
    let c = |cpu: &str, mem: &str| vec![("api".to_string(), cpu.to_string(), mem.to_string())];
    vec![
        (
            "shop".into(),
            "api-5d78c9869d-x7k2p".into(),
            c(a_cpu, "100Mi"),
        ),
        (
            "shop".into(),
            "api-5d78c9869d-q9w4z".into(),
            c("200m", "150Mi"),
        ),
    ]
}

/// The history of minutes 0 to 59, as a previous run would have saved it.
fn mk_history() -> History {
    let mut h = History::new();
    for m in 0..60 {
        let cpu = if m < 30 { 0.1 } else { 0.3 };
        let at = T0 + 60 * m;
        let reading = |pod: &str, cpu: f64, memory: f64| Reading {
            namespace: "shop".into(),
            pod: pod.into(),
            container: "api".into(),
            at,
            cpu,
            memory,
        };
        h.record([
            reading("api-5d78c9869d-x7k2p", cpu, 100.0 * 1048576.0),
            reading("api-5d78c9869d-q9w4z", 0.2, 150.0 * 1048576.0),
        ]);
    }
    h
}

#[tokio::test]
async fn recommend_samples_pod_metrics_and_continues_the_saved_history() {
    let Some(cluster) = TestCluster::from_env("recommend_samples_pod_metrics").await else {
        return;
    };
    let server = MetricsServer::start().unwrap_or_else(|e| panic!("{e}"));
    server
        .register(&cluster)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    server.set_time(T0 + 60 * 60);
    server.set_pods(mk_pods(60));
    let dir = tmpdir("kubernetes");
    let history = dir.join("history.json");
    std::fs::write(&history, mk_history().to_json()).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "metrics:\n  source: kubernetes\n  kubernetes: {{ history_file: {} }}\n\
             policies:\n  - {{ name: t, namespaces: [\"*\"], window: 2h, min_history: 0s, \
             cpu: {{ percentile: 95, headroom: 0% }}, memory: {{ percentile: 100, headroom: 0% }} }}\n",
            history.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(BIN)
        .args([
            "recommend",
            "--config",
            &config.display().to_string(),
            "-o",
            "json",
        ])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let recs: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let api = recs
        .as_array()
        .and_then(|a| a.iter().find(|r| r["target"]["workload"]["name"] == "api"))
        .unwrap_or_else(|| panic!("no recommendation for api: {recs}"));
    assert_eq!(api["target"]["workload"]["kind"], "Deployment");
    assert_eq!(api["cpu"]["request"], "300m", "{api}");
    assert_eq!(api["memory"]["request"], "150Mi", "{api}");
    // The sample it took was added to the saved history.
    let saved = std::fs::read(&history).unwrap_or_else(|e| panic!("{e}"));
    let saved = History::from_json(&saved).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((saved.samples(), saved.newest()), (122, Some(T0 + 3600)));
    let _ = std::fs::remove_dir_all(&dir);
}
