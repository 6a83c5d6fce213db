//! Image entrypoints from a real OCI registry (`scripts/registry.sh`:
//! Debian's docker-registry, one anonymous and one behind basic auth), with
//! pull secrets read from the real kube-apiserver. Without them the tests
//! print one line and skip (they fail where `NEMUTATOR_REQUIRE_APISERVER=1`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::Api;
use nemutator_core::image::{ImageCommand, ImageError, ImageLookup, ImageQuery};
use nemutator_core::secret::RegistryConfig;
use nemutator_secrets::RegistryLookup;
use nemutator_testkit::cluster::TestCluster;
use nemutator_testkit::registry::TestRegistry;
use serde_json::json;

fn repo(tag: &str) -> String {
    format!("nemutator-{}-{tag}", std::process::id())
}

async fn lookup(
    l: &RegistryLookup,
    image: &str,
    ns: &str,
    secrets: &[String],
) -> Result<ImageCommand, ImageError> {
    l.command(ImageQuery {
        image,
        namespace: ns,
        pull_secrets: secrets,
    })
    .await
}

#[tokio::test]
async fn entrypoints_by_tag_and_digest_and_what_is_not_found() {
    let Some(r) = TestRegistry::from_env("entrypoints_by_tag_and_digest_and_what_is_not_found")
    else {
        return;
    };
    let image = format!("{}/{}:1", r.open, repo("web"));
    let digest = r
        .push(
            &image,
            Some(&["/docker-entrypoint.sh"]),
            Some(&["nginx", "-g", "daemon off;"]),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let bare = format!("{}/{}:1", r.open, repo("bare"));
    r.push(&bare, None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let config = RegistryConfig {
        insecure: r.insecure(),
        ..RegistryConfig::default()
    };
    let l = RegistryLookup::new(config, None);
    let want = ImageCommand {
        entrypoint: vec!["/docker-entrypoint.sh".into()],
        cmd: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
    };
    assert_eq!(lookup(&l, &image, "ns", &[]).await.ok(), Some(want.clone()));
    assert_eq!(
        lookup(&l, &image, "ns", &[]).await.ok(),
        Some(want.clone()),
        "cached"
    );
    let pinned = format!("{}/{}@{digest}", r.open, repo("web"));
    assert_eq!(lookup(&l, &pinned, "ns", &[]).await.ok(), Some(want));
    assert_eq!(
        lookup(&l, &bare, "ns", &[]).await.ok(),
        Some(ImageCommand::default()),
        "no Entrypoint or Cmd: the layer denies"
    );
    let missing = format!("{}/{}:1", r.open, repo("nope"));
    let e = lookup(&l, &missing, "ns", &[]).await.expect_err("missing");
    assert!(matches!(e, ImageError::NotFound(_)), "{e}");
    let e = lookup(&l, &format!("{image}x"), "ns", &[])
        .await
        .expect_err("no tag");
    assert!(matches!(e, ImageError::NotFound(_)), "{e}");
}

#[tokio::test]
async fn a_private_registry_needs_the_pods_pull_secret() {
    let test = "a_private_registry_needs_the_pods_pull_secret";
    let Some(r) = TestRegistry::from_env(test) else {
        return;
    };
    let Some(cluster) = TestCluster::from_env(test).await else {
        return;
    };
    let image = format!("{}/{}:2", r.auth, repo("private"));
    r.push(&image, Some(&["/app"]), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let ns = format!("pull-{}", std::process::id());
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap_or_else(|e| panic!("{e}"));
    let _ = Api::<Namespace>::all(cluster.client.clone())
        .create(&PostParams::default(), &namespace)
        .await;
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &ns);
    let mk_secret = |name: &str, password: &str| -> Secret {
        let config = json!({"auths": {r.auth.clone(): {"username": r.user, "password": password}}});
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            data: Some(BTreeMap::from([(
                ".dockerconfigjson".to_owned(),
                ByteString(config.to_string().into_bytes()),
            )])),
            ..Default::default()
        }
    };
    for (name, password) in [("good", r.password.as_str()), ("wrong", "not-the-password")] {
        let _ = secrets
            .create(&PostParams::default(), &mk_secret(name, password))
            .await;
    }
    let config = RegistryConfig {
        insecure: r.insecure(),
        pull_secrets: true,
        ..RegistryConfig::default()
    };
    let l = RegistryLookup::new(config, Some(cluster.client.clone()));

    // Anonymous: refused by the registry, so the pod is denied.
    let e = lookup(&l, &image, &ns, &[]).await.expect_err("anonymous");
    assert!(matches!(e, ImageError::Denied { .. }), "{e}");
    let e = lookup(&l, &image, &ns, &["wrong".into()])
        .await
        .expect_err("wrong password");
    assert!(matches!(e, ImageError::Denied { .. }), "{e}");
    assert!(!e.to_string().contains("not-the-password"), "{e}");
    let got = lookup(&l, &image, &ns, &["missing".into(), "good".into()]).await;
    assert_eq!(
        got.map(|c| c.entrypoint).ok(),
        Some(vec!["/app".to_owned()])
    );
    // What one namespace's secret could read is not answered to another.
    let e = lookup(&l, &image, "elsewhere", &[])
        .await
        .expect_err("cache per credential");
    assert!(matches!(e, ImageError::Denied { .. }), "{e}");
}
