//! `metrics.source: kubernetes` against the real API server: pod metrics
//! served by the testkit's stand-in for metrics-server, registered as the
//! `v1beta1.metrics.k8s.io` APIService and reached through kube-apiserver's
//! aggregation layer (nemutator-testkit `metrics_server`, which says what is
//! simulated). The sampled history gives the statistic its definition asks
//! for, survives a restart in a file and in Redis, and stays bounded; the
//! source handed out answers live pod signals from the history as sampled
//! since (CPU and memory; never a throttled fraction).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nemutator_core::config::{CacheConfig, Config, KubernetesMetricsConfig};
use nemutator_core::metrics::{MetricsClient, PodContainerRef, PodSignalsRequest, SourceLoader};
use nemutator_core::recommend::{Recommendation, Recommender};
use nemutator_metrics::kubernetes::{HistoryKeeper, KubernetesLoader};
use nemutator_metrics::RedisStore;
use nemutator_testkit::cluster::TestCluster;
use nemutator_testkit::metrics_server::{MetricsServer, PodUsage};
use nemutator_testkit::redis::TestRedis;

const T0: i64 = 1_764_547_200;

fn mk_pods(minute: i64) -> Vec<PodUsage> {
    // Two pods of Deployment shop/api: a at 100m for half an hour, then
    // 300m; b at 200m throughout. Memory 100Mi and 150Mi.
    let a_cpu = if minute < 30 { "100m" } else { "300m" };
    let c = |cpu: &str, mem: &str| vec![("api".to_string(), cpu.to_string(), mem.to_string())];
    vec![
        (
            "shop".into(),
            "api-5d78c9869d-x7k2p".into(),
            c(a_cpu, "100Mi"),
        ),
        (
            "shop".into(),
            "api-5d78c9869d-q9w4z".into(),
            c("200m", "150Mi"),
        ),
        // Usage in nanocores and kibibytes, as metrics-server writes it.
        (
            "shop".into(),
            "worker-7c9f8b6d4-kx2lp".into(),
            c("50000000n", "51200Ki"),
        ),
    ]
}

fn mk_loader(cluster: &TestCluster, keeper: HistoryKeeper, max_samples: usize) -> KubernetesLoader {
    let config = KubernetesMetricsConfig {
        max_samples,
        interval: nemutator_core::units::HumanDuration::from_secs(1),
        ..KubernetesMetricsConfig::default()
    };
    KubernetesLoader::new(config, Duration::ZERO, keeper).with_client(cluster.client.clone())
}

async fn sample_minutes(
    loader: &KubernetesLoader,
    server: &MetricsServer,
    minutes: std::ops::Range<i64>,
) -> Option<MetricsClient> {
    let mut last = None;
    for m in minutes {
        server.set_time(T0 + 60 * m);
        server.set_pods(mk_pods(m));
        last = loader
            .load()
            .await
            .unwrap_or_else(|e| panic!("minute {m}: {e}"));
    }
    last
}

async fn recommend(client: MetricsClient) -> Vec<Recommendation> {
    let config = Config::from_yaml(
        "policies:\n  - { name: t, namespaces: [\"*\"], exclude_namespaces: [], window: 2h, min_history: 0s, \
         cpu: { percentile: 95, headroom: 0% }, memory: { percentile: 100, headroom: 0% } }\n",
        Path::new("test.yaml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Recommender::new(client, Arc::new(config.policies))
        .recommend_all(None)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn usage(recs: &[Recommendation], workload: &str) -> (f64, f64) {
    let r = recs
        .iter()
        .find(|r| r.target.workload.name == workload)
        .unwrap_or_else(|| panic!("no recommendation for {workload}: {recs:?}"));
    (
        r.cpu.as_ref().map_or(f64::NAN, |c| c.usage),
        r.memory.as_ref().map_or(f64::NAN, |m| m.usage),
    )
}

#[tokio::test]
async fn pod_metrics_through_the_aggregation_layer_give_the_statistic() {
    let Some(cluster) = TestCluster::from_env("pod_metrics_through_the_aggregation_layer").await
    else {
        return;
    };
    let server = MetricsServer::start().unwrap_or_else(|e| panic!("{e}"));
    server
        .register(&cluster)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("nemutator-k8s-history-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("history.json");
    let _ = std::fs::remove_file(&file);

    let loader = mk_loader(&cluster, HistoryKeeper::File(file.clone()), 1_000_000);
    let client = sample_minutes(&loader, &server, 0..60)
        .await
        .unwrap_or_else(|| panic!("no source"));
    let info = client.info().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.name, "kubernetes", "the source names its backend");
    let recs = recommend(client).await;
    // The per-step maximum over the two pods: 0.2 cores for half an hour,
    // 0.3 after; its 95th percentile is 0.3. Memory: the larger pod's.
    let (cpu, memory) = usage(&recs, "api");
    assert!((cpu - 0.3).abs() < 0.003, "cpu {cpu}");
    assert_eq!(memory, 150.0 * 1024.0 * 1024.0);
    let (cpu, memory) = usage(&recs, "worker");
    assert!((cpu - 0.05).abs() < 0.0005, "cpu {cpu}");
    assert_eq!(memory, 51_200.0 * 1024.0);
    // Every sample came through kube-apiserver, as the test's user.
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|(p, u)| p == "/apis/metrics.k8s.io/v1beta1/pods" && u == "nemutator-admin"),
        "{requests:?}"
    );
    // A repeated answer (same timestamp) adds nothing.
    let before = loader.history().await.samples();
    server.set_time(T0 + 59 * 60);
    let _ = loader.load().await;
    assert_eq!(loader.history().await.samples(), before);
    assert_eq!(before, 3 * 60);

    // A restart continues the saved history.
    let restarted = mk_loader(&cluster, HistoryKeeper::File(file.clone()), 1_000_000);
    let _ = sample_minutes(&restarted, &server, 60..61).await;
    assert_eq!(restarted.history().await.samples(), before + 3);

    // Bounded: at most max_samples, the newest kept.
    let small = mk_loader(&cluster, HistoryKeeper::Memory, 30);
    let _ = sample_minutes(&small, &server, 0..60).await;
    let h = small.history().await;
    assert!(h.samples() <= 30 && h.samples() >= 27, "{}", h.samples());
    assert_eq!(h.newest(), Some(T0 + 59 * 60));

    // Live pod signals: the source handed out at the first sample answers
    // from the history sampled since, although no new source is handed out
    // (recomputed hourly).
    let config = KubernetesMetricsConfig {
        interval: nemutator_core::units::HumanDuration::from_secs(1),
        ..KubernetesMetricsConfig::default()
    };
    let live = KubernetesLoader::new(config, Duration::from_secs(3600), HistoryKeeper::Memory)
        .with_client(cluster.client.clone());
    let client = sample_minutes(&live, &server, 0..1)
        .await
        .unwrap_or_else(|| panic!("no source at the first sample"));
    assert!(sample_minutes(&live, &server, 1..20).await.is_none());
    let signals = |end: i64| {
        let client = client.clone();
        async move {
            client
                .pod_signals(PodSignalsRequest {
                    namespace: Some("shop".into()),
                    window: Duration::from_secs(300),
                    end,
                })
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let key = |pod: &str| PodContainerRef {
        namespace: "shop".into(),
        pod: pod.into(),
        container: "api".into(),
    };
    let first = signals(T0 + 19 * 60).await;
    assert_eq!(first.containers.len(), 3, "{first:?}");
    for (pod, cpu, memory) in [
        ("api-5d78c9869d-x7k2p", 0.1, 100.0 * 1024.0 * 1024.0),
        ("api-5d78c9869d-q9w4z", 0.2, 150.0 * 1024.0 * 1024.0),
        ("worker-7c9f8b6d4-kx2lp", 0.05, 51_200.0 * 1024.0),
    ] {
        let s = first.containers[&key(pod)];
        assert!(
            s.cpu.is_some_and(|c| (c - cpu).abs() < 1e-9),
            "{pod}: {s:?}"
        );
        assert_eq!(s.memory, Some(memory), "{pod}");
        assert_eq!(s.throttled, None, "metrics.k8s.io has no throttling");
    }
    // Pod a goes to 300m at minute 30: the same source sees it.
    assert!(sample_minutes(&live, &server, 20..40).await.is_none());
    let later = signals(T0 + 39 * 60).await;
    let a = later.containers[&key("api-5d78c9869d-x7k2p")];
    assert!(a.cpu.is_some_and(|c| (c - 0.3).abs() < 1e-9), "{a:?}");

    // With Redis, the history lives there: another replica continues it.
    if let Some(redis) = TestRedis::from_env("kubernetes_history_in_redis") {
        let mut cache = CacheConfig::new(redis.url);
        cache.prefix = redis.prefix;
        let store = |holder: &str| {
            HistoryKeeper::Redis(Box::new(
                RedisStore::new(&cache, holder).unwrap_or_else(|e| panic!("{e}")),
            ))
        };
        let first = mk_loader(&cluster, store("a"), 1_000_000);
        let _ = sample_minutes(&first, &server, 0..10).await;
        let second = mk_loader(&cluster, store("b"), 1_000_000);
        let _ = sample_minutes(&second, &server, 10..11).await;
        assert_eq!(second.history().await.samples(), 3 * 11);
        // The first producer, back after a pause longer than two intervals,
        // continues the history the second one saved, not its own.
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        let _ = sample_minutes(&first, &server, 11..12).await;
        assert_eq!(first.history().await.samples(), 3 * 12);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
