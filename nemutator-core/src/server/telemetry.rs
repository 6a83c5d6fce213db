//! Webhook metrics in the Prometheus text format, lock-free on the hot path.
//!
//! * `nemutator_admission_requests_total{outcome}`
//! * `nemutator_admission_duration_seconds{outcome}` (histogram)
//! * `nemutator_recommendations` (gauge: workload containers in the store)
//! * `nemutator_recommendations_loaded` (gauge: 1 once the first load is done)
//! * `nemutator_recommendations_age_seconds` (gauge: time since the last
//!   successful refresh; absent before the first)
//! * `nemutator_refresher_restarts_total` (counter: restarts of the refresher
//!   after it panicked or ended)
//! * `nemutator_refresh_namespaces_done` / `nemutator_refresh_namespaces_total`
//!   (gauges: progress of the running or last refresh, in namespaces)
//! * with a shared store, `nemutator_store_{up,producer,version,token}`
//!   (gauges) and `nemutator_store_{errors,loads,publishes,fenced}_total`
//!   ([`crate::recommend::SharedHealth`])

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::admission::Outcome;
use crate::recommend::{RecommendationStore, SharedHealth};

/// Histogram bucket bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];
const OUTCOMES: [Outcome; Outcome::ALL.len()] = Outcome::ALL;

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in nanoseconds.
    sum_nanos: AtomicU64,
}

/// Counters and latency histograms per admission outcome.
#[derive(Debug, Default)]
pub struct Telemetry {
    by_outcome: [Histogram; OUTCOMES.len()],
}

fn index(o: Outcome) -> usize {
    OUTCOMES.iter().position(|x| *x == o).unwrap_or(0)
}

impl Telemetry {
    /// Empty metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record one admission request.
    pub fn observe(&self, outcome: Outcome, elapsed: Duration) {
        let h = &self.by_outcome[index(outcome)];
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            h.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        h.sum_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Requests seen with `outcome`.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.by_outcome[index(outcome)]
            .count
            .load(Ordering::Relaxed)
    }

    /// The exposition text.
    pub fn render(&self, store: &RecommendationStore, shared: Option<&SharedHealth>) -> String {
        let mut s = String::with_capacity(4096);
        s.push_str("# HELP nemutator_admission_requests_total Admission requests by outcome.\n");
        s.push_str("# TYPE nemutator_admission_requests_total counter\n");
        for o in OUTCOMES {
            let _ = writeln!(
                s,
                "nemutator_admission_requests_total{{outcome=\"{}\"}} {}",
                o.as_str(),
                self.count(o)
            );
        }
        s.push_str(
            "# HELP nemutator_admission_duration_seconds Time to review an admission request.\n",
        );
        s.push_str("# TYPE nemutator_admission_duration_seconds histogram\n");
        for o in OUTCOMES {
            let h = &self.by_outcome[index(o)];
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    s,
                    "nemutator_admission_duration_seconds_bucket{{outcome=\"{}\",le=\"{bound}\"}} {cumulative}",
                    o.as_str()
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ = writeln!(
                s,
                "nemutator_admission_duration_seconds_bucket{{outcome=\"{}\",le=\"+Inf\"}} {count}",
                o.as_str()
            );
            let _ = writeln!(
                s,
                "nemutator_admission_duration_seconds_sum{{outcome=\"{}\"}} {}",
                o.as_str(),
                h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9
            );
            let _ = writeln!(
                s,
                "nemutator_admission_duration_seconds_count{{outcome=\"{}\"}} {count}",
                o.as_str()
            );
        }
        s.push_str("# HELP nemutator_recommendations Workload containers with recommendations.\n");
        s.push_str("# TYPE nemutator_recommendations gauge\n");
        let _ = writeln!(s, "nemutator_recommendations {}", store.len());
        s.push_str("# HELP nemutator_recommendations_loaded Whether the first load finished.\n");
        s.push_str("# TYPE nemutator_recommendations_loaded gauge\n");
        let _ = writeln!(
            s,
            "nemutator_recommendations_loaded {}",
            u8::from(store.is_loaded())
        );
        s.push_str("# HELP nemutator_recommendations_age_seconds Time since the last successful refresh of the recommendations.\n");
        s.push_str("# TYPE nemutator_recommendations_age_seconds gauge\n");
        if let Some(age) = store.health().age() {
            let _ = writeln!(
                s,
                "nemutator_recommendations_age_seconds {}",
                age.as_secs_f64()
            );
        }
        s.push_str("# HELP nemutator_refresher_restarts_total Restarts of the recommendation refresher after it panicked or ended.\n");
        s.push_str("# TYPE nemutator_refresher_restarts_total counter\n");
        let _ = writeln!(
            s,
            "nemutator_refresher_restarts_total {}",
            store.health().restarts()
        );
        let (done, total) = store.health().progress();
        s.push_str("# HELP nemutator_refresh_namespaces_done Namespaces answered by the running (or last) refresh.\n");
        s.push_str("# TYPE nemutator_refresh_namespaces_done gauge\n");
        let _ = writeln!(s, "nemutator_refresh_namespaces_done {done}");
        s.push_str("# HELP nemutator_refresh_namespaces_total Namespaces the running (or last) refresh asks.\n");
        s.push_str("# TYPE nemutator_refresh_namespaces_total gauge\n");
        let _ = writeln!(s, "nemutator_refresh_namespaces_total {total}");
        if let Some(shared) = shared {
            shared.render(&mut s);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_buckets() {
        let t = Telemetry::new();
        t.observe(Outcome::Patched, Duration::from_micros(300));
        t.observe(Outcome::Patched, Duration::from_millis(20));
        t.observe(Outcome::Invalid, Duration::from_micros(50));
        let text = t.render(&RecommendationStore::new(), None);
        assert!(text.contains("nemutator_admission_requests_total{outcome=\"patched\"} 2\n"));
        assert!(text.contains("nemutator_admission_requests_total{outcome=\"invalid\"} 1\n"));
        assert!(text.contains(
            "nemutator_admission_duration_seconds_bucket{outcome=\"patched\",le=\"0.0005\"} 1\n"
        ));
        assert!(text.contains(
            "nemutator_admission_duration_seconds_bucket{outcome=\"patched\",le=\"0.025\"} 2\n"
        ));
        assert!(text.contains("nemutator_recommendations 0\n"));
        assert!(text.contains("nemutator_recommendations_loaded 0\n"));
        assert!(!text
            .lines()
            .any(|l| l.starts_with("nemutator_recommendations_age_seconds")));
        assert!(text.contains("nemutator_refresher_restarts_total 0\n"));
        assert!(text.contains("nemutator_refresh_namespaces_done 0\n"));
        assert!(text.contains("nemutator_refresh_namespaces_total 0\n"));
        let store = RecommendationStore::new();
        store.health().record_progress(2, 5);
        let text = t.render(&store, None);
        assert!(
            text.contains("nemutator_refresh_namespaces_done 2\n"),
            "{text}"
        );
        assert!(text.contains("nemutator_refresh_namespaces_total 5\n"));
        assert!(!text.contains("nemutator_store_"));
        let shared = SharedHealth::default();
        let text = t.render(&RecommendationStore::new(), Some(&shared));
        assert!(text.contains("nemutator_store_up 0\n"), "{text}");
        assert!(text.contains("nemutator_store_errors_total 0\n"));
    }
}
