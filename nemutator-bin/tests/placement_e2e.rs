//! Placement end-to-end against a real kube-apiserver and etcd
//! (scripts/apiserver.sh): `nemutator webhook` with `placement:` on,
//! running as nemutator's ServiceAccount with the RBAC `nemutator install`
//! grants for it (a token of its own), registered by URL for one namespace.
//! A pod labelled `nemutator.io/noisy=true` of a Deployment's ReplicaSet
//! exists; the webhook's watch sees it, so a new pod of the same workload
//! is labelled noisy and kept away from precious pods, and a precious pod
//! is kept away from noisy ones. The API server stores the patched pods, so
//! the patches are valid; once the noisy pods are gone, a new pod is left
//! alone.
//!
//! No kubelet or scheduler runs: pods stay Pending, which is all admission
//! needs. Without `NEMUTATOR_TEST_KUBECONFIG` this test prints one line and
//! skips (it fails instead where `NEMUTATOR_REQUIRE_APISERVER=1`).

mod support;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use nemutator_core::install::{self, InstallOptions, Tls, PLACEMENT_WATCHER};
use nemutator_testkit::cluster::{eventually, TestCluster};
use serde_json::{json, Value};
use support::{root, tmpdir, Webhook};

const CONFIG: &str = "examples/config-placement.yaml";
const NOISY: &str = "nemutator.io/noisy";
const PREFERRED: &str = "preferredDuringSchedulingIgnoredDuringExecution";

fn mk<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
}

async fn mk_namespace(client: &Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &mk(json!({"metadata": {"name": name}})),
        )
        .await
        .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
}

/// A pod of ReplicaSet `rs` (as a Deployment's pods are) with `labels`.
fn mk_pod(rs: &ReplicaSet, name: &str, labels: Value) -> Pod {
    mk(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": true,
                "name": rs.metadata.name, "uid": rs.metadata.uid,
            }],
        },
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
    }))
}

async fn mk_replica_set(client: &Client, ns: &str, name: &str, app: &str) -> ReplicaSet {
    Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &mk(json!({
                "metadata": {"name": name},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": app}},
                    "template": {
                        "metadata": {"labels": {"app": app}},
                        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
                    },
                },
            })),
        )
        .await
        .unwrap_or_else(|e| panic!("{ns}/{name}: {e}"))
}

/// nemutator's ServiceAccount in `home` and the placement RBAC of
/// `nemutator install` (the cluster-wide objects renamed per run); returns
/// a token of the ServiceAccount and the name of the ClusterRole.
async fn install_identity(cluster: &TestCluster, home: &str) -> (String, String) {
    let client = &cluster.client;
    let config = std::fs::read_to_string(root().join(CONFIG)).unwrap_or_else(|e| panic!("{e}"));
    let options = InstallOptions::new(home)
        .and_then(|o| o.with_config(&config, Path::new(CONFIG)))
        .unwrap_or_else(|e| panic!("{e}"));
    let m = install::manifests(&options, &Tls::CertManager);
    let unique = format!("{PLACEMENT_WATCHER}-{home}");
    let (Some(mut role), Some(mut binding)) = (m.placement_role, m.placement_binding) else {
        panic!("install grants nothing for placement");
    };
    role.metadata.name = Some(unique.clone());
    binding.metadata.name = Some(unique.clone());
    binding.role_ref.name = unique.clone();
    let pp = PostParams::default();
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), home);
    accounts
        .create(&pp, &m.service_account)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Api::<ClusterRole>::all(client.clone())
        .create(&pp, &role)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&pp, &binding)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let token = cluster.token(home, "nemutator").await;
    (token, unique)
}

/// Whether `user` may `verb` pods cluster-wide.
async fn may(client: &Client, user: &str, verb: &str) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                resource: Some("pods".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| panic!("SubjectAccessReview: {e}"))
        .status
        .is_some_and(|s| s.allowed)
}

/// The webhook registered for namespace `ns` only, by URL, trusting its
/// self-signed CA; `Fail`, so that a pod the webhook did not see is an error.
fn registration(name: &str, hook: &Webhook, ns: &str) -> MutatingWebhookConfiguration {
    mk(json!({
        "metadata": {"name": name},
        "webhooks": [{
            "name": "pods.nemutator.io",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {
                "url": format!("https://127.0.0.1:{}/mutate", hook.addr.port()),
                "caBundle": base64_simd::STANDARD.encode_to_string(hook.ca_pem.as_bytes()),
            },
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": 10,
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        }],
    }))
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

/// The label selector of each preferred anti-affinity term.
fn kept_away_from(pod: &Pod) -> Vec<Value> {
    let v = serde_json::to_value(pod).unwrap_or_default();
    v["spec"]["affinity"]["podAntiAffinity"][PREFERRED]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t["podAffinityTerm"]["labelSelector"].clone())
        .collect()
}

#[tokio::test]
async fn noisy_workloads_are_labelled_and_kept_apart_from_precious_pods() {
    let test = "noisy_workloads_are_labelled_and_kept_apart_from_precious_pods";
    let Some(cluster) = TestCluster::from_env(test).await else {
        return;
    };
    let client = cluster.client.clone();
    let pid = std::process::id();
    let (ns, home) = (format!("place-{pid}"), format!("place-home-{pid}"));
    mk_namespace(&client, &ns).await;
    mk_namespace(&client, &home).await;
    let (token, cluster_role) = install_identity(&cluster, &home).await;
    let user = format!("system:serviceaccount:{home}:nemutator");
    for (verb, allowed) in [
        ("list", true),
        ("watch", true),
        ("get", false),
        ("patch", false),
    ] {
        assert_eq!(may(&client, &user, verb).await, allowed, "{verb} pods");
    }

    // A noisy pod of Deployment `api` (ReplicaSet api-6b7c9d8f5), there
    // before the webhook starts: its first list finds it.
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    let api = mk_replica_set(&client, &ns, "api-6b7c9d8f5", "api").await;
    let db = mk_replica_set(&client, &ns, "db-7d9f5c6b8", "db").await;
    pods.create(
        &pp,
        &mk_pod(
            &api,
            "api-6b7c9d8f5-old00",
            json!({"app": "api", NOISY: "true"}),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("noisy pod: {e}"));

    let dir = tmpdir("placement");
    let kubeconfig = dir.join("kubeconfig");
    cluster.kubeconfig_with_token(&token, &kubeconfig);
    let hook = Webhook::spawn(
        "webhook",
        &["--config", CONFIG],
        &[("KUBECONFIG", &kubeconfig.display().to_string())],
    );
    let name = format!("nemutator-placement-e2e-{pid}");
    let hooks = Api::<MutatingWebhookConfiguration>::all(client.clone());
    hooks
        .create(&pp, &registration(&name, &hook, &ns))
        .await
        .unwrap_or_else(|e| panic!("registration: {e}"));

    // The API server takes the registration up within a moment and the
    // watch lists the noisy pod: probe with server-side dry-run creates.
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let probe = mk_pod(&api, "api-6b7c9d8f5-probe", json!({"app": "api"}));
    let seen = eventually(Duration::from_secs(60), || async {
        let pod = pods.create(&dry, &probe).await.ok()?;
        (label(&pod, NOISY) == Some("true")).then_some(pod)
    })
    .await;
    assert!(
        seen.is_some(),
        "a new pod of the noisy workload was never labelled; logs: {:?}",
        hook.logs()
    );

    // A new pod of the noisy workload: stored labelled noisy, kept away from
    // precious pods, in the noisy pool.
    let stored = pods
        .create(
            &pp,
            &mk_pod(&api, "api-6b7c9d8f5-new00", json!({"app": "api"})),
        )
        .await
        .unwrap_or_else(|e| panic!("the API server refused the patched pod: {e}"));
    assert_eq!(label(&stored, NOISY), Some("true"));
    assert_eq!(
        kept_away_from(&stored),
        [json!({"matchLabels": {"nemutator.io/tier": "precious"}})]
    );
    let spec = stored.spec.clone().unwrap_or_default();
    assert_eq!(
        spec.node_selector
            .unwrap_or_default()
            .get("nemutator.io/pool")
            .map(String::as_str),
        Some("noisy")
    );
    let tolerations = serde_json::to_value(spec.tolerations).unwrap_or_default();
    assert!(
        tolerations
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["key"] == "nemutator.io/pool"
                && t["value"] == "noisy"
                && t["effect"] == "NoSchedule"),
        "{tolerations}"
    );

    // A precious pod of another workload: kept away from noisy pods, not
    // labelled, no pool.
    let stored = pods
        .create(
            &pp,
            &mk_pod(
                &db,
                "db-7d9f5c6b8-new00",
                json!({"app": "db", "nemutator.io/tier": "precious"}),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("the API server refused the patched pod: {e}"));
    assert_eq!(
        kept_away_from(&stored),
        [json!({"matchLabels": {NOISY: "true"}})]
    );
    assert_eq!(label(&stored, NOISY), None);
    let term = serde_json::to_value(&stored).unwrap_or_default()["spec"]["affinity"]
        ["podAntiAffinity"][PREFERRED][0]
        .clone();
    assert_eq!(term["weight"], 100);
    assert_eq!(
        term["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(term["podAffinityTerm"]["namespaceSelector"], json!({}));

    // Once the workload has no noisy pods (both deleted; unscheduled pods
    // go at once), its new pods are left alone: the watch saw them go.
    for gone in ["api-6b7c9d8f5-old00", "api-6b7c9d8f5-new00"] {
        pods.delete(gone, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete {gone}: {e}"));
    }
    let quiet = eventually(Duration::from_secs(60), || async {
        let pod = pods.create(&dry, &probe).await.ok()?;
        label(&pod, NOISY).is_none().then_some(pod)
    })
    .await;
    let quiet = quiet.unwrap_or_else(|| panic!("still labelled noisy; logs: {:?}", hook.logs()));
    assert!(kept_away_from(&quiet).is_empty());

    // Leave the API server as found: no webhook registered, no cluster-wide
    // RBAC of this run.
    let _ = hooks.delete(&name, &DeleteParams::default()).await;
    let _ = Api::<ClusterRoleBinding>::all(client.clone())
        .delete(&cluster_role, &DeleteParams::default())
        .await;
    let _ = Api::<ClusterRole>::all(client.clone())
        .delete(&cluster_role, &DeleteParams::default())
        .await;
}
