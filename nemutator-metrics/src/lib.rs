//! # nemutator-metrics
//!
//! [`MetricsSource`](nemutator_core::metrics::MetricsSource) backends for
//! nemutator. Today: the OpenMetrics file source ([`file::FileSource`]), which
//! reads the format `promtool tsdb create-blocks-from openmetrics` accepts.
#![warn(missing_docs)]

pub mod file;
pub mod openmetrics;

pub use file::{FileLoader, FileSource};

use std::sync::Arc;

use nemutator_core::config::{MetricsBackend, MetricsConfig};
use nemutator_core::metrics::SourceLoader;

/// Why a metrics backend could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The configured backend is not available in this build yet.
    #[error("metrics.source {0:?} is not available yet; use `file`")]
    Unavailable(&'static str),
}

/// The [`SourceLoader`] for a `metrics:` configuration section.
pub fn loader_from_config(config: &MetricsConfig) -> Result<Arc<dyn SourceLoader>, SetupError> {
    match config.source {
        MetricsBackend::File => Ok(Arc::new(FileLoader::new(config.file.path.clone()))),
        MetricsBackend::Prometheus => Err(SetupError::Unavailable("prometheus")),
        MetricsBackend::Datadog => Err(SetupError::Unavailable("datadog")),
    }
}
