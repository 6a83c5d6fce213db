//! One set of recommendations and season profiles for every webhook replica:
//! the [`SharedStore`] seam (Redis in `nemutator-metrics`) and the
//! [`SharedRefresher`] that runs on each replica.
//!
//! Exactly one replica, the producer, queries the metrics backend: it holds
//! a lock in the shared store that expires unless renewed, and every lock
//! comes with a fencing token larger than any before it. The producer
//! publishes what its [`Refresher`] computed, tagged with its token; the
//! store refuses a write whose token is older than the newest lock's, so a
//! producer that stalled past its lock cannot overwrite its successor.
//! Every replica (the producer too) polls the published version and, when
//! it changed, reads the whole publication into its in-memory
//! [`RecommendationStore`] and [`SeasonStore`]: admission reads those and
//! never waits on the network.
//!
//! When the shared store cannot be reached, each replica keeps serving what
//! it has, counts the failure ([`SharedHealth`]), and logs one warning per
//! outage; a replica that starts while the store is down and so has nothing
//! computes locally (and publishes nothing) until the store is back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::refresh::supervise;
use super::{wall_clock, Recommendation, RecommendationStore, Refresher};
use crate::error::Chain;
use crate::metrics::BoxFuture;
use crate::season::{SeasonSnapshot, SeasonStore};

/// What the producer publishes: every recommendation and season profile.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Publication {
    /// Every recommendation (every season's).
    pub recommendations: Vec<Recommendation>,
    /// Every season profile.
    #[serde(default)]
    pub seasons: SeasonSnapshot,
}

/// The version of what is published, without the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Incremented on every publication.
    pub version: u64,
    /// The fencing token of the producer that wrote it.
    pub token: u64,
    /// When it was computed or last confirmed unchanged (unix seconds).
    pub published_at: i64,
}

/// Why the shared store did not answer as asked.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// The store cannot be reached or failed (a one-line reason).
    #[error("shared store {store}: {reason}")]
    Unavailable {
        /// Which store (no credentials).
        store: String,
        /// Why.
        reason: String,
    },
    /// A write carried a fencing token older than the newest lock's.
    #[error("write refused: token {token} is fenced off by the newer token {newer}")]
    Fenced {
        /// The writer's token.
        token: u64,
        /// The newest token handed out.
        newer: u64,
    },
    /// The published data cannot be read by this version.
    #[error("shared store {store}: the published data is not readable: {reason}")]
    Format {
        /// Which store.
        store: String,
        /// Why.
        reason: String,
    },
}

/// Where replicas share recommendations: a lock with fencing tokens and one
/// versioned publication.
pub trait SharedStore: Send + Sync + std::fmt::Debug {
    /// Where the store is, for logs (never with credentials).
    fn describe(&self) -> String;

    /// Keep or take the producer's lock: with `held`, renew it if it is
    /// still ours; without, take it if nobody holds it. The token of the
    /// lock this replica holds afterwards (`None`: another replica's).
    fn lead(&self, held: Option<u64>) -> BoxFuture<'_, Result<Option<u64>, SharedError>>;

    /// The version of the publication (`None`: nothing published yet).
    fn head(&self) -> BoxFuture<'_, Result<Option<Head>, SharedError>>;

    /// The whole publication.
    fn read(&self) -> BoxFuture<'_, Result<Option<(Head, Publication)>, SharedError>>;

    /// Publish as the holder of `token`: the data when given, else only
    /// `published_at` (nothing changed). [`SharedError::Fenced`] when a newer
    /// token exists.
    fn publish<'a>(
        &'a self,
        token: u64,
        publication: Option<&'a Publication>,
        published_at: i64,
    ) -> BoxFuture<'a, Result<Head, SharedError>>;
}

/// What `/metrics` shows of the shared store (`nemutator_store_*`).
#[derive(Debug, Default)]
pub struct SharedHealth {
    up: AtomicBool,
    producer: AtomicBool,
    version: AtomicU64,
    token: AtomicU64,
    errors: AtomicU64,
    loads: AtomicU64,
    publishes: AtomicU64,
    fenced: AtomicU64,
}

impl SharedHealth {
    /// Is this replica the producer?
    pub fn is_producer(&self) -> bool {
        self.producer.load(Ordering::Relaxed)
    }

    /// Did the last exchange with the store succeed?
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The version of the publication in the in-memory stores.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// The fencing token of the lock this replica last held (0: none yet).
    pub fn token(&self) -> u64 {
        self.token.load(Ordering::Relaxed)
    }

    /// Failed exchanges with the store.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Writes refused because a newer producer exists.
    pub fn fenced(&self) -> u64 {
        self.fenced.load(Ordering::Relaxed)
    }

    /// Publications written by this replica.
    pub fn publishes(&self) -> u64 {
        self.publishes.load(Ordering::Relaxed)
    }

    /// Append the `nemutator_store_*` metrics in the Prometheus text format.
    pub fn render(&self, s: &mut String) {
        use std::fmt::Write as _;
        let gauges = [
            (
                "up",
                "Whether the last exchange with the shared store succeeded.",
                u64::from(self.is_up()),
            ),
            (
                "producer",
                "Whether this replica holds the producer's lock.",
                u64::from(self.is_producer()),
            ),
            (
                "version",
                "Version of the shared publication in memory.",
                self.version(),
            ),
            (
                "token",
                "Fencing token of the lock this replica last held.",
                self.token.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(s, "# HELP nemutator_store_{name} {help}");
            let _ = writeln!(s, "# TYPE nemutator_store_{name} gauge");
            let _ = writeln!(s, "nemutator_store_{name} {v}");
        }
        let counters = [
            (
                "errors_total",
                "Failed exchanges with the shared store.",
                self.errors(),
            ),
            (
                "loads_total",
                "Publications read into memory.",
                self.loads.load(Ordering::Relaxed),
            ),
            (
                "publishes_total",
                "Publications written by this replica.",
                self.publishes(),
            ),
            (
                "fenced_total",
                "Writes refused because a newer producer exists.",
                self.fenced(),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(s, "# HELP nemutator_store_{name} {help}");
            let _ = writeln!(s, "# TYPE nemutator_store_{name} counter");
            let _ = writeln!(s, "nemutator_store_{name} {v}");
        }
    }
}

/// How a [`SharedRefresher`] paces itself.
#[derive(Clone, Copy, Debug)]
pub struct SharedTiming {
    /// How often the lock is renewed and the published version polled (a
    /// third of the lock's expiry).
    pub tick: Duration,
    /// The producer recomputes when the publication is older than this.
    pub fresh_for: Duration,
}

/// A replica's side of the shared store: takes or keeps the producer's lock,
/// runs the [`Refresher`] when producing and publishes its result, and reads
/// every new publication into the in-memory stores.
#[derive(Debug, Clone)]
pub struct SharedRefresher {
    refresher: Refresher,
    shared: Arc<dyn SharedStore>,
    health: Arc<SharedHealth>,
    timing: SharedTiming,
}

/// What a replica remembers between ticks.
#[derive(Debug, Default)]
struct SyncState {
    /// The token of the lock held.
    token: Option<u64>,
    /// The version in the in-memory stores.
    version: u64,
    /// In an outage of the store (warned once).
    down: bool,
    /// No refresh before this (after a failed one).
    retry_at: Option<Instant>,
}

impl SharedRefresher {
    /// A replica sharing through `shared` what `refresher` computes.
    pub fn new(refresher: Refresher, shared: Arc<dyn SharedStore>, timing: SharedTiming) -> Self {
        SharedRefresher {
            refresher,
            shared,
            health: Arc::default(),
            timing,
        }
    }

    /// What `/metrics` shows of it.
    pub fn health(&self) -> Arc<SharedHealth> {
        self.health.clone()
    }

    fn recs(&self) -> &RecommendationStore {
        self.refresher.store()
    }

    fn seasons(&self) -> Option<&Arc<SeasonStore>> {
        self.refresher.season_store()
    }

    /// Tick until dropped.
    pub async fn run(self) {
        let mut st = SyncState::default();
        loop {
            self.tick(&mut st).await;
            tokio::time::sleep(self.timing.tick).await;
        }
    }

    /// [`SharedRefresher::run`], restarted if it panics or ends (as
    /// [`Refresher::supervise`]).
    pub async fn supervise(self) {
        let store = self.refresher.store().clone();
        supervise(&store, "the shared-store refresher", move || {
            self.clone().run()
        })
        .await;
    }

    /// One tick, errors handled: the store's are counted and warned about
    /// once per outage.
    async fn tick(&self, st: &mut SyncState) {
        match self.sync(st).await {
            Ok(()) => {
                self.health.up.store(true, Ordering::Relaxed);
                if std::mem::take(&mut st.down) {
                    tracing::info!(store = %self.shared.describe(), "shared store reachable again");
                }
            }
            Err(e) => {
                self.health.errors.fetch_add(1, Ordering::Relaxed);
                self.health.up.store(false, Ordering::Relaxed);
                if !std::mem::replace(&mut st.down, true) {
                    tracing::warn!(error = %Chain(&e), "shared store unreachable; serving the last good recommendations");
                } else {
                    tracing::debug!(error = %Chain(&e), "shared store still unreachable");
                }
                if !self.recs().is_loaded() && self.may_refresh(st) {
                    // Nothing to serve at all: compute locally, publish nothing.
                    let outcome = self.refresher.refresh_once().await;
                    self.after_refresh(st, &outcome);
                }
            }
        }
    }

    fn may_refresh(&self, st: &SyncState) -> bool {
        st.retry_at.is_none_or(|t| Instant::now() >= t)
    }

    fn after_refresh<T>(
        &self,
        st: &mut SyncState,
        outcome: &Result<T, crate::metrics::MetricsError>,
    ) {
        st.retry_at = match outcome {
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %Chain(e), "refresh failed; keeping previous recommendations");
                Some(Instant::now() + self.timing.fresh_for)
            }
        };
    }

    fn set_token(&self, st: &mut SyncState, token: Option<u64>) {
        if token != st.token {
            match token {
                Some(t) => tracing::info!(token = t, "this replica is now the producer"),
                None => tracing::info!("this replica is no longer the producer"),
            }
        }
        st.token = token;
        self.health
            .producer
            .store(token.is_some(), Ordering::Relaxed);
        if let Some(t) = token {
            self.health.token.store(t, Ordering::Relaxed);
        }
    }

    async fn sync(&self, st: &mut SyncState) -> Result<(), SharedError> {
        let token = self.shared.lead(st.token).await?;
        self.set_token(st, token);
        let mut head = self.shared.head().await?;
        if let Some(h) = head.filter(|h| h.version != st.version) {
            head = self.load(st).await?.or(Some(h));
        } else if let Some(h) = head {
            self.recs()
                .health()
                .record_success_at(instant_of(h.published_at));
        }
        let Some(token) = st.token else {
            return Ok(());
        };
        let age = head.map(|h| wall_clock().saturating_sub(h.published_at));
        let fresh = age.is_some_and(|a| a >= 0 && (a as u64) < self.timing.fresh_for.as_secs());
        if fresh || !self.may_refresh(st) {
            return Ok(());
        }
        self.produce(st, token, head.is_some()).await
    }

    /// Read the publication into the in-memory stores.
    async fn load(&self, st: &mut SyncState) -> Result<Option<Head>, SharedError> {
        let Some((head, publication)) = self.shared.read().await? else {
            return Ok(None);
        };
        let Publication {
            recommendations,
            seasons,
        } = publication;
        let n = recommendations.len();
        self.recs().replace(recommendations);
        self.recs()
            .health()
            .record_success_at(instant_of(head.published_at));
        if let Some(store) = self.seasons() {
            store.restore(seasons);
        }
        st.version = head.version;
        self.health.version.store(head.version, Ordering::Relaxed);
        self.health.loads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            version = head.version,
            token = head.token,
            recommendations = n,
            "recommendations read from the shared store"
        );
        Ok(Some(head))
    }

    /// Refresh from the backend (renewing the lock meanwhile) and publish.
    async fn produce(
        &self,
        st: &mut SyncState,
        token: u64,
        published: bool,
    ) -> Result<(), SharedError> {
        let refresh = self.refresher.refresh_once();
        tokio::pin!(refresh);
        let mut renew =
            tokio::time::interval_at(Instant::now() + self.timing.tick, self.timing.tick);
        let outcome = loop {
            tokio::select! {
                r = &mut refresh => break r,
                _ = renew.tick() => {
                    if self.shared.lead(Some(token)).await?.is_none() {
                        self.set_token(st, None);
                        return Ok(());
                    }
                }
            }
        };
        self.after_refresh(st, &outcome);
        let changed = match outcome {
            Ok(changed) => changed.is_some() || !published,
            Err(_) => return Ok(()),
        };
        if changed && !self.recs().is_loaded() {
            return Ok(());
        }
        let publication = changed.then(|| Publication {
            recommendations: self.recs().snapshot(),
            seasons: self.seasons().map(|s| s.state()).unwrap_or_default(),
        });
        match self
            .shared
            .publish(token, publication.as_ref(), wall_clock())
            .await
        {
            Ok(head) => {
                if changed {
                    self.health.publishes.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        version = head.version,
                        token,
                        recommendations =
                            publication.as_ref().map_or(0, |p| p.recommendations.len()),
                        "recommendations published"
                    );
                }
                st.version = head.version;
                self.health.version.store(head.version, Ordering::Relaxed);
                Ok(())
            }
            Err(e @ SharedError::Fenced { .. }) => {
                self.health.fenced.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "not published: another replica produces now");
                self.set_token(st, None);
                // Read the newer producer's publication on the next tick.
                st.version = 0;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// The instant of a wall-clock time (unix seconds) in the past.
fn instant_of(at: i64) -> Instant {
    let age = wall_clock().saturating_sub(at).max(0) as u64;
    Instant::now()
        .checked_sub(Duration::from_secs(age))
        .unwrap_or_else(Instant::now)
}
