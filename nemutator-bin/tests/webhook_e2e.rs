//! End-to-end: the real `nemutator webhook` binary over HTTPS on loopback.

mod support;

use std::time::{Duration, Instant};

use support::{root, tmpdir, verify_chain, write_cert, Client, Webhook};

fn example_review() -> Vec<u8> {
    std::fs::read(root().join("examples/admission-review.json")).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn serves_a_real_patch_on_the_embedded_defaults() {
    let hook = Webhook::start(&[]);
    assert!(
        hook.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"),
        "CA bundle printed: {:?}",
        hook.ca_pem
    );
    let client = hook.client();
    client.wait_ready().await;
    let reply = client
        .request("POST", "/mutate", example_review())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reply.status, 200);
    let v: serde_json::Value =
        serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(v["response"]["patchType"], "JSONPatch");
    assert!(v["response"]["patch"]
        .as_str()
        .is_some_and(|p| !p.is_empty()));

    // TLS 1.2 clients are served too; nothing older exists in rustls to try.
    let tls12 = Client::with_versions(hook.addr, &hook.ca_pem, &[&rustls::version::TLS12]);
    let r = tls12
        .request("GET", "/healthz", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(r.status, 200);

    let metrics = client
        .request("GET", "/metrics", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("nemutator_admission_requests_total{outcome=\"patched\"} 1"),
        "{text}"
    );
    assert!(text.contains("nemutator_recommendations 5"), "{text}");
}

/// The API server talks HTTP/2 to webhooks and multiplexes reviews on few
/// connections: every stream of one connection gets its own answer.
#[tokio::test]
async fn concurrent_http2_streams_on_one_connection_are_each_answered() {
    let hook = Webhook::start(&[]);
    let client = hook.client();
    client.wait_ready().await;
    let template = String::from_utf8(example_review()).unwrap_or_else(|e| panic!("{e}"));
    let uids: Vec<String> = (0..64).map(|i| format!("h2-stream-{i:02}")).collect();
    let bodies = uids
        .iter()
        .map(|uid| {
            template
                .replace("705ab4f5-6393-11e8-b7cc-42010a800002", uid)
                .into_bytes()
        })
        .collect();
    let replies = client
        .h2_posts("/mutate", bodies)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(replies.len(), uids.len());
    for (uid, reply) in uids.iter().zip(&replies) {
        assert_eq!(reply.status, 200, "{uid}");
        assert_eq!(reply.content_type, "application/json");
        let v: serde_json::Value =
            serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v["response"]["uid"], uid.as_str());
        assert!(v["response"]["patch"]
            .as_str()
            .is_some_and(|p| !p.is_empty()));
    }
}

#[tokio::test]
async fn bad_requests_get_4xx_and_the_server_survives() {
    let hook = Webhook::start(&[]);
    let client = hook.client();
    client.wait_ready().await;
    let r = client
        .request("POST", "/mutate", b"{\"apiVersion\":".to_vec())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, 400);
    assert_eq!(
        String::from_utf8_lossy(&r.body).trim_end().lines().count(),
        1
    );
    // The server answers 413 from the Content-Length and reads the rest of
    // the body away, so the client sees the 413 rather than a write error.
    let r = client
        .request("POST", "/mutate", vec![b'x'; 3 * 1024 * 1024 + 10])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, 413);
    let r = client
        .request("POST", "/mutate", example_review())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn certificate_files_are_reloaded_and_a_bad_pair_is_ignored() {
    let dir = tmpdir("reload");
    let first_pem = write_cert(&dir);
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let hook = Webhook::start(&[
        "--tls-cert",
        cert.to_str().unwrap_or_default(),
        "--tls-key",
        key.to_str().unwrap_or_default(),
    ]);
    let first = Client::new(hook.addr, &first_pem);
    first.wait_ready().await;
    let served_first = first
        .request("GET", "/healthz", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .peer_cert;

    // Files older than a second may share an mtime with the new ones on coarse filesystems.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second_pem = write_cert(&dir);
    let second = Client::new(hook.addr, &second_pem);
    let deadline = Instant::now() + Duration::from_secs(20);
    let served_second = loop {
        if let Ok(r) = second.request("GET", "/healthz", vec![]).await {
            break r.peer_cert;
        }
        assert!(Instant::now() < deadline, "new certificate never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(served_first, served_second);

    // A broken certificate file: the last good pair keeps being served.
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !hook
        .logs()
        .iter()
        .any(|l| l.contains("keeping the last good one"))
    {
        assert!(Instant::now() < deadline, "bad certificate not noticed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = second
        .request("GET", "/healthz", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.peer_cert, served_second);
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let mut hook = Webhook::start(&[]);
    let client = hook.client();
    client.wait_ready().await;
    let status = hook.terminate();
    assert!(status.success(), "exit status {status:?}");
}

/// Over HTTP/2 as over HTTP/1.1, a body announced larger than the limit gets
/// a 413 on a stream that ends cleanly: a strict client (one that treats any
/// RST_STREAM as an error, as curl 7.x does) sees the 413, not a reset.
#[tokio::test]
async fn an_oversized_body_over_http2_gets_413_not_a_reset() {
    let hook = Webhook::start(&[]);
    let client = hook.client();
    client.wait_ready().await;
    let reply = client
        .h2_post_strict("/mutate", vec![b'x'; 3 * 1024 * 1024 + 10])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reply.status, 413);
    assert_eq!(
        String::from_utf8_lossy(&reply.body)
            .trim_end()
            .lines()
            .count(),
        1
    );
    // The same connection keeps serving reviews.
    let ok = client
        .h2_post_strict("/mutate", example_review())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.status, 200);
}

/// With its metrics file gone, the webhook keeps serving the last good
/// recommendations but reports not ready once they are stale (3 × the 2 s
/// refresh of a file), and ready again when the file is back.
#[tokio::test]
async fn readiness_follows_the_freshness_of_the_recommendations() {
    let dir = tmpdir("stale");
    let usage = dir.join("usage.om");
    std::fs::copy(root().join("examples/data/usage.om"), &usage).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!("metrics:\n  file: {{ path: {} }}\n", usage.display()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let hook = Webhook::start(&["--config", config.to_str().unwrap_or_default()]);
    let client = hook.client();
    client.wait_ready().await;
    let moved = dir.join("usage.om.away");
    std::fs::rename(&usage, &moved).unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let reason = loop {
        let r = client
            .request("GET", "/readyz", vec![])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if r.status == 503 {
            break String::from_utf8_lossy(&r.body).into_owned();
        }
        assert!(Instant::now() < deadline, "never turned not ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(reason.contains("stale"), "{reason}");
    assert_eq!(reason.trim_end().lines().count(), 1, "{reason}");
    let r = client
        .request("POST", "/mutate", example_review())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, 200, "the last good recommendations are served");
    let metrics = client
        .request("GET", "/metrics", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("nemutator_recommendations_age_seconds "),
        "{text}"
    );
    assert!(
        text.contains("nemutator_refresher_restarts_total 0"),
        "{text}"
    );
    std::fs::rename(&moved, &usage).unwrap_or_else(|e| panic!("{e}"));
    client.wait_ready().await;
}

/// `--tls-san` adds names to the self-signed certificate's defaults (for
/// the webhook and for the agent), it does not replace them.
#[tokio::test]
async fn tls_san_adds_to_the_default_names() {
    let hook = Webhook::start(&["--tls-san", "hooks.example.test,localhost"]);
    for name in [
        "hooks.example.test",
        "localhost",
        "127.0.0.1",
        "nemutator",
        "nemutator.nemutator.svc",
        "nemutator.nemutator.svc.cluster.local",
    ] {
        verify_chain(hook.ca_pem.as_bytes(), hook.ca_pem.as_bytes(), name);
    }
    let agent = Webhook::spawn(
        "agent",
        &["--tls-san", "node-1.example.test"],
        &[("NEMUTATOR_AGENT_TOKEN", "t0k3n")],
    );
    for name in ["node-1.example.test", "localhost", "127.0.0.1"] {
        verify_chain(agent.ca_pem.as_bytes(), agent.ca_pem.as_bytes(), name);
    }
}
