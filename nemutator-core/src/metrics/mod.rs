//! The [`MetricsSource`] trait: where usage history comes from.
//!
//! Backends (OpenMetrics file, Prometheus, Datadog, and a Redis cache in front
//! of any of them) live in `nemutator-metrics`. Questions are batched: one
//! [`UsageRequest`] covers one namespace, one resource and one window, and is
//! answered for every container in it, so a refresh costs a few requests per
//! namespace rather than a few per container. The statistic is defined once,
//! in [`stat`], so that a backend can compute it server-side
//! (`quantile_over_time` in PromQL) and the file source computes the same.
//!
//! The recommender talks to a source through a tower `Service`
//! ([`MetricsClient`], [`MetricsRequest`] in, [`MetricsResponse`] out), so
//! timeout, retry with backoff, a concurrency limit and caches are layers
//! ([`MetricsLayers`]).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::workload::{ContainerRef, WorkloadKey};

pub mod service;
pub mod stat;

pub use service::{MetricsClient, MetricsLayers, MetricsRequest, MetricsResponse, SourceService};
pub use stat::{PeriodicMask, Resolution};

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

/// Which containers have history: every workload container with a sample in
/// `(end - window, end]`, in one namespace or all.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContainersRequest {
    /// One namespace, or all (`None`).
    pub namespace: Option<String>,
    /// How far back from `end` to look.
    #[serde(with = "secs")]
    pub window: Duration,
    /// End of the window, unix seconds.
    pub end: i64,
}

/// One statistic asked of every container in a [`UsageRequest`]: the
/// `quantile` of the per-step usage (see [`stat`]), counting only the steps
/// inside `mask` when one is given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatSpec {
    /// The quantile, in `[0, 1]` (`1` is the maximum).
    pub quantile: f64,
    /// Only the steps inside this periodic mask count (a season's hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<PeriodicMask>,
}

/// A batched usage question: one namespace, one resource, one window, and it
/// answers every container of every workload in it. A backend should answer
/// it with one query (one PromQL request per statistic set), never one per
/// container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageRequest {
    /// The namespace.
    pub namespace: String,
    /// CPU or memory.
    pub resource: Resource,
    /// How far back from `end` to look.
    #[serde(with = "secs")]
    pub window: Duration,
    /// End of the window, unix seconds.
    pub end: i64,
    /// Step and rate window of the statistic.
    pub resolution: Resolution,
    /// The statistics wanted, answered in this order.
    pub stats: Vec<StatSpec>,
    /// Also tell which containers were OOM-killed in the window (memory;
    /// where the backend has kube-state-metrics' series).
    #[serde(default)]
    pub oom: bool,
    /// Also tell each container's current request of the resource (where
    /// the backend has it: kube-state-metrics'
    /// `kube_pod_container_resource_requests`, Datadog's
    /// `kubernetes.{cpu,memory}.requests`): the largest among the workload's
    /// pods seen in the last [`CURRENT_LOOKBACK`] before `end`.
    #[serde(default)]
    pub requests: bool,
}

/// How far before a window's end a pod counts as current, for
/// [`UsageRequest::requests`].
pub const CURRENT_LOOKBACK: i64 = 3600;

/// One statistic of one container: the answer to one [`StatSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageStat {
    /// The quantile's value: cores for CPU, bytes for memory.
    pub value: f64,
    /// Hourly checkpoints at which the container had a value (inside the
    /// mask): the hours of history behind the quantile.
    pub samples: u64,
    /// The history behind it: `samples` hours, in seconds.
    pub history_secs: i64,
}

/// What a [`UsageRequest`] learned of one container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerUsage {
    /// One entry per [`UsageRequest::stats`], in order; `None` where no step
    /// had a value (inside the mask).
    pub stats: Vec<Option<UsageStat>>,
    /// Whether a pod of the workload had this container OOM-killed in the
    /// window (only asked with [`UsageRequest::oom`]).
    #[serde(default)]
    pub oom_killed: bool,
    /// The current request, cores or bytes (only asked with
    /// [`UsageRequest::requests`]; `None` where unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<f64>,
}

/// The answer to a [`UsageRequest`]: every container of the namespace with a
/// value for at least one statistic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageBatch {
    /// Per workload container.
    pub containers: BTreeMap<ContainerRef, ContainerUsage>,
}

/// A batched series question for season learning: the CPU (or memory) of
/// every workload of a namespace, summed over its containers and pods, one
/// value per step (steps as in [`stat::steps`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SeriesRequest {
    /// The namespace.
    pub namespace: String,
    /// CPU or memory.
    pub resource: Resource,
    /// How far back from `end` to look.
    #[serde(with = "secs")]
    pub window: Duration,
    /// End of the window, unix seconds.
    pub end: i64,
    /// Spacing of the series; the CPU rate is taken over
    /// `resolution.rate_window` (at least one step) ending at each step.
    pub resolution: Resolution,
}

/// The answer to a [`SeriesRequest`]: `(unix seconds, value)` per workload,
/// sorted by time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesBatch {
    /// Per workload.
    pub workloads: BTreeMap<WorkloadKey, Vec<(i64, f64)>>,
}

/// A live question for noisy-neighbour scoring: what every pod container of
/// a namespace (or of the cluster) did over the last `window` before `end`.
/// Unlike the other questions it is about *pods*, not workloads: a noisy
/// neighbour is one pod on one node. A backend answers it with one query per
/// signal (never one per pod).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PodSignalsRequest {
    /// One namespace, or all (`None`).
    pub namespace: Option<String>,
    /// How far back from `end` the signals look (a few minutes).
    #[serde(with = "secs")]
    pub window: Duration,
    /// End of the window, unix seconds.
    pub end: i64,
}

/// One container of one pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PodContainerRef {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
}

/// What a container did over a [`PodSignalsRequest`]'s window; `None` where
/// the backend has no such series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PodSignals {
    /// Mean CPU usage over the window, cores (the rate of
    /// `container_cpu_usage_seconds_total` over the window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Largest memory working set in the window, bytes
    /// (`container_memory_working_set_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<f64>,
    /// Fraction of CFS periods in the window in which the container was
    /// throttled, in `[0, 1]` (increase of
    /// `container_cpu_cfs_throttled_periods_total` over that of
    /// `container_cpu_cfs_periods_total`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled: Option<f64>,
}

/// The answer to a [`PodSignalsRequest`]: every pod container with at least
/// one signal.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PodSignalsBatch {
    /// Per pod container.
    #[serde(with = "pod_signals_entries")]
    pub containers: BTreeMap<PodContainerRef, PodSignals>,
}

/// JSON has no struct keys: the batch's map travels as a list of entries.
mod pod_signals_entries {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{PodContainerRef, PodSignals};

    #[derive(Serialize, Deserialize)]
    struct Entry {
        #[serde(flatten)]
        container: PodContainerRef,
        #[serde(flatten)]
        signals: PodSignals,
    }

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<PodContainerRef, PodSignals>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter().map(|(c, v)| Entry {
            container: c.clone(),
            signals: *v,
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<PodContainerRef, PodSignals>, D::Error> {
        let entries = Vec::<Entry>::deserialize(d)?;
        Ok(entries
            .into_iter()
            .map(|e| (e.container, e.signals))
            .collect())
    }
}

/// What a source says of itself, without a query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// A short name for logs and metrics (`file`, `prometheus`, ...).
    pub name: String,
    /// Where windows end: the wall clock for live backends, the newest
    /// sample for a recorded file.
    pub now: i64,
    /// The resolution that suits the data ([`Resolution::DEFAULT`], or a
    /// coarser file's sample interval).
    pub resolution: Resolution,
}

/// Why a metrics source could not answer. Every message is one line and
/// never holds a credential.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetricsError {
    /// The backend could not be reached or answered with an error.
    #[error("metrics backend {backend}: {message}")]
    Backend {
        /// Backend name (`file`, `prometheus`, ...).
        backend: &'static str,
        /// One-line reason.
        message: String,
        /// Worth retrying (connection errors, 5xx, 429), or not (a bad
        /// query, a refused credential).
        transient: bool,
    },
    /// The backend took longer than the configured timeout.
    #[error("metrics backend: no answer within {0:?}")]
    Timeout(Duration),
    /// The backend's data could not be read.
    #[error("metrics data: {0}")]
    Data(String),
}

impl MetricsError {
    /// A backend error worth retrying.
    pub fn transient(backend: &'static str, message: impl Into<String>) -> Self {
        MetricsError::Backend {
            backend,
            message: message.into(),
            transient: true,
        }
    }

    /// A backend error that retrying will not fix.
    pub fn permanent(backend: &'static str, message: impl Into<String>) -> Self {
        MetricsError::Backend {
            backend,
            message: message.into(),
            transient: false,
        }
    }

    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            MetricsError::Backend { transient, .. } => *transient,
            MetricsError::Timeout(_) => true,
            MetricsError::Data(_) => false,
        }
    }
}

/// A source of usage history, answering batched questions about *workload
/// containers*: every pod of a workload, across all its ReplicaSet
/// generations, pooled as the statistic of [`stat`] says.
///
/// Implementations must be cheap to share (`Arc<dyn MetricsSource>`). The
/// recommender does not call them directly but through a tower
/// [`Service`](tower::Service) ([`service::SourceService`], usually wrapped
/// in layers by a [`MetricsClient`]), so that timeout, retry, concurrency
/// limits and caches are layers.
pub trait MetricsSource: Send + Sync + fmt::Debug {
    /// Name, "now" and natural resolution (no I/O).
    fn info(&self) -> SourceInfo;

    /// The workload containers with history in the window.
    fn containers<'a>(
        &'a self,
        request: &'a ContainersRequest,
    ) -> BoxFuture<'a, Result<Vec<ContainerRef>, MetricsError>>;

    /// Statistics of every container of a namespace.
    fn usage<'a>(
        &'a self,
        request: &'a UsageRequest,
    ) -> BoxFuture<'a, Result<UsageBatch, MetricsError>>;

    /// Per-workload usage series of a namespace, for season learning.
    fn series<'a>(
        &'a self,
        request: &'a SeriesRequest,
    ) -> BoxFuture<'a, Result<SeriesBatch, MetricsError>>;

    /// Live per-pod signals for noisy-neighbour scoring. Required, so that
    /// a wrapper source cannot forget to pass the question on; a backend
    /// without such data answers [`MetricsError::Data`] saying so, and the
    /// scorer logs it once and scores nothing.
    fn pod_signals<'a>(
        &'a self,
        request: &'a PodSignalsRequest,
    ) -> BoxFuture<'a, Result<PodSignalsBatch, MetricsError>>;
}

/// Produces the current [`MetricsClient`]: a file source re-reads its file
/// when it changed; a live backend hands back the same client (with its
/// layers) every time.
pub trait SourceLoader: Send + Sync + fmt::Debug {
    /// `Ok(Some(client))` when recommendations should be recomputed from
    /// `client`; `Ok(None)` when nothing changed since the last call.
    fn load(&self) -> BoxFuture<'_, Result<Option<MetricsClient>, MetricsError>>;
}

/// `Duration` as whole seconds in serialised requests (stable cache keys).
mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
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
