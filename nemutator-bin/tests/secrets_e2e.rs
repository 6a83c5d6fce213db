//! Secrets end to end against real components (scripts/test.sh starts them):
//! the real kube-apiserver with `nemutator install` applied (secrets
//! configuration included) and the webhook registered by URL, OpenBao with
//! KV v2 and Kubernetes auth reviewing tokens through that API server (with a
//! token of nemutator's service account as the reviewer, which install binds
//! to `system:auth-delegator`), and a docker-registry holding the app image.
//!
//! - `exec`: a pod without `command` comes back stored with the init
//!   container, the in-memory volume and `nemutator env -- <entrypoint from
//!   the registry>`, probes and hooks untouched; the `nemutator env` of that
//!   container spec, run here with the same environment and a token of the
//!   pod's service account, logs in to OpenBao and the exec'd process sees
//!   the real values.
//! - `env`: values written at admission in an `env_namespaces` namespace,
//!   denied elsewhere; a path outside `allowed_paths` denied.
//! - The captured logs hold no secret value.
//!
//! No kubelet runs: pods stay Pending, which is all admission needs. Without
//! the components each piece prints one line and skips (it fails where
//! `NEMUTATOR_REQUIRE_APISERVER=1`).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::PostParams;
use kube::Api;
use nemutator_testkit::cluster::{eventually, harness_var, TestCluster};
use nemutator_testkit::registry::TestRegistry;
use serde_json::{json, Value};
use support::{tmpdir, Webhook, BIN};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

/// nemutator's namespace in this test.
const NS: &str = "nemutator-secrets";
/// Pods with `exec` injection (the default).
const EXEC_NS: &str = "secrets-exec";
/// In `env_namespaces`.
const ENV_NS: &str = "secrets-env";
/// Not in `env_namespaces`.
const OTHER_NS: &str = "secrets-other";
const INIT_IMAGE: &str = "mirror.example/nemutator:e2e";
/// What the app image runs: its Entrypoint and Cmd.
const ENTRYPOINT: [&str; 2] = ["/bin/sh", "-c"];
const CMD: &str = r#"printf '%s|%s|%s' "$DB_PASSWORD" "$DB_USER" "$PLAIN""#;

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

/// A pod-name suffix of this run: nothing deletes pods on the test API
/// server (no controller-manager), so each run names its own.
fn suffix(tag: &str) -> String {
    format!("{tag}-{}", std::process::id())
}

async fn mk_namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await;
}

/// A token of `ns/name` (created when missing), as the kubelet would mount.
async fn service_account_token(client: &kube::Client, ns: &str, name: &str) -> String {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
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

/// OpenBao as its root: `POST /v1/PATH` with a JSON body.
async fn bao_write(addr: &str, token: &str, path: &str, body: Value) {
    let reply = reqwest::Client::new()
        .post(format!("{addr}/v1/{path}"))
        .header("X-Vault-Token", token)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = reply.status();
    let text = reply.text().await.unwrap_or_default();
    assert!(status.is_success(), "{path}: {status} {text}");
}

/// The stored pod's first container, as JSON.
fn app(pod: &Pod) -> Value {
    serde_json::to_value(
        &pod.spec
            .as_ref()
            .unwrap_or_else(|| panic!("no spec"))
            .containers[0],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn mk_pod(ns: &str, name: &str, image: &str, annotations: Value, env: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {
            "serviceAccountName": "app",
            "containers": [{
                "name": "app", "image": image, "env": env,
                // Every field set, so the API server's defaults change nothing.
                "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 10,
                                  "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 1"]}}},
            }],
        },
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The denial of creating `pod`, as the API server words it.
async fn denial(pods: &Api<Pod>, pod: &Pod) -> String {
    match pods.create(&PostParams::default(), pod).await {
        Ok(_) => panic!("{:?} was admitted", pod.metadata.name),
        Err(kube::Error::Api(status)) => status.message,
        Err(e) => panic!("{e}"),
    }
}

/// Runs the container spec `c` here: its command with the binary under
/// test in place of the copied one, its environment (and nothing else but
/// the service-account token file the kubelet would mount).
fn run_container(c: &Value, jwt_file: &Path) -> std::process::Output {
    let command: Vec<String> =
        serde_json::from_value(c["command"].clone()).unwrap_or_else(|e| panic!("command: {e}"));
    let args: Vec<String> =
        serde_json::from_value(c["args"].clone()).unwrap_or_else(|e| panic!("args: {e}"));
    assert_eq!(command[0], "/nemutator/nemutator");
    let mut cmd = Command::new(BIN);
    cmd.args(&command[1..]).args(&args).env_clear();
    for e in c["env"].as_array().into_iter().flatten() {
        let (Some(name), Some(value)) = (e["name"].as_str(), e["value"].as_str()) else {
            panic!("env {e}");
        };
        cmd.env(name, value);
    }
    cmd.env("NEMUTATOR_VAULT_JWT_FILE", jwt_file)
        .env("NEMUTATOR_LOG", "trace")
        .output()
        .unwrap_or_else(|e| panic!("{BIN}: {e}"))
}

#[tokio::test]
async fn secrets_reach_pods_through_the_real_api_server_openbao_and_registry() {
    let test = "secrets_reach_pods_through_the_real_api_server_openbao_and_registry";
    let Some(cluster) = TestCluster::from_env(test).await else {
        return;
    };
    let Some(registry) = TestRegistry::from_env(test) else {
        return;
    };
    let Some(vault) = harness_var(test, "NEMUTATOR_TEST_VAULT_ADDR", "OpenBao") else {
        return;
    };
    let Some(root) = harness_var(test, "NEMUTATOR_TEST_VAULT_TOKEN", "OpenBao") else {
        return;
    };
    let client = cluster.client.clone();
    let pid = std::process::id();
    let dir = tmpdir("secrets");

    // The secrets, and an app image whose entrypoint only the registry knows.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = VaultClientSettingsBuilder::default()
        .address(&vault)
        .token(root.clone())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let bao = VaultClient::new(settings).unwrap_or_else(|e| panic!("{e}"));
    let prefix = format!("e2e-{pid}");
    let db_password = format!("exec-pw-{pid}-s3cr3t");
    let db_user = format!("exec-user-{pid}-s3cr3t");
    let api_token = format!("env-token-{pid}-s3cr3t");
    for (path, data) in [
        ("app/db", json!({"password": db_password, "user": db_user})),
        ("app/api", json!({"token": api_token})),
        ("forbidden/x", json!({"k": "never-read"})),
    ] {
        vaultrs::kv2::set(&bao, "secret", &format!("{prefix}/{path}"), &data)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let image = format!("{}/e2e/app:{pid}", registry.open);
    registry
        .push(&image, Some(&ENTRYPOINT), Some(&[CMD]))
        .await
        .unwrap_or_else(|e| panic!("push {image}: {e}"));

    // nemutator's configuration: Vault from configuration only, pods log
    // in as role `app`, the webhook (env injection) as role `nemutator`.
    let mount = format!("k8s-e2e-{pid}");
    let webhook_jwt = dir.join("nemutator.jwt");
    let allowed = format!("[\"secret/data/{prefix}/app/*\"]");
    let config = format!(
        "secrets:
  resolver: vault
  vault: {{ address: \"{vault}\", role: nemutator, pod_role: app, mount: {mount}, jwt_file: \"{}\" }}
  env_namespaces: [{ENV_NS}]
  allowed_paths: {{ {EXEC_NS}: {allowed}, {ENV_NS}: {allowed}, {OTHER_NS}: {allowed} }}
  registry: {{ insecure: [\"{}\"] }}
",
        webhook_jwt.display(),
        registry.open
    );
    let config_file = dir.join("config.yaml");
    std::fs::write(&config_file, &config).unwrap_or_else(|e| panic!("{e}"));
    let config_arg = config_file.display().to_string();

    // install as in cluster_e2e: certificates first, then the webhook on its
    // port, then the manifests (secrets parts included) pointing at it.
    let certs = dir.join("certs").display().to_string();
    let base = ["-n", NS, "--config", &config_arg, "--cert-dir", &certs];
    install(&[&base[..], &["--webhook-url", "https://127.0.0.1:1/mutate"]].concat());
    let cert = format!("{certs}/tls.crt");
    let key = format!("{certs}/tls.key");
    let hook = Webhook::spawn(
        "webhook",
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--config",
            &config_arg,
        ],
        &[("NEMUTATOR_IMAGE", INIT_IMAGE), ("NEMUTATOR_LOG", "debug")],
    );
    let url = format!("https://127.0.0.1:{}/mutate", hook.addr.port());
    let manifests = install(&[&base[..], &["--webhook-url", &url]].concat());
    let applied = cluster
        .apply_yaml(&manifests)
        .await
        .unwrap_or_else(|e| panic!("applying the install output: {e}"));
    let names: Vec<String> = applied
        .iter()
        .map(|o| {
            let kind = o.types.as_ref().map(|t| t.kind.as_str()).unwrap_or("?");
            format!("{kind}/{}", o.metadata.name.as_deref().unwrap_or("?"))
        })
        .collect();
    assert!(
        names.contains(&"ClusterRoleBinding/nemutator-auth-delegator".to_owned()),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.contains("pull-secrets")),
        "{names:?}"
    );

    // The binding makes nemutator's token a TokenReview reviewer, and
    // nothing more: no Secrets.
    for (verb, group, resource, want) in [
        ("create", "authentication.k8s.io", "tokenreviews", true),
        ("get", "", "secrets", false),
    ] {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(format!("system:serviceaccount:{NS}:nemutator")),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    group: Some(group.into()),
                    resource: Some(resource.into()),
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
        assert_eq!(
            answer.status.is_some_and(|s| s.allowed),
            want,
            "{verb} {resource}"
        );
    }

    // OpenBao's Kubernetes auth: nemutator's token as the reviewer (the
    // pods' service accounts need no binding), roles for the pods and the
    // webhook.
    let reviewer = service_account_token(&client, NS, "nemutator").await;
    std::fs::write(&webhook_jwt, &reviewer).unwrap_or_else(|e| panic!("{e}"));
    let (host, ca) = api_server(&cluster);
    vaultrs::sys::auth::enable(&bao, &mount, "kubernetes", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    bao_write(
        &vault,
        &root,
        &format!("auth/{mount}/config"),
        json!({"kubernetes_host": host, "kubernetes_ca_cert": ca,
               "token_reviewer_jwt": reviewer, "disable_local_ca_jwt": true}),
    )
    .await;
    let policy = format!("{prefix}-app");
    vaultrs::sys::policy::set(
        &bao,
        &policy,
        &format!("path \"secret/data/{prefix}/*\" {{ capabilities = [\"read\"] }}"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    for (role, sa, namespaces) in [
        ("app", "app", vec![EXEC_NS.to_owned()]),
        ("nemutator", "nemutator", vec![NS.to_owned()]),
    ] {
        bao_write(
            &vault,
            &root,
            &format!("auth/{mount}/role/{role}"),
            json!({"bound_service_account_names": [sa],
                   "bound_service_account_namespaces": namespaces,
                   "token_policies": [policy], "token_ttl": "10m"}),
        )
        .await;
    }

    for ns in [EXEC_NS, ENV_NS, OTHER_NS] {
        mk_namespace(&client, ns).await;
    }
    let exec_pods = Api::<Pod>::namespaced(client.clone(), EXEC_NS);
    let db = |key: &str| format!("vault:secret/data/{prefix}/app/db#{key}");
    let exec_pod = |name: &str| {
        mk_pod(
            EXEC_NS,
            name,
            &image,
            json!({"nemutator.io/secrets": json!({"DB_PASSWORD": db("password")}).to_string()}),
            json!([{"name": "DB_USER", "value": db("user")}, {"name": "PLAIN", "value": "p"}]),
        )
    };

    // The API server takes the new configuration up within a moment.
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let probe = exec_pod(&suffix("probe"));
    let seen = eventually(Duration::from_secs(60), || async {
        let pod = exec_pods.create(&dry, &probe).await.ok()?;
        pod.spec
            .as_ref()?
            .init_containers
            .as_ref()
            .is_some_and(|i| !i.is_empty())
            .then_some(pod)
    })
    .await;
    assert!(
        seen.is_some(),
        "the API server never called the webhook; logs: {:?}",
        hook.logs()
    );

    // exec: the stored pod runs through nemutator env.
    let sent = exec_pod(&suffix("exec"));
    let stored = exec_pods
        .create(&PostParams::default(), &sent)
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    let spec = stored.spec.clone().unwrap_or_else(|| panic!("no spec"));
    let init = serde_json::to_value(spec.init_containers.unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(init[0]["name"], "nemutator-init");
    assert_eq!(init[0]["image"], INIT_IMAGE);
    assert_eq!(
        init[0]["command"],
        json!(["/usr/local/bin/nemutator", "copy-self", "/nemutator"])
    );
    let volumes = serde_json::to_value(&spec.volumes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        volumes,
        json!([{"name": "nemutator-bin", "emptyDir": {"medium": "Memory"}}])
    );
    let c = app(&stored);
    let before = app(&sent);
    assert_eq!(
        c["command"],
        json!([
            "/nemutator/nemutator",
            "env",
            "--",
            ENTRYPOINT[0],
            ENTRYPOINT[1]
        ]),
        "the entrypoint from the registry"
    );
    assert_eq!(c["args"], json!([CMD]), "the image's Cmd carried over");
    assert_eq!(c["livenessProbe"], before["livenessProbe"]);
    assert_eq!(c["lifecycle"], before["lifecycle"]);
    let stored_text = serde_json::to_string(&stored).unwrap_or_default();
    assert!(
        !stored_text.contains(&db_password),
        "exec: no value in the spec"
    );

    // The container's `nemutator env`, run here with its environment and a
    // token of the pod's service account: the exec'd process sees values.
    let pod_jwt = dir.join("app.jwt");
    let token = service_account_token(&client, EXEC_NS, "app").await;
    std::fs::write(&pod_jwt, token).unwrap_or_else(|e| panic!("{e}"));
    let out = run_container(&c, &pod_jwt);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{db_password}|{db_user}|p")
    );

    // env: values at admission in env_namespaces, denied elsewhere.
    let api_ref = format!("vault:secret/data/{prefix}/app/api#token");
    let env_pod = |ns: &str, name: &str| {
        mk_pod(
            ns,
            name,
            &image,
            json!({"nemutator.io/secrets-injection": "env"}),
            json!([{"name": "API_TOKEN", "value": api_ref}]),
        )
    };
    let stored = Api::<Pod>::namespaced(client.clone(), ENV_NS)
        .create(&PostParams::default(), &env_pod(ENV_NS, &suffix("env")))
        .await
        .unwrap_or_else(|e| panic!("env pod: {e}"));
    let c = app(&stored);
    assert_eq!(c["env"], json!([{"name": "API_TOKEN", "value": api_token}]));
    assert!(c.get("command").is_none(), "env: the command as sent");
    assert!(stored
        .spec
        .as_ref()
        .is_some_and(|s| s.init_containers.is_none()));
    let other = Api::<Pod>::namespaced(client.clone(), OTHER_NS);
    let message = denial(&other, &env_pod(OTHER_NS, &suffix("env"))).await;
    assert!(
        message.ends_with(&format!("container app: namespace {OTHER_NS} may not use env injection (secrets.env_namespaces); annotate the pod nemutator.io/secrets-injection: exec to resolve in the container instead")),
        "{message}"
    );

    // A path outside allowed_paths: denied, in both modes, before Vault.
    let forbidden = format!("vault:secret/data/{prefix}/forbidden/x#k");
    let mut pod = exec_pod(&suffix("denied"));
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers[0].env = serde_json::from_value(json!([{"name": "X", "value": forbidden}]))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let message = denial(&exec_pods, &pod).await;
    assert!(
        message.contains(&format!(
            "container app: X: namespace {EXEC_NS} may not reference secret/data/{prefix}/forbidden/x; "
        )),
        "{message}"
    );

    // No value in any captured log line: the webhook's (at debug) and
    // nemutator env's (at trace).
    let logs = hook.logs().join("\n");
    assert!(logs.contains("secrets injected"), "{logs}");
    for value in [&db_password, &db_user, &api_token, &reviewer, &root] {
        assert!(
            !logs.contains(value.as_str()),
            "a secret in the webhook's logs"
        );
        assert!(
            !stderr.contains(value.as_str()),
            "a secret in nemutator env's logs"
        );
    }

    // Leave the API server as found for other tests: no webhook registered,
    // no PriorityClass a Helm install would refuse to adopt.
    let _ = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .delete("nemutator", &Default::default())
        .await;
    let _ = Api::<k8s_openapi::api::scheduling::v1::PriorityClass>::all(client.clone())
        .delete(
            nemutator_core::controller::overprov::PRIORITY_CLASS,
            &Default::default(),
        )
        .await;
}
