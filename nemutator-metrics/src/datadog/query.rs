//! The Datadog wire format of `POST /api/v2/query/timeseries` and the
//! metric queries nemutator sends: pure functions, no I/O.
//!
//! A request carries one metric query per workload kind (the Datadog agent
//! tags a pod's series with `kube_deployment`, `kube_stateful_set`,
//! `kube_daemon_set` or `kube_cronjob`), each grouped by that tag and
//! `kube_container_name` and space-aggregated with `max`, so Datadog returns
//! the per-step maximum across a workload's pods; the formulas return each
//! query as it is.

use std::collections::BTreeMap;

use nemutator_core::metrics::{MetricsError, Resource};
use nemutator_core::workload::{ContainerRef, WorkloadKey, WorkloadKind};
use serde::{Deserialize, Serialize};

/// The Datadog agent's CPU usage of a container, in nanocores (a gauge:
/// the agent turns cAdvisor's counter into a rate between its scrapes).
pub const CPU_METRIC: &str = "kubernetes.cpu.usage.total";
/// The Datadog agent's working set of a container, in bytes.
pub const MEMORY_METRIC: &str = "kubernetes.memory.working_set";
/// The CPU request of a container, in cores.
pub const CPU_REQUESTS_METRIC: &str = "kubernetes.cpu.requests";
/// The memory request of a container, in bytes.
pub const MEMORY_REQUESTS_METRIC: &str = "kubernetes.memory.requests";
/// The tag of the container name.
pub const CONTAINER_TAG: &str = "kube_container_name";
/// The tag of the namespace.
pub const NAMESPACE_TAG: &str = "kube_namespace";

/// The workload kinds the backend asks about, with the agent's tag naming
/// each. Bare pods and Jobs outside a CronJob have no workload tag and are
/// not asked about.
pub const KINDS: [(WorkloadKind, &str); 4] = [
    (WorkloadKind::Deployment, "kube_deployment"),
    (WorkloadKind::StatefulSet, "kube_stateful_set"),
    (WorkloadKind::DaemonSet, "kube_daemon_set"),
    (WorkloadKind::CronJob, "kube_cronjob"),
];

/// The metric of a resource.
pub fn metric(resource: Resource) -> &'static str {
    match resource {
        Resource::Cpu => CPU_METRIC,
        Resource::Memory => MEMORY_METRIC,
    }
}

/// The request metric of a resource.
pub fn requests_metric(resource: Resource) -> &'static str {
    match resource {
        Resource::Cpu => CPU_REQUESTS_METRIC,
        Resource::Memory => MEMORY_REQUESTS_METRIC,
    }
}

/// How points of one pod are combined within a step: the working set's
/// largest value (as `max_over_time`), the CPU rate's mean (the agent's
/// rates averaged over the step are the rate over the step).
fn rollup(resource: Resource) -> &'static str {
    match resource {
        Resource::Cpu => "avg",
        Resource::Memory => "max",
    }
}

/// A namespace as a tag value: Kubernetes names only (lowercase letters,
/// digits, `-`), so that nothing can change the query's meaning.
pub fn check_namespace(ns: &str) -> Result<&str, MetricsError> {
    let ok = !ns.is_empty()
        && ns.len() <= 253
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(ns)
    } else {
        Err(MetricsError::Data(format!(
            "not a Kubernetes namespace name: {:?}",
            ns.chars().take(64).collect::<String>()
        )))
    }
}

pub(crate) fn scope(namespace: Option<&str>) -> Result<String, MetricsError> {
    Ok(match namespace {
        Some(ns) => format!("{NAMESPACE_TAG}:{}", check_namespace(ns)?),
        None => "*".into(),
    })
}

/// What a block of [`KINDS`]`.len()` queries of a usage request asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// The per-step maximum across pods of the usage.
    Usage,
    /// The largest request.
    Requests,
    /// Whether a container was OOM-killed (the kubelet's last state).
    Oom,
}

/// The kubelet's last terminated state of a container (tagged `reason`).
pub const LAST_TERMINATED_METRIC: &str = "kubernetes.containers.last_state.terminated";

/// The queries of a usage request, in blocks of one query per kind: the
/// per-step maximum across pods of each workload container; with
/// `requests`, the largest request; with `oom`, the OOM kills. Query `i`
/// belongs to block `i / KINDS.len()` and kind `i % KINDS.len()`.
pub fn usage_queries(
    resource: Resource,
    namespace: &str,
    step: i64,
    (requests, oom): (bool, bool),
) -> Result<(Vec<MetricQuery>, Vec<Block>), MetricsError> {
    let scope = scope(Some(namespace))?;
    let mut blocks = vec![Block::Usage];
    blocks.extend(requests.then_some(Block::Requests));
    blocks.extend(oom.then_some(Block::Oom));
    let queries = blocks
        .iter()
        .flat_map(|block| {
            let scope = scope.clone();
            KINDS.iter().map(move |(_, tag)| match block {
                Block::Usage => format!(
                    "max:{}{{{scope}}} by {{{tag},{CONTAINER_TAG}}}.rollup({}, {step})",
                    metric(resource),
                    rollup(resource)
                ),
                Block::Requests => format!(
                    "max:{}{{{scope}}} by {{{tag},{CONTAINER_TAG}}}.rollup(max, {step})",
                    requests_metric(resource)
                ),
                Block::Oom => format!(
                    "max:{LAST_TERMINATED_METRIC}{{{scope},reason:oomkilled}} by {{{tag},{CONTAINER_TAG}}}.rollup(max, {step})"
                ),
            })
        })
        .enumerate()
        .map(|(i, q)| MetricQuery::new(i, q))
        .collect();
    Ok((queries, blocks))
}

fn block_of(series: &ResponseSeries, blocks: &[Block]) -> Option<Block> {
    blocks.get(series.query_index / KINDS.len()).copied()
}

/// The queries of a season series request: per kind, each workload's usage
/// summed over its pods and containers.
pub fn series_queries(
    resource: Resource,
    namespace: &str,
    step: i64,
) -> Result<Vec<MetricQuery>, MetricsError> {
    let scope = scope(Some(namespace))?;
    Ok(KINDS
        .iter()
        .enumerate()
        .map(|(i, (_, tag))| {
            MetricQuery::new(
                i,
                format!(
                    "sum:{}{{{scope}}} by {{{tag}}}.rollup({}, {step})",
                    metric(resource),
                    rollup(resource)
                ),
            )
        })
        .collect())
}

/// The spacing of a listing's points over `window` seconds: an hour, or
/// whole hours enough to stay under [`MAX_POINTS`](super::MAX_POINTS).
pub fn listing_interval(window: i64) -> i64 {
    let hours = window.max(1).div_euclid(3600 * super::MAX_POINTS) + 1;
    hours.saturating_mul(3600)
}

/// The queries listing the workload containers with a working set in the
/// window: the largest per `interval` ([`listing_interval`]).
pub fn listing_queries(
    namespace: Option<&str>,
    interval: i64,
) -> Result<Vec<MetricQuery>, MetricsError> {
    let scope = scope(namespace)?;
    Ok(KINDS
        .iter()
        .enumerate()
        .map(|(i, (_, tag))| {
            MetricQuery::new(
                i,
                format!(
                    "max:{MEMORY_METRIC}{{{scope}}} by {{{NAMESPACE_TAG},{tag},{CONTAINER_TAG}}}.rollup(max, {interval})"
                ),
            )
        })
        .collect())
}

/// The request body.
#[derive(Debug, Serialize)]
pub struct TimeseriesRequest {
    /// The one data object.
    pub data: RequestData,
}

/// `data` of a request.
#[derive(Debug, Serialize)]
pub struct RequestData {
    /// Always `timeseries_request`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// What is asked.
    pub attributes: RequestAttributes,
}

/// `data.attributes` of a request.
#[derive(Debug, Serialize)]
pub struct RequestAttributes {
    /// Start, unix milliseconds, inclusive.
    pub from: i64,
    /// End, unix milliseconds, exclusive.
    pub to: i64,
    /// Spacing of the points, milliseconds.
    pub interval: i64,
    /// The metric queries.
    pub queries: Vec<MetricQuery>,
    /// One formula per query, returning it unchanged (series are indexed by
    /// formula).
    pub formulas: Vec<Formula>,
}

/// One metric query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricQuery {
    /// Always `metrics`.
    pub data_source: &'static str,
    /// Its name in formulas (`q0`, `q1`, ...).
    pub name: String,
    /// The query.
    pub query: String,
}

impl MetricQuery {
    pub(crate) fn new(index: usize, query: String) -> Self {
        MetricQuery {
            data_source: "metrics",
            name: format!("q{index}"),
            query,
        }
    }
}

/// One formula.
#[derive(Debug, Serialize)]
pub struct Formula {
    /// The formula: a query's name.
    pub formula: String,
}

impl TimeseriesRequest {
    /// A request for `queries` over `[from, to)` (unix seconds) at points
    /// every `interval` seconds.
    pub fn new(queries: Vec<MetricQuery>, from: i64, to: i64, interval: i64) -> Self {
        let formulas = queries
            .iter()
            .map(|q| Formula {
                formula: q.name.clone(),
            })
            .collect();
        TimeseriesRequest {
            data: RequestData {
                kind: "timeseries_request",
                attributes: RequestAttributes {
                    from: from.saturating_mul(1000),
                    to: to.saturating_mul(1000),
                    interval: interval.saturating_mul(1000),
                    queries,
                    formulas,
                },
            },
        }
    }
}

/// The response body (or an error's: `errors`).
#[derive(Debug, Default, Deserialize)]
pub struct TimeseriesResponse {
    /// The answer.
    #[serde(default)]
    pub data: Option<ResponseData>,
    /// Error messages.
    #[serde(default)]
    pub errors: Option<Vec<String>>,
}

/// `data` of a response.
#[derive(Debug, Default, Deserialize)]
pub struct ResponseData {
    /// The series, times and values.
    #[serde(default)]
    pub attributes: ResponseAttributes,
}

/// `data.attributes` of a response.
#[derive(Debug, Default, Deserialize)]
pub struct ResponseAttributes {
    /// One per returned series.
    #[serde(default)]
    pub series: Vec<ResponseSeries>,
    /// Point times, unix milliseconds: the start of each interval.
    #[serde(default)]
    pub times: Vec<i64>,
    /// One array per series, one value (or null) per time.
    #[serde(default)]
    pub values: Vec<Vec<Option<f64>>>,
}

/// A returned series.
#[derive(Debug, Default, Deserialize)]
pub struct ResponseSeries {
    /// `tag:value` of each grouping tag.
    #[serde(default)]
    pub group_tags: Vec<String>,
    /// The formula it answers.
    #[serde(default)]
    pub query_index: usize,
    /// Its unit (and per-unit), when Datadog knows it.
    #[serde(default)]
    pub unit: Option<Vec<Option<Unit>>>,
}

/// A unit.
#[derive(Debug, Default, Deserialize)]
pub struct Unit {
    /// `nanocore`, `byte`, ...
    #[serde(default)]
    pub name: String,
}

impl ResponseSeries {
    /// The value of `key` among the group tags; `None` when absent or
    /// `N/A` (a series without the tag).
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.group_tags.iter().find_map(|t| {
            let (k, v) = t.split_once(':')?;
            (k == key && !v.is_empty() && !v.eq_ignore_ascii_case("n/a")).then_some(v)
        })
    }

    /// The factor to the statistic's unit (cores, bytes): the metric's
    /// documented unit when the series names none.
    pub fn scale(&self, resource: Resource) -> Result<f64, MetricsError> {
        let name = self
            .unit
            .as_ref()
            .and_then(|u| u.first())
            .and_then(|u| u.as_ref())
            .map(|u| u.name.as_str())
            .unwrap_or(match resource {
                Resource::Cpu => "nanocore",
                Resource::Memory => "byte",
            });
        let factor = match (resource, name) {
            (Resource::Cpu, "nanocore") => 1e-9,
            (Resource::Cpu, "microcore") => 1e-6,
            (Resource::Cpu, "millicore") => 1e-3,
            (Resource::Cpu, "core") => 1.0,
            (Resource::Memory, "byte") => 1.0,
            (Resource::Memory, "kibibyte") => 1024.0,
            (Resource::Memory, "mebibyte") => 1024.0 * 1024.0,
            (Resource::Memory, "gibibyte") => 1024.0 * 1024.0 * 1024.0,
            _ => {
                return Err(MetricsError::Data(format!(
                    "datadog answered {resource} in an unknown unit {:?}",
                    name.chars().take(40).collect::<String>()
                )))
            }
        };
        Ok(factor)
    }
}

impl TimeseriesResponse {
    /// A response body (a success's or an error's).
    pub fn decode(body: &[u8]) -> Result<Self, MetricsError> {
        serde_json::from_slice(body).map_err(|e| {
            let e = e.to_string();
            MetricsError::Data(format!(
                "datadog answer: {}",
                e.chars().take(200).collect::<String>()
            ))
        })
    }
}

/// What a series is about, from its query's kind and its group tags.
fn workload(
    series: &ResponseSeries,
    namespace: Option<&str>,
) -> Option<(WorkloadKey, Option<String>)> {
    let (kind, tag) = KINDS.get(series.query_index % KINDS.len())?;
    let ns = match namespace {
        Some(ns) => ns,
        None => series.tag(NAMESPACE_TAG)?,
    };
    let key = WorkloadKey::new(ns, *kind, series.tag(tag)?);
    Some((key, series.tag(CONTAINER_TAG).map(str::to_string)))
}

/// The points of every series of an answer, per workload container:
/// `(step, value)` in the statistic's units, where a point of the interval
/// `[T, T + step)` belongs to the step ending at `T + step` (the
/// statistic's steps are closed on the right).
pub fn container_points(
    answer: &ResponseAttributes,
    blocks: &[Block],
    resource: Resource,
    namespace: &str,
    step: i64,
    into: &mut BTreeMap<ContainerRef, BTreeMap<i64, f64>>,
) -> Result<(), MetricsError> {
    for (series, values) in answers(answer)? {
        if block_of(series, blocks) != Some(Block::Usage) {
            continue;
        }
        let Some((workload, Some(container))) = workload(series, Some(namespace)) else {
            continue;
        };
        let scale = series.scale(resource)?;
        let points = into
            .entry(ContainerRef::new(workload, container))
            .or_default();
        for (t, v) in answer.times.iter().zip(values) {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                points.insert(t.div_euclid(1000).saturating_add(step), v * scale);
            }
        }
    }
    Ok(())
}

/// The current requests of an answer's request queries: the last value at a
/// step in `(since, until]`, per workload container.
pub fn current_requests(
    answer: &ResponseAttributes,
    blocks: &[Block],
    resource: Resource,
    namespace: &str,
    step: i64,
    (since, until): (i64, i64),
    into: &mut BTreeMap<ContainerRef, f64>,
) -> Result<(), MetricsError> {
    for (series, values) in answers(answer)? {
        if block_of(series, blocks) != Some(Block::Requests) {
            continue;
        }
        let Some((workload, Some(container))) = workload(series, Some(namespace)) else {
            continue;
        };
        let scale = series.scale(resource)?;
        let last = answer
            .times
            .iter()
            .zip(values)
            .filter(|(t, _)| {
                (since.saturating_add(1)..=until)
                    .contains(&(t.div_euclid(1000).saturating_add(step)))
            })
            .filter_map(|(_, v)| v.filter(|v| v.is_finite()))
            .next_back();
        if let Some(v) = last {
            into.insert(ContainerRef::new(workload, container), v * scale);
        }
    }
    Ok(())
}

/// The workload containers an answer's OOM queries saw killed: a value
/// above 0 at any step.
pub fn oom_kills(
    answer: &ResponseAttributes,
    blocks: &[Block],
    namespace: &str,
    into: &mut std::collections::BTreeSet<ContainerRef>,
) -> Result<(), MetricsError> {
    for (series, values) in answers(answer)? {
        if block_of(series, blocks) != Some(Block::Oom) {
            continue;
        }
        let Some((workload, Some(container))) = workload(series, Some(namespace)) else {
            continue;
        };
        if values.iter().flatten().any(|v| *v > 0.0) {
            into.insert(ContainerRef::new(workload, container));
        }
    }
    Ok(())
}

/// The per-step totals of every workload of an answer (as
/// [`container_points`]).
pub fn workload_points(
    answer: &ResponseAttributes,
    resource: Resource,
    namespace: &str,
    step: i64,
    into: &mut BTreeMap<WorkloadKey, BTreeMap<i64, f64>>,
) -> Result<(), MetricsError> {
    for (series, values) in answers(answer)? {
        let Some((workload, _)) = workload(series, Some(namespace)) else {
            continue;
        };
        let scale = series.scale(resource)?;
        let points = into.entry(workload).or_default();
        for (t, v) in answer.times.iter().zip(values) {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                *points
                    .entry(t.div_euclid(1000).saturating_add(step))
                    .or_default() += v * scale;
            }
        }
    }
    Ok(())
}

/// The workload containers of a listing answer with a value.
/// A container counts when a value lies in an interval ending after
/// `since` (unix seconds).
pub fn listed(
    answer: &ResponseAttributes,
    namespace: Option<&str>,
    interval: i64,
    since: i64,
) -> Vec<ContainerRef> {
    let Ok(pairs) = answers(answer) else {
        return Vec::new();
    };
    let recent = |t: &i64| t.div_euclid(1000).saturating_add(interval) > since;
    pairs
        .filter(|(_, values)| {
            answer
                .times
                .iter()
                .zip(values.iter())
                .any(|(t, v)| recent(t) && v.is_some_and(f64::is_finite))
        })
        .filter_map(|(series, _)| match workload(series, namespace)? {
            (w, Some(c)) => Some(ContainerRef::new(w, c)),
            _ => None,
        })
        .collect()
}

/// Series paired with their values, after checking the shape.
pub(crate) fn answers(
    answer: &ResponseAttributes,
) -> Result<impl Iterator<Item = (&ResponseSeries, &Vec<Option<f64>>)>, MetricsError> {
    if answer.series.len() != answer.values.len()
        || answer.values.iter().any(|v| v.len() != answer.times.len())
    {
        return Err(MetricsError::Data(format!(
            "datadog answered {} series with {} value arrays for {} times",
            answer.series.len(),
            answer.values.len(),
            answer.times.len()
        )));
    }
    Ok(answer.series.iter().zip(&answer.values))
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
