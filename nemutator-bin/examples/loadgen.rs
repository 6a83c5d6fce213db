//! Open-loop HTTPS load generator for `scripts/bench-https.sh`: POSTs a body
//! at a fixed rate over a pool of keep-alive connections and reports latency
//! percentiles at that rate.
//!
//! wrk is closed-loop: each connection waits for an answer before sending
//! again, so it cannot hold a rate, and its pacing hook has 1 ms steps. This
//! tool releases requests on a schedule instead, whether or not earlier ones
//! were answered: every `--batch-us` (200 µs) a pacing thread releases the
//! requests that have come due, and they queue for the first free
//! connection. A request's latency runs from its release to the end of its
//! response body, so time spent waiting for a connection counts: a server that
//! falls behind shows it in the percentiles instead of lowering the rate.
//!
//! Connections run on one thread, as `wrk -t1` does; the pacing thread sleeps
//! between batches. Certificates are not verified (loopback benchmark servers
//! with self-signed certificates).
//!
//! ```text
//! cargo run --release -p nemutator-bin --example loadgen -- \
//!   --url https://127.0.0.1:8443/mutate --body examples/admission-review.json \
//!   --rate 30000 --connections 16 --duration 15 --warmup 2
//! ```
//!
//! Prints one line: `RESULT target_rps=… rps=… requests=… p50_us=… p90_us=…
//! p99_us=… max_us=… errors=… non2xx=… unsent=… loadgen_cpu_us_per_req=…`.
//!
//! `--latency-log FILE` also writes every measured request as a line
//! `RELEASED_US LATENCY_US CONNECTION` (release time from the start of the
//! measurement, in release order), to see when the slow requests came and on
//! which connections (docs/PERFORMANCE.md).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Parser;
use nemutator_core::metrics::quantile;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug, Parser)]
struct Args {
    /// `https://HOST:PORT/PATH` (HOST an IP address).
    #[arg(long)]
    url: String,
    /// File to POST.
    #[arg(long)]
    body: PathBuf,
    /// Requests per second to release.
    #[arg(long)]
    rate: f64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
    /// Seconds at the rate before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Microseconds between two releases of requests.
    #[arg(long, default_value_t = 200)]
    batch_us: u64,
    /// Write each measured request's release time, latency and connection
    /// here.
    #[arg(long)]
    latency_log: Option<PathBuf>,
}

/// Accepts any server certificate (loopback benchmarks only); signatures are
/// still checked, so the TLS work is the same as with verification.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Released requests not yet sent (their release instants), shared by the
/// ticker and the connections on the one thread.
#[derive(Default)]
struct Queue {
    due: RefCell<VecDeque<Instant>>,
    closed: Cell<bool>,
    ready: Notify,
}

impl Queue {
    async fn next(&self) -> Option<Instant> {
        loop {
            if let Some(t) = self.due.borrow_mut().pop_front() {
                return Some(t);
            }
            if self.closed.get() {
                return None;
            }
            self.ready.notified().await;
        }
    }
}

#[derive(Default)]
struct Tally {
    /// Per measured request: release time (µs from the start of the
    /// measurement), latency (µs), connection.
    log: Vec<(u64, u32, usize)>,
    errors: u64,
    non2xx: u64,
}

fn parse_url(url: &str) -> anyhow::Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("https://")
        .context("the URL must start with https://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let addr = authority
        .parse()
        .with_context(|| format!("{authority:?} is not IP:PORT"))?;
    Ok((addr, path))
}

type Stream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(addr: SocketAddr, tls: &tokio_rustls::TlsConnector) -> anyhow::Result<Stream> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost")?;
    Ok(tls.connect(name, tcp).await?)
}

/// Send the prepared `request` and read one response (HTTP/1.1 with
/// `Content-Length`, as wrk does; no chunked bodies). Returns the status.
async fn exchange(stream: &mut Stream, request: &[u8], buf: &mut Vec<u8>) -> anyhow::Result<u16> {
    stream.write_all(request).await?;
    stream.flush().await?;
    buf.clear();
    let (head_len, body_len, status) = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])?;
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse::<u16>().ok())
                .context("no status code")?;
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .context("no Content-Length")?;
            break (end + 4, length, status);
        }
    };
    while buf.len() < head_len + body_len {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(status)
}

/// One keep-alive connection (number `id`): takes released requests until
/// the queue closes; reconnects after an error.
async fn connection(
    id: usize,
    first: Stream,
    addr: SocketAddr,
    request: Rc<[u8]>,
    tls: tokio_rustls::TlsConnector,
    queue: Rc<Queue>,
    measure_from: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut stream = Some(first);
    let mut buf = Vec::with_capacity(8192);
    while let Some(released) = queue.next().await {
        let s = match stream.as_mut() {
            Some(s) => s,
            None => match connect(addr, &tls).await {
                Ok(s) => stream.insert(s),
                Err(_) => {
                    tally.errors += 1;
                    continue;
                }
            },
        };
        let result = exchange(s, &request, &mut buf).await;
        let done = Instant::now();
        match result {
            Err(_) => {
                tally.errors += 1;
                stream = None;
            }
            Ok(status) => {
                if released >= measure_from {
                    let us = u32::try_from(done.duration_since(released).as_micros())
                        .unwrap_or(u32::MAX);
                    let at = released.duration_since(measure_from).as_micros();
                    tally
                        .log
                        .push((u64::try_from(at).unwrap_or(u64::MAX), us, id));
                    if !(200..300).contains(&status) {
                        tally.non2xx += 1;
                    }
                }
            }
        }
    }
    tally
}

/// This process's CPU time so far (user + system), in microseconds, from
/// `/proc/self/stat` (0 where that is not readable).
fn own_cpu_us() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 11 and 12 here;
    // Linux reports them in 1/100 s.
    (ticks(11) + ticks(12)) * 10_000
}

async fn run(args: Args) -> anyhow::Result<()> {
    if !(args.rate > 0.0 && args.duration > 0.0 && args.warmup >= 0.0 && args.connections > 0) {
        bail!("--rate, --duration and --connections must be positive");
    }
    let (addr, path) = parse_url(&args.url)?;
    let body =
        std::fs::read(&args.body).with_context(|| format!("reading {}", args.body.display()))?;
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let request: Rc<[u8]> = Rc::from(request);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
    // Check the target answers before starting the clock.
    let mut probe = connect(addr, &tls).await?;
    let status = exchange(&mut probe, &request, &mut Vec::new()).await?;
    anyhow::ensure!(
        (200..300).contains(&status),
        "{} answered {status}",
        args.url
    );
    drop(probe);
    // Connect everything before the clock starts: handshakes are not measured.
    let mut streams = Vec::new();
    for _ in 0..args.connections {
        streams.push(connect(addr, &tls).await?);
    }

    let queue = Rc::new(Queue::default());
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let mut workers = Vec::new();
    for (id, stream) in streams.into_iter().enumerate() {
        workers.push(tokio::task::spawn_local(connection(
            id,
            stream,
            addr,
            request.clone(),
            tls.clone(),
            queue.clone(),
            measure_from,
        )));
    }

    // Release `rate` requests per second until `end`, in small batches. A
    // thread paces them, as tokio's timers tick in whole milliseconds; the
    // batches are handed over a channel and queued here.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let (rate, batch) = (args.rate, Duration::from_micros(args.batch_us));
    let (std_start, std_end) = (start.into_std(), end.into_std());
    let pacer = std::thread::spawn(move || {
        let mut released: u64 = 0;
        loop {
            std::thread::sleep(batch);
            let now = std::time::Instant::now();
            if now >= std_end {
                return released;
            }
            let due = (now.duration_since(std_start).as_secs_f64() * rate) as u64;
            if due > released && tx.send(due - released).is_err() {
                return released;
            }
            released = due;
        }
    });
    while let Some(n) = rx.recv().await {
        let now = Instant::now();
        let mut q = queue.due.borrow_mut();
        q.extend(std::iter::repeat_n(now, n as usize));
        drop(q);
        // Wake one idle connection per request (not all of them).
        for _ in 0..n.min(args.connections as u64) {
            queue.ready.notify_one();
        }
    }
    let released = pacer.join().unwrap_or(0);
    // Whatever was released but not sent by now is reported, not waited for.
    let unsent = queue.due.borrow().len();
    queue.due.borrow_mut().clear();
    queue.closed.set(true);
    queue.ready.notify_waiters();
    let mut all = Tally::default();
    for w in workers {
        let t = w.await?;
        all.log.extend(t.log);
        all.errors += t.errors;
        all.non2xx += t.non2xx;
    }
    if let Some(path) = &args.latency_log {
        all.log.sort_unstable();
        let mut text = String::with_capacity(all.log.len() * 20);
        for (at, us, id) in &all.log {
            text.push_str(&format!("{at} {us} {id}\n"));
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let n = all.log.len();
    let max = all.log.iter().map(|&(_, us, _)| us).max().unwrap_or(0);
    // Percentiles as the recommender computes them (interpolated, PromQL-style).
    let mut us: Vec<f64> = all.log.iter().map(|&(_, us, _)| f64::from(us)).collect();
    let mut pct = |q: f64| quantile(&mut us, q).unwrap_or(0.0).round() as u64;
    let (p50, p90, p99) = (pct(0.5), pct(0.9), pct(0.99));
    let cpu_us = own_cpu_us();
    println!(
        "RESULT target_rps={:.0} rps={:.1} requests={n} p50_us={} p90_us={} p99_us={} max_us={} errors={} non2xx={} unsent={unsent} loadgen_cpu_us_per_req={:.1}",
        args.rate,
        n as f64 / args.duration,
        p50,
        p90,
        p99,
        max,
        all.errors,
        all.non2xx,
        cpu_us as f64 / (released.max(1) as f64),
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&rt, run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
