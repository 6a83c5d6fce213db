//! Turning a [`ProfileTarget`] into what the backends filter on (tgids,
//! cgroup ids), privilege checks and process liveness.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nemutator_core::profile::{ProfileError, ProfileRequest, ProfileTarget};

/// `statfs.f_type` of a cgroup v2 mount.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// Capability numbers from `<linux/capability.h>`.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;
/// Bounds the directory walk of a cgroup tree.
const MAX_CGROUP_DIRS: usize = 1024;

/// A target resolved against the live system.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResolvedTarget {
    /// Processes (thread-group ids) known at the start.
    pub tgids: BTreeSet<u32>,
    /// Set for [`ProfileTarget::Cgroup`].
    pub cgroup: Option<CgroupTarget>,
}

/// A cgroup directory to profile.
#[derive(Debug, Clone)]
pub(crate) struct CgroupTarget {
    /// The directory as given.
    pub dir: PathBuf,
    /// Whether it lies on a cgroup v2 mount (ids usable in BPF and perf).
    pub v2: bool,
    /// Cgroup v2 ids (inode numbers) of the directory and its descendants.
    pub ids: Vec<u64>,
}

/// Checks the request's numbers.
pub(crate) fn validate(req: &ProfileRequest) -> Result<(), ProfileError> {
    if req.duration.is_zero() {
        return Err(ProfileError::InvalidRequest("duration must be > 0".into()));
    }
    if req.frequency_hz == 0 {
        return Err(ProfileError::InvalidRequest(
            "frequency must be > 0 Hz".into(),
        ));
    }
    if let Some(max) = max_sample_rate() {
        if u64::from(req.frequency_hz) > max {
            return Err(ProfileError::InvalidRequest(format!(
                "frequency {} Hz is above kernel.perf_event_max_sample_rate ({max})",
                req.frequency_hz
            )));
        }
    }
    Ok(())
}

fn max_sample_rate() -> Option<u64> {
    fs::read_to_string("/proc/sys/kernel/perf_event_max_sample_rate")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Resolves the target against `proc_root` (normally `/proc`).
pub(crate) fn resolve(
    target: &ProfileTarget,
    proc_root: &Path,
) -> Result<ResolvedTarget, ProfileError> {
    match target {
        ProfileTarget::Pid(pid) => {
            let tgid = tgid_of(proc_root, *pid).ok_or(ProfileError::NoSuchProcess(*pid))?;
            Ok(ResolvedTarget {
                tgids: BTreeSet::from([tgid]),
                cgroup: None,
            })
        }
        ProfileTarget::Pids(pids) => {
            let first = *pids
                .first()
                .ok_or_else(|| ProfileError::EmptyTarget("empty PID list".into()))?;
            let tgids: BTreeSet<u32> = pids.iter().filter_map(|p| tgid_of(proc_root, *p)).collect();
            if tgids.is_empty() {
                return Err(ProfileError::NoSuchProcess(first));
            }
            Ok(ResolvedTarget {
                tgids,
                cgroup: None,
            })
        }
        ProfileTarget::Cgroup(dir) => resolve_cgroup(dir),
    }
}

fn resolve_cgroup(dir: &Path) -> Result<ResolvedTarget, ProfileError> {
    let meta =
        fs::metadata(dir).map_err(|e| ProfileError::io(format!("cgroup {}", dir.display()), e))?;
    if !meta.is_dir() {
        return Err(ProfileError::InvalidRequest(format!(
            "cgroup {} is not a directory",
            dir.display()
        )));
    }
    let v2 = is_cgroup2(dir);
    let mut dirs = Vec::new();
    walk_dirs(dir, &mut dirs);
    let mut ids = Vec::new();
    let mut tgids = BTreeSet::new();
    for d in &dirs {
        if let Ok(m) = fs::metadata(d) {
            ids.push(m.ino());
        }
        if let Ok(procs) = fs::read_to_string(d.join("cgroup.procs")) {
            tgids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
    }
    if tgids.is_empty() {
        return Err(ProfileError::EmptyTarget(format!(
            "cgroup {} has no processes",
            dir.display()
        )));
    }
    Ok(ResolvedTarget {
        tgids,
        cgroup: Some(CgroupTarget {
            dir: dir.to_path_buf(),
            v2,
            ids,
        }),
    })
}

/// The directory and its subdirectories, breadth first, bounded.
fn walk_dirs(root: &Path, out: &mut Vec<PathBuf>) {
    out.push(root.to_path_buf());
    let mut i = 0;
    while i < out.len() && out.len() < MAX_CGROUP_DIRS {
        if let Ok(rd) = fs::read_dir(&out[i]) {
            let subdirs: Vec<PathBuf> = rd
                .flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .collect();
            out.extend(subdirs);
        }
        i += 1;
    }
    out.truncate(MAX_CGROUP_DIRS);
}

fn is_cgroup2(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path and `buf` a properly sized,
    // writable statfs struct that outlives the call.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs
    let magic = buf.f_type as i64;
    rc == 0 && magic == CGROUP2_SUPER_MAGIC
}

/// The thread-group id of `pid` (itself for a process, its process for a
/// thread id), or `None` when it does not exist or is a zombie.
pub(crate) fn tgid_of(proc_root: &Path, pid: u32) -> Option<u32> {
    let status = fs::read_to_string(proc_root.join(pid.to_string()).join("status")).ok()?;
    let mut tgid = None;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("State:") {
            if v.trim_start().starts_with('Z') || v.trim_start().starts_with('X') {
                return None;
            }
        } else if let Some(v) = line.strip_prefix("Tgid:") {
            tgid = v.trim().parse().ok();
        }
    }
    tgid
}

/// Whether the process exists and has not exited.
pub(crate) fn alive(proc_root: &Path, pid: u32) -> bool {
    tgid_of(proc_root, pid).is_some()
}

/// Thread ids of a process.
pub(crate) fn threads(proc_root: &Path, tgid: u32) -> Vec<u32> {
    fs::read_dir(proc_root.join(tgid.to_string()).join("task"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Checks that this process may load BPF programs and sample other
/// processes: root, or CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN, which
/// older kernels required).
pub(crate) fn check_bpf_privileges(status_path: &Path) -> Result<(), ProfileError> {
    let status = fs::read_to_string(status_path)
        .map_err(|e| ProfileError::io(format!("reading {}", status_path.display()), e))?;
    if has_bpf_privileges(&status) {
        Ok(())
    } else {
        Err(ProfileError::PermissionDenied)
    }
}

/// Decides from the text of `/proc/self/status` (its `CapEff:` line).
pub(crate) fn has_bpf_privileges(status: &str) -> bool {
    let Some(caps) = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    else {
        return false;
    };
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn mk_status(state: &str, tgid: u32, capeff: &str) -> String {
        format!("Name:\tx\nState:\t{state}\nTgid:\t{tgid}\nPid:\t{tgid}\nCapEff:\t{capeff}\n")
    }

    #[test]
    fn root_and_caps_are_privileged() {
        assert!(has_bpf_privileges(&mk_status("R", 1, "000001ffffffffff")));
        // CAP_BPF | CAP_PERFMON only
        assert!(has_bpf_privileges(&mk_status("R", 1, "000000c000000000")));
        // CAP_SYS_ADMIN only
        assert!(has_bpf_privileges(&mk_status("R", 1, "0000000000200000")));
    }

    #[test]
    fn plain_user_is_not_privileged() {
        assert!(!has_bpf_privileges(&mk_status("R", 1, "0000000000000000")));
        // CAP_BPF without CAP_PERFMON
        assert!(!has_bpf_privileges(&mk_status("R", 1, "0000008000000000")));
        assert!(!has_bpf_privileges("garbage"));
        assert!(!has_bpf_privileges("CapEff:\tzz\n"));
    }

    #[test]
    fn privilege_check_reports_the_needed_caps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("status");
        fs::write(&p, mk_status("S", 7, "0000000000000000")).expect("write");
        let err = check_bpf_privileges(&p).expect_err("must fail");
        assert!(matches!(err, ProfileError::PermissionDenied));
        assert_eq!(
            err.to_string(),
            "permission denied: needs CAP_BPF and CAP_PERFMON, or root"
        );
    }

    #[test]
    fn resolves_pids_on_a_fake_proc() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (pid, state, tgid) in [(10, "R", 10), (11, "S", 10), (12, "Z", 12)] {
            let d = dir.path().join(pid.to_string());
            fs::create_dir_all(&d).expect("mkdir");
            fs::write(d.join("status"), mk_status(state, tgid, "0")).expect("write");
        }
        let r = resolve(&ProfileTarget::Pid(11), dir.path()).expect("thread resolves");
        assert_eq!(r.tgids, BTreeSet::from([10]));
        assert!(matches!(
            resolve(&ProfileTarget::Pid(12), dir.path()),
            Err(ProfileError::NoSuchProcess(12))
        ));
        assert!(matches!(
            resolve(&ProfileTarget::Pid(99), dir.path()),
            Err(ProfileError::NoSuchProcess(99))
        ));
        let r = resolve(&ProfileTarget::Pids(vec![99, 10, 11]), dir.path()).expect("some live");
        assert_eq!(r.tgids, BTreeSet::from([10]));
        assert!(matches!(
            resolve(&ProfileTarget::Pids(vec![98, 99]), dir.path()),
            Err(ProfileError::NoSuchProcess(98))
        ));
        assert!(matches!(
            resolve(&ProfileTarget::Pids(vec![]), dir.path()),
            Err(ProfileError::EmptyTarget(_))
        ));
    }

    #[test]
    fn resolves_a_cgroup_tree_with_nested_dirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cg = dir.path().join("cri-containerd-abc.scope");
        fs::create_dir_all(cg.join("child")).expect("mkdir");
        fs::write(cg.join("cgroup.procs"), "5\n6\n").expect("write");
        fs::write(cg.join("child/cgroup.procs"), "7\n").expect("write");
        let r = resolve(&ProfileTarget::Cgroup(cg.clone()), dir.path()).expect("resolves");
        assert_eq!(r.tgids, BTreeSet::from([5, 6, 7]));
        let c = r.cgroup.expect("cgroup");
        assert_eq!(c.ids.len(), 2);
        assert!(!c.v2, "a tmpfs dir is not cgroup2");

        let empty = dir.path().join("empty");
        fs::create_dir_all(&empty).expect("mkdir");
        assert!(matches!(
            resolve(&ProfileTarget::Cgroup(empty), dir.path()),
            Err(ProfileError::EmptyTarget(_))
        ));
        assert!(matches!(
            resolve(&ProfileTarget::Cgroup(dir.path().join("nope")), dir.path()),
            Err(ProfileError::Io { .. })
        ));
    }

    #[test]
    fn rejects_zero_duration_and_frequency() {
        let mk = |d: u64, f: u32| ProfileRequest {
            target: ProfileTarget::Pid(1),
            duration: Duration::from_millis(d),
            frequency_hz: f,
        };
        assert!(validate(&mk(0, 99)).is_err());
        assert!(validate(&mk(10, 0)).is_err());
        assert!(validate(&mk(10, 99)).is_ok());
    }
}
