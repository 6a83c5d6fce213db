//! The Vault resolver against a real Vault API: OpenBao's dev server
//! (`scripts/openbao.sh`, KV v2 at `secret/`), with token auth, and with
//! Kubernetes auth verifying service-account tokens against the real
//! kube-apiserver of `scripts/apiserver.sh`. Without them the tests print one
//! line and skip (they fail where `NEMUTATOR_REQUIRE_APISERVER=1`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::PostParams;
use kube::Api;
use nemutator_core::secret::{
    ExposeSecret, SecretError, SecretRef, SecretResolver, VaultAuth, VaultConfig,
};
use nemutator_secrets::VaultResolver;
use nemutator_testkit::cluster::{harness_var, TestCluster};
use serde_json::json;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

struct Bao {
    addr: String,
    root: VaultClient,
    /// A prefix of this run under secret/, so runs do not meet.
    prefix: String,
}

fn bao(test: &str) -> Option<Bao> {
    let addr = harness_var(test, "NEMUTATOR_TEST_VAULT_ADDR", "OpenBao")?;
    let token = harness_var(test, "NEMUTATOR_TEST_VAULT_TOKEN", "OpenBao")?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = VaultClientSettingsBuilder::default()
        .address(&addr)
        .token(token)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let root = VaultClient::new(settings).unwrap_or_else(|e| panic!("{e}"));
    let prefix = format!("nemutator-{}-{test}", std::process::id());
    Some(Bao { addr, root, prefix })
}

impl Bao {
    async fn put(&self, path: &str, data: serde_json::Value) {
        vaultrs::kv2::set(
            &self.root,
            "secret",
            &format!("{}/{path}", self.prefix),
            &data,
        )
        .await
        .unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }

    fn reference(&self, path: &str, key: &str, version: Option<u64>) -> SecretRef {
        SecretRef {
            path: format!("secret/data/{}/{path}", self.prefix),
            key: key.into(),
            version,
        }
    }

    fn token_resolver(&self, token_env: &str, token: &str) -> VaultResolver {
        std::env::set_var(token_env, token);
        let mut c = VaultConfig::new(&self.addr);
        c.auth = VaultAuth::Token;
        c.token_env = token_env.into();
        VaultResolver::new(c).unwrap_or_else(|e| panic!("{e}"))
    }
}

async fn value(r: &VaultResolver, reference: &SecretRef) -> Result<String, SecretError> {
    r.resolve(reference)
        .await
        .map(|v| v.expose_secret().to_owned())
}

#[tokio::test]
async fn versions_deleted_destroyed_and_missing_with_token_auth() {
    let Some(b) = bao("versions") else {
        return;
    };
    for pw in ["one", "two", "three"] {
        b.put("db", json!({"password": pw, "user": "app"})).await;
    }
    let path = format!("{}/db", b.prefix);
    vaultrs::kv2::delete_versions(&b.root, "secret", &path, vec![2])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    vaultrs::kv2::destroy_versions(&b.root, "secret", &path, vec![1])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.put("gone", json!({"k": "v"})).await;
    vaultrs::kv2::delete_latest(&b.root, "secret", &format!("{}/gone", b.prefix))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let root_token = std::env::var("NEMUTATOR_TEST_VAULT_TOKEN").unwrap_or_default();
    let r = b.token_resolver("NEMUTATOR_TEST_VERSIONS_TOKEN", &root_token);
    assert_eq!(
        value(&r, &b.reference("db", "password", None))
            .await
            .ok()
            .as_deref(),
        Some("three")
    );
    assert_eq!(
        value(&r, &b.reference("db", "password", Some(3)))
            .await
            .ok()
            .as_deref(),
        Some("three")
    );
    let e = value(&r, &b.reference("db", "password", Some(2)))
        .await
        .expect_err("deleted");
    assert!(matches!(e, SecretError::Deleted { version: 2, .. }), "{e}");
    let e = value(&r, &b.reference("db", "password", Some(1)))
        .await
        .expect_err("destroyed");
    assert!(
        matches!(e, SecretError::Destroyed { version: 1, .. }),
        "{e}"
    );
    let e = value(&r, &b.reference("db", "password", Some(9)))
        .await
        .expect_err("no v9");
    assert!(matches!(e, SecretError::NotFound(_)), "{e}");
    let e = value(&r, &b.reference("gone", "k", None))
        .await
        .expect_err("latest deleted");
    assert!(matches!(e, SecretError::Deleted { version: 1, .. }), "{e}");
    let e = value(&r, &b.reference("nope", "k", None))
        .await
        .expect_err("missing");
    assert!(matches!(e, SecretError::NotFound(_)), "{e}");
    let e = value(&r, &b.reference("db", "nope", None))
        .await
        .expect_err("no key");
    assert!(matches!(e, SecretError::NoKey { .. }), "{e}");
    for e in [&e] {
        for secret in ["one", "two", "three", root_token.as_str()] {
            assert!(!e.to_string().contains(secret), "{e}");
        }
    }
}

#[tokio::test]
async fn a_token_without_the_policy_is_denied_and_a_dead_one_is_a_login_error() {
    let Some(b) = bao("denied") else {
        return;
    };
    b.put("allowed/db", json!({"password": "ok"})).await;
    b.put("other/db", json!({"password": "not-yours"})).await;
    let policy = format!(
        "path \"secret/data/{}/allowed/*\" {{ capabilities = [\"read\"] }}",
        b.prefix
    );
    let name = format!("{}-read", b.prefix);
    vaultrs::sys::policy::set(&b.root, &name, &policy)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let token = vaultrs::token::new(
        &b.root,
        Some(vaultrs::api::token::requests::CreateTokenRequest::builder().policies(vec![name])),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .client_token;
    let r = b.token_resolver("NEMUTATOR_TEST_DENIED_TOKEN", &token);
    assert_eq!(
        value(&r, &b.reference("allowed/db", "password", None))
            .await
            .ok()
            .as_deref(),
        Some("ok")
    );
    let e = value(&r, &b.reference("other/db", "password", None))
        .await
        .expect_err("denied");
    assert!(matches!(e, SecretError::PermissionDenied(_)), "{e}");
    assert!(!e.to_string().contains(&token));

    let dead = b.token_resolver("NEMUTATOR_TEST_DEAD_TOKEN", "no-such-token");
    let e = value(&dead, &b.reference("allowed/db", "password", None))
        .await
        .expect_err("dead");
    assert!(matches!(e, SecretError::PermissionDenied(_)), "{e}");
}

/// The admin kubeconfig's server URL and CA (PEM).
fn api_server(cluster: &TestCluster) -> (String, String) {
    let file =
        kube::config::Kubeconfig::read_from(&cluster.kubeconfig).unwrap_or_else(|e| panic!("{e}"));
    let c = file.clusters[0]
        .cluster
        .clone()
        .unwrap_or_else(|| panic!("no cluster"));
    let ca = c
        .certificate_authority_data
        .map(|b64| {
            let bytes = base64_simd::STANDARD
                .decode_to_vec(b64.trim())
                .unwrap_or_else(|e| panic!("{e}"));
            String::from_utf8(bytes).unwrap_or_else(|e| panic!("{e}"))
        })
        .unwrap_or_else(|| panic!("no CA data"));
    (c.server.unwrap_or_else(|| panic!("no server")), ca)
}

async fn service_account_token(cluster: &TestCluster, ns: &str, name: &str) -> String {
    let sas: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), ns);
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}}))
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = sas.create(&PostParams::default(), &sa).await;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    sas.create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("token of {ns}/{name}: {e}"))
        .status
        .map(|s| s.token)
        .unwrap_or_else(|| panic!("no token"))
}

#[tokio::test]
async fn kubernetes_auth_with_a_service_account_of_the_real_api_server() {
    let test = "kubernetes_auth_with_a_service_account_of_the_real_api_server";
    let Some(b) = bao("k8s") else {
        return;
    };
    let Some(cluster) = TestCluster::from_env(test).await else {
        return;
    };
    let ns = format!("team-a-{}", std::process::id());
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap_or_else(|e| panic!("{e}"));
    let _ = Api::<Namespace>::all(cluster.client.clone())
        .create(&PostParams::default(), &namespace)
        .await;
    // Vault reviews the login token with the token itself: the service
    // account may create TokenReviews (system:auth-delegator).
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{ns}-auth-delegator")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
        "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": ns}],
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let _ = Api::<ClusterRoleBinding>::all(cluster.client.clone())
        .create(&PostParams::default(), &binding)
        .await;
    let jwt = service_account_token(&cluster, &ns, "app").await;
    let other = service_account_token(&cluster, &ns, "other").await;

    let mount = format!("k8s-{}", std::process::id());
    vaultrs::sys::auth::enable(&b.root, &mount, "kubernetes", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (host, ca) = api_server(&cluster);
    vaultrs::auth::kubernetes::configure(
        &b.root,
        &mount,
        &host,
        Some(
            vaultrs::api::auth::kubernetes::requests::ConfigureKubernetesAuthRequest::builder()
                .kubernetes_ca_cert(ca)
                .disable_local_ca_jwt(true),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let policy = format!("{ns}-read");
    vaultrs::sys::policy::set(
        &b.root,
        &policy,
        &format!(
            "path \"secret/data/{}/team-a/*\" {{ capabilities = [\"read\"] }}",
            b.prefix
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    vaultrs::auth::kubernetes::role::create(
        &b.root,
        &mount,
        "app",
        Some(
            vaultrs::api::auth::kubernetes::requests::CreateKubernetesRoleRequest::builder()
                .bound_service_account_names(vec!["app".to_owned()])
                .bound_service_account_namespaces(vec![ns.clone()])
                .token_policies(vec![policy])
                .token_ttl("10m"),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    b.put("team-a/db", json!({"password": "from-k8s-auth"}))
        .await;
    b.put("team-b/db", json!({"password": "not-team-a"})).await;

    let dir = std::env::temp_dir().join(format!("nemutator-vault-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let mut files = BTreeMap::new();
    for (name, token) in [("app", &jwt), ("other", &other)] {
        let f = dir.join(name);
        std::fs::write(&f, token).unwrap_or_else(|e| panic!("{e}"));
        files.insert(name, f);
    }
    let resolver = |jwt_file: &PathBuf| {
        let mut c = VaultConfig::new(&b.addr);
        c.role = Some("app".into());
        c.mount = mount.clone();
        c.jwt_file = jwt_file.clone();
        VaultResolver::new(c).unwrap_or_else(|e| panic!("{e}"))
    };
    let r = resolver(&files["app"]);
    assert_eq!(
        value(&r, &b.reference("team-a/db", "password", None))
            .await
            .ok()
            .as_deref(),
        Some("from-k8s-auth")
    );
    let e = value(&r, &b.reference("team-b/db", "password", None))
        .await
        .expect_err("policy");
    assert!(matches!(e, SecretError::PermissionDenied(_)), "{e}");

    // Another service account is not bound to the role: a login error
    // naming the role, never the token.
    let e = value(
        &resolver(&files["other"]),
        &b.reference("team-a/db", "password", None),
    )
    .await
    .expect_err("not bound");
    assert!(matches!(e, SecretError::Login(_)), "{e}");
    assert!(e.to_string().contains("role app"), "{e}");
    assert!(!e.to_string().contains(&other), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
