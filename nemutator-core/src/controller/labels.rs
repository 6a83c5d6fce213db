//! The label and annotation patcher: on the leader, the `metadata:` rules
//! (those with `running_pods`) applied to running pods, after each reload of
//! the rules and every interval. A pass reads the pod cache (a reflector: no
//! list is polled) and sends each pod whose metadata differs from what the
//! rules give it a JSON merge patch of only the keys that differ, guarded by
//! the pod's `resourceVersion` (a pod changed meanwhile is patched on the
//! next pass). A pod that needs nothing gets no request.
//!
//! What the rules give a pod is [`MetadataConfig::apply`] with
//! [`Stage::Running`], the function admission applies too; what a removed
//! rule changed is undone through the record of
//! `nemutator.io/metadata-applied` ([`crate::metadata`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client};
use serde_json::{Map, Value};

use super::leader::Leadership;
use super::FIELD_MANAGER;
use crate::error::Chain;
use crate::metadata::{Applied, MetadataConfig, SharedRules, Stage};

/// Whether the patcher acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataMode {
    /// No pass at all.
    Off,
    /// Decide, and send the patches as dry-run requests only.
    DryRun,
    /// Patch.
    On,
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatchReport {
    /// Running pods looked at.
    pub pods: usize,
    /// Already as the rules say.
    pub in_sync: usize,
    /// Patched (or would be, in a dry-run).
    pub patched: usize,
    /// Patches the API server refused (tried again on the next pass).
    pub failed: usize,
}

const OUTCOMES: [&str; 3] = ["in_sync", "patched", "failed"];

/// `nemutator_metadata_pods_total{outcome}` (the patcher's decisions, by
/// outcome: `in_sync`, `patched`, `failed`) and `nemutator_metadata_rules`
/// (the rules in force).
#[derive(Debug)]
pub struct MetadataMetrics {
    counts: [AtomicU64; OUTCOMES.len()],
    rules: Arc<SharedRules>,
}

impl MetadataMetrics {
    fn new(rules: Arc<SharedRules>) -> Self {
        MetadataMetrics {
            counts: Default::default(),
            rules,
        }
    }

    fn add(&self, report: &PatchReport) {
        let PatchReport {
            pods: _,
            in_sync,
            patched,
            failed,
        } = report;
        for (i, n) in [in_sync, patched, failed].into_iter().enumerate() {
            self.counts[i].fetch_add(*n as u64, Ordering::Relaxed);
        }
    }

    /// Appends the exposition text to `out`.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP nemutator_metadata_pods_total Running pods the metadata patcher looked at, by outcome.\n");
        out.push_str("# TYPE nemutator_metadata_pods_total counter\n");
        for (outcome, n) in OUTCOMES.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "nemutator_metadata_pods_total{{outcome=\"{outcome}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP nemutator_metadata_rules Label and annotation rules in force.\n");
        out.push_str("# TYPE nemutator_metadata_rules gauge\n");
        let _ = writeln!(
            out,
            "nemutator_metadata_rules {}",
            self.rules.current().rules.len()
        );
    }
}

/// The keys of `new` that differ from `old` (a removed key as `null`).
fn merge_diff(
    old: Option<&BTreeMap<String, String>>,
    new: Option<&BTreeMap<String, String>>,
) -> Map<String, Value> {
    let empty = BTreeMap::new();
    let (old, new) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
    let mut out = Map::new();
    for (k, v) in new {
        if old.get(k) != Some(v) {
            out.insert(k.clone(), Value::String(v.clone()));
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        out.insert(k.clone(), Value::Null);
    }
    out
}

/// The JSON merge patch that brings `pod`'s labels and annotations to what
/// `rules` give a running pod, with what the rules did; `None` when nothing
/// differs (or the pod has no namespace).
pub fn metadata_patch(pod: &Pod, rules: &MetadataConfig) -> Option<(Value, Applied)> {
    let meta = &pod.metadata;
    let namespace = meta.namespace.as_deref()?;
    let (mut labels, mut annotations) = (meta.labels.clone(), meta.annotations.clone());
    let applied = rules.apply(namespace, &mut labels, &mut annotations, Stage::Running);
    let labels = merge_diff(meta.labels.as_ref(), labels.as_ref());
    let annotations = merge_diff(meta.annotations.as_ref(), annotations.as_ref());
    if labels.is_empty() && annotations.is_empty() {
        return None;
    }
    let mut out = Map::new();
    if !labels.is_empty() {
        out.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        out.insert("annotations".into(), Value::Object(annotations));
    }
    if let Some(rv) = &meta.resource_version {
        out.insert("resourceVersion".into(), Value::String(rv.clone()));
    }
    Some((serde_json::json!({ "metadata": out }), applied))
}

fn running(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// The patcher.
pub struct MetadataPatcher {
    client: Client,
    pods: Store<Pod>,
    rules: Arc<SharedRules>,
    /// Whether it acts.
    pub mode: MetadataMode,
    metrics: Arc<MetadataMetrics>,
}

impl std::fmt::Debug for MetadataPatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataPatcher")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl MetadataPatcher {
    /// A patcher of the running pods in `pods` under the rules in force in
    /// `rules`.
    pub fn new(
        client: Client,
        pods: Store<Pod>,
        rules: Arc<SharedRules>,
        mode: MetadataMode,
    ) -> Self {
        MetadataPatcher {
            metrics: Arc::new(MetadataMetrics::new(rules.clone())),
            client,
            pods,
            rules,
            mode,
        }
    }

    /// The counters (for `/metrics`).
    pub fn metrics(&self) -> Arc<MetadataMetrics> {
        self.metrics.clone()
    }

    /// One pass over the running pods of the cache.
    pub async fn pass(&self) -> PatchReport {
        let dry_run = self.mode != MetadataMode::On;
        let rules = self.rules.current();
        let mut report = PatchReport::default();
        for pod in self.pods.state().iter().filter(|p| running(p)) {
            report.pods += 1;
            let Some((patch, applied)) = metadata_patch(pod, &rules) else {
                report.in_sync += 1;
                continue;
            };
            let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
                continue;
            };
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                dry_run,
                ..PatchParams::default()
            };
            let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            let pod_name = format!("{ns}/{name}");
            match api.patch(name, &params, &Patch::Merge(&patch)).await {
                Ok(_) => {
                    report.patched += 1;
                    tracing::info!(
                        pod = %pod_name,
                        rules = %applied.rules.join(", "),
                        changes = %applied.changes.join(", "),
                        dry_run,
                        "metadata: pod patched"
                    );
                }
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(pod = %pod_name, error = %Chain(&e), "metadata: patch refused; tried again on the next pass");
                }
            }
        }
        self.metrics.add(&report);
        report
    }

    /// While `leadership` says this replica leads: a pass every `interval`
    /// and after each change of the rules, until the election ends.
    pub async fn run(self, mut leadership: Leadership, interval: Duration) {
        if self.mode == MetadataMode::Off {
            return;
        }
        let mut changes = self.rules.subscribe();
        loop {
            if leadership.is_leader() && self.pods.wait_until_ready().await.is_ok() {
                changes.mark_unchanged();
                let report = self.pass().await;
                if report.patched + report.failed > 0 {
                    tracing::info!(?report, mode = ?self.mode, "metadata pass");
                } else {
                    tracing::debug!(?report, mode = ?self.mode, "metadata pass");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                changed = leadership.changed() => if changed.is_none() { return },
                _ = changes.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mk_pod(labels: Value, annotations: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop", "resourceVersion": "7",
                         "labels": labels, "annotations": annotations},
            "status": {"phase": "Running"}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn mk_rules(yaml: &str) -> MetadataConfig {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn only_what_differs_is_patched() {
        let rules = mk_rules(
            "rules: [{ name: r, labels: { team: a, app: web }, remove_annotations: [old] }]",
        );
        let pod = mk_pod(json!({"app": "web"}), json!({"old": "1", "keep": "2"}));
        let (patch, applied) = metadata_patch(&pod, &rules).unwrap_or_else(|| panic!("a patch"));
        assert_eq!(
            patch,
            json!({"metadata": {
                "labels": {"team": "a"},
                "annotations": {"old": null,
                    "nemutator.io/metadata-applied": r#"{"labels":{"team":{"to":"a"}},"annotations":{"old":{"from":"1"}}}"#},
                "resourceVersion": "7"
            }})
        );
        assert_eq!(applied.rules, ["r"]);
        // The pod as patched needs nothing more.
        let done = mk_pod(
            json!({"app": "web", "team": "a"}),
            json!({"keep": "2", "nemutator.io/metadata-applied": r#"{"labels":{"team":{"to":"a"}},"annotations":{"old":{"from":"1"}}}"#}),
        );
        assert_eq!(metadata_patch(&done, &rules), None);
        // Rules gone: the label nemutator set goes, the annotation it
        // removed comes back, and the record goes.
        let (patch, _) =
            metadata_patch(&done, &MetadataConfig::default()).unwrap_or_else(|| panic!("a patch"));
        assert_eq!(
            patch,
            json!({"metadata": {
                "labels": {"team": null},
                "annotations": {"old": "1", "nemutator.io/metadata-applied": null},
                "resourceVersion": "7"
            }})
        );
    }

    #[test]
    fn admission_only_rules_and_unmatched_pods_get_nothing() {
        let rules = mk_rules(
            "rules:\n\
             - { name: once, running_pods: false, labels: { a: b } }\n\
             - { name: other, namespaces: [prod], labels: { c: d } }\n",
        );
        let pod = mk_pod(json!({"app": "web"}), json!({}));
        assert_eq!(metadata_patch(&pod, &rules), None);
    }

    #[test]
    fn metrics_count_by_outcome_and_show_the_rules() {
        let rules = Arc::new(SharedRules::new(mk_rules(
            "rules: [{ name: r, labels: { a: b } }]",
        )));
        let m = MetadataMetrics::new(rules);
        m.add(&PatchReport {
            pods: 3,
            in_sync: 1,
            patched: 2,
            failed: 0,
        });
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("nemutator_metadata_pods_total{outcome=\"patched\"} 2\n"));
        assert!(out.contains("nemutator_metadata_pods_total{outcome=\"in_sync\"} 1\n"));
        assert!(out.contains("nemutator_metadata_rules 1\n"));
    }
}
