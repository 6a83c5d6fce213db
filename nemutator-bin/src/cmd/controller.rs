//! `nemutator controller`: the leader-elected controller and its REST API
//! over HTTPS (docs/CONTROLLER.md).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use nemutator_core::controller::api::ApiRouter;
use nemutator_core::controller::labels::MetadataMode;
use nemutator_core::controller::leader::{LeaseConfig, LEASE_NAME};
use nemutator_core::controller::reconcile::{DriftMode, ResizeLimits};
use nemutator_core::controller::{self, ControllerOptions};
use nemutator_core::evict::EvictionPolicy;
use nemutator_core::install;
use nemutator_core::server::{self, tls};
use nemutator_core::units::HumanDuration;

use crate::cli::{Global, TlsArgs};
use crate::wiring::{server_certs, shutdown_signal, App};

#[derive(Debug, clap::Args)]
pub struct ControllerArgs {
    /// Address to listen on (REST API, /metrics, /healthz, /readyz).
    #[arg(long, env = "NEMUTATOR_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Extra names for the self-signed certificate (comma-separated), added
    /// to localhost, 127.0.0.1 and the names of the controller's Service.
    #[arg(
        long,
        env = "NEMUTATOR_TLS_SAN",
        value_delimiter = ',',
        value_name = "NAMES"
    )]
    pub tls_san: Vec<String>,
    /// Namespace of the leader-election Lease (in a pod: its own).
    #[arg(long, env = "POD_NAMESPACE", default_value = install::DEFAULT_NAMESPACE)]
    pub lease_namespace: String,
    /// Name of the Lease.
    #[arg(long, env = "NEMUTATOR_LEASE_NAME", default_value = LEASE_NAME)]
    pub lease_name: String,
    /// How long the Lease holds without renewal: a dead leader is replaced
    /// within this time.
    #[arg(long, env = "NEMUTATOR_LEASE_DURATION", default_value = "15s")]
    pub lease_duration: HumanDuration,
    /// This replica's identity in the Lease (in a pod: its name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// A workload with fewer ready pods is never evicted from.
    #[arg(long, env = "NEMUTATOR_MIN_REPLICAS", default_value_t = 2)]
    pub min_replicas: u32,
    /// Fraction of a workload's pods that may be evicted at once.
    #[arg(long, env = "NEMUTATOR_EVICTION_TOLERANCE", default_value_t = 0.5)]
    pub eviction_tolerance: f64,
    /// Evictions per node per minute.
    #[arg(long, env = "NEMUTATOR_EVICTIONS_PER_NODE", default_value_t = 2)]
    pub evictions_per_node: u32,
    /// Evictions per namespace per minute.
    #[arg(long, env = "NEMUTATOR_EVICTIONS_PER_NAMESPACE", default_value_t = 5)]
    pub evictions_per_namespace: u32,
    /// Evictions per minute in all.
    #[arg(long, env = "NEMUTATOR_EVICTIONS_TOTAL", default_value_t = 10)]
    pub evictions_total: u32,
    /// After an eviction, the workload is left alone this long.
    #[arg(long, env = "NEMUTATOR_EVICTION_COOLDOWN", default_value = "10m")]
    pub eviction_cooldown: HumanDuration,
    /// The drift reconciler: `off`, `dry-run` (decide and ask the API server
    /// for dry-run resizes and evictions) or `on`.
    #[arg(long, env = "NEMUTATOR_DRIFT", value_enum, default_value_t = LoopMode::DryRun)]
    pub drift: LoopMode,
    /// How often the leader runs a drift pass.
    #[arg(long, env = "NEMUTATOR_DRIFT_INTERVAL", default_value = "1m")]
    pub drift_interval: HumanDuration,
    /// In-place resizes per drift pass, in all.
    #[arg(long, env = "NEMUTATOR_RESIZES_PER_PASS", default_value_t = ResizeLimits::default().per_pass)]
    pub resizes_per_pass: u32,
    /// In-place resizes per drift pass on one node.
    #[arg(long, env = "NEMUTATOR_RESIZES_PER_NODE", default_value_t = ResizeLimits::default().per_node)]
    pub resizes_per_node: u32,
    /// How often the leader applies the overprovisioning placeholder
    /// (`controller.overprovisioning` in the configuration file).
    #[arg(
        long,
        env = "NEMUTATOR_OVERPROVISIONING_INTERVAL",
        default_value = "1m"
    )]
    pub overprovisioning_interval: HumanDuration,
    /// The label and annotation patcher of running pods (`metadata:` in the
    /// configuration file): `off`, `dry-run` (decide and send dry-run
    /// patches) or `on`.
    #[arg(long, env = "NEMUTATOR_METADATA", value_enum, default_value_t = LoopMode::On)]
    pub metadata: LoopMode,
    /// How often the leader runs a metadata pass (one also follows each
    /// reload of the rules).
    #[arg(long, env = "NEMUTATOR_METADATA_INTERVAL", default_value = "1m")]
    pub metadata_interval: HumanDuration,
    /// How long to let open connections finish after SIGTERM.
    #[arg(long, env = "NEMUTATOR_DRAIN", default_value = "10s")]
    pub drain: HumanDuration,
}

/// Whether a loop of the leader acts: `off`, `dry-run` or `on`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LoopMode {
    Off,
    DryRun,
    On,
}

pub async fn run(global: &Global, args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let app = App::new(global).await?;
    app.watch_config(global);
    let service = install::controller_dns_names(install::DEFAULT_NAMESPACE);
    let defaults = tls::LOOPBACK_NAMES
        .into_iter()
        .chain(service.iter().map(String::as_str));
    let certs = server_certs(&args.tls, &tls::with_extra_names(defaults, &args.tls_san))?;
    let tls_config = Arc::new(tls::server_config(certs.clone())?);
    tokio::spawn(certs.watch(Duration::from_secs(2)));
    if app.config.controller.noisy.enabled {
        // Before the refresher's first load: the noisy-neighbour loop asks
        // the source it loaded.
        app.metrics.keep();
    }
    tokio::spawn(
        app.refresher
            .clone()
            .supervise(app.config.metrics.refresh_interval()),
    );
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let options = ControllerOptions {
        lease: LeaseConfig {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            identity,
            duration: args.lease_duration.0,
        },
        policy: EvictionPolicy {
            min_replicas: args.min_replicas,
            tolerance: args.eviction_tolerance,
            per_node: args.evictions_per_node,
            per_namespace: args.evictions_per_namespace,
            total: args.evictions_total,
            window: Duration::from_secs(60),
            cooldown: args.eviction_cooldown.0,
        },
        drift: match args.drift {
            LoopMode::Off => DriftMode::Off,
            LoopMode::DryRun => DriftMode::DryRun,
            LoopMode::On => DriftMode::On,
        },
        drift_interval: args.drift_interval.0,
        resize_limits: ResizeLimits {
            per_pass: args.resizes_per_pass,
            per_node: args.resizes_per_node,
        },
        overprovisioning: app.config.controller.overprovisioning.clone(),
        overprovisioning_interval: args.overprovisioning_interval.0,
        noisy: app.config.controller.noisy.clone(),
        metadata: match args.metadata {
            LoopMode::Off => MetadataMode::Off,
            LoopMode::DryRun => MetadataMode::DryRun,
            LoopMode::On => MetadataMode::On,
        },
        metadata_interval: args.metadata_interval.0,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (state, running) = controller::start(
        &options,
        app.metrics.clone(),
        app.store.clone(),
        app.seasons.as_ref().map(|s| s.store.clone()),
        app.resources.clone(),
        app.rules.clone(),
        async move {
            let _ = stop_rx.await;
        },
    )
    .await?;
    let running = tokio::spawn(running);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, identity = %options.lease.identity, "serving the controller API on https://{local}/api/v1");
    server::serve(
        listener,
        tls_config,
        ApiRouter::new(state),
        shutdown_signal(),
        args.drain.0,
        server::ConnectionThreads::start(1, "api")?,
    )
    .await;
    // Release the Lease so that another replica leads at once.
    let _ = stop_tx.send(());
    let _ = running.await;
    Ok(ExitCode::SUCCESS)
}
