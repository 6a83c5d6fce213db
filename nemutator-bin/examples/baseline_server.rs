//! The baseline for the HTTPS benchmark (`scripts/bench-https.sh`): a bare
//! tokio + hyper + rustls server that reads the whole request body and answers
//! every request with one fixed AdmissionReview.
//!
//! It uses what `nemutator webhook` uses, with the same settings, so that the
//! difference between the two is the webhook's own work (routing, body limit,
//! timeout, decoding, mutation, encoding, metrics): ring provider, TLS 1.2 and
//! 1.3, ALPN `h2` and `http/1.1`, an ECDSA P-256 self-signed certificate from
//! rcgen, hyper-util's auto builder (HTTP/1.1 keep-alive and HTTP/2),
//! `TCP_NODELAY`, the default multi-threaded tokio runtime. The fixed answer is
//! byte for byte as long as the webhook's answer to
//! `examples/admission-review.json` (1190 bytes, the same patch).
//!
//! ```text
//! cargo run --release -p nemutator-bin --example baseline_server -- --listen 127.0.0.1:9443
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http::{header, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

/// The answer to every request: nemutator's answer to
/// `examples/admission-review.json`.
const RESPONSE: &str = concat!(
    r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"#,
    r#""allowed":true,"patch":""#,
    "W3sib3AiOiJhZGQiLCJwYXRoIjoiL21ldGFkYXRhL2Fubm90YXRpb25zL25lbXV0YXRvci5p",
    "b34xcmVzb3VyY2VzLWFwcGxpZWQiLCJ2YWx1ZSI6ImFwcDogY3B1IDUwMG0tPjI2MG0gbGlt",
    "aXQgMS0+NTIwbSBtZW1vcnkgMUdpLT42NDJNaSBsaW1pdCAxR2ktPjY0Mk1pIChjcHUgcDk1",
    "LCBtZW1vcnkgcDEwMCwgN2QpXG5lbnZveTogY3B1IDEwMG0tPjQ3bSBtZW1vcnkgMTI4TWkt",
    "PjYwTWkgKGNwdSBwOTUsIG1lbW9yeSBwMTAwLCA3ZCkifSx7Im9wIjoicmVwbGFjZSIsInBh",
    "dGgiOiIvc3BlYy9jb250YWluZXJzLzAvcmVzb3VyY2VzL2xpbWl0cy9jcHUiLCJ2YWx1ZSI6",
    "IjUyMG0ifSx7Im9wIjoicmVwbGFjZSIsInBhdGgiOiIvc3BlYy9jb250YWluZXJzLzAvcmVz",
    "b3VyY2VzL2xpbWl0cy9tZW1vcnkiLCJ2YWx1ZSI6IjY0Mk1pIn0seyJvcCI6InJlcGxhY2Ui",
    "LCJwYXRoIjoiL3NwZWMvY29udGFpbmVycy8wL3Jlc291cmNlcy9yZXF1ZXN0cy9jcHUiLCJ2",
    "YWx1ZSI6IjI2MG0ifSx7Im9wIjoicmVwbGFjZSIsInBhdGgiOiIvc3BlYy9jb250YWluZXJz",
    "LzAvcmVzb3VyY2VzL3JlcXVlc3RzL21lbW9yeSIsInZhbHVlIjoiNjQyTWkifSx7Im9wIjoi",
    "cmVwbGFjZSIsInBhdGgiOiIvc3BlYy9pbml0Q29udGFpbmVycy8xL3Jlc291cmNlcy9yZXF1",
    "ZXN0cy9jcHUiLCJ2YWx1ZSI6IjQ3bSJ9LHsib3AiOiJyZXBsYWNlIiwicGF0aCI6Ii9zcGVj",
    "L2luaXRDb250YWluZXJzLzEvcmVzb3VyY2VzL3JlcXVlc3RzL21lbW9yeSIsInZhbHVlIjoi",
    "NjBNaSJ9XQ==",
    r#"","patchType":"JSONPatch","uid":"705ab4f5-6393-11e8-b7cc-42010a800002"}}"#
);

/// A bare hyper + rustls server answering every request with a fixed AdmissionReview.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "BASELINE_LISTEN", default_value = "127.0.0.1:9443")]
    listen: SocketAddr,
}

fn tls_config() -> anyhow::Result<rustls::ServerConfig> {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .context("self-signed certificate")?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(vec![generated.cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the whole body, as the webhook must, then drop it.
    let read = req.into_body().collect().await.map(|b| b.to_bytes().len());
    let mut resp = Response::new(Full::new(Bytes::from_static(RESPONSE.as_bytes())));
    match read {
        Ok(_) => {
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        Err(_) => *resp.status_mut() = http::StatusCode::BAD_REQUEST,
    }
    Ok(resp)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config()?));
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    eprintln!("listen={}", listener.local_addr()?);
    let builder = auto::Builder::new(TokioExecutor::new());
    // Exit 0 on SIGTERM, so that a profiling build (scripts/build-pgo.sh)
    // writes its profile at exit.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = term.recv() => return Ok(()),
        };
        let (tcp, _) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let _ = builder
                .serve_connection(TokioIo::new(tls), service_fn(answer))
                .await;
        });
    }
}
