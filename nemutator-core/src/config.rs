//! The YAML configuration (see DESIGN.md, "Configuration"). With no file, the
//! embedded defaults apply: the OpenMetrics file source on the sample usage
//! history embedded in the binary (`nemutator-metrics`, also at
//! `examples/data/usage.om`), and one `default` policy. No default names a
//! path, so the defaults work from any directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::{Policy, PolicyError, PolicySet};
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

pub use crate::secret::SecretsConfig;

/// `seasons:`: learning peak and off-peak per workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeasonsConfig {
    /// Learn seasons for policies that have brainsets.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// History the model is fitted on (two cycles are needed to see a period:
    /// 28d shows weekly rhythms).
    #[serde(default = "default_season_history")]
    pub history: HumanDuration,
    /// Resolution of the fitted series.
    #[serde(default = "default_season_step")]
    pub step: HumanDuration,
    /// The peak brainset applies this long before a predicted peak.
    #[serde(default = "default_lead")]
    pub lead: HumanDuration,
    /// Profiles are refitted when older than this.
    #[serde(default = "default_refit")]
    pub refit: HumanDuration,
    /// Where learned profiles are saved, so they survive restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_file: Option<PathBuf>,
}

fn yes() -> bool {
    true
}
fn default_season_history() -> HumanDuration {
    HumanDuration::from_secs(28 * 86_400)
}
fn default_season_step() -> HumanDuration {
    HumanDuration::from_secs(300)
}
fn default_lead() -> HumanDuration {
    HumanDuration::from_secs(3600)
}
fn default_refit() -> HumanDuration {
    HumanDuration::from_secs(6 * 3600)
}

impl Default for SeasonsConfig {
    fn default() -> Self {
        SeasonsConfig {
            enabled: true,
            history: default_season_history(),
            step: default_season_step(),
            lead: default_lead(),
            refit: default_refit(),
            state_file: None,
        }
    }
}

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Usage history.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Right-sizing policies, first match wins.
    #[serde(default = "default_policies")]
    pub policies: PolicySet,
    /// Secret injection: on where the file has this section.
    #[serde(default = "SecretsConfig::off")]
    pub secrets: SecretsConfig,
    /// Season learning.
    #[serde(default)]
    pub seasons: SeasonsConfig,
    /// `nemutator controller` (written out only where it differs from the defaults).
    #[serde(default, skip_serializing_if = "ControllerConfig::is_default")]
    pub controller: ControllerConfig,
    /// Scheduling rules that keep noisy and precious pods apart (off by
    /// default; written out only where it differs from the defaults).
    #[serde(
        default,
        skip_serializing_if = "crate::mutate::PlacementConfig::is_default"
    )]
    pub placement: crate::mutate::PlacementConfig,
    /// Label and annotation rules, reloaded while running (docs/CONFIGURATION.md).
    #[serde(
        default,
        skip_serializing_if = "crate::metadata::MetadataConfig::is_empty"
    )]
    pub metadata: crate::metadata::MetadataConfig,
}

/// `controller:`: what `nemutator controller` does besides its flags.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// The placeholder Deployment sized by season (docs/CONTROLLER.md).
    #[serde(default)]
    pub overprovisioning: crate::controller::overprov::OverprovisioningConfig,
    /// The noisy-neighbour scorer (docs/CONTROLLER.md).
    #[serde(default)]
    pub noisy: crate::noisy::NoisyConfig,
}

impl ControllerConfig {
    fn is_default(&self) -> bool {
        *self == ControllerConfig::default()
    }
}

fn default_policies() -> PolicySet {
    PolicySet(vec![Policy::default()])
}

impl Default for Config {
    fn default() -> Self {
        Config {
            metrics: MetricsConfig::default(),
            policies: default_policies(),
            secrets: SecretsConfig::off(),
            seasons: SeasonsConfig::default(),
            controller: ControllerConfig::default(),
            placement: Default::default(),
            metadata: crate::metadata::MetadataConfig::default(),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is invalid or has unknown keys.
    #[error("{path}: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// One-line reason with the location.
        message: String,
    },
    /// A policy is invalid.
    #[error("{path}")]
    Policy {
        /// The file.
        path: PathBuf,
        /// The reason.
        #[source]
        source: PolicyError,
    },
}

impl Config {
    /// Parse YAML text; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml {
                path: origin.to_path_buf(),
                message: e.to_string().replace('\n', " "),
            })?
        };
        config
            .policies
            .validate()
            .map_err(|source| ConfigError::Policy {
                path: origin.to_path_buf(),
                source,
            })?;
        Ok(config)
    }

    /// Load a file, or the embedded defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESIGN_EXAMPLE: &str = r#"
metrics:
  source: file                 # file | prometheus | datadog
  file: { path: examples/data/usage.om }
  prometheus: { url: http://127.0.0.1:9090 }
  datadog: { site: https://api.datadoghq.com, api_key_env: DD_API_KEY, app_key_env: DD_APP_KEY }
  cache: { redis: redis://127.0.0.1:6379, ttl: 5m }   # optional
policies:
  - name: default
    namespaces: ["*"]
    exclude_namespaces: [kube-system]
    window: 7d
    min_history: 24h
    cpu:    { percentile: 95, headroom: 15%, min: 10m,  max: "8" }
    memory: { percentile: 100, headroom: 20%, min: 32Mi, max: 16Gi }
    limits: keep-ratio         # keep-ratio | unchanged | remove | equal-to-requests
    min_change: 10%            # smaller changes are not applied
    brainsets:                 # overrides per season
      peak:     { cpu: { percentile: 99, headroom: 30% } }
      off-peak: { cpu: { percentile: 90, headroom: 10% } }
secrets:
  resolver: file               # file | vault
  file: { path: examples/secrets.yaml }
  vault: { address: http://127.0.0.1:8200, auth: kubernetes, role: nemutator, mount: kubernetes }
  injection: exec
  env_namespaces: [team-a]
  allowed_paths:
    team-a: ["kv/data/team-a/*"]
"#;

    #[test]
    fn prometheus_keys() {
        let yaml = r#"
metrics:
  source: prometheus
  step: 2m
  prometheus:
    url: https://prom.example:9090/prometheus
    bearer_token_file: /var/run/secrets/prom/token
    basic_auth: { username: nemutator, password_env: PROM_PASSWORD }
    ca_file: /etc/prom/ca.pem
    timeout: 30s
    end: 1764547200
"#;
        let c = Config::from_yaml(yaml, Path::new("x")).unwrap_or_else(|e| panic!("{e}"));
        let p = &c.metrics.prometheus;
        assert_eq!(p.timeout.as_secs(), 30);
        assert_eq!(
            (p.retries, p.concurrency, p.end),
            (2, 4, Some(1_764_547_200))
        );
        assert_eq!(
            p.basic_auth.as_ref().map(|b| b.username.as_str()),
            Some("nemutator")
        );
        let res = c.metrics.resolution().unwrap_or_default();
        assert_eq!((res.step.as_secs(), res.rate_window.as_secs()), (120, 300));
        let bad = Config::from_yaml(
            "metrics: { prometheus: { url: x, token: y } }",
            Path::new("x"),
        );
        assert!(bad.is_err(), "unknown keys are errors");
    }

    #[test]
    fn a_secrets_section_turns_secrets_on() {
        let on = |yaml: &str| {
            Config::from_yaml(yaml, Path::new("x"))
                .map(|c| c.secrets.enabled)
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert!(!on("metrics: { source: file }\n"), "no section: off");
        assert!(!Config::default().secrets.enabled);
        assert!(on("secrets: { allowed_paths: { a: [\"kv/data/a/*\"] } }\n"));
        assert!(on("secrets: {}\n"));
        assert!(!on("secrets: { enabled: false }\n"));
        // What `nemutator install` writes without --config reads back off.
        let text = serde_yaml::to_string(&Config::default()).unwrap_or_default();
        assert!(!on(&text), "{text}");
    }

    #[test]
    fn accepts_the_design_example() {
        let c = Config::from_yaml(DESIGN_EXAMPLE, Path::new("x.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let cache = c
            .metrics
            .cache
            .clone()
            .unwrap_or_else(|| CacheConfig::new("-"));
        assert_eq!(cache.ttl.as_secs(), 300);
        assert_eq!(cache.redis, "redis://127.0.0.1:6379");
        assert_eq!(
            (cache.prefix.as_str(), cache.lock_ttl.as_secs()),
            ("nemutator", 30)
        );
        assert_eq!(c.metrics.resolution(), None);
        assert_eq!(c.policies.0.len(), 1);
        assert_eq!(c.secrets.resolver, crate::secret::ResolverKind::File);
        assert_eq!(
            c.secrets.vault.as_ref().map(|v| v.mount.as_str()),
            Some("kubernetes")
        );
        // The explicit default policy equals the embedded one (plus brainsets).
        let mut p = c.policies.0[0].clone();
        p.brainsets = Default::default();
        assert_eq!(p.effective(None), Policy::default().effective(None));
    }

    #[test]
    fn the_defaults_name_no_file() {
        assert_eq!(Config::default().metrics.file.path, None);
        let c = Config::from_yaml("metrics: { source: file }", Path::new("x"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.metrics.file.path, None);
        let c = Config::from_yaml("metrics: { file: { path: /data/u.om } }", Path::new("x"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.metrics.file.path, Some(PathBuf::from("/data/u.om")));
    }

    #[test]
    fn staleness_bound_defaults_to_three_refreshes() {
        let file = Config::default().metrics;
        assert_eq!(file.refresh_interval(), FILE_REFRESH);
        assert_eq!(file.stale_after(), 3 * FILE_REFRESH);
        let live = Config::from_yaml(
            "metrics: { source: prometheus, refresh: 1m }",
            Path::new("x"),
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .metrics;
        assert_eq!(live.stale_after(), std::time::Duration::from_secs(180));
        let set = Config::from_yaml("metrics: { stale_after: 10m }", Path::new("x"))
            .unwrap_or_else(|e| panic!("{e}"))
            .metrics;
        assert_eq!(set.stale_after(), std::time::Duration::from_secs(600));
    }

    #[test]
    fn a_missing_file_says_its_cause_once() {
        let e = Config::load(Some(Path::new("/nonexistent"))).expect_err("no file");
        assert_eq!(e.to_string(), "/nonexistent");
        assert_eq!(
            crate::error::Chain(&e).to_string(),
            "/nonexistent: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(
            Config::from_yaml("", Path::new("x")).ok(),
            Some(Config::default())
        );
    }

    #[test]
    fn errors_are_one_line_and_name_the_file() {
        for bad in [
            "metrics: { sauce: file }",
            "policies: [{ name: p, cpu: { percentile: 0 } }]",
            "policies: 3",
        ] {
            let e = Config::from_yaml(bad, Path::new("c.yaml")).expect_err(bad);
            let e = crate::error::Chain(&e).to_string();
            assert!(e.starts_with("c.yaml: "), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
