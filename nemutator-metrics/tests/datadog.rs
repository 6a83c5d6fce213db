//! The Datadog backend against a local server of Datadog's documented
//! timeseries API (`nemutator_testkit::datadog`; Datadog itself cannot be
//! reached from here), serving the series the Datadog agent would have
//! collected from the same OpenMetrics files the file source reads:
//!
//! * parity: the Datadog and file sources agree within 2% on every
//!   statistic of every workload container, resource and season mask, on
//!   the containers listed and on season series;
//! * every request is one the server accepts (documented body and headers,
//!   under 1,500 points per series), one per namespace, resource and 1,440
//!   steps;
//! * 429 answers are waited out by their `X-RateLimit-Reset`, then fail
//!   transiently; a refused key is one line; no key reaches a log line, an
//!   error or a `Debug` output;
//! * pod signals: Datadog and the file source agree on every pod
//!   container's CPU rate (2%), largest working set (exactly) and throttled
//!   fraction (0.01), in one request.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nemutator_core::config::DatadogConfig;
use nemutator_core::metrics::{
    ContainersRequest, MetricsSource, PeriodicMask, PodSignalsRequest, Resolution, Resource,
    SeriesRequest, StatSpec, UsageRequest,
};
use nemutator_core::workload::{ContainerRef, WorkloadKey, WorkloadKind};
use nemutator_metrics::datadog::query::{
    CPU_METRIC, CPU_REQUESTS_METRIC, KINDS, LAST_TERMINATED_METRIC, MEMORY_METRIC,
    MEMORY_REQUESTS_METRIC,
};
use nemutator_metrics::datadog::signals::{CFS_PERIODS_METRIC, CFS_THROTTLED_METRIC};
use nemutator_metrics::{DatadogSource, FileSource};
use nemutator_testkit::datadog::{DatadogServer, StoredSeries};

const WEEK: Duration = Duration::from_secs(7 * 86_400);
const API_KEY: &str = "dd-api-0123456789abcdef0123456789abcdef";
const APP_KEY: &str = "dd-app-fedcba9876543210fedcba9876543210fedcba98";

/// The series the Datadog agent would send for the pods of an OpenMetrics
/// file: the working set as it is, the CPU counter as nanocores between
/// consecutive samples (a reset drops the point), the CFS counters as
/// rates per second likewise, tagged with the namespace, pod, container and
/// the workload's tag.
fn agent_series(text: &str) -> Vec<StoredSeries> {
    type Pod = (String, String, String);
    let mut cpu: HashMap<Pod, Vec<(i64, f64)>> = HashMap::new();
    let mut cfs: HashMap<(Pod, &str), Vec<(i64, f64)>> = HashMap::new();
    let mut memory: HashMap<Pod, Vec<(i64, f64)>> = HashMap::new();
    let mut requests: HashMap<(Pod, &str), Vec<(i64, f64)>> = HashMap::new();
    let mut oom: HashMap<Pod, Vec<(i64, f64)>> = HashMap::new();
    let mut owners: HashMap<(String, String), WorkloadKey> = HashMap::new();
    let eof = nemutator_metrics::openmetrics::parse(text, |s| {
        let (Some(ns), Some(pod)) = (s.label("namespace"), s.label("pod")) else {
            return;
        };
        if s.name == "kube_pod_owner" {
            if let (Some(kind), Some(name)) = (s.label("owner_kind"), s.label("owner_name")) {
                owners.insert(
                    (ns.into(), pod.into()),
                    WorkloadKey::from_owner(ns, kind, name, None),
                );
            }
            return;
        }
        let (Some(c), Some(t)) = (s.label("container"), s.timestamp) else {
            return;
        };
        if c.is_empty() || c == "POD" {
            return;
        }
        let key = (ns.to_string(), pod.to_string(), c.to_string());
        let point = (t.round() as i64, s.value);
        match s.name {
            "container_cpu_usage_seconds_total" => cpu.entry(key).or_default().push(point),
            "container_cpu_cfs_periods_total" => cfs
                .entry((key, CFS_PERIODS_METRIC))
                .or_default()
                .push(point),
            "container_cpu_cfs_throttled_periods_total" => cfs
                .entry((key, CFS_THROTTLED_METRIC))
                .or_default()
                .push(point),
            "container_memory_working_set_bytes" => memory.entry(key).or_default().push(point),
            "kube_pod_container_status_last_terminated_reason"
                if s.label("reason") == Some("OOMKilled") =>
            {
                oom.entry(key).or_default().push(point)
            }
            "kube_pod_container_resource_requests" => match s.label("resource") {
                Some("cpu") => requests
                    .entry((key, CPU_REQUESTS_METRIC))
                    .or_default()
                    .push(point),
                Some("memory") => requests
                    .entry((key, MEMORY_REQUESTS_METRIC))
                    .or_default()
                    .push(point),
                _ => {}
            },
            _ => {}
        }
    });
    assert_eq!(eof.ok(), Some(true), "a complete OpenMetrics file");
    let tags = |(ns, pod, c): &Pod| {
        let workload = owners
            .get(&(ns.clone(), pod.clone()))
            .cloned()
            .unwrap_or_else(|| WorkloadKey::from_pod_name(ns, pod));
        let mut tags = vec![
            format!("kube_namespace:{ns}"),
            format!("pod_name:{pod}"),
            format!("kube_container_name:{c}"),
        ];
        if let Some((_, tag)) = KINDS.iter().find(|(k, _)| *k == workload.kind) {
            tags.push(format!("{tag}:{}", workload.name));
        }
        tags
    };
    let rates = |mut points: Vec<(i64, f64)>, scale: f64| -> Vec<(i64, f64)> {
        points.sort_by_key(|p| p.0);
        points
            .windows(2)
            .filter(|w| w[1].1 >= w[0].1 && w[1].0 > w[0].0)
            .map(|w| (w[1].0, (w[1].1 - w[0].1) / (w[1].0 - w[0].0) as f64 * scale))
            .collect()
    };
    let mut out = Vec::new();
    for (pod, points) in cpu {
        out.push(StoredSeries {
            metric: CPU_METRIC.into(),
            tags: tags(&pod),
            points: rates(points, 1e9),
        });
    }
    for ((pod, metric), points) in cfs {
        out.push(StoredSeries {
            metric: metric.into(),
            tags: tags(&pod),
            points: rates(points, 1.0),
        });
    }
    for (pod, points) in memory {
        out.push(StoredSeries {
            metric: MEMORY_METRIC.into(),
            tags: tags(&pod),
            points,
        });
    }
    for (pod, points) in oom {
        let mut tags = tags(&pod);
        tags.push("reason:oomkilled".into());
        out.push(StoredSeries {
            metric: LAST_TERMINATED_METRIC.into(),
            tags,
            points,
        });
    }
    for ((pod, metric), points) in requests {
        out.push(StoredSeries {
            metric: metric.into(),
            tags: tags(&pod),
            points,
        });
    }
    out
}

/// A day of samples every 15 s (the Datadog agent's collection interval;
/// its rates cover what the kubelet's counter shows between them), 7 s past
/// the quarter-minute as real scrapes are, of two namespaces: a Deployment
/// rolled out halfway (two ReplicaSet generations), a StatefulSet, a
/// DaemonSet and a bare pod, two containers each, following a daily rhythm
/// with noise; their requests, and one container OOM-killed; cAdvisor's CFS
/// counters of every container but the bare pod's (no CPU limit), db-0's
/// app throttled in about half its periods, the others in 2%.
fn mk_cluster() -> String {
    let end = 1_764_547_200; // a Monday, 00:00 UTC
    let start = end - 86_400;
    let mid = start + 43_200;
    let mut rng: u64 = 42;
    let mut uniform = move |lo: f64, hi: f64| {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        lo + (hi - lo) * ((rng >> 11) as f64 / (1u64 << 53) as f64)
    };
    let rhythm = |t: i64| {
        let hour = (t % 86_400) as f64 / 3600.0;
        0.3 + 0.7 * (0.5 + 0.5 * ((hour - 14.0) / 24.0 * std::f64::consts::TAU).cos())
    };
    let mut cpu = String::from("# TYPE container_cpu_usage_seconds counter\n");
    let mut mem = String::from("# TYPE container_memory_working_set_bytes gauge\n");
    let mut req = String::from("# TYPE kube_pod_container_resource_requests gauge\n");
    let mut oom = String::from("# TYPE kube_pod_container_status_last_terminated_reason gauge\n");
    let mut cfs = String::from("# TYPE container_cpu_cfs_periods counter\n");
    let mut throttled = String::from("# TYPE container_cpu_cfs_throttled_periods counter\n");
    for (n, ns) in ["team-a", "team-b"].iter().enumerate() {
        let pods = [
            ("web-7d9f8b6c5d-x2k9p", start, mid),
            ("web-7d9f8b6c5d-q8z4m", start, mid),
            ("web-5c8d7f9b4-b7k2x", mid, end),
            ("web-5c8d7f9b4-w9v6t", mid, end),
            ("db-0", start, end),
            ("db-1", start, end),
            ("node-agent-x7z2q", start, end),
            ("debug", start, end),
        ];
        for (p, (pod, t0, t1)) in pods.iter().enumerate() {
            for (c, container) in ["app", "sidecar"].iter().enumerate() {
                let cores = (0.1 + 0.05 * (p + n) as f64) / (c + 1) as f64;
                let bytes = (200.0 + 50.0 * (p + n) as f64) * 1_048_576.0 / (c + 1) as f64;
                let labels =
                    format!("{{namespace=\"{ns}\",pod=\"{pod}\",container=\"{container}\"}}");
                let mut total = uniform(100.0, 1000.0);
                let mut t = t0 + 7;
                // CFS periods: 150 every 15 s (100 ms each), no noise (the
                // other series keep their random numbers).
                let hot = (*pod, c) == ("db-0", 0);
                let (mut periods, mut slow) = (0.0, 0.0);
                while t <= *t1 {
                    if *pod != "debug" {
                        let share = if hot { 0.4 + 0.2 * rhythm(t) } else { 0.02 };
                        periods += 150.0;
                        slow += (150.0 * share).round();
                        cfs.push_str(&format!(
                            "container_cpu_cfs_periods_total{labels} {periods} {t}\n"
                        ));
                        throttled.push_str(&format!(
                            "container_cpu_cfs_throttled_periods_total{labels} {slow} {t}\n"
                        ));
                    }
                    total += cores * rhythm(t) * uniform(0.85, 1.15) * 15.0;
                    let ws = bytes * (0.8 + 0.2 * rhythm(t)) * uniform(0.97, 1.03);
                    cpu.push_str(&format!(
                        "container_cpu_usage_seconds_total{labels} {total:.3} {t}\n"
                    ));
                    mem.push_str(&format!(
                        "container_memory_working_set_bytes{labels} {ws:.0} {t}\n"
                    ));
                    if (n, *pod, c) == (1, "node-agent-x7z2q", 0) && t > end - 7200 {
                        oom.push_str(&format!("kube_pod_container_status_last_terminated_reason{{namespace=\"{ns}\",pod=\"{pod}\",container=\"{container}\",reason=\"OOMKilled\"}} 1 {t}\n"));
                    }
                    if (t - t0) % 60 == 7 {
                        // Requests, larger in the first generation.
                        let more = if *t1 == mid { 2.0 } else { 1.0 };
                        for (resource, unit, v) in [
                            ("cpu", "core", cores * more),
                            ("memory", "byte", bytes * more),
                        ] {
                            let l = format!("{{namespace=\"{ns}\",pod=\"{pod}\",container=\"{container}\",resource=\"{resource}\",unit=\"{unit}\"}}");
                            req.push_str(&format!(
                                "kube_pod_container_resource_requests{l} {v} {t}\n"
                            ));
                        }
                    }
                    t += 15;
                }
            }
        }
    }
    cpu + &mem + &req + &oom + &cfs + &throttled + "# EOF\n"
}

/// The generated cluster, and the files the test script backfilled into
/// Prometheus when it ran (those sampled every 15 s or faster compare).
fn data() -> Vec<(String, String)> {
    let mut out = vec![("generated cluster".to_string(), mk_cluster())];
    if let Ok(list) = std::env::var(nemutator_testkit::prometheus::DATA_ENV) {
        for f in list.split(':').filter(|s| !s.is_empty()) {
            let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{f}: {e}"));
            out.push((f.to_string(), text));
        }
    }
    out
}

/// Keys in variables of this test's own names.
fn mk_config(server: &DatadogServer, test: &str, end: i64) -> DatadogConfig {
    let (api_env, app_env) = (
        format!("NEMUTATOR_TEST_DD_API_{test}"),
        format!("NEMUTATOR_TEST_DD_APP_{test}"),
    );
    std::env::set_var(&api_env, API_KEY);
    std::env::set_var(&app_env, APP_KEY);
    DatadogConfig {
        site: server.url(),
        api_key_env: api_env,
        app_key_env: app_env,
        end: Some(end),
        ..DatadogConfig::default()
    }
}

fn mk_stats() -> Vec<StatSpec> {
    let office = PeriodicMask::new(86_400, [(9 * 3600, 17 * 3600)]);
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
    ]
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.02 * a.abs().max(b.abs()) || (a - b).abs() < 1e-9
}

/// Whether Datadog can know the container's workload (bare pods carry no
/// workload tag).
fn tagged(c: &ContainerRef) -> bool {
    c.workload.kind != WorkloadKind::Pod
}

#[tokio::test]
async fn datadog_and_file_agree_within_two_percent() {
    for (n, (file, text)) in data().iter().enumerate() {
        let src = FileSource::from_text(text).unwrap_or_else(|e| panic!("{e}"));
        if src.interval() > Duration::from_secs(15) {
            // The agent's rates come from its own collections (15 s): a
            // coarser recording says too little of them (docs/METRICS.md).
            eprintln!("{file}: samples every {:?}, not compared", src.interval());
            continue;
        }
        let info = src.info();
        let server = DatadogServer::start(agent_series(text), API_KEY, APP_KEY)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let dd = DatadogSource::new(&mk_config(&server, &format!("PARITY{n}"), info.now))
            .unwrap_or_else(|e| panic!("{e}"));
        // Datadog's CPU rates are the agent's, averaged over the step: the
        // statistic's rate window is the step.
        let step = info.resolution.step;
        let resolution = Resolution::new(step, step);
        let listing = ContainersRequest {
            namespace: None,
            window: WEEK,
            end: info.now,
        };
        let in_file: Vec<ContainerRef> = src
            .containers(&listing)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(tagged)
            .collect();
        let listed = dd
            .containers(&listing)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(in_file, listed, "{}: containers", file);
        let mut namespaces: Vec<String> = in_file
            .iter()
            .map(|c| c.workload.namespace.clone())
            .collect();
        namespaces.dedup();
        let mut compared = 0;
        let mut requests = 0;
        let mut kills = 0;
        for ns in &namespaces {
            for resource in Resource::ALL {
                let request = UsageRequest {
                    namespace: ns.clone(),
                    resource,
                    window: WEEK,
                    end: info.now,
                    resolution,
                    stats: mk_stats(),
                    oom: resource == Resource::Memory,
                    requests: true,
                };
                let a = src.usage(&request).await.unwrap_or_default();
                let b = dd.usage(&request).await.unwrap_or_else(|e| panic!("{e}"));
                let tagged_a: Vec<&ContainerRef> =
                    a.containers.keys().filter(|c| tagged(c)).collect();
                assert_eq!(
                    tagged_a,
                    b.containers.keys().collect::<Vec<_>>(),
                    "{ns} {resource}"
                );
                for (target, ub) in &b.containers {
                    let ua = &a.containers[target];
                    match (ua.request, ub.request) {
                        (Some(x), Some(y)) => assert!(close(x, y), "{target} {resource} request"),
                        (x, y) => assert_eq!(x, y, "{target} {resource} request"),
                    }
                    requests += usize::from(ub.request.is_some());
                    assert_eq!(ua.oom_killed, ub.oom_killed, "OOM of {target}");
                    kills += usize::from(ub.oom_killed);
                    for (i, (sa, sb)) in ua.stats.iter().zip(&ub.stats).enumerate() {
                        match (sa, sb) {
                            (Some(sa), Some(sb)) => {
                                assert!(
                                    close(sa.value, sb.value),
                                    "{target} {resource} stat {i}: file {sa:?}, datadog {sb:?}"
                                );
                                assert!(
                                    sa.samples.abs_diff(sb.samples) <= 1,
                                    "{target} {resource} stat {i}: file {sa:?}, datadog {sb:?}"
                                );
                                compared += 1;
                            }
                            (None, None) => {}
                            _ => {
                                panic!("{target} {resource} stat {i}: file {sa:?}, datadog {sb:?}")
                            }
                        }
                    }
                }
            }
            let series = SeriesRequest {
                namespace: ns.clone(),
                resource: Resource::Memory,
                window: WEEK,
                end: info.now,
                resolution,
            };
            let a = src.series(&series).await.unwrap_or_default();
            let b = dd.series(&series).await.unwrap_or_else(|e| panic!("{e}"));
            for (w, pb) in &b.workloads {
                let pa = &a.workloads[w];
                assert_eq!(pa.len(), pb.len(), "series of {w}");
                for (x, y) in pa.iter().zip(pb) {
                    assert!(
                        x.0 == y.0 && close(x.1, y.1),
                        "series of {w}: {x:?} vs {y:?}"
                    );
                }
            }
        }
        assert!(compared > 10, "{file}: {compared} statistics");
        if n == 0 {
            assert!(requests > 10, "{file}: {requests} current requests");
            assert_eq!(kills, 1, "{file}: OOM kills");
        }
        // One listing; per namespace and resource one usage request per
        // 1,440 steps, and the same for the series.
        let steps = WEEK.as_secs() / step.as_secs();
        let per_question = steps.div_ceil(1_440);
        let expected = 1 + namespaces.len() as u64 * 3 * per_question;
        assert_eq!(dd.requests(), expected, "{}", file);
        let seen = server.seen();
        assert!(seen.iter().all(|s| s.status == 200), "every request valid");
        assert!(seen
            .iter()
            .all(|s| s.api_key == API_KEY && s.app_key == APP_KEY));
    }
}

/// A log sink for this thread's tracing events.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

fn sample_request(now: i64) -> UsageRequest {
    UsageRequest {
        namespace: "team-a".into(),
        resource: Resource::Memory,
        window: Duration::from_secs(86_400),
        end: now,
        resolution: Resolution::DEFAULT,
        stats: mk_stats(),
        oom: false,
        requests: false,
    }
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_keys_never_logged() {
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    // The process's subscriber: a scoped one misses callsites another test
    // thread registered first (and the other tests' lines must be clean too).
    tracing::subscriber::set_global_default(subscriber).unwrap_or_else(|e| panic!("{e}"));

    let text = mk_cluster();
    let src = FileSource::from_text(&text).unwrap_or_else(|e| panic!("{e}"));
    let now = src.info().now;
    let server = DatadogServer::start(agent_series(&text), API_KEY, APP_KEY)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let config = mk_config(&server, "LIMITS", now);
    let dd = DatadogSource::new(&config).unwrap_or_else(|e| panic!("{e}"));

    // Two 429s, each waited out for X-RateLimit-Reset (1 s), then an answer.
    server.throttle(2);
    let batch = dd
        .usage(&sample_request(now))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!batch.containers.is_empty());
    assert_eq!(dd.throttled(), 2);
    let statuses: Vec<u16> = server.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, vec![429, 429, 200]);

    // Still limited after every wait: a transient error, on one line.
    server.throttle(nemutator_metrics::datadog::RATE_LIMIT_WAITS + 1);
    let err = dd.usage(&sample_request(now)).await.err();
    assert!(err.as_ref().is_some_and(|e| e.is_transient()), "{err:?}");
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("HTTP 429") && !message.contains('\n'),
        "{message}"
    );

    // A refused key: one permanent line naming the variables.
    let wrong = DatadogConfig {
        app_key_env: "NEMUTATOR_TEST_DD_WRONG_APP".into(),
        ..config.clone()
    };
    std::env::set_var(&wrong.app_key_env, "not-the-application-key-5f5f5f5f");
    let refused = DatadogSource::new(&wrong).unwrap_or_else(|e| panic!("{e}"));
    let err = refused.usage(&sample_request(now)).await.err();
    assert!(err.as_ref().is_some_and(|e| !e.is_transient()), "{err:?}");
    let refused_message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        refused_message.contains("HTTP 403")
            && refused_message.contains("$NEMUTATOR_TEST_DD_WRONG_APP")
            && !refused_message.contains('\n'),
        "{refused_message}"
    );

    let logs = logs.text();
    assert!(logs.contains("datadog answered"), "debug logs captured");
    assert!(logs.contains("rate limit"), "{logs}");
    for secret in [API_KEY, APP_KEY, "not-the-application-key-5f5f5f5f"] {
        for (what, text) in [
            ("logs", logs.as_str()),
            ("error", message.as_str()),
            ("refusal", refused_message.as_str()),
            ("debug", &format!("{dd:?} {refused:?} {config:?}")),
        ] {
            assert!(!text.contains(secret), "a key in the {what}");
        }
    }
}

/// Pod signals agree with the file source's on the generated cluster
/// (samples every 15 s, the agent's interval). CPU within 2%: the file
/// source takes PromQL's rate() of the 20 samples in a 5-minute window (19
/// intervals, extrapolated to the window), Datadog the mean of the agent's
/// 20 rates (each over the 15 s before its sample), so one interval of
/// ±15% noise in twenty differs. The working set is the largest of the
/// same samples: equal. The throttled fraction within 0.01: the same two
/// counters, over 19 intervals or 20.
#[tokio::test]
async fn datadog_and_file_agree_on_pod_signals() {
    let text = mk_cluster();
    let src = FileSource::from_text(&text).unwrap_or_else(|e| panic!("{e}"));
    let server = DatadogServer::start(agent_series(&text), API_KEY, APP_KEY)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dd = DatadogSource::new(&mk_config(&server, "SIGNALS", src.newest()))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut compared = 0;
    let mut calls = 0;
    for end in [src.newest(), src.newest() - 12 * 3600 - 7] {
        for namespace in [None, Some("team-b".to_string())] {
            let request = PodSignalsRequest {
                namespace,
                window: Duration::from_secs(300),
                end,
            };
            let a = src
                .pod_signals(&request)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let b = dd
                .pod_signals(&request)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            calls += 1;
            assert_eq!(
                a.containers.keys().collect::<Vec<_>>(),
                b.containers.keys().collect::<Vec<_>>(),
                "{request:?}"
            );
            for (k, sa) in &a.containers {
                let sb = b.containers[k];
                let (Some(ca), Some(cb)) = (sa.cpu, sb.cpu) else {
                    panic!("{k:?}: file {sa:?}, datadog {sb:?}");
                };
                assert!(close(ca, cb), "{k:?} CPU: file {sa:?}, datadog {sb:?}");
                assert_eq!(sa.memory, sb.memory, "{k:?}");
                match (sa.throttled, sb.throttled) {
                    (Some(x), Some(y)) => assert!((x - y).abs() < 0.01, "{k:?}: {x} vs {y}"),
                    (x, y) => assert_eq!(x, y, "{k:?} throttled"),
                }
                compared += 1;
            }
        }
    }
    assert!(compared > 40, "{compared} compared");
    assert_eq!(dd.requests(), calls, "one request per question");
    // The throttled container, and the bare pod without a CPU limit.
    let all = dd
        .pod_signals(&PodSignalsRequest {
            namespace: None,
            window: Duration::from_secs(300),
            end: src.newest(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let hot: Vec<_> = all
        .containers
        .iter()
        .filter(|(_, s)| s.throttled.is_some_and(|t| t > 0.3))
        .map(|(k, _)| (k.pod.as_str(), k.container.as_str()))
        .collect();
    assert_eq!(
        hot,
        vec![("db-0", "app"), ("db-0", "app")],
        "one per namespace"
    );
    assert!(all
        .containers
        .iter()
        .filter(|(k, _)| k.pod == "debug")
        .all(|(_, s)| s.throttled.is_none() && s.cpu.is_some()));
    assert!(server.seen().iter().all(|s| s.status == 200));
}
