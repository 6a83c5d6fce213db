//! The [`MetricsSource`] trait: where usage history comes from.
//!
//! Backends (OpenMetrics file, Prometheus, Datadog, and a Redis cache in front
//! of any of them) live in `nemutator-metrics`. The recommender asks a source
//! for a usage quantile over a window, which a backend should push down to its
//! query language (`quantile_over_time` in PromQL) rather than download raw
//! samples.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::workload::ContainerRef;

/// A boxed, sendable future (keeps [`MetricsSource`] object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// CPU or memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    /// CPU, in cores (the rate of `container_cpu_usage_seconds_total`).
    Cpu,
    /// Memory, in bytes (`container_memory_working_set_bytes`).
    Memory,
}

impl Resource {
    /// Both resources, CPU first.
    pub const ALL: [Resource; 2] = [Resource::Cpu, Resource::Memory];

    /// `cpu` or `memory`, as in a container's `resources` maps.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
        }
    }

    /// `q` in the notation a pod spec uses for this resource: `250m` or `2`
    /// for CPU, `640Mi` for memory.
    pub fn quantity_string(self, q: crate::quantity::Quantity) -> String {
        match self {
            Resource::Cpu => q.to_cpu_string(),
            Resource::Memory => q.to_memory_string(),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request for one quantile of one container's usage.
#[derive(Clone, Debug, PartialEq)]
pub struct UsageQuery {
    /// Which container of which workload (all its pods are pooled).
    pub target: ContainerRef,
    /// CPU or memory.
    pub resource: Resource,
    /// The quantile, in `[0, 1]` (`1` is the maximum).
    pub quantile: f64,
    /// How far back from `end` to look.
    pub window: Duration,
    /// End of the window, unix seconds; `None` for the source's "now" (see
    /// [`MetricsSource::now`]).
    pub end: Option<i64>,
    /// Only samples inside these `[start, end)` ranges count (empty: the
    /// whole window). Used to compute a season's quantile from that season's
    /// history only.
    pub ranges: Vec<(i64, i64)>,
}

/// The answer to a [`UsageQuery`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageStat {
    /// The quantile's value: cores for CPU, bytes for memory.
    pub value: f64,
    /// How many samples it was computed from.
    pub samples: u64,
    /// Oldest sample in the window, unix seconds.
    pub first: i64,
    /// Newest sample in the window, unix seconds.
    pub last: i64,
}

impl UsageStat {
    /// How much history the quantile covers, in seconds.
    pub fn span_secs(&self) -> i64 {
        self.last.saturating_sub(self.first)
    }
}

/// A request for one container's usage as a time series.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesQuery {
    /// Which container of which workload.
    pub target: ContainerRef,
    /// CPU or memory.
    pub resource: Resource,
    /// How far back from `end` to look.
    pub window: Duration,
    /// End of the window, unix seconds (`None`: the source's "now").
    pub end: Option<i64>,
    /// Resolution in seconds; samples of all pods of the workload at one step
    /// are summed.
    pub step: Duration,
}

/// Why a metrics source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The backend could not be reached or answered with an error.
    #[error("metrics backend {backend}: {message}")]
    Backend {
        /// Backend name (`file`, `prometheus`, ...).
        backend: &'static str,
        /// One-line reason.
        message: String,
    },
    /// The backend's data could not be read.
    #[error("metrics data: {0}")]
    Data(String),
}

/// A source of usage history.
///
/// Implementations must be cheap to share (`Arc<dyn MetricsSource>`), and
/// answer about *workload containers*: samples of every pod of the workload,
/// across all its ReplicaSet generations, pooled.
pub trait MetricsSource: Send + Sync + fmt::Debug {
    /// A short name for logs and metrics (`file`, `prometheus`, ...).
    fn name(&self) -> &'static str;

    /// The workload containers the source has history for, optionally in one
    /// namespace only.
    fn containers<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<ContainerRef>, MetricsError>>;

    /// One quantile of usage over a window; `Ok(None)` when there is no sample
    /// in the window.
    fn usage_quantile<'a>(
        &'a self,
        query: &'a UsageQuery,
    ) -> BoxFuture<'a, Result<Option<UsageStat>, MetricsError>>;

    /// Usage as a regular series `(unix seconds, value)`, for season learning.
    fn usage_series<'a>(
        &'a self,
        query: &'a SeriesQuery,
    ) -> BoxFuture<'a, Result<Vec<(i64, f64)>, MetricsError>>;

    /// The time windows end at when a query gives no `end`: the wall clock for
    /// live backends, the newest sample for a recorded file.
    fn now(&self) -> i64;
}

/// Produces the current [`MetricsSource`]: a file source re-reads its file when
/// it changed; a live backend hands back the same client every time.
pub trait SourceLoader: Send + Sync + fmt::Debug {
    /// `Ok(Some(source))` when recommendations should be recomputed from
    /// `source`; `Ok(None)` when nothing changed since the last call.
    fn load(
        &self,
    ) -> BoxFuture<'_, Result<Option<std::sync::Arc<dyn MetricsSource>>, MetricsError>>;
}

/// The quantile `q` (in `[0, 1]`) of `values`, linearly interpolated between
/// the closest ranks (as PromQL's `quantile_over_time`). `None` when empty.
/// Reorders `values`.
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() || q.is_nan() {
        return None;
    }
    let q = q.clamp(0.0, 1.0);
    let rank = q * (values.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let cmp = |a: &f64, b: &f64| a.total_cmp(b);
    let (_, lo_v, upper) = values.select_nth_unstable_by(lo, cmp);
    let lo_v = *lo_v;
    if hi == lo {
        return Some(lo_v);
    }
    // The next rank is the minimum of the upper part.
    let hi_v = upper.iter().copied().min_by(cmp).unwrap_or(lo_v);
    Some(lo_v + (hi_v - lo_v) * (rank - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quantile_interpolates() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0, 5.0];
        assert_eq!(quantile(&mut v, 0.5), Some(3.0));
        assert_eq!(quantile(&mut v, 1.0), Some(5.0));
        assert_eq!(quantile(&mut v, 0.0), Some(1.0));
        assert_eq!(quantile(&mut v, 0.95), Some(4.8));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    proptest! {
        #[test]
        fn quantile_is_monotonic_and_bounded(
            mut v in proptest::collection::vec(0.0f64..1e6, 1..200),
            a in 0.0f64..1.0,
            b in 0.0f64..1.0,
        ) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let x = quantile(&mut v, lo).unwrap_or(f64::NAN);
            let y = quantile(&mut v, hi).unwrap_or(f64::NAN);
            prop_assert!(x <= y + 1e-9);
            prop_assert!(x >= min && y <= max);
        }
    }
}
