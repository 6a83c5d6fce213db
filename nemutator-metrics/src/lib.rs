//! # nemutator-metrics
//!
//! [`MetricsSource`](nemutator_core::metrics::MetricsSource) backends for
//! nemutator. Today: the OpenMetrics file source ([`file::FileSource`]), which
//! reads the format `promtool tsdb create-blocks-from openmetrics` accepts.
#![warn(missing_docs)]

pub mod file;
pub mod openmetrics;

pub use file::FileSource;
