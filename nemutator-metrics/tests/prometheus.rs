//! The Prometheus backend against a real Prometheus (Debian's package, started
//! by `scripts/test.sh` with history backfilled by promtool from the same
//! OpenMetrics files the file source reads):
//!
//! * parity: on the same data, the file source and Prometheus agree within 2%
//!   on every statistic of every workload container, resource and season
//!   mask, on OOM kills, on current requests, on the containers listed and
//!   on season series;
//! * failures: a Prometheus that hangs or answers 503 (through
//!   [`FaultProxy`]) fails the refresh and the store keeps the last good
//!   recommendations, per namespace when only one namespace fails;
//! * pod signals: the file source and Prometheus agree on every pod
//!   container's CPU rate, largest working set and throttled fraction.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nemutator_core::config::PrometheusConfig;
use nemutator_core::metrics::{
    ContainersRequest, MetricsLayers, MetricsSource, PeriodicMask, PodSignalsRequest, Resolution,
    Resource, SeriesRequest, StatSpec, UsageRequest,
};
use nemutator_core::policy::{Policy, PolicySet};
use nemutator_core::recommend::{RecommendationStore, Refresher};
use nemutator_metrics::{FileSource, LiveLoader, PrometheusSource};
use nemutator_testkit::prometheus::{Fault, FaultProxy, TestPrometheus};

const WEEK: Duration = Duration::from_secs(7 * 86_400);

fn mk_prometheus(url: &str, end: i64) -> PrometheusSource {
    PrometheusSource::new(&PrometheusConfig {
        url: url.into(),
        end: Some(end),
        ..PrometheusConfig::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn mk_stats() -> Vec<StatSpec> {
    let office = PeriodicMask::new(86_400, [(9 * 3600, 17 * 3600)]);
    let weekdays = PeriodicMask::new(604_800, [(0, 5 * 86_400)]);
    vec![
        StatSpec {
            quantile: 0.95,
            mask: None,
        },
        StatSpec {
            quantile: 1.0,
            mask: None,
        },
        StatSpec {
            quantile: 0.5,
            mask: office.clone(),
        },
        StatSpec {
            quantile: 0.9,
            mask: office.map(|m| m.complement()),
        },
        StatSpec {
            quantile: 0.99,
            mask: weekdays,
        },
    ]
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.02 * a.abs().max(b.abs()) || (a - b).abs() < 1e-9
}

async fn parity_of(file: &Path, url: &str) -> usize {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let src = FileSource::from_text(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let info = src.info();
    let prom = mk_prometheus(url, info.now);
    let listing = ContainersRequest {
        namespace: None,
        window: WEEK,
        end: info.now,
    };
    let in_file = src.containers(&listing).await.unwrap_or_default();
    let mut namespaces: Vec<String> = in_file
        .iter()
        .map(|c| c.workload.namespace.clone())
        .collect();
    namespaces.dedup();
    let mut compared = 0;
    let mut requests = 0;
    for ns in &namespaces {
        let listing = ContainersRequest {
            namespace: Some(ns.clone()),
            ..listing.clone()
        };
        let a = src.containers(&listing).await.unwrap_or_default();
        let b = prom
            .containers(&listing)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a, b, "containers of {ns}");
        for resource in Resource::ALL {
            let request = UsageRequest {
                namespace: ns.clone(),
                resource,
                window: WEEK,
                end: info.now,
                resolution: info.resolution,
                stats: mk_stats(),
                oom: true,
                requests: true,
            };
            let a = src.usage(&request).await.unwrap_or_default();
            let b = prom.usage(&request).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                a.containers.keys().collect::<Vec<_>>(),
                b.containers.keys().collect::<Vec<_>>(),
                "{ns} {resource}"
            );
            for (target, ua) in &a.containers {
                let ub = &b.containers[target];
                assert_eq!(ua.oom_killed, ub.oom_killed, "OOM of {target}");
                assert_eq!(ua.request, ub.request, "current request of {target}");
                requests += usize::from(ub.request.is_some());
                for (i, (sa, sb)) in ua.stats.iter().zip(&ub.stats).enumerate() {
                    match (sa, sb) {
                        (Some(sa), Some(sb)) => {
                            assert!(
                                close(sa.value, sb.value),
                                "{target} {resource} stat {i}: file {sa:?}, prometheus {sb:?}"
                            );
                            assert_eq!(sa.samples, sb.samples, "{target} {resource} stat {i}");
                            compared += 1;
                        }
                        (None, None) => {}
                        _ => panic!("{target} {resource} stat {i}: file {sa:?}, prometheus {sb:?}"),
                    }
                }
            }
        }
        let series = SeriesRequest {
            namespace: ns.clone(),
            resource: Resource::Cpu,
            window: WEEK,
            end: info.now,
            resolution: Resolution::new(
                info.resolution.step.max(Duration::from_secs(300)),
                info.resolution.rate_window,
            ),
        };
        let a = src.series(&series).await.unwrap_or_default();
        let b = prom.series(&series).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            a.workloads.keys().collect::<Vec<_>>(),
            b.workloads.keys().collect::<Vec<_>>()
        );
        for (w, pa) in &a.workloads {
            let pb = &b.workloads[w];
            assert_eq!(pa.len(), pb.len(), "series of {w}");
            for (x, y) in pa.iter().zip(pb) {
                assert!(
                    x.0 == y.0 && close(x.1, y.1),
                    "series of {w}: {x:?} vs {y:?}"
                );
            }
        }
    }
    // One query per namespace and resource, one per namespace for series
    // (shorter than 10,000 steps), one listing per namespace, one for the
    // recording rules.
    let n = namespaces.len() as u64;
    assert_eq!(prom.requests(), 4 * n + 1, "HTTP requests");
    if text.contains("kube_pod_container_resource_requests") {
        assert!(requests > 0, "{}: no current request", file.display());
    }
    compared
}

#[tokio::test]
async fn file_and_prometheus_agree_within_two_percent() {
    let Some(prom) = TestPrometheus::from_env("file_and_prometheus_agree_within_two_percent")
    else {
        return;
    };
    assert!(!prom.data.is_empty(), "no backfilled file named");
    for file in &prom.data {
        let compared = parity_of(file, &prom.url).await;
        assert!(
            compared > 20,
            "{}: only {compared} statistics compared",
            file.display()
        );
    }
}

fn mk_refresher(url: &str, end: i64) -> (Refresher, Arc<RecommendationStore>) {
    let source: Arc<dyn MetricsSource> = Arc::new(mk_prometheus(url, end));
    let layers = MetricsLayers {
        timeout: Some(Duration::from_secs(2)),
        retries: 1,
        backoff: Duration::from_millis(50),
        concurrency: 2,
    };
    let loader = LiveLoader::new(layers.client(source));
    let store = Arc::new(RecommendationStore::new());
    let policies = Arc::new(PolicySet(vec![Policy {
        min_history: nemutator_core::units::HumanDuration::from_secs(3600),
        ..Policy::default()
    }]));
    (
        Refresher::new(Arc::new(loader), policies, store.clone()),
        store,
    )
}

#[tokio::test]
async fn a_failing_prometheus_keeps_the_last_good_recommendations() {
    let Some(prom) =
        TestPrometheus::from_env("a_failing_prometheus_keeps_the_last_good_recommendations")
    else {
        return;
    };
    // The generated cluster: two namespaces at least.
    let file = prom
        .data
        .iter()
        .find(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains("team-01")))
        .unwrap_or_else(|| panic!("no generated cluster among {:?}", prom.data));
    let src = FileSource::load(file).unwrap_or_else(|e| panic!("{e}"));
    let proxy = FaultProxy::start(&prom.url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (refresher, store) = mk_refresher(&proxy.url(), src.newest());
    let n = refresher
        .refresh_once()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(n.is_some_and(|n| n > 10), "{n:?}");
    let good = store.snapshot();
    assert!(
        good.iter()
            .any(|r| r.memory.as_ref().is_some_and(|m| m.oom_killed)),
        "an OOM bump"
    );

    // Hanging: every attempt times out; nothing changes.
    proxy.set(Fault::Hang);
    let err = refresher
        .refresh_once()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("no answer within 2s"), "{err}");
    assert_eq!(store.snapshot(), good);

    // Overloaded: 503 after the retry; nothing changes, one line.
    proxy.set(Fault::Unavailable);
    let err = refresher
        .refresh_once()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("HTTP 503") && !err.contains('\n'), "{err}");
    assert_eq!(store.snapshot(), good);

    // One namespace failing: it keeps its recommendations, the others refresh.
    proxy.set(Fault::UnavailableIf("team-01".into()));
    assert!(refresher.refresh_once().await.is_ok());
    assert_eq!(store.snapshot(), good);
    assert!(good
        .iter()
        .any(|r| r.target.workload.namespace == "team-01"));

    proxy.set(Fault::None);
    assert!(refresher.refresh_once().await.is_ok());
    assert_eq!(store.snapshot(), good);
}

/// Pod signals agree to floating-point rounding: both sides evaluate the
/// same formulas (PromQL's `rate()` with its extrapolation, `max_over_time`,
/// the ratio of two `increase()`s) on the same float samples (promtool and
/// the file source parse the same decimal text to the same doubles); only
/// the order of the arithmetic differs, so 1e-9 relative is ample and any
/// difference in selection or extrapolation (a sample more or less) shows.
fn same_signal(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-12,
        (a, b) => a.is_none() && b.is_none(),
    }
}

#[tokio::test]
async fn file_and_prometheus_agree_on_pod_signals() {
    let Some(prom) = TestPrometheus::from_env("file_and_prometheus_agree_on_pod_signals") else {
        return;
    };
    let mut throttled_files = 0;
    for file in &prom.data {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let src =
            FileSource::from_text(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let prom_src = mk_prometheus(&prom.url, src.newest());
        let listing = ContainersRequest {
            namespace: None,
            window: WEEK,
            end: src.newest(),
        };
        let mut namespaces: Vec<String> = src
            .containers(&listing)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.workload.namespace)
            .collect();
        namespaces.dedup();
        let mut calls = 0;
        let mut compared = 0;
        // The newest sample, and a time hours before it (other pods alive).
        for end in [src.newest(), src.newest() - 6 * 3600 - 7] {
            for window in [Duration::from_secs(300), Duration::from_secs(1800)] {
                for namespace in [None, namespaces.first().cloned()] {
                    let request = PodSignalsRequest {
                        namespace: namespace.clone(),
                        window,
                        end,
                    };
                    let a = src
                        .pod_signals(&request)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    let mut b = prom_src
                        .pod_signals(&request)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    calls += 1;
                    // Prometheus also holds the other backfilled files.
                    b.containers
                        .retain(|k, _| namespaces.contains(&k.namespace));
                    assert_eq!(
                        a.containers.keys().collect::<Vec<_>>(),
                        b.containers.keys().collect::<Vec<_>>(),
                        "{}: containers of {request:?}",
                        file.display()
                    );
                    for (k, sa) in &a.containers {
                        let sb = b.containers[k];
                        assert!(
                            same_signal(sa.cpu, sb.cpu)
                                && same_signal(sa.memory, sb.memory)
                                && same_signal(sa.throttled, sb.throttled),
                            "{k:?} at {end} over {window:?}: file {sa:?}, prometheus {sb:?}"
                        );
                        compared += 1;
                    }
                }
            }
        }
        assert!(
            compared > 20,
            "{}: only {compared} compared",
            file.display()
        );
        assert_eq!(prom_src.requests(), 3 * calls, "one query per signal");
        if text.contains("container_cpu_cfs_throttled_periods_total") {
            throttled_files += 1;
            // The generated cluster: the first container of svc0000's newest
            // first pod in each namespace is the throttled one.
            let request = PodSignalsRequest {
                namespace: None,
                window: Duration::from_secs(300),
                end: src.newest(),
            };
            let b = prom_src
                .pod_signals(&request)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let hot: Vec<_> = b
                .containers
                .iter()
                .filter(|(_, s)| s.throttled.is_some_and(|t| t > 0.3))
                .map(|(k, _)| k)
                .collect();
            assert_eq!(hot.len(), namespaces.len(), "{hot:?}");
            assert!(
                hot.iter()
                    .all(|k| k.pod.starts_with("svc0000-") && k.container == "app"),
                "{hot:?}"
            );
            let cool = b
                .containers
                .values()
                .filter(|s| s.throttled.is_some_and(|t| t < 0.1))
                .count();
            assert!(cool > 10, "most containers are hardly throttled");
            let debug = b.containers.iter().find(|(k, _)| k.pod == "debug");
            assert!(
                debug.is_some_and(|(_, s)| s.cpu.is_some() && s.throttled.is_none()),
                "no CPU limit, no CFS series: {debug:?}"
            );
        }
    }
    assert!(throttled_files > 0, "no backfilled file has CFS counters");
}
