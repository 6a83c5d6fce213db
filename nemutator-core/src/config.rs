//! The YAML configuration (see DESIGN.md, "Configuration"). With no file, the
//! embedded defaults apply: the OpenMetrics file source on the sample usage
//! history embedded in the binary (`nemutator-metrics`, also at
//! `examples/data/usage.om`), and one `default` policy. No default names a
//! path, so the defaults work from any directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::{Policy, PolicyError, PolicySet};
use crate::units::HumanDuration;

mod metrics;

pub use metrics::{
    BasicAuthConfig, CacheConfig, DatadogConfig, FileMetricsConfig, KubernetesMetricsConfig,
    MetricsBackend, MetricsConfig, PrometheusConfig, FILE_REFRESH, STALE_AFTER_REFRESHES,
};

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
