//! A webhook of your own, assembled from the library: nemutator's
//! [`ResourcesLayer`] next to a layer of this example, [`LabelLayer`], which
//! labels every pod it admits `example.com/admitted-by: custom-webhook`.
//!
//! ```sh
//! cargo run -p nemutator-core --example custom_webhook                  # 127.0.0.1:8443
//! cargo run -p nemutator-core --example custom_webhook -- --listen 127.0.0.1:9443
//! curl -sk https://127.0.0.1:8443/mutate -H 'content-type: application/json' \
//!      --data @examples/admission-review.json
//! cargo test -p nemutator-core --example custom_webhook                 # its test
//! ```
//!
//! It needs no arguments and no files: recommendations come from the sample
//! usage history embedded in `nemutator-metrics` (the default configuration),
//! the certificate is self-signed and its CA bundle (PEM) is printed on
//! stdout. It serves `POST /mutate`, `/healthz`, `/readyz` and `/metrics`
//! until Ctrl-C.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nemutator_core::admission::Admission;
use nemutator_core::config::Config;
use nemutator_core::metrics::MetricsError;
use nemutator_core::mutate::{Applied, Mutation, Pipeline, PodReview, ResourcesLayer};
use nemutator_core::recommend::{RecommendationStore, Refresher};
use nemutator_core::server::tls::{self, CertStore};
use nemutator_core::server::{self, ConnectionThreads, Router, WebhookState};
use tower::Layer;

/// Sets one label on every pod (a tower layer: a small `Clone + Debug`
/// config, whose service is [`Applied`]).
#[derive(Clone, Debug)]
pub struct LabelLayer {
    key: String,
    value: String,
}

impl LabelLayer {
    /// Label pods `key: value`.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        LabelLayer {
            key: key.into(),
            value: value.into(),
        }
    }
}

impl<S> Layer<S> for LabelLayer {
    type Service = Applied<LabelLayer, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Applied::new(self.clone(), inner)
    }
}

/// A synchronous edit of the review: [`Applied`] applies it, then calls the
/// next layer (a layer that waits on I/O implements `Service` itself).
impl Mutation for LabelLayer {
    fn apply(&self, review: &mut PodReview) {
        // Only the pod is edited: the JSON Patch is computed from the diff.
        review
            .pod
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(self.key.clone(), self.value.clone());
    }
}

/// The example's admission handler over `config`: recommendations loaded
/// once into a store, then right-sizing and the label, in that order.
async fn assemble(config: &Config) -> Result<(Admission, Arc<RecommendationStore>), MetricsError> {
    let policies = Arc::new(config.policies.clone());
    let store = Arc::new(RecommendationStore::new());
    let loader = nemutator_metrics::loader_from_config(&config.metrics)
        .map_err(|e| MetricsError::Data(e.to_string()))?;
    Refresher::new(loader, policies.clone(), store.clone())
        .refresh_once()
        .await?;
    let pipeline = Pipeline::builder()
        .layer(ResourcesLayer::new(store.clone(), policies))
        .layer(LabelLayer::new("example.com/admitted-by", "custom-webhook"))
        .build();
    Ok((Admission::new(pipeline), store))
}

/// `--listen ADDR` (default `127.0.0.1:8443`).
fn listen_addr() -> Result<SocketAddr, String> {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:8443".to_string();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: custom_webhook [--listen ADDR]"
                ))
            }
        }
    }
    listen
        .parse()
        .map_err(|e| format!("--listen {listen}: {e}"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom_webhook: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let listen = listen_addr()?;
    let (admission, store) = assemble(&Config::default()).await?;

    let (key, ca_pem) = tls::self_signed(&["localhost".to_string(), "127.0.0.1".to_string()])?;
    println!("# custom_webhook: CA bundle of its self-signed certificate");
    print!("{ca_pem}");
    let tls_config = Arc::new(tls::server_config(Arc::new(CertStore::fixed(key)))?);

    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!(
        "custom_webhook: serving https://{}/mutate",
        listener.local_addr()?
    );
    let state = Arc::new(WebhookState::new(admission, store));
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    server::serve(
        listener,
        tls_config,
        Router::new(state),
        shutdown,
        Duration::from_secs(5),
        ConnectionThreads::start(1, "conn")?,
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pod of a Deployment that the sample usage history knows.
    const REVIEW: &[u8] = include_bytes!("../tests/data/pod-create.json");

    #[tokio::test]
    async fn both_layers_patch_the_pod() {
        let (admission, _) = assemble(&Config::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let reviewed = admission
            .review(REVIEW)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let patch = reviewed.patch.unwrap_or_else(|| panic!("no patch"));
        let ops: Vec<serde_json::Value> =
            serde_json::from_slice(patch.as_json()).unwrap_or_else(|e| panic!("{e}"));
        let has = |path: &str| ops.iter().any(|op| op["path"] == path);
        assert!(
            ops.iter().any(
                |op| op["path"] == "/metadata/labels/example.com~1admitted-by"
                    && op["value"] == "custom-webhook"
            ),
            "{ops:?}"
        );
        assert!(has("/spec/containers/0/resources/requests/cpu"), "{ops:?}");
        assert!(
            has("/metadata/annotations/nemutator.io~1resources-applied"),
            "{ops:?}"
        );
    }
}
