//! The mutation chain: tower layers that each change a typed view of the Pod.
//!
//! A [`PodReview`] travels down a stack of layers ([`ResourcesLayer`] first,
//! then [`MetadataLayer`], then [`SecretsLayer`], then [`PlacementLayer`]) and comes back
//! out of the innermost [`Finish`] service. Each layer only edits the pod and
//! records what it did; the JSON Patch is computed afterwards from the diff of
//! the original and the mutated object (see [`crate::admission`]).
//!
//! ```
//! use std::sync::Arc;
//! use nemutator_core::mutate::{Pipeline, PodReview, ResourcesLayer};
//! use nemutator_core::policy::PolicySet;
//! use nemutator_core::recommend::RecommendationStore;
//!
//! let store = Arc::new(RecommendationStore::new());
//! let layer = ResourcesLayer::new(store, Arc::new(PolicySet::default()));
//! let pipeline = Pipeline::builder().layer(layer).build();
//! let review = PodReview::new("default", Default::default());
//! let out = tokio_test_block_on(pipeline.run(review));
//! assert!(out.is_ok());
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

mod metadata;
pub mod placement;
mod resources;
pub mod secrets;
mod view;

use std::collections::BTreeMap;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

use crate::workload::WorkloadKey;

pub use metadata::{Metadata, MetadataLayer};
pub use placement::{place, NoisyWorkloads, Placement, PlacementConfig, PlacementLayer};
pub use resources::{
    right_size, Mode, NoSeasons, Resources, ResourcesLayer, RightSize, SeasonOracle,
};
pub use secrets::{SecretsLayer, SecretsSetupError};
pub use view::{ContainerView, Extra, MetaView, PodSpecView, PodView};

/// A pod on its way through the mutation chain.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodReview {
    /// The namespace the pod is created in.
    pub namespace: String,
    /// The workload the pod belongs to (`None`: cannot be told).
    pub workload: Option<WorkloadKey>,
    /// The pod, as changed so far: the fields layers use ([`PodView`]).
    /// Boxed, as the review moves through every layer and future.
    pub pod: Box<PodView>,
    /// Warnings for the client (`kubectl` prints them).
    pub warnings: Vec<String>,
    /// Notes for the audit log: why something was or was not changed.
    pub audit: BTreeMap<String, String>,
    /// Evaluation time, unix seconds (for season decisions; set by the caller).
    pub now: i64,
}

impl PodReview {
    /// A review of `pod` created in `namespace` (used when the pod carries
    /// no namespace of its own), with `now` at 0. A typed `Pod` converts
    /// with `.into()`.
    pub fn new(namespace: &str, pod: PodView) -> Self {
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| namespace.to_string());
        let workload = WorkloadKey::from_meta(&pod.metadata, &namespace);
        PodReview {
            namespace,
            workload,
            pod: Box::new(pod),
            warnings: Vec::new(),
            audit: BTreeMap::new(),
            now: 0,
        }
    }
}

/// Why a layer stops the review. A layer that merely cannot do its job
/// leaves the pod alone and says why in [`PodReview::audit`]; these are for
/// the cases where letting the pod through would be wrong.
#[derive(Debug, thiserror::Error)]
pub enum MutationError {
    /// The pod must be rejected (e.g. a secret reference outside the allowed
    /// paths), with a one-line reason for the user: an AdmissionReview with
    /// `allowed: false`, whatever the webhook's `failurePolicy`.
    #[error("{0}")]
    Deny(String),
    /// A backend the layer needs (a secret store, a registry) cannot be
    /// reached, so the layer can neither do its job nor tell that the pod
    /// is wrong. The review is not answered (HTTP 503), and the API server
    /// applies the webhook's `failurePolicy`: `Ignore` admits the pod
    /// unchanged, `Fail` refuses it (docs/ARCHITECTURE.md). The source must
    /// hold no secret value: its text reaches logs and the API server.
    #[error("{backend} unreachable")]
    Unavailable {
        /// What could not be reached, e.g. `vault at https://vault:8200`.
        backend: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl MutationError {
    /// [`MutationError::Unavailable`] of `backend`, because of `source`.
    pub fn unavailable(
        backend: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        MutationError::Unavailable {
            backend: backend.into(),
            source: source.into(),
        }
    }
}

/// A mutation that edits the review in place, without waiting on anything
/// (resources, metadata rules, placement): its layer wraps the next service
/// in an [`Applied`], which applies it and passes the review on.
pub trait Mutation: Clone {
    /// Edit `review`, recording what was done in its audit.
    fn apply(&self, review: &mut PodReview);
}

/// The service of a [`Mutation`]'s layer.
#[derive(Clone, Debug)]
pub struct Applied<M, S> {
    mutation: M,
    inner: S,
}

impl<M, S> Applied<M, S> {
    /// `mutation`, then `inner`.
    pub fn new(mutation: M, inner: S) -> Self {
        Applied { mutation, inner }
    }
}

impl<M, S> Service<PodReview> for Applied<M, S>
where
    M: Mutation,
    S: Service<PodReview, Response = PodReview, Error = MutationError>,
{
    type Response = PodReview;
    type Error = MutationError;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut review: PodReview) -> Self::Future {
        self.mutation.apply(&mut review);
        self.inner.call(review)
    }
}

/// The innermost service: returns the review as the layers left it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Finish;

impl Service<PodReview> for Finish {
    type Response = PodReview;
    type Error = MutationError;
    type Future = Ready<Result<PodReview, MutationError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, review: PodReview) -> Self::Future {
        ready(Ok(review))
    }
}

/// A type-erased mutation chain, cheap to clone and share across requests.
#[derive(Clone)]
pub struct Pipeline {
    inner: BoxCloneSyncService<PodReview, PodReview, MutationError>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pipeline")
    }
}

/// Builds a [`Pipeline`] from layers, outermost first.
pub struct PipelineBuilder<L> {
    builder: ServiceBuilder<L>,
}

impl Pipeline {
    /// Start a pipeline.
    pub fn builder() -> PipelineBuilder<tower::layer::util::Identity> {
        PipelineBuilder {
            builder: ServiceBuilder::new(),
        }
    }

    /// Run a review through every layer.
    pub async fn run(&self, review: PodReview) -> Result<PodReview, MutationError> {
        self.inner.clone().oneshot(review).await
    }
}

impl<L> PipelineBuilder<L> {
    /// Add a layer (applied after the ones added before).
    pub fn layer<T>(self, layer: T) -> PipelineBuilder<tower::layer::util::Stack<T, L>> {
        PipelineBuilder {
            builder: self.builder.layer(layer),
        }
    }

    /// Finish the pipeline.
    pub fn build(self) -> Pipeline
    where
        L: Layer<Finish>,
        L::Service: Service<PodReview, Response = PodReview, Error = MutationError>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<PodReview>>::Future: Send + 'static,
    {
        Pipeline {
            inner: BoxCloneSyncService::new(self.builder.service(Finish)),
        }
    }
}
