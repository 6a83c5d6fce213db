//! The placement layer: scheduling rules, written at admission, that keep
//! noisy and precious pods apart (docs/PLACEMENT.md).
//!
//! Users mark the pods to protect with the label `nemutator.io/tier:
//! precious`; the controller's scorer labels running noisy neighbours
//! `nemutator.io/noisy=true`. At admission ([`place`]):
//!
//! - a precious pod gets a pod anti-affinity term against pods labelled
//!   `nemutator.io/noisy=true` (in every namespace), and the nodeSelector and
//!   tolerations of `placement.precious`;
//! - a pod of a workload that has noisy pods now ([`NoisyWorkloads`], kept by
//!   a watch of the labelled pods), or that comes labelled noisy itself, gets
//!   the label, a term against precious pods, and the nodeSelector and
//!   tolerations of `placement.noisy` (a dedicated pool, say). A pod that is
//!   both precious and noisy gets the precious rules only. A DaemonSet's
//!   pod (made for one node) is left alone.
//!
//! Terms and tolerations are appended to the pod's own, never replacing
//! them; a nodeSelector key the pod sets itself keeps the pod's value (a
//! warning and the audit say so). A pod annotated `nemutator.io/placement:
//! off` is left alone.
//!
//! ```
//! use nemutator_core::mutate::{place, PlacementConfig, PodReview, PodView};
//!
//! let pod: PodView = serde_json::from_value(serde_json::json!({
//!     "metadata": {"name": "db-0", "labels": {"nemutator.io/tier": "precious"}},
//!     "spec": {"containers": [{"name": "db"}]}
//! })).unwrap();
//! let mut review = PodReview::new("shop", pod);
//! place(&mut review, &PlacementConfig::default(), false);
//! let spec = review.pod.spec.unwrap();
//! let anti = spec.affinity.unwrap().pod_anti_affinity.unwrap();
//! let term = &anti.preferred_during_scheduling_ignored_during_execution.unwrap()[0];
//! assert_eq!(term.weight, 100);
//! assert_eq!(term.pod_affinity_term.topology_key, "kubernetes.io/hostname");
//! ```

mod config;
mod noisy;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PodAffinityTerm, Toleration, WeightedPodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use tower::Layer;

use super::PodReview;
use crate::annotations;
use crate::mutate::{Applied, Mutation};

pub use config::{PlacementConfig, Pool, Strength, TolerationConfig};
pub use noisy::NoisyWorkloads;

/// The value of `nemutator.io/tier` that marks a pod to protect.
pub const PRECIOUS: &str = "precious";
/// The value of `nemutator.io/noisy` on noisy pods.
pub const NOISY_VALUE: &str = "true";
/// The audit key of this layer.
const AUDIT: &str = "placement";

/// Which rules a pod gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Precious,
    Noisy,
}

/// Write the scheduling rules of `config` into the pod of `review`, and
/// what was done into its audit (key `placement`). `noisy_workload`:
/// whether the pod's workload has pods labelled noisy now. `config.enabled`
/// is not looked at (the caller decides whether the layer runs).
pub fn place(review: &mut PodReview, config: &PlacementConfig, noisy_workload: bool) {
    let meta = &review.pod.metadata;
    match meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::PLACEMENT))
        .map(|v| v.trim())
    {
        None | Some("" | "on") => {}
        Some("off") => {
            review
                .audit
                .insert(AUDIT.into(), format!("{}: off", annotations::PLACEMENT));
            return;
        }
        Some(other) => {
            review.warnings.push(format!(
                "{}: unknown value {other:?} (expected on or off); placement left unchanged",
                annotations::PLACEMENT
            ));
            review.audit.insert(
                AUDIT.into(),
                format!("unknown {} value", annotations::PLACEMENT),
            );
            return;
        }
    }
    let label = |k: &str| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(k))
            .map(String::as_str)
    };
    let precious = label(annotations::TIER) == Some(PRECIOUS);
    let labelled_noisy = label(annotations::NOISY) == Some(NOISY_VALUE);
    let mut notes = Vec::new();
    let kind = match (precious, noisy_workload || labelled_noisy) {
        (true, noisy) => {
            if noisy {
                notes.push("precious and noisy: the precious rules only".to_owned());
            }
            Kind::Precious
        }
        (false, true) => Kind::Noisy,
        (false, false) => return,
    };
    // A DaemonSet's pod is made for one node (a mirror pod is a node's
    // own): another place for it is no place at all.
    if let Some(owner) = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && matches!(o.kind.as_str(), "DaemonSet" | "Node"))
    {
        review.audit.insert(
            AUDIT.into(),
            format!("a {} pod runs where it is made for: left alone", owner.kind),
        );
        return;
    }
    if review.pod.spec.is_none() {
        review
            .audit
            .insert(AUDIT.into(), "pod has no spec".to_owned());
        return;
    }
    let (what, away_key, away_value, pool) = match kind {
        Kind::Precious => (
            "precious",
            annotations::NOISY,
            NOISY_VALUE,
            &config.precious,
        ),
        Kind::Noisy => ("noisy", annotations::TIER, PRECIOUS, &config.noisy),
    };
    if kind == Kind::Noisy && !labelled_noisy {
        review
            .pod
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(annotations::NOISY.to_owned(), NOISY_VALUE.to_owned());
        let workload = review
            .workload
            .as_ref()
            .map_or_else(String::new, |w| format!(" ({w} has noisy pods)"));
        notes.push(format!(
            "labelled {}={NOISY_VALUE}{workload}",
            annotations::NOISY
        ));
    }
    let Some(spec) = review.pod.spec.as_mut() else {
        return;
    };
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                away_key.to_owned(),
                away_value.to_owned(),
            )])),
            match_expressions: None,
        }),
        // Every namespace: a noisy neighbour is one whatever its namespace.
        namespace_selector: Some(LabelSelector::default()),
        topology_key: config.topology_key.clone(),
        ..PodAffinityTerm::default()
    };
    let anti = spec
        .affinity
        .get_or_insert_with(Default::default)
        .pod_anti_affinity
        .get_or_insert_with(Default::default);
    let added = match config.strength {
        Strength::Preferred => push_new(
            &mut anti.preferred_during_scheduling_ignored_during_execution,
            WeightedPodAffinityTerm {
                pod_affinity_term: term,
                weight: config.weight,
            },
        ),
        Strength::Required => push_new(
            &mut anti.required_during_scheduling_ignored_during_execution,
            term,
        ),
    };
    notes.push(format!(
        "{what}: {} pod anti-affinity against {away_key}={away_value} per {}{}",
        config.strength.as_str(),
        config.topology_key,
        if added { "" } else { " (already there)" }
    ));
    let mut warnings = Vec::new();
    for (k, v) in &pool.node_selector {
        let selector = spec.node_selector.get_or_insert_with(BTreeMap::new);
        match selector.get(k) {
            None => {
                selector.insert(k.clone(), v.clone());
                notes.push(format!("nodeSelector {k}={v}"));
            }
            Some(own) if own == v => {}
            Some(own) => {
                warnings.push(format!(
                    "{}: nodeSelector {k}={own} kept as the pod sets it; the {what} pool's {k}={v} not applied",
                    annotations::PLACEMENT
                ));
                notes.push(format!(
                    "nodeSelector {k}={own} kept (the pod's own), not {v}"
                ));
            }
        }
    }
    let added = pool
        .tolerations
        .iter()
        .filter(|t| push_new(&mut spec.tolerations, Toleration::from(*t)))
        .count();
    if added > 0 {
        notes.push(format!("{added} toleration(s) of the {what} pool"));
    }
    review.warnings.extend(warnings);
    review.audit.insert(AUDIT.into(), notes.join("; "));
}

/// Push `item` onto `list` unless an equal one is there; whether it was
/// pushed.
fn push_new<T: PartialEq>(list: &mut Option<Vec<T>>, item: T) -> bool {
    let list = list.get_or_insert_with(Vec::new);
    if list.contains(&item) {
        return false;
    }
    list.push(item);
    true
}

/// Tower layer that writes the scheduling rules of `placement:` into pods
/// ([`place`]), with the noisy workloads of a [`NoisyWorkloads`].
#[derive(Clone, Debug)]
pub struct PlacementLayer {
    config: Arc<PlacementConfig>,
    noisy: NoisyWorkloads,
}

impl PlacementLayer {
    /// The rules of `config`, the noisy workloads read from `noisy` (empty
    /// until something fills it: [`NoisyWorkloads::watch`]).
    pub fn new(config: &PlacementConfig, noisy: NoisyWorkloads) -> Self {
        PlacementLayer {
            config: Arc::new(config.clone()),
            noisy,
        }
    }

    fn apply(&self, review: &mut PodReview) {
        if !self.config.enabled {
            return;
        }
        let noisy = review
            .workload
            .as_ref()
            .is_some_and(|w| self.noisy.contains(w));
        place(review, &self.config, noisy);
    }
}

impl<S> Layer<S> for PlacementLayer {
    type Service = Placement<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Applied::new(self.clone(), inner)
    }
}

impl Mutation for PlacementLayer {
    fn apply(&self, review: &mut PodReview) {
        PlacementLayer::apply(self, review);
    }
}

/// The service of [`PlacementLayer`].
pub type Placement<S> = Applied<PlacementLayer, S>;
