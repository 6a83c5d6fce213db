//! `nemutator webhook`: the HTTPS admission webhook.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use nemutator_core::install;
use nemutator_core::server::tls;
use nemutator_core::server::{self, Router, WebhookState};

use crate::cli::{Global, WebhookArgs};
use crate::wiring::{server_certs, shutdown_signal, App};

pub async fn run(global: &Global, args: WebhookArgs) -> anyhow::Result<ExitCode> {
    let app = App::new(global).await?;
    let service = install::service_dns_names(install::DEFAULT_NAMESPACE);
    let defaults = tls::LOOPBACK_NAMES
        .into_iter()
        .chain(service.iter().map(String::as_str));
    let certs = server_certs(&args.tls, &tls::with_extra_names(defaults, &args.tls_san))?;
    let tls_config = Arc::new(tls::server_config(certs.clone())?);
    tokio::spawn(certs.watch(Duration::from_secs(2)));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    let mut state = WebhookState::new(app.admission.clone(), app.store.clone());
    state.stale_after = Some(app.config.metrics.stale_after());
    // Restarted if it dies; readiness fails when its refreshes keep failing.
    match app.shared_refresher()? {
        Some(shared) => {
            state.shared = Some(shared.health());
            tokio::spawn(shared.supervise());
        }
        None => {
            tokio::spawn(
                app.refresher
                    .clone()
                    .supervise(app.config.metrics.refresh_interval()),
            );
        }
    }
    if app.config.placement.enabled {
        // The noisy workloads, from a watch of the pods labelled noisy.
        match kube::Client::try_default().await {
            Ok(client) => {
                tokio::spawn(app.noisy.watch(client));
            }
            Err(e) => tracing::warn!(
                error = %nemutator_core::error::Chain(&e),
                "placement: no Kubernetes configuration to watch noisy pods with; only the rules of precious pods (and of pods labelled noisy) apply"
            ),
        }
    }
    let state = Arc::new(state);
    tracing::info!(listen = %local, "serving the admission webhook on https://{local}/mutate");
    server::serve(
        listener,
        tls_config,
        Router::new(state),
        shutdown_signal(),
        args.drain.0,
        match args.threads {
            0 => server::ConnectionThreads::per_core("conn")?,
            n => server::ConnectionThreads::start(n, "conn")?,
        },
    )
    .await;
    Ok(ExitCode::SUCCESS)
}
