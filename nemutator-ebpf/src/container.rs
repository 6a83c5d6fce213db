//! From a CRI container ID (as in a pod's `status.containerStatuses[].containerID`)
//! to the container's host processes and cgroup directory.
//!
//! Recognised cgroup path components (cgroup v1 and v2, systemd and cgroupfs
//! drivers): `cri-containerd-<id>.scope`, `crio-<id>.scope`, `crio-<id>`,
//! `docker-<id>.scope`, and a bare `<id>` (e.g.
//! `/kubepods/burstable/pod<uid>/<id>`). CRI-O's `crio-conmon-<id>.scope`
//! (the monitor process, not the container) is not matched.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use nemutator_core::error::Chain;
use nemutator_core::profile::ProfileTarget;

/// Bounds of the cgroup tree walk in [`cgroup_dir_for`].
const MAX_WALK_DIRS: usize = 200_000;
const MAX_WALK_DEPTH: usize = 12;

/// Why a container could not be found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The ID is not `runtime://<hex>` or `<hex>` (12 to 64 hex digits).
    #[error("invalid container ID {0:?}: expected containerd://<id>, cri-o://<id> or <id>")]
    InvalidId(String),
    /// No process (or cgroup) of that container on this node.
    #[error("container {0} not found on this node")]
    NotFound(String),
    /// Reading `/proc` or the cgroup tree failed.
    #[error("reading {path}")]
    Io {
        /// The path that could not be read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The bare hexadecimal ID of `containerd://<id>`, `cri-o://<id>`,
/// `docker://<id>` or `<id>`.
pub fn parse_container_id(container_id: &str) -> Result<&str, DiscoveryError> {
    let id = container_id
        .split_once("://")
        .map_or(container_id, |(_, id)| id)
        .trim();
    let ok = (12..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(id)
    } else {
        Err(DiscoveryError::InvalidId(container_id.to_owned()))
    }
}

/// Whether one component of a cgroup path names the container `id`.
fn component_matches(component: &str, id: &str) -> bool {
    if component == id {
        return true;
    }
    let inner = component.strip_suffix(".scope").unwrap_or(component);
    ["cri-containerd-", "crio-", "docker-"]
        .iter()
        .any(|prefix| inner.strip_prefix(prefix) == Some(id))
}

/// Whether a `/proc/PID/cgroup` text (v1 `N:controllers:/path` or v2
/// `0::/path` lines) places the process in the container `id`.
fn cgroup_file_matches(text: &str, id: &str) -> bool {
    text.lines().any(|line| {
        line.splitn(3, ':')
            .nth(2)
            .is_some_and(|path| path.split('/').any(|c| component_matches(c, id)))
    })
}

/// The host PIDs of the container's processes, found by scanning
/// `proc_root/*/cgroup` (normally `/proc`). Sorted; an error when none.
pub fn find_container_pids(
    container_id: &str,
    proc_root: &Path,
) -> Result<Vec<u32>, DiscoveryError> {
    let id = parse_container_id(container_id)?;
    let rd = fs::read_dir(proc_root).map_err(|source| DiscoveryError::Io {
        path: proc_root.to_path_buf(),
        source,
    })?;
    let mut pids = BTreeSet::new();
    for entry in rd.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes exit while we scan: an unreadable entry is skipped.
        if let Ok(text) = fs::read_to_string(entry.path().join("cgroup")) {
            if cgroup_file_matches(&text, id) {
                pids.insert(pid);
            }
        }
    }
    if pids.is_empty() {
        return Err(DiscoveryError::NotFound(container_id.to_owned()));
    }
    Ok(pids.into_iter().collect())
}

/// The container's cgroup directory under `cgroup_root` (normally
/// `/sys/fs/cgroup`, the cgroup v2 mount, for [`ProfileTarget::Cgroup`]),
/// found by a bounded breadth-first walk. With a v1 hierarchy as root
/// (e.g. `/sys/fs/cgroup/cpu,cpuacct`) it finds the v1 directory.
///
pub fn cgroup_dir_for(container_id: &str, cgroup_root: &Path) -> Result<PathBuf, DiscoveryError> {
    let id = parse_container_id(container_id)?;
    fs::read_dir(cgroup_root).map_err(|source| DiscoveryError::Io {
        path: cgroup_root.to_path_buf(),
        source,
    })?;
    let mut queue = vec![(cgroup_root.to_path_buf(), 0usize)];
    let mut i = 0;
    while i < queue.len() && queue.len() < MAX_WALK_DIRS {
        let (dir, depth) = queue[i].clone();
        i += 1;
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let name = e.file_name();
            if name.to_str().is_some_and(|n| component_matches(n, id)) {
                return Ok(e.path());
            }
            if depth + 1 < MAX_WALK_DEPTH {
                queue.push((e.path(), depth + 1));
            }
        }
    }
    Err(DiscoveryError::NotFound(container_id.to_owned()))
}

/// Where to look for containers on this host: the `/proc` of the host's PID
/// namespace and the host's cgroup v2 mount, if any.
///
/// In a DaemonSet the agent needs `hostPID: true` (so `/proc` shows the
/// node's processes) and, with a cgroup namespace of its own, the host's
/// `/sys/fs/cgroup` mounted somewhere (give it as the cgroup root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// Normally `/proc`.
    pub proc_root: PathBuf,
    /// The cgroup v2 mount (`/sys/fs/cgroup` on a unified host,
    /// `/sys/fs/cgroup/unified` on a hybrid one), or `None` on a v1-only host.
    pub cgroup2_root: Option<PathBuf>,
}

impl Discovery {
    /// This host: `/proc` and the cgroup v2 mount found in `/proc/self/mounts`.
    pub fn host() -> Self {
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        Discovery {
            proc_root: PathBuf::from("/proc"),
            cgroup2_root: cgroup2_mount(&mounts),
        }
    }

    /// Looks for container cgroups under `root` (a cgroup v2 mount) instead.
    pub fn with_cgroup2_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.cgroup2_root = Some(root.into());
        self
    }

    /// What to profile for a CRI container ID: its cgroup v2 directory when
    /// there is one (filtered in the kernel, covers processes started later),
    /// else its current processes (cgroup v1).
    pub fn target_for(&self, container_id: &str) -> Result<ProfileTarget, DiscoveryError> {
        parse_container_id(container_id)?;
        if let Some(root) = &self.cgroup2_root {
            match cgroup_dir_for(container_id, root) {
                Ok(dir) => return Ok(ProfileTarget::Cgroup(dir)),
                Err(e) => {
                    tracing::debug!(error = %Chain(&e), "no cgroup v2 directory; looking for processes")
                }
            }
        }
        find_container_pids(container_id, &self.proc_root).map(ProfileTarget::Pids)
    }
}

/// The first cgroup2 mount point in the text of `/proc/self/mounts`.
pub fn cgroup2_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let (_, path, fstype) = (it.next()?, it.next()?, it.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(path))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTR: &str = "3f7a9c1e2b4d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
    const OTHER: &str = "aa7a9c1e2b4d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
    const POD: &str = "0b7ef2f4-3c1d-4e5f-9a8b-7c6d5e4f3a2b";
    const POD_SD: &str = "0b7ef2f4_3c1d_4e5f_9a8b_7c6d5e4f3a2b";

    /// A fake `/proc` with one `cgroup` file per PID.
    fn mk_proc(entries: &[(u32, String)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (pid, cgroup) in entries {
            let p = dir.path().join(pid.to_string());
            fs::create_dir_all(&p).expect("mkdir");
            fs::write(p.join("cgroup"), cgroup).expect("write");
        }
        fs::create_dir_all(dir.path().join("self")).expect("mkdir");
        fs::write(dir.path().join("meminfo"), "x").expect("write");
        dir
    }

    fn v1(path: &str) -> String {
        format!(
            "12:memory:{path}\n11:cpu,cpuacct:{path}\n3:pids:{path}\n1:name=systemd:{path}\n0::/\n"
        )
    }

    #[test]
    fn parses_runtime_prefixed_ids() {
        assert_eq!(
            parse_container_id(&format!("containerd://{CTR}")).ok(),
            Some(CTR)
        );
        assert_eq!(
            parse_container_id(&format!("cri-o://{CTR}")).ok(),
            Some(CTR)
        );
        assert_eq!(parse_container_id(CTR).ok(), Some(CTR));
        for bad in ["", "containerd://", "containerd://../../etc", "xyz", "abc"] {
            assert!(matches!(
                parse_container_id(bad),
                Err(DiscoveryError::InvalidId(_))
            ));
        }
    }

    #[test]
    fn containerd_cgroup_v1_cgroupfs_driver() {
        let proc = mk_proc(&[
            (100, v1(&format!("/kubepods/burstable/pod{POD}/{CTR}"))),
            (101, v1(&format!("/kubepods/burstable/pod{POD}/{CTR}"))),
            (102, v1(&format!("/kubepods/burstable/pod{POD}/{OTHER}"))),
            (1, v1("/init.scope")),
        ]);
        let pids = find_container_pids(&format!("containerd://{CTR}"), proc.path());
        assert_eq!(pids.ok(), Some(vec![100, 101]));
    }

    #[test]
    fn containerd_cgroup_v2_systemd_driver() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_SD}.slice/cri-containerd-{CTR}.scope"
        );
        let proc = mk_proc(&[
            (200, format!("0::{path}\n")),
            (201, format!("0::{}\n", path.replace(CTR, OTHER))),
        ]);
        let id = format!("containerd://{CTR}");
        assert_eq!(find_container_pids(&id, proc.path()).ok(), Some(vec![200]));

        let cg = tempfile::tempdir().expect("tempdir");
        let dir = cg.path().join(path.trim_start_matches('/'));
        fs::create_dir_all(&dir).expect("mkdir");
        fs::create_dir_all(cg.path().join("system.slice/containerd.service")).expect("mkdir");
        fs::write(cg.path().join("cgroup.procs"), "1\n").expect("write");
        assert_eq!(cgroup_dir_for(&id, cg.path()).ok(), Some(dir));
    }

    #[test]
    fn crio_cgroup_v2_ignores_conmon() {
        let base = format!("/kubepods.slice/kubepods-pod{POD_SD}.slice");
        let proc = mk_proc(&[
            (300, format!("0::{base}/crio-{CTR}.scope\n")),
            (301, format!("0::{base}/crio-conmon-{CTR}.scope\n")),
            (302, format!("0::{base}/crio-{CTR}.scope/container\n")),
        ]);
        let id = format!("cri-o://{CTR}");
        assert_eq!(
            find_container_pids(&id, proc.path()).ok(),
            Some(vec![300, 302])
        );

        let cg = tempfile::tempdir().expect("tempdir");
        let slice = cg.path().join(base.trim_start_matches('/'));
        fs::create_dir_all(slice.join(format!("crio-conmon-{CTR}.scope"))).expect("mkdir");
        fs::create_dir_all(slice.join(format!("crio-{CTR}.scope/container"))).expect("mkdir");
        assert_eq!(
            cgroup_dir_for(&id, cg.path()).ok(),
            Some(slice.join(format!("crio-{CTR}.scope")))
        );
    }

    #[test]
    fn not_found_and_unreadable_roots_are_errors() {
        let proc = mk_proc(&[(400, v1(&format!("/kubepods/pod{POD}/{OTHER}")))]);
        let id = format!("containerd://{CTR}");
        assert!(matches!(
            find_container_pids(&id, proc.path()),
            Err(DiscoveryError::NotFound(_))
        ));
        assert!(matches!(
            cgroup_dir_for(&id, proc.path()),
            Err(DiscoveryError::NotFound(_))
        ));
        assert!(matches!(
            find_container_pids(&id, &proc.path().join("missing")),
            Err(DiscoveryError::Io { .. })
        ));
        // A substring of a longer name is not a match.
        let proc = mk_proc(&[(401, format!("0::/x/cri-containerd-{CTR}ff.scope\n"))]);
        assert!(find_container_pids(&id, proc.path()).is_err());
    }

    #[test]
    fn discovery_prefers_the_v2_cgroup_and_falls_back_to_pids() {
        let path = format!("/kubepods.slice/cri-containerd-{CTR}.scope");
        let proc = mk_proc(&[(500, v1(&format!("/kubepods/pod{POD}/{CTR}")))]);
        let cg = tempfile::tempdir().expect("tempdir");
        let id = format!("containerd://{CTR}");
        let d = Discovery {
            proc_root: proc.path().to_path_buf(),
            cgroup2_root: None,
        };
        assert_eq!(d.target_for(&id).ok(), Some(ProfileTarget::Pids(vec![500])));
        // A v2 root without the container: still the PIDs.
        let d = d.with_cgroup2_root(cg.path());
        assert_eq!(d.target_for(&id).ok(), Some(ProfileTarget::Pids(vec![500])));
        let dir = cg.path().join(path.trim_start_matches('/'));
        fs::create_dir_all(&dir).expect("mkdir");
        assert_eq!(d.target_for(&id).ok(), Some(ProfileTarget::Cgroup(dir)));
        assert!(matches!(
            d.target_for("containerd://zz"),
            Err(DiscoveryError::InvalidId(_))
        ));
        assert!(matches!(
            d.target_for(&format!("containerd://{OTHER}")),
            Err(DiscoveryError::NotFound(_))
        ));
    }

    #[test]
    fn finds_the_cgroup2_mount() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            cgroup2_mount("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n"),
            None
        );
    }
}
