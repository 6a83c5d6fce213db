//! `metrics.source: kubernetes`: nemutator samples `metrics.k8s.io/v1beta1`
//! pod metrics (what metrics-server serves) and keeps the history itself,
//! as VPA's recommender does without Prometheus, then computes the one
//! statistic from its own samples (the file source's code, on the
//! [`History`]).
//!
//! The [`KubernetesLoader`] samples on every call (the refresher ticks every
//! `metrics.kubernetes.interval`) and hands out a source every
//! `metrics.refresh`. Each sample's time is the `timestamp` metrics-server
//! reports (when the kubelet measured it), so a repeated answer adds
//! nothing. The history is bounded (`retention`, `max_samples`) and saved
//! when recommendations are recomputed: to Redis with `metrics.cache` (so a
//! replica that takes over production continues it), else to
//! `history_file`, else nowhere.
//!
//! The source handed out answers the statistic from the history as it was
//! when recomputed, and live pod signals ([`MetricsSource::pod_signals`])
//! from the history as it is now: CPU (the rate of the history's counter
//! over the window, as PromQL's `rate()` takes it) and the largest working
//! set of the samples in the window. The throttled fraction
//! is always `None`: `metrics.k8s.io` reports no CFS throttling.

pub mod history;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use nemutator_core::config::KubernetesMetricsConfig;
use nemutator_core::error::Chain;
use nemutator_core::metrics::{
    BoxFuture, ContainersRequest, MetricsClient, MetricsError, MetricsSource, PodSignalsBatch,
    PodSignalsRequest, SeriesBatch, SeriesRequest, SourceInfo, SourceLoader, UsageBatch,
    UsageRequest,
};
use nemutator_core::quantity::Quantity;
use nemutator_core::workload::ContainerRef;
use tokio::time::Instant;

pub use history::{History, Reading};

use crate::file::FileSource;
use crate::shared::RedisStore;

const BACKEND: &str = "kubernetes";

/// Where the history is saved.
#[derive(Clone, Debug)]
pub enum HistoryKeeper {
    /// Nowhere: a restart starts over.
    Memory,
    /// A local file (written atomically).
    File(PathBuf),
    /// The shared Redis (`{PREFIX}:history`).
    Redis(Box<RedisStore>),
}

impl HistoryKeeper {
    async fn load(&self) -> Result<Option<Vec<u8>>, String> {
        match self {
            HistoryKeeper::Memory => Ok(None),
            HistoryKeeper::File(path) => match tokio::fs::read(path).await {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("{}: {e}", path.display())),
            },
            HistoryKeeper::Redis(r) => r.get_history().await.map_err(|e| e.to_string()),
        }
    }

    async fn save(&self, bytes: Vec<u8>) -> Result<(), String> {
        match self {
            HistoryKeeper::Memory => Ok(()),
            HistoryKeeper::File(path) => {
                let tmp = path.with_extension("tmp");
                let io = |e: std::io::Error| format!("{}: {e}", path.display());
                tokio::fs::write(&tmp, bytes).await.map_err(io)?;
                tokio::fs::rename(&tmp, path).await.map_err(io)
            }
            HistoryKeeper::Redis(r) => r.set_history(bytes).await.map_err(|e| e.to_string()),
        }
    }
}

/// The resource `metrics.k8s.io/v1beta1` `pods`.
pub fn pod_metrics_resource() -> ApiResource {
    ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    }
}

/// The readings of one `PodMetrics` object; `None` when it is malformed.
pub fn readings(object: &DynamicObject) -> Option<Vec<Reading>> {
    let namespace = object.metadata.namespace.clone()?;
    let pod = object.metadata.name.clone()?;
    let stamp = object.data.get("timestamp")?.clone();
    let at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time =
        serde_json::from_value(stamp).ok()?;
    let at = at.0.as_second();
    let containers = object.data.get("containers")?.as_array()?;
    let quantity = |v: &serde_json::Value, r: &str| -> Option<f64> {
        v.get("usage")?
            .get(r)?
            .as_str()?
            .parse::<Quantity>()
            .ok()
            .map(Quantity::as_f64)
    };
    Some(
        containers
            .iter()
            .filter_map(|c| {
                Some(Reading {
                    namespace: namespace.clone(),
                    pod: pod.clone(),
                    container: c.get("name")?.as_str()?.to_string(),
                    at,
                    cpu: quantity(c, "cpu")?,
                    memory: quantity(c, "memory")?,
                })
            })
            .collect(),
    )
}

#[derive(Debug, Default)]
struct State {
    history: History,
    /// The last call (`None`: none yet).
    last_load: Option<Instant>,
    computed: Option<Instant>,
}

/// The [`SourceLoader`] of the `kubernetes` source.
pub struct KubernetesLoader {
    config: KubernetesMetricsConfig,
    recompute: Duration,
    keeper: HistoryKeeper,
    client: tokio::sync::OnceCell<kube::Client>,
    /// Shared with the sources handed out, for live pod signals.
    state: Arc<tokio::sync::Mutex<State>>,
}

impl std::fmt::Debug for KubernetesLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesLoader")
            .field("config", &self.config)
            .field("recompute", &self.recompute)
            .field("keeper", &self.keeper)
            .finish_non_exhaustive()
    }
}

impl KubernetesLoader {
    /// A loader sampling as `config` says and recomputing every `recompute`;
    /// the Kubernetes client is the default one (kubeconfig or in-cluster),
    /// made on first use.
    pub fn new(
        config: KubernetesMetricsConfig,
        recompute: Duration,
        keeper: HistoryKeeper,
    ) -> Self {
        KubernetesLoader {
            config,
            recompute,
            keeper,
            client: tokio::sync::OnceCell::new(),
            state: Arc::default(),
        }
    }

    /// Use `client` instead of the default one.
    pub fn with_client(self, client: kube::Client) -> Self {
        KubernetesLoader {
            client: tokio::sync::OnceCell::new_with(Some(client)),
            ..self
        }
    }

    async fn client(&self) -> Result<kube::Client, MetricsError> {
        self.client
            .get_or_try_init(|| async {
                kube::Client::try_default().await.map_err(|e| {
                    MetricsError::permanent(BACKEND, format!("no Kubernetes client: {}", Chain(&e)))
                })
            })
            .await
            .cloned()
    }

    /// One sample of every pod's metrics into `history`; returns the
    /// readings added.
    async fn sample(&self, history: &mut History) -> Result<usize, MetricsError> {
        let api: Api<DynamicObject> = Api::all_with(self.client().await?, &pod_metrics_resource());
        let list = api.list(&ListParams::default()).await.map_err(|e| {
            let message = format!("listing metrics.k8s.io/v1beta1 pods: {}", Chain(&e));
            match &e {
                kube::Error::Api(s) if s.code == 404 || s.code == 403 => {
                    MetricsError::permanent(BACKEND, message)
                }
                _ => MetricsError::transient(BACKEND, message),
            }
        })?;
        let (mut malformed, mut readings) = (0usize, Vec::new());
        for object in &list.items {
            match self::readings(object) {
                Some(r) => readings.extend(r),
                None => malformed += 1,
            }
        }
        if malformed > 0 {
            tracing::warn!(
                malformed,
                "pod metrics without a timestamp or usage ignored"
            );
        }
        let added = history.record(readings);
        if let Some(newest) = history.newest() {
            let retention = i64::try_from(self.config.retention.0.as_secs()).unwrap_or(i64::MAX);
            history.prune(newest.saturating_sub(retention), self.config.max_samples);
        }
        Ok(added)
    }

    async fn restore(&self, history: &mut History) {
        let saved = match self.keeper.load().await {
            Ok(Some(bytes)) => History::from_json(&bytes).map_err(|e| e.to_string()),
            Ok(None) => return,
            Err(e) => Err(e),
        };
        match saved {
            Ok(saved) if saved.newest() > history.newest() => {
                tracing::info!(samples = saved.samples(), "usage history restored");
                *history = saved;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "usage history not restored; keeping the one in memory")
            }
        }
    }

    /// The history now (a copy).
    pub async fn history(&self) -> History {
        self.state.lock().await.history.clone()
    }
}

impl SourceLoader for KubernetesLoader {
    fn load(&self) -> BoxFuture<'_, Result<Option<MetricsClient>, MetricsError>> {
        Box::pin(async move {
            let mut st = self.state.lock().await;
            // At the first call, and after a pause (another replica may have
            // produced, and sampled, meanwhile), the saved history is taken
            // when it is newer than the one in memory.
            let paused = st
                .last_load
                .is_none_or(|t| t.elapsed() > 2 * self.config.interval.0);
            st.last_load = Some(Instant::now());
            if paused {
                self.restore(&mut st.history).await;
            }
            let added = self.sample(&mut st.history).await?;
            tracing::debug!(added, samples = st.history.samples(), "pod metrics sampled");
            if st.computed.is_some_and(|t| t.elapsed() < self.recompute) {
                return Ok(None);
            }
            st.computed = Some(Instant::now());
            let history = st.history.clone();
            drop(st);
            let json = history.to_json();
            if let Err(e) = self.keeper.save(json).await {
                tracing::warn!(error = %e, "usage history not saved");
            }
            let source = tokio::task::spawn_blocking(move || history.source())
                .await
                .map_err(|e| MetricsError::permanent(BACKEND, e.to_string()))?;
            let source = KubernetesSource {
                snapshot: source,
                live: self.state.clone(),
            };
            Ok(Some(MetricsClient::from(
                Arc::new(source) as Arc<dyn MetricsSource>
            )))
        })
    }
}

/// What the [`KubernetesLoader`] hands out: the history as it was when
/// recomputed, and the loader's history as it is now for pod signals.
#[derive(Debug)]
struct KubernetesSource {
    snapshot: FileSource,
    live: Arc<tokio::sync::Mutex<State>>,
}

impl MetricsSource for KubernetesSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            name: BACKEND.into(),
            ..self.snapshot.info()
        }
    }

    fn containers<'a>(
        &'a self,
        request: &'a ContainersRequest,
    ) -> BoxFuture<'a, Result<Vec<ContainerRef>, MetricsError>> {
        self.snapshot.containers(request)
    }

    fn usage<'a>(
        &'a self,
        request: &'a UsageRequest,
    ) -> BoxFuture<'a, Result<UsageBatch, MetricsError>> {
        self.snapshot.usage(request)
    }

    fn series<'a>(
        &'a self,
        request: &'a SeriesRequest,
    ) -> BoxFuture<'a, Result<SeriesBatch, MetricsError>> {
        self.snapshot.series(request)
    }

    fn pod_signals<'a>(
        &'a self,
        request: &'a PodSignalsRequest,
    ) -> BoxFuture<'a, Result<PodSignalsBatch, MetricsError>> {
        Box::pin(async move { Ok(self.live.lock().await.history.pod_signals(request)) })
    }
}
