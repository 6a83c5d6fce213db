use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::*;
use crate::controller::calls::{Scope, API_CALLS};

fn mk_options() -> InstallOptions {
    InstallOptions::new("nemutator").unwrap_or_else(|e| panic!("{e}"))
}

fn mk_generated(o: &InstallOptions) -> Tls {
    Tls::Generated(WebhookCerts::generate(&o.serving_names()).unwrap_or_else(|e| panic!("{e}")))
}

fn mk_objects(o: &InstallOptions, tls: &Tls) -> BTreeMap<String, Value> {
    let yaml = manifests(o, tls)
        .to_yaml()
        .unwrap_or_else(|e| panic!("{e}"));
    objects_by_key(&yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer)
        .unwrap_or_else(|| panic!("{pointer} missing in {v:#}"))
}

#[test]
fn the_webhook_never_blocks_pod_creation_and_skips_system_namespaces() {
    let o = mk_options();
    let objects = mk_objects(&o, &mk_generated(&o));
    let hook = at(
        &objects["MutatingWebhookConfiguration/nemutator"],
        "/webhooks/0",
    );
    assert_eq!(at(hook, "/failurePolicy"), "Ignore");
    assert_eq!(at(hook, "/sideEffects"), "None");
    assert_eq!(at(hook, "/timeoutSeconds"), WEBHOOK_TIMEOUT_SECONDS);
    assert_eq!(at(hook, "/reinvocationPolicy"), "IfNeeded");
    assert_eq!(at(hook, "/admissionReviewVersions"), &json!(["v1"]));
    assert_eq!(
        at(hook, "/rules/0"),
        &json!({"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                "resources": ["pods"], "scope": "Namespaced"})
    );
    assert_eq!(
        at(hook, "/namespaceSelector/matchExpressions/0"),
        &json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                "values": ["kube-system", "nemutator"]})
    );
    assert_eq!(
        at(hook, "/objectSelector/matchExpressions/0"),
        &json!({"key": "nemutator.io/resources", "operator": "NotIn", "values": ["off"]})
    );
    assert_eq!(
        at(hook, "/clientConfig/service"),
        &json!({"name": "nemutator", "namespace": "nemutator", "path": "/mutate", "port": 443})
    );
}

#[test]
fn generated_certificates_go_to_the_secret_and_the_ca_bundle() {
    let o = mk_options();
    let tls = mk_generated(&o);
    let Tls::Generated(certs) = &tls else {
        unreachable!()
    };
    let objects = mk_objects(&o, &tls);
    let b64 = |s: &str| base64_simd::STANDARD.encode_to_string(s.as_bytes());
    let secret = &objects["Secret/nemutator-tls"];
    assert_eq!(at(secret, "/type"), "kubernetes.io/tls");
    assert_eq!(at(secret, "/data/tls.crt"), &json!(b64(&certs.tls_cert)));
    assert_eq!(at(secret, "/data/tls.key"), &json!(b64(&certs.tls_key)));
    assert_eq!(
        at(
            &objects["MutatingWebhookConfiguration/nemutator"],
            "/webhooks/0/clientConfig/caBundle"
        ),
        &json!(b64(&certs.ca_cert))
    );
    assert!(!objects.contains_key("Certificate/nemutator-tls"));
    assert!(!objects.keys().any(|k| k.starts_with("Issuer/")));
    assert!(
        !objects
            .values()
            .any(|v| v.to_string().contains(&b64(&certs.ca_key))),
        "the CA key stays out of the cluster"
    );
}

#[test]
fn cert_manager_issues_the_pair_and_injects_the_ca() {
    let o = InstallOptions::new("tools").unwrap_or_else(|e| panic!("{e}"));
    let objects = mk_objects(&o, &Tls::CertManager);
    assert!(!objects.contains_key("Secret/nemutator-tls"));
    let hook = &objects["MutatingWebhookConfiguration/nemutator"];
    assert_eq!(
        at(
            hook,
            "/metadata/annotations/cert-manager.io~1inject-ca-from"
        ),
        "tools/nemutator-tls"
    );
    assert!(hook.pointer("/webhooks/0/clientConfig/caBundle").is_none());
    let cert = &objects["Certificate/nemutator-tls"];
    assert_eq!(at(cert, "/apiVersion"), "cert-manager.io/v1");
    assert_eq!(at(cert, "/metadata/namespace"), "tools");
    assert_eq!(at(cert, "/spec/secretName"), "nemutator-tls");
    assert_eq!(at(cert, "/spec/dnsNames/0"), "nemutator.tools.svc");
    assert_eq!(at(cert, "/spec/issuerRef/name"), "nemutator-selfsigned");
    assert_eq!(
        at(&objects["Issuer/nemutator-selfsigned"], "/spec"),
        &json!({"selfSigned": {}})
    );
}

#[test]
fn the_deployment_is_highly_available_and_locked_down() {
    let o = mk_options();
    let objects = mk_objects(&o, &Tls::CertManager);
    let d = &objects["Deployment/nemutator"];
    assert_eq!(at(d, "/spec/replicas"), 2);
    let pod = at(d, "/spec/template/spec");
    assert_eq!(at(pod, "/automountServiceAccountToken"), false);
    assert_eq!(at(pod, "/securityContext/runAsNonRoot"), true);
    assert_eq!(
        at(pod, "/securityContext/seccompProfile/type"),
        "RuntimeDefault"
    );
    let spread: Vec<&str> = at(pod, "/topologySpreadConstraints")
        .as_array()
        .unwrap_or_else(|| panic!("array"))
        .iter()
        .map(|c| at(c, "/topologyKey").as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        spread,
        ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    );
    let c = at(pod, "/containers/0");
    assert_eq!(at(c, "/image"), DEFAULT_IMAGE);
    assert_eq!(at(c, "/securityContext/readOnlyRootFilesystem"), true);
    assert_eq!(at(c, "/securityContext/allowPrivilegeEscalation"), false);
    assert_eq!(at(c, "/securityContext/capabilities/drop"), &json!(["ALL"]));
    assert_eq!(at(c, "/readinessProbe/httpGet/path"), "/readyz");
    assert_eq!(at(c, "/livenessProbe/httpGet/path"), "/healthz");
    assert_eq!(at(c, "/livenessProbe/httpGet/scheme"), "HTTPS");
    assert_eq!(
        at(c, "/resources/requests"),
        &json!({"cpu": "50m", "memory": "64Mi"})
    );
    let args: Vec<&str> = at(c, "/args")
        .as_array()
        .unwrap_or_else(|| panic!("array"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args[0], "webhook");
    assert!(
        args.contains(&"--tls-cert=/etc/nemutator/tls/tls.crt"),
        "{args:?}"
    );
    assert!(
        args.contains(&"--config=/etc/nemutator/config/config.yaml"),
        "{args:?}"
    );
    let pdb = &objects["PodDisruptionBudget/nemutator"];
    assert_eq!(at(pdb, "/spec/minAvailable"), 1);
    assert_eq!(
        at(pdb, "/spec/selector"),
        at(d, "/spec/selector"),
        "the budget covers the webhook's pods"
    );
    assert_eq!(
        at(&objects["Service/nemutator"], "/spec/selector"),
        at(d, "/spec/selector/matchLabels")
    );
    assert_eq!(
        at(
            &objects["ServiceAccount/nemutator"],
            "/automountServiceAccountToken"
        ),
        false
    );
    let bound: Vec<&Value> = objects
        .iter()
        .filter(|(k, _)| k.contains("RoleBinding/"))
        .flat_map(|(_, b)| at(b, "/subjects").as_array().into_iter().flatten())
        .collect();
    assert!(
        !bound.iter().any(|s| at(s, "/name") == NAME),
        "the webhook calls no API and is granted nothing: {bound:?}"
    );
}

/// The table in the docs of `controller::calls`, parsed: (group, resource,
/// verb, scope) for every verb.
fn documented_calls() -> BTreeSet<(String, String, String, Scope)> {
    let doc = include_str!("../controller/calls.rs");
    let mut out = BTreeSet::new();
    for line in doc.lines().filter_map(|l| l.strip_prefix("//! | `")) {
        let cells: Vec<&str> = line
            .split(" | ")
            .map(|c| c.trim_matches(['`', ' ']))
            .collect();
        let [group, resource, verbs, scope, ..] = cells[..] else {
            continue;
        };
        if resource == "resource" || resource.starts_with("---") {
            continue;
        }
        let scope = match scope {
            "cluster" => Scope::Cluster,
            "own namespace" => Scope::OwnNamespace,
            other => panic!("scope {other:?} in the calls table"),
        };
        let group = group.trim_matches('"');
        for verb in verbs.split(", ") {
            out.insert((
                group.to_owned(),
                resource.to_owned(),
                verb.to_owned(),
                scope,
            ));
        }
    }
    out
}

#[test]
fn the_controller_is_granted_exactly_the_calls_it_makes() {
    let o = mk_options();
    let objects = mk_objects(&o, &Tls::CertManager);
    let mut granted = BTreeSet::new();
    for (key, scope) in [
        ("ClusterRole/nemutator-controller", Scope::Cluster),
        ("Role/nemutator-controller", Scope::OwnNamespace),
    ] {
        for rule in at(&objects[key], "/rules").as_array().into_iter().flatten() {
            let list = |p: &str| -> Vec<String> {
                at(rule, p)
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            };
            for group in list("/apiGroups") {
                for resource in list("/resources") {
                    for verb in list("/verbs") {
                        assert!(!verb.contains('*') && !resource.contains('*'), "{rule}");
                        granted.insert((group.clone(), resource.clone(), verb, scope));
                    }
                }
            }
        }
    }
    let made: BTreeSet<_> = API_CALLS
        .iter()
        .flat_map(|c| {
            c.verbs.iter().map(|v| {
                (
                    c.group.to_owned(),
                    c.resource.to_owned(),
                    (*v).to_owned(),
                    c.scope,
                )
            })
        })
        .collect();
    assert_eq!(
        granted, made,
        "the Role and ClusterRole grant what API_CALLS lists"
    );
    assert_eq!(
        documented_calls(),
        made,
        "the table in controller/calls.rs docs"
    );
    assert!(!granted
        .iter()
        .any(|(_, r, v, _)| r == "pods" && v == "delete"));
    for binding in [
        "ClusterRoleBinding/nemutator-controller",
        "RoleBinding/nemutator-controller",
    ] {
        assert_eq!(
            at(&objects[binding], "/subjects"),
            &json!([{"kind": "ServiceAccount", "name": "nemutator-controller", "namespace": o.namespace}])
        );
    }
}

#[test]
fn the_controller_runs_two_replicas_with_its_own_account_and_service() {
    let o = mk_options();
    let objects = mk_objects(&o, &Tls::CertManager);
    let d = &objects["Deployment/nemutator-controller"];
    assert_eq!(at(d, "/spec/replicas"), 2);
    let pod = at(d, "/spec/template/spec");
    assert_eq!(at(pod, "/serviceAccountName"), "nemutator-controller");
    assert_eq!(at(pod, "/automountServiceAccountToken"), true);
    let c = at(pod, "/containers/0");
    assert_eq!(at(c, "/args/0"), "controller");
    let env: Vec<&str> = at(c, "/env")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        env.contains(&"POD_NAME") && env.contains(&"POD_NAMESPACE"),
        "{env:?}"
    );
    let selector = at(d, "/spec/selector/matchLabels");
    assert_eq!(
        at(&objects["Service/nemutator-controller"], "/spec/selector"),
        selector
    );
    assert_ne!(
        at(&objects["Service/nemutator"], "/spec/selector"),
        selector,
        "the webhook's Service does not send reviews to the controller"
    );
    let template_labels = at(d, "/spec/template/metadata/labels");
    for (k, v) in selector.as_object().into_iter().flatten() {
        assert_eq!(&template_labels[k], v);
    }
    // One serving certificate for both Services.
    let names = at(&objects["Certificate/nemutator-tls"], "/spec/dnsNames");
    assert!(
        names
            .as_array()
            .is_some_and(|n| n.contains(&json!("nemutator-controller.nemutator.svc"))),
        "{names}"
    );
}

#[test]
fn the_config_map_holds_the_config_and_a_new_one_rolls_the_pods() {
    let default = mk_options();
    let text = "policies:\n  - name: default\n    window: 3d\n";
    let custom = mk_options()
        .with_config(text, Path::new("c.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let a = mk_objects(&default, &Tls::CertManager);
    let b = mk_objects(&custom, &Tls::CertManager);
    assert_eq!(at(&b["ConfigMap/nemutator"], "/data/config.yaml"), text);
    let digest = "/spec/template/metadata/annotations/nemutator.io~1config-sha256";
    assert_ne!(
        at(&a["Deployment/nemutator"], digest),
        at(&b["Deployment/nemutator"], digest)
    );
    // The default configuration as written loads back to the defaults.
    let written = at(&a["ConfigMap/nemutator"], "/data/config.yaml")
        .as_str()
        .unwrap_or_default();
    let loaded = Config::from_yaml(written, Path::new("x")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.policies, Config::default().policies);
}

#[test]
fn bad_options_are_refused_with_one_line() {
    for (err, want) in [
        (
            InstallOptions::new("Not_A_Label").map(|_| ()),
            "invalid namespace",
        ),
        (
            mk_options()
                .with_webhook_url("http://127.0.0.1/x")
                .map(|_| ()),
            "want https://",
        ),
        (
            mk_options().with_webhook_url("not a url").map(|_| ()),
            "invalid webhook URL",
        ),
        (mk_options().with_replicas(0).map(|_| ()), "at least 1"),
        (
            mk_options()
                .with_config("policies: 7\n", Path::new("bad.yaml"))
                .map(|_| ()),
            "bad.yaml",
        ),
    ] {
        let msg = err.expect_err(want).to_string();
        assert!(msg.contains(want), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }
}

#[test]
fn a_webhook_url_replaces_the_service_and_joins_the_certificate_names() {
    let o = mk_options()
        .with_webhook_url("https://127.0.0.1:9443/mutate")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(o.serving_names()[0], "127.0.0.1");
    let objects = mk_objects(&o, &mk_generated(&o));
    let cc = at(
        &objects["MutatingWebhookConfiguration/nemutator"],
        "/webhooks/0/clientConfig",
    );
    assert_eq!(at(cc, "/url"), "https://127.0.0.1:9443/mutate");
    assert!(cc.get("service").is_none());
}

/// `deploy/kustomize/` is what `nemutator install --kustomize` writes; run
/// with `NEMUTATOR_BLESS=1` to write it after an intended change.
#[test]
fn deploy_kustomize_is_generated_from_the_install_objects() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kustomize");
    let tree = kustomize_tree(&mk_options()).unwrap_or_else(|e| panic!("{e}"));
    if std::env::var_os("NEMUTATOR_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(&root);
        for (path, text) in &tree {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap_or(&root)).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let mut on_disk = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            if path.is_dir() {
                stack.push(path);
            } else {
                on_disk.push(path);
            }
        }
    }
    on_disk.sort();
    let want: Vec<PathBuf> = tree.keys().map(|k| root.join(k)).collect();
    assert_eq!(
        on_disk, want,
        "deploy/kustomize has other files; NEMUTATOR_BLESS=1 rewrites it"
    );
    for (path, text) in &tree {
        let disk = std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            &disk == text,
            "deploy/kustomize/{path} drifted from `nemutator install`; NEMUTATOR_BLESS=1 cargo test -p nemutator-core install rewrites it"
        );
    }
}

/// What secrets need: a token reviewer with Vault's Kubernetes auth, the
/// webhook's token only when it logs in itself or reads pull secrets, and
/// `get secrets` only for the latter.
#[test]
fn secrets_get_exactly_the_permissions_their_configuration_needs() {
    let with = |text: &str| {
        let o = mk_options()
            .with_config(text, Path::new("c.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        mk_objects(&o, &Tls::CertManager)
    };
    let automount = |objects: &BTreeMap<String, Value>| {
        at(
            &objects["Deployment/nemutator"],
            "/spec/template/spec/automountServiceAccountToken",
        )
        .clone()
    };
    let vault =
        "secrets:\n  resolver: vault\n  vault: { address: https://vault:8200, role: nemutator }\n";
    let exec = with(vault);
    assert!(exec.contains_key("ClusterRoleBinding/nemutator-auth-delegator"));
    let binding = &exec["ClusterRoleBinding/nemutator-auth-delegator"];
    assert_eq!(at(binding, "/roleRef/name"), "system:auth-delegator");
    assert_eq!(
        at(binding, "/subjects/0"),
        &json!({"kind": "ServiceAccount", "name": "nemutator", "namespace": "nemutator"})
    );
    assert_eq!(
        automount(&exec),
        json!(false),
        "exec injection: pods log in, not the webhook"
    );
    // No ClusterRole for secrets (the controller's is its own).
    assert!(!exec
        .keys()
        .any(|k| k.starts_with("ClusterRole/") && k != "ClusterRole/nemutator-controller"));

    let env = with(&format!("{vault}  env_namespaces: [team-a]\n"));
    assert_eq!(
        automount(&env),
        json!(true),
        "env injection: the webhook logs in"
    );

    let pulls = with("secrets:\n  registry: { pull_secrets: true }\n");
    assert_eq!(automount(&pulls), json!(true));
    assert_eq!(
        at(&pulls["ClusterRole/nemutator-pull-secrets"], "/rules"),
        &json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}])
    );
    assert_eq!(
        at(
            &pulls["ClusterRoleBinding/nemutator-pull-secrets"],
            "/roleRef/name"
        ),
        "nemutator-pull-secrets"
    );
    assert!(!pulls.contains_key("ClusterRoleBinding/nemutator-auth-delegator"));
    let token = with("secrets:\n  resolver: vault\n  vault: { address: https://vault:8200, auth: token }\n  injection: env\n  env_namespaces: [a]\n");
    // Roles other than the controller's own.
    let secrets_roles = |objects: &BTreeMap<String, Value>| -> Vec<String> {
        objects
            .keys()
            .filter(|k| k.contains("Role") && !k.ends_with("/nemutator-controller"))
            .cloned()
            .collect()
    };
    assert!(secrets_roles(&token).is_empty(), "{:?}", token.keys());
    assert_eq!(automount(&token), json!(false));
    let off = with(&format!(
        "{vault}  enabled: false\n  env_namespaces: [a]\n  registry: {{ pull_secrets: true }}\n"
    ));
    assert!(secrets_roles(&off).is_empty(), "{:?}", off.keys());
    assert_eq!(automount(&off), json!(false), "secrets off: nothing");

    // The init container of exec injection runs the webhook's own image.
    let mut o = mk_options();
    o.image = "mirror.example/nemutator:1".into();
    let objects = mk_objects(&o, &Tls::CertManager);
    let env = at(
        &objects["Deployment/nemutator"],
        "/spec/template/spec/containers/0/env",
    );
    assert!(
        env.as_array().is_some_and(|e| e
            .contains(&json!({"name": "NEMUTATOR_IMAGE", "value": "mirror.example/nemutator:1"}))),
        "{env}"
    );
}

#[test]
fn the_kubernetes_source_gets_a_token_and_may_only_read_pod_metrics() {
    let plain = mk_objects(&mk_options(), &Tls::CertManager);
    assert!(!plain.keys().any(|k| k.contains(METRICS_READER)));

    let o = mk_options()
        .with_config("metrics: { source: kubernetes }\n", Path::new("c.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let objects = mk_objects(&o, &Tls::CertManager);
    let role = &objects[&format!("ClusterRole/{METRICS_READER}")];
    assert_eq!(
        at(role, "/rules"),
        &json!([{"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": ["get", "list"]}])
    );
    let binding = &objects[&format!("ClusterRoleBinding/{METRICS_READER}")];
    assert_eq!(
        at(binding, "/subjects"),
        &json!([{"kind": "ServiceAccount", "name": "nemutator", "namespace": "nemutator"}])
    );
    assert_eq!(at(binding, "/roleRef/name"), METRICS_READER);
    let pod = at(&objects["Deployment/nemutator"], "/spec/template/spec");
    assert_eq!(at(pod, "/automountServiceAccountToken"), true);
}

#[test]
fn placement_gets_a_token_and_may_only_list_and_watch_pods() {
    let plain = mk_objects(&mk_options(), &Tls::CertManager);
    assert!(!plain.keys().any(|k| k.contains(PLACEMENT_WATCHER)));
    let off = mk_options()
        .with_config(
            "placement: { enabled: false, strength: required }\n",
            Path::new("c.yaml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let off = mk_objects(&off, &Tls::CertManager);
    assert!(!off.keys().any(|k| k.contains(PLACEMENT_WATCHER)));
    assert_eq!(
        at(
            &off["Deployment/nemutator"],
            "/spec/template/spec/automountServiceAccountToken"
        ),
        false
    );

    let o = mk_options()
        .with_config("placement: { enabled: true }\n", Path::new("c.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let objects = mk_objects(&o, &Tls::CertManager);
    let role = &objects[&format!("ClusterRole/{PLACEMENT_WATCHER}")];
    assert_eq!(
        at(role, "/rules"),
        &json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}])
    );
    let binding = &objects[&format!("ClusterRoleBinding/{PLACEMENT_WATCHER}")];
    assert_eq!(
        at(binding, "/subjects"),
        &json!([{"kind": "ServiceAccount", "name": "nemutator", "namespace": "nemutator"}])
    );
    assert_eq!(at(binding, "/roleRef/name"), PLACEMENT_WATCHER);
    let pod = at(&objects["Deployment/nemutator"], "/spec/template/spec");
    assert_eq!(at(pod, "/automountServiceAccountToken"), true);
}
