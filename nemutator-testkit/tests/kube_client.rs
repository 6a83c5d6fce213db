//! The API double against the real client of `nemutator_core::kube`, over
//! plain HTTP and HTTPS: the bytes it sends are what that client parses.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::List;

type PodList = List<Pod>;
use nemutator_core::kube::{BearerToken, KubeClient, KubeConfig, KubeError};
use nemutator_testkit::{mk_pod, ApiServer, DEFAULT_TOKEN};

const CTR: &str = "containerd://3f7a9c1e2b4d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";

fn client(api: &ApiServer, token: Option<&str>) -> KubeClient {
    let mut config = KubeConfig::new(api.url()).expect("url");
    if let Some(t) = token {
        config = config.with_token(BearerToken::new(t));
    }
    if let Some(pem) = api.ca_pem() {
        config = config.with_ca_pem(pem.as_bytes().to_vec());
    }
    KubeClient::new(config).expect("client")
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
        let pod = client(&api, Some(DEFAULT_TOKEN))
            .get_pod("shop", "web-0")
            .await
            .expect("pod");
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
    let c = client(&api, Some(DEFAULT_TOKEN));
    let err = c.get_pod("shop", "nope").await.expect_err("404");
    assert!(matches!(err, KubeError::NotFound(_)), "{err}");
    assert_eq!(err.to_string(), "pods \"nope\" not found");
    // The raw body is a meta/v1 Status.
    let status: serde_json::Value = c
        .get::<serde_json::Value>("/api/v1/namespaces/shop/pods/web-0")
        .await
        .expect("ok");
    assert_eq!(status["kind"], "Pod");
    api.store().remove::<Pod>("shop", "web-0");
    let err = c.get_pod("shop", "web-0").await.expect_err("removed");
    assert!(matches!(err, KubeError::NotFound(_)));
}

#[tokio::test]
async fn lists_per_namespace_and_across() {
    let api = ApiServer::start().expect("start");
    seeded(&api);
    let c = client(&api, Some(DEFAULT_TOKEN));
    let shop: PodList = c.get("/api/v1/namespaces/shop/pods").await.expect("list");
    assert_eq!(shop.items.len(), 2);
    assert!(shop.metadata.resource_version.is_some());
    let all: PodList = c.get("/api/v1/pods").await.expect("list");
    assert_eq!(all.items.len(), 3);
    let empty: PodList = c.get("/api/v1/namespaces/none/pods").await.expect("list");
    assert!(empty.items.is_empty());
    let err = c
        .get::<PodList>("/api/v1/pods?watch=true")
        .await
        .expect_err("not modelled");
    assert!(err.to_string().contains("does not model"), "{err}");
}

#[tokio::test]
async fn wrong_or_missing_token_is_401() {
    let api = ApiServer::builder().token("right").start().expect("start");
    seeded(&api);
    for token in [None, Some("wrong")] {
        let err = client(&api, token)
            .get_pod("shop", "web-0")
            .await
            .expect_err("401");
        assert!(matches!(err, KubeError::Unauthorized(_)), "{err}");
        assert!(!err.to_string().contains("wrong"), "token leaked: {err}");
    }
    assert!(api.requests().iter().all(|r| r.status == 401));
    let open = ApiServer::builder().no_auth().start().expect("start");
    seeded(&open);
    assert!(client(&open, None).get_pod("shop", "web-1").await.is_ok());
}

#[tokio::test]
async fn https_refuses_an_untrusted_server() {
    let api = ApiServer::builder().tls(true).start().expect("start");
    let other = ApiServer::builder().tls(true).start().expect("start");
    let config = KubeConfig::new(api.url())
        .expect("url")
        .with_ca_pem(other.ca_pem().expect("pem").as_bytes().to_vec());
    let err = KubeClient::new(config)
        .expect("client")
        .get_pod("shop", "web-0")
        .await
        .expect_err("untrusted");
    assert!(matches!(err, KubeError::Connect { .. }), "{err}");
}
