//! The eBPF backend: `bpf/profile.bpf.c`, compiled by clang into the shipped
//! `bpf/profile.bpf.o` (or at build time with `NEMUTATOR_BPF_REBUILD=1`, see
//! `build.rs`), loaded with aya and attached to the software CPU clock of
//! every online CPU.
//!
//! Why aya: it is pure Rust (no libbpf C build, no bindgen), loads a
//! clang-compiled ELF with BTF-defined maps, and its `PerfEvent` program type
//! attaches with a frequency sampling policy. Its 0.14 release builds on the
//! stable toolchain used here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, StackTraceMap};
use aya::programs::perf_event::{
    PerfEvent, PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use aya::{Ebpf, EbpfLoader};

use crate::symbolize::{self, RawProfile, RawStack};
use crate::target::{self, ResolvedTarget};
use nemutator_core::profile::{Profile, ProfileError, ProfileRequest, Profiler};

/// The compiled program, aligned so the ELF parser can read it in place.
/// build.rs names the object: the shipped one, or a fresh build of it.
#[repr(C, align(32))]
struct Aligned<B: ?Sized>(B);
static BPF_OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(env!("NEMUTATOR_BPF_OBJECT")));

const PROGRAM: &str = "nemutator_profile";
/// Indexes of the `stats` map, as in the C program.
const STAT_LOST: u32 = 1;
const STAT_STACK_ERR: u32 = 2;
/// How often liveness of the target is checked during the profile.
const POLL: Duration = Duration::from_millis(100);

/// Samples with a perf-event BPF program: stacks are aggregated in the
/// kernel, so the cost per sample is a map update, not a copy to user space.
///
/// Needs root, or CAP_BPF and CAP_PERFMON, and a kernel with BTF.
#[derive(Debug, Clone)]
pub struct BpfProfiler {
    btf_path: PathBuf,
    proc_root: PathBuf,
    status_path: PathBuf,
}

impl Default for BpfProfiler {
    fn default() -> Self {
        Self::new()
    }
}

impl BpfProfiler {
    /// The backend name in [`Profile::backend`].
    pub const NAME: &'static str = "bpf";

    /// A profiler using the running kernel's BTF and `/proc`.
    pub fn new() -> Self {
        Self {
            btf_path: PathBuf::from("/sys/kernel/btf/vmlinux"),
            proc_root: PathBuf::from("/proc"),
            status_path: PathBuf::from("/proc/self/status"),
        }
    }

    /// Uses another kernel BTF file (normally `/sys/kernel/btf/vmlinux`).
    pub fn with_btf_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.btf_path = path.into();
        self
    }

    /// Reads this process's capabilities from another file than
    /// `/proc/self/status` (for tests of the privilege check).
    pub fn with_status_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.status_path = path.into();
        self
    }
}

impl Profiler for BpfProfiler {
    fn profile(&self, req: &ProfileRequest) -> Result<Profile, ProfileError> {
        target::validate(req)?;
        let resolved = target::resolve(&req.target, &self.proc_root)?;
        target::check_bpf_privileges(&self.status_path)?;
        if !self.btf_path.exists() {
            return Err(ProfileError::NoBtf(self.btf_path.clone()));
        }
        symbolize::sample_and_symbolize(&self.proc_root, &resolved.tgids, Self::NAME, || {
            self.sample(&resolved, req)
        })
    }

    fn name(&self) -> &'static str {
        Self::NAME
    }
}

fn bpf_err(what: &str, e: impl std::error::Error) -> ProfileError {
    // Include the source chain: aya's top-level messages are terse.
    let mut msg = format!("{what}: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    ProfileError::Bpf(msg)
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map, ProfileError> {
    ebpf.take_map(name)
        .ok_or_else(|| ProfileError::Bpf(format!("map {name} missing from the BPF object")))
}

impl BpfProfiler {
    fn sample(
        &self,
        resolved: &ResolvedTarget,
        req: &ProfileRequest,
    ) -> Result<RawProfile, ProfileError> {
        // The program reads no kernel structures, so it needs no CO-RE
        // relocation against the kernel's BTF: skip parsing the multi-MB
        // vmlinux BTF (about a third of a second). Its presence was checked
        // in `profile`: the program's own BTF (map definitions) needs a
        // BTF-enabled kernel to load.
        raise_memlock_limit();
        let mut ebpf = EbpfLoader::new()
            .btf(None)
            .load(&BPF_OBJECT.0)
            .map_err(|e| bpf_err("loading the BPF object", e))?;

        let stacks = StackTraceMap::<MapData>::try_from(take_map(&mut ebpf, "stacks")?)
            .map_err(|e| bpf_err("stacks map", e))?;
        let counts = BpfHashMap::<MapData, [u32; 4], u64>::try_from(take_map(&mut ebpf, "counts")?)
            .map_err(|e| bpf_err("counts map", e))?;
        let stats = PerCpuArray::<MapData, u64>::try_from(take_map(&mut ebpf, "stats")?)
            .map_err(|e| bpf_err("stats map", e))?;
        self.fill_filters(&mut ebpf, resolved)?;

        let prog: &mut PerfEvent = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| ProfileError::Bpf(format!("program {PROGRAM} missing")))?
            .try_into()
            .map_err(|e| bpf_err("program type", e))?;
        prog.load().map_err(|e| bpf_err("loading the program", e))?;
        let cpus = crate::perf::online_cpus()?;
        for cpu in cpus {
            prog.attach(
                PerfEventConfig::Software(SoftwareEvent::CpuClock),
                PerfEventScope::AllProcessesOneCpu { cpu },
                SamplePolicy::Frequency(u64::from(req.frequency_hz)),
                false,
            )
            .map_err(|e| bpf_err(&format!("attaching to CPU {cpu}"), e))?;
        }

        let deadline = Instant::now() + req.duration;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::sleep(POLL.min(deadline - now));
            if resolved.cgroup.is_none()
                && !resolved
                    .tgids
                    .iter()
                    .any(|&p| target::alive(&self.proc_root, p))
            {
                tracing::info!("every target process exited; stopping early");
                break;
            }
        }
        // Dropping the object detaches and unloads the program; the maps
        // taken out above stay readable.
        drop(ebpf);

        let mut raw = RawProfile::default();
        let stat = |i: u32| -> u64 {
            stats
                .get(&i, 0)
                .map(|v| v.iter().copied().sum())
                .unwrap_or(0)
        };
        raw.lost = stat(STAT_LOST);
        let stack_errors = stat(STAT_STACK_ERR);
        if stack_errors > 0 {
            tracing::warn!(
                stack_errors,
                "some stacks could not be stored (stack map full or hash collision); shown as [unknown]"
            );
        }
        let mut cache: HashMap<i32, Vec<u64>> = HashMap::new();
        let mut lookup = |id: u32| -> Vec<u64> {
            let id = id as i32;
            if id < 0 {
                return Vec::new();
            }
            cache
                .entry(id)
                .or_insert_with(|| {
                    stacks
                        .get(&(id as u32), 0)
                        .map(|st| {
                            st.frames()
                                .iter()
                                .map(|f| f.ip)
                                .filter(|&ip| ip != 0)
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .clone()
        };
        for entry in counts.iter() {
            let ([tgid, user_id, kernel_id, _], count) =
                entry.map_err(|e| bpf_err("reading counts", e))?;
            let key = RawStack {
                tgid,
                user: lookup(user_id),
                kernel: lookup(kernel_id),
            };
            *raw.stacks.entry(key).or_default() += count;
        }
        Ok(raw)
    }

    fn fill_filters(&self, ebpf: &mut Ebpf, resolved: &ResolvedTarget) -> Result<(), ProfileError> {
        let cgroup = resolved.cgroup.as_ref().filter(|c| c.v2);
        // cgroup v2: filter on cgroup ids in the kernel (new processes of the
        // container are included); otherwise on the known processes.
        let filter_cgroups = u32::from(cgroup.is_some());
        let filter_tgids = u32::from(cgroup.is_none());
        if let Some(cg) = cgroup {
            let mut ids = BpfHashMap::<&mut MapData, u64, u8>::try_from(
                ebpf.map_mut("target_cgroups")
                    .ok_or_else(|| ProfileError::Bpf("map target_cgroups missing".into()))?,
            )
            .map_err(|e| bpf_err("target_cgroups map", e))?;
            for id in &cg.ids {
                ids.insert(id, 1, 0)
                    .map_err(|e| bpf_err("filling target_cgroups", e))?;
            }
        } else {
            let mut tgids = BpfHashMap::<&mut MapData, u32, u8>::try_from(
                ebpf.map_mut("target_tgids")
                    .ok_or_else(|| ProfileError::Bpf("map target_tgids missing".into()))?,
            )
            .map_err(|e| bpf_err("target_tgids map", e))?;
            for tgid in &resolved.tgids {
                tgids
                    .insert(tgid, 1, 0)
                    .map_err(|e| bpf_err("filling target_tgids", e))?;
            }
        }
        let mut config = Array::<&mut MapData, [u32; 2]>::try_from(
            ebpf.map_mut("config")
                .ok_or_else(|| ProfileError::Bpf("map config missing".into()))?,
        )
        .map_err(|e| bpf_err("config map", e))?;
        config
            .set(0, [filter_tgids, filter_cgroups], 0)
            .map_err(|e| bpf_err("writing config", e))?;
        Ok(())
    }
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK (the maps here take
/// ~20 MiB); lift the limit for this process, best effort. Later kernels
/// charge the memory cgroup and ignore it.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit only reads the struct passed by reference.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot raise RLIMIT_MEMLOCK");
    }
}
