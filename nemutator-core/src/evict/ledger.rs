//! What the evictions of past passes still count for: the window's
//! per-node, per-namespace and total counts, and each workload's last
//! eviction (its cool-down). Kept in memory by the leader; a new leader
//! starts empty (docs/CONTROLLER.md).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::rules::PodFacts;
use crate::workload::WorkloadKey;

/// Eviction counts of the current window and the workloads' last evictions.
#[derive(Debug, Default)]
pub struct Ledger {
    window_start: Option<Instant>,
    per_node: HashMap<String, u32>,
    per_namespace: HashMap<String, u32>,
    total: u32,
    last_eviction: HashMap<WorkloadKey, Instant>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a new window when `window` has passed since the current one
    /// began, and forgets cool-downs older than `cooldown`.
    pub fn roll(&mut self, now: Instant, window: Duration, cooldown: Duration) {
        let expired = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= window);
        if expired {
            self.window_start = Some(now);
            self.per_node.clear();
            self.per_namespace.clear();
            self.total = 0;
        }
        self.last_eviction
            .retain(|_, at| now.saturating_duration_since(*at) < cooldown);
    }

    /// Records the evictions of a finished pass.
    pub fn commit<'a>(&mut self, evicted: impl IntoIterator<Item = &'a PodFacts>, now: Instant) {
        for pod in evicted {
            if let Some(node) = &pod.node {
                *self.per_node.entry(node.clone()).or_default() += 1;
            }
            *self.per_namespace.entry(pod.namespace.clone()).or_default() += 1;
            self.total += 1;
            if let Some(w) = &pod.workload {
                self.last_eviction.insert(w.clone(), now);
            }
        }
    }

    /// Evictions on `node` in this window.
    pub fn node(&self, node: &str) -> u32 {
        self.per_node.get(node).copied().unwrap_or(0)
    }

    /// Evictions in `namespace` in this window.
    pub fn namespace(&self, namespace: &str) -> u32 {
        self.per_namespace.get(namespace).copied().unwrap_or(0)
    }

    /// Evictions in this window.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// How long `workload` still cools down after its last eviction, if it does.
    pub fn cooling_down(
        &self,
        workload: &WorkloadKey,
        cooldown: Duration,
        now: Instant,
    ) -> Option<Duration> {
        let at = self.last_eviction.get(workload)?;
        cooldown.checked_sub(now.saturating_duration_since(*at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::WorkloadKind;

    fn mk_pod(ns: &str, node: &str, workload: &str) -> PodFacts {
        PodFacts {
            namespace: ns.into(),
            name: format!("{workload}-x"),
            node: Some(node.into()),
            workload: Some(WorkloadKey::new(ns, WorkloadKind::Deployment, workload)),
            ..PodFacts::default()
        }
    }

    #[test]
    fn a_window_counts_until_it_ends_and_cool_downs_outlive_it() {
        let t0 = Instant::now();
        let window = Duration::from_secs(60);
        let cooldown = Duration::from_secs(600);
        let mut l = Ledger::new();
        l.roll(t0, window, cooldown);
        l.commit(&[mk_pod("a", "n1", "web"), mk_pod("a", "n2", "api")], t0);
        assert_eq!((l.node("n1"), l.namespace("a"), l.total()), (1, 2, 2));
        let web = WorkloadKey::new("a", WorkloadKind::Deployment, "web");
        let t1 = t0 + Duration::from_secs(59);
        l.roll(t1, window, cooldown);
        assert_eq!(l.total(), 2, "same window");
        let t2 = t0 + Duration::from_secs(61);
        l.roll(t2, window, cooldown);
        assert_eq!((l.node("n1"), l.namespace("a"), l.total()), (0, 0, 0));
        assert_eq!(
            l.cooling_down(&web, cooldown, t2),
            Some(Duration::from_secs(539))
        );
        let t3 = t0 + cooldown;
        l.roll(t3, window, cooldown);
        assert_eq!(l.cooling_down(&web, cooldown, t3), None);
    }
}
