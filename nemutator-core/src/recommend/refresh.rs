//! Keeping a [`RecommendationStore`] fresh: the [`Refresher`], its
//! supervision, and [`RefreshHealth`], what readiness and metrics know of it.
//!
//! A refresh that fails keeps the last good recommendations: serving stale
//! data is better than serving none. It is not hidden, though: once the last
//! successful refresh is older than a bound (`metrics.stale_after`),
//! [`RecommendationStore::readiness`] answers [`NotReady::Stale`], so
//! `/readyz` turns 503 and the pod leaves its Service's endpoints; the age is
//! also a gauge to alert on. [`Refresher::supervise`] runs the refresher in a
//! task of its own and restarts it, with backoff, if it panics or ends, so
//! refreshes cannot stop silently.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{RecommendationStore, Recommender, Seasons};
use crate::error::Chain;
use crate::metrics::{MetricsError, Resolution, SourceLoader};
use crate::policy::PolicySet;
use crate::units::HumanDuration;

/// The wait before restarting a refresher that died; doubled on every
/// restart up to [`MAX_BACKOFF`], and back to this after a run that lasted
/// [`MAX_BACKOFF`] or more.
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);

/// The longest wait before restarting a refresher that died.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How the refreshes of a store go: when one last succeeded, and how often
/// the refresher was restarted. Written by the [`Refresher`], read by
/// readiness and metrics.
#[derive(Debug, Default)]
pub struct RefreshHealth {
    last_success: Mutex<Option<Instant>>,
    restarts: AtomicU64,
    namespaces_done: AtomicU64,
    namespaces_total: AtomicU64,
}

impl RefreshHealth {
    /// A refresh succeeded now (new recommendations, or nothing to change).
    pub fn record_success(&self) {
        *self.last_success.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// A refresh succeeded at `at` (data computed elsewhere, e.g. read from
    /// the shared store with the time it was published).
    pub fn record_success_at(&self, at: Instant) {
        *self.last_success.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }

    /// Time since the last successful refresh (`None`: none yet).
    pub fn age(&self) -> Option<Duration> {
        self.last_success
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed())
    }

    /// The refresher was restarted.
    pub fn record_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// Restarts of the refresher so far.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// The running (or last) refresh has answered `done` of its `total`
    /// namespaces.
    pub fn record_progress(&self, done: usize, total: usize) {
        self.namespaces_total.store(total as u64, Ordering::Relaxed);
        self.namespaces_done.store(done as u64, Ordering::Relaxed);
    }

    /// `(done, total)` namespaces of the running (or last) refresh; `(0, 0)`
    /// before the first.
    pub fn progress(&self) -> (u64, u64) {
        (
            self.namespaces_done.load(Ordering::Relaxed),
            self.namespaces_total.load(Ordering::Relaxed),
        )
    }
}

/// Why a webhook should get no traffic: what `/readyz` answers with a 503.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// No refresh has succeeded yet.
    #[error("recommendations not loaded yet")]
    NotLoaded,
    /// The last successful refresh is too old (the last good
    /// recommendations are still served).
    #[error("recommendations are stale: the last successful refresh was {age} ago (limit {limit}); serving the last good ones")]
    Stale {
        /// Time since the last successful refresh, whole seconds.
        age: HumanDuration,
        /// The bound it passed.
        limit: HumanDuration,
    },
}

impl RecommendationStore {
    /// How refreshes of this store go.
    pub fn health(&self) -> &RefreshHealth {
        &self.health
    }

    /// Whether the store can serve: loaded, and, with `stale_after`, last
    /// refreshed successfully no longer ago than that.
    pub fn readiness(&self, stale_after: Option<Duration>) -> Result<(), NotReady> {
        if !self.is_loaded() {
            return Err(NotReady::NotLoaded);
        }
        match (self.health.age(), stale_after) {
            (Some(age), Some(limit)) if age > limit => Err(NotReady::Stale {
                age: HumanDuration::from_secs(age.as_secs()),
                limit: HumanDuration(limit),
            }),
            _ => Ok(()),
        }
    }
}

/// Keeps a [`RecommendationStore`] up to date: asks a [`SourceLoader`] on
/// every tick and recomputes when it hands out a source. A failing load or
/// recomputation keeps the previous recommendations (and shows in the
/// store's [`RefreshHealth`]).
#[derive(Debug, Clone)]
pub struct Refresher {
    loader: Arc<dyn SourceLoader>,
    policies: Arc<PolicySet>,
    store: Arc<RecommendationStore>,
    seasons: Option<Seasons>,
    season_state: Option<std::path::PathBuf>,
    resolution: Option<Resolution>,
}

impl Refresher {
    /// A refresher filling `store`.
    pub fn new(
        loader: Arc<dyn SourceLoader>,
        policies: Arc<PolicySet>,
        store: Arc<RecommendationStore>,
    ) -> Self {
        Refresher {
            loader,
            policies,
            store,
            seasons: None,
            season_state: None,
            resolution: None,
        }
    }

    /// The statistic's resolution (`None`: the source's own).
    pub fn with_resolution(mut self, resolution: Option<Resolution>) -> Self {
        self.resolution = resolution;
        self
    }

    /// The store it fills.
    pub fn store(&self) -> &Arc<RecommendationStore> {
        &self.store
    }

    /// Where it keeps season profiles, when it learns them.
    pub fn season_store(&self) -> Option<&Arc<crate::season::SeasonStore>> {
        self.seasons.as_ref().map(|s| &s.store)
    }

    /// Learn seasons on every refresh; save the profiles to `state` if given.
    pub fn with_seasons(
        mut self,
        seasons: Option<Seasons>,
        state: Option<std::path::PathBuf>,
    ) -> Self {
        self.seasons = seasons;
        self.season_state = state;
        self
    }

    /// One tick: returns the number of recommendations stored, or `None` when
    /// nothing changed. Either is a successful refresh. A namespace whose
    /// queries fail keeps its last good recommendations (the others are
    /// replaced); a failed load or listing keeps them all.
    pub async fn refresh_once(&self) -> Result<Option<usize>, MetricsError> {
        let Some(client) = self.loader.load().await? else {
            self.store.health().record_success();
            return Ok(None);
        };
        let store = Arc::clone(&self.store);
        let progress: crate::recommend::Progress =
            Arc::new(move |done, total| store.health().record_progress(done, total));
        let run = Recommender::new(client, self.policies.clone())
            .with_seasons(self.seasons.clone())
            .with_resolution(self.resolution)
            .with_progress(Some(progress))
            .run(None)
            .await?;
        let mut recs = run.recommendations;
        if !run.failed.is_empty() {
            let failed: std::collections::HashSet<&str> =
                run.failed.iter().map(|(ns, _)| ns.as_str()).collect();
            let kept: Vec<_> = self
                .store
                .snapshot()
                .into_iter()
                .filter(|r| failed.contains(r.target.workload.namespace.as_str()))
                .collect();
            tracing::warn!(
                namespaces = failed.len(),
                kept = kept.len(),
                "some namespaces failed; keeping their last good recommendations"
            );
            recs.extend(kept);
        }
        let n = recs.len();
        self.store.replace(recs);
        if let (Some(seasons), Some(path)) = (&self.seasons, &self.season_state) {
            if let Err(e) = seasons.store.save(path) {
                tracing::warn!(error = %Chain(&e), "season state not saved");
            }
        }
        Ok(Some(n))
    }

    /// Tick every `interval` until the task is dropped. See
    /// [`Refresher::supervise`] for the way to run it in a server.
    pub async fn run(self, interval: Duration) {
        loop {
            match self.refresh_once().await {
                Ok(Some(n)) => tracing::info!(recommendations = n, "recommendations refreshed"),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), "refresh failed; keeping previous recommendations")
                }
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// [`Refresher::run`] in a task of its own, restarted whenever it panics
    /// or ends: the failure is logged, counted in the store's
    /// [`RefreshHealth::restarts`], and the restart waits [`MIN_BACKOFF`],
    /// doubling up to [`MAX_BACKOFF`]. Runs until dropped (which stops the
    /// refresher too) or until the runtime shuts down.
    pub async fn supervise(self, interval: Duration) {
        let store = self.store.clone();
        supervise(&store, "the recommendation refresher", move || {
            self.clone().run(interval)
        })
        .await;
    }
}

/// Runs the task `start` makes, restarting it whenever it panics or ends:
/// the failure is logged, counted in the store's
/// [`RefreshHealth::restarts`], and the restart waits [`MIN_BACKOFF`],
/// doubling up to [`MAX_BACKOFF`]. Runs until dropped (which stops the task
/// too) or until the runtime shuts down.
pub(super) async fn supervise<F, T>(store: &RecommendationStore, what: &str, mut start: F)
where
    F: FnMut() -> T,
    T: std::future::Future<Output = ()> + Send + 'static,
{
    /// Stops the task when the supervisor is dropped.
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }

    let mut backoff = MIN_BACKOFF;
    loop {
        let started = Instant::now();
        let mut task = AbortOnDrop(tokio::spawn(start()));
        let why = match (&mut task.0).await {
            Ok(()) => "ended".to_string(),
            Err(e) if e.is_panic() => format!("panicked: {}", panic_message(e.into_panic())),
            // Cancelled: the runtime is shutting down.
            Err(_) => return,
        };
        store.health().record_restart();
        if started.elapsed() >= MAX_BACKOFF {
            backoff = MIN_BACKOFF;
        }
        tracing::error!(
            restarts = store.health().restarts(),
            backoff = %HumanDuration(backoff),
            "{what} {why}; restarting it"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The message of a panic, as far as it is a string.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_string(), |s| (*s).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    use crate::metrics::{
        BoxFuture, ContainersRequest, MetricsClient, MetricsSource, SeriesBatch, SeriesRequest,
        SourceInfo, UsageBatch, UsageRequest,
    };
    use crate::workload::ContainerRef;

    /// A source with no history.
    #[derive(Debug)]
    struct EmptySource;

    impl MetricsSource for EmptySource {
        fn info(&self) -> SourceInfo {
            SourceInfo {
                name: "empty".into(),
                now: 0,
                resolution: Default::default(),
            }
        }
        fn containers<'a>(
            &'a self,
            _: &'a ContainersRequest,
        ) -> BoxFuture<'a, Result<Vec<ContainerRef>, MetricsError>> {
            Box::pin(std::future::ready(Ok(Vec::new())))
        }
        fn usage<'a>(
            &'a self,
            _: &'a UsageRequest,
        ) -> BoxFuture<'a, Result<UsageBatch, MetricsError>> {
            Box::pin(std::future::ready(Ok(UsageBatch::default())))
        }
        fn series<'a>(
            &'a self,
            _: &'a SeriesRequest,
        ) -> BoxFuture<'a, Result<SeriesBatch, MetricsError>> {
            Box::pin(std::future::ready(Ok(SeriesBatch::default())))
        }
        fn pod_signals<'a>(
            &'a self,
            _: &'a crate::metrics::PodSignalsRequest,
        ) -> BoxFuture<'a, Result<crate::metrics::PodSignalsBatch, MetricsError>> {
            Box::pin(std::future::ready(Ok(Default::default())))
        }
    }

    /// What a [`Scripted`] loader does on one call.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        Load,
        Fail,
        Panic,
    }

    /// A loader that follows a script, repeating its last step.
    #[derive(Debug)]
    struct Scripted(Mutex<VecDeque<Step>>);

    impl SourceLoader for Scripted {
        fn load(&self) -> BoxFuture<'_, Result<Option<MetricsClient>, MetricsError>> {
            let step = {
                let mut script = self.0.lock().unwrap_or_else(|p| p.into_inner());
                match script.len() {
                    0 => Step::Fail,
                    1 => script[0],
                    _ => script.pop_front().unwrap_or(Step::Fail),
                }
            };
            Box::pin(async move {
                match step {
                    Step::Load => Ok(Some(MetricsClient::from(
                        Arc::new(EmptySource) as Arc<dyn MetricsSource>
                    ))),
                    Step::Fail => Err(MetricsError::transient("scripted", "connection refused")),
                    Step::Panic => panic!("the loader broke"),
                }
            })
        }
    }

    fn mk_refresher(script: &[Step]) -> (Refresher, Arc<RecommendationStore>) {
        let store = Arc::new(RecommendationStore::new());
        let loader = Arc::new(Scripted(Mutex::new(script.iter().copied().collect())));
        let refresher = Refresher::new(loader, Arc::new(PolicySet::default()), store.clone());
        (refresher, store)
    }

    const TICK: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn readiness_turns_stale_when_the_source_keeps_failing() {
        // Good loads at 0 s and 10 s, failures from 20 s on.
        let (refresher, store) = mk_refresher(&[Step::Load, Step::Load, Step::Fail]);
        let limit = Some(3 * TICK);
        assert_eq!(store.readiness(limit), Err(NotReady::NotLoaded));
        let _running = tokio::spawn(refresher.supervise(TICK));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(store.readiness(limit), Ok(()));
        // 35 s: the last success (10 s) is 25 s old.
        tokio::time::sleep(Duration::from_secs(34)).await;
        assert_eq!(store.readiness(limit), Ok(()));
        // 45 s: 35 s old, over the 30 s bound; the last good ones stay.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let err = store.readiness(limit).err();
        assert_eq!(
            err,
            Some(NotReady::Stale {
                age: HumanDuration::from_secs(35),
                limit: HumanDuration(3 * TICK),
            })
        );
        let reason = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(!reason.contains('\n'), "{reason}");
        assert!(store.is_loaded());
        assert_eq!(store.readiness(None), Ok(()), "no bound, no staleness");
        assert_eq!(store.health().restarts(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_recovers_with_the_source() {
        let (refresher, store) = mk_refresher(&[
            Step::Load,
            Step::Fail,
            Step::Fail,
            Step::Fail,
            Step::Fail,
            Step::Load,
        ]);
        let _running = tokio::spawn(refresher.supervise(TICK));
        // Loaded at 0 s, failing from 10 s to 40 s, loaded again at 50 s.
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert!(store.readiness(Some(2 * TICK)).is_err());
        tokio::time::sleep(Duration::from_secs(16)).await;
        assert_eq!(store.readiness(Some(2 * TICK)), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refresher_that_panics_is_restarted_with_backoff() {
        let (refresher, store) = mk_refresher(&[Step::Panic, Step::Panic, Step::Load]);
        let _running = tokio::spawn(refresher.supervise(TICK));
        // Panics at 0 s, restarted at 1 s, panics, restarted at 3 s, loads.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert_eq!(store.health().restarts(), 2);
        assert_eq!(store.readiness(None), Err(NotReady::NotLoaded));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(store.readiness(Some(3 * TICK)), Ok(()));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(store.health().restarts(), 2);
        assert_eq!(store.readiness(Some(3 * TICK)), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_supervisor_stops_the_refresher() {
        let (refresher, store) = mk_refresher(&[Step::Load]);
        let running = tokio::spawn(refresher.supervise(TICK));
        tokio::time::sleep(Duration::from_secs(1)).await;
        running.abort();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let age = store.health().age().unwrap_or_default();
        tokio::time::sleep(10 * TICK).await;
        assert_eq!(store.health().age().unwrap_or_default(), age + 10 * TICK);
    }

    #[test]
    fn panic_messages_are_read() {
        assert_eq!(panic_message(Box::new("x")), "x");
        assert_eq!(panic_message(Box::new(String::from("y"))), "y");
        assert_eq!(panic_message(Box::new(3)), "(no message)");
    }
}
