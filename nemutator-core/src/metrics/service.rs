//! The metrics seam as a tower [`Service`]: [`MetricsRequest`] in,
//! [`MetricsResponse`] out, [`MetricsError`] on failure.
//!
//! A backend implements [`MetricsSource`]; [`SourceService`] makes it a
//! `Service`; [`MetricsLayers`] wraps that in tower's own timeout and
//! concurrency limit and a retry with exponential backoff ([`Backoff`]); the
//! result is boxed into a [`MetricsClient`], which the recommender calls
//! with typed helpers. A cache (Redis) is one more layer: requests and
//! responses are `Serialize + Deserialize`, and every request carries its
//! window's end and resolution, so equal requests have equal answers.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use nemutator_core::metrics::{MetricsLayers, MetricsSource};
//!
//! # fn wrap(source: Arc<dyn MetricsSource>) -> nemutator_core::metrics::MetricsClient {
//! let client = MetricsLayers {
//!     timeout: Some(Duration::from_secs(30)),
//!     retries: 2,
//!     concurrency: 4,
//!     ..MetricsLayers::default()
//! }
//! .client(source);
//! # client }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt as _};

use super::{
    BoxFuture, ContainersRequest, MetricsError, MetricsSource, PodSignalsBatch, PodSignalsRequest,
    SeriesBatch, SeriesRequest, SourceInfo, UsageBatch, UsageRequest,
};
use crate::workload::ContainerRef;

/// A question to a metrics source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MetricsRequest {
    /// [`MetricsSource::info`].
    Info,
    /// [`MetricsSource::containers`].
    Containers(ContainersRequest),
    /// [`MetricsSource::usage`].
    Usage(UsageRequest),
    /// [`MetricsSource::series`].
    Series(SeriesRequest),
    /// [`MetricsSource::pod_signals`].
    PodSignals(PodSignalsRequest),
}

impl MetricsRequest {
    /// `info`, `containers`, `usage`, `series` or `pod_signals`, for logs
    /// and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            MetricsRequest::Info => "info",
            MetricsRequest::Containers(_) => "containers",
            MetricsRequest::Usage(_) => "usage",
            MetricsRequest::Series(_) => "series",
            MetricsRequest::PodSignals(_) => "pod_signals",
        }
    }
}

/// The answer to a [`MetricsRequest`], of the same variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MetricsResponse {
    /// Answers [`MetricsRequest::Info`].
    Info(SourceInfo),
    /// Answers [`MetricsRequest::Containers`].
    Containers(Vec<ContainerRef>),
    /// Answers [`MetricsRequest::Usage`].
    Usage(UsageBatch),
    /// Answers [`MetricsRequest::Series`].
    Series(SeriesBatch),
    /// Answers [`MetricsRequest::PodSignals`].
    PodSignals(PodSignalsBatch),
}

/// A [`MetricsSource`] as a tower [`Service`]. Always ready; cheap to clone.
#[derive(Clone, Debug)]
pub struct SourceService {
    source: Arc<dyn MetricsSource>,
}

impl SourceService {
    /// Serve `source`.
    pub fn new(source: Arc<dyn MetricsSource>) -> Self {
        SourceService { source }
    }
}

impl Service<MetricsRequest> for SourceService {
    type Response = MetricsResponse;
    type Error = MetricsError;
    type Future = BoxFuture<'static, Result<MetricsResponse, MetricsError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), MetricsError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: MetricsRequest) -> Self::Future {
        let source = self.source.clone();
        Box::pin(async move {
            Ok(match request {
                MetricsRequest::Info => MetricsResponse::Info(source.info()),
                MetricsRequest::Containers(r) => {
                    MetricsResponse::Containers(source.containers(&r).await?)
                }
                MetricsRequest::Usage(r) => MetricsResponse::Usage(source.usage(&r).await?),
                MetricsRequest::Series(r) => MetricsResponse::Series(source.series(&r).await?),
                MetricsRequest::PodSignals(r) => {
                    MetricsResponse::PodSignals(source.pod_signals(&r).await?)
                }
            })
        })
    }
}

/// Retry policy: transient errors ([`MetricsError::is_transient`]) are
/// retried up to `retries` times, after `first`, doubling up to `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// Retries left for this request.
    pub retries: u32,
    /// Wait before the next retry.
    pub next: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl tower::retry::Policy<MetricsRequest, MetricsResponse, MetricsError> for Backoff {
    type Future = Pin<Box<tokio::time::Sleep>>;

    fn retry(
        &mut self,
        request: &mut MetricsRequest,
        result: &mut Result<MetricsResponse, MetricsError>,
    ) -> Option<Self::Future> {
        let error = result.as_ref().err()?;
        if self.retries == 0 || !error.is_transient() {
            return None;
        }
        tracing::debug!(request = request.kind(), retries_left = self.retries, wait = ?self.next, error = %error, "retrying metrics request");
        self.retries -= 1;
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        Some(Box::pin(tokio::time::sleep(wait)))
    }

    fn clone_request(&mut self, request: &MetricsRequest) -> Option<MetricsRequest> {
        Some(request.clone())
    }
}

impl MetricsError {
    /// Back from a tower layer's boxed error: a [`MetricsError`] as it was,
    /// tower's timeout as [`MetricsError::Timeout`] of `timeout`.
    pub fn from_boxed(e: tower::BoxError, timeout: Duration) -> Self {
        match e.downcast::<MetricsError>() {
            Ok(e) => *e,
            Err(e) if e.is::<tower::timeout::error::Elapsed>() => MetricsError::Timeout(timeout),
            Err(e) => MetricsError::transient("layer", e.to_string()),
        }
    }
}

/// The tower layers every live backend gets: a timeout per attempt, retries
/// with exponential backoff, and a bound on requests in flight.
#[derive(Clone, Debug)]
pub struct MetricsLayers {
    /// Per attempt; `None`: no timeout.
    pub timeout: Option<Duration>,
    /// Retries of a transient failure (0: none).
    pub retries: u32,
    /// Wait before the first retry (doubled on each, up to 30 s).
    pub backoff: Duration,
    /// Requests in flight at most (at least 1).
    pub concurrency: usize,
}

impl Default for MetricsLayers {
    fn default() -> Self {
        MetricsLayers {
            timeout: Some(Duration::from_secs(60)),
            retries: 2,
            backoff: Duration::from_millis(500),
            concurrency: 4,
        }
    }
}

impl MetricsLayers {
    /// `source` behind the layers.
    pub fn client(&self, source: Arc<dyn MetricsSource>) -> MetricsClient {
        self.wrap(SourceService::new(source))
    }

    /// Any metrics service behind the layers (a cache, a test double).
    pub fn wrap<S>(&self, service: S) -> MetricsClient
    where
        S: Service<MetricsRequest, Response = MetricsResponse, Error = MetricsError>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        // No timeout: one that never fires keeps the stack's type the same.
        let timeout = self.timeout.unwrap_or(Duration::from_secs(u32::MAX.into()));
        let service = ServiceBuilder::new()
            .layer(tower::retry::RetryLayer::new(Backoff {
                retries: self.retries,
                next: self.backoff,
                max: Duration::from_secs(30),
            }))
            .map_err(move |e| MetricsError::from_boxed(e, timeout))
            .timeout(timeout)
            .concurrency_limit(self.concurrency.max(1))
            .service(service);
        MetricsClient {
            inner: BoxCloneSyncService::new(service),
        }
    }
}

/// A metrics service, boxed, with typed calls: what the recommender holds.
#[derive(Clone)]
pub struct MetricsClient {
    inner: BoxCloneSyncService<MetricsRequest, MetricsResponse, MetricsError>,
}

impl std::fmt::Debug for MetricsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsClient")
    }
}

impl From<Arc<dyn MetricsSource>> for MetricsClient {
    /// The source with no layer (a file: nothing to time out or retry).
    fn from(source: Arc<dyn MetricsSource>) -> Self {
        MetricsClient::new(SourceService::new(source))
    }
}

fn unexpected(what: &'static str) -> MetricsError {
    MetricsError::Data(format!(
        "the metrics service answered a {what} request with another kind"
    ))
}

impl MetricsClient {
    /// Box a service as it is.
    pub fn new<S>(service: S) -> Self
    where
        S: Service<MetricsRequest, Response = MetricsResponse, Error = MetricsError>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        MetricsClient {
            inner: BoxCloneSyncService::new(service),
        }
    }

    /// One request.
    pub fn call(
        &self,
        request: MetricsRequest,
    ) -> impl Future<Output = Result<MetricsResponse, MetricsError>> + Send + 'static {
        self.inner.clone().oneshot(request)
    }

    /// [`MetricsSource::info`].
    pub async fn info(&self) -> Result<SourceInfo, MetricsError> {
        match self.call(MetricsRequest::Info).await? {
            MetricsResponse::Info(i) => Ok(i),
            _ => Err(unexpected("info")),
        }
    }

    /// [`MetricsSource::containers`].
    pub async fn containers(
        &self,
        r: ContainersRequest,
    ) -> Result<Vec<ContainerRef>, MetricsError> {
        match self.call(MetricsRequest::Containers(r)).await? {
            MetricsResponse::Containers(c) => Ok(c),
            _ => Err(unexpected("containers")),
        }
    }

    /// [`MetricsSource::usage`].
    pub async fn usage(&self, r: UsageRequest) -> Result<UsageBatch, MetricsError> {
        match self.call(MetricsRequest::Usage(r)).await? {
            MetricsResponse::Usage(u) => Ok(u),
            _ => Err(unexpected("usage")),
        }
    }

    /// [`MetricsSource::series`].
    pub async fn series(&self, r: SeriesRequest) -> Result<SeriesBatch, MetricsError> {
        match self.call(MetricsRequest::Series(r)).await? {
            MetricsResponse::Series(s) => Ok(s),
            _ => Err(unexpected("series")),
        }
    }

    /// [`MetricsSource::pod_signals`].
    pub async fn pod_signals(&self, r: PodSignalsRequest) -> Result<PodSignalsBatch, MetricsError> {
        match self.call(MetricsRequest::PodSignals(r)).await? {
            MetricsResponse::PodSignals(s) => Ok(s),
            _ => Err(unexpected("pod_signals")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails `fail` times (transiently, or by sleeping past the timeout),
    /// then answers.
    #[derive(Debug)]
    struct Flaky {
        fail: u32,
        hang: bool,
        calls: AtomicU32,
    }

    impl MetricsSource for Flaky {
        fn info(&self) -> SourceInfo {
            SourceInfo {
                name: "flaky".into(),
                now: 0,
                resolution: Default::default(),
            }
        }
        fn containers<'a>(
            &'a self,
            _: &'a ContainersRequest,
        ) -> BoxFuture<'a, Result<Vec<ContainerRef>, MetricsError>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n < self.fail {
                    if self.hang {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    return Err(MetricsError::transient("flaky", "503 Service Unavailable"));
                }
                Ok(Vec::new())
            })
        }
        fn usage<'a>(
            &'a self,
            _: &'a UsageRequest,
        ) -> BoxFuture<'a, Result<UsageBatch, MetricsError>> {
            Box::pin(async { Err(MetricsError::permanent("flaky", "400 bad_data")) })
        }
        fn series<'a>(
            &'a self,
            _: &'a SeriesRequest,
        ) -> BoxFuture<'a, Result<SeriesBatch, MetricsError>> {
            Box::pin(async { Ok(SeriesBatch::default()) })
        }
        fn pod_signals<'a>(
            &'a self,
            _: &'a PodSignalsRequest,
        ) -> BoxFuture<'a, Result<PodSignalsBatch, MetricsError>> {
            Box::pin(async { Ok(PodSignalsBatch::default()) })
        }
    }

    fn mk_client(fail: u32, hang: bool, retries: u32) -> (MetricsClient, Arc<Flaky>) {
        let flaky = Arc::new(Flaky {
            fail,
            hang,
            calls: AtomicU32::new(0),
        });
        let layers = MetricsLayers {
            timeout: Some(Duration::from_secs(5)),
            retries,
            backoff: Duration::from_millis(100),
            concurrency: 2,
        };
        (layers.client(flaky.clone()), flaky)
    }

    fn mk_containers() -> ContainersRequest {
        ContainersRequest {
            namespace: None,
            window: Duration::from_secs(3600),
            end: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_with_backoff() {
        let (client, flaky) = mk_client(2, false, 2);
        assert!(client.containers(mk_containers()).await.is_ok());
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
        let (client, flaky) = mk_client(3, false, 2);
        let err = client.containers(mk_containers()).await.err();
        assert!(err.is_some_and(|e| e.is_transient()));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let (client, _) = mk_client(0, false, 5);
        let req = UsageRequest {
            namespace: "ns".into(),
            resource: super::super::Resource::Cpu,
            window: Duration::from_secs(60),
            end: 0,
            resolution: Default::default(),
            stats: Vec::new(),
            oom: false,
            requests: false,
        };
        let started = tokio::time::Instant::now();
        let err = client.usage(req).await.err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("metrics backend flaky: 400 bad_data"));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_backend_times_out_then_is_retried() {
        let (client, flaky) = mk_client(1, true, 1);
        assert!(client.containers(mk_containers()).await.is_ok());
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 2);
        let (client, _) = mk_client(5, true, 0);
        let err = client.containers(mk_containers()).await.err();
        assert!(matches!(err, Some(MetricsError::Timeout(d)) if d == Duration::from_secs(5)));
    }

    #[test]
    fn requests_serialise_as_cache_keys() {
        let r = MetricsRequest::Containers(mk_containers());
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"kind":"containers","namespace":null,"window":3600,"end":0}"#
        );
        let back: Option<MetricsRequest> = serde_json::from_str(&json).ok();
        assert_eq!(back, Some(r));
    }
}
