//! Shared helpers for the end-to-end tests: run the real `nemutator` binary and
//! talk to it over HTTPS with a rustls client that trusts only its CA.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

pub const BIN: &str = env!("CARGO_BIN_EXE_nemutator");

/// The workspace root (where `examples/` is).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nemutator-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
    d
}

/// A running server subcommand of the real binary (`webhook`, `agent`).
pub struct Webhook {
    pub child: Child,
    pub addr: SocketAddr,
    /// The CA bundle (PEM) printed at start, when self-signed.
    pub ca_pem: String,
    stderr: mpsc::Receiver<String>,
}

impl Webhook {
    /// Start `nemutator webhook` with extra args; waits until the listen
    /// address is logged.
    pub fn start(args: &[&str]) -> Webhook {
        Self::spawn("webhook", args, &[])
    }

    /// Start `nemutator SUBCOMMAND --listen 127.0.0.1:0 ARGS` with `envs`;
    /// waits until the listen address is logged.
    pub fn spawn(subcommand: &str, args: &[&str], envs: &[(&str, &str)]) -> Webhook {
        Self::spawn_in(&root(), subcommand, args, envs)
    }

    /// [`Webhook::spawn`] with `dir` as the working directory.
    pub fn spawn_in(dir: &Path, subcommand: &str, args: &[&str], envs: &[(&str, &str)]) -> Webhook {
        let mut child = Command::new(BIN)
            .current_dir(dir)
            .arg(subcommand)
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        let (out_tx, out_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("stdout"));
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = out_tx.send(line);
            }
        });
        let (err_tx, err_rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("stderr"));
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = err_tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        let addr = loop {
            let Ok(line) = err_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                panic!("{subcommand} did not log its address; stderr: {seen:?}");
            };
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(listen) = v["fields"]["listen"].as_str() {
                break listen.parse().unwrap_or_else(|e| panic!("{listen}: {e}"));
            }
            seen.push(line);
        };
        let mut ca_pem = String::new();
        while let Ok(line) = out_rx.recv_timeout(Duration::from_millis(200)) {
            if !line.starts_with('#') {
                ca_pem.push_str(&line);
                ca_pem.push('\n');
            }
        }
        Webhook {
            child,
            addr,
            ca_pem,
            stderr: err_rx,
        }
    }

    /// Log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr, &self.ca_pem)
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "webhook did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTPS client trusting one CA.
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
}

pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
    /// The server's leaf certificate.
    pub peer_cert: Vec<u8>,
    pub version: Option<rustls::ProtocolVersion>,
}

impl Client {
    pub fn new(addr: SocketAddr, ca_pem: &str) -> Client {
        Self::with_versions(
            addr,
            ca_pem,
            &[&rustls::version::TLS13, &rustls::version::TLS12],
        )
    }

    pub fn with_versions(
        addr: SocketAddr,
        ca_pem: &str,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots
                .add(cert.unwrap_or_else(|e| panic!("CA bundle: {e}")))
                .unwrap_or_else(|e| panic!("CA bundle: {e}"));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap_or_else(|e| panic!("{e}"))
            .with_root_certificates(roots)
            .with_no_client_auth();
        Client {
            addr,
            config: Arc::new(config),
        }
    }

    pub async fn request(&self, method: &str, path: &str, body: Vec<u8>) -> Result<Reply, String> {
        self.request_with(method, path, &[], body).await
    }

    /// [`Client::request`] with extra request headers.
    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (_, session) = tls.get_ref();
        let peer_cert = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let version = session.protocol_version();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json");
        for (name, value) in headers {
            req = req.header(*name, value.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        read_reply(resp, peer_cert, version).await
    }

    /// POST each of `bodies` to `path` as concurrent streams of one HTTP/2
    /// connection (ALPN `h2`); replies in the order of `bodies`.
    pub async fn h2_posts(&self, path: &str, bodies: Vec<Vec<u8>>) -> Result<Vec<Reply>, String> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err("the server did not negotiate h2".into());
        }
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let streams = bodies.into_iter().map(|body| {
            let mut sender = sender.clone();
            async move {
                let req = hyper::Request::builder()
                    .method("POST")
                    .uri(format!("https://localhost{path}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .map_err(|e| e.to_string())?;
                let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
                read_reply(resp, Vec::new(), None).await
            }
        });
        futures_util::future::join_all(streams)
            .await
            .into_iter()
            .collect()
    }

    /// POST `body` to `path` on one HTTP/2 stream with the `h2` crate, as a
    /// strict client would: the whole body is sent (as flow control allows)
    /// while the response is read, and a stream reset by the server at any
    /// point is an error, even after a complete response (hyper's client
    /// forgives a `RST_STREAM(NO_ERROR)` there; curl 7.x and others do not).
    pub async fn h2_post_strict(&self, path: &str, body: Vec<u8>) -> Result<Reply, String> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (client, conn) = h2::client::handshake(tls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut client = client.ready().await.map_err(|e| e.to_string())?;
        let req = hyper::Request::builder()
            .method("POST")
            .uri(format!("https://localhost{path}"))
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(())
            .map_err(|e| e.to_string())?;
        let (response, mut send) = client
            .send_request(req, body.is_empty())
            .map_err(|e| format!("sending the headers: {e}"))?;
        let upload = async move {
            let mut rest = Bytes::from(body);
            while !rest.is_empty() {
                send.reserve_capacity(rest.len());
                let granted = std::future::poll_fn(|cx| send.poll_capacity(cx))
                    .await
                    .ok_or("the stream closed while sending the body")?
                    .map_err(|e| format!("sending the body: {e}"))?;
                let chunk = rest.split_to(granted.min(rest.len()));
                send.send_data(chunk, rest.is_empty())
                    .map_err(|e| format!("sending the body: {e}"))?;
            }
            Ok::<_, String>(())
        };
        let download = async move {
            let resp = response.await.map_err(|e| format!("response: {e}"))?;
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let mut recv = resp.into_body();
            let mut body = Vec::new();
            while let Some(chunk) = recv.data().await {
                let chunk = chunk.map_err(|e| format!("response body: {e}"))?;
                let _ = recv.flow_control().release_capacity(chunk.len());
                body.extend_from_slice(&chunk);
            }
            Ok::<_, String>(Reply {
                status,
                content_type,
                body: Bytes::from(body),
                peer_cert: Vec::new(),
                version: None,
            })
        };
        let (sent, reply) = tokio::join!(upload, download);
        let reply = reply?;
        sent.map_err(|e| format!("{e} (after a {} response)", reply.status))?;
        Ok(reply)
    }

    /// Poll `/readyz` until 200.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.request("GET", "/readyz", vec![]).await {
                if r.status == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "webhook never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Status, content type and whole body of a response.
async fn read_reply(
    resp: hyper::Response<hyper::body::Incoming>,
    peer_cert: Vec<u8>,
    version: Option<rustls::ProtocolVersion>,
) -> Result<Reply, String> {
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Reply {
        status,
        content_type,
        body,
        peer_cert,
        version,
    })
}

/// Write a fresh self-signed pair for `localhost` to `dir`; returns the cert PEM.
pub fn write_cert(dir: &Path) -> String {
    let g = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .unwrap_or_else(|e| panic!("{e}"));
    // Write the key first, then the cert, each atomically.
    let key = dir.join("tls.key");
    let cert = dir.join("tls.crt");
    std::fs::write(dir.join("tls.key.tmp"), g.signing_key.serialize_pem())
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("tls.crt.tmp"), g.cert.pem()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(dir.join("tls.key.tmp"), key).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(dir.join("tls.crt.tmp"), cert).unwrap_or_else(|e| panic!("{e}"));
    g.cert.pem()
}

/// Run the CLI in the workspace root; returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    run_cli_in(&root(), args, stdin)
}

/// Run the CLI in `dir`; returns (exit code, stdout, stderr).
pub fn run_cli_in(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(input);
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Panics unless the PEM certificate `leaf` chains to the PEM `ca` and is
/// valid for `name` now.
pub fn verify_chain(ca: &[u8], leaf: &[u8], name: &str) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        roots
            .add(cert.unwrap_or_else(|e| panic!("CA: {e}")))
            .unwrap_or_else(|e| panic!("CA: {e}"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
    let leaf = CertificateDer::from_pem_slice(leaf).unwrap_or_else(|e| panic!("leaf: {e}"));
    let server = ServerName::try_from(name.to_owned()).unwrap_or_else(|e| panic!("{e}"));
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        &leaf,
        &[],
        &server,
        &[],
        rustls::pki_types::UnixTime::now(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
}

/// The controller's ServiceAccount and RBAC of `nemutator install -n ns`
/// created on the test API server (the cluster-wide objects renamed per
/// run, so that runs and other tests do not meet); returns the name of the
/// ClusterRole.
pub async fn install_controller_rbac(client: &kube::Client, ns: &str) -> String {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    use kube::api::{Api, PostParams};
    use nemutator_core::install::{self, InstallOptions, Tls, CONTROLLER_NAME};
    let options = InstallOptions::new(ns).unwrap_or_else(|e| panic!("{e}"));
    let m = install::manifests(&options, &Tls::CertManager);
    let unique = format!("{CONTROLLER_NAME}-{ns}");
    let pp = PostParams::default();
    let mut cluster_role = m.controller_cluster_role;
    cluster_role.metadata.name = Some(unique.clone());
    let mut binding = m.controller_cluster_role_binding;
    binding.metadata.name = Some(unique.clone());
    binding.role_ref.name = unique.clone();
    fn fail<T>(e: kube::Error) -> T {
        panic!("{e}")
    }
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&pp, &m.controller_service_account)
        .await
        .unwrap_or_else(fail);
    Api::<ClusterRole>::all(client.clone())
        .create(&pp, &cluster_role)
        .await
        .unwrap_or_else(fail);
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&pp, &binding)
        .await
        .unwrap_or_else(fail);
    Api::<Role>::namespaced(client.clone(), ns)
        .create(&pp, &m.controller_role)
        .await
        .unwrap_or_else(fail);
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&pp, &m.controller_role_binding)
        .await
        .unwrap_or_else(fail);
    unique
}
