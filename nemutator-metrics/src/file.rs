//! The OpenMetrics file source: usage history recorded in a file, in the
//! format `promtool tsdb create-blocks-from openmetrics` accepts, with the
//! cAdvisor metric names. The same file backfilled into Prometheus gives the
//! same recommendations.
//!
//! * `container_cpu_usage_seconds_total` (counter, seconds): CPU usage is its
//!   per-interval rate (counter resets handled), in cores.
//! * `container_memory_working_set_bytes` (gauge, bytes).
//! * labels `namespace`, `pod`, `container`; series with an empty container or
//!   `POD` (the pause container, cAdvisor's pod totals) are ignored.
//! * optionally `kube_pod_owner{namespace,pod,owner_kind,owner_name}` (as
//!   kube-state-metrics exports it) to tell a pod's workload exactly instead of
//!   from its name.
//!
//! A window ends at the newest sample in the file, not at the wall clock, so a
//! recording keeps giving the same answers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nemutator_core::error::Chain;
use nemutator_core::metrics::{
    quantile, BoxFuture, MetricsError, MetricsSource, Resource, SeriesQuery, SourceLoader,
    UsageQuery, UsageStat,
};
use nemutator_core::workload::{ContainerRef, WorkloadKey};

use crate::openmetrics::{self, ParseError};

const CPU: &str = "container_cpu_usage_seconds_total";
const MEMORY: &str = "container_memory_working_set_bytes";
const OWNER: &str = "kube_pod_owner";

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

/// Samples of one container of one workload, every pod pooled.
#[derive(Debug, Default, Clone)]
struct ContainerHistory {
    /// CPU rate samples (time, cores), sorted by time.
    cpu: Vec<(i64, f64)>,
    /// Working-set samples (time, bytes), sorted by time.
    memory: Vec<(i64, f64)>,
    /// Per-pod series, for summing into a workload series.
    pods: Vec<PodHistory>,
}

#[derive(Debug, Default, Clone)]
struct PodHistory {
    cpu: Vec<(i64, f64)>,
    memory: Vec<(i64, f64)>,
}

/// Usage history loaded from an OpenMetrics file.
#[derive(Debug, Clone)]
pub struct FileSource {
    data: Arc<HashMap<ContainerRef, ContainerHistory>>,
    newest: i64,
    samples: usize,
}

#[derive(Default)]
struct RawSeries {
    cpu: Vec<(i64, f64)>,
    memory: Vec<(i64, f64)>,
}

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

    /// Load from text.
    pub fn from_text(text: &str) -> Result<Self, ParseError> {
        // (namespace, pod, container) -> raw series
        let mut raw: HashMap<(String, String, String), RawSeries> = HashMap::new();
        let mut owners: HashMap<(String, String), WorkloadKey> = HashMap::new();
        let mut samples = 0usize;
        let mut newest = i64::MIN;
        openmetrics::parse(text, |s| {
            let is_cpu = s.name == CPU;
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
            if !is_cpu && s.name != MEMORY {
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
            let ts = ts.floor() as i64;
            newest = newest.max(ts);
            samples += 1;
            let series = raw
                .entry((ns.to_string(), pod.to_string(), container.to_string()))
                .or_default();
            if is_cpu {
                series.cpu.push((ts, s.value));
            } else {
                series.memory.push((ts, s.value));
            }
        })?;
        let mut data: HashMap<ContainerRef, ContainerHistory> = HashMap::new();
        for ((ns, pod, container), mut series) in raw {
            let workload = owners
                .get(&(ns.clone(), pod.clone()))
                .cloned()
                .unwrap_or_else(|| WorkloadKey::from_pod_name(&ns, &pod));
            sort_dedup(&mut series.cpu);
            sort_dedup(&mut series.memory);
            let rates = counter_rates(&series.cpu);
            let hist = data
                .entry(ContainerRef::new(workload, container))
                .or_default();
            hist.cpu.extend_from_slice(&rates);
            hist.memory.extend_from_slice(&series.memory);
            hist.pods.push(PodHistory {
                cpu: rates,
                memory: series.memory,
            });
        }
        for hist in data.values_mut() {
            hist.cpu.sort_by_key(|p| p.0);
            hist.memory.sort_by_key(|p| p.0);
        }
        Ok(FileSource {
            data: Arc::new(data),
            newest: if newest == i64::MIN { 0 } else { newest },
            samples,
        })
    }

    /// Number of samples read.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The newest sample, unix seconds (0 when empty).
    pub fn newest(&self) -> i64 {
        self.newest
    }

    fn window(series: &[(i64, f64)], start: i64, end: i64) -> &[(i64, f64)] {
        let lo = series.partition_point(|p| p.0 < start);
        let hi = series.partition_point(|p| p.0 <= end);
        &series[lo..hi.max(lo)]
    }

    fn range(&self, window: std::time::Duration, end: Option<i64>) -> (i64, i64) {
        let end = end.unwrap_or(self.newest);
        let secs = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
        (end.saturating_sub(secs), end)
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

/// Per-interval rates of a counter, stamped at the end of each interval. A drop
/// is a counter reset: the new value is the increase since the reset.
pub fn counter_rates(counter: &[(i64, f64)]) -> Vec<(i64, f64)> {
    counter
        .windows(2)
        .filter_map(|w| {
            let ((t0, v0), (t1, v1)) = (w[0], w[1]);
            let dt = (t1 - t0) as f64;
            if dt <= 0.0 {
                return None;
            }
            let inc = if v1 >= v0 { v1 - v0 } else { v1 };
            Some((t1, inc / dt))
        })
        .collect()
}

impl MetricsSource for FileSource {
    fn name(&self) -> &'static str {
        "file"
    }

    fn containers<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<ContainerRef>, MetricsError>> {
        let mut out: Vec<ContainerRef> = self
            .data
            .keys()
            .filter(|k| namespace.is_none_or(|ns| k.workload.namespace == ns))
            .cloned()
            .collect();
        out.sort();
        Box::pin(std::future::ready(Ok(out)))
    }

    fn usage_quantile<'a>(
        &'a self,
        query: &'a UsageQuery,
    ) -> BoxFuture<'a, Result<Option<UsageStat>, MetricsError>> {
        let stat = self.data.get(&query.target).and_then(|h| {
            let series = match query.resource {
                Resource::Cpu => &h.cpu,
                Resource::Memory => &h.memory,
            };
            let (start, end) = self.range(query.window, query.end);
            let win = Self::window(series, start, end);
            let in_ranges = |t: i64| {
                query.ranges.is_empty() || query.ranges.iter().any(|&(a, b)| t >= a && t < b)
            };
            let (mut first, mut last) = (i64::MAX, i64::MIN);
            let mut values: Vec<f64> = Vec::with_capacity(win.len());
            for &(t, v) in win.iter().filter(|p| in_ranges(p.0)) {
                first = first.min(t);
                last = last.max(t);
                values.push(v);
            }
            let value = quantile(&mut values, query.quantile)?;
            Some(UsageStat {
                value,
                samples: values.len() as u64,
                first,
                last,
            })
        });
        Box::pin(std::future::ready(Ok(stat)))
    }

    fn usage_series<'a>(
        &'a self,
        query: &'a SeriesQuery,
    ) -> BoxFuture<'a, Result<Vec<(i64, f64)>, MetricsError>> {
        let step = (query.step.as_secs() as i64).max(1);
        let (start, end) = self.range(query.window, query.end);
        let mut buckets: std::collections::BTreeMap<i64, f64> = Default::default();
        if let Some(h) = self.data.get(&query.target) {
            for pod in &h.pods {
                let series = match query.resource {
                    Resource::Cpu => &pod.cpu,
                    Resource::Memory => &pod.memory,
                };
                // Average each pod within a step, then sum the pods.
                let mut acc: HashMap<i64, (f64, u32)> = HashMap::new();
                for &(t, v) in Self::window(series, start, end) {
                    let e = acc.entry(t - t.rem_euclid(step)).or_default();
                    e.0 += v;
                    e.1 += 1;
                }
                for (b, (sum, n)) in acc {
                    *buckets.entry(b).or_default() += sum / f64::from(n);
                }
            }
        }
        Box::pin(std::future::ready(Ok(buckets.into_iter().collect())))
    }

    fn now(&self) -> i64 {
        self.newest
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
    fn load(&self) -> BoxFuture<'_, Result<Option<Arc<dyn MetricsSource>>, MetricsError>> {
        Box::pin(async move {
            let backend_err = |message: String| MetricsError::Backend {
                backend: "file",
                message,
            };
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
            Ok(Some(Arc::new(loaded) as Arc<dyn MetricsSource>))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nemutator_core::workload::WorkloadKind;
    use std::time::Duration;

    fn mk_file(pods: &[&str], minutes: i64, cpu_cores: f64, mem: f64) -> String {
        let mut s = String::from("# TYPE container_cpu_usage_seconds counter\n");
        for pod in pods {
            for m in 0..=minutes {
                s += &format!(
                    "container_cpu_usage_seconds_total{{namespace=\"ns\",pod=\"{pod}\",container=\"app\"}} {} {}\n",
                    cpu_cores * 60.0 * m as f64,
                    1_700_000_000 + m * 60
                );
            }
        }
        s += "# TYPE container_memory_working_set_bytes gauge\n";
        for pod in pods {
            for m in 0..=minutes {
                s += &format!(
                    "container_memory_working_set_bytes{{namespace=\"ns\",pod=\"{pod}\",container=\"app\"}} {} {}\n",
                    mem + m as f64,
                    1_700_000_000 + m * 60
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

    fn q(resource: Resource, quantile: f64) -> UsageQuery {
        UsageQuery {
            target: ContainerRef::new(
                WorkloadKey::new("ns", WorkloadKind::Deployment, "web"),
                "app",
            ),
            resource,
            quantile,
            window: Duration::from_secs(86_400),
            end: None,
            ranges: Vec::new(),
        }
    }

    #[test]
    fn ranges_restrict_the_quantile() {
        let text = mk_file(&["web-7d9f8b6c5d-x2k9p"], 60, 0.25, 1e8);
        let src = FileSource::from_text(&text).unwrap_or_else(|e| panic!("{e}"));
        let mut query = q(Resource::Memory, 1.0);
        query.ranges = vec![(1_700_000_000, 1_700_000_000 + 10 * 60)];
        let stat = block_on(src.usage_quantile(&query)).ok().flatten();
        // Samples at minutes 0..=9 only: the largest is 1e8 + 9.
        assert_eq!(stat.map(|s| (s.value, s.samples)), Some((1e8 + 9.0, 10)));
    }

    #[test]
    fn rates_handle_resets() {
        let r = counter_rates(&[(0, 0.0), (10, 5.0), (20, 2.0), (30, 4.0)]);
        assert_eq!(r, vec![(10, 0.5), (20, 0.2), (30, 0.2)]);
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
        let containers = block_on(src.containers(None)).unwrap_or_default();
        assert_eq!(containers.len(), 1, "{containers:?}");
        let stat = block_on(src.usage_quantile(&q(Resource::Cpu, 0.95)))
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no stat"));
        assert!((stat.value - 0.25).abs() < 1e-9, "{stat:?}");
        assert_eq!(stat.samples, 120);
        assert_eq!(stat.span_secs(), 59 * 60);
        let mem = block_on(src.usage_quantile(&q(Resource::Memory, 1.0)))
            .ok()
            .flatten();
        assert_eq!(mem.map(|m| m.value), Some(1e8 + 60.0));
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
        let query = SeriesQuery {
            target: q(Resource::Cpu, 0.5).target,
            resource: Resource::Cpu,
            window: Duration::from_secs(3600),
            end: None,
            step: Duration::from_secs(300),
        };
        let series = block_on(src.usage_series(&query)).unwrap_or_default();
        assert!(!series.is_empty());
        assert!(
            series.iter().all(|&(_, v)| (v - 1.0).abs() < 1e-9),
            "{series:?}"
        );
    }

    #[test]
    fn owner_series_override_name_guessing() {
        let text = "kube_pod_owner{namespace=\"ns\",pod=\"api-0\",owner_kind=\"ReplicaSet\",owner_name=\"api-6b7c9d8f5\"} 1 1700000000\n\
            container_memory_working_set_bytes{namespace=\"ns\",pod=\"api-0\",container=\"app\"} 5 1700000000\n";
        let src = FileSource::from_text(text).unwrap_or_else(|e| panic!("{e}"));
        let c = block_on(src.containers(None)).unwrap_or_default();
        assert_eq!(
            c[0].workload,
            WorkloadKey::new("ns", WorkloadKind::Deployment, "api")
        );
    }

    #[test]
    fn ignores_pause_and_pod_totals() {
        let text = "container_memory_working_set_bytes{namespace=\"ns\",pod=\"p\",container=\"POD\"} 5 1\n\
            container_memory_working_set_bytes{namespace=\"ns\",pod=\"p\",container=\"\"} 5 1\n";
        let src = FileSource::from_text(text).unwrap_or_else(|e| panic!("{e}"));
        assert!(block_on(src.containers(None))
            .unwrap_or_default()
            .is_empty());
    }

    #[test]
    fn loader_rereads_on_change_and_keeps_the_last_good_data() {
        use nemutator_core::policy::{Policy, PolicySet};
        use nemutator_core::recommend::{RecommendationStore, Refresher};
        let dir = std::env::temp_dir().join(format!("nemutator-loader-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("usage.om");
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
        // Unchanged file: nothing to do.
        assert_eq!(block_on(refresher.refresh_once()).ok().flatten(), None);
        // A second workload appears.
        let mut text = mk_file(&["web-7d9f8b6c5d-x2k9p"], 1500, 0.25, 1e8).replace("# EOF\n", "");
        text += "container_memory_working_set_bytes{namespace=\"ns\",pod=\"db-0\",container=\"pg\"} 5 1700000000\n# EOF\n";
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(block_on(refresher.refresh_once()).ok().flatten(), Some(2));
        // A broken file is an error and the store keeps its recommendations.
        std::fs::write(&path, "container_memory_working_set_bytes{ 1 2\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let err = block_on(refresher.refresh_once()).expect_err("bad file");
        assert!(err.to_string().contains("line 1"), "{err}");
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn bad_file_is_one_line_error() {
        let e = FileSource::from_text("container_memory_working_set_bytes{namespace=\"ns\"} x 1\n")
            .expect_err("bad value");
        assert_eq!(e.line, 1);
    }
}
