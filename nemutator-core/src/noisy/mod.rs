//! Noisy neighbours: which running pods disturb the others on their node,
//! judged from live per-pod signals ([`crate::metrics::PodSignals`]: mean
//! CPU over a window, largest memory working set, CFS throttled fraction).
//!
//! Three rules, each a ratio against a threshold of [`NoisyConfig`]; a
//! rule applies to a container only where its spec gives it a measure:
//!
//! | rule | value | applies when | default threshold |
//! | --- | --- | --- | --- |
//! | [`NoisyRule::CpuOverRequest`] | CPU cores used / CPU request | the container requests CPU (or limits it: the request defaults to the limit) | `cpu_over_request: 2.0` |
//! | [`NoisyRule::Throttled`] | throttled CFS periods / all periods | the container has a CPU limit (no quota, no throttling) | `throttled: 0.25` |
//! | [`NoisyRule::MemoryNearLimit`] | largest working set / memory limit | the container has a memory limit | `memory_near_limit: 0.9` |
//!
//! A pod is noisy as soon as one container reaches one threshold. The
//! label [`NOISY_LABEL`] then stays until every rule that applies to the
//! pod is known and below `clear_at` times its threshold (hysteresis: a pod
//! hovering around a threshold does not flap, and a pod whose signals are
//! missing keeps what it has). A noisy pod sharing a node with a precious
//! pod ([`TIER_LABEL`] `=` [`PRECIOUS`]) is an eviction candidate, but only
//! while its signals say so now (never for a label kept by hysteresis), and
//! never when it is precious itself.
//!
//! Pure functions of pods, signals and configuration; the controller loop
//! is [`crate::controller::noisy`].
//!
//! ```
//! use nemutator_core::noisy::{labelled_after, Verdict};
//!
//! // Within the hysteresis band a pod keeps its label, whichever it is.
//! assert!(labelled_after(true, Verdict::Unsure));
//! assert!(!labelled_after(false, Verdict::Unsure));
//! assert!(labelled_after(false, Verdict::Noisy));
//! assert!(!labelled_after(true, Verdict::Quiet));
//! ```

mod config;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use self::config::{Fraction, NoisyConfig, NoisyMode, Positive};
use crate::evict::PodKey;
use crate::metrics::{PodSignals, PodSignalsBatch};
use crate::quantity::Quantity;

/// The label nemutator sets on noisy pods (value [`NOISY_VALUE`]); the
/// admission's placement layer reads it.
pub const NOISY_LABEL: &str = crate::annotations::NOISY;
/// The label that marks pods to protect from noisy neighbours.
pub const TIER_LABEL: &str = crate::annotations::TIER;
/// The values of [`NOISY_LABEL`] and [`TIER_LABEL`], as placement reads them.
pub use crate::mutate::placement::{NOISY_VALUE, PRECIOUS};

/// One rule of the score.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NoisyRule {
    /// CPU used over the CPU request.
    CpuOverRequest,
    /// Fraction of CFS periods throttled.
    Throttled,
    /// Largest working set over the memory limit.
    MemoryNearLimit,
}

impl NoisyRule {
    /// Every rule.
    pub const ALL: [NoisyRule; 3] = [
        NoisyRule::CpuOverRequest,
        NoisyRule::Throttled,
        NoisyRule::MemoryNearLimit,
    ];

    /// Its threshold in `config`.
    pub fn threshold(self, config: &NoisyConfig) -> f64 {
        match self {
            NoisyRule::CpuOverRequest => config.cpu_over_request.get(),
            NoisyRule::Throttled => config.throttled.get(),
            NoisyRule::MemoryNearLimit => config.memory_near_limit.get(),
        }
    }

    /// The rule's value for a container: `None` when the rule does not
    /// apply to it, `Some(None)` when it applies but the signal is missing.
    fn value(self, container: &Container, signals: Option<&PodSignals>) -> Option<Option<f64>> {
        let resources = container.resources.as_ref();
        let get = |map: Option<
            &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >,
                   name: &str| {
            map.and_then(|m| m.get(name))
                .and_then(|q| Quantity::parse(&q.0).ok())
                .map(Quantity::as_f64)
                .filter(|v| *v > 0.0)
        };
        let requests = resources.and_then(|r| r.requests.as_ref());
        let limits = resources.and_then(|r| r.limits.as_ref());
        match self {
            NoisyRule::CpuOverRequest => {
                // An unset request defaults to the limit.
                let request = get(requests, "cpu").or_else(|| get(limits, "cpu"))?;
                Some(signals.and_then(|s| s.cpu).map(|cpu| cpu / request))
            }
            NoisyRule::Throttled => {
                get(limits, "cpu")?;
                Some(signals.and_then(|s| s.throttled))
            }
            NoisyRule::MemoryNearLimit => {
                let limit = get(limits, "memory")?;
                Some(signals.and_then(|s| s.memory).map(|m| m / limit))
            }
        }
    }
}

/// A rule a container reached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reason {
    /// The rule.
    pub rule: NoisyRule,
    /// The container.
    pub container: String,
    /// Its value (a ratio, see the rule).
    pub value: f64,
    /// The threshold it reached.
    pub threshold: f64,
}

/// What a pod's signals say now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// A rule reached its threshold.
    Noisy,
    /// Every rule that applies is known and below `clear_at` times its
    /// threshold.
    Quiet,
    /// Neither: a signal is missing, or a value is in the hysteresis band.
    Unsure,
}

/// The score of one pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodScore {
    /// The largest value over its threshold, over every known rule of
    /// every container (1 or more: noisy); 0 when nothing is known.
    pub score: f64,
    /// The rules reached, largest first.
    pub reasons: Vec<Reason>,
    /// What the signals say.
    pub verdict: Verdict,
}

/// Scores `pod` from its containers' signals (by container name).
pub fn score(pod: &Pod, signals: &BTreeMap<String, PodSignals>, config: &NoisyConfig) -> PodScore {
    let clear_at = config.clear_at.get();
    let mut best = 0.0_f64;
    let mut reasons = Vec::new();
    let mut known = 0_usize;
    let mut unknown = 0_usize;
    let mut quiet = true;
    let spec = pod.spec.as_ref();
    let regular = spec.into_iter().flat_map(|s| s.containers.iter());
    // A finished init container has no signals: only those that report
    // (native sidecars) are scored.
    let init = spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| signals.contains_key(&c.name));
    for container in regular.chain(init) {
        let have = signals.get(&container.name);
        for rule in NoisyRule::ALL {
            let Some(value) = rule.value(container, have) else {
                continue;
            };
            let Some(value) = value.filter(|v| v.is_finite() && *v >= 0.0) else {
                unknown += 1;
                continue;
            };
            known += 1;
            let threshold = rule.threshold(config);
            best = best.max(value / threshold);
            if value >= threshold {
                reasons.push(Reason {
                    rule,
                    container: container.name.clone(),
                    value,
                    threshold,
                });
            }
            if value >= threshold * clear_at {
                quiet = false;
            }
        }
    }
    reasons.sort_by(|a, b| {
        (b.value / b.threshold)
            .total_cmp(&(a.value / a.threshold))
            .then_with(|| a.container.cmp(&b.container))
    });
    let verdict = if !reasons.is_empty() {
        Verdict::Noisy
    } else if known > 0 && unknown == 0 && quiet {
        Verdict::Quiet
    } else {
        Verdict::Unsure
    };
    PodScore {
        score: best,
        reasons,
        verdict,
    }
}

/// Whether a pod carries the noisy label after a pass, given whether it
/// carries it now: set when noisy, removed when quiet, kept otherwise.
pub fn labelled_after(labelled: bool, verdict: Verdict) -> bool {
    match verdict {
        Verdict::Noisy => true,
        Verdict::Quiet => false,
        Verdict::Unsure => labelled,
    }
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

/// Whether `pod` carries the noisy label.
pub fn is_labelled(pod: &Pod) -> bool {
    label(pod, NOISY_LABEL) == Some(NOISY_VALUE)
}

/// Whether `pod` is marked precious.
pub fn is_precious(pod: &Pod) -> bool {
    label(pod, TIER_LABEL) == Some(PRECIOUS)
}

/// Whether `pod` runs (phase `Running`, not being deleted).
pub fn is_running(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// One running pod, judged.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    /// The pod.
    pub key: PodKey,
    /// Its node.
    pub node: Option<String>,
    /// Whether any of its containers had a signal.
    pub has_signals: bool,
    /// Its score.
    pub score: PodScore,
    /// Whether it carries the label now.
    pub labelled: bool,
    /// Whether it should carry it after this pass.
    pub noisy: bool,
    /// Whether it is precious itself.
    pub precious: bool,
    /// The other running precious pods on its node (`namespace/name`).
    pub precious_neighbours: Vec<String>,
    /// Whether to hand it to the evictor: noisy now (not by hysteresis),
    /// not precious, sharing its node with a precious pod.
    pub evict: bool,
}

impl Judged {
    /// Whether the label has to change.
    pub fn label_changes(&self) -> bool {
        self.labelled != self.noisy
    }
}

/// Judges every running pod of `pods` from `batch`: the pods with a
/// signal, and those labelled noisy (which keep the label without one).
/// Sorted by score, largest first.
pub fn judge(pods: &[Arc<Pod>], batch: &PodSignalsBatch, config: &NoisyConfig) -> Vec<Judged> {
    let mut by_pod: HashMap<(&str, &str), BTreeMap<String, PodSignals>> = HashMap::new();
    for (c, s) in &batch.containers {
        by_pod
            .entry((c.namespace.as_str(), c.pod.as_str()))
            .or_default()
            .insert(c.container.clone(), *s);
    }
    let running: Vec<&Pod> = pods
        .iter()
        .map(|p| &**p)
        .filter(|p| is_running(p))
        .collect();
    let mut precious_on: HashMap<&str, Vec<String>> = HashMap::new();
    for p in running.iter().filter(|p| is_precious(p)) {
        let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if let (Some(node), Some(ns), Some(name)) = (node, &p.metadata.namespace, &p.metadata.name)
        {
            precious_on
                .entry(node)
                .or_default()
                .push(format!("{ns}/{name}"));
        }
    }
    let empty = BTreeMap::new();
    let mut out = Vec::new();
    for pod in running {
        let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            continue;
        };
        let signals = by_pod.get(&(ns.as_str(), name.as_str()));
        let labelled = is_labelled(pod);
        if signals.is_none() && !labelled {
            continue;
        }
        let score = score(pod, signals.unwrap_or(&empty), config);
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let me = format!("{ns}/{name}");
        let mut precious_neighbours: Vec<String> = node
            .as_deref()
            .and_then(|n| precious_on.get(n))
            .into_iter()
            .flatten()
            .filter(|p| **p != me)
            .cloned()
            .collect();
        precious_neighbours.sort();
        let precious = is_precious(pod);
        let noisy = labelled_after(labelled, score.verdict);
        let evict = score.verdict == Verdict::Noisy && !precious && !precious_neighbours.is_empty();
        out.push(Judged {
            key: PodKey::new(ns.as_str(), name.as_str()),
            node,
            has_signals: signals.is_some(),
            score,
            labelled,
            noisy,
            precious,
            precious_neighbours,
            evict,
        });
    }
    out.sort_by(|a, b| {
        b.score
            .score
            .total_cmp(&a.score.score)
            .then_with(|| a.key.cmp(&b.key))
    });
    out
}

/// The merge patch that sets (`true`) or removes (`false`) the noisy label.
pub fn label_patch(noisy: bool) -> serde_json::Value {
    let value = if noisy {
        serde_json::Value::String(NOISY_VALUE.to_owned())
    } else {
        serde_json::Value::Null
    };
    serde_json::json!({"metadata": {"labels": {NOISY_LABEL: value}}})
}

#[cfg(test)]
mod tests;
