//! The metadata layer: the `metadata:` rules of the configuration applied to
//! the pod's labels and annotations at admission.
//!
//! The decision is [`MetadataConfig::apply`]; the layer reads the rules in
//! force from [`SharedRules`] on every review (a lock-free load), so rules
//! reloaded from the configuration file apply to the next pod.
//!
//! ```
//! use std::sync::Arc;
//! use nemutator_core::metadata::{MetadataConfig, SharedRules};
//! use nemutator_core::mutate::{MetadataLayer, Pipeline, PodReview};
//!
//! let rules: MetadataConfig =
//!     serde_yaml::from_str("rules: [{ name: team, labels: { team: payments } }]").unwrap();
//! let rules = Arc::new(SharedRules::new(rules));
//! let pipeline = Pipeline::builder().layer(MetadataLayer::new(rules)).build();
//! let review = PodReview::new("shop", Default::default());
//! let out = tokio_test_block_on(pipeline.run(review)).unwrap();
//! assert_eq!(out.pod.metadata.labels.unwrap()["team"], "payments");
//! assert_eq!(out.audit["metadata"], "team: label team=payments");
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

use std::sync::Arc;

use tower::Layer;

use super::PodReview;
use crate::metadata::{MetadataConfig, SharedRules, Stage};
use crate::mutate::{Applied, Mutation};

/// Tower layer that applies the label and annotation rules in force.
#[derive(Clone, Debug)]
pub struct MetadataLayer {
    rules: Arc<SharedRules>,
}

impl MetadataLayer {
    /// Apply the rules `rules` holds at the time of each review.
    pub fn new(rules: Arc<SharedRules>) -> Self {
        MetadataLayer { rules }
    }

    /// Apply the rules to one review; the audit says what changed.
    pub fn apply(&self, review: &mut PodReview) {
        let rules: Arc<MetadataConfig> = self.rules.current();
        let meta = &mut review.pod.metadata;
        let applied = rules.apply(
            &review.namespace,
            &mut meta.labels,
            &mut meta.annotations,
            Stage::Admission,
        );
        if !applied.changes.is_empty() {
            review.audit.insert(
                "metadata".into(),
                format!(
                    "{}: {}",
                    applied.rules.join(", "),
                    applied.changes.join(", ")
                ),
            );
        }
    }
}

impl<S> Layer<S> for MetadataLayer {
    type Service = Metadata<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Applied::new(self.clone(), inner)
    }
}

impl Mutation for MetadataLayer {
    fn apply(&self, review: &mut PodReview) {
        MetadataLayer::apply(self, review);
    }
}

/// The service of [`MetadataLayer`].
pub type Metadata<S> = Applied<MetadataLayer, S>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Admission;
    use crate::mutate::Pipeline;
    use serde_json::{json, Value};

    fn mk_rules(yaml: &str) -> Arc<SharedRules> {
        Arc::new(SharedRules::new(
            serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}")),
        ))
    }

    fn mk_review(namespace: &str, labels: Value) -> Vec<u8> {
        json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u1", "operation": "CREATE", "namespace": namespace,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "object": {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"generateName": "web-", "labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "x"}]}}
            }
        })
        .to_string()
        .into_bytes()
    }

    async fn mk_patch(rules: &Arc<SharedRules>, namespace: &str, labels: Value) -> Value {
        let pipeline = Pipeline::builder()
            .layer(MetadataLayer::new(rules.clone()))
            .build();
        let reviewed = Admission::new(pipeline)
            .review(&mk_review(namespace, labels))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let patch = reviewed
            .patch
            .as_ref()
            .map(|p| serde_json::from_slice(p.as_json()).unwrap_or_default())
            .unwrap_or(Value::Null);
        json!({"patch": patch, "audit": reviewed.response.audit_annotations})
    }

    #[tokio::test]
    async fn rules_become_a_json_patch_and_an_audit_note() {
        let rules = mk_rules(
            "rules:\n\
             - { name: team, selector: { matchLabels: { app: web } }, labels: { example.com/team: pay }, remove_labels: [old] }\n",
        );
        let out = mk_patch(&rules, "shop", json!({"app": "web", "old": "1"})).await;
        let ops = out["patch"].as_array().cloned().unwrap_or_default();
        assert!(
            ops.contains(
                &json!({"op": "add", "path": "/metadata/labels/example.com~1team", "value": "pay"})
            ),
            "{out}"
        );
        assert!(
            ops.contains(&json!({"op": "remove", "path": "/metadata/labels/old"})),
            "{out}"
        );
        assert_eq!(
            out["audit"]["metadata"],
            "team: label example.com/team=pay, label -old"
        );
        // Not selected: no patch, no note.
        let out = mk_patch(&rules, "shop", json!({"app": "db"})).await;
        assert_eq!(out["patch"], Value::Null, "{out}");
        assert_eq!(out["audit"].get("metadata"), None);
    }

    #[tokio::test]
    async fn replaced_rules_apply_to_the_next_review() {
        let rules = Arc::new(SharedRules::default());
        let before = mk_patch(&rules, "shop", json!({"app": "web"})).await;
        assert_eq!(before["patch"], Value::Null);
        rules.replace(
            serde_yaml::from_str("rules: [{ name: r, labels: { team: a } }]")
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let after = mk_patch(&rules, "shop", json!({"app": "web"})).await;
        assert_eq!(after["audit"]["metadata"], "r: label team=a", "{after}");
        // kube-system is left alone by a rule that does not name it.
        let system = mk_patch(&rules, "kube-system", json!({"app": "web"})).await;
        assert_eq!(system["patch"], Value::Null, "{system}");
    }
}
