//! The Helm chart (`charts/nemutator`) against `nemutator install`: `helm
//! lint`, and `helm template` renders holding the same objects as the
//! command does with the same choices; then a real `helm install` and
//! `helm upgrade` on the test API server keep one CA.
//!
//! helm is built from its Go module by `scripts/helm.sh` and found through
//! `NEMUTATOR_HELM`; without it the tests print one line and skip (they fail
//! instead where `NEMUTATOR_REQUIRE_APISERVER=1`).

mod support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use nemutator_core::install::objects_by_key;
use nemutator_testkit::cluster::{TestCluster, REQUIRE_ENV};
use serde_json::Value;
use support::{root, BIN};

fn helm(test: &str) -> Option<PathBuf> {
    match std::env::var_os("NEMUTATOR_HELM") {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            let why = "NEMUTATOR_HELM is not set (./scripts/test.sh builds helm and sets it)";
            if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
                panic!("{test}: {REQUIRE_ENV}=1 but {why}");
            }
            let _ = writeln!(std::io::stderr(), "skipping {test}: {why}");
            None
        }
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{e}"))
}

fn chart() -> String {
    root().join("charts/nemutator").display().to_string()
}

/// Objects by kind/name with what may differ between two renderings made
/// apart: Helm's own labels, generated key material, the configuration's
/// digest and text (compared parsed).
fn normalized(yaml: &str) -> BTreeMap<String, Value> {
    let mut objects = objects_by_key(yaml).unwrap_or_else(|e| panic!("{e}"));
    for object in objects.values_mut() {
        normalize(object);
    }
    objects
}

fn normalize(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(labels)) = map.get_mut("labels") {
                for helm_label in [
                    "app.kubernetes.io/managed-by",
                    "app.kubernetes.io/instance",
                    "helm.sh/chart",
                ] {
                    labels.remove(helm_label);
                }
            }
            if map.get("type").and_then(Value::as_str) == Some("kubernetes.io/tls") {
                if let Some(Value::Object(data)) = map.get_mut("data") {
                    for value in data.values_mut() {
                        *value = Value::from("<key material>");
                    }
                }
            }
            if let Some(ca) = map.get_mut("caBundle") {
                *ca = Value::from("<key material>");
            }
            if let Some(digest) = map.get_mut("nemutator.io/config-sha256") {
                *digest = Value::from("<digest>");
            }
            if let Some(Value::String(text)) = map.get("config.yaml") {
                let parsed: Value = serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
                map.insert("config.yaml".into(), parsed);
            }
            for value in map.values_mut() {
                normalize(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn install(args: &[&str]) -> BTreeMap<String, Value> {
    let yaml = run(Command::new(BIN).arg("install").args(args));
    let mut objects = normalized(&yaml);
    // Helm installs into a namespace it is given (--create-namespace).
    assert!(objects.remove("Namespace/nemutator").is_some());
    objects
}

fn template(helm: &PathBuf, sets: &[&str]) -> BTreeMap<String, Value> {
    let mut cmd = Command::new(helm);
    cmd.args([
        "template",
        "nemutator",
        &chart(),
        "--namespace",
        "nemutator",
    ]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    normalized(&run(&mut cmd))
}

fn assert_same(chart: &BTreeMap<String, Value>, install: &BTreeMap<String, Value>) {
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        install.keys().collect::<Vec<_>>(),
        "the same objects"
    );
    for (key, want) in install {
        assert_eq!(
            &chart[key], want,
            "{key} differs between the chart and nemutator install:\nchart:   {}\ninstall: {}",
            chart[key], want
        );
    }
}

#[test]
fn the_chart_lints_and_renders_what_nemutator_install_prints() {
    let Some(helm) = helm("the_chart_lints_and_renders_what_nemutator_install_prints") else {
        return;
    };
    let lint = run(Command::new(&helm).args(["lint", "--strict", &chart()]));
    assert!(lint.contains("0 chart(s) failed"), "{lint}");

    assert_same(&template(&helm, &[]), &install(&[]));
    assert_same(
        &template(&helm, &["certManager.enabled=true"]),
        &install(&["--cert-manager"]),
    );
    // A configuration file given as it is, like install --config.
    let dir = support::tmpdir("helm-config");
    let file = dir.join("config.yaml");
    std::fs::write(&file, "policies:\n  - name: default\n    window: 3d\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let path = file.display().to_string();
    let mut cmd = Command::new(&helm);
    cmd.args([
        "template",
        "nemutator",
        &chart(),
        "--namespace",
        "nemutator",
    ])
    .args(["--set-file", &format!("config={path}")]);
    assert_same(&normalized(&run(&mut cmd)), &install(&["--config", &path]));
    // Secrets configurations decide the permissions: the same in both.
    for (name, text) in [
        ("vault-env.yaml", "secrets:\n  resolver: vault\n  vault: { address: https://vault:8200, role: nemutator }\n  env_namespaces: [team-a]\n  registry: { pull_secrets: true }\n"),
        ("vault-exec.yaml", "secrets:\n  resolver: vault\n  vault: { address: https://vault:8200, role: nemutator }\n"),
        ("pulls.yaml", "secrets:\n  registry: { pull_secrets: true }\n"),
        ("off.yaml", "secrets:\n  enabled: false\n  resolver: vault\n  vault: { address: https://vault:8200 }\n  registry: { pull_secrets: true }\n"),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
        let path = file.display().to_string();
        let mut cmd = Command::new(&helm);
        cmd.args(["template", "nemutator", &chart(), "--namespace", "nemutator"])
            .args(["--set-file", &format!("config={path}")]);
        assert_same(&normalized(&run(&mut cmd)), &install(&["--config", &path]));
    }

    // The kubernetes source: a token and the metrics.k8s.io reader role.
    let file = dir.join("kubernetes.yaml");
    std::fs::write(&file, "metrics:\n  source: kubernetes\n").unwrap_or_else(|e| panic!("{e}"));
    let path = file.display().to_string();
    let mut cmd = Command::new(&helm);
    cmd.args([
        "template",
        "nemutator",
        &chart(),
        "--namespace",
        "nemutator",
    ])
    .args(["--set-file", &format!("config={path}")]);
    let chart_objects = normalized(&run(&mut cmd));
    assert!(chart_objects.contains_key("ClusterRole/nemutator-metrics-reader"));
    assert_same(&chart_objects, &install(&["--config", &path]));

    // Placement: a token and list/watch on pods.
    let file = dir.join("placement.yaml");
    std::fs::write(&file, "placement:\n  enabled: true\n").unwrap_or_else(|e| panic!("{e}"));
    let path = file.display().to_string();
    let mut cmd = Command::new(&helm);
    cmd.args([
        "template",
        "nemutator",
        &chart(),
        "--namespace",
        "nemutator",
    ])
    .args(["--set-file", &format!("config={path}")]);
    let chart_objects = normalized(&run(&mut cmd));
    assert!(chart_objects.contains_key("ClusterRole/nemutator-placement"));
    assert_same(&chart_objects, &install(&["--config", &path]));

    let url = "https://127.0.0.1:9443/mutate";
    assert_same(
        &template(&helm, &[&format!("webhook.url={url}")]),
        &install(&["--webhook-url", url]),
    );
}

/// The chart's generated certificate: a CA and a serving pair for the
/// Service's names that chain to it.
#[test]
fn the_chart_makes_a_serving_certificate_signed_by_its_ca_bundle() {
    let Some(helm) = helm("the_chart_makes_a_serving_certificate_signed_by_its_ca_bundle") else {
        return;
    };
    let yaml = run(Command::new(&helm).args(["template", "nemutator", &chart(), "-n", "tools"]));
    let objects = objects_by_key(&yaml).unwrap_or_else(|e| panic!("{e}"));
    let b64 = |v: &Value| {
        let text = v.as_str().unwrap_or_else(|| panic!("{v}"));
        base64_simd::STANDARD
            .decode_to_vec(text)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let secret = &objects["Secret/nemutator-tls"];
    let bundle = &objects["MutatingWebhookConfiguration/nemutator"]["webhooks"][0]["clientConfig"]
        ["caBundle"];
    assert_eq!(b64(bundle), b64(&secret["data"]["ca.crt"]));
    support::verify_chain(
        &b64(bundle),
        &b64(&secret["data"]["tls.crt"]),
        "nemutator.tools.svc",
    );
}

#[tokio::test]
async fn helm_install_and_upgrade_on_a_real_api_server_keep_one_ca() {
    let test = "helm_install_and_upgrade_on_a_real_api_server_keep_one_ca";
    let Some(helm) = helm(test) else {
        return;
    };
    let Some(cluster) = TestCluster::from_env(test).await else {
        return;
    };
    let ns = "nemutator-helm";
    let kubeconfig = cluster.kubeconfig.display().to_string();
    let helm_cmd = |args: &[&str]| {
        let mut cmd = Command::new(&helm);
        cmd.args(args)
            .args(["--kubeconfig", &kubeconfig, "--namespace", ns]);
        cmd
    };
    let _ = helm_cmd(&["uninstall", "nemutator"]).output();
    run(&mut helm_cmd(&[
        "install",
        "nemutator",
        &chart(),
        "--create-namespace",
    ]));
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), ns);
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(cluster.client.clone());
    let ca = |s: &Secret| {
        s.data
            .as_ref()
            .and_then(|d| d.get("ca.crt"))
            .map(|b| b.0.clone())
    };
    let first = secrets
        .get("nemutator-tls")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    run(&mut helm_cmd(&[
        "upgrade",
        "nemutator",
        &chart(),
        "--set",
        "replicas=3",
    ]));
    let second = secrets
        .get("nemutator-tls")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(ca(&first).is_some());
    assert_eq!(ca(&first), ca(&second), "an upgrade keeps the CA");
    let hook = hooks
        .get("nemutator")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let bundle = hook
        .webhooks
        .as_ref()
        .and_then(|w| w[0].client_config.ca_bundle.clone());
    assert_eq!(
        bundle.map(|b| b.0),
        ca(&second),
        "caBundle is the Secret's CA"
    );
    run(&mut helm_cmd(&["uninstall", "nemutator"]));
    assert!(
        hooks
            .get_opt("nemutator")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none(),
        "uninstall removes the webhook registration"
    );
}
