//! Live pod signals ([`MetricsSource::pod_signals`](nemutator_core::metrics::MetricsSource::pod_signals))
//! from Datadog: one HTTP request of four metric queries, each grouped by
//! `kube_namespace`, `pod_name` and `kube_container_name`, over the points
//! in `(end - window, end]` (`from = end - window + 1 s`, `to = end + 1 s`),
//! rolled up every [`step`] seconds:
//!
//! * CPU: the mean of `kubernetes.cpu.usage.total` (nanocores: the agent's
//!   rate of cAdvisor's counter between its collections), so the rate over
//!   the window;
//! * memory: the largest `kubernetes.memory.working_set`;
//! * throttled: `kubernetes.cpu.cfs.throttled.periods` over
//!   `kubernetes.cpu.cfs.periods` (the agent's per-second rates of cAdvisor's
//!   two CFS counters), each summed over the window's intervals: throttled
//!   periods per elapsed period, clamped to `[0, 1]`; `None` for a container
//!   without them (no CPU limit) or in which no period elapsed.
//!
//! Intervals of 15 s (the agent's collection interval) hold one point each,
//! so the mean of the intervals' means is the mean of the points; longer
//! windows take longer intervals, under Datadog's 1,500 points per series.

use std::collections::BTreeMap;

use nemutator_core::metrics::{
    MetricsError, PodContainerRef, PodSignals, PodSignalsBatch, PodSignalsRequest, Resource,
};

use super::query::{
    answers, scope, MetricQuery, ResponseAttributes, TimeseriesRequest, CONTAINER_TAG, CPU_METRIC,
    MEMORY_METRIC, NAMESPACE_TAG,
};
use super::MAX_POINTS;

/// The agent's rate of cAdvisor's elapsed CFS periods, per second.
pub const CFS_PERIODS_METRIC: &str = "kubernetes.cpu.cfs.periods";
/// The agent's rate of cAdvisor's throttled CFS periods, per second.
pub const CFS_THROTTLED_METRIC: &str = "kubernetes.cpu.cfs.throttled.periods";
/// The tag of the pod name.
pub const POD_TAG: &str = "pod_name";

/// The agent's collection interval: the shortest rollup asked.
const AGENT_INTERVAL: i64 = 15;

/// The rollup interval for a window: 15 s, or longer multiples of it to stay
/// under [`MAX_POINTS`] points.
pub fn step(window_secs: i64) -> i64 {
    let per_point = window_secs
        .max(1)
        .unsigned_abs()
        .div_ceil(MAX_POINTS.unsigned_abs());
    let intervals = per_point.div_ceil(AGENT_INTERVAL.unsigned_abs()).max(1);
    i64::try_from(intervals)
        .unwrap_or(i64::MAX)
        .saturating_mul(AGENT_INTERVAL)
}

/// What each query of the request answers, in order.
const ORDER: [&str; 4] = ["cpu", "memory", "periods", "throttled"];

/// The request of a [`PodSignalsRequest`].
pub fn request(r: &PodSignalsRequest) -> Result<TimeseriesRequest, MetricsError> {
    let scope = scope(r.namespace.as_deref())?;
    let window = i64::try_from(r.window.as_secs()).unwrap_or(i64::MAX).max(1);
    let step = step(window);
    let by = format!("by {{{NAMESPACE_TAG},{POD_TAG},{CONTAINER_TAG}}}");
    let queries = [
        format!("sum:{CPU_METRIC}{{{scope}}} {by}.rollup(avg, {step})"),
        format!("max:{MEMORY_METRIC}{{{scope}}} {by}.rollup(max, {step})"),
        format!("sum:{CFS_PERIODS_METRIC}{{{scope}}} {by}.rollup(avg, {step})"),
        format!("sum:{CFS_THROTTLED_METRIC}{{{scope}}} {by}.rollup(avg, {step})"),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, q)| MetricQuery::new(i, q))
    .collect();
    Ok(TimeseriesRequest::new(
        queries,
        r.end.saturating_sub(window).saturating_add(1),
        r.end.saturating_add(1),
        step,
    ))
}

/// Per container: the sums and count of CPU points, the largest working
/// set, and the sums of the two CFS rates.
#[derive(Default)]
struct Acc {
    cpu: Option<(f64, usize)>,
    memory: Option<f64>,
    periods: Option<f64>,
    throttled: Option<f64>,
}

/// The signals of an answer to [`request`].
pub fn signals(answer: &ResponseAttributes) -> Result<PodSignalsBatch, MetricsError> {
    let mut acc: BTreeMap<PodContainerRef, Acc> = BTreeMap::new();
    for (series, values) in answers(answer)? {
        let (Some(namespace), Some(pod), Some(container), Some(&what)) = (
            series.tag(NAMESPACE_TAG),
            series.tag(POD_TAG),
            series.tag(CONTAINER_TAG),
            ORDER.get(series.query_index),
        ) else {
            continue;
        };
        let points: Vec<f64> = values
            .iter()
            .filter_map(|v| v.filter(|v| v.is_finite()))
            .collect();
        if points.is_empty() {
            continue;
        }
        let a = acc
            .entry(PodContainerRef {
                namespace: namespace.to_string(),
                pod: pod.to_string(),
                container: container.to_string(),
            })
            .or_default();
        let sum: f64 = points.iter().sum();
        match what {
            "cpu" => {
                let scale = series.scale(Resource::Cpu)?;
                let (s, n) = a.cpu.get_or_insert((0.0, 0));
                *s += sum * scale;
                *n += points.len();
            }
            "memory" => {
                let scale = series.scale(Resource::Memory)?;
                let max = points.iter().copied().fold(f64::NEG_INFINITY, f64::max) * scale;
                a.memory = Some(a.memory.map_or(max, |m| m.max(max)));
            }
            // Both rates in one unit: their ratio has none.
            "periods" => *a.periods.get_or_insert(0.0) += sum,
            _ => *a.throttled.get_or_insert(0.0) += sum,
        }
    }
    Ok(PodSignalsBatch {
        containers: acc
            .into_iter()
            .map(|(k, a)| {
                let throttled = match (a.throttled, a.periods) {
                    (Some(t), Some(p)) if p > 0.0 => Some((t / p).clamp(0.0, 1.0)),
                    _ => None,
                };
                let signals = PodSignals {
                    cpu: a.cpu.map(|(s, n)| s / n as f64),
                    memory: a.memory,
                    throttled,
                };
                (k, signals)
            })
            .filter(|(_, s)| s.cpu.is_some() || s.memory.is_some() || s.throttled.is_some())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datadog::query::ResponseSeries;
    use std::time::Duration;

    #[test]
    fn one_request_of_four_queries_over_the_window() {
        let r = PodSignalsRequest {
            namespace: Some("shop".into()),
            window: Duration::from_secs(300),
            end: 1_000_000,
        };
        let body =
            serde_json::to_value(request(&r).unwrap_or_else(|e| panic!("{e}"))).unwrap_or_default();
        let a = &body["data"]["attributes"];
        assert_eq!(
            (a["from"].as_i64(), a["to"].as_i64()),
            (Some(999_701_000), Some(1_000_001_000))
        );
        assert_eq!(
            a["queries"][0]["query"].as_str(),
            Some("sum:kubernetes.cpu.usage.total{kube_namespace:shop} by {kube_namespace,pod_name,kube_container_name}.rollup(avg, 15)")
        );
        assert_eq!(a["queries"].as_array().map(Vec::len), Some(4));
        assert!(request(&PodSignalsRequest {
            namespace: Some("a}b".into()),
            ..r
        })
        .is_err());
        assert_eq!(step(300), 15);
        assert_eq!(step(86_400), 60);
        assert!(step(30 * 86_400) * MAX_POINTS >= 30 * 86_400);
    }

    #[test]
    fn answers_become_signals() {
        let tags = |pod: &str| {
            vec![
                "kube_namespace:shop".to_string(),
                format!("pod_name:{pod}"),
                "kube_container_name:app".to_string(),
            ]
        };
        let mk = |index: usize, pod: &str| ResponseSeries {
            group_tags: tags(pod),
            query_index: index,
            unit: None,
        };
        let answer = ResponseAttributes {
            series: vec![
                mk(0, "a"),
                mk(1, "a"),
                mk(2, "a"),
                mk(3, "a"),
                mk(2, "b"),
                mk(3, "b"),
            ],
            times: vec![0, 15_000],
            values: vec![
                vec![Some(2e8), Some(4e8)],
                vec![Some(5.0), Some(7.0)],
                vec![Some(10.0), Some(10.0)],
                vec![Some(2.0), Some(3.0)],
                vec![Some(0.0), None],
                vec![Some(0.0), None],
            ],
        };
        let batch = signals(&answer).unwrap_or_else(|e| panic!("{e}"));
        let key = |pod: &str| PodContainerRef {
            namespace: "shop".into(),
            pod: pod.into(),
            container: "app".into(),
        };
        let a = batch.containers[&key("a")];
        assert!(a.cpu.is_some_and(|c| (c - 0.3).abs() < 1e-12), "{a:?}");
        assert_eq!((a.memory, a.throttled), (Some(7.0), Some(0.25)));
        assert!(
            !batch.containers.contains_key(&key("b")),
            "no period elapsed: nothing"
        );
    }
}
