//! The noisy-neighbour loop: on the leader, every `controller.noisy.interval`
//! it asks the metrics source for live pod signals (one question for the
//! cluster), judges the running pods of the pod cache with
//! [`crate::noisy::judge`], sets or removes the label
//! [`crate::noisy::NOISY_LABEL`] (a JSON merge patch of the pod's metadata),
//! keeps the scores for `GET /api/v1/noisy`, and hands the noisy pods that
//! share a node with a precious pod to the [`crate::evict::Evictor`] (its
//! safety rules and limits apply), in one eviction pass.
//!
//! A failed question is retried with backoff (the interval doubled per
//! failure, up to [`MAX_BACKOFF_FACTOR`] times it); a source without pod
//! signals says so once in the log.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client};

use super::leader::Leadership;
use super::FIELD_MANAGER;
use crate::error::Chain;
use crate::evict::{EvictionRequest, Evictor, Outcome, OutcomeCounts, PodKey};
use crate::metrics::{
    BoxFuture, MetricsClient, MetricsError, PodSignalsBatch, PodSignalsRequest, SourceLoader,
};
use crate::noisy::{self, Judged, NoisyConfig, NoisyMode};

/// The reason of the evictions, in their Events.
pub const EVICTION_REASON: &str =
    "noisy neighbour: shares its node with a precious pod (nemutator.io/tier=precious)";
/// Failures stretch the wait up to this many intervals.
pub const MAX_BACKOFF_FACTOR: u32 = 8;

/// A [`SourceLoader`] that, once told to [`keep`](LatestMetrics::keep),
/// remembers the last client it handed out, so the loop asks the source the
/// refresher loaded (a file source is read once per change, not once per
/// question). Without `keep` it remembers nothing: a webhook does not hold
/// a file source's data beyond a refresh.
#[derive(Debug)]
pub struct LatestMetrics {
    loader: Arc<dyn SourceLoader>,
    keep: std::sync::atomic::AtomicBool,
    latest: RwLock<Option<MetricsClient>>,
}

impl LatestMetrics {
    /// Wraps `loader`.
    pub fn new(loader: Arc<dyn SourceLoader>) -> Self {
        LatestMetrics {
            loader,
            keep: std::sync::atomic::AtomicBool::new(false),
            latest: RwLock::new(None),
        }
    }

    /// Remember the clients loaded from now on.
    pub fn keep(&self) {
        self.keep.store(true, Ordering::Release);
    }

    /// The last client loaded, if any.
    pub fn current(&self) -> Option<MetricsClient> {
        self.latest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl SourceLoader for LatestMetrics {
    fn load(&self) -> BoxFuture<'_, Result<Option<MetricsClient>, MetricsError>> {
        Box::pin(async move {
            let loaded = self.loader.load().await?;
            if let Some(client) = loaded
                .as_ref()
                .filter(|_| self.keep.load(Ordering::Acquire))
            {
                *self.latest.write().unwrap_or_else(|p| p.into_inner()) = Some(client.clone());
            }
            Ok(loaded)
        })
    }
}

/// One pod of the last pass, for the REST API.
#[derive(Clone, Debug, PartialEq)]
pub struct NoisyEntry {
    /// The judgement.
    pub judged: Judged,
    /// Whether the pod carries the label after the pass.
    pub labelled: bool,
    /// What the evictor did with it, when it was handed over.
    pub eviction: Option<Outcome>,
}

/// The last pass's scores.
#[derive(Debug, Default)]
pub struct NoisyScores {
    inner: RwLock<(Option<i64>, Vec<NoisyEntry>)>,
}

impl NoisyScores {
    /// When the last pass scored (unix seconds), and its pods.
    pub fn snapshot(&self) -> (Option<i64>, Vec<NoisyEntry>) {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn replace(&self, at: i64, entries: Vec<NoisyEntry>) {
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = (Some(at), entries);
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoisyReport {
    /// Pods judged (with signals, or labelled).
    pub judged: usize,
    /// Noisy after the pass.
    pub noisy: usize,
    /// Labels set.
    pub labelled: usize,
    /// Labels removed.
    pub unlabelled: usize,
    /// Label patches the API server refused.
    pub label_failed: usize,
    /// Handed to the evictor.
    pub to_evict: usize,
}

/// `/metrics` of the loop:
///
/// * `nemutator_noisy_pods` (gauge): pods noisy after the last pass;
/// * `nemutator_noisy_labels_total{change}`: label patches (`set`,
///   `removed`, `failed`);
/// * `nemutator_noisy_evictions_total{outcome}`: the evictor's outcomes
///   for noisy neighbours;
/// * `nemutator_noisy_signal_errors_total`: questions the source failed.
#[derive(Debug, Default)]
pub struct NoisyMetrics {
    pods: AtomicI64,
    labels: [AtomicU64; 3],
    evictions: OutcomeCounts,
    errors: AtomicU64,
}

const LABEL_CHANGES: [&str; 3] = ["set", "removed", "failed"];

impl NoisyMetrics {
    fn record(&self, report: &NoisyReport, outcomes: &[Outcome]) {
        let NoisyReport {
            judged: _,
            noisy,
            labelled,
            unlabelled,
            label_failed,
            to_evict: _,
        } = report;
        self.pods
            .store(i64::try_from(*noisy).unwrap_or(i64::MAX), Ordering::Relaxed);
        for (i, n) in [labelled, unlabelled, label_failed].into_iter().enumerate() {
            self.labels[i].fetch_add(*n as u64, Ordering::Relaxed);
        }
        for o in outcomes {
            self.evictions.observe(o);
        }
    }

    /// Evictions of noisy neighbours with the outcome label `label`.
    pub fn evictions(&self, label: &str) -> u64 {
        self.evictions.count(label)
    }

    /// Appends the exposition text to `out`.
    pub fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP nemutator_noisy_pods Pods judged noisy neighbours by the last pass.\n",
        );
        out.push_str("# TYPE nemutator_noisy_pods gauge\n");
        let _ = writeln!(
            out,
            "nemutator_noisy_pods {}",
            self.pods.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP nemutator_noisy_labels_total Noisy-neighbour label patches, by change.\n",
        );
        out.push_str("# TYPE nemutator_noisy_labels_total counter\n");
        for (change, n) in LABEL_CHANGES.iter().zip(&self.labels) {
            let _ = writeln!(
                out,
                "nemutator_noisy_labels_total{{change=\"{change}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        self.evictions.render(
            out,
            "nemutator_noisy_evictions_total",
            "Evictions of noisy neighbours, by outcome.",
        );
        out.push_str("# HELP nemutator_noisy_signal_errors_total Pod-signal questions the metrics source failed.\n");
        out.push_str("# TYPE nemutator_noisy_signal_errors_total counter\n");
        let _ = writeln!(
            out,
            "nemutator_noisy_signal_errors_total {}",
            self.errors.load(Ordering::Relaxed)
        );
    }
}

/// The noisy-neighbour loop.
pub struct NoisyController {
    client: Client,
    pods: Store<Pod>,
    metrics_source: Arc<LatestMetrics>,
    evictor: Arc<dyn Evictor>,
    config: NoisyConfig,
    scores: Arc<NoisyScores>,
    metrics: Arc<NoisyMetrics>,
}

impl std::fmt::Debug for NoisyController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoisyController")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why a pass did not score.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// The refresher has not loaded the metrics source yet.
    #[error("the metrics source is not loaded yet")]
    NotLoaded,
    /// The pod cache has not been filled yet.
    #[error("the pod cache is not synced with the API server yet")]
    NotSynced,
    /// The source failed the question.
    #[error("pod signals")]
    Signals(#[source] MetricsError),
}

impl NoisyController {
    /// A loop over `pods`, asking `metrics_source`, evicting through `evictor`.
    pub fn new(
        client: Client,
        pods: Store<Pod>,
        metrics_source: Arc<LatestMetrics>,
        evictor: Arc<dyn Evictor>,
        config: NoisyConfig,
    ) -> Self {
        NoisyController {
            client,
            pods,
            metrics_source,
            evictor,
            config,
            scores: Arc::new(NoisyScores::default()),
            metrics: Arc::new(NoisyMetrics::default()),
        }
    }

    /// The last pass's scores (for the REST API).
    pub fn scores(&self) -> Arc<NoisyScores> {
        self.scores.clone()
    }

    /// The counters (for `/metrics`).
    pub fn metrics(&self) -> Arc<NoisyMetrics> {
        self.metrics.clone()
    }

    /// The pod signals over the window ending at the source's now (the
    /// wall clock for a live backend, the newest sample of a recording).
    async fn signals(&self) -> Result<PodSignalsBatch, PassError> {
        let client = self.metrics_source.current().ok_or(PassError::NotLoaded)?;
        let info = client.info().await.map_err(PassError::Signals)?;
        let request = PodSignalsRequest {
            namespace: None,
            window: self.config.window.0.max(Duration::from_secs(1)),
            end: info.now,
        };
        client
            .pod_signals(request)
            .await
            .map_err(PassError::Signals)
    }

    async fn patch_label(&self, key: &PodKey, noisy: bool) -> Result<(), kube::Error> {
        let params = PatchParams {
            dry_run: self.config.label == NoisyMode::DryRun,
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        Api::<Pod>::namespaced(self.client.clone(), &key.namespace)
            .patch(&key.name, &params, &Patch::Merge(noisy::label_patch(noisy)))
            .await
            .map(|_| ())
    }

    /// One pass; `now` (unix seconds) stamps its scores.
    pub async fn pass(&self, now: i64) -> Result<NoisyReport, PassError> {
        if !matches!(
            futures_util::FutureExt::now_or_never(self.pods.wait_until_ready()),
            Some(Ok(()))
        ) {
            return Err(PassError::NotSynced);
        }
        let batch = self.signals().await?;
        let judged = noisy::judge(&self.pods.state(), &batch, &self.config);
        let mut report = NoisyReport {
            judged: judged.len(),
            ..NoisyReport::default()
        };
        let mut entries = Vec::with_capacity(judged.len());
        for j in judged {
            let mut labelled = j.labelled;
            if j.label_changes() && self.config.label != NoisyMode::Off {
                match self.patch_label(&j.key, j.noisy).await {
                    Ok(()) => {
                        if j.noisy {
                            report.labelled += 1;
                        } else {
                            report.unlabelled += 1;
                        }
                        if self.config.label == NoisyMode::On {
                            labelled = j.noisy;
                        }
                        tracing::info!(pod = %j.key, noisy = j.noisy, score = j.score.score, dry_run = self.config.label == NoisyMode::DryRun, "noisy: label changed");
                    }
                    Err(e) => {
                        report.label_failed += 1;
                        tracing::warn!(pod = %j.key, error = %Chain(&e), "noisy: label patch refused");
                    }
                }
            }
            report.noisy += usize::from(j.noisy);
            entries.push(NoisyEntry {
                judged: j,
                labelled,
                eviction: None,
            });
        }
        let mut outcomes = Vec::new();
        if self.config.evict != NoisyMode::Off {
            let pods: Vec<PodKey> = entries
                .iter()
                .filter(|e| e.judged.evict)
                .map(|e| e.judged.key.clone())
                .collect();
            report.to_evict = pods.len();
            for e in entries.iter().filter(|e| e.judged.evict) {
                let why: Vec<String> = e
                    .judged
                    .score
                    .reasons
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {:?} {:.2} >= {}",
                            r.container, r.rule, r.value, r.threshold
                        )
                    })
                    .collect();
                tracing::info!(pod = %e.judged.key, node = ?e.judged.node, precious = ?e.judged.precious_neighbours, reasons = %why.join(", "), "noisy: evict");
            }
            if !pods.is_empty() {
                let request = EvictionRequest {
                    pods,
                    dry_run: self.config.evict == NoisyMode::DryRun,
                    reason: EVICTION_REASON.to_owned(),
                    requester: None,
                };
                match self.evictor.evict(&request).await {
                    Ok(done) => {
                        let by_key: BTreeMap<PodKey, Outcome> = done
                            .into_iter()
                            .map(|o| (PodKey::new(o.namespace, o.name), o.outcome))
                            .collect();
                        for e in &mut entries {
                            e.eviction = by_key.get(&e.judged.key).cloned();
                        }
                        outcomes.extend(by_key.into_values());
                    }
                    Err(e) => tracing::warn!(error = %Chain(&e), "noisy: eviction pass failed"),
                }
            }
        }
        self.metrics.record(&report, &outcomes);
        self.scores.replace(now, entries);
        Ok(report)
    }

    /// Runs a pass every interval while `leadership` says this replica
    /// leads, until the election ends; failures back off.
    pub async fn run(self, mut leadership: Leadership) {
        if !self.config.enabled {
            return;
        }
        let interval = self.config.interval.0.max(Duration::from_secs(1));
        let mut failures: u32 = 0;
        let mut said_unsupported = false;
        loop {
            let mut wait = interval;
            if leadership.is_leader() {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                match self.pass(now).await {
                    Ok(report) => {
                        failures = 0;
                        said_unsupported = false;
                        tracing::info!(?report, evict = ?self.config.evict, "noisy pass");
                    }
                    Err(e @ (PassError::NotLoaded | PassError::NotSynced)) => {
                        tracing::debug!(error = %e, "noisy: no pass yet");
                        wait = interval.min(Duration::from_secs(5));
                    }
                    Err(e @ PassError::Signals(_)) => {
                        self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                        failures = failures.saturating_add(1);
                        let permanent = matches!(&e, PassError::Signals(m) if !m.is_transient());
                        if !permanent || !said_unsupported {
                            tracing::warn!(error = %Chain(&e), "noisy: no pass; backing off");
                        }
                        said_unsupported |= permanent;
                        let factor = 2u32.saturating_pow(failures.min(4)).min(MAX_BACKOFF_FACTOR);
                        wait = interval.saturating_mul(factor);
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                changed = leadership.changed() => if changed.is_none() { return },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_noisy_families_count_what_a_pass_did() {
        let m = NoisyMetrics::default();
        m.record(
            &NoisyReport {
                noisy: 2,
                labelled: 1,
                ..NoisyReport::default()
            },
            &[Outcome::DryRun, Outcome::Gone],
        );
        assert_eq!(m.evictions("dry_run"), 1);
        assert_eq!(m.evictions("evicted"), 0);
        let mut text = String::new();
        m.render(&mut text);
        assert!(text.contains("nemutator_noisy_pods 2\n"), "{text}");
        assert!(text.contains("nemutator_noisy_labels_total{change=\"set\"} 1\n"));
        assert!(text.contains("nemutator_noisy_evictions_total{outcome=\"gone\"} 1\n"));
        assert!(text.contains("nemutator_noisy_signal_errors_total 0\n"));
    }
}
