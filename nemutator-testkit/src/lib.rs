//! # nemutator-testkit
//!
//! The shared test double of the **Kubernetes API** for in-process tests,
//! and [`cluster`], the way to the real API server that `scripts/test.sh`
//! starts for the end-to-end tests (docs/TESTENV.md). The double is an
//! in-process HTTP/1.1 server on `127.0.0.1` (plain HTTP, or HTTPS with a
//! self-signed certificate whose PEM the test hands to the client), speaking
//! the real wire format: the JSON of `k8s-openapi` objects, `…List` objects
//! and `meta/v1` `Status` failures, so a client that works against it parses
//! the same bytes a real API server sends.
//!
//! Tests seed an in-memory object map ([`Store`]) and point the code under
//! test at [`ApiServer::url`]:
//!
//! ```
//! use nemutator_testkit::{mk_pod, ApiServer};
//!
//! let api = ApiServer::builder().token("t0k3n").start()?;
//! api.store().insert(&mk_pod("shop", "web-0", &[("app", "containerd://0123456789ab")]))?;
//! // ... give `api.url()` and the token to the code under test ...
//! assert_eq!(api.requests().len(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## What it models
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /api/v1/namespaces/{ns}/pods/{name}` | 200 with the Pod; 404 with `Status` `reason: NotFound`, `message: pods "{name}" not found`, `details: {name, kind}` |
//! | `GET /api/v1/namespaces/{ns}/pods` | 200 `PodList` (empty for an unknown namespace, as the real server does) |
//! | `GET /api/v1/pods` | 200 `PodList` of every namespace |
//! | any request without `Authorization: Bearer <token>` (when a token is set) | 401 `Status` `reason: Unauthorized` |
//! | an unknown path or resource | 404 `Status` "the server could not find the requested resource" |
//! | a method other than GET | 405 `Status` `reason: MethodNotAllowed` |
//!
//! The routes are generic over namespaced kinds (`/api/{v}/…` and
//! `/apis/{group}/{v}/…`): inserting any namespaced `k8s-openapi` object
//! (a `Lease`, a `PodDisruptionBudget`) makes its get/list routes answer.
//! Objects get `apiVersion`, `kind`, `metadata.resourceVersion` (one counter
//! over the store), `uid` and `creationTimestamp` as the server would set them.
//! Every request is recorded ([`ApiServer::requests`]) without the token.
//!
//! ## What it does NOT model (yet)
//!
//! - **No writes**: no create, update, patch, delete, no subresources
//!   (`pods/eviction`, `pods/resize`, `status`), so no `resourceVersion`
//!   conflicts (409) and no optimistic concurrency.
//! - **No watch**, no `labelSelector`/`fieldSelector`, no pagination
//!   (`limit`/`continue`): those query parameters are refused with a 400
//!   `Status` rather than silently ignored.
//! - **No admission** (webhooks, defaulting, validation): objects are served
//!   exactly as seeded.
//! - **No RBAC** beyond one bearer token: every authenticated request may read
//!   everything; no 403s, no impersonation, no client certificates.
//! - No cluster-scoped kinds (nodes, namespaces as objects), no discovery
//!   (`/api`, `/apis`, `/openapi`), no `/healthz`/`/readyz`/`/version`.
//! - No protobuf, no HTTP/2, no `Table` output, no rate limiting (429),
//!   no API priority and fairness.
//!
//! Growing it (evictions, leases, watch) means adding routes in `routes.rs`
//! and keeping the list above true.

pub mod cluster;
pub mod datadog;
pub mod metrics_server;
pub mod prometheus;
pub mod redis;
pub mod registry;
mod routes;
mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncWrite};

pub use routes::{status_body, RecordedRequest};
pub use store::{ResourceKey, Store, StoreError};

/// The token [`ApiServer::start`] requires.
pub const DEFAULT_TOKEN: &str = "nemutator-testkit-token";

/// Options for an [`ApiServer`].
#[derive(Debug, Clone)]
pub struct ApiServerBuilder {
    token: Option<String>,
    tls: bool,
    store: Store,
}

impl ApiServerBuilder {
    /// Requires `Authorization: Bearer <token>` (the default is
    /// [`DEFAULT_TOKEN`]).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Accepts requests without a token.
    pub fn no_auth(mut self) -> Self {
        self.token = None;
        self
    }

    /// Serves HTTPS with a fresh self-signed certificate for `127.0.0.1` and
    /// `localhost` (see [`ApiServer::ca_pem`]).
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Serves this store (e.g. one shared by two servers).
    pub fn store(mut self, store: Store) -> Self {
        self.store = store;
        self
    }

    /// Binds `127.0.0.1:0` and serves from a thread of its own until the
    /// server is dropped. Works from sync and async tests alike.
    pub fn start(self) -> std::io::Result<ApiServer> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tls, ca_pem) = if self.tls {
            let (config, pem) = tls_config().map_err(std::io::Error::other)?;
            (
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
                Some(pem),
            )
        } else {
            (None, None)
        };
        let url = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });
        let shared = Arc::new(Shared {
            store: self.store.clone(),
            token: self.token.clone(),
            log: Mutex::new(Vec::new()),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let serving = shared.clone();
        let thread = std::thread::Builder::new()
            .name("testkit-kube-api".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        () = accept_loop(listener, tls, serving) => {}
                        _ = stop_rx => {}
                    }
                });
            })?;
        Ok(ApiServer {
            addr,
            url,
            ca_pem,
            token: self.token,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

#[derive(Debug)]
struct Shared {
    store: Store,
    token: Option<String>,
    log: Mutex<Vec<RecordedRequest>>,
}

/// A running Kubernetes API double; stops when dropped.
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    url: String,
    ca_pem: Option<String>,
    token: Option<String>,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// Options: token, TLS, store.
    pub fn builder() -> ApiServerBuilder {
        ApiServerBuilder {
            token: Some(DEFAULT_TOKEN.to_owned()),
            tls: false,
            store: Store::new(),
        }
    }

    /// Plain HTTP, requiring [`DEFAULT_TOKEN`].
    pub fn start() -> std::io::Result<ApiServer> {
        Self::builder().start()
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token required, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The server certificate (PEM) to trust, for an HTTPS server.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The objects served.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The requests received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tls_config() -> Result<(rustls::ServerConfig, String), String> {
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let generated = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![generated.cert.der().clone()], key)
        .map_err(|e| e.to_string())?;
    Ok((config, generated.cert.pem()))
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let shared = shared.clone();
        match tls.clone() {
            Some(acceptor) => {
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        serve_connection(stream, shared).await;
                    }
                });
            }
            None => {
                tokio::spawn(serve_connection(tcp, shared));
            }
        }
    }
}

async fn serve_connection<S>(io: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(&shared, &req)) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

fn answer<B>(shared: &Shared, req: &Request<B>) -> Response<Full<Bytes>> {
    let auth = req.headers().get(http::header::AUTHORIZATION);
    let resp = routes::handle(
        &shared.store,
        shared.token.as_deref(),
        req.method(),
        req.uri().path(),
        req.uri().query(),
        auth,
    );
    let entry = RecordedRequest {
        method: req.method().to_string(),
        path: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        bearer: auth
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer ")),
        status: resp.status().as_u16(),
    };
    if let Ok(mut log) = shared.log.lock() {
        log.push(entry);
    }
    resp
}

/// A running Pod in `namespace` with one container per `(name, containerID)`
/// (e.g. `("app", "containerd://3f7a…")`), in both `spec.containers` and
/// `status.containerStatuses`.
pub fn mk_pod(namespace: &str, name: &str, containers: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: containers
                .iter()
                .map(|(c, _)| Container {
                    name: (*c).to_owned(),
                    image: Some("registry.example/app:1".to_owned()),
                    ..Default::default()
                })
                .collect(),
            node_name: Some("node-1".to_owned()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".to_owned()),
            container_statuses: Some(
                containers
                    .iter()
                    .map(|(c, id)| ContainerStatus {
                        name: (*c).to_owned(),
                        container_id: Some((*id).to_owned()),
                        ready: true,
                        image: "registry.example/app:1".to_owned(),
                        image_id: String::new(),
                        restart_count: 0,
                        started: Some(true),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
    }
}
