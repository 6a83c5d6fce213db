//! Assembling `nemutator controller`: the pod cache, the evictor, the
//! leader election, the leader's loops (drift, overprovisioning, noisy
//! neighbours, metadata) and the
//! REST API's state, from a kube-rs configuration.

use std::future::Future;
use std::sync::Arc;

use kube::Client;

use super::api::auth::Authorizer;
use super::api::{ApiState, ApiTelemetry};
use super::cache::pod_cache;
use super::labels::{MetadataMode, MetadataPatcher};
use super::leader::{LeaderError, Leadership, LeaseConfig};
use super::noisy::{LatestMetrics, NoisyController};
use super::overprov::{Overprovisioner, OverprovisioningConfig};
use super::reconcile::{DriftMode, DriftReconciler, ResizeLimits};
use crate::error::Chain;
use crate::evict::{EvictionPolicy, Evictor, KubeEvictor};
use crate::metadata::SharedRules;
use crate::mutate::ResourcesLayer;
use crate::recommend::RecommendationStore;
use crate::season::SeasonStore;

/// What the controller is started with.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// The Lease of the leader election.
    pub lease: LeaseConfig,
    /// The limits of eviction.
    pub policy: EvictionPolicy,
    /// Whether the drift reconciler acts.
    pub drift: DriftMode,
    /// How often the leader runs a drift pass.
    pub drift_interval: std::time::Duration,
    /// How many in-place resizes a drift pass may ask for.
    pub resize_limits: ResizeLimits,
    /// The placeholder Deployment (in the Lease's namespace).
    pub overprovisioning: OverprovisioningConfig,
    /// How often the leader applies it.
    pub overprovisioning_interval: std::time::Duration,
    /// The noisy-neighbour scorer (`controller.noisy`).
    pub noisy: crate::noisy::NoisyConfig,
    /// Whether the label and annotation patcher acts.
    pub metadata: MetadataMode,
    /// How often the leader runs a metadata pass (besides after each reload).
    pub metadata_interval: std::time::Duration,
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// No Kubernetes API configuration (no kubeconfig, not in a pod).
    #[error("no Kubernetes API configuration (KUBECONFIG, ~/.kube/config or in-cluster)")]
    Config(#[source] kube::config::InferConfigError),
    /// A client could not be built.
    #[error("Kubernetes client")]
    Client(#[source] kube::Error),
    /// The election could not start.
    #[error(transparent)]
    Leader(#[from] LeaderError),
}

/// Starts the controller: returns the REST API's state and the future that
/// runs the pod cache and the election until `shutdown` resolves (then
/// releases the Lease). `metrics` is the refresher's source loader: the
/// noisy-neighbour loop asks the source it last loaded. The metadata
/// patcher applies the rules in force in `rules`.
pub async fn start(
    options: &ControllerOptions,
    metrics: Arc<LatestMetrics>,
    recommendations: Arc<RecommendationStore>,
    seasons: Option<Arc<SeasonStore>>,
    resources: ResourcesLayer,
    rules: Arc<SharedRules>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(Arc<ApiState>, impl Future<Output = ()> + Send), ControllerError> {
    let config = kube::Config::infer()
        .await
        .map_err(ControllerError::Config)?;
    let client = Client::try_from(config.clone()).map_err(ControllerError::Client)?;
    let (pods, cache) = pod_cache(client.clone());
    let evictor = KubeEvictor::new(
        config,
        pods.clone(),
        options.policy.clone(),
        Some(options.lease.identity.clone()),
    )
    .map_err(ControllerError::Client)?;
    let eviction_metrics = evictor.metrics();
    let evictor: Arc<dyn Evictor> = Arc::new(evictor);
    let (leadership, election) = Leadership::join(client.clone(), &options.lease, shutdown).await?;
    let mut reconciler = DriftReconciler::new(
        client.clone(),
        pods.clone(),
        resources,
        evictor.clone(),
        options.drift,
    );
    reconciler.limits = options.resize_limits;
    let drift_metrics = reconciler.metrics();
    let drift = reconciler.run(leadership.clone(), options.drift_interval);
    let overprovisioner = Overprovisioner::new(
        client.clone(),
        &options.lease.namespace,
        options.overprovisioning.clone(),
        seasons.clone(),
    );
    let overprovisioning_metrics = overprovisioner.metrics();
    let overprovisioning =
        overprovisioner.run(leadership.clone(), options.overprovisioning_interval);
    let noisy = NoisyController::new(
        client.clone(),
        pods.clone(),
        metrics,
        evictor.clone(),
        options.noisy.clone(),
    );
    let noisy_scores = noisy.scores();
    let noisy_metrics = noisy.metrics();
    let noisy = noisy.run(leadership.clone());
    let patcher = MetadataPatcher::new(client.clone(), pods.clone(), rules, options.metadata);
    let metadata_metrics = patcher.metrics();
    let metadata = patcher.run(leadership.clone(), options.metadata_interval);
    let state = Arc::new(ApiState {
        auth: Authorizer::new(client.clone()),
        client,
        pods,
        evictor,
        eviction_metrics,
        drift_metrics,
        overprovisioning_metrics,
        noisy_enabled: options.noisy.enabled,
        noisy_scores,
        noisy_metrics,
        metadata_metrics,
        recommendations,
        seasons,
        leadership,
        telemetry: ApiTelemetry::new(),
    });
    let run = async move {
        let cache = tokio::spawn(cache);
        let drift = tokio::spawn(drift);
        let overprovisioning = tokio::spawn(overprovisioning);
        let noisy = tokio::spawn(noisy);
        let metadata = tokio::spawn(metadata);
        election.await;
        drift.abort();
        overprovisioning.abort();
        noisy.abort();
        metadata.abort();
        cache.abort();
        if let Err(e) = cache.await {
            if !e.is_cancelled() {
                tracing::warn!(error = %Chain(&e), "the pod cache task failed");
            }
        }
    };
    Ok((state, run))
}
