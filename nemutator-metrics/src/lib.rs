//! # nemutator-metrics
//!
//! [`MetricsSource`](nemutator_core::metrics::MetricsSource) backends for
//! nemutator: the OpenMetrics file source ([`file::FileSource`]), which
//! reads the format `promtool tsdb create-blocks-from openmetrics` accepts,
//! the sample usage history embedded in the crate
//! ([`sample::SAMPLE_USAGE`]), the default source, and Prometheus
//! ([`prometheus::PrometheusSource`]) and Datadog
//! ([`datadog::DatadogSource`]). All compute the statistic of
//! [`nemutator_core::metrics::stat`]: on the same data they agree. The
//! store that webhook replicas share, in Redis, is [`shared::RedisStore`];
//! [`kubernetes::KubernetesLoader`] samples `metrics.k8s.io` and keeps the
//! history itself.
#![warn(missing_docs)]

pub mod datadog;
pub mod file;
pub mod kubernetes;
pub mod openmetrics;
pub mod prometheus;
pub mod sample;
pub mod shared;

pub use datadog::DatadogSource;
pub use file::{FileLoader, FileSource};
pub use prometheus::{LiveLoader, PrometheusSource};
pub use sample::{TextLoader, SAMPLE_USAGE};
pub use shared::RedisStore;

use std::sync::Arc;

use nemutator_core::config::{MetricsBackend, MetricsConfig};
use nemutator_core::metrics::SourceLoader;

/// The README's example, compiled and run by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Why a metrics backend could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The configured backend is not available in this build yet.
    #[error("metrics.source {0:?} is not available yet; use `file`, `prometheus` or `kubernetes`")]
    Unavailable(&'static str),
    /// The Prometheus backend's configuration is wrong.
    #[error(transparent)]
    Prometheus(#[from] prometheus::PrometheusError),
    /// The Datadog backend's configuration is wrong (or a key is missing).
    #[error(transparent)]
    Datadog(#[from] datadog::DatadogError),
    /// The Redis settings are wrong.
    #[error(transparent)]
    Redis(#[from] shared::RedisSetupError),
}

/// The [`SourceLoader`] for a `metrics:` configuration section: the file at
/// `metrics.file.path`, or the embedded [`SAMPLE_USAGE`] when no path is set;
/// for Prometheus, its client behind the timeout, retry and concurrency
/// layers of `metrics.prometheus`; for Datadog, likewise with
/// `metrics.datadog`.
pub fn loader_from_config(config: &MetricsConfig) -> Result<Arc<dyn SourceLoader>, SetupError> {
    match config.source {
        MetricsBackend::File => Ok(match &config.file.path {
            Some(path) => Arc::new(FileLoader::new(path.clone())),
            None => Arc::new(TextLoader::sample()),
        }),
        MetricsBackend::Prometheus => Ok(Arc::new(LiveLoader::prometheus(&config.prometheus)?)),
        MetricsBackend::Datadog => Ok(Arc::new(LiveLoader::datadog(&config.datadog)?)),
        MetricsBackend::Kubernetes => {
            let keeper = match (&config.cache, &config.kubernetes.history_file) {
                (Some(cache), _) => {
                    kubernetes::HistoryKeeper::Redis(Box::new(RedisStore::new(cache, "history")?))
                }
                (None, Some(path)) => kubernetes::HistoryKeeper::File(path.clone()),
                (None, None) => kubernetes::HistoryKeeper::Memory,
            };
            Ok(Arc::new(kubernetes::KubernetesLoader::new(
                config.kubernetes.clone(),
                config.refresh.0,
                keeper,
            )))
        }
    }
}
