//! `nemutator webhook`: the HTTPS admission webhook.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use nemutator_core::server::tls::{self, CertStore};
use nemutator_core::server::{self, Router, WebhookState};

use crate::cli::{Global, WebhookArgs};
use crate::wiring::App;

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}

pub async fn run(global: &Global, args: WebhookArgs) -> anyhow::Result<ExitCode> {
    let app = App::new(global)?;
    let certs = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Arc::new(CertStore::from_files(cert, key)?),
        _ => {
            let (ck, pem) = tls::self_signed(&args.tls_san)?;
            let b64 = base64::engine::general_purpose::STANDARD.encode(pem.as_bytes());
            println!(
                "# nemutator: self-signed certificate for {}",
                args.tls_san.join(", ")
            );
            print!("{pem}");
            println!("# caBundle: {b64}");
            Arc::new(CertStore::fixed(ck))
        }
    };
    let tls_config = Arc::new(tls::server_config(certs.clone())?);
    tokio::spawn(certs.watch(Duration::from_secs(2)));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    // A file source is re-read within seconds of a change; live backends on `refresh`.
    let interval = match app.config.metrics.source {
        nemutator_core::config::MetricsBackend::File => Duration::from_secs(2),
        _ => app.config.metrics.refresh.0,
    };
    tokio::spawn(app.refresher.clone().run(interval));
    let state = Arc::new(WebhookState::new(app.admission.clone(), app.store.clone()));
    tracing::info!(listen = %local, "serving the admission webhook on https://{local}/mutate");
    server::serve(
        listener,
        tls_config,
        Router::new(state),
        shutdown_signal(),
        args.drain.0,
    )
    .await;
    Ok(ExitCode::SUCCESS)
}
