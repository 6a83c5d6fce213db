//! Assembling library pieces from the configuration.

use std::sync::Arc;

use anyhow::Context as _;
use nemutator_core::admission::Admission;
use nemutator_core::config::Config;
use nemutator_core::controller::noisy::LatestMetrics;
use nemutator_core::error::Chain;
use nemutator_core::image::{ImageLookup, NoLookup};
use nemutator_core::metadata::{ConfigWatch, SharedRules};
use nemutator_core::mutate::{
    MetadataLayer, NoisyWorkloads, Pipeline, PlacementLayer, ResourcesLayer, SecretsLayer,
};
use nemutator_core::recommend::{
    RecommendationStore, Refresher, Seasons, SharedRefresher, SharedStore as _,
};
use nemutator_core::season::{DefaultSeasonModel, SeasonStore};
use nemutator_core::secret::{NoResolver, SecretResolver, SecretsConfig};
use nemutator_core::server::tls::{self, CertStore};
use nemutator_secrets::{resolver_from_config, CachedResolver, RegistryLookup};
use tracing_subscriber::EnvFilter;

use crate::cli::{Global, LogFormat, TlsArgs};

/// Crates whose events are never logged (see [`init_logging`]).
const SILENCED: [&str; 2] = ["rustify=off", "vaultrs=off"];

/// Logs go to stderr so that stdout stays machine-readable.
pub fn init_logging(global: &Global, server: bool) {
    // rustls warns about every client that sends an IP address as SNI (curl
    // and wrk do); that is noise for an operator, its errors are not.
    let default = if server { "info,rustls=error" } else { "warn" };
    let filter = EnvFilter::try_new(global.log.as_deref().unwrap_or(default))
        .unwrap_or_else(|_| EnvFilter::new(default));
    // The Vault client's layers log every failed request as an ERROR event
    // (nemutator reports the failure itself, in one line) and describe
    // requests at debug level: off whatever the filter, so that no request
    // of a secrets backend is logged by a crate we do not control.
    let filter = SILENCED
        .iter()
        .filter_map(|d| d.parse().ok())
        .fold(filter, EnvFilter::add_directive);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match global.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// An error chain on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// Everything a command needs: configuration, store, refresher, admission.
pub struct App {
    pub config: Config,
    pub store: Arc<RecommendationStore>,
    pub seasons: Option<Seasons>,
    pub refresher: Refresher,
    pub admission: Admission,
    /// Admission's right-sizing, for the controller's drift reconciler.
    pub resources: ResourcesLayer,
    /// The refresher's source loader, remembering the source it last
    /// loaded (the controller's noisy-neighbour loop asks it).
    pub metrics: Arc<LatestMetrics>,
    /// The workloads with noisy pods the placement layer reads (filled by
    /// the webhook's watch).
    pub noisy: NoisyWorkloads,
    /// The `metadata:` rules in force (admission's and the controller's).
    pub rules: Arc<SharedRules>,
}

/// The secrets layer of `secrets:`: a cached resolver for `env` injection,
/// registry lookups (with pull secrets read through the Kubernetes client of
/// the environment when `secrets.registry.pull_secrets` is on).
pub async fn secrets_layer(config: &SecretsConfig) -> anyhow::Result<SecretsLayer> {
    let mut config = config.clone();
    if config.init_image.is_none() {
        config.init_image = std::env::var(nemutator_core::install::IMAGE_ENV)
            .ok()
            .filter(|i| !i.is_empty());
    }
    // Only env injection resolves in the webhook: without it, no resolver
    // (and no Vault role or token of the webhook's own) is needed.
    let resolver: Arc<dyn SecretResolver> = if config.env_possible() {
        Arc::new(CachedResolver::new(
            resolver_from_config(&config)?,
            config.cache_ttl.0,
        ))
    } else {
        Arc::new(NoResolver)
    };
    let images: Arc<dyn ImageLookup> = if config.registry.lookup {
        let kube = if config.registry.pull_secrets {
            let client = kube::Client::try_default().await.context(
                "secrets.registry.pull_secrets is on: a Kubernetes client to read pull secrets",
            )?;
            Some(client)
        } else {
            None
        };
        Arc::new(RegistryLookup::new(config.registry.clone(), kube))
    } else {
        Arc::new(NoLookup)
    };
    Ok(SecretsLayer::new(&config, resolver, images)?)
}

impl App {
    pub async fn new(global: &Global) -> anyhow::Result<Self> {
        let config = Config::load(global.config.as_deref())?;
        let policies = Arc::new(config.policies.clone());
        let store = Arc::new(RecommendationStore::new());
        let metrics = Arc::new(LatestMetrics::new(nemutator_metrics::loader_from_config(
            &config.metrics,
        )?));
        let seasons = config.seasons.enabled.then(|| Seasons {
            model: Arc::new(DefaultSeasonModel::default()),
            store: Arc::new(SeasonStore::new()),
            history: config.seasons.history.0,
            step: config.seasons.step.0,
            refit: config.seasons.refit.0,
            lead: config.seasons.lead.0,
        });
        let state = config.seasons.state_file.clone();
        let mut resources = ResourcesLayer::new(store.clone(), policies.clone());
        if let Some(s) = &seasons {
            if let Some(path) = &state {
                // A bad state file is not fatal: profiles are learned again.
                if let Err(e) = s.store.load(path) {
                    tracing::warn!(error = %Chain(&e), "season state not loaded");
                }
            }
            resources = resources.with_seasons(s.store.clone());
        }
        let refresher = Refresher::new(metrics.clone(), policies, store.clone())
            .with_seasons(seasons.clone(), state)
            .with_resolution(config.metrics.resolution());
        let rules = Arc::new(SharedRules::new(config.metadata.clone()));
        let pipeline = Pipeline::builder()
            .layer(resources.clone())
            .layer(MetadataLayer::new(rules.clone()));
        let noisy = NoisyWorkloads::new();
        let placement = PlacementLayer::new(&config.placement, noisy.clone());
        let pipeline = if config.secrets.enabled {
            pipeline
                .layer(secrets_layer(&config.secrets).await?)
                .layer(placement)
                .build()
        } else {
            pipeline.layer(placement).build()
        };
        Ok(App {
            config,
            store,
            seasons,
            refresher,
            admission: Admission::new(pipeline),
            resources,
            metrics,
            noisy,
            rules,
        })
    }

    /// With `--config`, polls the file every 2 s and puts new `metadata:`
    /// rules in force (docs/CONFIGURATION.md, "Reloading").
    pub fn watch_config(&self, global: &Global) {
        if let Some(path) = &global.config {
            let watch = ConfigWatch::new(path, self.config.clone(), self.rules.clone());
            tokio::spawn(watch.run(std::time::Duration::from_secs(2)));
        }
    }

    /// With `metrics.cache`, the refresher that shares recommendations with
    /// the other replicas through Redis (the lock names this replica by its
    /// host name, the pod's, and process id).
    pub fn shared_refresher(&self) -> anyhow::Result<Option<SharedRefresher>> {
        let Some(cache) = &self.config.metrics.cache else {
            return Ok(None);
        };
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "nemutator".into());
        let holder = format!("{host}/{}", std::process::id());
        let redis = nemutator_metrics::RedisStore::new(cache, &holder)?;
        tracing::info!(store = %redis.describe(), holder, "sharing recommendations through Redis");
        let timing =
            nemutator_metrics::RedisStore::timing(cache, self.config.metrics.refresh_interval());
        Ok(Some(SharedRefresher::new(
            self.refresher.clone(),
            Arc::new(redis),
            timing,
        )))
    }

    /// Load recommendations once (for the offline commands).
    pub async fn load_once(&self) -> anyhow::Result<()> {
        self.refresher
            .refresh_once()
            .await
            .context("loading usage history")?;
        Ok(())
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
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

/// The certificate of a server: the PEM pair when given (reloaded when the
/// files change), else a self-signed one for `sans` whose CA bundle is printed
/// on stdout (PEM, then `# caBundle: <base64>` for a webhook configuration).
pub fn server_certs(tls: &TlsArgs, sans: &[String]) -> anyhow::Result<Arc<CertStore>> {
    if let (Some(cert), Some(key)) = (&tls.tls_cert, &tls.tls_key) {
        return Ok(Arc::new(CertStore::from_files(cert, key)?));
    }
    let (ck, pem) = tls::self_signed(sans)?;
    let b64 = base64_simd::STANDARD.encode_to_string(pem.as_bytes());
    println!(
        "# nemutator: self-signed certificate for {}",
        sans.join(", ")
    );
    print!("{pem}");
    println!("# caBundle: {b64}");
    Ok(Arc::new(CertStore::fixed(ck)))
}
