//! `nemutator agent`: the per-node profiling agent, serving
//! `POST /api/v1/profiles`, `/healthz` and `/metrics` over HTTPS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use nemutator_core::k8s::K8sError;
use nemutator_core::secret::BearerToken;
use nemutator_core::server::tls;
use nemutator_core::units::HumanDuration;
use nemutator_ebpf::agent::{AgentRouter, AgentState};
use nemutator_ebpf::profiler_for;
use tokio::net::TcpListener;

use crate::cli::{Global, TlsArgs};
use crate::cmd::profile::{discovery, BackendArg, KubeArgs};
use crate::wiring::{server_certs, shutdown_signal};

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
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Extra names for the self-signed certificate (comma-separated), added
    /// to its default names localhost and 127.0.0.1 (a node's IP address or
    /// name, for clients that reach the agent by it).
    #[arg(
        long,
        env = "NEMUTATOR_TLS_SAN",
        value_delimiter = ',',
        value_name = "NAMES"
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

pub async fn run(_global: &Global, args: AgentArgs) -> anyhow::Result<ExitCode> {
    let token = read_token(&args)?;
    let mut state = AgentState::new(Arc::from(profiler_for(args.backend.into())), token)
        .with_discovery(discovery(args.cgroup_root.as_ref()));
    match args.kube.client().await {
        Ok(client) => state = state.with_kube(client),
        // Outside a cluster and without a kubeconfig: only the `pid` form works.
        Err(K8sError::NotConfigured) => {
            tracing::warn!("no Kubernetes API (not in a pod, no kubeconfig): only {{\"pid\": N}} requests can be served")
        }
        Err(e) => return Err(e.into()),
    }

    let names = tls::with_extra_names(tls::LOOPBACK_NAMES, &args.tls_san);
    let certs = server_certs(&args.tls, &names)?;
    let tls_config = Arc::new(tls::server_config(certs.clone())?);
    tokio::spawn(certs.watch(Duration::from_secs(2)));
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, "serving the profiling agent on https://{local}/api/v1/profiles");
    nemutator_core::server::serve(
        listener,
        tls_config,
        AgentRouter::new(Arc::new(state)),
        shutdown_signal(),
        args.drain.0,
        nemutator_core::server::ConnectionThreads::per_core("conn")?,
    )
    .await;
    Ok(ExitCode::SUCCESS)
}
