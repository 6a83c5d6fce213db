//! The right-sizing layer: sets container requests and limits from the
//! recommendation store.
//!
//! The decision is the pure function [`right_size`] of (pod, recommendations,
//! policy, season); [`ResourcesLayer`] only looks those up and calls it.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use tower::Layer;

use super::{ContainerView, PodReview, PodView};
use crate::annotations;
use crate::metrics::Resource;
use crate::mutate::{Applied, Mutation};
use crate::policy::{plan_resource, EffectivePolicy, PolicySet, ResourcePlan};
use crate::quantity::Quantity;
use crate::recommend::{Recommendation, RecommendationStore};
use crate::season::Season;
use crate::workload::{ContainerRef, WorkloadKey};

/// The value of the `nemutator.io/resources` annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Change requests and limits (the default where a policy matches).
    On,
    /// Record what would change in `resources-applied`, change nothing else.
    DryRun,
    /// Never touch the pod.
    Off,
}

impl Mode {
    /// Read the annotation; `Err` carries the unknown value.
    pub fn from_annotation(value: Option<&str>) -> Result<Mode, String> {
        match value.map(str::trim) {
            None | Some("on") | Some("") => Ok(Mode::On),
            Some("dry-run") => Ok(Mode::DryRun),
            Some("off") => Ok(Mode::Off),
            Some(other) => Err(other.to_string()),
        }
    }
}

/// Where the active season of a workload comes from.
pub trait SeasonOracle: Send + Sync + fmt::Debug {
    /// The season `workload` is in at `now` (unix seconds), if known.
    fn season(&self, workload: &WorkloadKey, now: i64) -> Option<Season>;
}

/// No season model: every workload is season-less.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSeasons;

impl SeasonOracle for NoSeasons {
    fn season(&self, _: &WorkloadKey, _: i64) -> Option<Season> {
        None
    }
}

/// What [`right_size`] did.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RightSize {
    /// One line per changed container (the `resources-applied` text).
    pub lines: Vec<String>,
    /// Why containers were left alone.
    pub reasons: Vec<String>,
    /// Whether changes were only recorded.
    pub dry_run: bool,
}

fn parse_q(
    map: Option<&BTreeMap<String, K8sQuantity>>,
    r: Resource,
) -> Result<Option<Quantity>, String> {
    match map.and_then(|m| m.get(r.as_str())) {
        None => Ok(None),
        Some(q) => Quantity::parse(&q.0).map(Some).map_err(|e| e.to_string()),
    }
}

/// Append `q` in the form of resource `r` (`unset` for none).
fn write_q(out: &mut String, r: Resource, q: Option<Quantity>) {
    match (q, r) {
        (None, _) => out.push_str("unset"),
        (Some(q), Resource::Cpu) => q.write_cpu(out),
        (Some(q), Resource::Memory) => q.write_memory(out),
    }
}

/// Append a percentile: whole numbers without a fraction (`95`), others as
/// Rust prints them (`99.9`).
fn write_percentile(out: &mut String, p: f64) {
    if p.fract() == 0.0 && (0.0..1e15).contains(&p) {
        out.push_str(itoa::Buffer::new().format(p as i64));
    } else {
        let _ = write!(out, "{p}");
    }
}

/// Set (or with `None` remove) the quantity of `r` in a request or limit map,
/// reusing the existing entry's key and buffer.
fn set(map: &mut Option<BTreeMap<String, K8sQuantity>>, r: Resource, q: Option<Quantity>) {
    match q {
        Some(q) => {
            let m = map.get_or_insert_with(BTreeMap::new);
            match m.get_mut(r.as_str()) {
                Some(v) => {
                    v.0.clear();
                    write_q(&mut v.0, r, Some(q));
                }
                None => {
                    let mut v = String::with_capacity(8);
                    write_q(&mut v, r, Some(q));
                    m.insert(r.as_str().to_string(), K8sQuantity(v));
                }
            }
        }
        None => {
            if let Some(m) = map.as_mut() {
                m.remove(r.as_str());
                if m.is_empty() {
                    *map = None;
                }
            }
        }
    }
}

/// Size one container; returns its `resources-applied` line if anything changes.
fn size_container(
    c: &mut ContainerView,
    rec: &Recommendation,
    policy: &EffectivePolicy,
    apply: bool,
    reasons: &mut Vec<String>,
) -> Option<String> {
    let res = c.resources.as_ref();
    let (requests, limits) = (
        res.and_then(|r| r.requests.as_ref()),
        res.and_then(|r| r.limits.as_ref()),
    );
    // The `resources-applied` line, written as the plans are made:
    // `NAME: cpu OLD->NEW [limit OLD->NEW] memory ... (PERCENTILES, WINDOW[, SEASON])`.
    let mut line = String::with_capacity(c.name.len() + 96);
    line.push_str(&c.name);
    line.push(':');
    let mut percentiles: [Option<f64>; 2] = [None, None];
    let mut plans: [Option<ResourcePlan>; 2] = [None, None];
    for (i, r) in Resource::ALL.into_iter().enumerate() {
        let Some(target) = rec.resource(r) else {
            continue;
        };
        let (old_req, old_lim) = match (parse_q(requests, r), parse_q(limits, r)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                reasons.push(format!("{}: {r} left alone: {e}", c.name));
                continue;
            }
        };
        let Some(plan) = plan_resource(
            r,
            old_req,
            old_lim,
            target.request,
            policy.limits,
            policy.min_change,
        ) else {
            continue;
        };
        line.push(' ');
        line.push_str(r.as_str());
        line.push(' ');
        write_q(&mut line, r, old_req);
        line.push_str("->");
        write_q(&mut line, r, Some(plan.request));
        if plan.limit != old_lim {
            line.push_str(" limit ");
            write_q(&mut line, r, old_lim);
            line.push_str("->");
            write_q(&mut line, r, plan.limit);
        }
        percentiles[i] = Some(target.percentile);
        plans[i] = Some(plan);
    }
    if plans.iter().all(Option::is_none) {
        return None;
    }
    if apply {
        for (r, plan) in Resource::ALL.into_iter().zip(plans) {
            if let Some(plan) = plan {
                let res = c
                    .resources
                    .get_or_insert_with(ResourceRequirements::default);
                set(&mut res.requests, r, Some(plan.request));
                set(&mut res.limits, r, plan.limit);
            }
        }
    }
    line.push_str(" (");
    match percentiles {
        [Some(a), Some(b)] if a != b => {
            line.push_str("cpu p");
            write_percentile(&mut line, a);
            line.push_str(", memory p");
            write_percentile(&mut line, b);
            line.push_str(", ");
        }
        [Some(a), _] | [None, Some(a)] => {
            line.push('p');
            write_percentile(&mut line, a);
            line.push(' ');
        }
        [None, None] => {}
    }
    policy.window.push_to(&mut line);
    if let Some(s) = policy.season {
        let _ = write!(line, ", {s}");
    }
    line.push(')');
    Some(line)
}

/// Right-size every container of the pod in `review` (and native sidecars:
/// init containers with `restartPolicy: Always`) from `lookup`, under
/// `policy` (a policy with the brainset of its season applied:
/// [`crate::policy::Policy::effective`]). Ordinary init containers and containers without a
/// recommendation are left alone. Writes `resources-applied` (and `season`)
/// annotations when something changes; in dry-run only the annotation.
pub fn right_size(
    review: &mut PodReview,
    policy: &EffectivePolicy,
    mut lookup: impl FnMut(&str) -> Option<Arc<Recommendation>>,
) -> RightSize {
    let mut out = RightSize::default();
    let annotations = review.pod.metadata.annotations.as_ref();
    let mode = match Mode::from_annotation(
        annotations
            .and_then(|a| a.get(annotations::RESOURCES))
            .map(String::as_str),
    ) {
        Ok(m) => m,
        Err(v) => {
            review.warnings.push(format!(
                "{}: unknown value {v:?} (expected on, off or dry-run); resources left unchanged",
                annotations::RESOURCES
            ));
            out.reasons
                .push(format!("unknown {} value", annotations::RESOURCES));
            return out;
        }
    };
    if mode == Mode::Off {
        out.reasons.push(format!("{}: off", annotations::RESOURCES));
        return out;
    }
    let apply = mode == Mode::On;
    out.dry_run = !apply;
    let Some(spec) = review.pod.spec.as_mut() else {
        out.reasons.push("pod has no spec".into());
        return out;
    };
    let sidecars = spec
        .init_containers
        .iter_mut()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    for c in spec.containers.iter_mut().chain(sidecars) {
        let Some(rec) = lookup(&c.name) else {
            out.reasons.push(format!("{}: no recommendation", c.name));
            continue;
        };
        if !rec.skipped.is_empty() {
            out.reasons
                .extend(rec.skipped.iter().map(|s| format!("{}: {s}", c.name)));
        }
        if let Some(line) = size_container(c, &rec, policy, apply, &mut out.reasons) {
            out.lines.push(line);
        }
    }
    if !out.lines.is_empty() {
        let prefix = if apply { "" } else { "dry-run: " };
        let len = out.lines.iter().map(|l| l.len() + prefix.len() + 1).sum();
        let mut text = String::with_capacity(len);
        for l in &out.lines {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(prefix);
            text.push_str(l);
        }
        let ann = review
            .pod
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        ann.insert(annotations::RESOURCES_APPLIED.to_string(), text);
        if let Some(s) = policy.season {
            ann.insert(annotations::SEASON.to_string(), s.to_string());
        }
    }
    out
}

/// Tower layer that right-sizes pods from a [`RecommendationStore`].
#[derive(Clone, Debug)]
pub struct ResourcesLayer {
    store: Arc<RecommendationStore>,
    policies: Arc<PolicySet>,
    /// Per policy, its effective form with no season, at peak and off
    /// peak ([`season_index`]): computed once, not per review.
    effective: Arc<[[EffectivePolicy; 3]]>,
    seasons: Arc<dyn SeasonOracle>,
}

/// Where a season's effective policy sits in [`ResourcesLayer::effective`].
fn season_index(season: Option<Season>) -> usize {
    match season {
        None => 0,
        Some(Season::Peak) => 1,
        Some(Season::OffPeak) => 2,
    }
}

impl ResourcesLayer {
    /// Right-size from `store` under `policies`, without seasons.
    pub fn new(store: Arc<RecommendationStore>, policies: Arc<PolicySet>) -> Self {
        let effective = policies
            .0
            .iter()
            .map(|p| [None, Some(Season::Peak), Some(Season::OffPeak)].map(|s| p.effective(s)))
            .collect();
        ResourcesLayer {
            store,
            policies,
            effective,
            seasons: Arc::new(NoSeasons),
        }
    }

    /// Use `seasons` to pick the brainset of each workload's current season.
    pub fn with_seasons(mut self, seasons: Arc<dyn SeasonOracle>) -> Self {
        self.seasons = seasons;
        self
    }

    /// `pod` (a running one) right-sized as admission would right-size it
    /// now, at `now` (unix seconds): what the drift reconciler compares the
    /// running pod with ([`crate::controller::drift`]).
    pub fn desired(&self, pod: &k8s_openapi::api::core::v1::Pod, now: i64) -> PodView {
        let mut review = PodReview::new("", PodView::from(pod));
        review.now = now;
        self.apply(&mut review);
        *review.pod
    }

    fn apply(&self, review: &mut PodReview) {
        let found = self.policies.position(&review.namespace).and_then(|i| {
            let policy = self.policies.0.get(i)?;
            Some((policy, self.effective.get(i)?))
        });
        let Some((policy, effective)) = found else {
            review.audit.insert(
                "resources".into(),
                format!("no policy covers namespace {}", review.namespace),
            );
            return;
        };
        let Some(workload) = review.workload.clone() else {
            review.audit.insert(
                "resources".into(),
                "workload unknown (no name, generateName or owner)".into(),
            );
            return;
        };
        let season = if policy.has_brainsets() {
            self.seasons.season(&workload, review.now)
        } else {
            None
        };
        let store = &self.store;
        let mut key = ContainerRef::new(workload, String::new());
        let policy = &effective[season_index(season)];
        let report = right_size(review, policy, |container| {
            key.container.clear();
            key.container.push_str(container);
            store.with(&key, |c| c.and_then(|c| c.for_season(season)).cloned())
        });
        if !report.reasons.is_empty() {
            review
                .audit
                .insert("resources".into(), report.reasons.join("; "));
        }
    }
}

impl<S> Layer<S> for ResourcesLayer {
    type Service = Resources<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Applied::new(self.clone(), inner)
    }
}

impl Mutation for ResourcesLayer {
    fn apply(&self, review: &mut PodReview) {
        ResourcesLayer::apply(self, review);
    }
}

/// The service of [`ResourcesLayer`].
pub type Resources<S> = Applied<ResourcesLayer, S>;
