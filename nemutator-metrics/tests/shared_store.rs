//! The shared store against a real Redis (`scripts/redis.sh`, or a
//! `redis-server` of the test's own where it must be stopped): fencing,
//! takeover of a dead producer, restarts that read instead of querying, and
//! an outage that keeps the last good data.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nemutator_core::config::{CacheConfig, Config};
use nemutator_core::metrics::{BoxFuture, MetricsClient, MetricsError, SourceLoader};
use nemutator_core::recommend::{
    Publication, RecommendationStore, Refresher, SharedError, SharedRefresher, SharedStore,
    SharedTiming,
};
use nemutator_core::season::{FittedProfile, SeasonProfile, SeasonSnapshot};
use nemutator_core::units::HumanDuration;
use nemutator_metrics::{RedisStore, TextLoader};
use nemutator_testkit::cluster::eventually;
use nemutator_testkit::redis::{OwnRedis, TestRedis};

const LIMIT: Duration = Duration::from_secs(20);

fn mk_config(url: &str, prefix: &str) -> CacheConfig {
    let mut c = CacheConfig::new(url);
    c.prefix = prefix.into();
    c.lock_ttl = HumanDuration::from_secs(1);
    c.timeout = HumanDuration(Duration::from_millis(500));
    c
}

fn mk_store(url: &str, prefix: &str, holder: &str) -> Arc<RedisStore> {
    Arc::new(RedisStore::new(&mk_config(url, prefix), holder).unwrap_or_else(|e| panic!("{e}")))
}

/// The embedded sample, counting the loads that reach it.
#[derive(Debug)]
struct Counting {
    inner: TextLoader,
    loads: AtomicUsize,
}

impl SourceLoader for Counting {
    fn load(&self) -> BoxFuture<'_, Result<Option<MetricsClient>, MetricsError>> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load()
    }
}

struct Replica {
    store: Arc<RecommendationStore>,
    loader: Arc<Counting>,
    shared: SharedRefresher,
}

fn mk_replica(redis: &Arc<RedisStore>, fresh_for: Duration) -> Replica {
    let store = Arc::new(RecommendationStore::new());
    let loader = Arc::new(Counting {
        inner: TextLoader::sample(),
        loads: AtomicUsize::new(0),
    });
    let policies = Arc::new(Config::default().policies);
    let refresher = Refresher::new(loader.clone(), policies, store.clone());
    let timing = SharedTiming {
        tick: Duration::from_millis(200),
        fresh_for,
    };
    let shared = SharedRefresher::new(refresher, redis.clone(), timing);
    Replica {
        store,
        loader,
        shared,
    }
}

#[tokio::test]
async fn a_stale_producer_is_fenced_off_and_its_successor_publishes() {
    let Some(redis) = TestRedis::from_env("a_stale_producer_is_fenced_off") else {
        return;
    };
    let a = mk_store(&redis.url, &redis.prefix, "replica-a");
    let b = mk_store(&redis.url, &redis.prefix, "replica-b");
    let ta = a.lead(None).await.unwrap_or_else(|e| panic!("{e}"));
    let ta = ta.unwrap_or_else(|| panic!("a free lock is taken"));
    assert_eq!(
        b.lead(None).await.ok(),
        Some(None),
        "one producer at a time"
    );
    assert_eq!(a.lead(Some(ta)).await.ok(), Some(Some(ta)), "renewed");
    let first = Publication::default();
    let head = a.publish(ta, Some(&first), 100).await;
    assert_eq!(
        head.as_ref().map(|h| (h.version, h.token)).ok(),
        Some((1, ta))
    );

    // a stalls: its lock expires and b takes over with a newer token.
    let tb = eventually(LIMIT, || async { b.lead(None).await.ok().flatten() }).await;
    let tb = tb.unwrap_or_else(|| panic!("b never took the expired lock"));
    assert!(tb > ta, "tokens increase: {tb} after {ta}");
    // a's late write is refused, whatever it carries.
    let late = a.publish(ta, Some(&first), 200).await;
    assert!(
        matches!(late, Err(SharedError::Fenced { token, newer }) if token == ta && newer == tb),
        "{late:?}"
    );
    assert!(matches!(
        a.publish(ta, None, 200).await,
        Err(SharedError::Fenced { .. })
    ));
    assert_eq!(a.lead(Some(ta)).await.ok(), Some(None), "a knows it lost");
    let head = a.head().await.ok().flatten();
    assert_eq!(
        head.map(|h| (h.version, h.token, h.published_at)),
        Some((1, ta, 100))
    );
    // b publishes; seasons travel with the recommendations.
    let second = Publication {
        recommendations: Vec::new(),
        seasons: SeasonSnapshot {
            workloads: Vec::new(),
            cluster: Some(FittedProfile {
                profile: SeasonProfile::flat(2.5, 3600),
                fitted_at: 7,
            }),
        },
    };
    let head = b.publish(tb, Some(&second), 300).await;
    assert_eq!(head.map(|h| (h.version, h.token)).ok(), Some((2, tb)));
    let read = a.read().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read.map(|(h, p)| (h.version, p)), Some((2, second)));
}

#[tokio::test]
async fn one_replica_produces_the_others_read_and_a_dead_producer_is_replaced() {
    let Some(redis) = TestRedis::from_env("one_replica_produces") else {
        return;
    };
    let ra = mk_store(&redis.url, &redis.prefix, "replica-a");
    let rb = mk_store(&redis.url, &redis.prefix, "replica-b");
    let a = mk_replica(&ra, Duration::from_secs(3600));
    let b = mk_replica(&rb, Duration::from_secs(1));
    let (ha, hb) = (a.shared.health(), b.shared.health());
    let task_a = tokio::spawn(a.shared.clone().run());
    let published = eventually(LIMIT, || async { (ha.publishes() > 0).then_some(()) }).await;
    assert!(published.is_some(), "a never published");
    let task_b = tokio::spawn(b.shared.clone().run());
    let read = eventually(LIMIT, || async { b.store.is_loaded().then_some(()) }).await;
    assert!(read.is_some(), "b never read the publication");
    assert!(!a.store.is_empty());
    assert_eq!(
        b.store.snapshot(),
        a.store.snapshot(),
        "the same recommendations"
    );
    assert!(ha.is_producer() && !hb.is_producer());
    assert_eq!(b.loader.loads.load(Ordering::SeqCst), 0, "b never queried");

    // a dies without a word: its lock expires, b produces.
    task_a.abort();
    let took = eventually(LIMIT, || async { hb.is_producer().then_some(()) }).await;
    assert!(took.is_some(), "b never took over");
    let published_b = eventually(LIMIT, || async {
        let h = rb.head().await.ok().flatten()?;
        (h.token == hb.token() && hb.publishes() > 0).then_some(h)
    })
    .await;
    assert!(published_b.is_some(), "b never published with its token");
    assert!(
        b.loader.loads.load(Ordering::SeqCst) > 0,
        "b queried once producing"
    );

    // A replica restarting with fresh data in Redis reads, never queries.
    let c = mk_replica(&ra, Duration::from_secs(3600));
    task_b.abort();
    let task_c = tokio::spawn(c.shared.clone().run());
    let hc = c.shared.health();
    let took = eventually(LIMIT, || async { hc.is_producer().then_some(()) }).await;
    assert!(took.is_some(), "c never took over");
    assert!(c.store.is_loaded());
    assert_eq!(c.store.snapshot(), a.store.snapshot());
    assert_eq!(
        c.loader.loads.load(Ordering::SeqCst),
        0,
        "fresh data is not recomputed"
    );
    task_b.abort();
    task_c.abort();
}

#[tokio::test]
async fn redis_stopped_mid_run_keeps_the_last_good_data() {
    let Some(mut own) = OwnRedis::launch("redis_stopped_mid_run") else {
        return;
    };
    let redis = mk_store(&own.url(), "outage", "replica-a");
    let a = mk_replica(&redis, Duration::from_secs(3600));
    let health = a.shared.health();
    let task = tokio::spawn(a.shared.clone().run());
    let published = eventually(LIMIT, || async { (health.publishes() > 0).then_some(()) }).await;
    assert!(published.is_some(), "never published");
    let before = a.store.snapshot();
    assert!(!before.is_empty());

    own.stop();
    let down = eventually(LIMIT, || async { (!health.is_up()).then_some(()) }).await;
    assert!(down.is_some(), "the outage is not seen");
    let errors = health.errors();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        health.errors() > errors,
        "failures are counted while it lasts"
    );
    assert_eq!(a.store.snapshot(), before, "the last good data stays");
    assert_eq!(
        a.loader.loads.load(Ordering::SeqCst),
        1,
        "no local recomputation"
    );

    // Back, empty: the producer takes the lock again and republishes.
    own.start();
    let back = eventually(LIMIT, || async {
        let h = redis.head().await.ok().flatten()?;
        (health.is_up() && health.is_producer()).then_some(h)
    })
    .await;
    assert!(back.is_some(), "never republished after the outage");
    let read = redis.read().await.ok().flatten();
    assert_eq!(read.map(|(_, p)| p.recommendations), Some(before));
    task.abort();
}

#[tokio::test]
async fn a_replica_starting_while_redis_is_down_computes_locally() {
    let Some(mut own) = OwnRedis::launch("a_replica_starting_while_redis_is_down") else {
        return;
    };
    own.stop();
    let redis = mk_store(&own.url(), "down", "replica-a");
    let a = mk_replica(&redis, Duration::from_secs(3600));
    let health = a.shared.health();
    let task = tokio::spawn(a.shared.clone().run());
    let loaded = eventually(LIMIT, || async { a.store.is_loaded().then_some(()) }).await;
    assert!(loaded.is_some(), "nothing to serve");
    assert!(!health.is_up() && !health.is_producer() && health.publishes() == 0);
    task.abort();
}

#[test]
fn bad_settings_are_one_line_errors_without_the_url() {
    let mut c = CacheConfig::new("redis://:hunter2@[not a host");
    let e = RedisStore::new(&c, "x").err().map(|e| e.to_string());
    let e = e.unwrap_or_default();
    assert!(
        e.contains("not a valid Redis URL") && !e.contains("hunter2"),
        "{e}"
    );
    c.redis = "redis://127.0.0.1:1".into();
    c.password_env = Some("NEMUTATOR_TEST_NO_SUCH_VARIABLE".into());
    let e = RedisStore::new(&c, "x").err().map(|e| e.to_string());
    assert!(e
        .unwrap_or_default()
        .contains("NEMUTATOR_TEST_NO_SUCH_VARIABLE"));
    c.password_env = None;
    c.lock_ttl.0 = Duration::ZERO;
    assert!(RedisStore::new(&c, "x").is_err());
}
