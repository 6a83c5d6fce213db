//! Command-line arguments (every flag has a `NEMUTATOR_*` environment fallback).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// nemutator: right-sizes pods at admission from real usage history.
#[derive(Debug, Parser)]
#[command(name = "nemutator", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Configuration file (YAML); without it the embedded defaults apply.
    #[arg(long, global = true, env = "NEMUTATOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. `info` or `nemutator_core=debug` (default:
    /// `info,rustls=error` for servers, `warn` for one-shot commands).
    #[arg(long, global = true, env = "NEMUTATOR_LOG")]
    pub log: Option<String>,
    /// Log format.
    #[arg(long, global = true, env = "NEMUTATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Command {
    /// Whether this command runs as a long-lived server.
    pub fn is_server(&self) -> bool {
        match self {
            Command::Webhook(_) | Command::Controller(_) => true,
            #[cfg(feature = "profiler")]
            Command::Agent(_) => true,
            _ => false,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the admission webhook over HTTPS.
    Webhook(WebhookArgs),
    /// Run the controller: leader-elected, serving the REST API over HTTPS.
    Controller(crate::cmd::controller::ControllerArgs),
    /// Review an AdmissionReview offline and print the response.
    Review(ReviewArgs),
    /// Compute recommendations for the workloads in the metrics source.
    Recommend(RecommendArgs),
    /// Fit the season model to a series and print what it learned.
    Season(crate::cmd::season::SeasonArgs),
    /// Profile a process or a pod's container on this node (eBPF) into a flamegraph.
    #[cfg(feature = "profiler")]
    Profile(crate::cmd::profile::ProfileArgs),
    /// The per-node agent: serves profiles over HTTPS with bearer-token authentication.
    #[cfg(feature = "profiler")]
    Agent(crate::cmd::agent::AgentArgs),
    /// Print every manifest that runs nemutator in a cluster (kubectl apply -f -).
    Install(crate::cmd::install::InstallArgs),
    /// Resolve the secret references in the environment, then exec CMD (nemutator env -- CMD).
    Env(crate::cmd::env::EnvArgs),
    /// Copy this binary to DEST (the init container of exec injection).
    #[command(hide = true)]
    CopySelf(crate::cmd::copy_self::CopySelfArgs),
}

/// A server's certificate files (both or neither; without them a self-signed
/// certificate is made at start).
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// PEM certificate chain (reloaded when it changes); with --tls-key.
    #[arg(long, env = "NEMUTATOR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key; with --tls-cert.
    #[arg(long, env = "NEMUTATOR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WebhookArgs {
    /// Address to listen on.
    #[arg(long, env = "NEMUTATOR_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Extra names for the self-signed certificate (comma-separated), added
    /// to its default names: localhost, 127.0.0.1 and those of the Service
    /// in the default namespace (nemutator.nemutator.svc,
    /// nemutator.nemutator.svc.cluster.local, nemutator.nemutator, nemutator).
    #[arg(
        long,
        env = "NEMUTATOR_TLS_SAN",
        value_delimiter = ',',
        value_name = "NAMES"
    )]
    pub tls_san: Vec<String>,
    /// How long to let open connections finish after SIGTERM.
    #[arg(long, env = "NEMUTATOR_DRAIN", default_value = "20s")]
    pub drain: nemutator_core::units::HumanDuration,
    /// Threads serving connections (0: one per core).
    #[arg(long, env = "NEMUTATOR_THREADS", default_value_t = 0)]
    pub threads: usize,
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// AdmissionReview v1 request file, or `-` for stdin.
    pub file: PathBuf,
    /// Print the mutated object instead of the response.
    #[arg(long)]
    pub patched: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Csv,
    Html,
}

#[derive(Debug, Args)]
pub struct RecommendArgs {
    /// Only this namespace.
    #[arg(long, short = 'n', env = "NEMUTATOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}
