//! The Datadog backend's reading of a timeseries answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nemutator_core::metrics::Resource;
use nemutator_metrics::datadog::query;

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = query::TimeseriesResponse::decode(data) else {
        return;
    };
    let attributes = answer.data.map(|d| d.attributes).unwrap_or_default();
    for resource in Resource::ALL {
        let (mut points, mut current, mut totals, mut killed) = Default::default();
        let blocks = [
            query::Block::Usage,
            query::Block::Requests,
            query::Block::Oom,
        ];
        let _ = query::container_points(&attributes, &blocks, resource, "ns", 300, &mut points);
        let _ = query::current_requests(
            &attributes,
            &blocks,
            resource,
            "ns",
            300,
            (0, i64::MAX),
            &mut current,
        );
        let _ = query::oom_kills(&attributes, &blocks, "ns", &mut killed);
        let _ = query::workload_points(&attributes, resource, "ns", 300, &mut totals);
    }
    let _ = query::listed(&attributes, None, 3600, 0);
});
