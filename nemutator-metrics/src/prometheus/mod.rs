//! The Prometheus backend (`metrics.source: prometheus`): Prometheus, or any
//! server speaking its HTTP API (Thanos, Mimir, VictoriaMetrics).
//!
//! Every [`UsageRequest`] is one instant query (see [`promql`]) that answers
//! every container of the namespace, computed server-side; a
//! [`SeriesRequest`] is one range query per 10,000 steps (Prometheus refuses
//! more than 11,000 points per series); listing containers is one
//! `/api/v1/series` call. The kubernetes-mixin recording rules are used when
//! the server has them (checked every 10 minutes). Live pod signals are one
//! instant query per signal ([`signals`]).
//!
//! ```no_run
//! use nemutator_core::config::PrometheusConfig;
//! use nemutator_metrics::PrometheusSource;
//!
//! let config = PrometheusConfig {
//!     url: "http://127.0.0.1:9090".into(),
//!     ..PrometheusConfig::default()
//! };
//! let source = PrometheusSource::new(&config)?;
//! # Ok::<(), nemutator_metrics::prometheus::PrometheusError>(())
//! ```

mod http;
pub mod promql;
pub mod signals;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nemutator_core::config::PrometheusConfig;
use nemutator_core::metrics::{
    stat, BoxFuture, ContainerUsage, ContainersRequest, MetricsClient, MetricsError, MetricsLayers,
    MetricsSource, PodSignalsBatch, PodSignalsRequest, Resolution, SeriesBatch, SeriesRequest,
    SourceInfo, SourceLoader, UsageBatch, UsageRequest, UsageStat,
};
use nemutator_core::workload::{ContainerRef, WorkloadKey};
use secrecy::SecretString;

use self::http::{Auth, Http};
use self::promql::{Rules, STAT_LABEL, WORKLOAD_LABEL};

/// Steps per range query: under Prometheus' 11,000 points per series.
pub const MAX_POINTS: i64 = 10_000;

/// How long the knowledge of recording rules is kept.
const RULES_TTL: Duration = Duration::from_secs(600);

/// Why the Prometheus backend could not be set up. No variant holds a
/// credential.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// The URL is not `http://` or `https://`, or carries credentials.
    #[error("metrics.prometheus.url: {0}")]
    Url(String),
    /// Both a bearer token and basic auth are configured, or neither source
    /// of a secret is given.
    #[error("metrics.prometheus: {0}")]
    Auth(String),
    /// An environment variable named by the configuration is not set.
    #[error("metrics.prometheus: environment variable {0} is not set")]
    MissingEnv(String),
    /// A file named by the configuration could not be read.
    #[error("metrics.prometheus: {path}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("metrics.prometheus.ca_file: {0}")]
    Ca(String),
    /// The HTTP client could not be built.
    #[error("metrics.prometheus: HTTP client: {0}")]
    Client(String),
}

/// Usage history from a Prometheus server.
#[derive(Debug)]
pub struct PrometheusSource {
    http: Http,
    end: Option<i64>,
    use_rules: bool,
    /// Held across the check so that concurrent requests ask once.
    rules: tokio::sync::Mutex<Option<(Instant, Rules)>>,
}

fn read_secret(path: &std::path::Path) -> Result<SecretString, PrometheusError> {
    std::fs::read_to_string(path)
        .map(|s| SecretString::from(s.trim().to_string()))
        .map_err(|source| PrometheusError::File {
            path: path.to_path_buf(),
            source,
        })
}

fn env_secret(name: &str) -> Result<SecretString, PrometheusError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .map(SecretString::from)
        .ok_or_else(|| PrometheusError::MissingEnv(name.to_string()))
}

impl PrometheusSource {
    /// A source for `metrics.prometheus`: reads the CA file and the secrets
    /// the configuration names (a token file is read again on every query).
    pub fn new(config: &PrometheusConfig) -> Result<Self, PrometheusError> {
        let url = config.url.trim();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| PrometheusError::Url("must start with http:// or https://".into()))?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(PrometheusError::Url("no host".into()));
        }
        if authority.contains('@') {
            return Err(PrometheusError::Url(
                "credentials in the URL are refused; use basic_auth with password_file or password_env".into(),
            ));
        }
        if url.contains(['?', '#']) {
            return Err(PrometheusError::Url("no query or fragment allowed".into()));
        }
        let bearer = match (&config.bearer_token_file, &config.bearer_token_env) {
            (Some(_), Some(_)) => {
                return Err(PrometheusError::Auth(
                    "bearer_token_file and bearer_token_env are exclusive".into(),
                ))
            }
            (Some(file), None) => {
                read_secret(file)?; // fail at start, not at the first query
                Some(Auth::BearerFile(file.clone()))
            }
            (None, Some(env)) => Some(Auth::Bearer(env_secret(env)?)),
            (None, None) => None,
        };
        let basic = match &config.basic_auth {
            None => None,
            Some(b) => {
                let password = match (&b.password_file, &b.password_env) {
                    (Some(file), None) => read_secret(file)?,
                    (None, Some(env)) => env_secret(env)?,
                    _ => {
                        return Err(PrometheusError::Auth(
                            "basic_auth needs exactly one of password_file and password_env".into(),
                        ))
                    }
                };
                Some(Auth::Basic {
                    username: b.username.clone(),
                    password,
                })
            }
        };
        let auth = match (bearer, basic) {
            (Some(_), Some(_)) => {
                return Err(PrometheusError::Auth(
                    "a bearer token and basic_auth are exclusive".into(),
                ))
            }
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => Auth::None,
        };
        let ca = match &config.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| PrometheusError::File {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        Ok(PrometheusSource {
            http: Http::new(url, auth, ca, config.timeout.0)?,
            end: config.end,
            use_rules: config.recording_rules,
            rules: tokio::sync::Mutex::new(None),
        })
    }

    /// HTTP requests sent so far.
    pub fn requests(&self) -> u64 {
        self.http.requests()
    }

    /// The recording rules the server has (asked at most every 10 minutes).
    async fn rules(&self, time: i64) -> Result<Rules, MetricsError> {
        if !self.use_rules {
            return Ok(Rules::default());
        }
        let mut known = self.rules.lock().await;
        if let Some((at, rules)) = *known {
            if at.elapsed() < RULES_TTL {
                return Ok(rules);
            }
        }
        let found = self.http.instant(&promql::rules_query(), time).await?;
        let has = |name: &str| {
            found
                .iter()
                .any(|s| s.metric.get("__name__").is_some_and(|n| n == name))
        };
        let rules = Rules {
            cpu_rate5m: has(promql::RULE_CPU_RATE5M),
            cpu_irate: has(promql::RULE_CPU_IRATE),
            memory: has(promql::RULE_MEMORY),
        };
        tracing::debug!(?rules, "prometheus recording rules");
        *known = Some((Instant::now(), rules));
        Ok(rules)
    }
}

fn wall_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The workload of a series with the derived label.
fn workload_of(labels: &HashMap<String, String>) -> Option<WorkloadKey> {
    let (kind, name) = promql::parse_workload(labels.get(WORKLOAD_LABEL)?)?;
    Some(WorkloadKey::new(
        labels.get("namespace")?.as_str(),
        kind,
        name,
    ))
}

/// The workload container of a series with the derived label.
fn container_of(labels: &HashMap<String, String>) -> Option<ContainerRef> {
    Some(ContainerRef::new(
        workload_of(labels)?,
        labels.get("container")?.as_str(),
    ))
}

fn value(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

impl MetricsSource for PrometheusSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            name: "prometheus".into(),
            now: self.end.unwrap_or_else(wall_clock),
            resolution: Resolution::DEFAULT,
        }
    }

    fn containers<'a>(
        &'a self,
        request: &'a ContainersRequest,
    ) -> BoxFuture<'a, Result<Vec<ContainerRef>, MetricsError>> {
        Box::pin(async move {
            let window = i64::try_from(request.window.as_secs()).unwrap_or(i64::MAX);
            let matches: Vec<String> = [promql::RAW_CPU, promql::RAW_MEMORY]
                .iter()
                .map(|m| match &request.namespace {
                    Some(ns) => promql::container_selector(m, ns),
                    None => format!("{m}{{container!=\"\",container!=\"POD\"}}"),
                })
                .collect();
            let series = self
                .http
                .series(&matches, request.end.saturating_sub(window), request.end)
                .await?;
            let mut out: Vec<ContainerRef> = series
                .iter()
                .filter_map(|labels| {
                    let (ns, pod, container) = (
                        labels.get("namespace")?,
                        labels.get("pod")?,
                        labels.get("container")?,
                    );
                    Some(ContainerRef::new(
                        WorkloadKey::from_pod_name(ns, pod),
                        container.as_str(),
                    ))
                })
                .collect();
            out.sort();
            out.dedup();
            Ok(out)
        })
    }

    fn usage<'a>(
        &'a self,
        request: &'a UsageRequest,
    ) -> BoxFuture<'a, Result<UsageBatch, MetricsError>> {
        Box::pin(async move {
            let rules = self.rules(request.end).await?;
            let Some(query) = promql::usage_query(
                request.resource,
                &request.namespace,
                request.window,
                &request.resolution,
                &request.stats,
                (request.oom, request.requests),
                rules,
            ) else {
                return Ok(UsageBatch::default());
            };
            let samples = self.http.instant(&query, request.end).await?;
            let mut batch = UsageBatch::default();
            for sample in samples {
                let (Some(target), Some(tag), Some(v)) = (
                    container_of(&sample.metric),
                    sample.metric.get(STAT_LABEL),
                    value(&sample.value.1),
                ) else {
                    continue;
                };
                let entry = batch
                    .containers
                    .entry(target)
                    .or_insert_with(|| ContainerUsage {
                        stats: vec![None; request.stats.len()],
                        oom_killed: false,
                        request: None,
                    });
                if tag == "oom" {
                    entry.oom_killed = v > 0.0;
                    continue;
                }
                if tag == "req" {
                    entry.request = Some(v);
                    continue;
                }
                let (kind, index) = tag.split_at(1.min(tag.len()));
                let Ok(index) = index.parse::<usize>() else {
                    continue;
                };
                // A count answers every statistic with its mask.
                let slots: Vec<usize> = match kind {
                    "q" => vec![index],
                    "c" => (0..request.stats.len())
                        .filter(|&i| promql::count_owner(&request.stats, i) == index)
                        .collect(),
                    _ => Vec::new(),
                };
                for i in slots {
                    let Some(slot) = entry.stats.get_mut(i) else {
                        continue;
                    };
                    let stat = slot.get_or_insert(UsageStat {
                        value: f64::NAN,
                        samples: 0,
                        history_secs: 0,
                    });
                    if kind == "q" {
                        stat.value = v;
                    } else {
                        stat.samples = v as u64;
                        stat.history_secs = (v as i64).saturating_mul(stat::CHECKPOINT);
                    }
                }
            }
            // A count without a quantile is no statistic (a quantile without
            // a count is one with no hour of history).
            for usage in batch.containers.values_mut() {
                for slot in &mut usage.stats {
                    if slot.is_some_and(|s| s.value.is_nan()) {
                        *slot = None;
                    }
                }
            }
            // A request alone is no usage.
            batch
                .containers
                .retain(|_, u| u.oom_killed || u.stats.iter().any(Option::is_some));
            Ok(batch)
        })
    }

    fn series<'a>(
        &'a self,
        request: &'a SeriesRequest,
    ) -> BoxFuture<'a, Result<SeriesBatch, MetricsError>> {
        Box::pin(async move {
            let rules = self.rules(request.end).await?;
            let query = promql::series_query(
                request.resource,
                &request.namespace,
                &request.resolution,
                rules,
            );
            let step = request.resolution.step_secs();
            let steps: Vec<i64> = stat::steps(request.end, request.window, step).collect();
            let mut merged: BTreeMap<WorkloadKey, BTreeMap<i64, f64>> = BTreeMap::new();
            for chunk in steps.chunks(MAX_POINTS as usize) {
                let (Some(&start), Some(&end)) = (chunk.first(), chunk.last()) else {
                    continue;
                };
                for series in self.http.range(&query, start, end, step).await? {
                    let Some(workload) = workload_of(&series.metric) else {
                        continue;
                    };
                    let points = merged.entry(workload).or_default();
                    for (t, v) in series.values {
                        if let Some(v) = value(&v) {
                            points.insert(t as i64, v);
                        }
                    }
                }
            }
            Ok(SeriesBatch {
                workloads: merged
                    .into_iter()
                    .map(|(w, points)| (w, points.into_iter().collect()))
                    .collect(),
            })
        })
    }

    fn pod_signals<'a>(
        &'a self,
        request: &'a PodSignalsRequest,
    ) -> BoxFuture<'a, Result<PodSignalsBatch, MetricsError>> {
        Box::pin(signals::pod_signals(&self.http, request))
    }
}

/// Hands out the same layered client on every refresh.
#[derive(Debug, Clone)]
pub struct LiveLoader {
    client: MetricsClient,
}

impl LiveLoader {
    /// A loader for `metrics.prometheus`: the source behind a timeout, retries
    /// with backoff and a concurrency limit.
    pub fn prometheus(config: &PrometheusConfig) -> Result<Self, PrometheusError> {
        let source: Arc<dyn MetricsSource> = Arc::new(PrometheusSource::new(config)?);
        let layers = MetricsLayers {
            timeout: Some(config.timeout.0),
            retries: config.retries,
            concurrency: config.concurrency,
            ..MetricsLayers::default()
        };
        Ok(LiveLoader {
            client: layers.client(source),
        })
    }

    /// A loader for any client.
    pub fn new(client: MetricsClient) -> Self {
        LiveLoader { client }
    }
}

impl SourceLoader for LiveLoader {
    fn load(&self) -> BoxFuture<'_, Result<Option<MetricsClient>, MetricsError>> {
        Box::pin(std::future::ready(Ok(Some(self.client.clone()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nemutator_core::config::BasicAuthConfig;
    use nemutator_core::workload::WorkloadKind;

    fn mk_config(url: &str) -> PrometheusConfig {
        PrometheusConfig {
            url: url.into(),
            ..PrometheusConfig::default()
        }
    }

    #[test]
    fn urls_and_auth_are_checked() {
        assert!(PrometheusSource::new(&mk_config("http://127.0.0.1:9090/prometheus/")).is_ok());
        for (url, needle) in [
            ("127.0.0.1:9090", "http://"),
            ("https://user:secret@prom:9090", "credentials"),
            ("http:///x", "no host"),
        ] {
            let e = PrometheusSource::new(&mk_config(url))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(needle), "{url}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
        let mut c = mk_config("http://prom:9090");
        c.bearer_token_env = Some("NEMUTATOR_TEST_UNSET_TOKEN".into());
        let e = PrometheusSource::new(&c)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            e,
            "metrics.prometheus: environment variable NEMUTATOR_TEST_UNSET_TOKEN is not set"
        );
        c.basic_auth = Some(BasicAuthConfig {
            username: "u".into(),
            password_file: None,
            password_env: None,
        });
        assert!(PrometheusSource::new(&c).is_err());
    }

    #[test]
    fn derived_labels_name_the_container() {
        let labels: HashMap<String, String> = [
            ("namespace", "shop"),
            (
                WORKLOAD_LABEL,
                "CronJob=,Deployment=api,DaemonSet=,StatefulSet=,Pod=",
            ),
            ("container", "app"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            container_of(&labels),
            // The kind comes from the one non-empty capture.
            Some(ContainerRef::new(
                WorkloadKey::new("shop", WorkloadKind::Deployment, "api"),
                "app"
            ))
        );
    }
}
