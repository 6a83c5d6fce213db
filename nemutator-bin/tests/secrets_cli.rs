//! The secrets layer as wired into the binary: `secrets:` of `--config`
//! turns it on in `nemutator review` and `nemutator webhook`, the init
//! container runs the webhook's own image (`NEMUTATOR_IMAGE`) with
//! `nemutator copy-self`, an unreachable Vault in `env` injection is a 503
//! and a refusal is one line naming the container and the fix. No harness
//! needed: the file resolver, and a Vault address nobody listens on.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::{tmpdir, Webhook, BIN};

/// An AdmissionReview of a pod in `ns` with these annotations and `app`'s
/// env.
fn mk_review(ns: &str, annotations: Value, env: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "secrets-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": ns, "operation": "CREATE",
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "app-1", "namespace": ns, "annotations": annotations},
                "spec": {"containers": [{
                    "name": "app", "image": "registry.invalid/app:1",
                    "command": ["/app/server"], "args": ["--port", "8080"],
                    "env": env,
                    "readinessProbe": {"exec": {"command": ["/app/check"]}},
                }]},
            },
        },
    })
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
    file.display().to_string()
}

/// Runs `nemutator ARGS` with `envs` and `stdin`: (code, stdout, stderr).
fn run(args: &[&str], envs: &[(&str, &str)], stdin: &[u8]) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = Command::new(BIN)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut pipe) = child.stdin.take() {
        let _ = pipe.write_all(stdin);
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn review_injects_with_the_webhooks_own_image() {
    let dir = tmpdir("secrets-review");
    let config = write(
        &dir,
        "c.yaml",
        "secrets:\n  allowed_paths: { shop: [\"kv/data/shop/*\"] }\n",
    );
    let review = mk_review(
        "shop",
        json!({"nemutator.io/secrets": r#"{"API_TOKEN":"vault:kv/data/shop/api#token"}"#}),
        json!([{"name": "PLAIN", "value": "p"}]),
    );
    let image = [("NEMUTATOR_IMAGE", "mirror.example/nemutator:9")];
    let (code, out, err) = run(
        &["review", "--patched", "--config", &config, "-"],
        &image,
        review.to_string().as_bytes(),
    );
    assert_eq!(code, 0, "{err}");
    let pod: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(init["name"], "nemutator-init");
    assert_eq!(init["image"], "mirror.example/nemutator:9");
    assert_eq!(
        init["command"],
        json!(["/usr/local/bin/nemutator", "copy-self", "/nemutator"])
    );
    let app = &pod["spec"]["containers"][0];
    assert_eq!(
        app["command"],
        json!(["/nemutator/nemutator", "env", "--", "/app/server"])
    );
    assert_eq!(app["args"], json!(["--port", "8080"]));
    assert_eq!(
        app["readinessProbe"],
        json!({"exec": {"command": ["/app/check"]}})
    );
    assert!(
        app["env"]
            .as_array()
            .is_some_and(|e| e
                .contains(&json!({"name": "API_TOKEN", "value": "vault:kv/data/shop/api#token"}))),
        "{app}"
    );
    assert!(
        !out.contains("sample-api-token"),
        "exec injection: no value in the spec"
    );
    assert_eq!(
        pod["spec"]["volumes"],
        json!([{"name": "nemutator-bin", "emptyDir": {"medium": "Memory"}}])
    );

    // Without secrets in the config's namespaces: one line naming the
    // container and the fix, exit 0 (a well-formed review was answered).
    let other = mk_review(
        "other",
        json!({}),
        json!([{"name": "DB", "value": "vault:kv/data/app/db#password"}]),
    );
    let (code, out, err) = run(
        &["review", "--config", &config, "-"],
        &image,
        other.to_string().as_bytes(),
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["response"]["allowed"], false);
    assert_eq!(
        v["response"]["status"]["message"],
        "container app: DB: namespace other may not reference kv/data/app/db; use a path that secrets.allowed_paths gives other, or have it added there"
    );
}

/// Without a `secrets:` section the layer is off: references are left for
/// another injector, and nothing is denied.
#[test]
fn without_a_secrets_section_references_are_left_alone() {
    let dir = tmpdir("secrets-off");
    let config = write(&dir, "c.yaml", "seasons: { enabled: false }\n");
    let review = mk_review(
        "other",
        json!({}),
        json!([{"name": "DB", "value": "vault:kv/data/app/db#password"}]),
    );
    let (code, out, err) = run(
        &["review", "--config", &config, "-"],
        &[],
        review.to_string().as_bytes(),
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["response"]["allowed"], true, "{out}");
    assert!(v["response"].get("patch").is_none(), "{out}");
}

/// Exec injection alone needs no Vault login of the webhook's own: a role
/// for the pods is enough, and without one the configuration is refused in
/// one line.
#[test]
fn exec_injection_needs_only_the_pods_role() {
    let dir = tmpdir("secrets-exec-only");
    let vault = "secrets:\n  resolver: vault\n  allowed_paths: { shop: [\"kv/data/shop/*\"] }\n  vault: { address: \"https://vault.example:8200\"";
    let config = write(&dir, "c.yaml", &format!("{vault}, pod_role: app }}\n"));
    let review = mk_review(
        "shop",
        json!({}),
        json!([{"name": "API", "value": "vault:kv/data/shop/api#token"}]),
    );
    let (code, out, err) = run(
        &["review", "--patched", "--config", &config, "-"],
        &[],
        review.to_string().as_bytes(),
    );
    assert_eq!(code, 0, "{err}");
    let pod: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let env = &pod["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .is_some_and(|e| e.contains(&json!({"name": "NEMUTATOR_VAULT_ROLE", "value": "app"}))),
        "{env}"
    );
    // An env-injection pod in a namespace without it: refused before any
    // resolver is asked.
    let mut env_pod = review.clone();
    env_pod["request"]["object"]["metadata"]["annotations"] =
        json!({"nemutator.io/secrets-injection": "env"});
    let (code, out, err) = run(
        &["review", "--config", &config, "-"],
        &[],
        env_pod.to_string().as_bytes(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("may not use env injection"), "{out}");

    let none = write(&dir, "none.yaml", &format!("{vault} }}\n"));
    let (code, _, err) = run(&["review", "--config", &none, "-"], &[], b"");
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "nemutator: secrets.vault.auth is kubernetes but neither secrets.vault.pod_role nor secrets.vault.role is set: pods could not log in\n"
    );
}

#[test]
fn copy_self_puts_a_runnable_binary_in_the_directory() {
    let dir = tmpdir("copy-self");
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let (code, _, err) = run(
        &["copy-self", &dir.display().to_string()],
        &[("NEMUTATOR_VAULT_CA_PEM", pem)],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    let copy = dir.join("nemutator");
    let mode = std::fs::metadata(&copy)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_default();
    assert_eq!(mode, 0o555);
    assert_eq!(
        std::fs::read_to_string(dir.join("vault-ca.pem")).unwrap_or_default(),
        pem
    );
    // The copy is nemutator: `env` runs a command through it.
    let out = Command::new(&copy)
        .args(["env", "--", "/bin/sh", "-c", "echo \"$GREETING\""])
        .env("GREETING", "hello")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    // The copy is the whole binary (tens of MB): not left behind in /tmp.
    let _ = std::fs::remove_dir_all(&dir);

    let (code, _, err) = run(&["copy-self", "/nonexistent/dir"], &[], b"");
    assert_eq!(code, 1);
    assert_eq!(err, "nemutator: /nonexistent/dir: not a directory\n");
}

#[tokio::test]
async fn env_injection_with_vault_down_is_a_503_and_refusals_one_line() {
    let dir = tmpdir("secrets-webhook");
    let config = write(
        &dir,
        "c.yaml",
        "secrets:\n  resolver: vault\n  vault: { address: \"http://127.0.0.1:1\", auth: token, token_env: NEMUTATOR_TEST_TOKEN }\n  injection: env\n  env_namespaces: [team-a]\n  allowed_paths: { team-a: [\"kv/data/team-a/*\"], team-b: [\"kv/data/team-b/*\"] }\n",
    );
    let hook = Webhook::spawn(
        "webhook",
        &["--config", &config],
        &[("NEMUTATOR_TEST_TOKEN", "token-never-logged")],
    );
    let client = hook.client();
    client.wait_ready().await;
    let post = |review: Value| {
        let client = client.clone();
        async move {
            client
                .request("POST", "/mutate", review.to_string().into_bytes())
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let env = json!([{"name": "DB", "value": "vault:kv/data/team-a/db#password"}]);
    let reply = post(mk_review("team-a", json!({}), env)).await;
    assert_eq!(reply.status, 503, "the failurePolicy decides");
    let body = String::from_utf8_lossy(&reply.body);
    assert!(
        body.starts_with("not reviewed: vault at http://127.0.0.1:1 unreachable: ")
            && body.contains("Connection refused")
            && body.lines().count() == 1,
        "{body}"
    );

    let env = json!([{"name": "DB", "value": "vault:kv/data/team-b/db#password"}]);
    let reply = post(mk_review("team-b", json!({}), env)).await;
    assert_eq!(reply.status, 200);
    let v: Value = serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["response"]["allowed"], false);
    assert_eq!(
        v["response"]["status"]["message"],
        "container app: namespace team-b may not use env injection (secrets.env_namespaces); annotate the pod nemutator.io/secrets-injection: exec to resolve in the container instead"
    );
    let logs = hook.logs().join("\n");
    assert!(!logs.contains("token-never-logged"), "{logs}");
}
