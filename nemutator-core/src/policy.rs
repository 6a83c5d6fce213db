//! Right-sizing policies: which namespaces they cover, how a usage quantile
//! becomes a request, what happens to limits, and the per-season overrides
//! ("brainsets").
//!
//! Everything here is a pure function of its inputs, so it is property-tested
//! directly (see the tests at the bottom).

use serde::{Deserialize, Serialize};

use crate::metrics::Resource;
use crate::quantity::Quantity;
use crate::season::Season;
use crate::units::{HumanDuration, Percent};

/// Memory requests and limits are rounded up to whole MiB (in milli-bytes).
const MEMORY_STEP_MILLIS: i64 = (1 << 20) * 1000;
/// CPU requests and limits are rounded up to whole millicores.
const CPU_STEP_MILLIS: i64 = 1;

/// What to do with limits when requests change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LimitStrategy {
    /// Scale the limit with the request, keeping the original ratio (equal
    /// stays equal, so Guaranteed pods stay Guaranteed; no limit stays none).
    #[default]
    KeepRatio,
    /// Leave limits alone (requests are capped at the limit).
    Unchanged,
    /// Remove limits.
    Remove,
    /// Set limits equal to the new requests.
    EqualToRequests,
}

/// How one resource is sized. Every field is optional in YAML: what is not
/// given comes from the defaults (or, in a brainset, from the policy).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcePolicyPatch {
    /// Percentile of usage, `(0, 100]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile: Option<f64>,
    /// Added on top of the percentile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headroom: Option<Percent>,
    /// Lower bound of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Quantity>,
    /// Upper bound of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Quantity>,
}

/// How one resource is sized, fully resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResourcePolicy {
    /// Percentile of usage, `(0, 100]`.
    pub percentile: f64,
    /// Added on top of the percentile.
    pub headroom: Percent,
    /// Lower bound of the request.
    pub min: Quantity,
    /// Upper bound of the request.
    pub max: Quantity,
}

impl ResourcePolicy {
    /// The defaults for a resource: CPU p95 +15% in [10m, 8], memory max +20%
    /// in [32Mi, 16Gi].
    pub fn default_for(resource: Resource) -> Self {
        match resource {
            Resource::Cpu => ResourcePolicy {
                percentile: 95.0,
                headroom: Percent(15.0),
                min: Quantity::from_millis(10),
                max: Quantity::from_units(8),
            },
            Resource::Memory => ResourcePolicy {
                percentile: 100.0,
                headroom: Percent(20.0),
                min: Quantity::from_units(32 << 20),
                max: Quantity::from_units(16 << 30),
            },
        }
    }

    fn apply(&mut self, patch: &ResourcePolicyPatch) {
        if let Some(p) = patch.percentile {
            self.percentile = p;
        }
        if let Some(h) = patch.headroom {
            self.headroom = h;
        }
        if let Some(m) = patch.min {
            self.min = m;
        }
        if let Some(m) = patch.max {
            self.max = m;
        }
    }

    /// The request for a usage value (cores or bytes): `usage × (1 +
    /// headroom)`, rounded up (1m CPU, 1Mi memory), clamped to `[min, max]`.
    pub fn target(&self, resource: Resource, usage: f64) -> Quantity {
        let raw = Quantity::from_f64_units(usage.max(0.0) * (1.0 + self.headroom.fraction()));
        round(resource, raw).clamp(self.min, self.max.max(self.min))
    }
}

fn round(resource: Resource, q: Quantity) -> Quantity {
    match resource {
        Resource::Cpu => q.round_up_to(CPU_STEP_MILLIS),
        Resource::Memory => q.round_up_to(MEMORY_STEP_MILLIS),
    }
}

/// Per-season overrides of a policy.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Brainset {
    /// CPU overrides.
    #[serde(default)]
    pub cpu: ResourcePolicyPatch,
    /// Memory overrides.
    #[serde(default)]
    pub memory: ResourcePolicyPatch,
    /// Limit strategy override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitStrategy>,
    /// Minimum change override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_change: Option<Percent>,
}

/// The brainsets of a policy, one per season.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Brainsets {
    /// Applied in the peak season (and the lead time before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak: Option<Brainset>,
    /// Applied off-peak.
    #[serde(default, rename = "off-peak", skip_serializing_if = "Option::is_none")]
    pub off_peak: Option<Brainset>,
}

fn all_namespaces() -> Vec<String> {
    vec!["*".to_string()]
}
fn default_excluded() -> Vec<String> {
    vec!["kube-system".to_string()]
}
fn default_window() -> HumanDuration {
    HumanDuration::from_secs(7 * 86_400)
}
fn default_min_history() -> HumanDuration {
    HumanDuration::from_secs(86_400)
}
fn default_min_change() -> Percent {
    Percent(10.0)
}

/// A right-sizing policy, as written under `policies:` in the configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Name, shown in logs and annotations.
    pub name: String,
    /// Namespaces covered (globs with `*`).
    #[serde(default = "all_namespaces")]
    pub namespaces: Vec<String>,
    /// Namespaces never touched (globs; `kube-system` by default).
    #[serde(default = "default_excluded")]
    pub exclude_namespaces: Vec<String>,
    /// How much history a quantile is taken over.
    #[serde(default = "default_window")]
    pub window: HumanDuration,
    /// Containers with less history than this are left alone.
    #[serde(default = "default_min_history")]
    pub min_history: HumanDuration,
    /// CPU sizing.
    #[serde(default)]
    pub cpu: ResourcePolicyPatch,
    /// Memory sizing.
    #[serde(default)]
    pub memory: ResourcePolicyPatch,
    /// Limit strategy.
    #[serde(default)]
    pub limits: LimitStrategy,
    /// Changes smaller than this (relative to the current request) are not applied.
    #[serde(default = "default_min_change")]
    pub min_change: Percent,
    /// Per-season overrides.
    #[serde(default)]
    pub brainsets: Brainsets,
}

/// A policy resolved for one season: every knob has a value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EffectivePolicy {
    /// Policy name.
    pub name: String,
    /// The season these values are for (`None` when no season is known).
    pub season: Option<Season>,
    /// History window.
    pub window: HumanDuration,
    /// Minimum history.
    pub min_history: HumanDuration,
    /// CPU sizing.
    pub cpu: ResourcePolicy,
    /// Memory sizing.
    pub memory: ResourcePolicy,
    /// Limit strategy.
    pub limits: LimitStrategy,
    /// Minimum relative change, as a fraction.
    pub min_change: f64,
}

impl EffectivePolicy {
    /// The sizing of one resource.
    pub fn resource(&self, r: Resource) -> &ResourcePolicy {
        match r {
            Resource::Cpu => &self.cpu,
            Resource::Memory => &self.memory,
        }
    }
}

/// Why a policy is not valid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("policy {policy:?}: {message}")]
pub struct PolicyError {
    /// Policy name.
    pub policy: String,
    /// One-line reason.
    pub message: String,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            name: "default".to_string(),
            namespaces: all_namespaces(),
            exclude_namespaces: default_excluded(),
            window: default_window(),
            min_history: default_min_history(),
            cpu: ResourcePolicyPatch::default(),
            memory: ResourcePolicyPatch::default(),
            limits: LimitStrategy::KeepRatio,
            min_change: default_min_change(),
            brainsets: Brainsets::default(),
        }
    }
}

impl Policy {
    /// Does this policy cover `namespace`?
    pub fn covers(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|g| glob_match(g, namespace))
            && !self
                .exclude_namespaces
                .iter()
                .any(|g| glob_match(g, namespace))
    }

    /// The policy with the brainset of `season` applied (`None`: no season
    /// known, the base policy).
    pub fn effective(&self, season: Option<Season>) -> EffectivePolicy {
        let mut cpu = ResourcePolicy::default_for(Resource::Cpu);
        let mut memory = ResourcePolicy::default_for(Resource::Memory);
        cpu.apply(&self.cpu);
        memory.apply(&self.memory);
        let mut limits = self.limits;
        let mut min_change = self.min_change;
        let brainset = match season {
            Some(Season::Peak) => self.brainsets.peak.as_ref(),
            Some(Season::OffPeak) => self.brainsets.off_peak.as_ref(),
            None => None,
        };
        if let Some(b) = brainset {
            cpu.apply(&b.cpu);
            memory.apply(&b.memory);
            limits = b.limits.unwrap_or(limits);
            min_change = b.min_change.unwrap_or(min_change);
        }
        EffectivePolicy {
            name: self.name.clone(),
            season,
            window: self.window,
            min_history: self.min_history,
            cpu,
            memory,
            limits,
            min_change: min_change.fraction(),
        }
    }

    /// Does this policy have per-season overrides?
    pub fn has_brainsets(&self) -> bool {
        self.brainsets.peak.is_some() || self.brainsets.off_peak.is_some()
    }

    /// Check values that YAML types cannot (percentile range, min <= max, ...).
    pub fn validate(&self) -> Result<(), PolicyError> {
        let err = |message: String| PolicyError {
            policy: self.name.clone(),
            message,
        };
        if self.name.trim().is_empty() {
            return Err(err("name must not be empty".into()));
        }
        if self.window.as_secs() == 0 {
            return Err(err("window must be longer than 0s".into()));
        }
        for season in [None, Some(Season::Peak), Some(Season::OffPeak)] {
            let eff = self.effective(season);
            for r in Resource::ALL {
                let rp = eff.resource(r);
                if !(rp.percentile > 0.0 && rp.percentile <= 100.0) {
                    return Err(err(format!(
                        "{r} percentile {} is outside (0, 100]",
                        rp.percentile
                    )));
                }
                if rp.min > rp.max {
                    return Err(err(format!("{r} min is larger than max")));
                }
            }
        }
        Ok(())
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    // Runs on every review (policy selection): no allocation.
    let Some((first, after)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let (middle, last) = after.rsplit_once('*').unwrap_or(("", after));
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in middle.split('*') {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// The policies of a configuration, in order: the first that covers a
/// namespace applies.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PolicySet(pub Vec<Policy>);

impl PolicySet {
    /// The policy for a namespace, if any.
    pub fn select(&self, namespace: &str) -> Option<&Policy> {
        self.0.get(self.position(namespace)?)
    }

    /// The index of the policy for a namespace, if any.
    pub fn position(&self, namespace: &str) -> Option<usize> {
        self.0.iter().position(|p| p.covers(namespace))
    }

    /// Validate every policy.
    pub fn validate(&self) -> Result<(), PolicyError> {
        self.0.iter().try_for_each(Policy::validate)
    }
}

/// The new request and limit of one resource of one container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourcePlan {
    /// New request.
    pub request: Quantity,
    /// New limit (`None`: no limit).
    pub limit: Option<Quantity>,
}

/// Decide the new request and limit of one resource.
///
/// `old_request` / `old_limit` are the container's current values, `target`
/// the recommended request. Returns `None` when nothing should change: the
/// change is below `min_change`, or the plan equals the current state.
/// A missing request with a limit counts as a request equal to the limit (as
/// the API server defaults it). The returned limit is never below the request.
pub fn plan_resource(
    resource: Resource,
    old_request: Option<Quantity>,
    old_limit: Option<Quantity>,
    target: Quantity,
    strategy: LimitStrategy,
    min_change: f64,
) -> Option<ResourcePlan> {
    let effective_old = old_request.or(old_limit);
    if let Some(old) = effective_old {
        let (o, t) = (old.millis() as f64, target.millis() as f64);
        let relative = if o == 0.0 {
            if t == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (t - o).abs() / o
        };
        if relative < min_change || (relative == 0.0 && min_change == 0.0) {
            return None;
        }
    }
    let mut request = target;
    let limit = match strategy {
        LimitStrategy::Remove => None,
        LimitStrategy::EqualToRequests => Some(request),
        LimitStrategy::Unchanged => {
            if let Some(l) = old_limit {
                request = request.min(l);
            }
            old_limit
        }
        LimitStrategy::KeepRatio => match (old_request, old_limit) {
            (_, None) => None,
            (None, Some(_)) => Some(request),
            (Some(r), Some(l)) if r.millis() > 0 => {
                let scaled =
                    i128::from(l.millis()) * i128::from(request.millis()) / i128::from(r.millis());
                let scaled = Quantity::from_millis(scaled.min(i128::from(i64::MAX)) as i64);
                Some(round(resource, scaled))
            }
            (Some(_), Some(l)) => Some(l),
        },
    };
    let limit = limit.map(|l| l.max(request));
    let plan = ResourcePlan { request, limit };
    let unchanged = old_request == Some(plan.request) && old_limit == plan.limit;
    (!unchanged).then_some(plan)
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
