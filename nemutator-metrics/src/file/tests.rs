//! Tests of the OpenMetrics file source.

use super::*;
use nemutator_core::metrics::{PeriodicMask, StatSpec};
use nemutator_core::workload::WorkloadKind;

const T0: i64 = 1_700_000_000;

/// `minutes` + 1 one-minute samples per pod (30 s past each minute) of
/// `cpu_cores` and `mem` (+ the minute) bytes.
fn mk_file(pods: &[&str], minutes: i64, cpu_cores: f64, mem: f64) -> String {
    let mut s = String::from("# TYPE container_cpu_usage_seconds counter\n");
    for pod in pods {
        for m in 0..=minutes {
            s += &format!(
                "container_cpu_usage_seconds_total{{namespace=\"ns\",pod=\"{pod}\",container=\"app\"}} {} {}\n",
                cpu_cores * 60.0 * m as f64,
                T0 + 30 + m * 60
            );
        }
    }
    s += "# TYPE container_memory_working_set_bytes gauge\n";
    for pod in pods {
        for m in 0..=minutes {
            s += &format!(
                "container_memory_working_set_bytes{{namespace=\"ns\",pod=\"{pod}\",container=\"app\"}} {} {}\n",
                mem + m as f64,
                T0 + 30 + m * 60
            );
        }
    }
    s + "# EOF\n"
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .map(|rt| rt.block_on(f))
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

fn web() -> ContainerRef {
    ContainerRef::new(
        WorkloadKey::new("ns", WorkloadKind::Deployment, "web"),
        "app",
    )
}

fn mk_request(src: &FileSource, resource: Resource, stats: Vec<StatSpec>) -> UsageRequest {
    UsageRequest {
        namespace: "ns".into(),
        resource,
        window: Duration::from_secs(86_400),
        end: src.info().now,
        resolution: src.info().resolution,
        stats,
        oom: true,
        requests: false,
    }
}

fn q(quantile: f64) -> StatSpec {
    StatSpec {
        quantile,
        mask: None,
    }
}

fn usage(src: &FileSource, req: &UsageRequest) -> ContainerUsage {
    block_on(src.usage(req))
        .ok()
        .and_then(|b| b.containers.get(&web()).cloned())
        .unwrap_or_default()
}

#[test]
fn generations_of_a_deployment_pool_together() {
    let text = mk_file(
        &["web-7d9f8b6c5d-x2k9p", "web-5c8d7f9b4-qwz7t"],
        60,
        0.25,
        1e8,
    );
    let src = FileSource::from_text(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(src.interval(), Duration::from_secs(60));
    assert_eq!(src.info().resolution, Resolution::DEFAULT);
    let req = ContainersRequest {
        namespace: None,
        window: Duration::from_secs(86_400),
        end: src.newest(),
    };
    assert_eq!(
        block_on(src.containers(&req)).unwrap_or_default(),
        vec![web()]
    );
    let cpu = usage(&src, &mk_request(&src, Resource::Cpu, vec![q(0.95)]));
    let stat = cpu.stats[0].unwrap_or_else(|| panic!("no stat"));
    assert!((stat.value - 0.25).abs() < 1e-6, "{stat:?}");
    // History counts hourly checkpoints: the hour of data holds one.
    assert_eq!((stat.samples, stat.history_secs), (1, 3600));
    let mem = usage(
        &src,
        &mk_request(&src, Resource::Memory, vec![q(1.0), q(0.0)]),
    );
    let values: Vec<_> = mem.stats.iter().map(|s| s.map(|s| s.value)).collect();
    // The per-step maximum over the two pods, steps of 5 minutes; the
    // newest samples are after the last whole step (the window ends at
    // the newest sample).
    assert_eq!(values, vec![Some(1e8 + 56.0), Some(1e8 + 1.0)]);
    assert!(!mem.oom_killed);
}

#[test]
fn masks_restrict_the_statistic() {
    let text = mk_file(&["web-7d9f8b6c5d-x2k9p"], 60, 0.25, 1e8);
    let src = FileSource::from_text(&text).unwrap_or_else(|e| panic!("{e}"));
    // The first ten minutes of every day: T0 is 22:13:20 UTC.
    let first = T0 + 60 - T0 % 60;
    let phase = (first - 345_600).rem_euclid(86_400);
    let mask = PeriodicMask::new(86_400, [(phase, phase + 600)]);
    let req = mk_request(
        &src,
        Resource::Memory,
        vec![StatSpec {
            quantile: 1.0,
            mask,
        }],
    );
    let stat = usage(&src, &req).stats[0];
    // Steps at 5 and 10 minutes (of 5-minute steps) after 22:15: the
    // largest sample of the second is minute 6's; no hourly checkpoint
    // in those ten minutes.
    assert_eq!(stat.map(|s| (s.value, s.samples)), Some((1e8 + 6.0, 0)));
}

#[test]
fn workload_series_sums_pods() {
    let text = mk_file(
        &["web-7d9f8b6c5d-x2k9p", "web-7d9f8b6c5d-b2k9p"],
        30,
        0.5,
        100.0,
    );
    let src = FileSource::from_text(&text).unwrap_or_else(|e| panic!("{e}"));
    let req = SeriesRequest {
        namespace: "ns".into(),
        resource: Resource::Cpu,
        window: Duration::from_secs(3600),
        end: src.newest(),
        resolution: Resolution::new(Duration::from_secs(300), Duration::from_secs(300)),
    };
    let batch = block_on(src.series(&req)).unwrap_or_default();
    let series = batch
        .workloads
        .get(&web().workload)
        .cloned()
        .unwrap_or_default();
    // The first step's window starts before the counters do: a part of
    // a rate, as in PromQL.
    assert!(series.len() > 3 && series[0].1 < 1.0, "{series:?}");
    assert!(
        series[1..].iter().all(|&(_, v)| (v - 1.0).abs() < 1e-6),
        "{series:?}"
    );
}

#[test]
fn owner_series_override_name_guessing() {
    let text = "kube_pod_owner{namespace=\"ns\",pod=\"api-0\",owner_kind=\"ReplicaSet\",owner_name=\"api-6b7c9d8f5\"} 1 1700000000\n\
        container_memory_working_set_bytes{namespace=\"ns\",pod=\"api-0\",container=\"app\"} 5 1700000000\n# EOF\n";
    let src = FileSource::from_text(text).unwrap_or_else(|e| panic!("{e}"));
    let req = ContainersRequest {
        namespace: Some("ns".into()),
        window: Duration::from_secs(60),
        end: src.newest(),
    };
    let c = block_on(src.containers(&req)).unwrap_or_default();
    assert_eq!(
        c[0].workload,
        WorkloadKey::new("ns", WorkloadKind::Deployment, "api")
    );
}

#[test]
fn oom_kills_in_the_window_are_reported() {
    let mut text = mk_file(&["web-7d9f8b6c5d-x2k9p"], 60, 0.25, 1e8).replace("# EOF\n", "");
    text += "kube_pod_container_status_last_terminated_reason{namespace=\"ns\",pod=\"web-7d9f8b6c5d-x2k9p\",container=\"app\",reason=\"OOMKilled\"} 1 1700001000\n# EOF\n";
    let src = FileSource::from_text(&text).unwrap_or_else(|e| panic!("{e}"));
    let mut req = mk_request(&src, Resource::Memory, vec![q(1.0)]);
    assert!(usage(&src, &req).oom_killed);
    req.window = Duration::from_secs(600);
    assert!(
        !usage(&src, &req).oom_killed,
        "the kill is older than the window"
    );
}

#[test]
fn current_requests_are_the_largest_of_the_last_hour() {
    let pods = ["web-7d9f8b6c5d-x2k9p", "web-5c8d7f9b4-qwz7t"];
    let mut text = mk_file(&pods, 120, 0.25, 1e8).replace("# EOF\n", "");
    // The old generation's larger request ends 90 minutes before the
    // newest sample; the new one's two pods ask 0.5 and 0.75.
    for (pod, cores, t) in [
        (pods[0], 2.0, T0 + 1800),
        (pods[1], 0.5, T0 + 6000),
        (pods[1], 0.75, T0 + 7000),
    ] {
        text += &format!("kube_pod_container_resource_requests{{namespace=\"ns\",pod=\"{pod}\",container=\"app\",resource=\"cpu\",unit=\"core\"}} {cores} {t}\n");
    }
    text += "# EOF\n";
    let src = FileSource::from_text(&text).unwrap_or_else(|e| panic!("{e}"));
    let mut req = mk_request(&src, Resource::Cpu, vec![q(1.0)]);
    assert_eq!(usage(&src, &req).request, None, "not asked");
    req.requests = true;
    assert_eq!(usage(&src, &req).request, Some(0.75));
    req.resource = Resource::Memory;
    assert_eq!(usage(&src, &req).request, None, "no memory request");
}

#[test]
fn ignores_pause_and_pod_totals() {
    let text =
        "container_memory_working_set_bytes{namespace=\"ns\",pod=\"p\",container=\"POD\"} 5 1\n\
        container_memory_working_set_bytes{namespace=\"ns\",pod=\"p\",container=\"\"} 5 1\n# EOF\n";
    let src = FileSource::from_text(text).unwrap_or_else(|e| panic!("{e}"));
    let req = ContainersRequest {
        namespace: None,
        window: Duration::from_secs(60),
        end: 1,
    };
    assert!(block_on(src.containers(&req))
        .unwrap_or_default()
        .is_empty());
}

#[test]
fn empty_and_truncated_files_are_errors() {
    let full = mk_file(&["web-7d9f8b6c5d-x2k9p"], 10, 0.25, 1e8);
    let cut = &full[..full.len() / 2];
    let cut = &cut[..cut.rfind('\n').unwrap_or(0) + 1];
    for text in ["", "\n", cut] {
        let e = FileSource::from_text(text).expect_err("no # EOF");
        assert!(e.to_string().contains("no `# EOF`"), "{e}");
    }
    assert!(
        FileSource::from_text("# EOF\n").is_ok(),
        "empty but complete"
    );
}

#[test]
fn loader_rereads_on_change_and_keeps_the_last_good_data() {
    use nemutator_core::policy::{Policy, PolicySet};
    use nemutator_core::recommend::{RecommendationStore, Refresher};
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("usage.om");
    std::fs::write(&path, mk_file(&["web-7d9f8b6c5d-x2k9p"], 1500, 0.25, 1e8))
        .unwrap_or_else(|e| panic!("{e}"));
    let store = Arc::new(RecommendationStore::new());
    let refresher = Refresher::new(
        Arc::new(FileLoader::new(&path)),
        Arc::new(PolicySet(vec![Policy::default()])),
        store.clone(),
    );
    assert_eq!(block_on(refresher.refresh_once()).ok().flatten(), Some(1));
    assert!(store.is_loaded());
    // Progress in namespaces, as /metrics shows it.
    assert_eq!(store.health().progress(), (1, 1));
    // Unchanged file: nothing to do.
    assert_eq!(block_on(refresher.refresh_once()).ok().flatten(), None);
    // A second workload appears.
    let mut text = mk_file(&["web-7d9f8b6c5d-x2k9p"], 1500, 0.25, 1e8).replace("# EOF\n", "");
    text += "container_memory_working_set_bytes{namespace=\"ns\",pod=\"db-0\",container=\"pg\"} 5 1700000000\n# EOF\n";
    std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(block_on(refresher.refresh_once()).ok().flatten(), Some(2));
    let before = store.snapshot();
    // A broken file, an emptied one, a truncated one: errors, and the
    // store keeps its recommendations.
    let truncated = &text[..text.len() - 200];
    for bad in ["container_memory_working_set_bytes{ 1 2\n", "", truncated] {
        std::fs::write(&path, bad).unwrap_or_else(|e| panic!("{e}"));
        let err = block_on(refresher.refresh_once()).expect_err("bad file");
        assert!(!err.to_string().contains('\n'), "{err}");
        assert_eq!(store.snapshot(), before);
    }
}

#[test]
fn bad_file_is_one_line_error() {
    let e = FileSource::from_text("container_memory_working_set_bytes{namespace=\"ns\"} x 1\n")
        .expect_err("bad value");
    assert_eq!(e.line, 1);
}

#[test]
fn pod_signals_are_rates_maxima_and_throttled_fractions_per_pod() {
    let pods = ["web-7d9f8b6c5d-x2k9p", "web-7d9f8b6c5d-b2k9p"];
    let mut text = mk_file(&pods, 60, 0.25, 1e8).replace("# EOF\n", "");
    // The first pod has a CPU limit: 600 periods a minute, a quarter of
    // them throttled (the counters start high, as on a long-running node);
    // the second has none, so no CFS series.
    for m in 0..=60 {
        let t = T0 + 30 + m * 60;
        let labels = format!("namespace=\"ns\",pod=\"{}\",container=\"app\"", pods[0]);
        text += &format!("{CFS_PERIODS}{{{labels}}} {} {t}\n", 1e6 + 600.0 * m as f64);
        text += &format!(
            "{CFS_THROTTLED}{{{labels}}} {} {t}\n",
            1e5 + 150.0 * m as f64
        );
    }
    text += "container_memory_working_set_bytes{namespace=\"other\",pod=\"db-0\",container=\"pg\"} 5 1700003630\n# EOF\n";
    let src = FileSource::from_text(&text).unwrap_or_else(|e| panic!("{e}"));
    let mut request = PodSignalsRequest {
        namespace: Some("ns".into()),
        window: Duration::from_secs(300),
        end: src.newest(),
    };
    let batch = block_on(src.pod_signals(&request)).unwrap_or_else(|e| panic!("{e}"));
    let key = |pod: &str| PodContainerRef {
        namespace: "ns".into(),
        pod: pod.into(),
        container: "app".into(),
    };
    assert_eq!(batch.containers.len(), 2, "{batch:?}");
    let limited = batch.containers[&key(pods[0])];
    let free = batch.containers[&key(pods[1])];
    for s in [limited, free] {
        let cpu = s.cpu.unwrap_or_else(|| panic!("no CPU: {s:?}"));
        assert!((cpu - 0.25).abs() < 1e-9, "{s:?}");
        // The newest sample, minute 60, is the largest working set.
        assert_eq!(s.memory, Some(1e8 + 60.0));
    }
    let throttled = limited.throttled.unwrap_or_else(|| panic!("{limited:?}"));
    assert!((throttled - 0.25).abs() < 1e-9, "{limited:?}");
    assert_eq!(free.throttled, None, "no CFS series, no fraction");

    // All namespaces: the other one's pod too, with memory only.
    request.namespace = None;
    let all = block_on(src.pod_signals(&request)).unwrap_or_default();
    let db = all.containers.get(&PodContainerRef {
        namespace: "other".into(),
        pod: "db-0".into(),
        container: "pg".into(),
    });
    assert_eq!(
        db.map(|s| (s.cpu, s.memory, s.throttled)),
        Some((None, Some(5.0), None))
    );

    // A window that ends before the pods existed: nothing.
    request.end = T0 - 3600;
    assert!(block_on(src.pod_signals(&request))
        .unwrap_or_else(|e| panic!("{e}"))
        .containers
        .is_empty());
}
