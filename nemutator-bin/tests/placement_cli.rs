//! The placement layer as wired into the binary: `placement:` of
//! `--config` in `nemutator review`, offline (no API server: only the rules
//! of precious pods and of pods that come labelled noisy apply), and
//! `nemutator webhook` saying so in one line where it finds no cluster.

mod support;

use serde_json::{json, Value};
use support::{run_cli, tmpdir};

const CONFIG: &str = "examples/config-placement.yaml";

/// An AdmissionReview of a pod of the `api` Deployment with `labels`,
/// `annotations` and `spec` fields besides its container.
fn mk_review(labels: Value, annotations: Value, spec: Value) -> Vec<u8> {
    let mut review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "placement-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE",
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "api-6b7c9d8f5-", "namespace": "shop",
                             "labels": labels, "annotations": annotations},
                "spec": {"containers": [{"name": "api", "image": "registry.invalid/api:1"}]},
            },
        },
    });
    if let (Some(s), Value::Object(extra)) =
        (review["request"]["object"]["spec"].as_object_mut(), spec)
    {
        s.extend(extra);
    }
    review.to_string().into_bytes()
}

fn review(args: &[&str], input: &[u8]) -> Value {
    let (code, out, err) = run_cli(&[&["review"], args, &["-"]].concat(), Some(input));
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn review_gives_a_precious_pod_its_anti_affinity() {
    let input = mk_review(
        json!({"app": "api", "nemutator.io/tier": "precious"}),
        json!({}),
        json!({"tolerations": [{"key": "own", "operator": "Exists"}]}),
    );
    let pod = review(&["--config", CONFIG, "--patched"], &input);
    assert_eq!(
        pod["spec"]["affinity"]["podAntiAffinity"]
            ["preferredDuringSchedulingIgnoredDuringExecution"],
        json!([{"weight": 100, "podAffinityTerm": {
            "labelSelector": {"matchLabels": {"nemutator.io/noisy": "true"}},
            "namespaceSelector": {},
            "topologyKey": "kubernetes.io/hostname"}}])
    );
    // Not noisy: no pool, no label; its own toleration as it was.
    assert_eq!(
        pod["spec"]["tolerations"],
        json!([{"key": "own", "operator": "Exists"}])
    );
    assert!(pod["spec"].get("nodeSelector").is_none());
    assert!(pod["metadata"]["labels"]
        .get("nemutator.io/noisy")
        .is_none());

    // The response: the patch, and what was done in the audit annotations.
    let response = &review(&["--config", CONFIG], &input)["response"];
    assert_eq!(response["allowed"], true);
    assert_eq!(
        response["auditAnnotations"]["placement"],
        "precious: preferred pod anti-affinity against nemutator.io/noisy=true per kubernetes.io/hostname"
    );

    // Without the section (the default): left alone.
    let pod = review(&["--patched"], &input);
    assert!(pod["spec"].get("affinity").is_none(), "{pod}");
}

#[test]
fn review_sends_a_labelled_noisy_pod_to_the_noisy_pool_keeping_its_own_selector() {
    let input = mk_review(
        json!({"app": "api", "nemutator.io/noisy": "true"}),
        json!({}),
        json!({"nodeSelector": {"nemutator.io/pool": "batch", "disk": "ssd"}}),
    );
    let response = &review(&["--config", CONFIG], &input)["response"];
    let warnings = response["warnings"].to_string();
    assert!(
        warnings.contains("nodeSelector nemutator.io/pool=batch kept as the pod sets it"),
        "{response}"
    );
    let pod = review(&["--config", CONFIG, "--patched"], &input);
    assert_eq!(
        pod["spec"]["nodeSelector"],
        json!({"nemutator.io/pool": "batch", "disk": "ssd"})
    );
    assert_eq!(
        pod["spec"]["tolerations"],
        json!([{"key": "nemutator.io/pool", "operator": "Equal", "value": "noisy", "effect": "NoSchedule"}])
    );
    assert_eq!(
        pod["spec"]["affinity"]["podAntiAffinity"]
            ["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
            ["labelSelector"],
        json!({"matchLabels": {"nemutator.io/tier": "precious"}})
    );
}

#[test]
fn review_leaves_an_opted_out_pod_alone_and_refuses_a_bad_section() {
    let input = mk_review(
        json!({"nemutator.io/tier": "precious"}),
        json!({"nemutator.io/placement": "off"}),
        json!({}),
    );
    let pod = review(&["--config", CONFIG, "--patched"], &input);
    assert!(pod["spec"].get("affinity").is_none(), "{pod}");

    let dir = tmpdir("placement-cli");
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "placement: { enabled: true, strength: always }\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let (code, out, err) = run_cli(
        &["review", "--config", &bad.display().to_string(), "-"],
        Some(&input),
    );
    assert_ne!(code, 0, "{out}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("unknown variant `always`"), "{err}");
}

/// The log lines of `nemutator webhook ARGS` up to the one that says it
/// serves, with no Kubernetes configuration to be found.
fn webhook_start_logs(args: &[&str]) -> Vec<String> {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(support::BIN)
        .current_dir(support::root())
        .args(["webhook", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("stderr"));
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let serving = line.contains("serving the admission webhook");
        lines.push(line);
        if serving {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[test]
fn the_webhook_without_a_cluster_says_once_that_only_precious_rules_apply() {
    const SAYS: &str = "only the rules of precious pods";
    let on = webhook_start_logs(&["--config", CONFIG]);
    assert!(
        on.last().is_some_and(|l| l.contains("serving")),
        "the webhook serves without a cluster: {on:?}"
    );
    assert_eq!(on.iter().filter(|l| l.contains(SAYS)).count(), 1, "{on:?}");
    let off = webhook_start_logs(&[]);
    assert!(!off.iter().any(|l| l.contains(SAYS)), "{off:?}");
}
