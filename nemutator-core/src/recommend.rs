//! The recommender: turns usage history into recommended requests, ahead of
//! admission.
//!
//! For each workload container the [`MetricsSource`] knows, the recommender
//! finds the policy of its namespace, asks the source for the policy's usage
//! percentile over the window (pushed down to the backend), applies headroom
//! and bounds, and stores the result in a [`RecommendationStore`] that the
//! admission path reads without waiting on anything.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::metrics::{MetricsError, MetricsSource, Resource, SeriesQuery, UsageQuery};
use crate::policy::{EffectivePolicy, PolicySet};
use crate::quantity::Quantity;
use crate::season::{season_ranges, FittedProfile, Season, SeasonModel, SeasonStore};
use crate::units::HumanDuration;
use crate::workload::{ContainerRef, WorkloadKey};

mod refresh;
pub use refresh::{NotReady, RefreshHealth, Refresher, MAX_BACKOFF, MIN_BACKOFF};

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
    /// Seconds of history behind the percentile.
    pub history_secs: i64,
}

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
struct ResourceJson {
    request: String,
    percentile: f64,
    usage: f64,
    samples: u64,
    history_secs: i64,
}

impl ResourceRecommendation {
    fn json(&self, resource: Resource) -> ResourceJson {
        // Destructured whole: a new field fails to compile until written here.
        let ResourceRecommendation {
            request,
            percentile,
            usage,
            samples,
            history_secs,
        } = self;
        ResourceJson {
            request: resource.quantity_string(*request),
            percentile: *percentile,
            usage: *usage,
            samples: *samples,
            history_secs: *history_secs,
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

/// Computes recommendations from a metrics source and a policy set.
#[derive(Debug, Clone)]
pub struct Recommender {
    source: Arc<dyn MetricsSource>,
    policies: Arc<PolicySet>,
    seasons: Option<Seasons>,
}

impl Recommender {
    /// A recommender over `source` with `policies`.
    pub fn new(source: Arc<dyn MetricsSource>, policies: Arc<PolicySet>) -> Self {
        Recommender {
            source,
            policies,
            seasons: None,
        }
    }

    /// Learn seasons and compute one recommendation per season for policies
    /// with brainsets.
    pub fn with_seasons(mut self, seasons: Option<Seasons>) -> Self {
        self.seasons = seasons;
        self
    }

    /// The workload-total CPU series of `containers` (cores per step).
    async fn workload_series(
        &self,
        containers: &[&ContainerRef],
        seasons: &Seasons,
    ) -> Result<Vec<(i64, f64)>, MetricsError> {
        let mut sum: std::collections::BTreeMap<i64, f64> = Default::default();
        for target in containers {
            let query = SeriesQuery {
                target: (*target).clone(),
                resource: Resource::Cpu,
                window: seasons.history,
                end: None,
                step: seasons.step,
            };
            for (t, v) in self.source.usage_series(&query).await? {
                *sum.entry(t).or_default() += v;
            }
        }
        Ok(sum.into_iter().collect())
    }

    /// Fit (or keep, when younger than `refit`) the season profile of every
    /// workload whose policy has brainsets, and the cluster-wide profile.
    pub async fn learn_seasons(&self, containers: &[ContainerRef]) -> Result<(), MetricsError> {
        let Some(seasons) = &self.seasons else {
            return Ok(());
        };
        let now = wall_clock();
        let refit = seasons.refit.as_secs() as i64;
        let lead = seasons.lead.as_secs() as i64;
        let mut by_workload: HashMap<&WorkloadKey, Vec<&ContainerRef>> = HashMap::new();
        for c in containers {
            by_workload.entry(&c.workload).or_default().push(c);
        }
        let fit = |series: &[(i64, f64)]| -> Option<FittedProfile> {
            match seasons.model.fit(series) {
                Ok(profile) => Some(FittedProfile {
                    profile: profile.with_lead(lead),
                    fitted_at: now,
                }),
                Err(e) => {
                    tracing::debug!(error = %e, "no season profile");
                    None
                }
            }
        };
        let fresh = |f: &Arc<FittedProfile>| now - f.fitted_at < refit;
        let mut cluster: std::collections::BTreeMap<i64, f64> = Default::default();
        let mut profiles = HashMap::new();
        let cluster_fresh = seasons.store.cluster().is_some_and(|f| fresh(&f));
        for (workload, members) in by_workload {
            let wants = self
                .policies
                .select(&workload.namespace)
                .is_some_and(|p| p.has_brainsets());
            let existing = seasons.store.get(workload).filter(fresh);
            if let (true, Some(f)) = (wants, &existing) {
                profiles.insert(workload.clone(), (**f).clone());
            }
            let need_fit = wants && existing.is_none();
            if !need_fit && cluster_fresh {
                continue;
            }
            let series = self.workload_series(&members, seasons).await?;
            if !cluster_fresh {
                for &(t, v) in &series {
                    *cluster.entry(t).or_default() += v;
                }
            }
            if need_fit {
                if let Some(f) = fit(&series) {
                    profiles.insert(workload.clone(), f);
                }
            }
        }
        tracing::info!(profiles = profiles.len(), "season profiles learned");
        seasons.store.replace(profiles);
        if !cluster_fresh {
            let series: Vec<(i64, f64)> = cluster.into_iter().collect();
            seasons.store.set_cluster(fit(&series));
        }
        Ok(())
    }

    /// The metrics source.
    pub fn source(&self) -> &Arc<dyn MetricsSource> {
        &self.source
    }

    /// The namespaces the source has history for, sorted.
    pub async fn namespaces(&self) -> Result<Vec<String>, MetricsError> {
        let mut namespaces: Vec<String> = self
            .source
            .containers(None)
            .await?
            .into_iter()
            .map(|c| c.workload.namespace)
            .collect();
        namespaces.sort();
        namespaces.dedup();
        Ok(namespaces)
    }

    /// Recommendations for every workload container the source knows (in one
    /// namespace if given) that a policy covers, season-less.
    pub async fn recommend_all(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<Recommendation>, MetricsError> {
        let mut containers = self.source.containers(namespace).await?;
        containers.sort();
        self.learn_seasons(&containers).await?;
        let mut out = Vec::with_capacity(containers.len());
        for target in containers {
            let Some(policy) = self.policies.select(&target.workload.namespace) else {
                continue;
            };
            let profile = match &self.seasons {
                Some(s) if policy.has_brainsets() => {
                    s.store.get(&target.workload).or_else(|| s.store.cluster())
                }
                _ => None,
            };
            match (
                profile.filter(|p| !p.profile.periods().is_empty()),
                &self.seasons,
            ) {
                (Some(fitted), Some(seasons)) => {
                    let end = self.source.now();
                    let from = end - policy.window.as_secs() as i64;
                    let step = seasons.step.as_secs() as i64;
                    let (peak, off) = season_ranges(&fitted.profile, from, end + 1, step);
                    for (season, ranges) in [(Season::Peak, peak), (Season::OffPeak, off)] {
                        let eff = policy.effective(Some(season));
                        out.push(self.recommend(&target, &eff, &ranges).await?);
                    }
                }
                _ => out.push(
                    self.recommend(&target, &policy.effective(None), &[])
                        .await?,
                ),
            }
        }
        Ok(out)
    }

    /// The recommendation for one workload container under an effective policy.
    pub async fn recommend(
        &self,
        target: &ContainerRef,
        policy: &EffectivePolicy,
        ranges: &[(i64, i64)],
    ) -> Result<Recommendation, MetricsError> {
        let mut rec = Recommendation {
            target: target.clone(),
            policy: policy.name.clone(),
            season: policy.season,
            window: policy.window,
            cpu: None,
            memory: None,
            skipped: Vec::new(),
        };
        for resource in Resource::ALL {
            let rp = policy.resource(resource);
            let query = UsageQuery {
                target: target.clone(),
                resource,
                quantile: rp.percentile / 100.0,
                window: policy.window.0,
                end: None,
                ranges: ranges.to_vec(),
            };
            let Some(stat) = self.source.usage_quantile(&query).await? else {
                rec.skipped
                    .push(format!("{resource}: no samples in {}", policy.window));
                continue;
            };
            let min_history = policy.min_history.as_secs() as i64;
            if stat.span_secs() < min_history {
                rec.skipped.push(format!(
                    "{resource}: {} of history < min_history {}",
                    HumanDuration::from_secs(stat.span_secs().max(0) as u64),
                    policy.min_history
                ));
                continue;
            }
            let r = ResourceRecommendation {
                request: rp.target(resource, stat.value),
                percentile: rp.percentile,
                usage: stat.value,
                samples: stat.samples,
                history_secs: stat.span_secs(),
            };
            match resource {
                Resource::Cpu => rec.cpu = Some(r),
                Resource::Memory => rec.memory = Some(r),
            }
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::WorkloadKind;

    fn mk_res(request: &str) -> ResourceRecommendation {
        ResourceRecommendation {
            request: Quantity::parse(request).unwrap_or_default(),
            percentile: 95.0,
            usage: 1.0,
            samples: 10,
            history_secs: 86_400,
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
