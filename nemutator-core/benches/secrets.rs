//! The secrets layer's share of an admission review, with warm caches: a
//! 4-container pod with 6 references (2 in `nemutator.io/secrets`, one
//! inline per container), two containers without `command`. Each mode is
//! measured with and without the layer on the same body (the resources
//! layer in both), so the overhead is the difference of two medians.
//!
//! The warm caches are the hit paths of nemutator-secrets': a mutex-guarded
//! map with an age check for values (`CachedResolver`), one for image
//! commands (`RegistryLookup`'s digest cache).
//!
//! `cargo bench -p nemutator-core --bench secrets`

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use nemutator_core::admission::Admission;
use nemutator_core::image::{ImageCommand, ImageError, ImageFuture, ImageLookup, ImageQuery};
use nemutator_core::mutate::{Pipeline, ResourcesLayer, SecretsLayer};
use nemutator_core::policy::{Policy, PolicySet};
use nemutator_core::recommend::RecommendationStore;
use nemutator_core::secret::{
    AllowedPaths, ExposeSecret, Injection, ResolveFuture, SecretError, SecretRef, SecretResolver,
    SecretValue, SecretsConfig,
};
use serde_json::json;

fn block<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            return v;
        }
    }
}

/// The hit path of a value cache.
#[derive(Debug, Default)]
struct WarmValues(Mutex<HashMap<SecretRef, (Instant, SecretValue)>>);

impl SecretResolver for WarmValues {
    fn resolve<'a>(&'a self, r: &'a SecretRef) -> ResolveFuture<'a> {
        let hit = self.0.lock().ok().and_then(|m| {
            m.get(r)
                .filter(|(at, _)| at.elapsed() < Duration::from_secs(60))
                .map(|(_, v)| SecretValue::from(v.expose_secret().to_owned()))
        });
        Box::pin(std::future::ready(
            hit.ok_or_else(|| SecretError::NotFound(r.path.clone())),
        ))
    }
}

/// The hit path of an image-command cache.
#[derive(Debug, Default)]
struct WarmImages(Mutex<HashMap<String, ImageCommand>>);

impl ImageLookup for WarmImages {
    fn command<'a>(&'a self, q: ImageQuery<'a>) -> ImageFuture<'a> {
        let hit = self.0.lock().ok().and_then(|m| m.get(q.image).cloned());
        Box::pin(std::future::ready(
            hit.ok_or_else(|| ImageError::NotFound(q.image.to_owned())),
        ))
    }
}

fn image(i: usize) -> String {
    format!("registry.example.com/team/app-{i}:1.2.3")
}

fn mk_review() -> Vec<u8> {
    let containers: Vec<_> = (0..4)
        .map(|i| {
            let mut c = json!({
                "name": format!("c{i}"),
                "image": image(i),
                "args": ["--port", "8080", "--log-level", "info"],
                "ports": [{"containerPort": 8080 + i, "protocol": "TCP", "name": "http"}],
                "env": [
                    {"name": "MODE", "value": "production"},
                    {"name": format!("TOKEN_{i}"), "value": format!("vault:kv/data/default/c{i}#token")},
                ],
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
                "volumeMounts": [{"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 10},
                "imagePullPolicy": "IfNotPresent",
            });
            if i < 2 {
                c["command"] = json!(["/app/server"]);
            }
            c
        })
        .collect();
    let secrets = json!({
        "DB_PASSWORD": "vault:kv/data/default/db#password",
        "API_KEY": "vault:kv/data/default/api#key",
    });
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default",
            "operation": "CREATE",
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "generateName": "web-5c8d7f9b4-",
                    "labels": {"app": "web", "pod-template-hash": "5c8d7f9b4"},
                    "annotations": {"nemutator.io/secrets": secrets.to_string()},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5c8d7f9b4", "uid": "3e9f", "controller": true}]
                },
                "spec": {
                    "containers": containers,
                    "volumes": [{"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}],
                    "serviceAccountName": "web",
                }
            },
        }
    });
    serde_json::to_vec(&review).unwrap_or_default()
}

fn resources() -> ResourcesLayer {
    ResourcesLayer::new(
        Arc::new(RecommendationStore::new()),
        Arc::new(PolicySet(vec![Policy::default()])),
    )
}

fn mk_admission(mode: Injection) -> Admission {
    let mut values = HashMap::new();
    for (path, key) in [("db", "password"), ("api", "key")]
        .into_iter()
        .chain((0..4).map(|i| (["c0", "c1", "c2", "c3"][i], "token")))
    {
        let r = SecretRef::parse(&format!("vault:kv/data/default/{path}#{key}"))
            .unwrap_or_else(|e| panic!("{e}"));
        values.insert(r, (Instant::now(), SecretValue::from(format!("v-{path}"))));
    }
    let images = (0..4)
        .map(|i| {
            let cmd = ImageCommand {
                entrypoint: vec!["/app/entry".into()],
                cmd: vec!["serve".into()],
            };
            (image(i), cmd)
        })
        .collect();
    let config = SecretsConfig {
        injection: mode,
        env_namespaces: vec!["default".into()],
        allowed_paths: AllowedPaths(BTreeMap::from([(
            "default".into(),
            vec!["kv/data/default/*".into()],
        )])),
        ..SecretsConfig::default()
    };
    let layer = SecretsLayer::new(
        &config,
        Arc::new(WarmValues(Mutex::new(values))),
        Arc::new(WarmImages(Mutex::new(images))),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Admission::new(Pipeline::builder().layer(resources()).layer(layer).build())
}

fn bench(c: &mut Criterion) {
    let body = mk_review();
    let without = Admission::new(Pipeline::builder().layer(resources()).build());
    assert!(block(without.review(&body)).is_ok_and(|r| r.patch.is_none()));
    c.bench_function("secrets_off", |b| {
        b.iter(|| {
            let reviewed = block(without.review(black_box(&body)));
            black_box(reviewed.map(|r| r.response.into_review_json()))
        })
    });
    for (name, mode) in [
        ("secrets_exec", Injection::Exec),
        ("secrets_env", Injection::Env),
    ] {
        let admission = mk_admission(mode);
        // Sanity: the benchmark measures a real patch, every container.
        let reviewed = block(admission.review(&body)).unwrap_or_else(|e| panic!("{e}"));
        let note = reviewed.response.audit_annotations.get("secrets").cloned();
        assert_eq!(
            note.as_deref().and_then(|n| n.split(" into ").nth(1)),
            Some("c0, c1, c2, c3"),
            "{name}"
        );
        assert!(reviewed.patch.is_some(), "{name}");
        c.bench_function(name, |b| {
            b.iter(|| {
                let reviewed = block(admission.review(black_box(&body)));
                black_box(reviewed.map(|r| r.response.into_review_json()))
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
