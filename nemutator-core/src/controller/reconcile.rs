//! The drift reconciler's loop: on the leader, a pass over the pod cache
//! every interval (the cache is a reflector: no list is polled), each pod
//! decided by [`super::drift::decide`] against what admission would give it
//! now; resizes through `pods/resize`, re-creations through the
//! [`crate::evict::Evictor`] and its safety rules, in one eviction pass.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Client, Resource as _};

use super::drift::{self, DriftAction};
use super::leader::Leadership;
use crate::error::Chain;
use crate::evict::{EvictionRequest, Evictor, PodKey};
use crate::mutate::ResourcesLayer;

/// Whether the reconciler acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriftMode {
    /// No pass at all.
    Off,
    /// Decide, and ask the API server for dry-run resizes and evictions only.
    DryRun,
    /// Resize and evict.
    On,
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Running pods looked at.
    pub pods: usize,
    /// Within their recommendation.
    pub in_sync: usize,
    /// Resized in place (or would be, in a dry-run).
    pub resized: usize,
    /// Resizes the API server refused (left for the next pass).
    pub resize_failed: usize,
    /// Waiting for a resize under way.
    pub waiting: usize,
    /// Handed to the evictor (its rules may still refuse).
    pub to_evict: usize,
    /// Resizes left for a later pass by [`ResizeLimits`].
    pub over_limit: usize,
}

/// How many in-place resizes one pass may ask for: in all, and on one node
/// (a resize makes the node's kubelet rewrite cgroups and may restart a
/// container whose `resizePolicy` says so). Pods over a limit are counted
/// in [`PassReport::over_limit`] and decided again in the next pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResizeLimits {
    /// Resizes per pass.
    pub per_pass: u32,
    /// Resizes per node per pass.
    pub per_node: u32,
}

impl Default for ResizeLimits {
    fn default() -> Self {
        ResizeLimits {
            per_pass: 100,
            per_node: 10,
        }
    }
}

/// What is left of the [`ResizeLimits`] in one pass.
#[derive(Debug)]
struct ResizeBudget<'a> {
    limits: ResizeLimits,
    taken: u32,
    per_node: HashMap<&'a str, u32>,
}

impl<'a> ResizeBudget<'a> {
    fn new(limits: ResizeLimits) -> Self {
        ResizeBudget {
            limits,
            taken: 0,
            per_node: HashMap::new(),
        }
    }

    /// Takes one resize on `node` (`None`: not scheduled yet, counted in
    /// the total only), or says the limits are reached.
    fn take(&mut self, node: Option<&'a str>) -> bool {
        if self.taken >= self.limits.per_pass {
            return false;
        }
        if let Some(node) = node {
            let n = self.per_node.entry(node).or_insert(0);
            if *n >= self.limits.per_node {
                return false;
            }
            *n += 1;
        }
        self.taken += 1;
        true
    }
}

/// `nemutator_drift_decisions_total{action}`: the reconciler's decisions,
/// by action (`in_sync`, `resized`, `resize_failed`, `waiting`, `evict`,
/// `over_limit`).
#[derive(Debug, Default)]
pub struct DriftMetrics {
    counts: [AtomicU64; ACTIONS.len()],
}

const ACTIONS: [&str; 6] = [
    "in_sync",
    "resized",
    "resize_failed",
    "waiting",
    "evict",
    "over_limit",
];

impl DriftMetrics {
    fn add(&self, report: &PassReport) {
        let PassReport {
            pods: _,
            in_sync,
            resized,
            resize_failed,
            waiting,
            to_evict,
            over_limit,
        } = report;
        for (i, n) in [
            in_sync,
            resized,
            resize_failed,
            waiting,
            to_evict,
            over_limit,
        ]
        .into_iter()
        .enumerate()
        {
            self.counts[i].fetch_add(*n as u64, Ordering::Relaxed);
        }
    }

    /// Appends the exposition text to `out`.
    pub fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP nemutator_drift_decisions_total Drift reconciler decisions, by action.\n",
        );
        out.push_str("# TYPE nemutator_drift_decisions_total counter\n");
        for (action, n) in ACTIONS.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "nemutator_drift_decisions_total{{action=\"{action}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
}

/// The drift reconciler.
pub struct DriftReconciler {
    client: Client,
    pods: Store<Pod>,
    resources: ResourcesLayer,
    evictor: Arc<dyn Evictor>,
    /// Whether it acts.
    pub mode: DriftMode,
    /// How many resizes a pass may ask for.
    pub limits: ResizeLimits,
    metrics: Arc<DriftMetrics>,
    recorder: Recorder,
}

impl std::fmt::Debug for DriftReconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriftReconciler")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

fn running(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

impl DriftReconciler {
    /// A reconciler over `pods`, right-sizing with `resources`, re-creating
    /// through `evictor`; Events reported as `nemutator.io/controller`.
    pub fn new(
        client: Client,
        pods: Store<Pod>,
        resources: ResourcesLayer,
        evictor: Arc<dyn Evictor>,
        mode: DriftMode,
    ) -> Self {
        let reporter = Reporter {
            controller: crate::evict::REPORTING_CONTROLLER.to_owned(),
            instance: None,
        };
        DriftReconciler {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            pods,
            resources,
            evictor,
            mode,
            limits: ResizeLimits::default(),
            metrics: Arc::new(DriftMetrics::default()),
        }
    }

    /// The decision counters (for `/metrics`).
    pub fn metrics(&self) -> Arc<DriftMetrics> {
        self.metrics.clone()
    }

    /// One pass at `now` (unix seconds), `resize_supported` as discovered.
    pub async fn pass(&self, now: i64, resize_supported: bool) -> PassReport {
        let dry_run = self.mode != DriftMode::On;
        let mut report = PassReport::default();
        let mut evict = Vec::new();
        let pods = self.pods.state();
        let mut budget = ResizeBudget::new(self.limits);
        for pod in pods.iter().filter(|p| running(p)) {
            report.pods += 1;
            let desired = self.resources.desired(pod, now);
            let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
                continue;
            };
            match drift::decide(pod, &desired, resize_supported, now) {
                DriftAction::InSync => report.in_sync += 1,
                DriftAction::Wait(why) => {
                    report.waiting += 1;
                    tracing::debug!(pod = %format_args!("{ns}/{name}"), why, "drift: waiting");
                }
                DriftAction::Resize(changed) => {
                    let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
                    if !budget.take(node) {
                        report.over_limit += 1;
                        tracing::debug!(pod = %format_args!("{ns}/{name}"), "drift: resize limit reached; next pass");
                        continue;
                    }
                    match drift::resize(self.client.clone(), ns, name, &changed, dry_run).await {
                        Ok(_) => {
                            report.resized += 1;
                            tracing::info!(pod = %format_args!("{ns}/{name}"), dry_run, "drift: resized in place");
                            if !dry_run {
                                self.resized_event(pod, &changed).await;
                            }
                        }
                        Err(e) => {
                            report.resize_failed += 1;
                            tracing::warn!(pod = %format_args!("{ns}/{name}"), error = %Chain(&e), "drift: resize refused");
                        }
                    }
                }
                DriftAction::Evict(why) => {
                    tracing::info!(pod = %format_args!("{ns}/{name}"), why, "drift: re-create");
                    evict.push(PodKey::new(ns.as_str(), name.as_str()));
                }
            }
        }
        report.to_evict = evict.len();
        if !evict.is_empty() {
            let request = EvictionRequest {
                pods: evict,
                dry_run,
                reason: "drift: requests left the recommendation".into(),
                requester: None,
            };
            if let Err(e) = self.evictor.evict(&request).await {
                tracing::warn!(error = %Chain(&e), "drift: eviction pass failed");
            }
        }
        self.metrics.add(&report);
        report
    }

    async fn resized_event(
        &self,
        pod: &Pod,
        changed: &[(String, k8s_openapi::api::core::v1::ResourceRequirements)],
    ) {
        let mut note = String::from("resized in place by nemutator to the recommendation:");
        for (container, r) in changed {
            let requests = r
                .requests
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k} {}", v.0));
            let _ = write!(
                note,
                " {container}: {}",
                requests.collect::<Vec<_>>().join(", ")
            );
        }
        let event = Event {
            type_: EventType::Normal,
            reason: "Resized".to_owned(),
            note: Some(note),
            action: "Resize".to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &pod.object_ref(&())).await {
            tracing::warn!(error = %Chain(&e), "could not record the resize Event");
        }
    }

    /// Runs a pass every `interval` while `leadership` says this replica
    /// leads, until the election ends.
    pub async fn run(self, mut leadership: Leadership, interval: Duration) {
        if self.mode == DriftMode::Off {
            return;
        }
        let mut resize_supported = None;
        loop {
            if leadership.is_leader() {
                if resize_supported.is_none() {
                    match drift::supports_resize(&self.client).await {
                        Ok(s) => resize_supported = Some(s),
                        Err(e) => tracing::warn!(error = %Chain(&e), "drift: API discovery failed"),
                    }
                }
                if let Some(supported) = resize_supported {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                    let report = self.pass(now, supported).await;
                    tracing::info!(?report, mode = ?self.mode, "drift pass");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                changed = leadership.changed() => if changed.is_none() { return },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ResizeBudget, ResizeLimits};

    #[test]
    fn the_resize_budget_holds_per_pass_and_per_node() {
        let mut b = ResizeBudget::new(ResizeLimits {
            per_pass: 3,
            per_node: 2,
        });
        assert!(b.take(Some("n1")));
        assert!(b.take(Some("n1")));
        assert!(!b.take(Some("n1")), "a third resize on n1");
        assert!(b.take(Some("n2")));
        assert!(!b.take(Some("n3")), "a fourth resize in the pass");
        assert!(!b.take(None), "an unscheduled pod counts in the total");
        let mut b = ResizeBudget::new(ResizeLimits {
            per_pass: 1,
            per_node: 0,
        });
        assert!(!b.take(Some("n1")));
        assert!(b.take(None), "not on a node: only the total applies");
    }
}
