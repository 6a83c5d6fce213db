//! The safety rules of eviction as pure functions of a pod's facts, its
//! workload's counts and what the window and the pass have evicted so far.
//! No I/O: [`super::KubeEvictor`] gathers the facts and asks the API server.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ledger::Ledger;
use crate::workload::WorkloadKey;

/// The annotation the kubelet puts on the API copy of a static pod.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The prefix of the priority classes reserved for the pods a cluster
/// cannot run without (`system-cluster-critical`, `system-node-critical`:
/// Kubernetes refuses other classes with this prefix).
pub const CRITICAL_PRIORITY_CLASS_PREFIX: &str = "system-";
/// Priorities from here up are reserved for system-critical pods.
pub const CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// A safety rule that refused an eviction.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Rule {
    /// The pod is already being deleted.
    Terminating,
    /// A static pod's mirror: the API cannot evict what the kubelet runs
    /// from a file.
    Mirror,
    /// No controller owns the pod: nothing would re-create it.
    Bare,
    /// A DaemonSet's pod comes back on the same node.
    DaemonSet,
    /// A system-critical pod.
    SystemCritical,
    /// The workload had a pod evicted by an earlier pass within the cool-down.
    CoolDown,
    /// The workload has fewer ready pods than the minimum.
    MinReplicas,
    /// The eviction would leave fewer ready pods than the tolerance keeps.
    Tolerance,
    /// The node's evictions in this window reached the limit.
    NodeLimit,
    /// The namespace's evictions in this window reached the limit.
    NamespaceLimit,
    /// All evictions in this window reached the limit.
    TotalLimit,
}

impl Rule {
    /// Every rule, in the order they are checked.
    pub const ALL: [Rule; 11] = [
        Rule::Terminating,
        Rule::Mirror,
        Rule::Bare,
        Rule::DaemonSet,
        Rule::SystemCritical,
        Rule::CoolDown,
        Rule::MinReplicas,
        Rule::Tolerance,
        Rule::NodeLimit,
        Rule::NamespaceLimit,
        Rule::TotalLimit,
    ];

    /// The name, as in JSON and the `rule` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Terminating => "Terminating",
            Rule::Mirror => "Mirror",
            Rule::Bare => "Bare",
            Rule::DaemonSet => "DaemonSet",
            Rule::SystemCritical => "SystemCritical",
            Rule::CoolDown => "CoolDown",
            Rule::MinReplicas => "MinReplicas",
            Rule::Tolerance => "Tolerance",
            Rule::NodeLimit => "NodeLimit",
            Rule::NamespaceLimit => "NamespaceLimit",
            Rule::TotalLimit => "TotalLimit",
        }
    }
}

/// The limits of eviction. The defaults follow the VPA updater
/// (`--min-replicas=2`, `--eviction-tolerance=0.5`).
#[derive(Clone, Debug, PartialEq)]
pub struct EvictionPolicy {
    /// A workload with fewer ready pods is never evicted from.
    pub min_replicas: u32,
    /// The fraction of a workload's pods that may be evicted at once (VPA's
    /// eviction tolerance): of `n` pods, at least `n - floor(n * tolerance)`
    /// stay ready; when that rounds to no pod at all, one may go if all are
    /// ready.
    pub tolerance: f64,
    /// Evictions per node per window.
    pub per_node: u32,
    /// Evictions per namespace per window.
    pub per_namespace: u32,
    /// Evictions per window in all.
    pub total: u32,
    /// The window the limits count in.
    pub window: Duration,
    /// After a pass evicts a pod of a workload, later passes leave the
    /// workload alone this long, so that its new pods become ready and
    /// nothing loops.
    pub cooldown: Duration,
}

impl Default for EvictionPolicy {
    fn default() -> Self {
        EvictionPolicy {
            min_replicas: 2,
            tolerance: 0.5,
            per_node: 2,
            per_namespace: 5,
            total: 10,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(600),
        }
    }
}

/// What the rules need to know of a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodFacts {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The node it runs on.
    pub node: Option<String>,
    /// Its workload (from the controller owner reference).
    pub workload: Option<WorkloadKey>,
    /// Kind of the controller owner reference, if any.
    pub controller_kind: Option<String>,
    /// Has the mirror annotation.
    pub mirror: bool,
    /// `spec.priorityClassName`.
    pub priority_class: Option<String>,
    /// `spec.priority`.
    pub priority: Option<i32>,
    /// Has a deletion timestamp.
    pub terminating: bool,
    /// Condition `Ready` is `True` (and not terminating).
    pub ready: bool,
}

impl PodFacts {
    /// The facts of `pod`.
    pub fn of(pod: &Pod) -> PodFacts {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let controller = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        let spec = pod.spec.as_ref();
        let terminating = meta.deletion_timestamp.is_some();
        let ready = !terminating
            && pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        PodFacts {
            workload: controller.and_then(|_| WorkloadKey::from_pod(pod, &namespace)),
            name: meta.name.clone().unwrap_or_default(),
            node: spec.and_then(|s| s.node_name.clone()),
            controller_kind: controller.map(|o| o.kind.clone()),
            mirror: meta
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION)),
            priority_class: spec.and_then(|s| s.priority_class_name.clone()),
            priority: spec.and_then(|s| s.priority),
            terminating,
            ready,
            namespace,
        }
    }
}

/// A workload's pods as the rules count them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkloadCount {
    /// Pods that are not terminating.
    pub pods: u32,
    /// Of those, the ready ones.
    pub ready: u32,
}

impl WorkloadCount {
    /// Counts of every workload in `pods`.
    pub fn of_all<'a>(pods: impl IntoIterator<Item = &'a PodFacts>) -> HashMap<WorkloadKey, Self> {
        let mut out: HashMap<WorkloadKey, WorkloadCount> = HashMap::new();
        for pod in pods {
            if let (Some(w), false) = (&pod.workload, pod.terminating) {
                let c = out.entry(w.clone()).or_default();
                c.pods += 1;
                c.ready += u32::from(pod.ready);
            }
        }
        out
    }
}

/// A refusal: the rule and why.
pub type Refusal = (Rule, String);

/// The rules that look at the pod alone.
pub fn check_pod(pod: &PodFacts) -> Result<(), Refusal> {
    if pod.terminating {
        return Err((Rule::Terminating, "the pod is already being deleted".into()));
    }
    if pod.mirror {
        return Err((
            Rule::Mirror,
            format!("a static pod's mirror ({MIRROR_ANNOTATION}) cannot be evicted"),
        ));
    }
    let Some(kind) = pod.controller_kind.as_deref() else {
        return Err((
            Rule::Bare,
            "no controller owns the pod: nothing would re-create it".into(),
        ));
    };
    if kind == "DaemonSet" {
        return Err((
            Rule::DaemonSet,
            "a DaemonSet's pod comes back on the same node".into(),
        ));
    }
    if let Some(class) = pod
        .priority_class
        .as_deref()
        .filter(|c| c.starts_with(CRITICAL_PRIORITY_CLASS_PREFIX))
    {
        return Err((
            Rule::SystemCritical,
            format!("priority class {class} is system-critical"),
        ));
    }
    if let Some(p) = pod.priority.filter(|p| *p >= CRITICAL_PRIORITY) {
        return Err((
            Rule::SystemCritical,
            format!("priority {p} is system-critical (>= {CRITICAL_PRIORITY})"),
        ));
    }
    Ok(())
}

/// What one pass has evicted so far (dry-run evictions included, so that a
/// dry-run answers what a real pass would do).
#[derive(Clone, Debug, Default)]
pub struct PassTally {
    per_node: HashMap<String, u32>,
    per_namespace: HashMap<String, u32>,
    per_workload: HashMap<WorkloadKey, u32>,
    total: u32,
}

impl PassTally {
    /// Counts an eviction of `pod`.
    pub fn take(&mut self, pod: &PodFacts) {
        if let Some(node) = &pod.node {
            *self.per_node.entry(node.clone()).or_default() += 1;
        }
        *self.per_namespace.entry(pod.namespace.clone()).or_default() += 1;
        if let Some(w) = &pod.workload {
            *self.per_workload.entry(w.clone()).or_default() += 1;
        }
        self.total += 1;
    }

    /// Evictions of `workload` in this pass.
    pub fn of_workload(&self, workload: &WorkloadKey) -> u32 {
        self.per_workload.get(workload).copied().unwrap_or(0)
    }
}

/// Every rule, in order, for `pod` of a workload counted `count`, given what
/// the current window (`ledger`) and this pass (`pass`) have evicted, at
/// `now`. `Ok` means the API server may be asked.
pub fn decide(
    policy: &EvictionPolicy,
    ledger: &Ledger,
    pass: &PassTally,
    pod: &PodFacts,
    count: WorkloadCount,
    now: std::time::Instant,
) -> Result<(), Refusal> {
    check_pod(pod)?;
    let Some(workload) = &pod.workload else {
        return Err((Rule::Bare, "the pod has no workload".into()));
    };
    if let Some(left) = ledger.cooling_down(workload, policy.cooldown, now) {
        return Err((
            Rule::CoolDown,
            format!(
                "{workload} had a pod evicted by an earlier pass; cooling down for {}s more",
                left.as_secs().max(1)
            ),
        ));
    }
    if count.ready < policy.min_replicas {
        return Err((
            Rule::MinReplicas,
            format!(
                "{workload} has {} ready pods, fewer than the minimum of {}",
                count.ready, policy.min_replicas
            ),
        ));
    }
    let taken = pass.of_workload(workload);
    let tolerated = tolerated(count.pods, policy.tolerance);
    let keep = count.pods - tolerated;
    let ready_left = count.ready.saturating_sub(taken);
    let all_ready_one_may_go = count.ready == count.pods && tolerated == 0 && taken == 0;
    if ready_left <= keep && !all_ready_one_may_go {
        return Err((
            Rule::Tolerance,
            format!(
                "{workload}: {ready_left} of {} pods ready; at least {keep} must stay ready (eviction tolerance {})",
                count.pods, policy.tolerance
            ),
        ));
    }
    let limit = |rule: Rule, what: &str, window: u32, pass: u32, max: u32| {
        if window + pass >= max {
            Err((
                rule,
                format!(
                    "{what} reached {max} evictions in the last {}s",
                    policy.window.as_secs()
                ),
            ))
        } else {
            Ok(())
        }
    };
    if let Some(node) = &pod.node {
        limit(
            Rule::NodeLimit,
            &format!("node {node}"),
            ledger.node(node),
            pass.per_node.get(node).copied().unwrap_or(0),
            policy.per_node,
        )?;
    }
    limit(
        Rule::NamespaceLimit,
        &format!("namespace {}", pod.namespace),
        ledger.namespace(&pod.namespace),
        pass.per_namespace.get(&pod.namespace).copied().unwrap_or(0),
        policy.per_namespace,
    )?;
    limit(
        Rule::TotalLimit,
        "nemutator",
        ledger.total(),
        pass.total,
        policy.total,
    )
}

/// How many of `pods` the tolerance lets go at once (floored).
pub fn tolerated(pods: u32, tolerance: f64) -> u32 {
    let t = (f64::from(pods) * tolerance.clamp(0.0, 1.0)).floor();
    // In range: 0 <= t <= pods.
    (t as u32).min(pods)
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
