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

/// Counts by eviction [`Outcome`]: the `outcome` label of a counter family
/// (`nemutator_evictions_total`, and the controllers' own, such as
/// `nemutator_noisy_evictions_total`).
#[derive(Debug, Default)]
pub struct OutcomeCounts([AtomicU64; OUTCOMES.len()]);

impl OutcomeCounts {
    /// Counts one outcome.
    pub fn observe(&self, outcome: &Outcome) {
        let label = outcome.label();
        if let Some(i) = OUTCOMES.iter().position(|o| *o == label) {
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Outcomes with the label `label`.
    pub fn count(&self, label: &str) -> u64 {
        OUTCOMES
            .iter()
            .position(|o| *o == label)
            .map_or(0, |i| self.0[i].load(Ordering::Relaxed))
    }

    /// Appends the family `name` (a counter, `help` its HELP text), one
    /// sample per outcome, to `out`.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (label, n) in OUTCOMES.iter().zip(&self.0) {
            let _ = writeln!(
                out,
                "{name}{{outcome=\"{label}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
}

/// Counters of eviction decisions.
#[derive(Debug, Default)]
pub struct EvictionMetrics {
    outcomes: OutcomeCounts,
    rules: [AtomicU64; Rule::ALL.len()],
}

impl EvictionMetrics {
    /// Zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one decision.
    pub fn observe(&self, outcome: &Outcome) {
        self.outcomes.observe(outcome);
        if let Outcome::Refused { rule, .. } = outcome {
            if let Some(i) = Rule::ALL.iter().position(|r| r == rule) {
                self.rules[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Decisions with the outcome label `label`.
    pub fn count(&self, label: &str) -> u64 {
        self.outcomes.count(label)
    }

    /// Appends the exposition text to `out`.
    pub fn render(&self, out: &mut String) {
        self.outcomes.render(
            out,
            "nemutator_evictions_total",
            "Eviction decisions, by outcome.",
        );
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
    fn every_outcome_has_its_own_count() {
        let outcomes = [
            Outcome::Evicted,
            Outcome::DryRun,
            Outcome::Blocked {
                message: String::new(),
            },
            Outcome::Refused {
                rule: Rule::Bare,
                message: String::new(),
            },
            Outcome::Gone,
            Outcome::Failed {
                message: String::new(),
            },
        ];
        let counts = OutcomeCounts::default();
        for o in &outcomes {
            counts.observe(o);
        }
        for o in &outcomes {
            assert!(!o.label().is_empty());
            assert_eq!(counts.count(o.label()), 1, "{}", o.label());
        }
    }

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
