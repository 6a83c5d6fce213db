//! The API double against kube-rs as nemutator configures it
//! (`nemutator_core::k8s`), over plain HTTP and HTTPS: the bytes it sends are
//! what that client parses.

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;
use nemutator_core::k8s::{get_pod, Client, ClientOptions, K8sError};
use nemutator_core::secret::BearerToken;
use nemutator_testkit::{mk_pod, ApiServer, DEFAULT_TOKEN};

const CTR: &str = "containerd://3f7a9c1e2b4d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";

async fn client(api: &ApiServer, token: Option<&str>) -> Client {
    let mut options = ClientOptions::url(api.url());
    options.token = token.map(BearerToken::new);
    options.ca_pem = api.ca_pem().map(|pem| pem.as_bytes().to_vec());
    options.client().await.expect("client")
}

fn seeded(api: &ApiServer) {
    api.store()
        .insert(&mk_pod("shop", "web-0", &[("app", CTR), ("sidecar", CTR)]))
        .expect("seed");
    api.store()
        .insert(&mk_pod("shop", "web-1", &[("app", CTR)]))
        .expect("seed");
    api.store()
        .insert(&mk_pod("other", "db-0", &[("db", CTR)]))
        .expect("seed");
}

#[tokio::test]
async fn get_pod_over_http_and_https() {
    for tls in [false, true] {
        let api = ApiServer::builder().tls(tls).start().expect("start");
        assert_eq!(api.url().starts_with("https://"), tls);
        seeded(&api);
        let c = client(&api, Some(DEFAULT_TOKEN)).await;
        let pod = get_pod(&c, "shop", "web-0").await.expect("pod");
        assert_eq!(pod.metadata.name.as_deref(), Some("web-0"));
        assert!(pod.metadata.resource_version.is_some());
        let statuses = pod
            .status
            .and_then(|s| s.container_statuses)
            .expect("statuses");
        assert_eq!(statuses[1].container_id.as_deref(), Some(CTR));
        let log = api.requests();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].path, "/api/v1/namespaces/shop/pods/web-0");
        assert!(log[0].bearer);
        assert_eq!(log[0].status, 200);
    }
}

#[tokio::test]
async fn missing_pods_are_real_not_found_statuses() {
    let api = ApiServer::start().expect("start");
    seeded(&api);
    let c = client(&api, Some(DEFAULT_TOKEN)).await;
    let err = get_pod(&c, "shop", "nope").await.expect_err("404");
    assert!(matches!(err, K8sError::NotFound(_)), "{err}");
    assert_eq!(err.to_string(), "pods \"nope\" not found");
    api.store().remove::<Pod>("shop", "web-0");
    let err = get_pod(&c, "shop", "web-0").await.expect_err("removed");
    assert!(matches!(err, K8sError::NotFound(_)));
}

#[tokio::test]
async fn lists_per_namespace_and_across() {
    let api = ApiServer::start().expect("start");
    seeded(&api);
    let c = client(&api, Some(DEFAULT_TOKEN)).await;
    let lp = ListParams::default();
    let shop = Api::<Pod>::namespaced(c.clone(), "shop")
        .list(&lp)
        .await
        .expect("list");
    assert_eq!(shop.items.len(), 2);
    assert!(shop.metadata.resource_version.is_some());
    let all = Api::<Pod>::all(c.clone()).list(&lp).await.expect("list");
    assert_eq!(all.items.len(), 3);
    let empty = Api::<Pod>::namespaced(c.clone(), "none")
        .list(&lp)
        .await
        .expect("list");
    assert!(empty.items.is_empty());
    let err = Api::<Pod>::all(c)
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect_err("not modelled");
    let err = K8sError::from(err);
    assert!(err.to_string().contains("does not model"), "{err}");
}

#[tokio::test]
async fn wrong_or_missing_token_is_401() {
    let api = ApiServer::builder().token("right").start().expect("start");
    seeded(&api);
    for token in [None, Some("wrong")] {
        let c = client(&api, token).await;
        let err = get_pod(&c, "shop", "web-0").await.expect_err("401");
        assert!(matches!(err, K8sError::Unauthorized(_)), "{err}");
        assert!(!err.to_string().contains("wrong"), "token leaked: {err}");
    }
    assert!(api.requests().iter().all(|r| r.status == 401));
    let open = ApiServer::builder().no_auth().start().expect("start");
    seeded(&open);
    let c = client(&open, None).await;
    assert!(get_pod(&c, "shop", "web-1").await.is_ok());
}

#[tokio::test]
async fn https_refuses_an_untrusted_server() {
    let api = ApiServer::builder().tls(true).start().expect("start");
    let other = ApiServer::builder().tls(true).start().expect("start");
    let mut options = ClientOptions::url(api.url());
    options.ca_pem = Some(other.ca_pem().expect("pem").as_bytes().to_vec());
    let c = options.client().await.expect("client");
    let err = get_pod(&c, "shop", "web-0").await.expect_err("untrusted");
    assert!(matches!(err, K8sError::Transport(_)), "{err}");
}
