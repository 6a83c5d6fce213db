//! The query pattern of KRR, for comparison in `scripts/bench-prometheus.sh`:
//! one PromQL query per workload and resource, naming the workload's pods in
//! a regex, against the same Prometheus nemutator batches its queries to.
//!
//! ```sh
//! cargo run --release -p nemutator-metrics --example krr_pattern -- URL END [CONCURRENCY]
//! ```
//!
//! It lists the pods with one `/api/v1/series` call, groups them by workload
//! (nemutator's naming rules), then asks, for each workload, the p95 of CPU
//! (`quantile_over_time(0.95, max(rate(...[5m])) by (container, pod)[7d:1m])`)
//! and the maximum of memory (`max_over_time(max(...) by (container,
//! pod)[7d:1m])`), as KRR's "simple" strategy does, CONCURRENCY (default 4)
//! at a time. It prints the number of HTTP requests and of answers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nemutator_core::workload::WorkloadKey;

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn post(
    client: &reqwest::Client,
    url: &str,
    form: &[(&str, String)],
    count: &AtomicU64,
) -> Result<serde_json::Value, Error> {
    count.fetch_add(1, Ordering::Relaxed);
    let body = client.post(url).form(form).send().await?.bytes().await?;
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    if v["status"] != "success" {
        return Err(format!("{}", v["error"]).into());
    }
    Ok(v["data"].clone())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(base), Some(end)) = (args.first(), args.get(1)) else {
        return Err("usage: krr_pattern URL END [CONCURRENCY]".into());
    };
    let end: i64 = end.parse()?;
    let concurrency: usize = args.get(2).map_or(Ok(4), |c| c.parse())?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let count = Arc::new(AtomicU64::new(0));
    let week = 7 * 86_400;
    let series = post(
        &client,
        &format!("{base}/api/v1/series"),
        &[
            (
                "match[]",
                "container_memory_working_set_bytes{container!=\"\",container!=\"POD\"}".into(),
            ),
            ("start", (end - week).to_string()),
            ("end", end.to_string()),
        ],
        &count,
    )
    .await?;
    let mut pods: BTreeMap<WorkloadKey, Vec<String>> = BTreeMap::new();
    for s in series.as_array().into_iter().flatten() {
        let (Some(ns), Some(pod)) = (s["namespace"].as_str(), s["pod"].as_str()) else {
            continue;
        };
        let list = pods.entry(WorkloadKey::from_pod_name(ns, pod)).or_default();
        if !list.iter().any(|p| p == pod) {
            list.push(pod.to_string());
        }
    }
    let queries: Vec<String> = pods
        .iter()
        .flat_map(|(w, pods)| {
            let sel = format!("namespace=\"{}\",pod=~\"{}\",container!=\"\",container!=\"POD\"", w.namespace, pods.join("|"));
            [
                format!("quantile_over_time(0.95, max(rate(container_cpu_usage_seconds_total{{{sel}}}[5m])) by (container, pod)[7d:1m])"),
                format!("max_over_time(max(container_memory_working_set_bytes{{{sel}}}) by (container, pod)[7d:1m])"),
            ]
        })
        .collect();
    let url = format!("{base}/api/v1/query");
    let answers = Arc::new(AtomicU64::new(0));
    let queue = Arc::new(std::sync::Mutex::new(queries));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, url, queue, count, answers) = (
            client.clone(),
            url.clone(),
            queue.clone(),
            count.clone(),
            answers.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let Some(q) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() else {
                    return Ok::<(), Error>(());
                };
                let data = post(
                    &client,
                    &url,
                    &[("query", q), ("time", end.to_string())],
                    &count,
                )
                .await?;
                let n = data["result"].as_array().map_or(0, Vec::len) as u64;
                answers.fetch_add(n, Ordering::Relaxed);
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    println!(
        "workloads {} requests {} series answered {}",
        pods.len(),
        count.load(Ordering::Relaxed),
        answers.load(Ordering::Relaxed)
    );
    Ok(())
}
