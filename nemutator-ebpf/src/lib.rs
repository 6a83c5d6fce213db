//! Profiler backends for nemutator.
//!
//! - [`BpfProfiler`]: a perf-event BPF program (`bpf/profile.bpf.c`, shipped
//!   compiled as `bpf/profile.bpf.o`) samples user and kernel stacks on the
//!   software CPU clock and aggregates them in the kernel.
//! - [`PerfEventProfiler`]: `perf_event_open` callchain sampling, for hosts
//!   where the BPF program cannot load.
//! - [`default_profiler`]: BPF, falling back to `perf_event_open` (and saying
//!   so in [`Profile::backend`] and a warning).
//! - [`folded`] and [`flamegraph_svg`] render a [`Profile`];
//!   [`find_container_pids`] and [`cgroup_dir_for`] find a container's
//!   processes from its CRI ID; [`pod::pod_target`] goes from a pod (through
//!   the Kubernetes API) to what to profile.
//! - [`agent`]: the per-node agent's HTTP routes (`POST /api/v1/profiles`,
//!   `/healthz`, `/metrics`) as a tower service.
//!
//! The contract ([`Profiler`], [`ProfileRequest`], [`Profile`], ...) lives in
//! `nemutator_core::profile` and is re-exported here.
//!
//! Building needs only a Rust toolchain: the crate embeds the shipped BPF
//! object, and recompiles it with clang only when `NEMUTATOR_BPF_REBUILD=1` is
//! set (see `build.rs`). It builds for Linux targets only.
//!
//! ```no_run
//! use std::time::Duration;
//! use nemutator_ebpf::{default_profiler, profile_to_output, OutputFormat, ProfileRequest, ProfileTarget};
//!
//! let req = ProfileRequest {
//!     target: ProfileTarget::Pid(1234),
//!     duration: Duration::from_secs(10),
//!     frequency_hz: 99,
//! };
//! let profile = default_profiler().profile(&req)?;
//! let svg = profile_to_output(&profile, OutputFormat::Svg, "pid 1234");
//! # Ok::<(), nemutator_ebpf::ProfileError>(())
//! ```

// `unsafe` is needed (and only used) for the raw system-call side of
// profiling: perf_event_open, mmap of the perf ring buffer and its atomic
// head/tail, ioctl, statfs. Every block carries a SAFETY comment. The rest
// of the workspace forbids unsafe code.
#![allow(unsafe_code)]

pub mod agent;
mod bpf;
pub mod container;
mod output;
mod perf;
mod perf_sys;
pub mod pod;
mod symbolize;
mod target;

pub use bpf::BpfProfiler;
pub use container::{
    cgroup_dir_for, find_container_pids, parse_container_id, Discovery, DiscoveryError,
};
pub use nemutator_core::profile::{
    Frame, OutputFormat, Profile, ProfileError, ProfileRequest, ProfileTarget, Profiler,
};
pub use output::{flamegraph_svg, folded};
pub use perf::PerfEventProfiler;

/// Tries the BPF backend and falls back to `perf_event_open` when the BPF
/// program cannot be used (no BTF, load or attach failure, missing
/// CAP_BPF); errors about the request itself (missing process, bad
/// numbers) are returned as they are.
#[derive(Debug, Clone, Default)]
pub struct AutoProfiler {
    bpf: BpfProfiler,
    perf: PerfEventProfiler,
}

impl AutoProfiler {
    /// BPF first, `perf_event_open` as the fallback.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses a configured BPF backend (e.g. another BTF path).
    pub fn with_bpf(mut self, bpf: BpfProfiler) -> Self {
        self.bpf = bpf;
        self
    }
}

impl Profiler for AutoProfiler {
    fn profile(&self, req: &ProfileRequest) -> Result<Profile, ProfileError> {
        match self.bpf.profile(req) {
            Ok(p) => Ok(p),
            Err(
                e @ (ProfileError::NoBtf(_)
                | ProfileError::Bpf(_)
                | ProfileError::Unsupported(_)
                | ProfileError::PermissionDenied),
            ) => {
                tracing::warn!(
                    error = %e,
                    "the BPF profiler cannot run here; falling back to perf_event_open sampling"
                );
                self.perf.clone().into_fallback().profile(req)
            }
            Err(e) => Err(e),
        }
    }

    fn name(&self) -> &'static str {
        "auto"
    }
}

/// The profiler the `nemutator` binary uses: BPF with automatic fallback to
/// `perf_event_open`.
pub fn default_profiler() -> Box<dyn Profiler> {
    Box::new(AutoProfiler::new())
}

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// BPF, falling back to `perf_event_open` when BPF cannot run.
    #[default]
    Auto,
    /// Only the BPF backend.
    Bpf,
    /// Only `perf_event_open`.
    Perf,
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Backend::Auto),
            "bpf" => Ok(Backend::Bpf),
            "perf" => Ok(Backend::Perf),
            other => Err(format!(
                "unknown backend {other:?}: expected auto, bpf or perf"
            )),
        }
    }
}

/// The profiler for `backend`.
pub fn profiler_for(backend: Backend) -> Box<dyn Profiler> {
    match backend {
        Backend::Auto => default_profiler(),
        Backend::Bpf => Box::new(BpfProfiler::new()),
        Backend::Perf => Box::new(PerfEventProfiler::new()),
    }
}

/// Renders a profile as SVG (with `title`) or folded stacks.
pub fn profile_to_output(profile: &Profile, format: OutputFormat, title: &str) -> String {
    match format {
        OutputFormat::Svg => flamegraph_svg(profile, title),
        OutputFormat::Folded => folded(profile),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_parse_by_name() {
        assert_eq!("auto".parse(), Ok(Backend::Auto));
        assert_eq!("bpf".parse(), Ok(Backend::Bpf));
        assert_eq!("perf".parse(), Ok(Backend::Perf));
        assert!("ebpf".parse::<Backend>().is_err());
        assert_eq!(profiler_for(Backend::Perf).name(), "perf_event_open");
        assert_eq!(profiler_for(Backend::Bpf).name(), "bpf");
        assert_eq!(profiler_for(Backend::Auto).name(), "auto");
    }

    #[test]
    fn profile_to_output_dispatches() {
        let p = Profile {
            stacks: vec![(vec![Frame::user("f")], 1)],
            backend: "t",
            samples: 1,
            lost: 0,
        };
        assert_eq!(profile_to_output(&p, OutputFormat::Folded, "x"), "f 1\n");
        assert!(profile_to_output(&p, OutputFormat::Svg, "x").contains("<svg"));
    }
}
