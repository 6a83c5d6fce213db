//! The real Redis of the shared-store tests: `redis-server` from Debian,
//! started on loopback by `scripts/redis.sh` (shared by the tests, each with a
//! key prefix of its own, [`TestRedis`]), or by a test itself when it must
//! stop and restart the server ([`OwnRedis`]).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::harness_var;

/// The variable holding the URL of the test Redis.
pub const REDIS_URL_ENV: &str = "NEMUTATOR_TEST_REDIS_URL";

/// The shared test Redis, with a key prefix no other test uses.
#[derive(Clone, Debug)]
pub struct TestRedis {
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
    /// A prefix unique to this test and process.
    pub prefix: String,
}

fn unique(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("test-{test}-{}-{nanos}", std::process::id())
}

impl TestRedis {
    /// The Redis named by `NEMUTATOR_TEST_REDIS_URL`, or `None` (with one
    /// printed line) when there is none and none is required.
    pub fn from_env(test: &str) -> Option<TestRedis> {
        let url = harness_var(test, REDIS_URL_ENV, "a real Redis")?;
        Some(TestRedis {
            url,
            prefix: unique(test),
        })
    }
}

/// A `redis-server` of the test's own on a free loopback port, killed when
/// dropped; [`OwnRedis::stop`] and [`OwnRedis::start`] simulate an outage.
#[derive(Debug)]
pub struct OwnRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnRedis {
    /// Start one where the test harness has Redis (`NEMUTATOR_TEST_REDIS_URL`
    /// set); `None` with one printed line otherwise.
    pub fn launch(test: &str) -> Option<OwnRedis> {
        harness_var(test, REDIS_URL_ENV, "a real Redis")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("a free port: {e}"));
        let dir = std::env::temp_dir().join(unique(test));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut redis = OwnRedis {
            port,
            dir,
            child: None,
        };
        redis.start();
        Some(redis)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Start the server (again, on the same port, empty) and wait until it
    /// accepts connections.
    pub fn start(&mut self) {
        if self.child.is_some() {
            return;
        }
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill the server (its data is lost).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
