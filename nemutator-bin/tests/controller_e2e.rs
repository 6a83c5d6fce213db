//! `nemutator controller` against the real API server (scripts/apiserver.sh):
//! leader election between real processes over a coordination.k8s.io Lease,
//! and the REST API's TokenReview / SubjectAccessReview checks, evictions
//! and metadata patches; the overprovisioning placeholder kept by the leader.
//!
//! No kubelet runs there: the tests play it, setting the pods' phase and
//! `Ready` condition through the status subresource.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use nemutator_core::controller::calls::{Scope, API_CALLS};
use nemutator_core::controller::overprov::{DEPLOYMENT_NAME, PRIORITY_CLASS};
use nemutator_core::install::CONTROLLER_NAME;
use nemutator_testkit::cluster::{eventually, TestCluster};
use serde_json::{json, Value};
use support::Webhook as Server;

fn mk<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
}

async fn mk_namespace(client: &Client, tag: &str) -> String {
    let name = format!("ctl-{tag}-{}", std::process::id());
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &mk(json!({"metadata": {"name": name}})),
        )
        .await
        .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
    name
}

/// `nemutator controller` as `identity`, its Lease in `ns`, as the API
/// server's administrator.
fn start(cluster: &TestCluster, ns: &str, identity: &str) -> Server {
    start_with(&cluster.kubeconfig.display().to_string(), ns, identity)
}

/// [`start`] with the credentials of `kubeconfig`.
fn start_with(kubeconfig: &str, ns: &str, identity: &str) -> Server {
    Server::spawn(
        "controller",
        &[
            "--lease-namespace",
            ns,
            "--lease-duration",
            "3s",
            "--identity",
            identity,
        ],
        &[("KUBECONFIG", kubeconfig)],
    )
}

async fn holder(client: &Client, ns: &str) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt("nemutator-controller")
        .await
        .ok()??;
    lease.spec?.holder_identity
}

async fn leads(server: &Server) -> Option<bool> {
    let r = server
        .client()
        .request("GET", "/metrics", vec![])
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("nemutator_controller_leader "))?;
    Some(line.ends_with(" 1"))
}

/// Waits until `who` holds the Lease and says so in its metrics.
async fn wait_leader(client: &Client, ns: &str, who: &str, server: &Server) {
    // Lease 3 s: a generous bound, not a timing assertion.
    let got = eventually(Duration::from_secs(40), || async {
        (holder(client, ns).await.as_deref() == Some(who) && leads(server).await == Some(true))
            .then_some(())
    })
    .await;
    assert!(
        got.is_some(),
        "{who} never led; holder {:?}",
        holder(client, ns).await
    );
}

#[tokio::test]
async fn one_of_two_controllers_leads_and_a_killed_leader_is_replaced() {
    let test = "one_of_two_controllers_leads_and_a_killed_leader_is_replaced";
    let Some(cluster) = TestCluster::from_env(test).await else {
        return;
    };
    let client = cluster.client.clone();
    let ns = mk_namespace(&client, "lease").await;
    let mut a = start(&cluster, &ns, "ctl-a");
    a.client().wait_ready().await;
    wait_leader(&client, &ns, "ctl-a", &a).await;
    let mut b = start(&cluster, &ns, "ctl-b");
    b.client().wait_ready().await;
    // B serves but does not lead while A renews.
    assert_eq!(leads(&b).await, Some(false));
    assert_eq!(holder(&client, &ns).await.as_deref(), Some("ctl-a"));

    // Killed (no release): B takes over once the Lease has expired.
    let _ = a.child.kill();
    let _ = a.child.wait();
    wait_leader(&client, &ns, "ctl-b", &b).await;

    // Stopped with SIGTERM: B releases the Lease and C takes it.
    let c = start(&cluster, &ns, "ctl-c");
    c.client().wait_ready().await;
    assert_eq!(leads(&c).await, Some(false));
    assert!(b.terminate().success());
    wait_leader(&client, &ns, "ctl-c", &c).await;
    let logs = b.logs().join("\n");
    assert!(logs.contains("released the Lease"), "{logs}");
}

/// Two ready pods of Deployment `web` (ReplicaSet `web-5f7d8c9b6`).
async fn mk_web_pods(client: &Client, ns: &str) -> Vec<String> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let mut names = Vec::new();
    for i in 0..2 {
        let name = format!("web-5f7d8c9b6-w{i}");
        let pod: Pod = mk(json!({
            "metadata": {
                "name": name, "namespace": ns, "labels": {"app": "web"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-5f7d8c9b6", "uid": "0b6c2a52-0000-4000-8000-000000000009",
                    "controller": true}],
            },
            "spec": {"nodeName": format!("n{i}"), "containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
        }));
        pods.create(&PostParams::default(), &pod)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = json!({"status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]}});
        pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        names.push(name);
    }
    names
}

async fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let headers: Vec<(&str, String)> = token
        .map(|t| vec![("authorization", format!("Bearer {t}"))])
        .unwrap_or_default();
    let body = if body.is_null() {
        vec![]
    } else {
        body.to_string().into_bytes()
    };
    let r = server
        .client()
        .request_with(method, path, &headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_rest_api_checks_tokens_and_rbac_and_dry_run_changes_nothing() {
    let test = "the_rest_api_checks_tokens_and_rbac_and_dry_run_changes_nothing";
    let Some(cluster) = TestCluster::from_env(test).await else {
        return;
    };
    let client = cluster.client.clone();
    let ns = mk_namespace(&client, "rest").await;
    let pods = mk_web_pods(&client, &ns).await;
    let nobody = cluster
        .service_account_token(&ns, "nobody", json!([]))
        .await;
    let evicter = cluster.service_account_token(&ns,
        "evicter",
        json!([
            {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]},
            {"apiGroups": ["nemutator.io"], "resources": ["recommendations", "seasons"], "verbs": ["get"]},
        ]),
    )
    .await;
    // The controller runs with the RBAC `nemutator install` grants it, and
    // nothing more: a call it makes outside those rules fails this test.
    support::install_controller_rbac(&client, &ns).await;
    let controller_token = cluster
        .service_account_token(&ns, CONTROLLER_NAME, json!([]))
        .await;
    let kubeconfig = support::tmpdir("ctl-rest").join("kubeconfig");
    cluster.kubeconfig_with_token(&controller_token, &kubeconfig);
    let server = start_with(&kubeconfig.display().to_string(), &ns, "ctl-rest");
    server.client().wait_ready().await;
    wait_leader(&client, &ns, "ctl-rest", &server).await;

    let evict =
        json!({"namespace": ns, "labelSelector": {"app": "web"}, "dryRun": true, "reason": "e2e"});
    let (status, body) = call(&server, "POST", "/api/v1/evictions", None, evict.clone()).await;
    assert_eq!(status, 401, "{body}");
    // The body is read only for a known caller: garbage without a token is 401.
    let (status, _) = call(&server, "POST", "/api/v1/evictions", None, json!("garbage")).await;
    assert_eq!(status, 401);
    let (status, body) = call(
        &server,
        "POST",
        "/api/v1/evictions",
        Some(&nobody),
        json!("garbage"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(
        &server,
        "POST",
        "/api/v1/evictions",
        Some("not-a-token"),
        evict.clone(),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = call(
        &server,
        "POST",
        "/api/v1/evictions",
        Some(&nobody),
        evict.clone(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("pods/eviction")),
        "{body}"
    );

    // With the right: a dry-run over both pods; one may go (tolerance), and
    // nothing changes.
    let (status, body) = call(&server, "POST", "/api/v1/evictions", Some(&evicter), evict).await;
    assert_eq!(status, 200, "{body}");
    let outcomes: Vec<&str> = body["pods"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["outcome"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(outcomes, ["dry-run", "refused"], "{body}");
    let pod_api = Api::<Pod>::namespaced(client.clone(), &ns);
    for name in &pods {
        let p = pod_api.get(name).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            p.metadata.deletion_timestamp.is_none(),
            "{name} was deleted by a dry-run"
        );
    }
    let events = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        events.items.is_empty(),
        "a dry-run writes no Event: {:?}",
        events.items
    );
    // In another namespace the evicter has no right.
    let other = json!({"namespace": "default", "podName": "x", "reason": "e2e", "dryRun": true});
    let (status, _) = call(&server, "POST", "/api/v1/evictions", Some(&evicter), other).await;
    assert_eq!(status, 403);
    // For real, one pod by name: evicted, with an Event.
    let one = json!({"namespace": ns, "podName": pods[1], "reason": "e2e for real"});
    let (status, body) = call(&server, "POST", "/api/v1/evictions", Some(&evicter), one).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pods"][0]["outcome"], "evicted", "{body}");
    let p = pod_api
        .get(&pods[1])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(p.metadata.deletion_timestamp.is_some(), "evicted");
    let events = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Evicted")
                && e.note.as_deref().is_some_and(
                    |n| n.contains("system:serviceaccount:") && n.contains(":evicter")
                )),
        "{:?}",
        events.items
    );

    // Labels on a running pod: dry-run leaves it, then set for real.
    let path = format!("/api/v1/namespaces/{ns}/pods/{}/metadata", pods[0]);
    let patch = json!({"labels": {"nemutator.io/noisy": "true"}, "dryRun": true});
    let (status, _) = call(&server, "PATCH", &path, Some(&nobody), patch.clone()).await;
    assert_eq!(status, 403);
    let (status, body) = call(&server, "PATCH", &path, Some(&evicter), patch).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["labels"]["nemutator.io/noisy"], "true", "{body}");
    let p = pod_api
        .get(&pods[0])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!p
        .metadata
        .labels
        .unwrap_or_default()
        .contains_key("nemutator.io/noisy"));
    let patch = json!({"labels": {"nemutator.io/noisy": "true"}, "annotations": {"team": "shop"}});
    let (status, body) = call(&server, "PATCH", &path, Some(&evicter), patch).await;
    assert_eq!(status, 200, "{body}");
    let p = pod_api
        .get(&pods[0])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        p.metadata
            .labels
            .unwrap_or_default()
            .get("nemutator.io/noisy")
            .map(String::as_str),
        Some("true")
    );
    let bad = json!({"labels": {"not a label": "x"}});
    let (status, body) = call(&server, "PATCH", &path, Some(&evicter), bad).await;
    assert_eq!(status, 422, "{body}");

    // Reads: namespaced with the right, forbidden cluster-wide.
    let (status, body) = call(
        &server,
        "GET",
        &format!("/api/v1/recommendations?namespace={ns}"),
        Some(&evicter),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["recommendations"].is_array(), "{body}");
    let (status, _) = call(
        &server,
        "GET",
        "/api/v1/recommendations",
        Some(&evicter),
        Value::Null,
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = call(
        &server,
        "GET",
        &format!("/api/v1/seasons?namespace={ns}"),
        Some(&evicter),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(
        &server,
        "GET",
        "/api/v1/seasons?bogus=1",
        Some(&evicter),
        Value::Null,
    )
    .await;
    assert_eq!(status, 400);

    // The document describes every route.
    let (status, doc) = call(&server, "GET", "/openapi.json", None, Value::Null).await;
    assert_eq!(status, 200);
    for path in [
        "/api/v1/evictions",
        "/api/v1/recommendations",
        "/api/v1/seasons",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
}

fn sar(
    user: &str,
    groups: &[String],
    verb: &str,
    group: &str,
    resource: &str,
    ns: Option<&str>,
) -> SubjectAccessReview {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_owned())),
        None => (resource, None),
    };
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            groups: Some(groups.to_vec()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                subresource,
                namespace: ns.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

#[tokio::test]
async fn the_installed_rbac_allows_every_call_of_the_controller_and_no_other() {
    let test = "the_installed_rbac_allows_every_call_of_the_controller_and_no_other";
    let Some(cluster) = TestCluster::from_env(test).await else {
        return;
    };
    let client = cluster.client.clone();
    let ns = mk_namespace(&client, "rbac").await;
    support::install_controller_rbac(&client, &ns).await;
    let user = format!("system:serviceaccount:{ns}:{CONTROLLER_NAME}");
    let groups = vec![
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{ns}"),
        "system:authenticated".to_owned(),
    ];
    let api = Api::<SubjectAccessReview>::all(client.clone());
    let allowed = |review: SubjectAccessReview| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &review)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .status
                .is_some_and(|s| s.allowed)
        }
    };
    for call in API_CALLS {
        let where_ = match call.scope {
            Scope::Cluster => Some("some-namespace"),
            Scope::OwnNamespace => Some(ns.as_str()),
        };
        for verb in call.verbs {
            let review = sar(&user, &groups, verb, call.group, call.resource, where_);
            assert!(
                allowed(review).await,
                "{verb} {}/{} denied",
                call.group,
                call.resource
            );
        }
    }
    for (verb, group, resource, at) in [
        ("delete", "", "pods", Some("some-namespace")),
        ("create", "", "pods", Some("some-namespace")),
        ("update", "", "pods", Some("some-namespace")),
        ("get", "", "secrets", Some(ns.as_str())),
        ("list", "", "secrets", None),
        (
            "patch",
            "coordination.k8s.io",
            "leases",
            Some("kube-system"),
        ),
        ("delete", "coordination.k8s.io", "leases", Some(ns.as_str())),
        ("update", "", "pods/resize", Some("some-namespace")),
        ("patch", "apps", "deployments", Some("some-namespace")),
        ("delete", "apps", "deployments", Some(ns.as_str())),
        ("update", "apps", "deployments", Some(ns.as_str())),
    ] {
        let review = sar(&user, &groups, verb, group, resource, at);
        assert!(
            !allowed(review).await,
            "{verb} {group}/{resource} in {at:?} allowed"
        );
    }
}

#[tokio::test]
async fn the_leader_keeps_the_overprovisioning_placeholder_with_its_installed_rbac() {
    let test = "the_leader_keeps_the_overprovisioning_placeholder_with_its_installed_rbac";
    let Some(cluster) = TestCluster::from_env(test).await else {
        return;
    };
    let client = cluster.client.clone();
    let ns = mk_namespace(&client, "over").await;
    support::install_controller_rbac(&client, &ns).await;
    let token = cluster
        .service_account_token(&ns, CONTROLLER_NAME, json!([]))
        .await;
    let dir = support::tmpdir("ctl-over");
    let kubeconfig = dir.join("kubeconfig");
    cluster.kubeconfig_with_token(&token, &kubeconfig);
    // Without seasons there is no cluster profile: the off-peak size.
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        "seasons: { enabled: false }\ncontroller:\n  overprovisioning:\n    \
         { enabled: true, replicas_peak: 4, replicas_off_peak: 2, cpu: 100m, memory: 64Mi }\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let server = Server::spawn(
        "controller",
        &[
            "--lease-namespace",
            &ns,
            "--lease-duration",
            "3s",
            "--identity",
            "ctl-over",
            "--overprovisioning-interval",
            "1s",
        ],
        &[
            ("KUBECONFIG", &kubeconfig.display().to_string()),
            ("NEMUTATOR_CONFIG", &config.display().to_string()),
        ],
    );
    server.client().wait_ready().await;
    wait_leader(&client, &ns, "ctl-over", &server).await;

    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    let sized = |want: i32| {
        let deployments = deployments.clone();
        async move {
            eventually(Duration::from_secs(30), || async {
                let d = deployments.get_opt(DEPLOYMENT_NAME).await.ok()??;
                (d.spec.as_ref()?.replicas == Some(want)).then_some(d)
            })
            .await
        }
    };
    let d = sized(2).await;
    let logs = server.logs().join("\n");
    let d = d.unwrap_or_else(|| panic!("no placeholder of 2 replicas; logs: {logs}"));
    let pod = d.spec.and_then(|s| s.template.spec);
    assert_eq!(
        pod.as_ref().and_then(|p| p.priority_class_name.as_deref()),
        Some(PRIORITY_CLASS)
    );
    let cpu = pod
        .and_then(|p| p.containers.into_iter().next())
        .and_then(|c| c.resources?.requests?.remove("cpu"));
    assert_eq!(cpu.map(|q| q.0).as_deref(), Some("100m"));
    let r = server
        .client()
        .request("GET", "/metrics", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        text.lines()
            .any(|l| l == "nemutator_overprovisioning_replicas 2"),
        "{text}"
    );

    // Scaled by someone else: the leader's next apply puts it back.
    deployments
        .patch(
            DEPLOYMENT_NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 9}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(sized(2).await.is_some(), "the scale to 9 was not undone");
}
