//! Eviction metrics in the Prometheus text format:
//!
//! * `nemutator_evictions_total{outcome}`: every decision, by outcome
//!   (`evicted`, `dry_run`, `blocked`, `refused`, `gone`, `failed`);
//! * `nemutator_eviction_refusals_total{rule}`: the refusals, by rule.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::rules::Rule;
use super::Outcome;

const OUTCOMES: [&str; 6] = ["evicted", "dry_run", "blocked", "refused", "gone", "failed"];

/// Counters of eviction decisions.
#[derive(Debug, Default)]
pub struct EvictionMetrics {
    outcomes: [AtomicU64; OUTCOMES.len()],
    rules: [AtomicU64; Rule::ALL.len()],
}

impl EvictionMetrics {
    /// Zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one decision.
    pub fn observe(&self, outcome: &Outcome) {
        let label = outcome.label();
        if let Some(i) = OUTCOMES.iter().position(|o| *o == label) {
            self.outcomes[i].fetch_add(1, Ordering::Relaxed);
        }
        if let Outcome::Refused { rule, .. } = outcome {
            if let Some(i) = Rule::ALL.iter().position(|r| r == rule) {
                self.rules[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Decisions with the outcome label `label`.
    pub fn count(&self, label: &str) -> u64 {
        OUTCOMES
            .iter()
            .position(|o| *o == label)
            .map_or(0, |i| self.outcomes[i].load(Ordering::Relaxed))
    }

    /// Appends the exposition text to `out`.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP nemutator_evictions_total Eviction decisions, by outcome.\n");
        out.push_str("# TYPE nemutator_evictions_total counter\n");
        for (label, n) in OUTCOMES.iter().zip(&self.outcomes) {
            let _ = writeln!(
                out,
                "nemutator_evictions_total{{outcome=\"{label}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP nemutator_eviction_refusals_total Evictions refused by a safety rule, by rule.\n",
        );
        out.push_str("# TYPE nemutator_eviction_refusals_total counter\n");
        for (rule, n) in Rule::ALL.iter().zip(&self.rules) {
            let _ = writeln!(
                out,
                "nemutator_eviction_refusals_total{{rule=\"{}\"}} {}",
                rule.as_str(),
                n.load(Ordering::Relaxed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_and_rule_is_counted() {
        let m = EvictionMetrics::new();
        m.observe(&Outcome::Evicted);
        m.observe(&Outcome::Refused {
            rule: Rule::Tolerance,
            message: String::new(),
        });
        m.observe(&Outcome::Blocked {
            message: String::new(),
        });
        let mut text = String::new();
        m.render(&mut text);
        assert!(text.contains("nemutator_evictions_total{outcome=\"evicted\"} 1\n"));
        assert!(text.contains("nemutator_evictions_total{outcome=\"refused\"} 1\n"));
        assert!(text.contains("nemutator_evictions_total{outcome=\"blocked\"} 1\n"));
        assert!(text.contains("nemutator_evictions_total{outcome=\"dry_run\"} 0\n"));
        assert!(text.contains("nemutator_eviction_refusals_total{rule=\"Tolerance\"} 1\n"));
        for outcome in [
            Outcome::DryRun,
            Outcome::Gone,
            Outcome::Failed {
                message: String::new(),
            },
        ] {
            assert!(OUTCOMES.contains(&outcome.label()));
        }
    }
}
