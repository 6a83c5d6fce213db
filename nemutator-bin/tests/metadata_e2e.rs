//! `metadata:` rules changed while nemutator runs: the configuration file is
//! rewritten as the kubelet rewrites a mounted ConfigMap (a new directory,
//! then an atomic swap of the `..data` symlink), and
//!
//! * the webhook applies a new rule to the next review, keeps the last good
//!   rules when the new file is bad;
//! * the controller, against the real API server (scripts/apiserver.sh),
//!   relabels a running pod when a rule is added and undoes it when the
//!   rule is removed, without a restart.
//!
//! No kubelet runs there: the test plays it, setting the pod's phase through
//! the status subresource.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use nemutator_testkit::cluster::{eventually, TestCluster};
use serde_json::{json, Value};
use support::{root, tmpdir, Webhook as Server};

fn mk<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
}

/// A ConfigMap volume in `dir` holding `config.yaml`: version `n` of its
/// content written beside the others, then `..data` swapped to it by a
/// rename, as the kubelet does. Returns the path a pod reads.
fn configmap_version(dir: &Path, n: u32, text: &str) -> PathBuf {
    let version = dir.join(format!("..v{n}"));
    std::fs::create_dir_all(&version).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(version.join("config.yaml"), text).unwrap_or_else(|e| panic!("{e}"));
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..v{n}"), &tmp).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, dir.join("..data")).unwrap_or_else(|e| panic!("{e}"));
    let link = dir.join("config.yaml");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/config.yaml", &link).unwrap_or_else(|e| panic!("{e}"));
    }
    link
}

/// Waits (30 s at most) for a log line of `server` holding `needle`;
/// every line read is added to `seen`. The line, if one came.
async fn wait_logged(server: &Server, seen: &mut Vec<String>, needle: &str) -> Option<String> {
    for _ in 0..300 {
        seen.extend(server.logs());
        if let Some(line) = seen.iter().find(|l| l.contains(needle)) {
            return Some(line.clone());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn audit_of_sample(server: &Server) -> Value {
    let body = std::fs::read(root().join("examples/admission-review.json")).unwrap_or_default();
    let r = server
        .client()
        .request("POST", "/mutate", body)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
    v["response"]["auditAnnotations"].clone()
}

#[tokio::test]
async fn the_webhook_applies_a_rule_added_to_its_config_file_without_a_restart() {
    let dir = tmpdir("metadata-webhook");
    let config = configmap_version(&dir, 1, "");
    let server = Server::start(&["--config", config.to_str().unwrap_or_default()]);
    server.client().wait_ready().await;
    assert_eq!(audit_of_sample(&server).await.get("metadata"), None);

    configmap_version(
        &dir,
        2,
        "metadata:\n  rules:\n    - { name: team, namespaces: [default], labels: { team: payments } }\n",
    );
    let mut seen = Vec::new();
    let applied = eventually(Duration::from_secs(30), || async {
        let audit = audit_of_sample(&server).await;
        audit.get("metadata").cloned()
    })
    .await;
    assert_eq!(
        applied,
        Some(json!("team: label team=payments")),
        "{:?}",
        server.logs()
    );
    let reloaded = wait_logged(&server, &mut seen, "metadata rules reloaded").await;
    assert!(reloaded.is_some(), "{seen:?}");

    // A bad file: one warning line, and the rule stays.
    configmap_version(
        &dir,
        3,
        "metadata:\n  rules:\n    - { name: oops, labels: { nemutator.io/tier: precious } }\n",
    );
    let warning = wait_logged(&server, &mut seen, "configuration not reloaded")
        .await
        .unwrap_or_else(|| panic!("no warning: {seen:?}"));
    assert!(warning.contains("metadata rule \\\"oops\\\""), "{warning}");
    assert_eq!(
        audit_of_sample(&server).await["metadata"],
        "team: label team=payments"
    );

    // Another section changed: said, not applied.
    configmap_version(
        &dir,
        4,
        "seasons: { enabled: false }\nmetadata:\n  rules:\n    - { name: team, namespaces: [default], labels: { team: payments } }\n",
    );
    let said = wait_logged(&server, &mut seen, "a restart applies it").await;
    assert!(said.is_some_and(|l| l.contains("seasons")), "{seen:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn mk_namespace(client: &Client, tag: &str) -> String {
    let name = format!("meta-{tag}-{}", std::process::id());
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &mk(json!({"metadata": {"name": name}})),
        )
        .await
        .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
    name
}

/// A running pod `web-1` labelled `app: web` (the test plays the kubelet).
async fn mk_running_pod(client: &Client, ns: &str) -> Api<Pod> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let pod: Pod = mk(json!({
        "metadata": {"name": "web-1", "namespace": ns, "labels": {"app": "web", "tier": "front"}},
        "spec": {"nodeName": "n0", "containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
    }));
    pods.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = json!({"status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status("web-1", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    pods
}

async fn labels(pods: &Api<Pod>) -> Value {
    let pod = pods.get("web-1").await.unwrap_or_else(|e| panic!("{e}"));
    json!(pod.metadata.labels.unwrap_or_default())
}

async fn metric(server: &Server, name: &str) -> Option<String> {
    let r = server
        .client()
        .request("GET", "/metrics", vec![])
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
}

/// `nemutator controller` with `config`, its Lease in `ns`, once it leads.
async fn start_leader(cluster: &TestCluster, config: &Path, ns: &str, args: &[&str]) -> Server {
    let mut all = vec![
        "--config",
        config.to_str().unwrap_or_default(),
        "--lease-namespace",
        ns,
        "--lease-duration",
        "3s",
        "--identity",
        "meta",
    ];
    all.extend_from_slice(args);
    let kubeconfig = cluster.kubeconfig.display().to_string();
    let server = Server::spawn("controller", &all, &[("KUBECONFIG", &kubeconfig)]);
    server.client().wait_ready().await;
    let led = eventually(Duration::from_secs(40), || async {
        (metric(&server, "nemutator_controller_leader ")
            .await
            .as_deref()
            == Some("1"))
        .then_some(())
    })
    .await;
    assert!(led.is_some(), "never led: {:?}", server.logs());
    server
}

#[tokio::test]
async fn a_dry_run_patcher_counts_and_logs_and_changes_nothing() {
    let test = "a_dry_run_patcher_counts_and_logs_and_changes_nothing";
    let Some(cluster) = TestCluster::from_env(test).await else {
        return;
    };
    let client = cluster.client.clone();
    let ns = mk_namespace(&client, "dry").await;
    let pods = mk_running_pod(&client, &ns).await;
    let dir = tmpdir("metadata-dry-run");
    let rule = format!(
        "metadata:\n  rules:\n    - {{ name: team, namespaces: [{ns}], labels: {{ team: payments }} }}\n"
    );
    let config = configmap_version(&dir, 1, &rule);
    let mut server = start_leader(&cluster, &config, &ns, &["--metadata", "dry-run"]).await;
    let mut seen = Vec::new();
    let line = wait_logged(&server, &mut seen, "metadata: pod patched").await;
    let line = line.unwrap_or_else(|| panic!("no patch logged: {seen:?}"));
    assert!(line.contains(&format!("{ns}/web-1")), "{line}");
    assert!(line.contains("\"dry_run\":true"), "{line}");
    assert!(line.contains("label team=payments"), "{line}");
    let patched = metric(
        &server,
        "nemutator_metadata_pods_total{outcome=\"patched\"} ",
    )
    .await;
    // At least this pod (another test's controller may leave more to undo).
    let patched: u64 = patched.and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(patched >= 1, "{patched}");
    assert_eq!(labels(&pods).await, json!({"app": "web", "tier": "front"}));
    let pod = pods.get("web-1").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        pod.metadata
            .annotations
            .unwrap_or_default()
            .get("nemutator.io/metadata-applied"),
        None
    );
    assert!(server.terminate().success());
    let _ = Api::<Namespace>::all(client)
        .delete(&ns, &Default::default())
        .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_controller_relabels_running_pods_by_a_rule_added_while_it_runs_and_undoes_it_when_it_goes(
) {
    let test = "the_controller_relabels_running_pods_by_a_rule_added_while_it_runs_and_undoes_it_when_it_goes";
    let Some(cluster) = TestCluster::from_env(test).await else {
        return;
    };
    let client = cluster.client.clone();
    let ns = mk_namespace(&client, "on").await;
    let pods = mk_running_pod(&client, &ns).await;
    let dir = tmpdir("metadata-controller");
    let config = configmap_version(&dir, 1, "");
    // A pass an hour: only a reload can make the controller act in time.
    let mut server = start_leader(&cluster, &config, &ns, &["--metadata-interval", "1h"]).await;
    assert_eq!(
        metric(&server, "nemutator_metadata_rules ")
            .await
            .as_deref(),
        Some("0")
    );

    let rule = format!(
        "metadata:\n  rules:\n    - name: team\n      namespaces: [{ns}]\n      selector: {{ matchLabels: {{ app: web }} }}\n      labels: {{ team: payments }}\n      remove_labels: [tier]\n"
    );
    configmap_version(&dir, 2, &rule);
    let expected = json!({"app": "web", "team": "payments"});
    let labelled = eventually(Duration::from_secs(60), || async {
        (labels(&pods).await == expected).then_some(())
    })
    .await;
    assert!(
        labelled.is_some(),
        "labels {}; logs {:?}",
        labels(&pods).await,
        server.logs()
    );
    let pod = pods.get("web-1").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        pod.metadata.annotations.unwrap_or_default()["nemutator.io/metadata-applied"],
        r#"{"labels":{"team":{"to":"payments"},"tier":{"from":"front"}}}"#
    );
    assert_eq!(
        metric(&server, "nemutator_metadata_rules ")
            .await
            .as_deref(),
        Some("1")
    );

    // The rule removed: the label it set goes, the one it removed comes
    // back, and so does the record.
    configmap_version(&dir, 3, "");
    let unlabelled = eventually(Duration::from_secs(60), || async {
        (labels(&pods).await == json!({"app": "web", "tier": "front"})).then_some(())
    })
    .await;
    assert!(
        unlabelled.is_some(),
        "labels {}; logs {:?}",
        labels(&pods).await,
        server.logs()
    );
    let pod = pods.get("web-1").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        pod.metadata
            .annotations
            .unwrap_or_default()
            .get("nemutator.io/metadata-applied"),
        None
    );
    let patched = metric(
        &server,
        "nemutator_metadata_pods_total{outcome=\"patched\"} ",
    )
    .await;
    // Twice this pod at least (a dirty cluster's leftovers may add to it).
    let patched: u64 = patched.and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(patched >= 2, "{patched}");
    assert!(server.terminate().success());
    let _ = Api::<Namespace>::all(client)
        .delete(&ns, &Default::default())
        .await;
    let _ = std::fs::remove_dir_all(&dir);
}
