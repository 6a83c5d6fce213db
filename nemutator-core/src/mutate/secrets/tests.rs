//! The secrets layer through `Admission::review`: the patch each injection
//! mode makes, applied as the API server applies it; reinvocation; what a
//! missing image command, a missing secret and an unreachable backend give.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use crate::admission::{Admission, AdmissionError, Outcome, Reviewed};
use crate::image::ImageFuture;
use crate::mutate::Pipeline;
use crate::secret::{AllowedPaths, ResolveFuture, SecretValue, VaultConfig};

/// Secrets from a map of `path#key`; `down` makes every lookup unavailable.
#[derive(Debug, Default)]
struct MapResolver {
    values: BTreeMap<String, String>,
    down: bool,
    calls: AtomicUsize,
}

impl SecretResolver for MapResolver {
    fn resolve<'a>(&'a self, r: &'a SecretRef) -> ResolveFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down {
                return Err(SecretError::Unavailable("connection refused".into()));
            }
            let key = format!("{}#{}", r.path, r.key);
            self.values
                .get(&key)
                .map(|v| SecretValue::from(v.clone()))
                .ok_or_else(|| SecretError::NotFound(r.path.clone()))
        })
    }
}

/// Image commands from a map; an image not in it is not found, `down/...`
/// images are unavailable.
#[derive(Debug, Default)]
struct MapImages(BTreeMap<String, ImageCommand>);

impl ImageLookup for MapImages {
    fn command<'a>(&'a self, q: ImageQuery<'a>) -> ImageFuture<'a> {
        let result = match self.0.get(q.image) {
            Some(c) => Ok(c.clone()),
            None if q.image.starts_with("down/") => Err(ImageError::Unavailable {
                image: q.image.to_owned(),
                why: "connection refused".into(),
            }),
            None => Err(ImageError::NotFound(q.image.to_owned())),
        };
        Box::pin(std::future::ready(result))
    }
}

const SECRET_VALUE: &str = "hunter2-not-logged";

fn mk_config(injection: Injection) -> SecretsConfig {
    let mut vault = VaultConfig::new("https://vault.example:8200");
    vault.role = Some("webhook".into());
    vault.pod_role = Some("apps".into());
    SecretsConfig {
        resolver: ResolverKind::Vault,
        vault: Some(vault),
        injection,
        env_namespaces: vec!["shop".into()],
        allowed_paths: AllowedPaths(BTreeMap::from([(
            "shop".into(),
            vec!["kv/data/shop/*".into()],
        )])),
        init_image: Some("nemutator:test".into()),
        ..SecretsConfig::default()
    }
}

fn mk_admission(config: &SecretsConfig, resolver: MapResolver) -> Admission {
    let images = MapImages(BTreeMap::from([(
        "web:1".to_owned(),
        ImageCommand {
            entrypoint: vec!["/docker-entrypoint.sh".into()],
            cmd: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
        },
    )]));
    let layer = SecretsLayer::new(config, Arc::new(resolver), Arc::new(images))
        .unwrap_or_else(|e| panic!("{e}"));
    Admission::new(Pipeline::builder().layer(layer).build())
}

fn mk_resolver(down: bool) -> MapResolver {
    MapResolver {
        values: BTreeMap::from([(
            "kv/data/shop/db#password".to_owned(),
            SECRET_VALUE.to_owned(),
        )]),
        down,
        ..MapResolver::default()
    }
}

fn mk_pod(annotations: Value, app_image: &str, app_command: Option<Value>) -> Value {
    let mut app = json!({
        "name": "app", "image": app_image, "args": ["--port", "8080"],
        "env": [{"name": "MODE", "value": "prod"},
                {"name": "NEMUTATOR_VAULT_ADDR", "value": "https://attacker.example"},
                {"name": "API", "value": "vault:kv/data/shop/api#token#2"}],
        "readinessProbe": {"exec": {"command": ["/bin/check"]}},
        "livenessProbe": {"httpGet": {"path": "/live", "port": 8080}},
        "lifecycle": {"preStop": {"exec": {"command": ["/bin/drain"]}}},
    });
    if let Some(c) = app_command {
        app["command"] = c;
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "shop", "annotations": annotations},
        "spec": {
            "containers": [app, {"name": "sidecar", "image": "proxy:2", "command": ["/proxy"]}],
            "initContainers": [{"name": "migrate", "image": "web:1", "command": ["/migrate"]}],
        }
    })
}

fn mk_body(object: &Value) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE", "object": object
        }
    })
    .to_string()
    .into_bytes()
}

fn applied(object: &Value, reviewed: &Reviewed) -> Value {
    let mut out = object.clone();
    if let Some(p) = reviewed.patch.as_ref() {
        let p = p.to_patch().unwrap_or_else(|e| panic!("{e}"));
        json_patch::patch(&mut out, &p).unwrap_or_else(|e| panic!("{e}"));
    }
    out
}

async fn review(admission: &Admission, object: &Value) -> Result<Reviewed, AdmissionError> {
    admission.review(&mk_body(object)).await
}

fn env_of(c: &Value) -> BTreeMap<String, Value> {
    c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_owned(),
                e["value"].clone(),
            )
        })
        .collect()
}

fn db_annotation() -> Value {
    json!({"nemutator.io/secrets": r#"{"DB_PASSWORD":"vault:kv/data/shop/db#password"}"#})
}

#[tokio::test]
async fn exec_wraps_the_command_and_keeps_probes_hooks_and_args() {
    let admission = mk_admission(&mk_config(Injection::Exec), mk_resolver(false));
    let object = mk_pod(db_annotation(), "web:1", Some(json!(["/app/server"])));
    let reviewed = review(&admission, &object)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reviewed.outcome, Outcome::Patched);
    let out = applied(&object, &reviewed);
    let spec = &out["spec"];
    let app = &spec["containers"][0];
    assert_eq!(app["command"], json!([BINARY, "env", "--", "/app/server"]));
    assert_eq!(app["args"], json!(["--port", "8080"]), "args are kept");
    let env = env_of(app);
    assert_eq!(env["DB_PASSWORD"], "vault:kv/data/shop/db#password");
    assert_eq!(
        env["API"], "vault:kv/data/shop/api#token#2",
        "inline references stay references"
    );
    assert_eq!(
        env["NEMUTATOR_VAULT_ADDR"], "https://vault.example:8200",
        "the pod's address is overridden"
    );
    assert_eq!(env["NEMUTATOR_VAULT_ROLE"], "apps");
    assert_eq!(env["NEMUTATOR_VAULT_AUTH_MOUNT"], "kubernetes");
    for kept in ["readinessProbe", "livenessProbe", "lifecycle", "image"] {
        assert_eq!(app[kept], object["spec"]["containers"][0][kept], "{kept}");
    }
    assert_eq!(
        app["volumeMounts"],
        json!([{"name": VOLUME, "mountPath": MOUNT_DIR, "readOnly": true}])
    );
    // The sidecar gets the annotation's variable too; the init container
    // that has no reference is left alone.
    assert_eq!(
        spec["containers"][1]["command"],
        json!([BINARY, "env", "--", "/proxy"])
    );
    let init = &spec["initContainers"];
    assert_eq!(init[1], object["spec"]["initContainers"][0]);
    assert_eq!(init[0]["name"], INIT_CONTAINER);
    assert_eq!(init[0]["image"], "nemutator:test");
    assert_eq!(
        init[0]["command"],
        json!([IMAGE_BINARY, "copy-self", MOUNT_DIR])
    );
    assert_eq!(
        init[0]["resources"]["requests"],
        json!({"cpu": "10m", "memory": "32Mi"})
    );
    assert_eq!(init[0]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        init[0]["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(
        spec["volumes"],
        json!([{"name": VOLUME, "emptyDir": {"medium": "Memory"}}])
    );
    assert_eq!(
        reviewed.response.audit_annotations["secrets"],
        "exec injection into app, sidecar"
    );

    // Reinvocation (IfNeeded): nothing more to do.
    let again = review(&admission, &out)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.outcome, Outcome::Unchanged);
}

#[tokio::test]
async fn exec_without_a_command_takes_the_image_entrypoint() {
    let admission = mk_admission(&mk_config(Injection::Exec), mk_resolver(false));
    let mut object = mk_pod(db_annotation(), "web:1", None);
    let reviewed = review(&admission, &object)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = applied(&object, &reviewed);
    let app = &out["spec"]["containers"][0];
    assert_eq!(
        app["command"],
        json!([BINARY, "env", "--", "/docker-entrypoint.sh"])
    );
    assert_eq!(
        app["args"],
        json!(["--port", "8080"]),
        "the pod's args replace the image's Cmd"
    );
    let again = review(&admission, &out)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.outcome, Outcome::Unchanged);

    // Without args, the image's Cmd becomes the args.
    object["spec"]["containers"][0]
        .as_object_mut()
        .map(|a| a.remove("args"));
    let out = applied(
        &object,
        &review(&admission, &object)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(
        out["spec"]["containers"][0]["args"],
        json!(["nginx", "-g", "daemon off;"])
    );
}

#[tokio::test]
async fn an_unknown_entrypoint_is_denied_naming_the_container_and_the_fix() {
    let admission = mk_admission(&mk_config(Injection::Exec), mk_resolver(false));
    let reviewed = review(
        &admission,
        &mk_pod(db_annotation(), "registry.example/private:1", None),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reviewed.outcome, Outcome::Denied);
    let message = reviewed
        .response
        .status
        .map(|s| s.message)
        .unwrap_or_default();
    assert_eq!(
        message,
        "container app sets no command and its image's entrypoint cannot be read: image registry.example/private:1 not found in its registry; set command (and args) in the pod spec"
    );
    // An unreachable registry is not the pod's fault: a 503.
    let err = review(&admission, &mk_pod(db_annotation(), "down/app:1", None))
        .await
        .err();
    assert_eq!(
        err.as_ref().map(AdmissionError::status),
        Some(503),
        "{err:?}"
    );
    assert_eq!(
        err.map(|e| e.to_string()).unwrap_or_default(),
        "not reviewed: the registry of down/app:1 unreachable: connection refused"
    );
}

#[tokio::test]
async fn env_writes_values_once_and_never_into_messages() {
    let config = mk_config(Injection::Env);
    let mut resolver = mk_resolver(false);
    resolver
        .values
        .insert("kv/data/shop/api#token".into(), "tok-value".into());
    let admission = mk_admission(&config, resolver);
    let object = mk_pod(db_annotation(), "web:1", Some(json!(["/app/server"])));
    let reviewed = review(&admission, &object)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = applied(&object, &reviewed);
    let app = &out["spec"]["containers"][0];
    let env = env_of(app);
    assert_eq!(env["DB_PASSWORD"], SECRET_VALUE);
    assert_eq!(env["API"], "tok-value");
    assert_eq!(
        env["NEMUTATOR_VAULT_ADDR"], "https://attacker.example",
        "env injection leaves the rest alone"
    );
    assert_eq!(app["command"], json!(["/app/server"]));
    assert!(out["spec"]["initContainers"]
        .as_array()
        .is_some_and(|i| i.len() == 1));
    assert_eq!(
        env_of(&out["spec"]["containers"][1])["DB_PASSWORD"],
        SECRET_VALUE
    );
    let note = &reviewed.response.audit_annotations["secrets"];
    assert_eq!(note, "env injection into app, sidecar");
    let again = review(&admission, &out)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.outcome, Outcome::Unchanged);

    // A missing secret: a denial naming the reference, not a value.
    let missing = json!({"nemutator.io/secrets": r#"{"X":"vault:kv/data/shop/nope#k"}"#});
    let denied = review(&admission, &mk_pod(missing, "web:1", Some(json!(["/a"]))))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let message = denied
        .response
        .status
        .map(|s| s.message)
        .unwrap_or_default();
    assert_eq!(
        message,
        "container app: X: secret kv/data/shop/nope not found; fix the reference or write the secret"
    );

    // Vault down: a 503 naming the backend.
    let down = mk_admission(&config, mk_resolver(true));
    let err = review(&down, &object).await.err();
    assert_eq!(err.as_ref().map(AdmissionError::status), Some(503));
    assert_eq!(
        err.map(|e| e.to_string()).unwrap_or_default(),
        "not reviewed: vault at https://vault.example:8200 unreachable: connection refused"
    );
}

#[tokio::test]
async fn refusals_and_pods_without_secrets() {
    let admission = mk_admission(&mk_config(Injection::Exec), mk_resolver(false));
    let mut object = mk_pod(json!({}), "web:1", Some(json!(["/a"])));
    object["metadata"]["namespace"] = json!("other");
    let reviewed = review(&admission, &object)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let message = reviewed
        .response
        .status
        .map(|s| s.message)
        .unwrap_or_default();
    assert_eq!(
        message,
        "container app: API: namespace other may not reference kv/data/shop/api; use a path that secrets.allowed_paths gives other, or have it added there"
    );
    let plain = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                       "spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "A", "value": "b"}]}]}});
    let reviewed = review(&admission, &plain)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reviewed.outcome, Outcome::Unchanged);
}
