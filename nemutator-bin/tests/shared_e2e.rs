//! End-to-end: two real `nemutator webhook` processes sharing one real Redis
//! (`metrics.cache`). Replica B reads a file whose memory usage is twice
//! replica A's, so whose data a patch comes from shows in the patch: while A
//! produces, both answer a review with A's patch; once A is killed, B takes
//! the lock and both it and a new replica answer with B's.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use nemutator_testkit::redis::TestRedis;
use support::{root, tmpdir, Client, Webhook};

fn example_review() -> Vec<u8> {
    std::fs::read(root().join("examples/admission-review.json")).unwrap_or_else(|e| panic!("{e}"))
}

/// The sample usage with every memory sample multiplied by `factor`.
fn scaled_usage(to: &Path, factor: u64) {
    let text = std::fs::read_to_string(root().join("examples/data/usage.om"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut parts: Vec<&str> = line.split(' ').collect();
        let scaled;
        if line.starts_with("container_memory_working_set_bytes{") && parts.len() == 3 {
            let v: u64 = parts[1].parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            scaled = (v * factor).to_string();
            parts[1] = &scaled;
        }
        out.push_str(&parts.join(" "));
        out.push('\n');
    }
    std::fs::write(to, out).unwrap_or_else(|e| panic!("{e}"));
}

fn config(dir: &Path, name: &str, usage: &Path, redis: &TestRedis) -> String {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "metrics:\n  file: {{ path: {} }}\n  cache: {{ redis: \"{}\", prefix: {}, lock_ttl: 2s, timeout: 1s }}\n",
            usage.display(),
            redis.url,
            redis.prefix
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

async fn patch(client: &Client) -> String {
    let reply = client
        .request("POST", "/mutate", example_review())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reply.status, 200);
    let v: serde_json::Value =
        serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{e}"));
    let patch = v["response"]["patch"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!patch.is_empty(), "{v}");
    patch
}

async fn metric(client: &Client, name: &str) -> Option<u64> {
    let r = client.request("GET", "/metrics", vec![]).await.ok()?;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Poll until `check` holds (at most 30 s).
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn two_webhooks_answer_alike_and_a_killed_producer_is_replaced() {
    let Some(redis) = TestRedis::from_env("two_webhooks_answer_alike") else {
        return;
    };
    let dir = tmpdir("shared");
    let (usage_a, usage_b) = (dir.join("a.om"), dir.join("b.om"));
    scaled_usage(&usage_a, 1);
    scaled_usage(&usage_b, 2);
    let config_a = config(&dir, "a", &usage_a, &redis);
    let config_b = config(&dir, "b", &usage_b, &redis);

    let mut a = Webhook::start(&["--config", &config_a]);
    let ca = a.client();
    ca.wait_ready().await;
    until("a produces", || async {
        metric(&ca, "nemutator_store_publishes_total").await > Some(0)
    })
    .await;
    let b = Webhook::start(&["--config", &config_b]);
    let cb = b.client();
    cb.wait_ready().await;
    let from_a = patch(&ca).await;
    assert_eq!(patch(&cb).await, from_a, "b serves a's recommendations");
    assert_eq!(metric(&cb, "nemutator_store_producer").await, Some(0));
    assert_eq!(
        metric(&cb, "nemutator_store_publishes_total").await,
        Some(0)
    );

    // Killed without a chance to say goodbye: b takes over once the lock
    // expires, computes from its own file and publishes.
    let _ = a.child.kill();
    let _ = a.child.wait();
    until("b produces", || async {
        metric(&cb, "nemutator_store_publishes_total").await > Some(0)
    })
    .await;
    assert_eq!(metric(&cb, "nemutator_store_producer").await, Some(1));
    let from_b = patch(&cb).await;
    assert_ne!(from_b, from_a, "b's own data (twice the memory) now");
    // A replica started now (a's configuration) serves b's publication.
    let c = Webhook::start(&["--config", &config_a]);
    let cc = c.client();
    cc.wait_ready().await;
    until("c reads b's publication", || async {
        patch(&cc).await == from_b
    })
    .await;
    assert_eq!(metric(&cc, "nemutator_store_producer").await, Some(0));
    let logs = b.logs().join("\n");
    assert!(logs.contains("this replica is now the producer"), "{logs}");
}
