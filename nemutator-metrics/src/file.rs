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
    Resolution, Resource, SeriesBatch, SeriesRequest, SourceInfo, SourceLoader, UsageBatch,
    UsageRequest, CURRENT_LOOKBACK,
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
            if !is_oom && request.is_none() && s.name != CPU && s.name != MEMORY {
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
            if s.name == CPU {
                series.cpu.push((ms, s.value));
            } else {
                series.memory.push((ms, s.value));
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
            series.oom.sort_unstable();
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
mod tests {
    use super::*;
    use nemutator_core::metrics::{PeriodicMask, StatSpec};
    use nemutator_core::workload::WorkloadKind;

    const T0: i64 = 1_700_000_000;

    /// `minutes` + 1 one-minute samples per pod (30 s past each minute) of
    /// `cpu_cores` and `mem` (+ the minute) bytes.
    fn mk_file(pods: &[&str], minutes: i64, cpu_cores: f64, mem: f64) -> String {
        let mut s = String::from("# TYPE container_cpu_usage_seconds counter\n");
        for pod in pods {
            for m in 0..=minutes {
                s += &format!(
                    "container_cpu_usage_seconds_total{{namespace=\"ns\",pod=\"{pod}\",container=\"app\"}} {} {}\n",
                    cpu_cores * 60.0 * m as f64,
                    T0 + 30 + m * 60
                );
            }
        }
        s += "# TYPE container_memory_working_set_bytes gauge\n";
        for pod in pods {
            for m in 0..=minutes {
                s += &format!(
                    "container_memory_working_set_bytes{{namespace=\"ns\",pod=\"{pod}\",container=\"app\"}} {} {}\n",
                    mem + m as f64,
                    T0 + 30 + m * 60
                );
            }
        }
        s + "# EOF\n"
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map(|rt| rt.block_on(f))
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    fn web() -> ContainerRef {
        ContainerRef::new(
            WorkloadKey::new("ns", WorkloadKind::Deployment, "web"),
            "app",
        )
    }

    fn mk_request(src: &FileSource, resource: Resource, stats: Vec<StatSpec>) -> UsageRequest {
        UsageRequest {
            namespace: "ns".into(),
            resource,
            window: Duration::from_secs(86_400),
            end: src.info().now,
            resolution: src.info().resolution,
            stats,
            oom: true,
            requests: false,
        }
    }

    fn q(quantile: f64) -> StatSpec {
        StatSpec {
            quantile,
            mask: None,
        }
    }

    fn usage(src: &FileSource, req: &UsageRequest) -> ContainerUsage {
        block_on(src.usage(req))
            .ok()
            .and_then(|b| b.containers.get(&web()).cloned())
            .unwrap_or_default()
    }

    #[test]
    fn generations_of_a_deployment_pool_together() {
        let text = mk_file(
            &["web-7d9f8b6c5d-x2k9p", "web-5c8d7f9b4-qwz7t"],
            60,
            0.25,
            1e8,
        );
        let src = FileSource::from_text(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(src.interval(), Duration::from_secs(60));
        assert_eq!(src.info().resolution, Resolution::DEFAULT);
        let req = ContainersRequest {
            namespace: None,
            window: Duration::from_secs(86_400),
            end: src.newest(),
        };
        assert_eq!(
            block_on(src.containers(&req)).unwrap_or_default(),
            vec![web()]
        );
        let cpu = usage(&src, &mk_request(&src, Resource::Cpu, vec![q(0.95)]));
        let stat = cpu.stats[0].unwrap_or_else(|| panic!("no stat"));
        assert!((stat.value - 0.25).abs() < 1e-6, "{stat:?}");
        // History counts hourly checkpoints: the hour of data holds one.
        assert_eq!((stat.samples, stat.history_secs), (1, 3600));
        let mem = usage(
            &src,
            &mk_request(&src, Resource::Memory, vec![q(1.0), q(0.0)]),
        );
        let values: Vec<_> = mem.stats.iter().map(|s| s.map(|s| s.value)).collect();
        // The per-step maximum over the two pods, steps of 5 minutes; the
        // newest samples are after the last whole step (the window ends at
        // the newest sample).
        assert_eq!(values, vec![Some(1e8 + 56.0), Some(1e8 + 1.0)]);
        assert!(!mem.oom_killed);
    }

    #[test]
    fn masks_restrict_the_statistic() {
        let text = mk_file(&["web-7d9f8b6c5d-x2k9p"], 60, 0.25, 1e8);
        let src = FileSource::from_text(&text).unwrap_or_else(|e| panic!("{e}"));
        // The first ten minutes of every day: T0 is 22:13:20 UTC.
        let first = T0 + 60 - T0 % 60;
        let phase = (first - 345_600).rem_euclid(86_400);
        let mask = PeriodicMask::new(86_400, [(phase, phase + 600)]);
        let req = mk_request(
            &src,
            Resource::Memory,
            vec![StatSpec {
                quantile: 1.0,
                mask,
            }],
        );
        let stat = usage(&src, &req).stats[0];
        // Steps at 5 and 10 minutes (of 5-minute steps) after 22:15: the
        // largest sample of the second is minute 6's; no hourly checkpoint
        // in those ten minutes.
        assert_eq!(stat.map(|s| (s.value, s.samples)), Some((1e8 + 6.0, 0)));
    }

    #[test]
    fn workload_series_sums_pods() {
        let text = mk_file(
            &["web-7d9f8b6c5d-x2k9p", "web-7d9f8b6c5d-b2k9p"],
            30,
            0.5,
            100.0,
        );
        let src = FileSource::from_text(&text).unwrap_or_else(|e| panic!("{e}"));
        let req = SeriesRequest {
            namespace: "ns".into(),
            resource: Resource::Cpu,
            window: Duration::from_secs(3600),
            end: src.newest(),
            resolution: Resolution::new(Duration::from_secs(300), Duration::from_secs(300)),
        };
        let batch = block_on(src.series(&req)).unwrap_or_default();
        let series = batch
            .workloads
            .get(&web().workload)
            .cloned()
            .unwrap_or_default();
        // The first step's window starts before the counters do: a part of
        // a rate, as in PromQL.
        assert!(series.len() > 3 && series[0].1 < 1.0, "{series:?}");
        assert!(
            series[1..].iter().all(|&(_, v)| (v - 1.0).abs() < 1e-6),
            "{series:?}"
        );
    }

    #[test]
    fn owner_series_override_name_guessing() {
        let text = "kube_pod_owner{namespace=\"ns\",pod=\"api-0\",owner_kind=\"ReplicaSet\",owner_name=\"api-6b7c9d8f5\"} 1 1700000000\n\
            container_memory_working_set_bytes{namespace=\"ns\",pod=\"api-0\",container=\"app\"} 5 1700000000\n# EOF\n";
        let src = FileSource::from_text(text).unwrap_or_else(|e| panic!("{e}"));
        let req = ContainersRequest {
            namespace: Some("ns".into()),
            window: Duration::from_secs(60),
            end: src.newest(),
        };
        let c = block_on(src.containers(&req)).unwrap_or_default();
        assert_eq!(
            c[0].workload,
            WorkloadKey::new("ns", WorkloadKind::Deployment, "api")
        );
    }

    #[test]
    fn oom_kills_in_the_window_are_reported() {
        let mut text = mk_file(&["web-7d9f8b6c5d-x2k9p"], 60, 0.25, 1e8).replace("# EOF\n", "");
        text += "kube_pod_container_status_last_terminated_reason{namespace=\"ns\",pod=\"web-7d9f8b6c5d-x2k9p\",container=\"app\",reason=\"OOMKilled\"} 1 1700001000\n# EOF\n";
        let src = FileSource::from_text(&text).unwrap_or_else(|e| panic!("{e}"));
        let mut req = mk_request(&src, Resource::Memory, vec![q(1.0)]);
        assert!(usage(&src, &req).oom_killed);
        req.window = Duration::from_secs(600);
        assert!(
            !usage(&src, &req).oom_killed,
            "the kill is older than the window"
        );
    }

    #[test]
    fn current_requests_are_the_largest_of_the_last_hour() {
        let pods = ["web-7d9f8b6c5d-x2k9p", "web-5c8d7f9b4-qwz7t"];
        let mut text = mk_file(&pods, 120, 0.25, 1e8).replace("# EOF\n", "");
        // The old generation's larger request ends 90 minutes before the
        // newest sample; the new one's two pods ask 0.5 and 0.75.
        for (pod, cores, t) in [
            (pods[0], 2.0, T0 + 1800),
            (pods[1], 0.5, T0 + 6000),
            (pods[1], 0.75, T0 + 7000),
        ] {
            text += &format!("kube_pod_container_resource_requests{{namespace=\"ns\",pod=\"{pod}\",container=\"app\",resource=\"cpu\",unit=\"core\"}} {cores} {t}\n");
        }
        text += "# EOF\n";
        let src = FileSource::from_text(&text).unwrap_or_else(|e| panic!("{e}"));
        let mut req = mk_request(&src, Resource::Cpu, vec![q(1.0)]);
        assert_eq!(usage(&src, &req).request, None, "not asked");
        req.requests = true;
        assert_eq!(usage(&src, &req).request, Some(0.75));
        req.resource = Resource::Memory;
        assert_eq!(usage(&src, &req).request, None, "no memory request");
    }

    #[test]
    fn ignores_pause_and_pod_totals() {
        let text = "container_memory_working_set_bytes{namespace=\"ns\",pod=\"p\",container=\"POD\"} 5 1\n\
            container_memory_working_set_bytes{namespace=\"ns\",pod=\"p\",container=\"\"} 5 1\n# EOF\n";
        let src = FileSource::from_text(text).unwrap_or_else(|e| panic!("{e}"));
        let req = ContainersRequest {
            namespace: None,
            window: Duration::from_secs(60),
            end: 1,
        };
        assert!(block_on(src.containers(&req))
            .unwrap_or_default()
            .is_empty());
    }

    #[test]
    fn empty_and_truncated_files_are_errors() {
        let full = mk_file(&["web-7d9f8b6c5d-x2k9p"], 10, 0.25, 1e8);
        let cut = &full[..full.len() / 2];
        let cut = &cut[..cut.rfind('\n').unwrap_or(0) + 1];
        for text in ["", "\n", cut] {
            let e = FileSource::from_text(text).expect_err("no # EOF");
            assert!(e.to_string().contains("no `# EOF`"), "{e}");
        }
        assert!(
            FileSource::from_text("# EOF\n").is_ok(),
            "empty but complete"
        );
    }

    #[test]
    fn loader_rereads_on_change_and_keeps_the_last_good_data() {
        use nemutator_core::policy::{Policy, PolicySet};
        use nemutator_core::recommend::{RecommendationStore, Refresher};
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("usage.om");
        std::fs::write(&path, mk_file(&["web-7d9f8b6c5d-x2k9p"], 1500, 0.25, 1e8))
            .unwrap_or_else(|e| panic!("{e}"));
        let store = Arc::new(RecommendationStore::new());
        let refresher = Refresher::new(
            Arc::new(FileLoader::new(&path)),
            Arc::new(PolicySet(vec![Policy::default()])),
            store.clone(),
        );
        assert_eq!(block_on(refresher.refresh_once()).ok().flatten(), Some(1));
        assert!(store.is_loaded());
        // Progress in namespaces, as /metrics shows it.
        assert_eq!(store.health().progress(), (1, 1));
        // Unchanged file: nothing to do.
        assert_eq!(block_on(refresher.refresh_once()).ok().flatten(), None);
        // A second workload appears.
        let mut text = mk_file(&["web-7d9f8b6c5d-x2k9p"], 1500, 0.25, 1e8).replace("# EOF\n", "");
        text += "container_memory_working_set_bytes{namespace=\"ns\",pod=\"db-0\",container=\"pg\"} 5 1700000000\n# EOF\n";
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(block_on(refresher.refresh_once()).ok().flatten(), Some(2));
        let before = store.snapshot();
        // A broken file, an emptied one, a truncated one: errors, and the
        // store keeps its recommendations.
        let truncated = &text[..text.len() - 200];
        for bad in ["container_memory_working_set_bytes{ 1 2\n", "", truncated] {
            std::fs::write(&path, bad).unwrap_or_else(|e| panic!("{e}"));
            let err = block_on(refresher.refresh_once()).expect_err("bad file");
            assert!(!err.to_string().contains('\n'), "{err}");
            assert_eq!(store.snapshot(), before);
        }
    }

    #[test]
    fn bad_file_is_one_line_error() {
        let e = FileSource::from_text("container_memory_working_set_bytes{namespace=\"ns\"} x 1\n")
            .expect_err("bad value");
        assert_eq!(e.line, 1);
    }
}
