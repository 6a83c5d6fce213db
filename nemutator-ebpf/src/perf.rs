//! The backend that needs no BPF: `perf_event_open` callchain sampling on
//! the software CPU clock, one event per target thread (threads that start
//! during the profile are picked up), or one per CPU for a cgroup v2 target.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::perf_sys::{SamplingEvent, Scope};
use crate::symbolize::{self, RawProfile, RawStack};
use crate::target::{self, ResolvedTarget};
use nemutator_core::profile::{Profile, ProfileError, ProfileRequest, Profiler};

/// How often the rings are drained and new threads looked for.
const POLL: Duration = Duration::from_millis(50);
/// Ring size per thread / per CPU, in pages.
const THREAD_PAGES: usize = 16;
const CPU_PAGES: usize = 64;
/// Bound on the events one profile opens.
const MAX_EVENTS: usize = 4096;

/// Samples with `perf_event_open(2)`; works where BPF programs cannot load
/// (needs `kernel.perf_event_paranoid` to allow it, or CAP_PERFMON, or root).
#[derive(Debug, Clone)]
pub struct PerfEventProfiler {
    proc_root: PathBuf,
    backend: &'static str,
}

impl Default for PerfEventProfiler {
    fn default() -> Self {
        Self::new()
    }
}

impl PerfEventProfiler {
    /// The backend name in [`Profile::backend`].
    pub const NAME: &'static str = "perf_event_open";
    /// The backend name when chosen because BPF could not load.
    pub const FALLBACK_NAME: &'static str = "perf_event_open (fallback)";

    /// A profiler reading processes from `/proc`.
    pub fn new() -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
            backend: Self::NAME,
        }
    }

    /// Marks the profiles of this instance as taken by the fallback.
    pub(crate) fn into_fallback(mut self) -> Self {
        self.backend = Self::FALLBACK_NAME;
        self
    }
}

impl Profiler for PerfEventProfiler {
    fn profile(&self, req: &ProfileRequest) -> Result<Profile, ProfileError> {
        target::validate(req)?;
        let resolved = target::resolve(&req.target, &self.proc_root)?;
        symbolize::sample_and_symbolize(&self.proc_root, &resolved.tgids, self.backend, || {
            self.sample(&resolved, req)
        })
    }

    fn name(&self) -> &'static str {
        self.backend
    }
}

impl PerfEventProfiler {
    fn sample(
        &self,
        resolved: &ResolvedTarget,
        req: &ProfileRequest,
    ) -> Result<RawProfile, ProfileError> {
        let mut raw = RawProfile::default();
        let mut events: HashMap<(u32, u32), SamplingEvent> = HashMap::new();
        let cgroup = resolved.cgroup.as_ref().filter(|c| c.v2);
        let _cgroup_dir: Option<File>;
        if let Some(cg) = cgroup {
            let dir = File::open(&cg.dir)
                .map_err(|e| ProfileError::io(format!("opening {}", cg.dir.display()), e))?;
            for cpu in online_cpus()? {
                let ev = SamplingEvent::open(
                    Scope::Cgroup {
                        fd: dir.as_raw_fd(),
                        cpu,
                    },
                    req.frequency_hz,
                    CPU_PAGES,
                )
                .map_err(|e| open_error(e, 0))?;
                ev.enable()
                    .map_err(|e| ProfileError::io("enabling perf event", e))?;
                events.insert((0, cpu), ev);
            }
            _cgroup_dir = Some(dir);
        } else {
            _cgroup_dir = None;
            self.open_threads(resolved, req.frequency_hz, &mut events, true)?;
        }

        let deadline = Instant::now() + req.duration;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::sleep(POLL.min(deadline - now));
            drain_all(&mut events, &mut raw);
            if cgroup.is_none() {
                if !resolved
                    .tgids
                    .iter()
                    .any(|&p| target::alive(&self.proc_root, p))
                {
                    tracing::info!("every target process exited; stopping early");
                    break;
                }
                self.open_threads(resolved, req.frequency_hz, &mut events, false)?;
            }
        }
        for ev in events.values() {
            let _ = ev.disable();
        }
        drain_all(&mut events, &mut raw);
        Ok(raw)
    }

    /// Opens events for the threads of the target that have none yet. On
    /// the first call a failure is an error; later, threads that vanish
    /// between listing and opening are skipped.
    fn open_threads(
        &self,
        resolved: &ResolvedTarget,
        freq: u32,
        events: &mut HashMap<(u32, u32), SamplingEvent>,
        first: bool,
    ) -> Result<(), ProfileError> {
        for &tgid in &resolved.tgids {
            for tid in target::threads(&self.proc_root, tgid) {
                if events.contains_key(&(tgid, tid)) || events.len() >= MAX_EVENTS {
                    continue;
                }
                match SamplingEvent::open(Scope::Thread(tid), freq, THREAD_PAGES) {
                    Ok(ev) => {
                        ev.enable()
                            .map_err(|e| ProfileError::io("enabling perf event", e))?;
                        events.insert((tgid, tid), ev);
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) if first || is_permission(&e) => return Err(open_error(e, tid)),
                    Err(e) => tracing::debug!(tid, error = %e, "cannot sample new thread"),
                }
            }
        }
        if first && events.is_empty() {
            let pid = resolved.tgids.iter().next().copied().unwrap_or(0);
            return Err(ProfileError::NoSuchProcess(pid));
        }
        Ok(())
    }
}

fn drain_all(events: &mut HashMap<(u32, u32), SamplingEvent>, raw: &mut RawProfile) {
    for ev in events.values_mut() {
        raw.lost += ev.drain(|s| {
            let key = RawStack {
                tgid: s.pid,
                user: s.user,
                kernel: s.kernel,
            };
            *raw.stacks.entry(key).or_default() += 1;
        });
    }
}

fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
}

fn open_error(e: io::Error, tid: u32) -> ProfileError {
    if is_permission(&e) {
        ProfileError::PermissionDenied
    } else if e.raw_os_error() == Some(libc::ESRCH) {
        ProfileError::NoSuchProcess(tid)
    } else if e.raw_os_error() == Some(libc::ENOENT) || e.raw_os_error() == Some(libc::ENODEV) {
        ProfileError::Unsupported(format!("software CPU clock events: {e}"))
    } else {
        ProfileError::io("perf_event_open", e)
    }
}

/// CPUs listed in `/sys/devices/system/cpu/online` (e.g. `0-3,6`).
pub(crate) fn online_cpus() -> Result<Vec<u32>, ProfileError> {
    let path = Path::new("/sys/devices/system/cpu/online");
    let text = std::fs::read_to_string(path)
        .map_err(|e| ProfileError::io(format!("reading {}", path.display()), e))?;
    parse_cpu_list(&text)
        .ok_or_else(|| ProfileError::Unsupported(format!("cannot parse {}", path.display())))
}

/// Parses a kernel CPU list such as `0-3,6`.
pub(crate) fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 65536 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    (!cpus.is_empty()).then_some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,6\n"), Some(vec![0, 1, 2, 3, 6]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a"), None);
    }

    #[test]
    fn maps_errno_to_errors() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert!(matches!(
            open_error(e(libc::EACCES), 1),
            ProfileError::PermissionDenied
        ));
        assert!(matches!(
            open_error(e(libc::ESRCH), 9),
            ProfileError::NoSuchProcess(9)
        ));
        assert!(matches!(
            open_error(e(libc::ENOENT), 1),
            ProfileError::Unsupported(_)
        ));
    }
}
