//! The OpenMetrics file source: usage history recorded in a file, in the
//! format `promtool tsdb create-blocks-from openmetrics` accepts, with the
//! cAdvisor metric names. The same file backfilled into Prometheus gives the
//! same recommendations: the source computes the statistic of
//! [`nemutator_core::metrics::stat`] from the raw samples exactly as the
//! Prometheus backend's PromQL does.
//!
//! * `container_cpu_usage_seconds_total` (counter, seconds).
//! * `container_memory_working_set_bytes` (gauge, bytes).
//! * labels `namespace`, `pod`, `container`; series with an empty container or
//!   `POD` (the pause container, cAdvisor's pod totals) are ignored.
//! * optionally `kube_pod_owner{namespace,pod,owner_kind,owner_name}` (as
//!   kube-state-metrics exports it) to tell a pod's workload exactly instead of
//!   from its name.
//! * optionally `kube_pod_container_resource_requests{namespace,pod,container,
//!   resource="cpu"|"memory"}` (kube-state-metrics, cores and bytes): the
//!   current request of a container, the largest among its workload's pods
//!   with a sample in the hour before the window's end.
//! * optionally `kube_pod_container_status_last_terminated_reason{namespace,
//!   pod,container,reason="OOMKilled"}` (kube-state-metrics): a sample of 1 in
//!   a window marks the container OOM-killed there.
//! * optionally `container_cpu_cfs_periods_total` and
//!   `container_cpu_cfs_throttled_periods_total` (cAdvisor's CFS counters, for
//!   containers with a CPU limit): the throttled fraction of
//!   [`MetricsSource::pod_signals`]; without them it is `None`.
//!
//! Live pod signals ([`MetricsSource::pod_signals`]) are computed per pod
//! container from the samples in `(end - window, end]` as PromQL computes
//! them: `rate()` of the CPU counter ([`stat::prometheus_rate`]),
//! `max_over_time()` of the working set, and the ratio of the `increase()`s
//! of the two CFS counters (both extrapolated alike, clamped to `[0, 1]`;
//! `None` when no period elapsed).
//!
//! The file must end with `# EOF`, as OpenMetrics requires: a file without it
//! (empty, or truncated while being written) is an error, so the last good
//! data stays in use. A window ends at the newest sample in the file, not at
//! the wall clock, so a recording keeps giving the same answers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nemutator_core::error::Chain;
use nemutator_core::metrics::{
    stat, BoxFuture, ContainerUsage, ContainersRequest, MetricsClient, MetricsError, MetricsSource,
    PodContainerRef, PodSignals, PodSignalsBatch, PodSignalsRequest, Resolution, Resource,
    SeriesBatch, SeriesRequest, SourceInfo, SourceLoader, UsageBatch, UsageRequest,
    CURRENT_LOOKBACK,
};
use nemutator_core::workload::{ContainerRef, WorkloadKey};

use crate::openmetrics::{self, ParseError};

/// cAdvisor's CPU counter.
pub const CPU: &str = "container_cpu_usage_seconds_total";
/// cAdvisor's working set gauge.
pub const MEMORY: &str = "container_memory_working_set_bytes";
/// kube-state-metrics' pod owners.
pub const OWNER: &str = "kube_pod_owner";
/// kube-state-metrics' requests of a container.
pub const REQUESTS: &str = "kube_pod_container_resource_requests";
/// kube-state-metrics' last termination reason of a container.
pub const TERMINATED: &str = "kube_pod_container_status_last_terminated_reason";
/// cAdvisor's count of elapsed CFS enforcement periods.
pub const CFS_PERIODS: &str = "container_cpu_cfs_periods_total";
/// cAdvisor's count of CFS periods in which the container was throttled.
pub const CFS_THROTTLED: &str = "container_cpu_cfs_throttled_periods_total";

/// Why a file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    /// The file could not be read.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid OpenMetrics.
    #[error("{path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The first bad line.
        #[source]
        source: ParseError,
    },
}

/// Raw samples of one pod's container, `(milliseconds, value)` sorted by time.
#[derive(Debug, Default, Clone)]
struct PodHistory {
    /// The pod's name.
    pod: String,
    /// The CPU counter.
    cpu: Vec<(i64, f64)>,
    /// The working set.
    memory: Vec<(i64, f64)>,
    /// Times of OOM-kill samples (value 1).
    oom: Vec<i64>,
    /// The CPU request (cores).
    cpu_request: Vec<(i64, f64)>,
    /// The memory request (bytes).
    memory_request: Vec<(i64, f64)>,
    /// The CFS periods counter.
    cfs_periods: Vec<(i64, f64)>,
    /// The CFS throttled periods counter.
    cfs_throttled: Vec<(i64, f64)>,
}

impl PodHistory {
    fn series(&self, resource: Resource) -> &[(i64, f64)] {
        match resource {
            Resource::Cpu => &self.cpu,
            Resource::Memory => &self.memory,
        }
    }

    /// The newest request sample in `(start, end]` (milliseconds).
    fn request(&self, resource: Resource, start: i64, end: i64) -> Option<f64> {
        let series = match resource {
            Resource::Cpu => &self.cpu_request,
            Resource::Memory => &self.memory_request,
        };
        series
            .iter()
            .rev()
            .find(|p| p.0 > start && p.0 <= end)
            .map(|p| p.1)
    }

    /// Whether the pod has a sample in `(start, end]` (milliseconds).
    fn has_sample(&self, start: i64, end: i64) -> bool {
        [&self.cpu, &self.memory]
            .iter()
            .any(|s| s.iter().any(|p| p.0 > start && p.0 <= end))
    }

    /// The live signals over `(end - range, end]` (milliseconds).
    fn signals(&self, end: i64, range: i64) -> PodSignals {
        signals_of(
            [
                &self.cpu,
                &self.memory,
                &self.cfs_periods,
                &self.cfs_throttled,
            ],
            end,
            range,
        )
    }
}

/// The live signals of one pod container over `(end - range, end]`
/// (milliseconds) from its samples `[cpu counter, working set, CFS periods
/// counter, CFS throttled periods counter]`, each `(milliseconds, value)`
/// sorted by time, as PromQL computes them (see the module docs).
pub(crate) fn signals_of(series: [&[(i64, f64)]; 4], end: i64, range: i64) -> PodSignals {
    let [cpu, memory, periods, throttled] = series;
    let rate =
        |series: &[(i64, f64)]| stat::prometheus_rate(in_range(series, end, range), end, range);
    let throttled = match (rate(throttled), rate(periods)) {
        (Some(t), Some(p)) if p > 0.0 => Some((t / p).clamp(0.0, 1.0)),
        _ => None,
    };
    PodSignals {
        cpu: rate(cpu),
        memory: in_range(memory, end, range)
            .iter()
            .map(|p| p.1)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v)))),
        throttled,
    }
}

/// The samples of `series` (sorted by time, milliseconds) in
/// `(end - range, end]`.
fn in_range(series: &[(i64, f64)], end: i64, range: i64) -> &[(i64, f64)] {
    let lo = series.partition_point(|p| p.0 <= end.saturating_sub(range));
    let hi = series.partition_point(|p| p.0 <= end);
    &series[lo..hi.max(lo)]
}

/// Usage history loaded from an OpenMetrics file.
#[derive(Debug, Clone)]
pub struct FileSource {
    /// Pods of each workload container.
    data: Arc<HashMap<ContainerRef, Vec<PodHistory>>>,
    newest: i64,
    samples: usize,
    interval: Duration,
}

/// `(namespace, pod, container)`.
pub type PodKey = (String, String, String);

impl FileSource {
    /// Load a file.
    pub fn load(path: &Path) -> Result<Self, FileSourceError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileSourceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_text(&text).map_err(|source| FileSourceError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Load from text, which must end with `# EOF`.
    pub fn from_text(text: &str) -> Result<Self, ParseError> {
        let mut raw: HashMap<PodKey, PodHistory> = HashMap::new();
        let mut owners: HashMap<(String, String), WorkloadKey> = HashMap::new();
        let mut samples = 0usize;
        let mut newest = i64::MIN;
        let eof = openmetrics::parse(text, |s| {
            if s.name == OWNER {
                if let (Some(ns), Some(pod), Some(kind), Some(name)) = (
                    s.label("namespace"),
                    s.label("pod"),
                    s.label("owner_kind"),
                    s.label("owner_name"),
                ) {
                    owners.insert(
                        (ns.to_string(), pod.to_string()),
                        WorkloadKey::from_owner(ns, kind, name, None),
                    );
                }
                return;
            }
            let is_oom = s.name == TERMINATED && s.label("reason") == Some("OOMKilled");
            let request = match (s.name == REQUESTS, s.label("resource")) {
                (true, Some("cpu")) => Some(Resource::Cpu),
                (true, Some("memory")) => Some(Resource::Memory),
                (true, _) => return,
                _ => None,
            };
            let counted = [CPU, MEMORY, CFS_PERIODS, CFS_THROTTLED].contains(&s.name);
            if !is_oom && request.is_none() && !counted {
                return;
            }
            let (Some(ns), Some(pod), Some(container), Some(ts)) = (
                s.label("namespace"),
                s.label("pod"),
                s.label("container"),
                s.timestamp,
            ) else {
                return;
            };
            if container.is_empty() || container == "POD" || !s.value.is_finite() || s.value < 0.0 {
                return;
            }
            let ms = (ts * 1000.0).round() as i64;
            let series = raw
                .entry((ns.to_string(), pod.to_string(), container.to_string()))
                .or_default();
            if is_oom {
                if s.value >= 1.0 {
                    series.oom.push(ms);
                }
                return;
            }
            match request {
                Some(Resource::Cpu) => return series.cpu_request.push((ms, s.value)),
                Some(Resource::Memory) => return series.memory_request.push((ms, s.value)),
                None => {}
            }
            newest = newest.max(ms.div_euclid(1000));
            samples += 1;
            match s.name {
                CPU => series.cpu.push((ms, s.value)),
                CFS_PERIODS => series.cfs_periods.push((ms, s.value)),
                CFS_THROTTLED => series.cfs_throttled.push((ms, s.value)),
                _ => series.memory.push((ms, s.value)),
            }
        })?;
        if !eof {
            return Err(ParseError {
                line: text.lines().count() + 1,
                message:
                    "no `# EOF`: the file is empty or truncated (OpenMetrics ends with `# EOF`)"
                        .into(),
            });
        }
        Ok(Self::build(raw, &owners, samples, newest))
    }

    /// A source over samples already in memory: per pod container, the CPU
    /// counter and the working set, `(milliseconds, value)`.
    pub fn from_series(
        series: impl IntoIterator<Item = (PodKey, Vec<(i64, f64)>, Vec<(i64, f64)>)>,
    ) -> Self {
        let mut raw: HashMap<PodKey, PodHistory> = HashMap::new();
        let (mut samples, mut newest) = (0, i64::MIN);
        for (key, cpu, memory) in series {
            samples += cpu.len() + memory.len();
            if let Some(t) = cpu.iter().chain(&memory).map(|p| p.0).max() {
                newest = newest.max(t.div_euclid(1000));
            }
            let h = raw.entry(key).or_default();
            h.cpu.extend(cpu);
            h.memory.extend(memory);
        }
        Self::build(raw, &HashMap::new(), samples, newest)
    }

    fn build(
        raw: HashMap<PodKey, PodHistory>,
        owners: &HashMap<(String, String), WorkloadKey>,
        samples: usize,
        newest: i64,
    ) -> Self {
        let mut gaps: Vec<i64> = Vec::new();
        let mut data: HashMap<ContainerRef, Vec<PodHistory>> = HashMap::new();
        for ((ns, pod, container), mut series) in raw {
            let workload = owners
                .get(&(ns.clone(), pod.clone()))
                .cloned()
                .unwrap_or_else(|| WorkloadKey::from_pod_name(&ns, &pod));
            sort_dedup(&mut series.cpu);
            sort_dedup(&mut series.memory);
            sort_dedup(&mut series.cpu_request);
            sort_dedup(&mut series.memory_request);
            sort_dedup(&mut series.cfs_periods);
            sort_dedup(&mut series.cfs_throttled);
            series.oom.sort_unstable();
            series.pod = pod;
            gaps.extend(series.memory.windows(2).map(|w| w[1].0 - w[0].0));
            data.entry(ContainerRef::new(workload, container))
                .or_default()
                .push(series);
        }
        // The sample interval: the median gap between samples of a series.
        let interval = if gaps.is_empty() {
            60
        } else {
            let mid = gaps.len() / 2;
            (*gaps.select_nth_unstable(mid).1 / 1000).max(1)
        };
        FileSource {
            data: Arc::new(data),
            newest: if newest == i64::MIN { 0 } else { newest },
            samples,
            interval: Duration::from_secs(interval.unsigned_abs()),
        }
    }

    /// Number of samples read.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The newest sample, unix seconds (0 when empty).
    pub fn newest(&self) -> i64 {
        self.newest
    }

    /// The median interval between samples of a series.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The workload containers of a namespace and their pods.
    fn in_namespace<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = (&'a ContainerRef, &'a Vec<PodHistory>)> + 'a {
        self.data
            .iter()
            .filter(move |(k, _)| k.workload.namespace == namespace)
    }
}

/// Sort by time and keep the last sample of duplicate timestamps.
fn sort_dedup(v: &mut Vec<(i64, f64)>) {
    v.sort_by_key(|p| p.0);
    v.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            *earlier = *later;
            true
        } else {
            false
        }
    });
}

/// `(end - window, end]` in milliseconds.
fn window_ms(end: i64, window: Duration) -> (i64, i64) {
    let w = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let end = end.saturating_mul(1000);
    (end.saturating_sub(w), end)
}

impl MetricsSource for FileSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            name: "file".into(),
            now: self.newest,
            resolution: Resolution::for_interval(self.interval),
        }
    }

    fn containers<'a>(
        &'a self,
        request: &'a ContainersRequest,
    ) -> BoxFuture<'a, Result<Vec<ContainerRef>, MetricsError>> {
        let (start, end) = window_ms(request.end, request.window);
        let mut out: Vec<ContainerRef> = self
            .data
            .iter()
            .filter(|(k, _)| {
                request
                    .namespace
                    .as_deref()
                    .is_none_or(|ns| k.workload.namespace == ns)
            })
            .filter(|(_, pods)| pods.iter().any(|p| p.has_sample(start, end)))
            .map(|(k, _)| k.clone())
            .collect();
        out.sort();
        Box::pin(std::future::ready(Ok(out)))
    }

    fn usage<'a>(
        &'a self,
        request: &'a UsageRequest,
    ) -> BoxFuture<'a, Result<UsageBatch, MetricsError>> {
        let (start, end) = window_ms(request.end, request.window);
        let mut batch = UsageBatch::default();
        for (target, pods) in self.in_namespace(&request.namespace) {
            let series: Vec<&[(i64, f64)]> =
                pods.iter().map(|p| p.series(request.resource)).collect();
            let steps = stat::workload_steps(
                request.resource,
                &series,
                request.end,
                request.window,
                &request.resolution,
            );
            let checkpoints = stat::workload_checkpoints(
                request.resource,
                &series,
                request.end,
                request.window,
                &request.resolution,
            );
            let stats: Vec<_> = request
                .stats
                .iter()
                .map(|spec| stat::summarize(&steps, &checkpoints, spec))
                .collect();
            let oom_killed = request.oom
                && pods
                    .iter()
                    .any(|p| p.oom.iter().any(|&t| t > start && t <= end));
            let current = end.saturating_sub(CURRENT_LOOKBACK * 1000);
            let request_now = request
                .requests
                .then(|| {
                    pods.iter()
                        .filter_map(|p| p.request(request.resource, current, end))
                        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
                })
                .flatten();
            if stats.iter().any(Option::is_some) || oom_killed {
                batch.containers.insert(
                    target.clone(),
                    ContainerUsage {
                        stats,
                        oom_killed,
                        request: request_now,
                    },
                );
            }
        }
        Box::pin(std::future::ready(Ok(batch)))
    }

    fn series<'a>(
        &'a self,
        request: &'a SeriesRequest,
    ) -> BoxFuture<'a, Result<SeriesBatch, MetricsError>> {
        let mut by_workload: HashMap<&WorkloadKey, Vec<&[(i64, f64)]>> = HashMap::new();
        for (target, pods) in self.in_namespace(&request.namespace) {
            by_workload
                .entry(&target.workload)
                .or_default()
                .extend(pods.iter().map(|p| p.series(request.resource)));
        }
        let mut batch = SeriesBatch::default();
        for (workload, series) in by_workload {
            let sum = stat::workload_sum(
                request.resource,
                &series,
                request.end,
                request.window,
                &request.resolution,
            );
            if !sum.is_empty() {
                batch.workloads.insert(workload.clone(), sum);
            }
        }
        Box::pin(std::future::ready(Ok(batch)))
    }

    fn pod_signals<'a>(
        &'a self,
        request: &'a PodSignalsRequest,
    ) -> BoxFuture<'a, Result<PodSignalsBatch, MetricsError>> {
        let (start, end) = window_ms(request.end, request.window);
        let mut batch = PodSignalsBatch::default();
        for (target, pods) in self.data.iter().filter(|(k, _)| {
            request
                .namespace
                .as_deref()
                .is_none_or(|ns| k.workload.namespace == ns)
        }) {
            for pod in pods {
                let signals = pod.signals(end, end - start);
                let PodSignals {
                    cpu,
                    memory,
                    throttled,
                } = signals;
                if cpu.is_some() || memory.is_some() || throttled.is_some() {
                    batch.containers.insert(
                        PodContainerRef {
                            namespace: target.workload.namespace.clone(),
                            pod: pod.pod.clone(),
                            container: target.container.clone(),
                        },
                        signals,
                    );
                }
            }
        }
        Box::pin(std::future::ready(Ok(batch)))
    }
}

/// A [`SourceLoader`] that re-reads an OpenMetrics file whenever its size or
/// modification time changes. A file that fails to parse is reported once and
/// the previous data stays in use.
#[derive(Debug)]
pub struct FileLoader {
    path: PathBuf,
    last: std::sync::Mutex<Option<(Option<std::time::SystemTime>, u64)>>,
}

impl FileLoader {
    /// Watch `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileLoader {
            path: path.into(),
            last: std::sync::Mutex::new(None),
        }
    }
}

impl SourceLoader for FileLoader {
    fn load(&self) -> BoxFuture<'_, Result<Option<MetricsClient>, MetricsError>> {
        Box::pin(async move {
            let backend_err = |message: String| MetricsError::permanent("file", message);
            let meta = tokio::fs::metadata(&self.path)
                .await
                .map_err(|e| backend_err(format!("{}: {e}", self.path.display())))?;
            let stamp = (meta.modified().ok(), meta.len());
            {
                let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                if *last == Some(stamp) {
                    return Ok(None);
                }
                *last = Some(stamp);
            }
            let path = self.path.clone();
            let loaded = tokio::task::spawn_blocking(move || FileSource::load(&path))
                .await
                .map_err(|e| backend_err(e.to_string()))?
                .map_err(|e| MetricsError::Data(Chain(&e).to_string()))?;
            tracing::info!(path = %self.path.display(), samples = loaded.samples(), "metrics file loaded");
            Ok(Some(MetricsClient::from(
                Arc::new(loaded) as Arc<dyn MetricsSource>
            )))
        })
    }
}

#[cfg(test)]
mod tests;
