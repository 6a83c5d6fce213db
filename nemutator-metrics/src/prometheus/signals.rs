//! Live pod signals ([`MetricsSource::pod_signals`](nemutator_core::metrics::MetricsSource::pod_signals))
//! from Prometheus: one instant query per signal at the window's end, every
//! pod container of the namespace (or of the cluster) in each answer,
//! grouped by `namespace, pod, container`:
//!
//! * CPU: `sum by (...) (rate(container_cpu_usage_seconds_total[w]))`;
//! * memory: `max by (...) (max_over_time(container_memory_working_set_bytes[w]))`;
//! * throttled: `clamp(sum by (...) (increase(container_cpu_cfs_throttled_periods_total[w]))
//!   / sum by (...) (increase(container_cpu_cfs_periods_total[w])), 0, 1)`; a
//!   container without a CPU limit has no CFS series and so no fraction, and
//!   one in which no period elapsed answers `NaN`, which is no fraction
//!   either.
//!
//! `sum` adds up the series of one container that cAdvisor splits (a
//! restarted container's old and new series); the file source reads such
//! series as one. Ranges are written `w - 1ms` as everywhere in [`super::promql`].

use std::collections::HashMap;
use std::time::Duration;

use nemutator_core::metrics::{
    MetricsError, PodContainerRef, PodSignals, PodSignalsBatch, PodSignalsRequest,
};

use super::http::Http;
use super::promql::{quote, RAW_CPU, RAW_MEMORY};

/// cAdvisor's count of elapsed CFS enforcement periods.
pub const CFS_PERIODS: &str = "container_cpu_cfs_periods_total";
/// cAdvisor's count of CFS periods in which the container was throttled.
pub const CFS_THROTTLED: &str = "container_cpu_cfs_throttled_periods_total";

/// One live signal: which field of [`PodSignals`] a query answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// [`PodSignals::cpu`].
    Cpu,
    /// [`PodSignals::memory`].
    Memory,
    /// [`PodSignals::throttled`].
    Throttled,
}

impl Signal {
    /// Every signal, each one query.
    pub const ALL: [Signal; 3] = [Signal::Cpu, Signal::Memory, Signal::Throttled];

    /// Where this signal's value goes.
    fn slot(self, signals: &mut PodSignals) -> &mut Option<f64> {
        let PodSignals {
            cpu,
            memory,
            throttled,
        } = signals;
        match self {
            Signal::Cpu => cpu,
            Signal::Memory => memory,
            Signal::Throttled => throttled,
        }
    }
}

/// The selector of a cAdvisor metric's per-container series of one
/// namespace or of all.
fn selector(metric: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!(
            "{metric}{{namespace={},container!=\"\",container!=\"POD\"}}",
            quote(ns)
        ),
        None => format!("{metric}{{container!=\"\",container!=\"POD\"}}"),
    }
}

/// The query of one signal over `window` (see the module docs).
pub fn query(signal: Signal, namespace: Option<&str>, window: Duration) -> String {
    let range = format!("{}ms", window.as_millis().saturating_sub(1).max(1));
    let by = "by (namespace, pod, container)";
    let increase = |metric: &str| {
        format!(
            "sum {by} (increase({}[{range}]))",
            selector(metric, namespace)
        )
    };
    match signal {
        Signal::Cpu => format!("sum {by} (rate({}[{range}]))", selector(RAW_CPU, namespace)),
        Signal::Memory => format!(
            "max {by} (max_over_time({}[{range}]))",
            selector(RAW_MEMORY, namespace)
        ),
        Signal::Throttled => format!(
            "clamp({} / {}, 0, 1)",
            increase(CFS_THROTTLED),
            increase(CFS_PERIODS)
        ),
    }
}

/// The container a series of an answer is about.
fn container(labels: &HashMap<String, String>) -> Option<PodContainerRef> {
    Some(PodContainerRef {
        namespace: labels.get("namespace")?.clone(),
        pod: labels.get("pod")?.clone(),
        container: labels.get("container")?.clone(),
    })
}

/// Asks the three queries and merges their answers.
pub(super) async fn pod_signals(
    http: &Http,
    request: &PodSignalsRequest,
) -> Result<PodSignalsBatch, MetricsError> {
    let mut batch = PodSignalsBatch::default();
    for signal in Signal::ALL {
        let q = query(signal, request.namespace.as_deref(), request.window);
        for sample in http.instant(&q, request.end).await? {
            let (Some(target), Some(v)) =
                (container(&sample.metric), super::value(&sample.value.1))
            else {
                continue;
            };
            *signal.slot(batch.containers.entry(target).or_default()) = Some(v);
        }
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_query_per_signal_grouped_by_pod_container() {
        let w = Duration::from_secs(300);
        assert_eq!(
            query(Signal::Cpu, Some("shop"), w),
            "sum by (namespace, pod, container) (rate(container_cpu_usage_seconds_total\
             {namespace=\"shop\",container!=\"\",container!=\"POD\"}[299999ms]))"
        );
        assert_eq!(
            query(Signal::Memory, None, w),
            "max by (namespace, pod, container) (max_over_time(container_memory_working_set_bytes\
             {container!=\"\",container!=\"POD\"}[299999ms]))"
        );
        let t = query(Signal::Throttled, Some("a\"b"), w);
        assert!(t.starts_with("clamp(sum by (namespace, pod, container) (increase(container_cpu_cfs_throttled_periods_total{namespace=\"a\\\"b\","), "{t}");
        assert!(
            t.contains(
                " / sum by (namespace, pod, container) (increase(container_cpu_cfs_periods_total{"
            ),
            "{t}"
        );
        assert!(t.ends_with("[299999ms])), 0, 1)"), "{t}");
    }
}
