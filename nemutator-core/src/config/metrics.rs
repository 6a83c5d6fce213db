//! `metrics:`: where usage history comes from (docs/METRICS.md), the
//! backends' connection settings and the shared store's.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::units::HumanDuration;
/// Which metrics backend to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MetricsBackend {
    /// An OpenMetrics file.
    #[default]
    File,
    /// A Prometheus server.
    Prometheus,
    /// Datadog's metrics API.
    Datadog,
    /// `metrics.k8s.io` pod metrics (metrics-server), sampled by nemutator,
    /// which keeps the history itself.
    Kubernetes,
}

/// `metrics.file`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileMetricsConfig {
    /// Path of the OpenMetrics file (relative to the working directory);
    /// `None`, the default, is the sample usage history embedded in the
    /// binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

/// `metrics.prometheus`: a Prometheus server, or anything that speaks its
/// HTTP API (Thanos, Mimir, VictoriaMetrics).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL (`http://` or `https://`), with a path prefix if the API is
    /// served under one (e.g. Mimir's `/prometheus`).
    pub url: String,
    /// A file holding a bearer token (read on every refresh, so a rotated
    /// token is picked up; never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
    /// An environment variable holding a bearer token (never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_env: Option<String>,
    /// HTTP basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuthConfig>,
    /// PEM file of the CA(s) to trust for `https://` (default: the system's
    /// roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Longest wait for one query (also sent to Prometheus as `timeout`).
    #[serde(default = "default_prometheus_timeout")]
    pub timeout: HumanDuration,
    /// Retries of a query that failed transiently (connection error, 5xx,
    /// 429, timeout), with exponential backoff from 500 ms.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Queries in flight at most.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Windows end at this time (unix seconds) instead of now: for history
    /// backfilled from a recording, which Prometheus only answers about at
    /// an explicit time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
    /// Use the kubernetes-mixin recording rules when the server has them
    /// (default), or always the raw cAdvisor series.
    #[serde(default = "default_true")]
    pub recording_rules: bool,
}

/// `metrics.prometheus.basic_auth`: the password from a file or an
/// environment variable, never from the configuration itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// User name.
    pub username: String,
    /// A file holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
}

fn default_prometheus_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}

fn default_retries() -> u32 {
    2
}

fn default_concurrency() -> usize {
    4
}

fn default_true() -> bool {
    true
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            url: "http://127.0.0.1:9090".into(),
            bearer_token_file: None,
            bearer_token_env: None,
            basic_auth: None,
            ca_file: None,
            timeout: default_prometheus_timeout(),
            retries: default_retries(),
            concurrency: default_concurrency(),
            end: None,
            recording_rules: true,
        }
    }
}

/// `metrics.datadog`: Datadog's metrics API. The keys come only from the
/// environment variables named here, never from the configuration itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatadogConfig {
    /// The API's base URL (`https://api.datadoghq.eu`), or a Datadog site
    /// name (`datadoghq.eu`, `us5.datadoghq.com`), which stands for
    /// `https://api.<site>`.
    #[serde(default = "default_datadog_site")]
    pub site: String,
    /// Environment variable holding the API key (sent as `DD-API-KEY`).
    #[serde(default = "default_dd_api_key_env")]
    pub api_key_env: String,
    /// Environment variable holding the application key (sent as
    /// `DD-APPLICATION-KEY`).
    #[serde(default = "default_dd_app_key_env")]
    pub app_key_env: String,
    /// Longest wait for one query, rate-limit waits included.
    #[serde(default = "default_prometheus_timeout")]
    pub timeout: HumanDuration,
    /// Retries of a query that failed transiently (connection error, 5xx,
    /// 429 past the rate-limit waits), with exponential backoff from 500 ms.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Queries in flight at most.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Windows end at this time (unix seconds) instead of now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
}

fn default_datadog_site() -> String {
    "https://api.datadoghq.com".into()
}

fn default_dd_api_key_env() -> String {
    "DD_API_KEY".into()
}

fn default_dd_app_key_env() -> String {
    "DD_APP_KEY".into()
}

impl Default for DatadogConfig {
    fn default() -> Self {
        DatadogConfig {
            site: default_datadog_site(),
            api_key_env: default_dd_api_key_env(),
            app_key_env: default_dd_app_key_env(),
            timeout: default_prometheus_timeout(),
            retries: default_retries(),
            concurrency: default_concurrency(),
            end: None,
        }
    }
}

/// `metrics.kubernetes`: sampling `metrics.k8s.io` pod metrics (what
/// metrics-server serves) and keeping the history (docs/METRICS.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesMetricsConfig {
    /// How often pod metrics are sampled (metrics-server refreshes every
    /// 15 s to 60 s; a sample that has not changed is not kept twice).
    #[serde(default = "default_sample_interval")]
    pub interval: HumanDuration,
    /// Samples older than this are dropped.
    #[serde(default = "default_retention")]
    pub retention: HumanDuration,
    /// At most this many samples are kept (16 bytes each); the oldest go
    /// first.
    #[serde(default = "default_max_samples")]
    pub max_samples: usize,
    /// Where the history is saved without `metrics.cache` (with it, in
    /// Redis); none: kept in memory only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_file: Option<PathBuf>,
}

fn default_sample_interval() -> HumanDuration {
    HumanDuration::from_secs(60)
}

fn default_retention() -> HumanDuration {
    HumanDuration::from_secs(8 * 86_400)
}

fn default_max_samples() -> usize {
    4_000_000
}

impl Default for KubernetesMetricsConfig {
    fn default() -> Self {
        KubernetesMetricsConfig {
            interval: default_sample_interval(),
            retention: default_retention(),
            max_samples: default_max_samples(),
            history_file: None,
        }
    }
}

/// `metrics.cache`: the store shared by every webhook replica, in Redis
/// (docs/METRICS.md, "Shared store").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Redis URL: `redis://HOST:PORT[/DB]`, or `rediss://` for TLS (the
    /// system's roots). A password in it is used and never logged; prefer
    /// `password_env`.
    pub redis: String,
    /// The producer recomputes when the shared data is older than this or
    /// than `metrics.refresh`, whichever is shorter; younger data is taken as
    /// it is by a replica that starts or takes over.
    #[serde(default = "default_cache_ttl")]
    pub ttl: HumanDuration,
    /// The environment variable holding the Redis password (never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Prefix of every key (`{PREFIX}:lock`, `{PREFIX}:fence`,
    /// `{PREFIX}:published`), so that several installations can share one
    /// Redis.
    #[serde(default = "default_cache_prefix")]
    pub prefix: String,
    /// Expiry of the producer's lock: a producer that stops renewing it is
    /// replaced after at most this long. Renewed every third of it.
    #[serde(default = "default_lock_ttl")]
    pub lock_ttl: HumanDuration,
    /// Longest wait for one Redis command or connection.
    #[serde(default = "default_cache_timeout")]
    pub timeout: HumanDuration,
}

fn default_cache_ttl() -> HumanDuration {
    HumanDuration::from_secs(300)
}

fn default_cache_prefix() -> String {
    "nemutator".into()
}

fn default_lock_ttl() -> HumanDuration {
    HumanDuration::from_secs(30)
}

fn default_cache_timeout() -> HumanDuration {
    HumanDuration::from_secs(2)
}

impl CacheConfig {
    /// A cache at `url` with every other key at its default.
    pub fn new(url: impl Into<String>) -> Self {
        CacheConfig {
            redis: url.into(),
            ttl: default_cache_ttl(),
            password_env: None,
            prefix: default_cache_prefix(),
            lock_ttl: default_lock_ttl(),
            timeout: default_cache_timeout(),
        }
    }
}

fn default_refresh() -> HumanDuration {
    HumanDuration::from_secs(300)
}

/// `metrics:`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Backend.
    #[serde(default)]
    pub source: MetricsBackend,
    /// File backend settings.
    #[serde(default)]
    pub file: FileMetricsConfig,
    /// Prometheus backend settings.
    #[serde(default)]
    pub prometheus: PrometheusConfig,
    /// Datadog backend settings.
    #[serde(default)]
    pub datadog: DatadogConfig,
    /// Settings of the `kubernetes` source.
    #[serde(default)]
    pub kubernetes: KubernetesMetricsConfig,
    /// Optional shared cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheConfig>,
    /// How often recommendations are recomputed from a live backend (a file
    /// is re-read whenever it changes).
    #[serde(default = "default_refresh")]
    pub refresh: HumanDuration,
    /// The webhook reports not ready when its last successful refresh is
    /// older than this (default: 3 × the refresh interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after: Option<HumanDuration>,
    /// Spacing of the steps the usage statistic is taken at (default: the
    /// source's: 5m, or the sample interval of a coarser file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<HumanDuration>,
    /// Window of the CPU rate at each step (default: the source's: 5m, or
    /// two sample intervals of a coarser file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_window: Option<HumanDuration>,
}

/// How often a file source is checked for changes.
pub const FILE_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// Refresh intervals a refresh may miss before the recommendations count as
/// stale, when `metrics.stale_after` is not set.
pub const STALE_AFTER_REFRESHES: u32 = 3;

impl MetricsConfig {
    /// Queries the configured backend may have in flight (4 for a file).
    pub fn concurrency(&self) -> usize {
        match self.source {
            MetricsBackend::Prometheus => self.prometheus.concurrency,
            MetricsBackend::Datadog => self.datadog.concurrency,
            _ => default_concurrency(),
        }
    }

    /// How often the refresher ticks: [`FILE_REFRESH`] for a file (re-read
    /// only when it changed), the sampling interval for `kubernetes` (which
    /// samples on every tick and recomputes every `refresh`), `refresh` for
    /// another live backend.
    pub fn refresh_interval(&self) -> std::time::Duration {
        match self.source {
            MetricsBackend::File => FILE_REFRESH,
            MetricsBackend::Kubernetes => self.kubernetes.interval.0.min(self.refresh.0),
            MetricsBackend::Prometheus | MetricsBackend::Datadog => self.refresh.0,
        }
    }

    /// How old the last successful refresh may be before the webhook reports
    /// not ready: `stale_after`, else [`STALE_AFTER_REFRESHES`] × the refresh
    /// interval.
    pub fn stale_after(&self) -> std::time::Duration {
        self.stale_after
            .map_or(self.refresh_interval() * STALE_AFTER_REFRESHES, |d| d.0)
    }

    /// The statistic's resolution when `step` or `rate_window` is set
    /// (`None`: the source's own).
    pub fn resolution(&self) -> Option<crate::metrics::Resolution> {
        if self.step.is_none() && self.rate_window.is_none() {
            return None;
        }
        let step = self
            .step
            .map_or(std::time::Duration::from_secs(60), |d| d.0);
        let rate = self.rate_window.map_or_else(
            || (2 * step).max(std::time::Duration::from_secs(300)),
            |d| d.0,
        );
        Some(crate::metrics::Resolution::new(step, rate))
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            source: MetricsBackend::File,
            file: FileMetricsConfig::default(),
            prometheus: PrometheusConfig::default(),
            datadog: DatadogConfig::default(),
            kubernetes: KubernetesMetricsConfig::default(),
            cache: None,
            refresh: default_refresh(),
            stale_after: None,
            step: None,
            rate_window: None,
        }
    }
}
