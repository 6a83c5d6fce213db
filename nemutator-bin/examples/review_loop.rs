//! Review `examples/admission-review.json` N times with the webhook's embedded
//! defaults (configuration, example metrics file, mimalloc), for instruction
//! counts that do not depend on machine load (docs/PERFORMANCE.md):
//!
//! ```text
//! cargo build --release -p nemutator-bin --example review_loop
//! valgrind --tool=callgrind --toggle-collect='review_loop::run_reviews' \
//!   target/release/examples/review_loop 1000
//! ```
//!
//! A second argument names another review file to loop over instead (say,
//! the example written compactly, as the API server sends it).
//!
//! With `EVICT_KB=N` in the environment, N KiB of memory are written between
//! two reviews, out of the timed part, so each review starts with its code
//! and data out of the core's caches, as in the server, where TLS, HTTP and
//! the kernel run between two reviews (docs/PERFORMANCE.md: 1024 KiB brings
//! a review near its cost in the server). It then prints the time per review
//! of the timed part.
//!
//! Divide the `I refs` valgrind prints by N for instructions per review
//! (decode, mutation chain, patch, response encoding). Without valgrind it
//! prints the wall-clock time per review.

use std::sync::Arc;

use anyhow::Context as _;
use nemutator_core::admission::Admission;
use nemutator_core::config::Config;
use nemutator_core::mutate::{Pipeline, ResourcesLayer};
use nemutator_core::recommend::{RecommendationStore, Refresher};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[inline(never)]
fn run_reviews(
    rt: &tokio::runtime::Runtime,
    admission: &Admission,
    body: &[u8],
    n: usize,
) -> anyhow::Result<usize> {
    let mut bytes = 0;
    for _ in 0..n {
        let reviewed = rt.block_on(admission.review(std::hint::black_box(body)))?;
        anyhow::ensure!(reviewed.patch.is_some(), "the example got no patch");
        bytes += reviewed.response.into_review_json().len();
    }
    Ok(bytes)
}

/// [`run_reviews`] with `evict` (a buffer larger than the caches) written
/// over between two reviews; returns the time spent in the reviews alone.
fn run_cold_reviews(
    rt: &tokio::runtime::Runtime,
    admission: &Admission,
    body: &[u8],
    n: usize,
    evict: &mut [u8],
) -> anyhow::Result<std::time::Duration> {
    let mut spent = std::time::Duration::ZERO;
    for round in 0..n {
        // One write per cache line.
        for (i, b) in evict.iter_mut().enumerate().step_by(64) {
            *b = b.wrapping_add((i ^ round) as u8);
        }
        let start = std::time::Instant::now();
        run_reviews(rt, admission, body, 1)?;
        spent += start.elapsed();
    }
    std::hint::black_box(evict);
    Ok(spent)
}

fn main() -> anyhow::Result<()> {
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a.parse().context("N must be a number")?,
        None => 1000,
    };
    let config = Config::load(None)?;
    let policies = Arc::new(config.policies.clone());
    let store = Arc::new(RecommendationStore::new());
    let loader = nemutator_metrics::loader_from_config(&config.metrics)?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    rt.block_on(Refresher::new(loader, policies.clone(), store.clone()).refresh_once())?;
    let pipeline = Pipeline::builder()
        .layer(ResourcesLayer::new(store, policies))
        .build();
    let admission = Admission::new(pipeline);
    // An optional second argument names another review to loop over.
    let path = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "examples/admission-review.json".into());
    let body =
        std::fs::read(&path).with_context(|| format!("{path} (run from the repository root)"))?;
    if let Ok(kb) = std::env::var("EVICT_KB") {
        let kb: usize = kb.parse().context("EVICT_KB must be a number of KiB")?;
        let spent = run_cold_reviews(&rt, &admission, &body, n, &mut vec![0; kb * 1024])?;
        eprintln!(
            "{n} reviews after writing {kb} KiB each: {:.2} us each (reviews alone)",
            spent.as_secs_f64() * 1e6 / n.max(1) as f64
        );
        return Ok(());
    }
    let start = std::time::Instant::now();
    let bytes = run_reviews(&rt, &admission, &body, n)?;
    eprintln!(
        "{n} reviews, {:.2} us each ({bytes} response bytes in all)",
        start.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64
    );
    Ok(())
}
