//! Profiling: the [`Profiler`] trait, its request and result types, and the
//! wire format of the agent's `POST /api/v1/profiles`.
//!
//! The backends (eBPF perf-event sampler, `perf_event_open` fallback) live in
//! `nemutator-ebpf`; this module holds what callers and backends share:
//!
//! * [`ProfileRequest`] / [`ProfileTarget`] / [`Profile`] / [`Frame`] /
//!   [`ProfileError`] and the blocking [`Profiler`] trait;
//! * [`OutputFormat`]: flamegraph SVG or folded stacks;
//! * [`ProfileSpec`]: the JSON body a client sends to an agent, checked into a
//!   [`ValidSpec`] by [`ProfileSpec::validate`];
//! * [`container_id_for`]: which container of a Pod to profile.
//!
//! ```
//! use nemutator_core::profile::{ProfileSpec, SpecTarget};
//!
//! let spec: ProfileSpec = serde_json::from_str(
//!     r#"{"pod":"shop/web-0","container":"app","duration":"5s","frequency":49}"#,
//! )?;
//! let valid = spec.validate()?;
//! assert!(matches!(valid.target, SpecTarget::Pod { ref name, .. } if name == "web-0"));
//! assert_eq!(valid.duration.as_secs(), 5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use crate::units::HumanDuration;

/// What to profile, for how long and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRequest {
    /// The processes to sample.
    pub target: ProfileTarget,
    /// How long to sample. Sampling stops earlier when every target process
    /// has exited.
    pub duration: Duration,
    /// Samples per second of CPU time of each target thread (software CPU
    /// clock), e.g. 99.
    pub frequency_hz: u32,
}

/// The processes a profile covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileTarget {
    /// One process (all its threads), by host PID.
    Pid(u32),
    /// Every process in a cgroup directory and its descendants, e.g.
    /// `/sys/fs/cgroup/kubepods.slice/.../cri-containerd-<id>.scope` (cgroup
    /// v2) or a directory of a v1 hierarchy.
    Cgroup(PathBuf),
    /// Several processes, by host PID (e.g. all the processes of a container).
    Pids(Vec<u32>),
}

/// One stack frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frame {
    /// The function name; `module+0xoffset` when the address lies in a known
    /// mapping without a symbol for it; `[unknown]` when nothing is known.
    pub name: String,
    /// Whether the frame is in the kernel.
    pub kernel: bool,
}

impl Frame {
    /// A user-space frame.
    pub fn user(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kernel: false,
        }
    }

    /// A kernel frame.
    pub fn kernel(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kernel: true,
        }
    }
}

/// The result of a profile: distinct stacks and how many samples hit each.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Profile {
    /// Distinct stacks, each ordered from the outermost caller (root) to the
    /// sampled function (leaf); user frames first, then kernel frames. A
    /// stack is never empty: a sample without any usable frame is one
    /// `[unknown]` frame.
    pub stacks: Vec<(Vec<Frame>, u64)>,
    /// The backend that took the samples, e.g. `bpf` or
    /// `perf_event_open (fallback)`.
    pub backend: &'static str,
    /// Samples counted (the sum of the stack counts).
    pub samples: u64,
    /// Samples the kernel or the BPF program could not record.
    pub lost: u64,
}

/// Why a profile could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The target process does not exist.
    #[error("no such process: {0}")]
    NoSuchProcess(u32),
    /// The caller lacks the privileges to sample other processes.
    #[error("permission denied: needs CAP_BPF and CAP_PERFMON, or root")]
    PermissionDenied,
    /// The kernel exposes no BTF, which the BPF backend requires.
    #[error("kernel has no BTF ({0} is missing): the eBPF profiler needs CONFIG_DEBUG_INFO_BTF")]
    NoBtf(PathBuf),
    /// The target contains no process (empty PID list, empty cgroup).
    #[error("nothing to profile: {0}")]
    EmptyTarget(String),
    /// The request itself is invalid (zero duration or frequency, ...).
    #[error("invalid profile request: {0}")]
    InvalidRequest(String),
    /// This kernel or build cannot do what the backend needs.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Loading or attaching the BPF program failed.
    #[error("BPF program failed: {0}")]
    Bpf(String),
    /// An I/O or system call failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ProfileError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// A way of sampling the stacks of running processes.
///
/// Blocking: it sleeps for the request's duration. Async callers run it in
/// `tokio::task::spawn_blocking`.
pub trait Profiler: Send + Sync + Debug {
    /// Samples the target for `req.duration` and returns the symbolised stacks.
    fn profile(&self, req: &ProfileRequest) -> Result<Profile, ProfileError>;
    /// A short name of the backend, e.g. `bpf`.
    fn name(&self) -> &'static str;
}

/// How a profile is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// An interactive flamegraph SVG.
    #[default]
    Svg,
    /// Folded stacks (`a;b;c 42` lines), the input of most flamegraph tools.
    Folded,
}

impl OutputFormat {
    /// The format implied by an output file name: `.folded`/`.txt` is
    /// [`Folded`](Self::Folded), anything else [`Svg`](Self::Svg).
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("folded") | Some("txt") => Self::Folded,
            _ => Self::Svg,
        }
    }

    /// The HTTP `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Svg => "image/svg+xml",
            Self::Folded => "text/plain; charset=utf-8",
        }
    }
}

/// Longest profile an agent takes for one request.
pub const MAX_AGENT_DURATION: Duration = Duration::from_secs(60);
/// Frequencies an agent accepts, in Hz.
pub const AGENT_FREQUENCIES: std::ops::RangeInclusive<u32> = 1..=1000;

/// The JSON body of `POST /api/v1/profiles` on an agent: exactly one of
/// `pod` (`"namespace/name"`) or `pid`; `container` only with `pod`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// `namespace/name` of a pod on the agent's node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// A host PID on the agent's node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The container of the pod (default: the first in its status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// How long to sample, e.g. `10s` (default 10s, at most 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Samples per second, 1 to 1000 (default 99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency: Option<u32>,
    /// `svg` (default) or `folded`.
    #[serde(default)]
    pub format: OutputFormat,
}

/// Which processes a [`ValidSpec`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecTarget {
    /// A pod's container, to be looked up.
    Pod {
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        name: String,
        /// The container name, or `None` for the first one.
        container: Option<String>,
    },
    /// A host process.
    Pid(u32),
}

impl std::fmt::Display for SpecTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpecTarget::Pod {
                namespace,
                name,
                container: Some(c),
            } => write!(f, "pod {namespace}/{name} container {c}"),
            SpecTarget::Pod {
                namespace, name, ..
            } => write!(f, "pod {namespace}/{name}"),
            SpecTarget::Pid(pid) => write!(f, "pid {pid}"),
        }
    }
}

/// A checked [`ProfileSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSpec {
    /// What to profile.
    pub target: SpecTarget,
    /// How long.
    pub duration: Duration,
    /// How often, in Hz.
    pub frequency_hz: u32,
    /// The rendering.
    pub format: OutputFormat,
}

/// Why a [`ProfileSpec`] or a pod reference is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Neither or both of `pod` and `pid`.
    #[error("give exactly one of \"pod\" (namespace/name) or \"pid\"")]
    Target,
    /// `container` without `pod`.
    #[error("\"container\" needs \"pod\"")]
    ContainerWithoutPod,
    /// Not `namespace/name` with valid Kubernetes names.
    #[error("invalid pod {0:?}: expected namespace/name")]
    PodRef(String),
    /// Not a valid container name.
    #[error("invalid container name {0:?}")]
    Container(String),
    /// Not a duration, zero, or too long.
    #[error("invalid duration {0:?}: expected 1s to {max}s, e.g. \"10s\"", max = MAX_AGENT_DURATION.as_secs())]
    Duration(String),
    /// Outside [`AGENT_FREQUENCIES`].
    #[error("invalid frequency {0}: expected 1 to 1000 Hz")]
    Frequency(u32),
}

impl ProfileSpec {
    /// Checks the spec against the agent's limits ([`MAX_AGENT_DURATION`],
    /// [`AGENT_FREQUENCIES`]) and fills in the defaults.
    pub fn validate(&self) -> Result<ValidSpec, SpecError> {
        let target = match (&self.pod, self.pid) {
            (Some(pod), None) => {
                let (namespace, name) = parse_pod_ref(pod)?;
                let container = match &self.container {
                    Some(c) if !crate::k8s::is_dns_label(c) => {
                        return Err(SpecError::Container(c.clone()))
                    }
                    c => c.clone(),
                };
                SpecTarget::Pod {
                    namespace,
                    name,
                    container,
                }
            }
            (None, Some(pid)) if self.container.is_none() => SpecTarget::Pid(pid),
            (None, Some(_)) => return Err(SpecError::ContainerWithoutPod),
            _ => return Err(SpecError::Target),
        };
        let duration = match &self.duration {
            None => Duration::from_secs(10),
            Some(text) => text
                .parse::<HumanDuration>()
                .ok()
                .map(|d| d.0)
                .filter(|d| !d.is_zero() && *d <= MAX_AGENT_DURATION)
                .ok_or_else(|| SpecError::Duration(text.clone()))?,
        };
        let frequency_hz = self.frequency.unwrap_or(99);
        if !AGENT_FREQUENCIES.contains(&frequency_hz) {
            return Err(SpecError::Frequency(frequency_hz));
        }
        Ok(ValidSpec {
            target,
            duration,
            frequency_hz,
            format: self.format,
        })
    }
}

/// Splits `namespace/name`, checking both are valid Kubernetes names (so they
/// are safe in an API path).
pub fn parse_pod_ref(text: &str) -> Result<(String, String), SpecError> {
    let bad = || SpecError::PodRef(text.to_owned());
    let (ns, name) = text.split_once('/').ok_or_else(bad)?;
    if crate::k8s::is_dns_label(ns) && crate::k8s::is_dns_subdomain(name) {
        Ok((ns.to_owned(), name.to_owned()))
    } else {
        Err(bad())
    }
}

/// Why a pod's container cannot be profiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerError {
    /// The pod has no container of that name (in its status).
    #[error("pod {pod} has no container {container:?}")]
    NoSuchContainer {
        /// `namespace/name`.
        pod: String,
        /// The requested container.
        container: String,
    },
    /// The pod reports no containers (not scheduled or not started yet).
    #[error("pod {0} has no running containers")]
    NoContainers(String),
    /// The container has no ID yet (waiting to start).
    #[error("container {container:?} of pod {pod} has not started (no container ID)")]
    NotStarted {
        /// `namespace/name`.
        pod: String,
        /// The container.
        container: String,
    },
}

/// The CRI container ID (`containerd://…`, `cri-o://…`) of the named
/// container of `pod`, or of its first container; with the container's name.
pub fn container_id_for(
    pod: &Pod,
    container: Option<&str>,
) -> Result<(String, String), ContainerError> {
    let pod_name = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    let status = match container {
        Some(c) => statuses.iter().find(|s| s.name == c).ok_or_else(|| {
            ContainerError::NoSuchContainer {
                pod: pod_name.clone(),
                container: c.to_owned(),
            }
        })?,
        None => statuses
            .first()
            .ok_or_else(|| ContainerError::NoContainers(pod_name.clone()))?,
    };
    match status.container_id.as_deref() {
        Some(id) if !id.is_empty() => Ok((status.name.clone(), id.to_owned())),
        _ => Err(ContainerError::NotStarted {
            pod: pod_name,
            container: status.name.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn mk_pod(containers: &[(&str, Option<&str>)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some("shop".into()),
                name: Some("web-0".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(
                    containers
                        .iter()
                        .map(|(name, id)| ContainerStatus {
                            name: (*name).into(),
                            container_id: id.map(str::to_owned),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn mk_spec(json: &str) -> Result<ValidSpec, String> {
        let spec: ProfileSpec = serde_json::from_str(json).map_err(|e| e.to_string())?;
        spec.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn output_format_follows_the_extension() {
        assert_eq!(
            OutputFormat::from_path(Path::new("a.folded")),
            OutputFormat::Folded
        );
        assert_eq!(
            OutputFormat::from_path(Path::new("a.svg")),
            OutputFormat::Svg
        );
        assert_eq!(OutputFormat::from_path(Path::new("a")), OutputFormat::Svg);
        assert_eq!(OutputFormat::Svg.content_type(), "image/svg+xml");
    }

    #[test]
    fn spec_defaults_and_pod_form() {
        let v = mk_spec(r#"{"pod":"shop/web-0"}"#).expect("valid");
        assert_eq!(v.duration, Duration::from_secs(10));
        assert_eq!(v.frequency_hz, 99);
        assert_eq!(v.format, OutputFormat::Svg);
        assert_eq!(v.target.to_string(), "pod shop/web-0");
        let v = mk_spec(r#"{"pid":42,"duration":"60s","frequency":1000,"format":"folded"}"#)
            .expect("valid");
        assert_eq!(v.target, SpecTarget::Pid(42));
        assert_eq!(v.format, OutputFormat::Folded);
    }

    #[test]
    fn spec_rejections_are_one_line() {
        for (json, want) in [
            (r#"{}"#, "exactly one"),
            (r#"{"pod":"a/b","pid":1}"#, "exactly one"),
            (r#"{"pid":1,"container":"c"}"#, "needs \"pod\""),
            (r#"{"pod":"nope"}"#, "namespace/name"),
            (r#"{"pod":"a/../b"}"#, "namespace/name"),
            (r#"{"pod":"../x/y"}"#, "namespace/name"),
            (r#"{"pod":"a/b","container":"A/B"}"#, "container"),
            (r#"{"pid":1,"duration":"61s"}"#, "1s to 60s"),
            (r#"{"pid":1,"duration":"0s"}"#, "1s to 60s"),
            (r#"{"pid":1,"duration":"soon"}"#, "1s to 60s"),
            (r#"{"pid":1,"frequency":0}"#, "1 to 1000"),
            (r#"{"pid":1,"frequency":1001}"#, "1 to 1000"),
            (r#"{"pid":1,"format":"png"}"#, "unknown variant"),
            (r#"{"pid":1,"colour":"red"}"#, "unknown field"),
        ] {
            let err = mk_spec(json).expect_err(json);
            assert!(err.contains(want), "{json}: {err}");
            assert!(!err.contains('\n'), "{json}: {err}");
        }
    }

    #[test]
    fn picks_the_named_or_first_container() {
        let pod = mk_pod(&[
            ("app", Some("containerd://aaa")),
            ("sidecar", Some("containerd://bbb")),
        ]);
        assert_eq!(
            container_id_for(&pod, None),
            Ok(("app".into(), "containerd://aaa".into()))
        );
        assert_eq!(
            container_id_for(&pod, Some("sidecar")),
            Ok(("sidecar".into(), "containerd://bbb".into()))
        );
        let err = container_id_for(&pod, Some("db")).expect_err("missing");
        assert_eq!(err.to_string(), "pod shop/web-0 has no container \"db\"");
    }

    #[test]
    fn pods_without_started_containers_are_errors() {
        let pod = mk_pod(&[("app", None)]);
        assert!(matches!(
            container_id_for(&pod, None),
            Err(ContainerError::NotStarted { .. })
        ));
        let pod = mk_pod(&[("app", Some(""))]);
        assert!(container_id_for(&pod, Some("app")).is_err());
        let pod = mk_pod(&[]);
        assert_eq!(
            container_id_for(&pod, None),
            Err(ContainerError::NoContainers("shop/web-0".into()))
        );
        assert!(container_id_for(&Pod::default(), None).is_err());
    }
}
