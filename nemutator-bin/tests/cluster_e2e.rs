//! End-to-end against a real kube-apiserver and etcd (scripts/apiserver.sh):
//! `nemutator install` applied to the API server, the webhook running on
//! loopback and registered by URL, pods created through the API.
//!
//! No kubelet, scheduler or controller-manager runs: the installed Deployment
//! never gets pods and created pods stay Pending, which is all admission
//! needs. Without `NEMUTATOR_TEST_KUBECONFIG` this test prints one line and
//! skips (it fails instead where `NEMUTATOR_REQUIRE_APISERVER=1`).

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use nemutator_testkit::cluster::{eventually, TestCluster};
use serde_json::json;
use support::{tmpdir, Webhook, BIN};

const NS: &str = "nemutator-e2e";
const APPLIED: &str = "nemutator.io/resources-applied";

fn install(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("install")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{BIN}: {e}"));
    assert!(
        out.status.success(),
        "install {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{e}"))
}

/// A pod of the `api` Deployment in `shop` (which has usage history in the
/// embedded sample data), owned by its ReplicaSet as a Deployment's pods are.
fn mk_pod(
    ns: &str,
    name: &str,
    rs: &ReplicaSet,
    tweak: impl FnOnce(&mut serde_json::Value),
) -> Pod {
    let mut v = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"app": "api"},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": true,
                "name": rs.metadata.name, "uid": rs.metadata.uid,
            }],
        },
        "spec": {"containers": [{
            "name": "api",
            "image": "registry.invalid/shop/api:1",
            "resources": {
                "requests": {"cpu": "500m", "memory": "1Gi"},
                "limits": {"cpu": "1", "memory": "1Gi"},
            },
        }]},
    });
    tweak(&mut v);
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
}

async fn mk_replica_set(client: &kube::Client, ns: &str, name: &str) -> ReplicaSet {
    let rs: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "api", "image": "registry.invalid/shop/api:1"}]},
            },
        },
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let api = Api::<ReplicaSet>::namespaced(client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(found)) => found,
        _ => api
            .create(&PostParams::default(), &rs)
            .await
            .unwrap_or_else(|e| panic!("create {ns}/{name}: {e}")),
    }
}

/// A pod-name suffix of this run (a ReplicaSet's alphabet), so that the test
/// runs again on the same API server: nothing deletes namespaces there (no
/// controller-manager), so nothing is cleaned up.
fn suffix(tag: char) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = std::process::id() as usize;
    let mut s = String::from(tag);
    for _ in 0..4 {
        s.push(ALPHABET[n % ALPHABET.len()] as char);
        n /= ALPHABET.len();
    }
    s
}

async fn mk_namespace(client: &kube::Client, name: &str) {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let _ = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await;
}

fn requests(pod: &Pod) -> BTreeMap<String, String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers[0].resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default()
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// What `nemutator review --patched` makes of the same pod offline.
fn offline_patched(pod: &Pod) -> Pod {
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "offline", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": pod.metadata.namespace, "operation": "CREATE",
            "object": pod,
        },
    });
    let dir = tmpdir("offline-review");
    let file = dir.join("review.json");
    std::fs::write(&file, review.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(BIN)
        .current_dir(support::root())
        .args(["review", "--patched"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn install_applied_to_a_real_api_server_right_sizes_pods() {
    let Some(cluster) =
        TestCluster::from_env("install_applied_to_a_real_api_server_right_sizes_pods").await
    else {
        return;
    };
    let client = cluster.client.clone();
    let dir = tmpdir("cluster");
    let certs = dir.join("certs");
    let certs_arg = certs.display().to_string();

    // The certificate directory first (its names do not hold the port), then
    // the webhook on a port of its own, then the manifests pointing at it.
    install(&[
        "-n",
        NS,
        "--webhook-url",
        "https://127.0.0.1:1/mutate",
        "--cert-dir",
        &certs_arg,
    ]);
    let cert = certs.join("tls.crt").display().to_string();
    let key = certs.join("tls.key").display().to_string();
    let mut hook = Webhook::start(&["--tls-cert", &cert, "--tls-key", &key]);
    let url = format!("https://127.0.0.1:{}/mutate", hook.addr.port());
    let manifests = install(&["-n", NS, "--webhook-url", &url, "--cert-dir", &certs_arg]);
    let applied = cluster
        .apply_yaml(&manifests)
        .await
        .unwrap_or_else(|e| panic!("applying the install output: {e}"));
    let kinds: Vec<String> = applied
        .iter()
        .filter_map(|o| o.types.as_ref().map(|t| t.kind.clone()))
        .collect();
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Secret",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "MutatingWebhookConfiguration",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} applied: {kinds:?}");
    }

    mk_namespace(&client, "shop").await;
    let rs = mk_replica_set(&client, "shop", "api-6b7c9d8f5").await;
    let pods = Api::<Pod>::namespaced(client.clone(), "shop");

    // The API server picks the new configuration up within a moment: probe
    // with server-side dry-run creates until the webhook has been called.
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let probe = mk_pod(
        "shop",
        &format!("api-6b7c9d8f5-{}", suffix('p')),
        &rs,
        |_| {},
    );
    let seen = eventually(Duration::from_secs(60), || async {
        let pod = pods.create(&dry, &probe).await.ok()?;
        annotation(&pod, APPLIED).is_some().then_some(pod)
    })
    .await;
    assert!(
        seen.is_some(),
        "the API server never called the webhook; logs: {:?}",
        hook.logs()
    );

    // A pod of the Deployment comes back stored with right-sized resources,
    // the same the offline pipeline computes.
    let name = format!("api-6b7c9d8f5-{}", suffix('k'));
    let pod = mk_pod("shop", &name, &rs, |_| {});
    let want = offline_patched(&pod);
    pods.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    let stored = pods.get(&name).await.unwrap_or_else(|e| panic!("{e}"));
    let before = requests(&pod);
    assert_ne!(requests(&stored), before, "resources were right-sized");
    assert_eq!(
        requests(&stored),
        requests(&want),
        "as the offline pipeline computes"
    );
    let note = annotation(&stored, APPLIED).unwrap_or_else(|| panic!("{APPLIED} missing"));
    assert!(note.starts_with("api: cpu 500m->"), "{note}");

    // Opted out by annotation, by label (the API server does not even call
    // the webhook), and dry-run: resources as sent.
    type Tweak = fn(&mut serde_json::Value);
    let cases: [(char, Tweak); 3] = [
        ('f', |v| {
            v["metadata"]["annotations"] = json!({"nemutator.io/resources": "off"});
        }),
        ('l', |v| {
            v["metadata"]["labels"]["nemutator.io/resources"] = json!("off");
        }),
        ('d', |v| {
            v["metadata"]["annotations"] = json!({"nemutator.io/resources": "dry-run"});
        }),
    ];
    for (tag, tweak) in cases {
        let name = &format!("api-6b7c9d8f5-{}", suffix(tag));
        let pod = mk_pod("shop", name, &rs, tweak);
        let stored = pods
            .create(&PostParams::default(), &pod)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(requests(&stored), before, "{name} left alone");
        let note = annotation(&stored, APPLIED);
        if tag == 'd' {
            assert!(
                note.is_some_and(|n| n.contains("dry-run")),
                "{name}: {note:?}"
            );
        } else {
            assert!(note.is_none(), "{name}: {note:?}");
        }
    }

    // Excluded namespaces: nemutator's own and kube-system (coredns has
    // history in the sample data, and still is not touched).
    for (ns, rs_name) in [(NS, "api-6b7c9d8f5"), ("kube-system", "coredns-5d78c9869d")] {
        let rs = mk_replica_set(&client, ns, rs_name).await;
        let name = &format!("{rs_name}-{}", suffix('x'));
        let pod = mk_pod(ns, name, &rs, |v| {
            v["spec"]["containers"][0]["name"] = json!("coredns");
        });
        let stored = Api::<Pod>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &pod)
            .await
            .unwrap_or_else(|e| panic!("{ns}/{name}: {e}"));
        assert_eq!(requests(&stored), before, "{ns} is excluded");
        assert!(annotation(&stored, APPLIED).is_none());
    }

    // The webhook's identity is granted nothing.
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{NS}:nemutator")),
            resource_attributes: Some(ResourceAttributes {
                verb: Some("list".into()),
                resource: Some("pods".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| panic!("SubjectAccessReview: {e}"));
    assert!(
        !answer.status.is_some_and(|s| s.allowed),
        "the webhook may not list pods"
    );

    // nemutator down: pods are still created (failurePolicy: Ignore), as sent.
    hook.terminate();
    let pod = mk_pod(
        "shop",
        &format!("api-6b7c9d8f5-{}", suffix('n')),
        &rs,
        |_| {},
    );
    let stored = pods
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("a pod must be created with nemutator down: {e}"));
    assert_eq!(requests(&stored), before);
    assert!(annotation(&stored, APPLIED).is_none());

    // Leave the cluster as found for other tests: no webhook registered.
    let _ = Api::<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration>::all(
        client.clone(),
    )
    .delete("nemutator", &Default::default())
    .await;
    // Nor the controller's cluster-wide RBAC and PriorityClass (a Helm
    // install would refuse to adopt them).
    let _ = Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone())
        .delete(
            nemutator_core::install::CONTROLLER_NAME,
            &Default::default(),
        )
        .await;
    let _ = Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(client.clone())
        .delete(
            nemutator_core::install::CONTROLLER_NAME,
            &Default::default(),
        )
        .await;
    let _ = Api::<k8s_openapi::api::scheduling::v1::PriorityClass>::all(client.clone())
        .delete(
            nemutator_core::controller::overprov::PRIORITY_CLASS,
            &Default::default(),
        )
        .await;
}
