//! The PromQL of the Prometheus backend: the statistic of
//! [`nemutator_core::metrics::stat`] for every container of a namespace in
//! one query.
//!
//! * **Workload identity.** One `label_replace` derives the workload's kind
//!   and name (`nemutator_workload`) from the pod name by the naming rules of
//!   [`WorkloadKey::from_pod_name`](nemutator_core::workload::WorkloadKey::from_pod_name),
//!   first match winning: CronJob `<name>-<8 digits>-<5>`, Deployment
//!   `<name>-<hash>-<5>`, DaemonSet/Job `<name>-<5>`, StatefulSet
//!   `<name>-<ordinal>`, else a bare pod. `max by (namespace,
//!   nemutator_workload, container)` then pools every pod of a workload,
//!   every ReplicaSet generation included.
//! * **Per step.** Memory: `max_over_time(working_set[step])`; CPU:
//!   `rate(counter[rate_window])`, or, where the kubernetes-mixin recording
//!   rules exist and the rate window is their 5 minutes, the last value of
//!   `...:sum_rate5m` (then `...:sum_irate`) in the step.
//! * **Statistics.** `quantile_over_time` over a subquery `[window:step]`
//!   of the per-step maximum, `and on()` the season mask, and
//!   `count_over_time` of the same at hourly checkpoints (`[window:3600s]`); each tagged with `nemutator_stat` (`q0`, `c0`, `q1`, ...) and
//!   joined with `or`, so one HTTP request answers them all. OOM kills come
//!   in the same request (`nemutator_stat="oom"`).
//!
//! Ranges are written `d - 1ms`, so Prometheus 2 (closed ranges) and 3
//! (left-open) select the samples of `(t - d, t]` alike.

use std::fmt::Write as _;
use std::time::Duration;

use nemutator_core::metrics::{
    stat, PeriodicMask, Resolution, Resource, StatSpec, CURRENT_LOOKBACK,
};
use nemutator_core::workload::WorkloadKind;

/// cAdvisor's CPU counter.
pub const RAW_CPU: &str = "container_cpu_usage_seconds_total";
/// cAdvisor's working set.
pub const RAW_MEMORY: &str = "container_memory_working_set_bytes";
/// kubernetes-mixin: CPU rate over 5 minutes per container.
pub const RULE_CPU_RATE5M: &str =
    "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_rate5m";
/// kubernetes-mixin (older): instant CPU rate per container.
pub const RULE_CPU_IRATE: &str =
    "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate";
/// kubernetes-mixin: working set per container.
pub const RULE_MEMORY: &str = "node_namespace_pod_container:container_memory_working_set_bytes";
/// kube-state-metrics: the reason of a container's last termination.
pub const TERMINATED: &str = "kube_pod_container_status_last_terminated_reason";
/// kube-state-metrics' requests of a container.
pub const REQUESTS: &str = "kube_pod_container_resource_requests";

/// The label holding the derived workload kind and name.
pub const WORKLOAD_LABEL: &str = "nemutator_workload";
/// The label naming a statistic in a combined answer.
pub const STAT_LABEL: &str = "nemutator_stat";

/// The alphabet of generated name suffixes.
const SAFE: &str = "[bcdfghjklmnpqrstvwxz2456789]";

/// Which recording rules the server has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// `...:sum_rate5m`.
    pub cpu_rate5m: bool,
    /// `...:sum_irate`.
    pub cpu_irate: bool,
    /// `node_namespace_pod_container:container_memory_working_set_bytes`.
    pub memory: bool,
}

/// The query that finds which recording rules exist.
pub fn rules_query() -> String {
    format!(
        "count by (__name__) ({{__name__=~\"{RULE_CPU_RATE5M}|{RULE_CPU_IRATE}|{RULE_MEMORY}\"}})"
    )
}

/// A PromQL string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `d - 1ms` as a PromQL duration.
fn range(d: Duration) -> String {
    format!("{}ms", d.as_millis().saturating_sub(1).max(1))
}

/// The selector of cAdvisor's per-container series of a namespace.
pub fn container_selector(metric: &str, namespace: &str) -> String {
    format!(
        "{metric}{{namespace={},container!=\"\",container!=\"POD\"}}",
        quote(namespace)
    )
}

/// The naming rules of [`WorkloadKey::from_pod_name`](nemutator_core::workload::WorkloadKey::from_pod_name),
/// first match winning, each capturing the workload's name.
fn naming_rules() -> [(&'static str, String); 5] {
    [
        ("CronJob", format!("(.+)-[0-9]{{8}}-{SAFE}{{5}}")),
        ("Deployment", format!("(.+)-{SAFE}{{6,10}}-{SAFE}{{5}}")),
        ("DaemonSet", format!("(.+)-{SAFE}{{5}}")),
        ("StatefulSet", "(.+)-[0-9]{1,5}".to_string()),
        ("Pod", "(.+)".to_string()),
    ]
}

/// `expr` with the label `nemutator_workload` derived from `pod` by one
/// `label_replace`: the naming rules as alternatives of one regex (Go's
/// regexp takes the first alternative that matches the whole name), the
/// replacement naming every kind with its capture, such as
/// `CronJob=,Deployment=web,DaemonSet=,StatefulSet=,Pod=` (pod names hold
/// neither `=` nor `,`); [`parse_workload`] reads it back. One call instead
/// of one per rule: Prometheus hashes every series at every step for each.
pub fn with_workload(expr: &str) -> String {
    let rules = naming_rules();
    let regex: Vec<&str> = rules.iter().map(|(_, r)| r.as_str()).collect();
    let replacement: Vec<String> = rules
        .iter()
        .enumerate()
        .map(|(i, (kind, _))| format!("{kind}=${}", i + 1))
        .collect();
    format!(
        "label_replace({expr}, \"{WORKLOAD_LABEL}\", \"{}\", \"pod\", \"{}\")",
        replacement.join(","),
        regex.join("|")
    )
}

/// The kind and name of a `nemutator_workload` label value.
pub fn parse_workload(value: &str) -> Option<(WorkloadKind, &str)> {
    value.split(',').find_map(|part| {
        let (kind, name) = part.split_once('=')?;
        (!name.is_empty()).then_some(())?;
        Some((kind.parse().ok()?, name))
    })
}

/// The per-pod value at each step (see the module docs).
pub fn per_pod(resource: Resource, namespace: &str, res: &Resolution, rules: Rules) -> String {
    let step = range(res.step);
    match resource {
        Resource::Memory if rules.memory => format!(
            "max_over_time({RULE_MEMORY}{{namespace={}}}[{step}])",
            quote(namespace)
        ),
        Resource::Memory => format!(
            "max_over_time({}[{step}])",
            container_selector(RAW_MEMORY, namespace)
        ),
        Resource::Cpu if res.rate_window == Duration::from_secs(300) && rules.cpu_rate5m => {
            format!(
                "last_over_time({RULE_CPU_RATE5M}{{namespace={}}}[{step}])",
                quote(namespace)
            )
        }
        Resource::Cpu if res.rate_window == Duration::from_secs(300) && rules.cpu_irate => {
            format!(
                "last_over_time({RULE_CPU_IRATE}{{namespace={}}}[{step}])",
                quote(namespace)
            )
        }
        Resource::Cpu => format!(
            "rate({}[{}])",
            container_selector(RAW_CPU, namespace),
            range(res.rate_window)
        ),
    }
}

/// The per-step maximum over each workload container's pods.
pub fn per_workload(resource: Resource, namespace: &str, res: &Resolution, rules: Rules) -> String {
    format!(
        "max by (namespace, {WORKLOAD_LABEL}, container) ({})",
        with_workload(&per_pod(resource, namespace, res, rules))
    )
}

/// The phase of the evaluation time in a mask's cycle, in seconds.
fn phase(mask: &PeriodicMask) -> String {
    if mask.is_weekly() {
        // Seconds since Monday 00:00 UTC (day_of_week: 0 is Sunday); the
        // steps are whole minutes, so minute() loses nothing.
        let of_week = "((day_of_week() + 6) % 7) * 86400 + hour() * 3600 + minute() * 60";
        if mask.period() == 86_400 {
            "(hour() * 3600 + minute() * 60)".to_string()
        } else if mask.period() == nemutator_core::metrics::stat::WEEK {
            format!("({of_week})")
        } else {
            format!("(({of_week}) % {})", mask.period())
        }
    } else {
        format!(
            "((time() - {}) % {})",
            nemutator_core::metrics::stat::EPOCH_MONDAY,
            mask.period()
        )
    }
}

/// A condition that is a non-empty vector exactly when the evaluation time
/// is inside `mask`; `None` for a mask that is never true.
pub fn mask_condition(mask: &PeriodicMask) -> Option<String> {
    let p = phase(mask);
    let parts: Vec<String> = mask
        .windows()
        .iter()
        .map(|&(a, b)| format!("({p} >= {a} < {b})"))
        .collect();
    (!parts.is_empty()).then(|| parts.join(" or "))
}

/// Tag `expr`'s series with `nemutator_stat="{tag}"`.
fn tagged(expr: &str, tag: &str) -> String {
    format!("label_replace({expr}, \"{STAT_LABEL}\", \"{tag}\", \"\", \"\")")
}

/// One query answering every statistic of `stats` (and OOM kills when
/// `oom`) for every container of `namespace`; `None` when nothing can be
/// true (every mask empty, no OOM asked).
pub fn usage_query(
    resource: Resource,
    namespace: &str,
    window: Duration,
    res: &Resolution,
    stats: &[StatSpec],
    (oom, requests): (bool, bool),
    rules: Rules,
) -> Option<String> {
    let inner = per_workload(resource, namespace, res, rules);
    let sub = format!("[{}:{}s]", range(window), res.step.as_secs());
    let hours = format!("[{}:{}s]", range(window), stat::CHECKPOINT);
    let mut parts = Vec::new();
    for (i, spec) in stats.iter().enumerate() {
        let masked = match &spec.mask {
            None => inner.clone(),
            Some(mask) => match mask_condition(mask) {
                Some(cond) => format!("{inner} and on() ({cond})"),
                None => continue,
            },
        };
        let q = spec.quantile.clamp(0.0, 1.0);
        let mut quantile = String::new();
        let _ = write!(quantile, "quantile_over_time({q}, ({masked}){sub})");
        parts.push(tagged(&quantile, &format!("q{i}")));
        // The hours of history depend on the mask only: counted once per mask.
        if count_owner(stats, i) == i {
            parts.push(tagged(
                &format!("count_over_time(({masked}){hours})"),
                &format!("c{i}"),
            ));
        }
    }
    if oom {
        let oom = format!(
            "max by (namespace, {WORKLOAD_LABEL}, container) ({}) > 0",
            with_workload(&format!(
                "max_over_time({TERMINATED}{{namespace={},reason=\"OOMKilled\"}}[{}])",
                quote(namespace),
                range(window)
            ))
        );
        parts.push(tagged(&oom, "oom"));
    }
    if requests {
        let lookback = Duration::from_secs(CURRENT_LOOKBACK.unsigned_abs());
        let current = format!(
            "max by (namespace, {WORKLOAD_LABEL}, container) ({})",
            with_workload(&format!(
                "last_over_time({REQUESTS}{{namespace={},resource=\"{}\"}}[{}])",
                quote(namespace),
                resource.as_str(),
                range(lookback)
            ))
        );
        parts.push(tagged(&current, "req"));
    }
    (!parts.is_empty()).then(|| parts.join(" or "))
}

/// The statistic whose `c` part counts the hours of statistic `i`: the
/// first with the same mask.
pub fn count_owner(stats: &[StatSpec], i: usize) -> usize {
    let mask = stats.get(i).map(|s| &s.mask);
    stats
        .iter()
        .position(|s| Some(&s.mask) == mask)
        .unwrap_or(i)
}

/// The per-workload total (every container and pod summed) at each step: a
/// range query's expression for season learning.
pub fn series_query(resource: Resource, namespace: &str, res: &Resolution, rules: Rules) -> String {
    format!(
        "sum by (namespace, {WORKLOAD_LABEL}) ({})",
        with_workload(&per_pod(resource, namespace, res, rules))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_res() -> Resolution {
        Resolution::DEFAULT
    }

    #[test]
    fn raw_and_rule_selectors() {
        let raw = per_pod(Resource::Cpu, "shop", &mk_res(), Rules::default());
        assert_eq!(
            raw,
            "rate(container_cpu_usage_seconds_total{namespace=\"shop\",container!=\"\",container!=\"POD\"}[299999ms])"
        );
        let rules = Rules {
            cpu_rate5m: true,
            cpu_irate: true,
            memory: true,
        };
        let cpu = per_pod(Resource::Cpu, "shop", &mk_res(), rules);
        assert!(cpu.starts_with("last_over_time(node_namespace_pod_container:container_cpu_usage_seconds_total:sum_rate5m{namespace=\"shop\"}[299999ms])"), "{cpu}");
        let other = Resolution::new(Duration::from_secs(60), Duration::from_secs(120));
        assert!(
            per_pod(Resource::Cpu, "shop", &other, rules).starts_with("rate("),
            "a rule's 5m window only"
        );
        let mem = per_pod(Resource::Memory, "a\"b", &mk_res(), Rules::default());
        assert!(mem.contains("namespace=\"a\\\"b\""), "{mem}");
    }

    #[test]
    fn masks_use_weekday_and_time_of_day() {
        let day = PeriodicMask::new(86_400, [(9 * 3600, 17 * 3600)]);
        let cond = day.as_ref().and_then(mask_condition).unwrap_or_default();
        assert_eq!(cond, "((hour() * 3600 + minute() * 60) >= 32400 < 61200)");
        let week = PeriodicMask::new(604_800, [(0, 3600), (86_400, 90_000)]);
        let cond = week.as_ref().and_then(mask_condition).unwrap_or_default();
        assert!(
            cond.contains("day_of_week()") && cond.contains(" or "),
            "{cond}"
        );
        let odd = PeriodicMask::new(5 * 86_400, [(0, 3600)]);
        let cond = odd.as_ref().and_then(mask_condition).unwrap_or_default();
        assert_eq!(cond, "(((time() - 345600) % 432000) >= 0 < 3600)");
        assert_eq!(
            PeriodicMask::new(86_400, [])
                .as_ref()
                .and_then(mask_condition),
            None
        );
    }

    #[test]
    fn hours_are_counted_once_per_mask() {
        let day = PeriodicMask::new(86_400, [(0, 3600)]);
        let stats: Vec<StatSpec> = [(0.5, None), (0.9, day.clone()), (1.0, None), (0.1, day)]
            .into_iter()
            .map(|(quantile, mask)| StatSpec { quantile, mask })
            .collect();
        let owners: Vec<usize> = (0..4).map(|i| count_owner(&stats, i)).collect();
        assert_eq!(owners, vec![0, 1, 0, 1]);
        let q = usage_query(
            Resource::Cpu,
            "ns",
            Duration::from_secs(86_400),
            &mk_res(),
            &stats,
            (false, false),
            Rules::default(),
        )
        .unwrap_or_default();
        assert_eq!(q.matches("count_over_time(").count(), 2, "{q}");
        assert_eq!(q.matches("quantile_over_time(").count(), 4);
    }

    #[test]
    fn one_query_holds_every_statistic() {
        let stats = [
            StatSpec {
                quantile: 0.95,
                mask: None,
            },
            StatSpec {
                quantile: 0.99,
                mask: PeriodicMask::new(86_400, [(0, 60)]),
            },
        ];
        let q = usage_query(
            Resource::Memory,
            "ns",
            Duration::from_secs(7 * 86_400),
            &mk_res(),
            &stats,
            (true, true),
            Rules::default(),
        )
        .unwrap_or_default();
        assert!(q.contains("last_over_time(kube_pod_container_resource_requests{namespace=\"ns\",resource=\"memory\"}[3599999ms])"), "{q}");
        for tag in ["q0", "c0", "q1", "c1", "oom", "req"] {
            assert!(
                q.contains(&format!("\"{STAT_LABEL}\", \"{tag}\"")),
                "{tag}: {q}"
            );
        }
        assert!(q.contains("[604799999ms:300s]"), "{q}");
        assert!(q.contains("quantile_over_time(0.95, "), "{q}");
        assert!(q.contains("and on() ("), "{q}");
        assert_eq!(
            q.matches("\"pod\", \"(.+)-[0-9]{8}").count(),
            6,
            "one label_replace per part"
        );
    }

    #[test]
    fn workload_labels_read_back() {
        let expr = with_workload("x");
        assert!(
            expr.contains("\"CronJob=$1,Deployment=$2,DaemonSet=$3,StatefulSet=$4,Pod=$5\""),
            "{expr}"
        );
        assert_eq!(
            parse_workload("CronJob=,Deployment=web,DaemonSet=,StatefulSet=,Pod="),
            Some((WorkloadKind::Deployment, "web"))
        );
        assert_eq!(
            parse_workload("CronJob=,Deployment=,DaemonSet=,StatefulSet=,Pod="),
            None
        );
        assert_eq!(parse_workload("Bogus=x"), None);
    }
}
