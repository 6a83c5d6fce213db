//! What the shared store costs, against a real Redis
//! (`scripts/redis.sh start DIR`, then `. DIR/env`):
//!
//! ```sh
//! cargo run --release -p nemutator-metrics --example redis_cost -- "$NEMUTATOR_TEST_REDIS_URL" [CONTAINERS]
//! ```
//!
//! It publishes CONTAINERS (default 4,000: 2,000 workloads × 2 containers)
//! workload containers with a season-less, a peak and an off-peak
//! recommendation each (the sample's recommendations, renamed), then times,
//! 20 times each, the median of: a publication (JSON encoding and the fenced
//! Lua write), the poll every replica makes each tick (`HMGET` of the
//! version), and a read (fetch, decode and swap into a
//! `RecommendationStore`). It prints the payload size too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nemutator_core::config::{CacheConfig, Config};
use nemutator_core::recommend::{
    Publication, Recommendation, RecommendationStore, Refresher, SharedStore,
};
use nemutator_core::season::Season;
use nemutator_metrics::{RedisStore, TextLoader};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: redis_cost URL [CONTAINERS]")?;
    let containers: usize = args.next().map_or(Ok(4000), |n| n.parse())?;

    let sample = Arc::new(RecommendationStore::new());
    let refresher = Refresher::new(
        Arc::new(TextLoader::sample()),
        Arc::new(Config::default().policies),
        sample.clone(),
    );
    refresher.refresh_once().await?;
    let base = sample.snapshot();
    let mut recs: Vec<Recommendation> = Vec::with_capacity(containers * 3);
    for i in 0..containers {
        let mut r = base[i % base.len()].clone();
        r.target.workload.name = format!("workload-{:05}", i / 2);
        r.target.container = format!("c{}", i % 2);
        for season in [None, Some(Season::Peak), Some(Season::OffPeak)] {
            recs.push(Recommendation {
                season,
                ..r.clone()
            });
        }
    }
    let publication = Publication {
        recommendations: recs,
        seasons: Default::default(),
    };

    let mut config = CacheConfig::new(url);
    config.prefix = format!("bench-{}", std::process::id());
    let redis = RedisStore::new(&config, "bench")?;
    let token = redis.lead(None).await?.ok_or("the lock is held")?;
    let store = RecommendationStore::new();
    let (mut publish, mut poll, mut read) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..20 {
        let t = Instant::now();
        redis.publish(token, Some(&publication), i).await?;
        publish.push(t.elapsed());
        let t = Instant::now();
        redis.head().await?;
        poll.push(t.elapsed());
        let t = Instant::now();
        let (_, p) = redis.read().await?.ok_or("nothing published")?;
        store.replace(p.recommendations);
        read.push(t.elapsed());
    }
    let payload = serde_json::to_vec(&publication)?.len();
    println!(
        "{} recommendations ({containers} containers x 3 seasons), payload {:.1} MB",
        publication.recommendations.len(),
        payload as f64 / 1e6
    );
    println!(
        "median of 20: publish {:.1} ms, poll {:.3} ms, read+decode+swap {:.1} ms",
        median(publish).as_secs_f64() * 1e3,
        median(poll).as_secs_f64() * 1e3,
        median(read).as_secs_f64() * 1e3
    );
    for k in redis.keys() {
        redis::cmd("DEL")
            .arg(k)
            .exec_async(
                &mut redis::Client::open(config.redis.as_str())?
                    .get_multiplexed_async_connection()
                    .await?,
            )
            .await?;
    }
    Ok(())
}
