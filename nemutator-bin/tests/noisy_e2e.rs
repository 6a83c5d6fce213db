//! The noisy-neighbour loop of `nemutator controller` against the real API
//! server (scripts/apiserver.sh), its metrics source an OpenMetrics file
//! naming the test's pods.
//!
//! No kubelet runs there: the pods are created with `spec.nodeName` set and
//! the test plays the kubelet, setting phase `Running` and the `Ready`
//! condition through the status subresource. An evicted pod then stays,
//! with its deletion timestamp set (no kubelet confirms the deletion).

mod support;

use std::fmt::Write as _;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use nemutator_core::install::CONTROLLER_NAME;
use nemutator_core::noisy::{NOISY_LABEL, PRECIOUS, TIER_LABEL};
use nemutator_testkit::cluster::{eventually, TestCluster};
use serde_json::{json, Value};
use support::Webhook as Server;

fn mk<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
}

/// A generous bound for the loop (a pass a second), not a timing assertion.
const LIMIT: Duration = Duration::from_secs(60);

/// How a test pod behaves in the metrics file.
#[derive(Clone, Copy)]
enum Load {
    /// 1 core on a 250m request: 4 times it.
    Noisy,
    /// 50m on a 250m request, 10 MiB of a 1 GiB limit.
    Quiet,
    /// 450m on a 250m request: 1.8 times it, under the threshold (2) but
    /// above where the label goes (0.8 of it).
    Band,
}

/// A running, ready pod `name` on `node`, of its own ReplicaSet, requests
/// 250m CPU and 64Mi, memory limit 1Gi.
async fn mk_pod(client: &Client, ns: &str, name: &str, node: &str, labels: Value) {
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let pod: Pod = mk(json!({
        "metadata": {
            "name": name, "namespace": ns, "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("{name}-rs"), "uid": "0b6c2a52-0000-4000-8000-00000000000a",
                "controller": true}],
        },
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.invalid/app:1",
            "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}}}]},
    }));
    pods.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let status = json!({"status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

/// Ten minutes of cAdvisor series for `pods`, every 15 s, ending now.
fn mk_metrics(ns: &str, pods: &[(&str, Load)]) -> String {
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let start = end - 600;
    let mut s = String::from("# TYPE container_cpu_usage_seconds counter\n");
    for (pod, load) in pods {
        let cores = match load {
            Load::Noisy => 1.0,
            Load::Quiet => 0.05,
            Load::Band => 0.45,
        };
        for t in (start..=end).step_by(15) {
            let _ = writeln!(
                s,
                "container_cpu_usage_seconds_total{{namespace=\"{ns}\",pod=\"{pod}\",container=\"app\"}} {} {t}",
                cores * (t - start) as f64
            );
        }
    }
    s.push_str("# TYPE container_memory_working_set_bytes gauge\n");
    for (pod, _) in pods {
        for t in (start..=end).step_by(15) {
            let _ = writeln!(
                s,
                "container_memory_working_set_bytes{{namespace=\"{ns}\",pod=\"{pod}\",container=\"app\"}} {} {t}",
                10 << 20
            );
        }
    }
    s + "# EOF\n"
}

/// A namespace, its pods and the metrics file, for one run:
///
/// | pod | node | labels | load |
/// | --- | --- | --- | --- |
/// | `db` | `{ns}-a` | precious | noisy |
/// | `cache` | `{ns}-a` | precious | quiet |
/// | `near` | `{ns}-a` | | noisy |
/// | `calm` | `{ns}-a` | | quiet |
/// | `far` | `{ns}-b` | | noisy |
async fn mk_scene(client: &Client, tag: &str) -> (String, std::path::PathBuf) {
    let ns = format!("noisy-{tag}-{}", std::process::id());
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &mk(json!({"metadata": {"name": ns}})),
        )
        .await
        .unwrap_or_else(|e| panic!("namespace {ns}: {e}"));
    let (a, b) = (format!("{ns}-a"), format!("{ns}-b"));
    mk_pod(client, &ns, "db", &a, json!({TIER_LABEL: PRECIOUS})).await;
    mk_pod(client, &ns, "cache", &a, json!({TIER_LABEL: PRECIOUS})).await;
    mk_pod(client, &ns, "near", &a, json!({})).await;
    mk_pod(client, &ns, "calm", &a, json!({})).await;
    mk_pod(client, &ns, "far", &b, json!({})).await;
    let dir = support::tmpdir(&format!("noisy-{tag}"));
    std::fs::write(
        dir.join("usage.om"),
        mk_metrics(
            &ns,
            &[
                ("db", Load::Noisy),
                ("cache", Load::Quiet),
                ("near", Load::Noisy),
                ("calm", Load::Quiet),
                ("far", Load::Noisy),
            ],
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    (ns, dir)
}

/// The controller's ServiceAccount and RBAC of `nemutator install -n ns`
/// on the test API server, and a kubeconfig in `dir` with that account's
/// token: the controller then runs with exactly the rights it is installed
/// with.
async fn installed_kubeconfig(cluster: &TestCluster, ns: &str, dir: &std::path::Path) -> String {
    support::install_controller_rbac(&cluster.client, ns).await;
    let token = cluster.token(ns, CONTROLLER_NAME).await;
    let path = dir.join("kubeconfig");
    cluster.kubeconfig_with_token(&token, &path);
    path.display().to_string()
}

/// `nemutator controller` with `controller.noisy.evict: evict`, a pass a
/// second, its Lease in `ns`, with the credentials of `kubeconfig`.
fn start(kubeconfig: &str, ns: &str, dir: &std::path::Path, evict: &str) -> Server {
    let config = dir.join("config.yaml");
    let yaml = format!(
        "metrics:\n  source: file\n  file: {{ path: {} }}\ncontroller:\n  noisy:\n    enabled: true\n    interval: 1s\n    window: 5m\n    evict: {evict}\n",
        dir.join("usage.om").display()
    );
    std::fs::write(&config, yaml).unwrap_or_else(|e| panic!("{e}"));
    Server::spawn(
        "controller",
        &[
            "--config",
            &config.display().to_string(),
            "--lease-namespace",
            ns,
            "--lease-duration",
            "3s",
            "--identity",
            &format!("{ns}-ctl"),
            "--drift",
            "off",
            // Each test pod is the only one of its ReplicaSet.
            "--min-replicas",
            "1",
        ],
        &[("KUBECONFIG", kubeconfig)],
    )
}

/// A token of ServiceAccount `reader` in `ns`, which may `get`
/// `noisy.nemutator.io` there.
async fn reader_token(cluster: &TestCluster, ns: &str) -> String {
    let rules = json!([{"apiGroups": ["nemutator.io"], "resources": ["noisy"], "verbs": ["get"]}]);
    cluster.service_account_token(ns, "reader", rules).await
}

async fn get(server: &Server, path: &str, token: Option<&str>) -> (u16, Value) {
    let headers: Vec<(&str, String)> = token
        .map(|t| vec![("authorization", format!("Bearer {t}"))])
        .unwrap_or_default();
    let r = server
        .client()
        .request_with("GET", path, &headers, vec![])
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

async fn pod(client: &Client, ns: &str, name: &str) -> Pod {
    Api::<Pod>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn labelled(p: &Pod) -> bool {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(NOISY_LABEL))
        .is_some_and(|v| v == "true")
}

/// Waits until the noisy pods carry the label.
async fn wait_labelled(client: &Client, ns: &str, names: &[&str]) {
    let done = eventually(LIMIT, || async {
        for name in names {
            if !labelled(&pod(client, ns, name).await) {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert!(done.is_some(), "{names:?} never labelled noisy");
}

fn find<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body["pods"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
}

/// The API's entry for `name`.
fn entry<'a>(body: &'a Value, name: &str) -> &'a Value {
    find(body, name).unwrap_or_else(|| panic!("{name} not listed: {body}"))
}

async fn events(client: &Client, ns: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .items
}

#[tokio::test]
async fn noisy_pods_are_labelled_listed_and_evicted_only_beside_a_precious_pod() {
    let test = "noisy_pods_are_labelled_listed_and_evicted_only_beside_a_precious_pod";
    let Some(cluster) = TestCluster::from_env(test).await else {
        return;
    };
    let client = cluster.client.clone();
    let (ns, dir) = mk_scene(&client, "on").await;
    let token = reader_token(&cluster, &ns).await;
    // With only its installed RBAC: a call of the loop outside it fails here.
    let kubeconfig = installed_kubeconfig(&cluster, &ns, &dir).await;
    let server = start(&kubeconfig, &ns, &dir, "on");
    server.client().wait_ready().await;

    wait_labelled(&client, &ns, &["near", "far", "db"]).await;
    // The noisy pod beside the precious one is evicted, with an Event.
    let evicted = eventually(LIMIT, || async {
        pod(&client, &ns, "near")
            .await
            .metadata
            .deletion_timestamp
            .map(|_| ())
    })
    .await;
    assert!(evicted.is_some(), "near was never evicted");
    // The Event is written just after the eviction.
    let event = eventually(LIMIT, || async {
        events(&client, &ns).await.into_iter().find(|e| {
            e.reason.as_deref() == Some("Evicted")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("near")
                && e.note
                    .as_deref()
                    .is_some_and(|n| n.contains("noisy neighbour"))
        })
    })
    .await;
    assert!(
        event.is_some(),
        "no Evicted Event for near: {:?}",
        events(&client, &ns).await
    );
    // The quiet pods are not labelled; the noisy one on another node, and
    // the precious one (noisy itself, beside another precious pod), are
    // labelled but stay.
    for name in ["calm", "cache"] {
        assert!(!labelled(&pod(&client, &ns, name).await), "{name}");
    }
    for name in ["far", "db", "calm", "cache"] {
        let p = pod(&client, &ns, name).await;
        assert!(p.metadata.deletion_timestamp.is_none(), "{name} evicted");
    }

    // The API: a token and its access needed; the pods listed with their scores.
    let (status, _) = get(&server, "/api/v1/noisy", None).await;
    assert_eq!(status, 401);
    let (status, _) = get(&server, "/api/v1/noisy", Some(&token)).await;
    assert_eq!(status, 403, "reader may only read its namespace");
    let path = format!("/api/v1/noisy?namespace={ns}");
    let (status, body) = get(&server, &path, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], true, "{body}");
    assert_eq!(body["leader"], true, "{body}");
    let far = entry(&body, "far");
    assert_eq!(far["noisy"], true, "{body}");
    assert_eq!(far["labelled"], true, "{body}");
    assert_eq!(far["node"], format!("{ns}-b"));
    assert_eq!(far["reasons"][0]["rule"], "cpu_over_request", "{body}");
    assert!(far["score"].as_f64().is_some_and(|s| s >= 1.0), "{body}");
    assert!(far["preciousNeighbours"]
        .as_array()
        .is_some_and(|a| a.is_empty()));
    assert_eq!(
        entry(&body, "near")["preciousNeighbours"],
        json!([format!("{ns}/cache"), format!("{ns}/db")]),
        "{body}"
    );
    let db = entry(&body, "db");
    assert_eq!(db["precious"], true, "{body}");
    assert_eq!(
        db["preciousNeighbours"],
        json!([format!("{ns}/cache")]),
        "{body}"
    );
    assert!(
        db.get("eviction").is_none(),
        "a precious pod is never handed over: {body}"
    );
    let calm = entry(&body, "calm");
    assert_eq!(calm["noisy"], false, "{body}");
    assert_eq!(calm["verdict"], "quiet", "{body}");
    let text = server
        .client()
        .request("GET", "/metrics", vec![])
        .await
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .unwrap_or_default();
    assert!(
        text.lines().any(|l| l
            .starts_with("nemutator_noisy_evictions_total{outcome=\"evicted\"} ")
            && !l.ends_with(" 0")),
        "{text}"
    );
}

#[tokio::test]
async fn a_dry_run_labels_but_evicts_nothing_and_labels_do_not_flap() {
    let test = "a_dry_run_labels_but_evicts_nothing_and_labels_do_not_flap";
    let Some(cluster) = TestCluster::from_env(test).await else {
        return;
    };
    let client = cluster.client.clone();
    let (ns, dir) = mk_scene(&client, "dry").await;
    let token = reader_token(&cluster, &ns).await;
    let server = start(
        &cluster.kubeconfig.display().to_string(),
        &ns,
        &dir,
        "dry-run",
    );
    server.client().wait_ready().await;

    wait_labelled(&client, &ns, &["near", "far", "db"]).await;
    // The pass that would evict `near` has run: the API says dry-run.
    let path = format!("/api/v1/noisy?namespace={ns}");
    let body = eventually(LIMIT, || async {
        let (status, body) = get(&server, &path, Some(&token)).await;
        let dry = find(&body, "near").is_some_and(|p| p["eviction"]["outcome"] == "dry-run");
        (status == 200 && dry).then_some(body)
    })
    .await;
    assert!(body.is_some(), "near never judged for a dry-run eviction");
    for name in ["near", "far", "db", "calm", "cache"] {
        let p = pod(&client, &ns, name).await;
        assert!(
            p.metadata.deletion_timestamp.is_none(),
            "{name} was evicted by a dry-run"
        );
    }
    assert!(!labelled(&pod(&client, &ns, "calm").await));
    let evs = events(&client, &ns).await;
    assert!(evs.is_empty(), "a dry-run writes no Event: {evs:?}");

    // Hysteresis: `far` calms down and loses its label; `near` drops just
    // under the threshold and keeps it; `calm` rises as far and stays
    // unlabelled.
    std::fs::write(
        dir.join("usage.om"),
        mk_metrics(
            &ns,
            &[
                ("db", Load::Noisy),
                ("cache", Load::Quiet),
                ("near", Load::Band),
                ("calm", Load::Band),
                ("far", Load::Quiet),
            ],
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // The pass that judged the new file has ended once the API says so.
    let body = eventually(LIMIT, || async {
        let (status, body) = get(&server, &path, Some(&token)).await;
        let far = find(&body, "far")?;
        (status == 200 && far["verdict"] == "quiet" && far["labelled"] == false).then_some(body)
    })
    .await
    .unwrap_or_else(|| panic!("far never judged quiet"));
    assert!(
        !labelled(&pod(&client, &ns, "far").await),
        "far kept its label once quiet"
    );
    for (name, verdict, noisy) in [("near", "unsure", true), ("calm", "unsure", false)] {
        let p = entry(&body, name);
        assert_eq!(p["verdict"], verdict, "{name}: {body}");
        assert_eq!(p["noisy"], noisy, "{name}: {body}");
        assert_eq!(labelled(&pod(&client, &ns, name).await), noisy, "{name}");
    }
}
