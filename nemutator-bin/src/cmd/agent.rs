//! `nemutator agent`: the per-node profiling agent, serving
//! `POST /api/v1/profiles`, `/healthz` and `/metrics` over HTTPS.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use nemutator_core::kube::{BearerToken, KubeError};
use nemutator_core::server::tls::{self, CertStore};
use nemutator_core::units::HumanDuration;
use nemutator_ebpf::agent::{AgentRouter, AgentState};
use nemutator_ebpf::profiler_for;
use tokio::net::TcpListener;

use crate::cli::Global;
use crate::cmd::profile::{discovery, BackendArg, KubeArgs};

/// The environment variable holding the token when no --token-file is given.
const TOKEN_ENV: &str = "NEMUTATOR_AGENT_TOKEN";

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Address to listen on.
    #[arg(long, env = "NEMUTATOR_LISTEN", default_value = "0.0.0.0:9443")]
    pub listen: SocketAddr,
    /// File holding the bearer token clients must send (else the
    /// NEMUTATOR_AGENT_TOKEN environment variable).
    #[arg(long, env = "NEMUTATOR_AGENT_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM certificate chain (reloaded when it changes); with --tls-key.
    #[arg(long, env = "NEMUTATOR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key; with --tls-cert.
    #[arg(long, env = "NEMUTATOR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Names for the self-signed certificate (comma-separated).
    #[arg(
        long,
        env = "NEMUTATOR_TLS_SAN",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1"
    )]
    pub tls_san: Vec<String>,
    /// Profiler backend.
    #[arg(long, env = "NEMUTATOR_PROFILE_BACKEND", value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// The host's cgroup v2 mount (default: found in /proc/self/mounts).
    #[arg(long, env = "NEMUTATOR_CGROUP_ROOT", value_name = "DIR")]
    pub cgroup_root: Option<PathBuf>,
    /// How long to let open connections (and a running profile) finish after SIGTERM.
    #[arg(long, env = "NEMUTATOR_DRAIN", default_value = "20s")]
    pub drain: HumanDuration,
    #[command(flatten)]
    pub kube: KubeArgs,
}

fn read_token(args: &AgentArgs) -> anyhow::Result<BearerToken> {
    let token = match &args.token_file {
        Some(path) => BearerToken::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?,
        ),
        None => BearerToken::new(std::env::var(TOKEN_ENV).map_err(|_| {
            anyhow::anyhow!("the agent needs a bearer token: --token-file FILE or {TOKEN_ENV}")
        })?),
    };
    if token.expose().is_empty() {
        anyhow::bail!("the agent's bearer token is empty");
    }
    Ok(token)
}

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

pub async fn run(_global: &Global, args: AgentArgs) -> anyhow::Result<ExitCode> {
    let token = read_token(&args)?;
    let mut state = AgentState::new(Arc::from(profiler_for(args.backend.into())), token)
        .with_discovery(discovery(args.cgroup_root.as_ref()));
    match args.kube.client() {
        Ok(client) => state = state.with_kube(client),
        // Outside a cluster and without --kube-api: only the `pid` form works.
        Err(KubeError::NotInCluster) => {
            tracing::warn!("no Kubernetes API (not in a pod, no --kube-api): only {{\"pid\": N}} requests can be served")
        }
        Err(e) => return Err(e.into()),
    }

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
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, "serving the profiling agent on https://{local}/api/v1/profiles");
    serve(
        listener,
        tls_config,
        AgentRouter::new(Arc::new(state)),
        shutdown_signal(),
        args.drain.0,
    )
    .await;
    Ok(ExitCode::SUCCESS)
}

/// Accepts TLS connections for `router` until `shutdown`, then drains for at
/// most `drain`.
async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: AgentRouter,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("draining connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(drain) => tracing::warn!("drain timed out"),
    }
}
