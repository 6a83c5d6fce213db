//! The real API server of the end-to-end tests: kube-apiserver and etcd
//! built from their Go modules and started on loopback by
//! `scripts/apiserver.sh` (docs/TESTENV.md), found through
//! `NEMUTATOR_TEST_KUBECONFIG`.
//!
//! A test calls [`TestCluster::from_env`]; without the variable it prints one
//! line saying why it skips, unless `NEMUTATOR_REQUIRE_APISERVER=1` (CI), where
//! a missing API server fails the test.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::discovery::{self, Scope};
use kube::{Api, Client};
use serde::Deserialize as _;

/// The variable holding the admin kubeconfig of the test API server.
pub const KUBECONFIG_ENV: &str = "NEMUTATOR_TEST_KUBECONFIG";
/// Set to `1` where a test API server must be present (CI).
pub const REQUIRE_ENV: &str = "NEMUTATOR_REQUIRE_APISERVER";

/// A connection to the test API server as its administrator.
#[derive(Clone)]
pub struct TestCluster {
    /// Admin client.
    pub client: Client,
    /// Its configuration (for clients of other settings).
    pub config: kube::Config,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
}

impl TestCluster {
    /// The API server named by `NEMUTATOR_TEST_KUBECONFIG`, or `None` (with
    /// one printed line) when there is none and none is required.
    pub async fn from_env(test: &str) -> Option<TestCluster> {
        let path = PathBuf::from(harness_var(test, KUBECONFIG_ENV, "a real API server")?);
        let file = kube::config::Kubeconfig::read_from(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let client =
            Client::try_from(config.clone()).unwrap_or_else(|e| panic!("kube client: {e}"));
        Some(TestCluster {
            client,
            config,
            kubeconfig: path,
        })
    }

    /// A one-hour token of ServiceAccount `name` in `ns` (a TokenRequest).
    pub async fn token(&self, ns: &str, name: &str) -> String {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        Api::<ServiceAccount>::namespaced(self.client.clone(), ns)
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("token of {ns}/{name}: {e}"))
            .status
            .map(|s| s.token)
            .unwrap_or_default()
    }

    /// ServiceAccount `name` in `ns` (created when missing), bound to a Role
    /// of its name with `rules` (a JSON list of RBAC rules; empty: no Role),
    /// and a [`token`](Self::token) of it.
    pub async fn service_account_token(
        &self,
        ns: &str,
        name: &str,
        rules: serde_json::Value,
    ) -> String {
        fn mk<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
            serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
        }
        let pp = PostParams::default();
        let accounts = Api::<ServiceAccount>::namespaced(self.client.clone(), ns);
        if accounts.get_opt(name).await.ok().flatten().is_none() {
            accounts
                .create(&pp, &mk(serde_json::json!({"metadata": {"name": name}})))
                .await
                .unwrap_or_else(|e| panic!("ServiceAccount {ns}/{name}: {e}"));
        }
        if rules.as_array().is_some_and(|r| !r.is_empty()) {
            Api::<Role>::namespaced(self.client.clone(), ns)
                .create(
                    &pp,
                    &mk(serde_json::json!({"metadata": {"name": name}, "rules": rules})),
                )
                .await
                .unwrap_or_else(|e| panic!("Role {ns}/{name}: {e}"));
            Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                .create(
                    &pp,
                    &mk(serde_json::json!({
                        "metadata": {"name": name},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
                    })),
                )
                .await
                .unwrap_or_else(|e| panic!("RoleBinding {ns}/{name}: {e}"));
        }
        self.token(ns, name).await
    }

    /// Writes to `path` a kubeconfig of this API server with `token` for
    /// credentials (a process run with it has exactly that account's rights).
    pub fn kubeconfig_with_token(&self, token: &str, path: &Path) {
        let admin =
            kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap_or_else(|e| panic!("{e}"));
        let c = admin
            .clusters
            .first()
            .and_then(|c| c.cluster.clone())
            .unwrap_or_else(|| panic!("no cluster in the admin kubeconfig"));
        let yaml = serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "test", "cluster": {
                "server": c.server, "certificate-authority-data": c.certificate_authority_data,
            }}],
            "users": [{"name": "sa", "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "test", "user": "sa"}}],
            "current-context": "sa",
        });
        let text = serde_yaml::to_string(&yaml).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Server-side apply of every object of a multi-document YAML stream, as
    /// `kubectl apply --server-side -f` does; returns the stored objects.
    pub async fn apply_yaml(&self, yaml: &str) -> Result<Vec<DynamicObject>, String> {
        let mut applied = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let value = serde_json::Value::deserialize(doc).map_err(|e| e.to_string())?;
            if value.is_null() {
                continue;
            }
            let object: DynamicObject =
                serde_json::from_value(value).map_err(|e| format!("not an object: {e}"))?;
            let types = object
                .types
                .clone()
                .ok_or("an object without apiVersion/kind")?;
            let gvk = GroupVersionKind::try_from(&types).map_err(|e| e.to_string())?;
            let (resource, caps) = discovery::pinned_kind(&self.client, &gvk)
                .await
                .map_err(|e| format!("{}: {e}", types.kind))?;
            let name = object
                .metadata
                .name
                .clone()
                .ok_or("an object without a name")?;
            let api: Api<DynamicObject> = match caps.scope {
                Scope::Namespaced => {
                    let ns = object.metadata.namespace.as_deref().unwrap_or("default");
                    Api::namespaced_with(self.client.clone(), ns, &resource)
                }
                Scope::Cluster => Api::all_with(self.client.clone(), &resource),
            };
            let params = PatchParams::apply("nemutator-e2e").force();
            let stored = api
                .patch(&name, &params, &Patch::Apply(&object))
                .await
                .map_err(|e| format!("{}/{name}: {e}", types.kind))?;
            applied.push(stored);
        }
        Ok(applied)
    }
}

/// The value of `var`, which `scripts/test.sh` sets when it started
/// `what`; without it, `None` and one printed line saying the test skips, or
/// a panic where `NEMUTATOR_REQUIRE_APISERVER=1` (CI).
pub fn harness_var(test: &str, var: &str, what: &str) -> Option<String> {
    if let Ok(value) = std::env::var(var) {
        return Some(value);
    }
    let why = format!("{var} is not set (./scripts/test.sh starts {what} and sets it)");
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
        panic!("{test}: {REQUIRE_ENV}=1 but {why}");
    }
    // Straight to stderr: the test harness captures eprintln!, and a skip
    // must show even when the test passes.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "skipping {test}: {why}");
    None
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
