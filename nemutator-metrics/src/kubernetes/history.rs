//! The usage history the `kubernetes` source keeps: per pod container, the
//! samples it took of `metrics.k8s.io`, bounded in age and count, saved as
//! JSON (to a file, or to Redis with `metrics.cache`).
//!
//! metrics-server reports CPU as a rate (cores over its window); the history
//! keeps it as the counter cAdvisor would have exported
//! (`container_cpu_usage_seconds_total`): each sample adds its rate times the
//! time since the previous one. The statistic then takes rates of that
//! counter exactly as it does of a file's or Prometheus' series, so the
//! rate over a window is the time-weighted mean of the reported rates.

use std::collections::HashMap;

use nemutator_core::metrics::{PodContainerRef, PodSignals, PodSignalsBatch, PodSignalsRequest};
use serde::{Deserialize, Serialize};

use crate::file::{signals_of, FileSource};

/// The format of the saved history; another one is not read.
pub const HISTORY_FORMAT: u32 = 1;

/// One usage reading of a pod container.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// Namespace.
    pub namespace: String,
    /// Pod.
    pub pod: String,
    /// Container.
    pub container: String,
    /// When it was measured (unix seconds).
    pub at: i64,
    /// CPU, cores.
    pub cpu: f64,
    /// Working set, bytes.
    pub memory: f64,
}

/// The samples of one pod container, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Series {
    namespace: String,
    pod: String,
    container: String,
    /// Unix seconds.
    t: Vec<i64>,
    /// The CPU counter, seconds.
    cpu: Vec<f64>,
    /// Working set, bytes.
    memory: Vec<f64>,
}

/// `(namespace, pod, container)`.
type Key = (String, String, String);

/// Usage samples of every pod container seen, bounded.
#[derive(Clone, Debug, Default)]
pub struct History {
    series: HashMap<Key, Series>,
    samples: usize,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    format: u32,
    series: Vec<Series>,
}

/// Why a saved history could not be read.
#[derive(Debug, thiserror::Error)]
#[error("saved usage history: {0}")]
pub struct HistoryFormatError(String);

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Samples held (each has a CPU and a memory value).
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The newest sample (unix seconds), if any.
    pub fn newest(&self) -> Option<i64> {
        self.series
            .values()
            .filter_map(|s| s.t.last().copied())
            .max()
    }

    /// Add readings; a reading not newer than its series' last is dropped
    /// (metrics-server answers with the same sample until it scrapes again).
    /// Returns how many were added.
    pub fn record(&mut self, readings: impl IntoIterator<Item = Reading>) -> usize {
        let mut added = 0;
        for r in readings {
            if !(r.cpu.is_finite() && r.memory.is_finite() && r.cpu >= 0.0 && r.memory >= 0.0) {
                continue;
            }
            let s = self
                .series
                .entry((r.namespace.clone(), r.pod.clone(), r.container.clone()))
                .or_insert_with(|| Series {
                    namespace: r.namespace,
                    pod: r.pod,
                    container: r.container,
                    ..Series::default()
                });
            let counter = match (s.t.last(), s.cpu.last()) {
                (Some(&t), _) if r.at <= t => continue,
                (Some(&t), Some(&c)) => c + r.cpu * (r.at - t) as f64,
                _ => 0.0,
            };
            s.t.push(r.at);
            s.cpu.push(counter);
            s.memory.push(r.memory);
            added += 1;
        }
        self.samples += added;
        added
    }

    /// Drop samples older than `oldest` (unix seconds), then the oldest
    /// ones until at most `max_samples` remain; series left empty go.
    pub fn prune(&mut self, oldest: i64, max_samples: usize) {
        let mut cutoff = oldest;
        if self.samples > max_samples {
            // The time below which the excess lies.
            let mut times: Vec<i64> = self
                .series
                .values()
                .flat_map(|s| s.t.iter().copied())
                .collect();
            let excess = self.samples - max_samples;
            let (_, nth, _) = times.select_nth_unstable(excess - 1);
            cutoff = cutoff.max(*nth + 1);
        }
        self.series.retain(|_, s| {
            let keep = s.t.partition_point(|&t| t < cutoff);
            s.t.drain(..keep);
            s.cpu.drain(..keep);
            s.memory.drain(..keep);
            !s.t.is_empty()
        });
        self.samples = self.series.values().map(|s| s.t.len()).sum();
    }

    /// The history as a metrics source (every statistic computed as for a
    /// file holding these samples).
    pub fn source(&self) -> FileSource {
        FileSource::from_series(self.series.values().map(|s| {
            let ms = |t: &i64| t * 1000;
            (
                (s.namespace.clone(), s.pod.clone(), s.container.clone()),
                s.t.iter().map(ms).zip(s.cpu.iter().copied()).collect(),
                s.t.iter().map(ms).zip(s.memory.iter().copied()).collect(),
            )
        }))
    }

    /// The live pod signals of the samples in the request's window, computed
    /// as the file source computes them: CPU (the rate of the counter) and
    /// the largest working set; never a throttled fraction (metrics.k8s.io
    /// has no CFS counters).
    pub fn pod_signals(&self, request: &PodSignalsRequest) -> PodSignalsBatch {
        let range = i64::try_from(request.window.as_millis()).unwrap_or(i64::MAX);
        let end = request.end.saturating_mul(1000);
        let mut batch = PodSignalsBatch::default();
        for s in self.series.values() {
            if request
                .namespace
                .as_deref()
                .is_some_and(|ns| ns != s.namespace)
            {
                continue;
            }
            // Only the window's samples, in the file source's form.
            let lo =
                s.t.partition_point(|&t| t * 1000 <= end.saturating_sub(range));
            let hi = s.t.partition_point(|&t| t * 1000 <= end).max(lo);
            let t = s.t[lo..hi].iter().map(|t| t * 1000);
            let cpu: Vec<(i64, f64)> = t.clone().zip(s.cpu[lo..hi].iter().copied()).collect();
            let memory: Vec<(i64, f64)> = t.zip(s.memory[lo..hi].iter().copied()).collect();
            let signals = signals_of([&cpu, &memory, &[], &[]], end, range);
            let PodSignals {
                cpu,
                memory,
                throttled: _,
            } = signals;
            if cpu.is_some() || memory.is_some() {
                batch.containers.insert(
                    PodContainerRef {
                        namespace: s.namespace.clone(),
                        pod: s.pod.clone(),
                        container: s.container.clone(),
                    },
                    signals,
                );
            }
        }
        batch
    }

    /// JSON of the history.
    pub fn to_json(&self) -> Vec<u8> {
        let mut series: Vec<Series> = self.series.values().cloned().collect();
        series.sort_by(|a, b| {
            (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container))
        });
        serde_json::to_vec(&Saved {
            format: HISTORY_FORMAT,
            series,
        })
        .unwrap_or_default()
    }

    /// Read [`History::to_json`]'s output.
    pub fn from_json(bytes: &[u8]) -> Result<Self, HistoryFormatError> {
        let saved: Saved =
            serde_json::from_slice(bytes).map_err(|e| HistoryFormatError(e.to_string()))?;
        if saved.format != HISTORY_FORMAT {
            return Err(HistoryFormatError(format!(
                "format {} (this version reads {HISTORY_FORMAT})",
                saved.format
            )));
        }
        let mut h = History::new();
        for s in saved.series {
            let n = s.t.len();
            if s.cpu.len() != n || s.memory.len() != n || !s.t.is_sorted_by(|a, b| a < b) {
                return Err(HistoryFormatError(format!(
                    "series {}/{}/{} is inconsistent",
                    s.namespace, s.pod, s.container
                )));
            }
            h.samples += n;
            h.series
                .insert((s.namespace.clone(), s.pod.clone(), s.container.clone()), s);
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_reading(pod: &str, at: i64, cpu: f64, memory: f64) -> Reading {
        Reading {
            namespace: "shop".into(),
            pod: pod.into(),
            container: "app".into(),
            at,
            cpu,
            memory,
        }
    }

    #[test]
    fn cpu_rates_become_a_counter_and_repeats_are_dropped() {
        let mut h = History::new();
        assert_eq!(h.record([mk_reading("web-1", 60, 0.5, 10.0)]), 1);
        assert_eq!(h.record([mk_reading("web-1", 60, 0.5, 10.0)]), 0);
        assert_eq!(h.record([mk_reading("web-1", 120, 0.25, 20.0)]), 1);
        assert_eq!(h.record([mk_reading("web-1", 180, f64::NAN, 20.0)]), 0);
        let s = &h.series[&("shop".into(), "web-1".into(), "app".into())];
        assert_eq!(s.cpu, vec![0.0, 15.0]);
        assert_eq!(s.memory, vec![10.0, 20.0]);
        assert_eq!((h.samples(), h.newest()), (2, Some(120)));
    }

    #[test]
    fn pruning_bounds_age_and_count() {
        let mut h = History::new();
        for t in 1..=10 {
            h.record([
                mk_reading("a", t * 60, 1.0, 1.0),
                mk_reading("b", t * 60, 1.0, 1.0),
            ]);
        }
        h.prune(3 * 60, usize::MAX);
        assert_eq!(h.samples(), 16);
        h.prune(0, 7);
        assert!(h.samples() <= 7, "{}", h.samples());
        assert_eq!(h.newest(), Some(600));
        h.prune(601, 100);
        assert_eq!((h.samples(), h.series.len()), (0, 0), "empty series go");
    }

    #[test]
    fn json_round_trips_and_bad_input_is_an_error() {
        let mut h = History::new();
        h.record([
            mk_reading("a", 60, 0.3, 5.0),
            mk_reading("a", 120, 0.1, 6.0),
        ]);
        let back = History::from_json(&h.to_json()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.series, h.series);
        assert_eq!(back.samples(), 2);
        for bad in [
            &b"{"[..],
            br#"{"format":2,"series":[]}"#,
            br#"{"format":1,"series":[{"namespace":"n","pod":"p","container":"c","t":[2,1],"cpu":[0,0],"memory":[0,0]}]}"#,
            br#"{"format":1,"series":[{"namespace":"n","pod":"p","container":"c","t":[1],"cpu":[],"memory":[0]}]}"#,
        ] {
            let e = History::from_json(bad).err().map(|e| e.to_string());
            assert!(e.is_some_and(|e| !e.contains('\n')));
        }
    }

    #[test]
    fn pod_signals_are_the_window_mean_cpu_and_largest_memory() {
        let mut h = History::new();
        for m in 0..=10 {
            // 0.2 cores for five minutes, then 0.6; memory grows.
            let cpu = if m <= 5 { 0.2 } else { 0.6 };
            h.record([mk_reading("web-1", m * 60, cpu, 100.0 + m as f64)]);
        }
        h.record([Reading {
            namespace: "other".into(),
            ..mk_reading("db-0", 600, 1.0, 7.0)
        }]);
        let mut request = PodSignalsRequest {
            namespace: Some("shop".into()),
            window: std::time::Duration::from_secs(300),
            end: 600,
        };
        let batch = h.pod_signals(&request);
        let key = PodContainerRef {
            namespace: "shop".into(),
            pod: "web-1".into(),
            container: "app".into(),
        };
        assert_eq!(batch.containers.keys().collect::<Vec<_>>(), vec![&key]);
        let s = batch.containers[&key];
        // The last five minutes ran at 0.6 cores.
        assert!(s.cpu.is_some_and(|c| (c - 0.6).abs() < 1e-9), "{s:?}");
        assert_eq!((s.memory, s.throttled), (Some(110.0), None));
        // Ten minutes: a mix of both rates (PromQL's rate(), extrapolated).
        request.window = std::time::Duration::from_secs(600);
        let s = h.pod_signals(&request).containers[&key];
        assert!(s.cpu.is_some_and(|c| c > 0.3 && c < 0.6), "{s:?}");
        // All namespaces: one reading of db-0 gives memory, no rate.
        request.namespace = None;
        let all = h.pod_signals(&request);
        let db = all.containers.iter().find(|(k, _)| k.pod == "db-0");
        assert_eq!(db.map(|(_, s)| (s.cpu, s.memory)), Some((None, Some(7.0))));
    }
}
