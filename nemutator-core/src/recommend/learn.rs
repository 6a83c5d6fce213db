//! Season profiles learned during a refresh: one series request per
//! namespace, fits on the blocking pool.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{wall_clock, Recommender};
use crate::metrics::{Resolution, Resource, SeriesRequest};
use crate::season::{FittedProfile, SeasonModel};
use crate::workload::ContainerRef;

impl Recommender {
    /// Fit (or keep, when younger than `refit`) the season profile of every
    /// workload whose policy has brainsets, and the cluster-wide profile, from
    /// one series request per namespace. A namespace whose request fails keeps
    /// its profiles.
    pub(super) async fn learn_seasons(
        &self,
        by_ns: &BTreeMap<String, Vec<ContainerRef>>,
        end: i64,
        resolution: &Resolution,
    ) {
        let Some(seasons) = &self.seasons else {
            return;
        };
        // Profiles (the cluster's too) only serve policies with brainsets.
        let wanted = by_ns
            .keys()
            .any(|ns| self.policies.select(ns).is_some_and(|p| p.has_brainsets()));
        if !wanted {
            return;
        }
        let now = wall_clock();
        let refit = seasons.refit.as_secs() as i64;
        let lead = seasons.lead.as_secs() as i64;
        let fresh = |f: &Arc<FittedProfile>| now - f.fitted_at < refit;
        let cluster_fresh = seasons.store.cluster().is_some_and(|f| fresh(&f));
        let mut cluster: BTreeMap<i64, f64> = BTreeMap::new();
        let mut profiles = HashMap::new();
        let series_resolution =
            Resolution::new(seasons.step, resolution.rate_window.max(seasons.step));
        for (ns, members) in by_ns {
            let wants = self.policies.select(ns).is_some_and(|p| p.has_brainsets());
            let mut need_fit = Vec::new();
            for workload in members.iter().map(|c| &c.workload) {
                match seasons.store.get(workload).filter(|_| wants) {
                    Some(f) if fresh(&f) => {
                        profiles.insert(workload.clone(), (*f).clone());
                    }
                    _ if wants && !need_fit.contains(&workload) => need_fit.push(workload),
                    _ => {}
                }
            }
            if need_fit.is_empty() && cluster_fresh {
                continue;
            }
            let request = SeriesRequest {
                namespace: ns.clone(),
                resource: Resource::Cpu,
                window: seasons.history,
                end,
                resolution: series_resolution,
            };
            let batch = match self.client.series(request).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(namespace = %ns, error = %crate::error::Chain(&e), "season series failed; keeping the profiles");
                    for w in need_fit {
                        if let Some(f) = seasons.store.get(w) {
                            profiles.insert(w.clone(), (*f).clone());
                        }
                    }
                    continue;
                }
            };
            let mut jobs = Vec::with_capacity(need_fit.len());
            for (workload, series) in batch.workloads {
                if !cluster_fresh {
                    for &(t, v) in &series {
                        *cluster.entry(t).or_default() += v;
                    }
                }
                if need_fit.contains(&&workload) {
                    jobs.push((workload, series));
                }
            }
            profiles.extend(fit_blocking(&seasons.model, lead, now, jobs).await);
        }
        tracing::info!(profiles = profiles.len(), "season profiles learned");
        seasons.store.replace(profiles);
        if !cluster_fresh {
            let series: Vec<(i64, f64)> = cluster.into_iter().collect();
            let cluster = fit_blocking(&seasons.model, lead, now, vec![((), series)]).await;
            seasons
                .store
                .set_cluster(cluster.into_iter().next().map(|((), f)| f));
        }
    }
}

/// Fits season profiles on tokio's blocking pool: a fit is milliseconds of
/// CPU (8 weeks of 5-minute samples: about 5 ms), and a refresh of thousands
/// of workloads must not hold the runtime threads that answer admissions and
/// probes. A series without a profile (or a fit that panicked) yields none.
async fn fit_blocking<K: Send + 'static>(
    model: &Arc<dyn SeasonModel>,
    lead: i64,
    now: i64,
    jobs: Vec<(K, Vec<(i64, f64)>)>,
) -> Vec<(K, FittedProfile)> {
    if jobs.is_empty() {
        return Vec::new();
    }
    let model = Arc::clone(model);
    let fit_all = move || {
        jobs.into_iter()
            .filter_map(|(key, series)| match model.fit(&series) {
                Ok(profile) => Some((
                    key,
                    FittedProfile {
                        profile: profile.with_lead(lead),
                        fitted_at: now,
                    },
                )),
                Err(e) => {
                    tracing::debug!(error = %e, "no season profile");
                    None
                }
            })
            .collect::<Vec<_>>()
    };
    match tokio::task::spawn_blocking(fit_all).await {
        Ok(fitted) => fitted,
        Err(e) => {
            tracing::warn!(error = %e, "season fits failed; keeping no new profiles");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the thread of every fit, delegating to the default model.
    #[derive(Debug, Default)]
    struct ThreadRecorder(std::sync::Mutex<Vec<std::thread::ThreadId>>);

    impl SeasonModel for ThreadRecorder {
        fn fit(
            &self,
            series: &[crate::season::Sample],
        ) -> Result<crate::season::SeasonProfile, crate::season::SeasonError> {
            if let Ok(mut threads) = self.0.lock() {
                threads.push(std::thread::current().id());
            }
            crate::season::DefaultSeasonModel::default().fit(series)
        }
    }

    #[tokio::test]
    async fn season_fits_run_off_the_runtime_thread() {
        let recorder = Arc::new(ThreadRecorder::default());
        let model: Arc<dyn SeasonModel> = recorder.clone();
        let series: Vec<(i64, f64)> = (0..2016).map(|i| (i * 300, (i % 288) as f64)).collect();
        let jobs = vec![("a", series.clone()), ("b", Vec::new()), ("c", series)];
        let fitted = fit_blocking(&model, 3600, 1_000_000, jobs).await;
        // The empty series has no profile; the others keep their keys, the lead and the time.
        let keys: Vec<&str> = fitted.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["a", "c"]);
        assert!(fitted.iter().all(|(_, f)| f.fitted_at == 1_000_000));
        let threads = recorder.0.lock().map(|t| t.clone()).unwrap_or_default();
        assert_eq!(threads.len(), 3);
        // The test's runtime is current-thread: this thread is the runtime's.
        let here = std::thread::current().id();
        assert!(
            threads.iter().all(|t| *t != here),
            "a fit ran on the runtime thread"
        );
    }
}
