//! Assembling library pieces from the configuration.

use std::sync::Arc;

use anyhow::Context as _;
use nemutator_core::admission::Admission;
use nemutator_core::config::Config;
use nemutator_core::mutate::{Pipeline, ResourcesLayer};
use nemutator_core::recommend::{RecommendationStore, Refresher};
use tracing_subscriber::EnvFilter;

use crate::cli::{Global, LogFormat};

/// Logs go to stderr so that stdout stays machine-readable.
pub fn init_logging(global: &Global, server: bool) {
    let default = if server { "info" } else { "warn" };
    let filter = EnvFilter::try_new(global.log.as_deref().unwrap_or(default))
        .unwrap_or_else(|_| EnvFilter::new(default));
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
    pub refresher: Refresher,
    pub admission: Admission,
}

impl App {
    pub fn new(global: &Global) -> anyhow::Result<Self> {
        let config = Config::load(global.config.as_deref())?;
        let policies = Arc::new(config.policies.clone());
        let store = Arc::new(RecommendationStore::new());
        let loader = nemutator_metrics::loader_from_config(&config.metrics)?;
        let refresher = Refresher::new(loader, policies.clone(), store.clone());
        let pipeline = Pipeline::builder()
            .layer(ResourcesLayer::new(store.clone(), policies))
            .build();
        Ok(App {
            config,
            store,
            refresher,
            admission: Admission::new(pipeline),
        })
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
