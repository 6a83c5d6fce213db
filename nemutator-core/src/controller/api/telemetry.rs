//! The controller's `/metrics`:
//!
//! * `nemutator_controller_leader` (gauge: 1 while this replica leads);
//! * `nemutator_api_requests_total{route,code}` (REST and probe requests);
//! * `nemutator_recommendations` (gauge: workload containers in the store);
//! * the evictor's `nemutator_evictions_total{outcome}` and
//!   `nemutator_eviction_refusals_total{rule}`;
//! * the drift reconciler's `nemutator_drift_decisions_total{action}`;
//! * the noisy-neighbour loop's `nemutator_noisy_pods`,
//!   `nemutator_noisy_labels_total{change}`,
//!   `nemutator_noisy_evictions_total{outcome}` and
//!   `nemutator_noisy_signal_errors_total`;
//! * the metadata patcher's `nemutator_metadata_pods_total{outcome}` and
//!   `nemutator_metadata_rules`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use super::ApiState;

/// Requests by route and status code.
#[derive(Debug, Default)]
pub struct ApiTelemetry {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

impl ApiTelemetry {
    /// No requests yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request.
    pub fn observe(&self, route: &'static str, code: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((route, code)).or_default() += 1;
    }

    /// Requests on `route` answered `code`.
    pub fn count(&self, route: &str, code: u16) -> u64 {
        let map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter(|((r, c), _)| *r == route && *c == code)
            .map(|(_, n)| *n)
            .sum()
    }
}

/// The exposition text.
pub fn render(state: &ApiState) -> String {
    let mut s = String::with_capacity(2048);
    s.push_str(
        "# HELP nemutator_controller_leader 1 while this replica holds the controller Lease.\n",
    );
    s.push_str("# TYPE nemutator_controller_leader gauge\n");
    let _ = writeln!(
        s,
        "nemutator_controller_leader {}",
        u8::from(state.leadership.is_leader())
    );
    s.push_str("# HELP nemutator_api_requests_total Requests to the controller's server, by route and status code.\n");
    s.push_str("# TYPE nemutator_api_requests_total counter\n");
    {
        let map = state
            .telemetry
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for ((route, code), n) in map.iter() {
            let _ = writeln!(
                s,
                "nemutator_api_requests_total{{route=\"{route}\",code=\"{code}\"}} {n}"
            );
        }
    }
    s.push_str("# HELP nemutator_recommendations Workload containers with a recommendation.\n");
    s.push_str("# TYPE nemutator_recommendations gauge\n");
    let _ = writeln!(
        s,
        "nemutator_recommendations {}",
        state.recommendations.len()
    );
    state.eviction_metrics.render(&mut s);
    state.drift_metrics.render(&mut s);
    state.overprovisioning_metrics.render(&mut s);
    state.noisy_metrics.render(&mut s);
    state.metadata_metrics.render(&mut s);
    s
}
