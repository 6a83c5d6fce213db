//! Entry points shared by the `fuzz/` targets and the tests that replay them,
//! so a fuzz target is one line and its checks are also run by `cargo test`.
//!
//! They panic when a check fails, as a fuzz target must: this module is not
//! API. It exists only with the `fuzzing` feature (which `fuzz/Cargo.toml`
//! enables) and in this crate's own tests.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use std::collections::BTreeMap;

use crate::admission::{patched_object, Admission};
use crate::image::{ImageCommand, ImageFuture, ImageLookup, ImageQuery};
use crate::mutate::{Pipeline, ResourcesLayer, SecretsLayer};
use crate::policy::{Policy, PolicySet};
use crate::quantity::Quantity;
use crate::recommend::{Recommendation, RecommendationStore, ResourceRecommendation};
use crate::secret::{
    AllowedPaths, Injection, ResolveFuture, SecretRef, SecretResolver, SecretValue, SecretsConfig,
};
use crate::units::HumanDuration;
use crate::workload::{ContainerRef, WorkloadKey, WorkloadKind};

/// Every reference resolves, at once, to a value derived from it (`env`
/// injection).
#[derive(Debug)]
struct AnyValue;

impl SecretResolver for AnyValue {
    fn resolve<'a>(&'a self, r: &'a SecretRef) -> ResolveFuture<'a> {
        let value = SecretValue::from(format!("value-of-{}", r.key));
        Box::pin(std::future::ready(Ok(value)))
    }
}

/// Every image has an entrypoint and a cmd, at once (`exec` injection).
#[derive(Debug)]
struct AnyImage;

impl ImageLookup for AnyImage {
    fn command<'a>(&'a self, _: ImageQuery<'a>) -> ImageFuture<'a> {
        Box::pin(std::future::ready(Ok(ImageCommand {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into()],
        })))
    }
}

/// The secrets layer as a cluster would have it: `default` may reference
/// `kv/data/*` in either mode (`exec` by default), `other` nothing.
fn mk_secrets() -> SecretsLayer {
    let config = SecretsConfig {
        injection: Injection::Exec,
        env_namespaces: vec!["default".into()],
        allowed_paths: AllowedPaths(BTreeMap::from([(
            "default".into(),
            vec!["kv/data/*".into()],
        )])),
        ..SecretsConfig::default()
    };
    match SecretsLayer::new(&config, Arc::new(AnyValue), Arc::new(AnyImage)) {
        Ok(layer) => layer,
        Err(e) => panic!("{e}"),
    }
}

/// Poll a future that never waits (the mutation chain is synchronous).
fn now_or_never<F: Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

fn mk_handler() -> Admission {
    let store = Arc::new(RecommendationStore::new());
    let mk = |kind, name: &str, container: &str| Recommendation {
        target: ContainerRef::new(WorkloadKey::new("default", kind, name), container),
        policy: "default".into(),
        season: None,
        window: HumanDuration::from_secs(604_800),
        cpu: Some(ResourceRecommendation {
            request: Quantity::from_millis(250),
            percentile: 95.0,
            usage: 0.2,
            samples: 100,
            history_secs: 604_800,
            oom_killed: false,
            current: None,
            distribution: Vec::new(),
        }),
        memory: Some(ResourceRecommendation {
            request: Quantity::from_units(640 << 20),
            percentile: 100.0,
            usage: 5e8,
            samples: 100,
            history_secs: 604_800,
            oom_killed: false,
            current: None,
            distribution: Vec::new(),
        }),
        skipped: vec![],
    };
    store.replace([
        mk(WorkloadKind::Deployment, "web", "app"),
        mk(WorkloadKind::Deployment, "web", "envoy"),
        mk(WorkloadKind::Pod, "p", "c"),
    ]);
    let pipeline = Pipeline::builder()
        .layer(ResourcesLayer::new(
            store,
            Arc::new(PolicySet(vec![Policy::default()])),
        ))
        .layer(mk_secrets())
        .build();
    Admission::new(pipeline)
}

/// Decode and review `data`; a patch must apply to the request object, and an
/// error must be one line.
pub fn admission(data: &[u8]) {
    static HANDLER: std::sync::OnceLock<Admission> = std::sync::OnceLock::new();
    let handler = HANDLER.get_or_init(mk_handler);
    match now_or_never(handler.review(data)) {
        Some(Ok(reviewed)) => {
            // The check parses the whole body as a serde_json `Value`, which
            // is stricter than a review about text the review skips (a lone
            // surrogate escape in an unused field's key, as serde's derive
            // skips it too): check where the body parses.
            let parses = serde_json::from_slice::<serde_json::Value>(data).is_ok();
            if let (Some(patch), true) = (reviewed.patch.as_ref(), parses) {
                if let Err(e) = patched_object(data, Some(patch)) {
                    panic!("patch does not apply to its own object: {e}");
                }
            }
        }
        Some(Err(e)) => assert!(!e.to_string().contains('\n'), "multi-line error"),
        None => panic!("the mutation chain waited"),
    }
}

/// Parse a secret reference; what parses must format and parse back to
/// itself.
pub fn secret_reference(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = SecretRef::parse(s) {
        let again = SecretRef::parse(&r.to_string());
        assert_eq!(again.as_ref().ok(), Some(&r), "{r}");
    }
}

/// Parse a quantity; what parses must format and parse back to itself.
pub fn quantity(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(q) = Quantity::parse(s) {
        assert_eq!(Quantity::parse(&q.to_cpu_string()).ok(), Some(q));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_do_not_panic() {
        let example = include_bytes!("../tests/data/pod-create.json");
        super::admission(example);
        super::admission(b"{}");
        super::admission(b"");
        let mut truncated = example.to_vec();
        truncated.truncate(example.len() / 2);
        super::admission(&truncated);
        // Found by the fuzzer: invalid UTF-8 inside a key the decoder skips.
        let bad_utf8 = String::from_utf8_lossy(example).replace(
            "\"version\": \"v1\", \"resource\"",
            "\"\u{fffd}ersion\": \"v1\", \"resource\"",
        );
        let mut bytes = bad_utf8.into_bytes();
        if let Some(i) = bytes.windows(3).position(|w| w == "\u{fffd}".as_bytes()) {
            bytes.splice(i..i + 3, [0xff]);
        }
        assert!(
            std::str::from_utf8(&bytes).is_err(),
            "the seed must hold invalid UTF-8"
        );
        super::admission(&bytes);
        // Found by the fuzzer: a lone surrogate escape in a key the review
        // skips; reviewed (as serde's derive reads it), not a full JSON value.
        let surrogate = String::from_utf8_lossy(example).replacen(
            "\"version\": \"v1\", \"resource\"",
            "\"%\\ud88b\": \"v1\", \"resource\"",
            1,
        );
        assert!(
            surrogate.contains("\\ud88b"),
            "the seed must hold the escape"
        );
        assert!(serde_json::from_str::<serde_json::Value>(&surrogate).is_err());
        super::admission(surrogate.as_bytes());
        // Secrets: exec and env injection, refusals, through the same checks.
        let pod: serde_json::Value =
            serde_json::from_slice(example).unwrap_or_else(|e| panic!("{e}"));
        for (ns, annotations) in [
            (
                "default",
                serde_json::json!({"nemutator.io/secrets": r#"{"A":"vault:kv/data/a#k"}"#}),
            ),
            (
                "default",
                serde_json::json!({"nemutator.io/secrets": r#"{"A":"vault:kv/data/a#k#2"}"#, "nemutator.io/secrets-injection": "env"}),
            ),
            ("default", serde_json::json!({"nemutator.io/secrets": "{"})),
            (
                "other",
                serde_json::json!({"nemutator.io/secrets": r#"{"A":"vault:kv/data/a#k"}"#}),
            ),
        ] {
            let mut review = pod.clone();
            review["request"]["namespace"] = ns.into();
            review["request"]["object"]["metadata"]["annotations"] = annotations;
            super::admission(review.to_string().as_bytes());
        }
        for r in [
            "vault:kv/data/a#k",
            "vault:a#b#3",
            "vault:#",
            "vault:a#b#0",
            "vault:",
        ] {
            super::secret_reference(r.as_bytes());
        }
        for q in ["1", "250m", "1e3", "-0", "1.5Gi", ".", "9e18"] {
            super::quantity(q.as_bytes());
        }
    }
}
