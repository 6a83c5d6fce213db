//! The recommender: turns usage history into recommended requests, ahead of
//! admission.
//!
//! For each namespace a policy covers, the recommender asks the metrics
//! client for the policy's usage percentiles over the window, one batched
//! request per resource answering every container (the statistic of
//! [`crate::metrics::stat`], pushed down to the backend), applies the OOM
//! bump, headroom and bounds, and stores the result in a
//! [`RecommendationStore`] that the admission path reads without waiting on
//! anything.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::metrics::{
    ContainersRequest, MetricsClient, MetricsError, PeriodicMask, Resolution, Resource, StatSpec,
    UsageRequest,
};
use crate::policy::PolicySet;
use crate::quantity::Quantity;
use crate::season::{Season, SeasonModel, SeasonStore};
use crate::units::HumanDuration;
use crate::workload::ContainerRef;

mod build;
mod learn;
mod refresh;
use build::build;
pub use build::oom_bump;
mod shared;
pub use refresh::{NotReady, RefreshHealth, Refresher, MAX_BACKOFF, MIN_BACKOFF};
pub use shared::{
    Head, Publication, SharedError, SharedHealth, SharedRefresher, SharedStore, SharedTiming,
};

/// The recommended request of one resource. Written (as part of a
/// [`Recommendation`]) with the request in the notation of its resource, as
/// in a pod spec: `"250m"`, `"640Mi"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceRecommendation {
    /// Recommended request.
    pub request: Quantity,
    /// The usage percentile it was computed from.
    pub percentile: f64,
    /// The usage at that percentile (cores or bytes), before headroom.
    pub usage: f64,
    /// Samples behind the percentile.
    pub samples: u64,
    /// Seconds of history behind the percentile (steps with a value × step).
    pub history_secs: i64,
    /// A container was OOM-killed in the window, so the request is sized
    /// from max(usage + 100Mi, usage × 1.2), as VPA does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
    /// The request the workload's pods have now, when the source knows it
    /// (asked by [`Recommender::with_distribution`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Quantity>,
    /// The usage distribution of the window as `(quantile, usage)` pairs at
    /// [`DISTRIBUTION`] (asked by [`Recommender::with_distribution`]; what
    /// `--output html` draws).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distribution: Vec<(f64, f64)>,
}

/// The usage quantiles a report draws, asked in the same batched request as
/// the policy's percentiles (no request more per workload).
pub const DISTRIBUTION: [f64; 9] = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0];

/// What nemutator recommends for one workload container in one season.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The workload container.
    pub target: ContainerRef,
    /// The policy that produced it.
    pub policy: String,
    /// The season whose brainset was used (`None`: no season model).
    pub season: Option<Season>,
    /// History window.
    pub window: HumanDuration,
    /// CPU, when there is enough history.
    #[serde(serialize_with = "cpu_json")]
    pub cpu: Option<ResourceRecommendation>,
    /// Memory, when there is enough history.
    #[serde(serialize_with = "memory_json")]
    pub memory: Option<ResourceRecommendation>,
    /// Why a resource has no recommendation (short history, no samples).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// A [`ResourceRecommendation`] as written, its request in the notation of
/// its resource (a derived `Serialize` would write the canonical decimal
/// form, bytes for memory).
#[derive(Serialize)]
struct ResourceJson<'a> {
    request: String,
    percentile: f64,
    usage: f64,
    samples: u64,
    history_secs: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    oom_killed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    current: Option<String>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    distribution: &'a [(f64, f64)],
}

impl ResourceRecommendation {
    fn json(&self, resource: Resource) -> ResourceJson<'_> {
        // Destructured whole: a new field fails to compile until written here.
        let ResourceRecommendation {
            request,
            percentile,
            usage,
            samples,
            history_secs,
            oom_killed,
            current,
            distribution,
        } = self;
        ResourceJson {
            request: resource.quantity_string(*request),
            percentile: *percentile,
            usage: *usage,
            samples: *samples,
            history_secs: *history_secs,
            oom_killed: *oom_killed,
            current: current.map(|q| resource.quantity_string(q)),
            distribution,
        }
    }
}

fn cpu_json<S: serde::Serializer>(
    r: &Option<ResourceRecommendation>,
    s: S,
) -> Result<S::Ok, S::Error> {
    r.as_ref().map(|r| r.json(Resource::Cpu)).serialize(s)
}

fn memory_json<S: serde::Serializer>(
    r: &Option<ResourceRecommendation>,
    s: S,
) -> Result<S::Ok, S::Error> {
    r.as_ref().map(|r| r.json(Resource::Memory)).serialize(s)
}

impl Recommendation {
    /// The recommendation of one resource.
    pub fn resource(&self, r: Resource) -> Option<&ResourceRecommendation> {
        match r {
            Resource::Cpu => self.cpu.as_ref(),
            Resource::Memory => self.memory.as_ref(),
        }
    }
}

/// Recommendations of one workload container, one per season (or a single
/// season-less one).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ContainerRecommendations {
    /// Without a season model.
    pub any: Option<Arc<Recommendation>>,
    /// For the peak brainset.
    pub peak: Option<Arc<Recommendation>>,
    /// For the off-peak brainset.
    pub off_peak: Option<Arc<Recommendation>>,
}

impl ContainerRecommendations {
    /// The recommendation for a season, falling back to the season-less one.
    pub fn for_season(&self, season: Option<Season>) -> Option<&Arc<Recommendation>> {
        let seasonal = match season {
            Some(Season::Peak) => self.peak.as_ref(),
            Some(Season::OffPeak) => self.off_peak.as_ref(),
            None => None,
        };
        seasonal.or(self.any.as_ref())
    }

    fn slot(&mut self, season: Option<Season>) -> &mut Option<Arc<Recommendation>> {
        match season {
            Some(Season::Peak) => &mut self.peak,
            Some(Season::OffPeak) => &mut self.off_peak,
            None => &mut self.any,
        }
    }

    /// Every recommendation held.
    pub fn iter(&self) -> impl Iterator<Item = &Recommendation> {
        [&self.any, &self.peak, &self.off_peak]
            .into_iter()
            .filter_map(|r| r.as_deref())
    }
}

/// The store's map. Hashed with foldhash, seeded at random per process: a
/// lookup is on every admitted container, and SipHash cost about 2 % of a
/// review. Its keys come from the cluster's own metrics, and with a random
/// seed collisions cannot be prepared in advance.
type StoreMap = HashMap<ContainerRef, ContainerRecommendations, foldhash::fast::RandomState>;

/// The recommendation store: what admission reads. Reads are lock-free; a
/// refresh swaps the whole map at once, so readers never see half an update.
#[derive(Debug, Default)]
pub struct RecommendationStore {
    map: ArcSwap<StoreMap>,
    loaded: std::sync::atomic::AtomicBool,
    health: RefreshHealth,
}

impl RecommendationStore {
    /// An empty store, not yet loaded.
    pub fn new() -> Self {
        Self::default()
    }

    /// The recommendations of one workload container.
    pub fn get(&self, key: &ContainerRef) -> Option<ContainerRecommendations> {
        self.map.load().get(key).cloned()
    }

    /// Run `f` on the recommendations of one container without cloning them.
    pub fn with<R>(
        &self,
        key: &ContainerRef,
        f: impl FnOnce(Option<&ContainerRecommendations>) -> R,
    ) -> R {
        f(self.map.load().get(key))
    }

    /// Replace everything with `recs`, mark the store loaded and the
    /// recommendations fresh.
    pub fn replace(&self, recs: impl IntoIterator<Item = Recommendation>) {
        let mut map = StoreMap::default();
        for rec in recs {
            let (season, target) = (rec.season, rec.target.clone());
            *map.entry(target).or_default().slot(season) = Some(Arc::new(rec));
        }
        self.map.store(Arc::new(map));
        self.health.record_success();
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Has a first load finished?
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Number of workload containers with recommendations.
    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    /// Is the store empty?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of every recommendation, sorted by container.
    pub fn snapshot(&self) -> Vec<Recommendation> {
        let map = self.map.load();
        let mut out: Vec<Recommendation> = map.values().flat_map(|c| c.iter().cloned()).collect();
        out.sort_by(|a, b| a.target.cmp(&b.target));
        out
    }
}

/// How the recommender learns seasons: the model, where profiles live, and
/// the series it fits them on.
#[derive(Debug, Clone)]
pub struct Seasons {
    /// The season model.
    pub model: Arc<dyn SeasonModel>,
    /// Where learned profiles are kept (and read by admission).
    pub store: Arc<SeasonStore>,
    /// How much history to fit on (two cycles of a period are needed to see it).
    pub history: std::time::Duration,
    /// Resolution of the fitted series and of season ranges.
    pub step: std::time::Duration,
    /// A profile younger than this is reused instead of refitted.
    pub refit: std::time::Duration,
    /// How long before a predicted peak the peak brainset applies.
    pub lead: std::time::Duration,
}

fn wall_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Called after each namespace of a run with (namespaces done, total).
pub type Progress = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// What one pass of the recommender produced.
#[derive(Debug, Default)]
pub struct RecommendRun {
    /// Recommendations, sorted by container (peak before off-peak).
    pub recommendations: Vec<Recommendation>,
    /// Namespaces whose queries failed, with the error: their workloads
    /// have no recommendation in this run (the [`Refresher`] keeps their
    /// last good ones).
    pub failed: Vec<(String, MetricsError)>,
}

/// Which statistics of a namespace's [`UsageRequest`] a container reads.
#[derive(Clone, Copy, Debug)]
enum Slots {
    /// One season-less statistic.
    Any(usize),
    /// Peak and off-peak statistics.
    Seasons { peak: usize, off: usize },
}

/// Computes recommendations from a metrics client and a policy set, with
/// batched requests: per namespace, one [`UsageRequest`] per resource
/// answers every container (namespaces run concurrently, up to a bound).
#[derive(Clone)]
pub struct Recommender {
    client: MetricsClient,
    policies: Arc<PolicySet>,
    seasons: Option<Seasons>,
    resolution: Option<Resolution>,
    concurrency: usize,
    progress: Option<Progress>,
    distribution: bool,
}

impl std::fmt::Debug for Recommender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recommender")
            .field("policies", &self.policies)
            .field("resolution", &self.resolution)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Recommender {
    /// A recommender over `client` (a [`MetricsClient`], or an
    /// `Arc<dyn MetricsSource>` used without layers) with `policies`.
    pub fn new(client: impl Into<MetricsClient>, policies: Arc<PolicySet>) -> Self {
        Recommender {
            client: client.into(),
            policies,
            seasons: None,
            resolution: None,
            concurrency: 4,
            progress: None,
            distribution: false,
        }
    }

    /// Also ask, in the same batched requests, the usage quantiles at
    /// [`DISTRIBUTION`] and the current requests, into
    /// [`ResourceRecommendation::distribution`] and
    /// [`ResourceRecommendation::current`] (for reports).
    pub fn with_distribution(mut self, on: bool) -> Self {
        self.distribution = on;
        self
    }

    /// Learn seasons and compute one recommendation per season for policies
    /// with brainsets.
    pub fn with_seasons(mut self, seasons: Option<Seasons>) -> Self {
        self.seasons = seasons;
        self
    }

    /// The statistic's resolution (`None`, the default: what the source
    /// says suits its data).
    pub fn with_resolution(mut self, resolution: Option<Resolution>) -> Self {
        self.resolution = resolution;
        self
    }

    /// How many namespaces are queried at once (at least 1; default 4).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Report progress after each namespace.
    pub fn with_progress(mut self, progress: Option<Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// The metrics client.
    pub fn client(&self) -> &MetricsClient {
        &self.client
    }

    /// The longest policy window (what listing containers looks back over).
    fn listing_window(&self) -> std::time::Duration {
        self.policies
            .0
            .iter()
            .map(|p| p.window.0)
            .max()
            .unwrap_or(std::time::Duration::from_secs(7 * 86_400))
    }

    /// The namespaces the source has history for, sorted.
    pub async fn namespaces(&self) -> Result<Vec<String>, MetricsError> {
        let info = self.client.info().await?;
        let containers = self
            .client
            .containers(ContainersRequest {
                namespace: None,
                window: self.listing_window(),
                end: info.now,
            })
            .await?;
        let mut namespaces: Vec<String> = containers
            .into_iter()
            .map(|c| c.workload.namespace)
            .collect();
        namespaces.sort();
        namespaces.dedup();
        Ok(namespaces)
    }

    /// Recommendations for every workload container the source knows (in one
    /// namespace if given) that a policy covers; an error if any namespace
    /// failed.
    pub async fn recommend_all(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<Recommendation>, MetricsError> {
        let run = self.run(namespace).await?;
        match run.failed.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(run.recommendations),
        }
    }

    /// One pass: list the containers, learn seasons, then per namespace (a
    /// few at once) one usage request per resource. A namespace whose
    /// requests fail is reported in [`RecommendRun::failed`]; only a failed
    /// listing fails the pass.
    pub async fn run(&self, namespace: Option<&str>) -> Result<RecommendRun, MetricsError> {
        use futures_util::StreamExt as _;

        let info = self.client.info().await?;
        let resolution = self.resolution.unwrap_or(info.resolution);
        let end = info.now;
        let mut containers = self
            .client
            .containers(ContainersRequest {
                namespace: namespace.map(str::to_string),
                window: self.listing_window(),
                end,
            })
            .await?;
        containers.sort();
        let mut by_ns: BTreeMap<String, Vec<ContainerRef>> = BTreeMap::new();
        for c in containers {
            if self.policies.select(&c.workload.namespace).is_some() {
                by_ns
                    .entry(c.workload.namespace.clone())
                    .or_default()
                    .push(c);
            }
        }
        self.learn_seasons(&by_ns, end, &resolution).await;
        let total = by_ns.len();
        let mut done = 0;
        let mut run = RecommendRun::default();
        let mut results = futures_util::stream::iter(by_ns)
            .map(|(ns, members)| async move {
                let result = self.namespace(&ns, &members, end, &resolution).await;
                (ns, result)
            })
            .buffer_unordered(self.concurrency);
        if let Some(progress) = &self.progress {
            progress(0, total);
        }
        while let Some((ns, result)) = results.next().await {
            match result {
                Ok(recs) => run.recommendations.extend(recs),
                Err(e) => {
                    tracing::warn!(namespace = %ns, error = %crate::error::Chain(&e), "usage queries failed");
                    run.failed.push((ns, e));
                }
            }
            done += 1;
            if let Some(progress) = &self.progress {
                progress(done, total);
            }
        }
        // Peak before off-peak within a container: the order they were pushed.
        run.recommendations.sort_by(|a, b| a.target.cmp(&b.target));
        run.failed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(run)
    }

    /// The profile a container's recommendations follow, if its policy has
    /// brainsets and it (or the cluster) has a rhythm.
    fn profile_of(
        &self,
        policy: &crate::policy::Policy,
        target: &ContainerRef,
    ) -> Option<PeriodicMask> {
        let seasons = self.seasons.as_ref().filter(|_| policy.has_brainsets())?;
        let fitted = seasons
            .store
            .get(&target.workload)
            .or_else(|| seasons.store.cluster())?;
        fitted.profile.peak_mask()
    }

    /// The recommendations of one namespace: two requests (CPU, memory).
    async fn namespace(
        &self,
        ns: &str,
        members: &[ContainerRef],
        end: i64,
        resolution: &Resolution,
    ) -> Result<Vec<Recommendation>, MetricsError> {
        let Some(policy) = self.policies.select(ns) else {
            return Ok(Vec::new());
        };
        // Statistics shared by containers with the same mask.
        let mut masks: Vec<PeriodicMask> = Vec::new();
        let assigned: Vec<Option<usize>> = members
            .iter()
            .map(|target| {
                let mask = self.profile_of(policy, target)?;
                Some(masks.iter().position(|m| *m == mask).unwrap_or_else(|| {
                    masks.push(mask);
                    masks.len() - 1
                }))
            })
            .collect();
        // The season-less statistic (slot 0) only when a container needs it.
        let base = usize::from(assigned.iter().any(Option::is_none));
        let slots = assigned.iter().map(|a| match a {
            None => Slots::Any(0),
            Some(i) => Slots::Seasons {
                peak: base + 2 * i,
                off: base + 2 * i + 1,
            },
        });
        let plain = policy.effective(None);
        let (peak, off) = (
            policy.effective(Some(Season::Peak)),
            policy.effective(Some(Season::OffPeak)),
        );
        let request = |resource: Resource| {
            let mut stats = Vec::with_capacity(base + 2 * masks.len());
            if base == 1 {
                stats.push(StatSpec {
                    quantile: plain.resource(resource).percentile / 100.0,
                    mask: None,
                });
            }
            for m in &masks {
                stats.push(StatSpec {
                    quantile: peak.resource(resource).percentile / 100.0,
                    mask: Some(m.clone()),
                });
                stats.push(StatSpec {
                    quantile: off.resource(resource).percentile / 100.0,
                    mask: Some(m.complement()),
                });
            }
            if self.distribution {
                stats.extend(DISTRIBUTION.iter().map(|&quantile| StatSpec {
                    quantile,
                    mask: None,
                }));
            }
            UsageRequest {
                namespace: ns.to_string(),
                resource,
                window: policy.window.0,
                end,
                resolution: *resolution,
                stats,
                oom: resource == Resource::Memory,
                requests: self.distribution,
            }
        };
        // Where the distribution's statistics start, when asked.
        let dist = self.distribution.then_some(base + 2 * masks.len());
        let (cpu, memory) = futures_util::future::try_join(
            self.client.usage(request(Resource::Cpu)),
            self.client.usage(request(Resource::Memory)),
        )
        .await?;
        let mut out = Vec::with_capacity(members.len());
        for (target, slot) in members.iter().zip(slots) {
            let (cpu, memory) = (cpu.containers.get(target), memory.containers.get(target));
            match slot {
                Slots::Any(i) => out.push(build(target, &plain, i, dist, cpu, memory)),
                Slots::Seasons { peak: p, off: o } => {
                    out.push(build(target, &peak, p, dist, cpu, memory));
                    out.push(build(target, &off, o, dist, cpu, memory));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{WorkloadKey, WorkloadKind};

    fn mk_res(request: &str) -> ResourceRecommendation {
        ResourceRecommendation {
            request: Quantity::parse(request).unwrap_or_default(),
            percentile: 95.0,
            usage: 1.0,
            samples: 10,
            history_secs: 86_400,
            oom_killed: false,
            current: None,
            distribution: Vec::new(),
        }
    }

    #[test]
    fn requests_are_written_as_in_a_pod_spec_and_read_back() {
        let rec = Recommendation {
            target: ContainerRef::new(
                WorkloadKey::new("ns", WorkloadKind::Deployment, "web"),
                "app",
            ),
            policy: "default".into(),
            season: None,
            window: HumanDuration::from_secs(604_800),
            cpu: Some(mk_res("1500m")),
            memory: Some(mk_res("642Mi")),
            skipped: Vec::new(),
        };
        let v = serde_json::to_value(&rec).unwrap_or_default();
        assert_eq!(v["cpu"]["request"], "1500m");
        assert_eq!(v["memory"]["request"], "642Mi");
        assert_eq!(v["memory"]["samples"], 10);
        let back: Option<Recommendation> = serde_json::from_value(v).ok();
        assert_eq!(back, Some(rec.clone()));
        let none = Recommendation {
            memory: None,
            ..rec
        };
        assert!(serde_json::to_value(&none).unwrap_or_default()["memory"].is_null());
    }
}
