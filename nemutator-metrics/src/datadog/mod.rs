//! The Datadog backend (`metrics.source: datadog`): the metrics the Datadog
//! agent collects from the kubelet, through `POST /api/v2/query/timeseries`.
//!
//! A [`UsageRequest`] is one HTTP request per namespace, resource and
//! window (more only when the window holds over [`MAX_POINTS`] steps, the
//! most Datadog returns per series): one metric query per workload kind,
//! `max:<metric>{kube_namespace:NS} by {<kind tag>,kube_container_name}`
//! rolled up at the step, so that Datadog computes the per-step maximum
//! across a workload's pods. The quantiles over time, season masks and
//! hours of history are then computed by nemutator from those per-step
//! maxima with [`stat::summarize`], the code the file source uses. Live pod
//! signals are one HTTP request ([`signals`]).
//!
//! The keys are read from the environment variables the configuration
//! names, once, into [`SecretString`]s: no log line, error or `Debug`
//! output holds them.
//!
//! ```no_run
//! use nemutator_core::config::DatadogConfig;
//! use nemutator_metrics::DatadogSource;
//!
//! // Keys from $DD_API_KEY and $DD_APP_KEY.
//! let source = DatadogSource::new(&DatadogConfig {
//!     site: "datadoghq.eu".into(),
//!     ..DatadogConfig::default()
//! })?;
//! # Ok::<(), nemutator_metrics::datadog::DatadogError>(())
//! ```

mod http;
pub mod query;
pub mod signals;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use nemutator_core::config::DatadogConfig;
use nemutator_core::metrics::{
    stat, BoxFuture, ContainerUsage, ContainersRequest, MetricsError, MetricsLayers, MetricsSource,
    PodSignalsBatch, PodSignalsRequest, Resolution, SeriesBatch, SeriesRequest, SourceInfo,
    UsageBatch, UsageRequest, CURRENT_LOOKBACK,
};
use nemutator_core::workload::ContainerRef;
use secrecy::SecretString;

use self::http::{Http, Keys};
pub use self::http::{RateLimit, PATH, RATE_LIMIT_WAITS};
use self::query::TimeseriesRequest;
use crate::LiveLoader;

/// Steps per request: under the 1,500 points per series Datadog returns.
pub const MAX_POINTS: i64 = 1_440;

/// Why the Datadog backend could not be set up. No variant holds a key.
#[derive(Debug, thiserror::Error)]
pub enum DatadogError {
    /// The site is neither a URL nor a Datadog site name.
    #[error("metrics.datadog.site: {0}")]
    Site(String),
    /// An environment variable named by the configuration is not set.
    #[error("metrics.datadog: environment variable {0} is not set")]
    MissingEnv(String),
    /// A key cannot be sent as an HTTP header.
    #[error("metrics.datadog: the key in {0} holds characters an HTTP header cannot carry")]
    BadKey(String),
    /// The HTTP client could not be built.
    #[error("metrics.datadog: HTTP client: {0}")]
    Client(String),
}

/// Usage history from Datadog.
#[derive(Debug)]
pub struct DatadogSource {
    http: Http,
    end: Option<i64>,
}

fn env_secret(name: &str) -> Result<SecretString, DatadogError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(SecretString::from)
        .ok_or_else(|| DatadogError::MissingEnv(name.to_string()))
}

/// The API's base URL for `site`: a URL as it is, a site name as
/// `https://api.<site>` (`app.` dropped).
pub fn base_url(site: &str) -> Result<String, DatadogError> {
    let site = site.trim().trim_end_matches('/');
    if let Some(rest) = site
        .strip_prefix("https://")
        .or_else(|| site.strip_prefix("http://"))
    {
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') || site.contains(['?', '#']) {
            return Err(DatadogError::Site(
                "a URL with a host, and no credentials, query or fragment".into(),
            ));
        }
        return Ok(site.to_string());
    }
    let host = site.strip_prefix("app.").unwrap_or(site);
    let ok = host.contains('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if !ok {
        return Err(DatadogError::Site(format!(
            "{:?} is neither an https:// URL nor a Datadog site such as datadoghq.eu",
            host.chars().take(80).collect::<String>()
        )));
    }
    Ok(format!("https://api.{host}"))
}

fn wall_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The chunks of at most [`MAX_POINTS`] steps of `steps`, as `[from, to)`
/// in unix seconds: the intervals whose ends are the steps.
fn chunks(steps: &[i64], step: i64) -> impl Iterator<Item = (i64, i64)> + '_ {
    steps
        .chunks(MAX_POINTS as usize)
        .filter_map(move |c| Some((c.first()? - step, *c.last()?)))
}

impl DatadogSource {
    /// A source for `metrics.datadog`, with the keys from the environment
    /// variables it names.
    pub fn new(config: &DatadogConfig) -> Result<Self, DatadogError> {
        let base = base_url(&config.site)?;
        let keys = Keys {
            api: env_secret(&config.api_key_env)?,
            app: env_secret(&config.app_key_env)?,
            api_env: config.api_key_env.clone(),
            app_env: config.app_key_env.clone(),
        };
        Ok(DatadogSource {
            http: Http::new(&base, keys)?,
            end: config.end,
        })
    }

    /// HTTP requests sent so far.
    pub fn requests(&self) -> u64 {
        self.http.requests()
    }

    /// `429` answers received so far.
    pub fn throttled(&self) -> u64 {
        self.http.throttled()
    }
}

impl MetricsSource for DatadogSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            name: "datadog".into(),
            now: self.end.unwrap_or_else(wall_clock),
            resolution: Resolution::DEFAULT,
        }
    }

    fn containers<'a>(
        &'a self,
        request: &'a ContainersRequest,
    ) -> BoxFuture<'a, Result<Vec<ContainerRef>, MetricsError>> {
        Box::pin(async move {
            let window = i64::try_from(request.window.as_secs())
                .unwrap_or(i64::MAX)
                .max(60);
            let interval = query::listing_interval(window);
            let queries = query::listing_queries(request.namespace.as_deref(), interval)?;
            // Intervals aligned as Datadog aligns them, from the one holding
            // the window's start to the window's end.
            let since = request.end.saturating_sub(window);
            let from = since.div_euclid(interval) * interval;
            let answer = self
                .http
                .query(&TimeseriesRequest::new(
                    queries,
                    from,
                    request.end.saturating_add(1),
                    interval,
                ))
                .await?;
            let mut out = query::listed(&answer, request.namespace.as_deref(), interval, since);
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
            // Datadog's CPU rates come from the agent: the rate window is
            // the step (see docs/METRICS.md).
            let step = request.resolution.step_secs();
            let steps: Vec<i64> = stat::steps(request.end, request.window, step).collect();
            let (queries, blocks) = query::usage_queries(
                request.resource,
                &request.namespace,
                step,
                (request.requests, request.oom),
            )?;
            let mut points: BTreeMap<ContainerRef, BTreeMap<i64, f64>> = BTreeMap::new();
            let mut current = BTreeMap::new();
            let mut killed = BTreeSet::new();
            let lookback = (request.end.saturating_sub(CURRENT_LOOKBACK), request.end);
            for (from, to) in chunks(&steps, step) {
                let answer = self
                    .http
                    .query(&TimeseriesRequest::new(queries.clone(), from, to, step))
                    .await?;
                let (ns, resource) = (&request.namespace, request.resource);
                query::container_points(&answer, &blocks, resource, ns, step, &mut points)?;
                query::current_requests(
                    &answer,
                    &blocks,
                    resource,
                    ns,
                    step,
                    lookback,
                    &mut current,
                )?;
                query::oom_kills(&answer, &blocks, ns, &mut killed)?;
            }
            let (first, last) = (
                steps.first().copied().unwrap_or(i64::MAX),
                steps.last().copied().unwrap_or(i64::MIN),
            );
            let mut batch = UsageBatch::default();
            for (target, by_step) in points {
                let per_step: Vec<(i64, f64)> =
                    by_step.range(first..=last).map(|(t, v)| (*t, *v)).collect();
                if per_step.is_empty() {
                    continue;
                }
                let checkpoints = checkpoints(&per_step, request, step);
                let stats = request
                    .stats
                    .iter()
                    .map(|spec| stat::summarize(&per_step, &checkpoints, spec))
                    .collect();
                let request = current.get(&target).copied();
                let oom_killed = killed.contains(&target);
                batch.containers.insert(
                    target,
                    ContainerUsage {
                        stats,
                        oom_killed,
                        request,
                    },
                );
            }
            Ok(batch)
        })
    }

    fn series<'a>(
        &'a self,
        request: &'a SeriesRequest,
    ) -> BoxFuture<'a, Result<SeriesBatch, MetricsError>> {
        Box::pin(async move {
            let step = request.resolution.step_secs();
            let steps: Vec<i64> = stat::steps(request.end, request.window, step).collect();
            let queries = query::series_queries(request.resource, &request.namespace, step)?;
            let mut points = BTreeMap::new();
            for (from, to) in chunks(&steps, step) {
                let answer = self
                    .http
                    .query(&TimeseriesRequest::new(queries.clone(), from, to, step))
                    .await?;
                query::workload_points(
                    &answer,
                    request.resource,
                    &request.namespace,
                    step,
                    &mut points,
                )?;
            }
            Ok(SeriesBatch {
                workloads: points
                    .into_iter()
                    .map(|(w, p)| (w, p.into_iter().collect()))
                    .collect(),
            })
        })
    }

    fn pod_signals<'a>(
        &'a self,
        request: &'a PodSignalsRequest,
    ) -> BoxFuture<'a, Result<PodSignalsBatch, MetricsError>> {
        Box::pin(async move {
            let answer = self.http.query(&signals::request(request)?).await?;
            signals::signals(&answer)
        })
    }
}

/// The hourly checkpoints of the window at which the container has a
/// value: those inside a step with a value (exact when the step divides an
/// hour, as the default 5 minutes does).
fn checkpoints(per_step: &[(i64, f64)], request: &UsageRequest, step: i64) -> Vec<i64> {
    let with_value: BTreeSet<i64> = per_step.iter().map(|p| p.0).collect();
    stat::steps(request.end, request.window, stat::CHECKPOINT)
        .filter(|h| with_value.contains(&((h + step - 1).div_euclid(step) * step)))
        .collect()
}

impl LiveLoader {
    /// A loader for `metrics.datadog`: the source behind a timeout, retries
    /// with backoff and a concurrency limit.
    pub fn datadog(config: &DatadogConfig) -> Result<Self, DatadogError> {
        let source: Arc<dyn MetricsSource> = Arc::new(DatadogSource::new(config)?);
        let layers = MetricsLayers {
            timeout: Some(config.timeout.0),
            retries: config.retries,
            concurrency: config.concurrency,
            ..MetricsLayers::default()
        };
        Ok(LiveLoader::new(layers.client(source)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_become_urls() {
        assert_eq!(
            base_url("datadoghq.eu").ok().as_deref(),
            Some("https://api.datadoghq.eu")
        );
        assert_eq!(
            base_url("app.datadoghq.com").ok().as_deref(),
            Some("https://api.datadoghq.com")
        );
        assert_eq!(
            base_url("http://127.0.0.1:8126/").ok().as_deref(),
            Some("http://127.0.0.1:8126")
        );
        for bad in [
            "https://key:secret@api.datadoghq.com",
            "datadog",
            "https://",
            "a b.com",
        ] {
            let e = base_url(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.starts_with("metrics.datadog.site: "), "{bad}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn missing_keys_name_the_variable() {
        let config = DatadogConfig {
            api_key_env: "NEMUTATOR_TEST_UNSET_DD_KEY".into(),
            ..DatadogConfig::default()
        };
        let e = DatadogSource::new(&config).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("metrics.datadog: environment variable NEMUTATOR_TEST_UNSET_DD_KEY is not set")
        );
    }

    #[test]
    fn long_windows_are_split_under_the_point_limit() {
        let steps: Vec<i64> =
            stat::steps(604_800, std::time::Duration::from_secs(604_800), 300).collect();
        let c: Vec<(i64, i64)> = chunks(&steps, 300).collect();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0], (0, 1_440 * 300));
        assert_eq!(c[1].0, c[0].1);
        assert_eq!(c[1].1, 604_800);
    }
}
