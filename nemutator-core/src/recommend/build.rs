//! One container's recommendation from its usage answers: the OOM bump,
//! headroom and bounds of the effective policy, and the report's
//! distribution and current request when asked.

use super::{Recommendation, ResourceRecommendation, DISTRIBUTION};
use crate::metrics::{ContainerUsage, Resource};
use crate::policy::EffectivePolicy;
use crate::quantity::Quantity;
use crate::units::HumanDuration;
use crate::workload::ContainerRef;

/// VPA's OOM bump: after an OOM kill, memory usage is taken as
/// max(usage + 100Mi, usage × 1.2).
pub fn oom_bump(usage: f64) -> f64 {
    (usage + 100.0 * 1024.0 * 1024.0).max(usage * 1.2)
}

/// The recommendation of one container under an effective policy, from the
/// statistics at `slot` of its CPU and memory answers (and the
/// [`DISTRIBUTION`] from `dist` on, when asked).
pub(super) fn build(
    target: &ContainerRef,
    policy: &EffectivePolicy,
    slot: usize,
    dist: Option<usize>,
    cpu: Option<&ContainerUsage>,
    memory: Option<&ContainerUsage>,
) -> Recommendation {
    let mut rec = Recommendation {
        target: target.clone(),
        policy: policy.name.clone(),
        season: policy.season,
        window: policy.window,
        cpu: None,
        memory: None,
        skipped: Vec::new(),
    };
    for (resource, usage) in [(Resource::Cpu, cpu), (Resource::Memory, memory)] {
        let rp = policy.resource(resource);
        let Some(stat) = usage.and_then(|u| u.stats.get(slot).copied().flatten()) else {
            rec.skipped
                .push(format!("{resource}: no samples in {}", policy.window));
            continue;
        };
        let min_history = policy.min_history.as_secs() as i64;
        if stat.history_secs < min_history {
            rec.skipped.push(format!(
                "{resource}: {} of history < min_history {}",
                HumanDuration::from_secs(stat.history_secs.max(0) as u64),
                policy.min_history
            ));
            continue;
        }
        let oom_killed = resource == Resource::Memory && usage.is_some_and(|u| u.oom_killed);
        let basis = if oom_killed {
            oom_bump(stat.value)
        } else {
            stat.value
        };
        let r = ResourceRecommendation {
            request: rp.target(resource, basis),
            percentile: rp.percentile,
            usage: stat.value,
            samples: stat.samples,
            history_secs: stat.history_secs,
            oom_killed,
            current: usage.and_then(|u| u.request).map(Quantity::from_f64_units),
            distribution: match (dist, usage) {
                (Some(at), Some(u)) => DISTRIBUTION
                    .iter()
                    .zip(u.stats.iter().skip(at))
                    .filter_map(|(q, s)| s.map(|s| (*q, s.value)))
                    .collect(),
                _ => Vec::new(),
            },
        };
        match resource {
            Resource::Cpu => rec.cpu = Some(r),
            Resource::Memory => rec.memory = Some(r),
        }
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::UsageStat;
    use crate::policy::Policy;
    use crate::workload::{WorkloadKey, WorkloadKind};

    fn mk_stat(value: f64) -> Option<UsageStat> {
        Some(UsageStat {
            value,
            samples: 48,
            history_secs: 48 * 3600,
        })
    }

    #[test]
    fn the_distribution_and_current_request_follow_the_policy_statistic() {
        let target = ContainerRef::new(
            WorkloadKey::new("ns", WorkloadKind::Deployment, "web"),
            "app",
        );
        let policy = Policy::default().effective(None);
        // The policy's p95, then the distribution's nine quantiles.
        let mut stats = vec![mk_stat(0.2)];
        stats.extend(DISTRIBUTION.iter().map(|q| mk_stat(0.1 + 0.1 * q)));
        stats[3] = None; // p25: no step
        let cpu = ContainerUsage {
            stats,
            oom_killed: false,
            request: Some(0.5),
        };
        let rec = build(&target, &policy, 0, Some(1), Some(&cpu), None);
        let r = rec.cpu.unwrap_or_else(|| panic!("a CPU recommendation"));
        assert_eq!(r.usage, 0.2);
        assert_eq!(r.current, Some(Quantity::from_f64_units(0.5)));
        assert_eq!(r.distribution.len(), DISTRIBUTION.len() - 1);
        assert_eq!(r.distribution[0], (0.0, 0.1));
        assert!(r.distribution.iter().all(|p| p.0 != 0.25));
        let without = build(&target, &policy, 0, None, Some(&cpu), None);
        assert!(without.cpu.is_some_and(|r| r.distribution.is_empty()));
        assert!(rec.memory.is_none() && !rec.skipped.is_empty());
    }
}
