//! Helpers for the profiling end-to-end tests: a CPU-burning test program
//! (built from `nemutator-ebpf/tests/programs/hot_spin.c`), a fresh cgroup
//! v2 directory named like a containerd container, the real `nemutator agent`
//! binary, and an HTTPS client that sends a bearer token.
//!
//! These tests need root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN and a writable
//! cgroup v2 mount) and gcc; they fail rather than skip without them.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::{root, Client, Webhook};

/// The hot function of the test program.
pub const C_HOT: &str = "nemutator_hot_spin_c";

/// Fails unless the tests run as root.
pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        euid, "0",
        "the profiling end-to-end tests need root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN)"
    );
}

/// Profiling tests of one binary take turns: each burns a core, and on a
/// two-core machine several at once starve the programs they sample.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// `hot_spin_c`, compiled once per test binary with frame pointers.
pub fn hot_spin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nemutator-bin-programs");
        std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{e}"));
        let bin = out.join("hot_spin_c");
        let src = root().join("nemutator-ebpf/tests/programs/hot_spin.c");
        let status = Command::new("gcc")
            .args(["-O1", "-fno-omit-frame-pointer", "-o"])
            .arg(&bin)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| panic!("running gcc (apt-get install -y gcc): {e}"));
        assert!(status.success(), "gcc failed on {}", src.display());
        bin
    })
}

/// A running `hot_spin_c`, killed and reaped on drop.
pub struct Hot(Child);

impl Hot {
    /// Starts it and waits for its `ready` line.
    pub fn start() -> Hot {
        let mut child = Command::new(hot_spin())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning hot_spin_c: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("stdout"));
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(line.trim(), "ready");
        Hot(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Hot {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The cgroup v2 mount of this host (`/sys/fs/cgroup` or, on a hybrid
/// host, `/sys/fs/cgroup/unified`).
pub fn cgroup2_mount() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            let (_, path, fstype) = (it.next()?, it.next()?, it.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(path))
        })
        .unwrap_or_else(|| panic!("no cgroup2 mount on this host"))
}

/// A fresh cgroup `…/nemutator-e2e-<pid>/cri-containerd-<id>.scope` under the
/// cgroup v2 mount: what containerd (systemd driver) makes for a container,
/// so `/proc/PID/cgroup` of a process moved in names the container ID.
/// Members are moved back to the root and the directories removed on drop.
pub struct ContainerCgroup {
    pub id: String,
    pub dir: PathBuf,
    parent: PathBuf,
    mount: PathBuf,
}

impl ContainerCgroup {
    pub fn new(tag: &str) -> ContainerCgroup {
        let mount = cgroup2_mount();
        let parent = mount.join(format!("nemutator-e2e-{tag}-{}", std::process::id()));
        // 64 hex digits, like a containerd ID, unique per test and run.
        let tag_hash = tag.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let id = format!("{:016x}{tag_hash:016x}", std::process::id()).repeat(2);
        let dir = parent.join(format!("cri-containerd-{id}.scope"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        ContainerCgroup {
            id,
            dir,
            parent,
            mount,
        }
    }

    /// The pod status' form: `containerd://<id>`.
    pub fn container_id(&self) -> String {
        format!("containerd://{}", self.id)
    }

    pub fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", self.dir.display()));
    }
}

impl Drop for ContainerCgroup {
    fn drop(&mut self) {
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = std::fs::write(self.mount.join("cgroup.procs"), pid);
            }
        }
        for _ in 0..50 {
            let _ = std::fs::remove_dir(&self.dir);
            if std::fs::remove_dir(&self.parent).is_ok() || !self.parent.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Share of the samples whose folded stack contains `name`.
pub fn folded_share(folded: &str, name: &str) -> (f64, u64) {
    let (mut hit, mut total) = (0u64, 0u64);
    for line in folded.lines() {
        let Some((stack, n)) = line.rsplit_once(' ') else {
            continue;
        };
        let n: u64 = n.parse().unwrap_or(0);
        total += n;
        if stack.split(';').any(|f| f == name) {
            hit += n;
        }
    }
    (hit as f64 / total.max(1) as f64, total)
}

/// The largest percentage in the SVG's `<title>name (N samples, P%)</title>`.
pub fn svg_share(svg: &str, name: &str) -> f64 {
    let prefix = format!("<title>{name} (");
    svg.match_indices(&prefix)
        .filter_map(|(i, _)| {
            let rest = &svg[i + prefix.len()..];
            let pct = rest.split(", ").nth(1)?.split('%').next()?;
            pct.parse::<f64>().ok()
        })
        .fold(0.0, f64::max)
        / 100.0
}

/// A running `nemutator agent`.
pub struct Agent(pub Webhook);

impl Agent {
    /// Starts `nemutator agent --listen 127.0.0.1:0 ARGS` with `envs`; waits
    /// for the listen address in its JSON logs.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Agent {
        Agent(Webhook::spawn("agent", args, envs))
    }

    /// Log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.0.logs()
    }

    pub fn client(&self) -> AgentClient {
        AgentClient::new(self.0.addr, &self.0.ca_pem)
    }
}

/// An HTTPS client trusting one CA, sending an optional bearer token (the
/// webhook's test [`Client`] with an `Authorization` header).
#[derive(Clone)]
pub struct AgentClient(Client);

pub struct AgentReply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl AgentClient {
    pub fn new(addr: SocketAddr, ca_pem: &str) -> AgentClient {
        AgentClient(Client::new(addr, ca_pem))
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> AgentReply {
        let auth: Vec<(&str, String)> = token
            .map(|t| ("authorization", format!("Bearer {t}")))
            .into_iter()
            .collect();
        let reply = self
            .0
            .request_with(method, path, &auth, body.as_bytes().to_vec())
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        AgentReply {
            status: reply.status,
            content_type: reply.content_type,
            body: String::from_utf8_lossy(&reply.body).into_owned(),
        }
    }
}
