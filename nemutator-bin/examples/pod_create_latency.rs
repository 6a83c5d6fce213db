//! Pod creation through a real API server with nemutator's webhook in the
//! path, against the same with no webhook configured: `scripts/bench-apiserver.sh`
//! runs it (docs/PERFORMANCE.md).
//!
//! Rounds alternate the two (no webhook / webhook), so that drift on a shared
//! machine lands on both; each round creates `--per-round` pods one after the
//! other, timing each `POST` until the stored pod is returned.
//!
//! ```text
//! cargo run --release -p nemutator-bin --example pod_create_latency -- \
//!     --kubeconfig K --webhook-url https://127.0.0.1:PORT/mutate --certs DIR --nemutator BIN
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use nemutator_testkit::cluster::{eventually, TestCluster};
use serde_json::json;

struct Args {
    url: String,
    certs: String,
    nemutator: String,
    rounds: usize,
    per_round: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        certs: String::new(),
        nemutator: "target/release/nemutator".into(),
        rounds: 10,
        per_round: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--kubeconfig" => std::env::set_var("NEMUTATOR_TEST_KUBECONFIG", value()?),
            "--webhook-url" => a.url = value()?,
            "--certs" => a.certs = value()?,
            "--nemutator" => a.nemutator = value()?,
            "--rounds" => a.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--per-round" => {
                a.per_round = value()?.parse().map_err(|e| format!("--per-round: {e}"))?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.url.is_empty() || a.certs.is_empty() {
        return Err("--webhook-url and --certs are required".into());
    }
    Ok(a)
}

/// A pod as the ReplicaSet controller creates one: a generated name and the
/// controller owner reference (from which the webhook finds the Deployment).
fn pod(rs: &ReplicaSet) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "api-6b7c9d8f5-", "namespace": "shop", "labels": {"app": "api"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": true,
                                 "name": rs.metadata.name, "uid": rs.metadata.uid}],
        },
        "spec": {"containers": [{
            "name": "api", "image": "registry.invalid/shop/api:1",
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                          "limits": {"cpu": "1", "memory": "1Gi"}},
        }]},
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let a = args()?;
    let cluster = TestCluster::from_env("pod_create_latency")
        .await
        .ok_or("no API server: give --kubeconfig")?;
    let client = cluster.client.clone();
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "shop"}})).map_err(|e| e.to_string())?;
    let _ = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await;
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "shop");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "api-6b7c9d8f5"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "api"}},
                 "template": {"metadata": {"labels": {"app": "api"}},
                              "spec": {"containers": [{"name": "api", "image": "registry.invalid/shop/api:1"}]}}},
    }))
    .map_err(|e| e.to_string())?;
    let rs = match sets
        .get_opt("api-6b7c9d8f5")
        .await
        .map_err(|e| e.to_string())?
    {
        Some(found) => found,
        None => sets
            .create(&PostParams::default(), &rs)
            .await
            .map_err(|e| e.to_string())?,
    };
    let install = Command::new(&a.nemutator)
        .args([
            "install",
            "-n",
            "nemutator-bench",
            "--webhook-url",
            &a.url,
            "--cert-dir",
            &a.certs,
        ])
        .output()
        .map_err(|e| format!("{}: {e}", a.nemutator))?;
    if !install.status.success() {
        return Err(String::from_utf8_lossy(&install.stderr).into_owned());
    }
    let manifests = String::from_utf8_lossy(&install.stdout).into_owned();
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let (mut plain, mut hooked) = (Vec::new(), Vec::new());
    let mut mutated = 0usize;
    for round in 0..a.rounds * 2 {
        let with_hook = round % 2 == 1;
        if with_hook {
            cluster.apply_yaml(&manifests).await?;
            // Wait until the API server calls it (its webhook cache lags).
            let probe = pod(&rs);
            let dry = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            eventually(Duration::from_secs(30), || async {
                let p = pods.create(&dry, &probe).await.ok()?;
                p.metadata
                    .annotations?
                    .contains_key("nemutator.io/resources-applied")
                    .then_some(())
            })
            .await
            .ok_or("the webhook was never called")?;
        } else {
            let _ = hooks.delete("nemutator", &DeleteParams::default()).await;
            let probe = pod(&rs);
            let dry = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            eventually(Duration::from_secs(30), || async {
                let p = pods.create(&dry, &probe).await.ok()?;
                let seen = p
                    .metadata
                    .annotations
                    .is_some_and(|a| a.contains_key("nemutator.io/resources-applied"));
                (!seen).then_some(())
            })
            .await
            .ok_or("the webhook is still called after its configuration was deleted")?;
        }
        for _ in 0..a.per_round {
            let p = pod(&rs);
            let t = Instant::now();
            let stored = pods
                .create(&PostParams::default(), &p)
                .await
                .map_err(|e| format!("create: {e}"))?;
            let took = t.elapsed();
            if with_hook {
                hooked.push(took);
                mutated += usize::from(
                    stored
                        .metadata
                        .annotations
                        .is_some_and(|a| a.contains_key("nemutator.io/resources-applied")),
                );
            } else {
                plain.push(took);
            }
        }
    }
    let _ = hooks.delete("nemutator", &DeleteParams::default()).await;
    plain.sort();
    hooked.sort();
    println!(
        "creates per side: {} ({} rounds of {}), mutated with the webhook: {mutated}",
        plain.len(),
        a.rounds,
        a.per_round
    );
    for (name, v) in [("no webhook", &plain), ("nemutator", &hooked)] {
        println!(
            "{name:>10}: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            ms(percentile(v, 50.0)),
            ms(percentile(v, 90.0)),
            ms(percentile(v, 99.0)),
            ms(percentile(v, 100.0)),
        );
    }
    println!(
        "     added: p50 {:+.2} ms  p99 {:+.2} ms",
        ms(percentile(&hooked, 50.0)) - ms(percentile(&plain, 50.0)),
        ms(percentile(&hooked, 99.0)) - ms(percentile(&plain, 99.0)),
    );
    if mutated != hooked.len() {
        return Err(format!(
            "only {mutated} of {} pods were mutated",
            hooked.len()
        ));
    }
    Ok(())
}
