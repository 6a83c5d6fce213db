//! A stand-in for metrics-server behind the real API server's aggregation
//! layer: an HTTPS server on loopback that serves `metrics.k8s.io/v1beta1`
//! `PodMetrics` the test sets, registered with an `APIService` so that
//! clients reach it through kube-apiserver (`/apis/metrics.k8s.io/...`),
//! exactly as they reach metrics-server in a cluster.
//!
//! What is real: kube-apiserver's aggregator (discovery, the availability
//! check, proxying with the caller's identity in `X-Remote-User`), TLS
//! verified against the `caBundle` for the Service's DNS name. What is
//! simulated: the Service is `type: ExternalName` with `externalName:
//! localhost` (no kubelet or kube-proxy runs, and Endpoints may not name a
//! loopback address), the server does not authenticate the aggregator (it
//! records `X-Remote-User` instead), and the usage and its `timestamp` are
//! what the test sets, not what a kubelet measured.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::cluster::TestCluster;

/// The Service the `APIService` points at.
pub const SERVICE: (&str, &str) = ("kube-system", "nemutator-test-metrics");

/// One pod's metrics: namespace, pod, and per container (name, cpu,
/// memory) in Kubernetes quantity notation.
pub type PodUsage = (String, String, Vec<(String, String, String)>);

#[derive(Debug, Default)]
struct State {
    pods: Vec<PodUsage>,
    /// Unix seconds of the `timestamp` served.
    now: i64,
    /// `(path, X-Remote-User)` of every request.
    log: Vec<(String, String)>,
}

/// The server; stopped when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    ca_pem: String,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl MetricsServer {
    /// Start on a free loopback port.
    pub fn start() -> std::io::Result<MetricsServer> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (name, ns) = (SERVICE.1, SERVICE.0);
        let names = vec![
            format!("{name}.{ns}.svc"),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ];
        let generated = rcgen::generate_simple_self_signed(names).map_err(std::io::Error::other)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            generated.signing_key.serialize_der(),
        ));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(vec![generated.cert.der().clone()], key)
            .map_err(std::io::Error::other)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let state = Arc::new(Mutex::new(State::default()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let serving = state.clone();
        let thread = std::thread::Builder::new()
            .name("testkit-metrics".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        () = accept_loop(listener, acceptor, serving) => {}
                        _ = stop_rx => {}
                    }
                });
            })?;
        Ok(MetricsServer {
            addr,
            ca_pem: generated.cert.pem(),
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Serve these pods' metrics from now on.
    pub fn set_pods(&self, pods: Vec<PodUsage>) {
        lock(&self.state).pods = pods;
    }

    /// The `timestamp` of the metrics served (unix seconds).
    pub fn set_time(&self, unix: i64) {
        lock(&self.state).now = unix;
    }

    /// `(path, X-Remote-User)` of the requests so far.
    pub fn requests(&self) -> Vec<(String, String)> {
        lock(&self.state).log.clone()
    }

    /// Register it with the API server as `v1beta1.metrics.k8s.io` and wait
    /// until the aggregator reports it available.
    pub async fn register(&self, cluster: &TestCluster) -> Result<(), String> {
        let (ns, name) = SERVICE;
        let port = self.addr.port();
        let ca = base64(self.ca_pem.as_bytes());
        let yaml = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{ name: {name}, namespace: {ns} }}\n\
             spec: {{ type: ExternalName, externalName: localhost, ports: [{{ name: https, port: {port} }}] }}\n\
             ---\n\
             apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {{ name: v1beta1.metrics.k8s.io }}\n\
             spec: {{ group: metrics.k8s.io, version: v1beta1, groupPriorityMinimum: 100, versionPriority: 100,\n\
             \x20 insecureSkipTLSVerify: false, caBundle: {ca}, service: {{ name: {name}, namespace: {ns}, port: {port} }} }}\n"
        );
        cluster.apply_yaml(&yaml).await?;
        let api: kube::Api<kube::api::DynamicObject> = kube::Api::all_with(
            cluster.client.clone(),
            &kube::api::ApiResource {
                group: "apiregistration.k8s.io".into(),
                version: "v1".into(),
                api_version: "apiregistration.k8s.io/v1".into(),
                kind: "APIService".into(),
                plural: "apiservices".into(),
            },
        );
        let available = crate::cluster::eventually(std::time::Duration::from_secs(60), || async {
            let o = api.get("v1beta1.metrics.k8s.io").await.ok()?;
            let conditions = o.data.get("status")?.get("conditions")?.as_array()?.clone();
            let ok = conditions.iter().any(|c| {
                c["type"] == "Available" && c["status"] == "True" && c.get("message").is_some()
            });
            // The aggregator proxies to this port now (a rerun re-registers).
            let ours =
                o.data.get("spec")?.get("service")?.get("port")?.as_u64()? == u64::from(port);
            (ok && ours).then_some(())
        })
        .await;
        available.ok_or_else(|| "the APIService never became Available".to_string())
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<Mutex<State>>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let (acceptor, state) = (acceptor.clone(), state.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&state, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn rfc3339(unix: i64) -> String {
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn answer<B>(state: &Mutex<State>, req: &Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let user = req
        .headers()
        .get("x-remote-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut st = lock(state);
    st.log.push((path.clone(), user));
    let prefix = "/apis/metrics.k8s.io/v1beta1";
    let namespace = path
        .strip_prefix(prefix)
        .and_then(|p| p.strip_prefix("/namespaces/"))
        .and_then(|p| p.strip_suffix("/pods"));
    let body = if path == prefix {
        serde_json::json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "metrics.k8s.io/v1beta1",
            "resources": [{"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]}]
        })
    } else if path == format!("{prefix}/pods") || namespace.is_some() {
        let stamp = rfc3339(st.now);
        let items: Vec<_> = st
            .pods
            .iter()
            .filter(|(ns, _, _)| namespace.is_none_or(|n| n == ns))
            .map(|(ns, pod, containers)| {
                serde_json::json!({
                    "metadata": {"name": pod, "namespace": ns},
                    "timestamp": stamp, "window": "30s",
                    "containers": containers.iter().map(|(name, cpu, memory)| serde_json::json!({
                        "name": name, "usage": {"cpu": cpu, "memory": memory}
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items})
    } else {
        let mut r = Response::new(Full::new(Bytes::from_static(b"{}")));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    };
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_and_base64() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_764_547_200), "2025-12-01T00:00:00Z");
        assert_eq!(super::base64(b"ab"), "YWI=");
        assert_eq!(super::base64(b"abc"), "YWJj");
    }
}
