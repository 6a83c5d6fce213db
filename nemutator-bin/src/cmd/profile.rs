//! `nemutator profile`: a flamegraph of a process or a pod's container.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::ValueEnum;
use nemutator_core::k8s::{Client as KubeClient, ClientOptions, K8sError};
use nemutator_core::profile::{parse_pod_ref, OutputFormat, ProfileRequest, ProfileTarget};
use nemutator_core::units::HumanDuration;
use nemutator_ebpf::container::Discovery;
use nemutator_ebpf::pod::pod_target;
use nemutator_ebpf::{profile_to_output, profiler_for, Backend};

use crate::cli::Global;

/// Which profiler backend to use.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BackendArg {
    /// eBPF, falling back to perf_event_open when BPF cannot run (and saying so).
    Auto,
    /// Only the eBPF perf-event sampler.
    Bpf,
    /// Only perf_event_open callchain sampling.
    Perf,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Auto => Backend::Auto,
            BackendArg::Bpf => Backend::Bpf,
            BackendArg::Perf => Backend::Perf,
        }
    }
}

/// How to reach the Kubernetes API (for pod lookups): as kubectl does
/// (KUBECONFIG, ~/.kube/config, else the pod's service account), or the
/// kubeconfig or API URL given.
#[derive(Debug, Clone, clap::Args)]
pub struct KubeArgs {
    /// Kubeconfig file (default: KUBECONFIG, ~/.kube/config, else in-cluster).
    #[arg(
        long,
        env = "NEMUTATOR_KUBECONFIG",
        value_name = "FILE",
        conflicts_with = "kube_api"
    )]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(
        long,
        env = "NEMUTATOR_KUBE_CONTEXT",
        value_name = "NAME",
        conflicts_with = "kube_api"
    )]
    pub kube_context: Option<String>,
    /// Kubernetes API URL, bypassing kubeconfig and service account.
    #[arg(long, env = "NEMUTATOR_KUBE_API", value_name = "URL")]
    pub kube_api: Option<String>,
    /// File holding the bearer token for --kube-api (re-read on every request).
    #[arg(
        long,
        env = "NEMUTATOR_KUBE_TOKEN_FILE",
        value_name = "FILE",
        requires = "kube_api"
    )]
    pub kube_token_file: Option<PathBuf>,
    /// CA bundle (PEM) that signed the API server's certificate, for an https --kube-api.
    #[arg(
        long,
        env = "NEMUTATOR_KUBE_CA",
        value_name = "FILE",
        requires = "kube_api"
    )]
    pub kube_ca: Option<PathBuf>,
}

impl KubeArgs {
    /// The client these flags describe.
    pub async fn client(&self) -> Result<KubeClient, K8sError> {
        ClientOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.kube_context.clone(),
            api_url: self.kube_api.clone(),
            token_file: self.kube_token_file.clone(),
            ca_file: self.kube_ca.clone(),
            ..ClientOptions::default()
        }
        .client()
        .await
    }
}

/// Where containers are looked for on this host.
pub fn discovery(cgroup_root: Option<&PathBuf>) -> Discovery {
    let host = Discovery::host();
    match cgroup_root {
        Some(root) => host.with_cgroup2_root(root),
        None => host,
    }
}

#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// Host PID of the process to profile (all its threads).
    #[arg(
        long,
        env = "NEMUTATOR_PROFILE_PID",
        conflicts_with = "pod",
        required_unless_present = "pod"
    )]
    pub pid: Option<u32>,
    /// The pod to profile, as NAMESPACE/NAME; its container must run on this node.
    #[arg(long, env = "NEMUTATOR_PROFILE_POD", value_name = "NS/NAME")]
    pub pod: Option<String>,
    /// The container of --pod (default: the first in the pod's status).
    #[arg(
        long,
        short = 'c',
        env = "NEMUTATOR_PROFILE_CONTAINER",
        requires = "pod"
    )]
    pub container: Option<String>,
    /// How long to sample.
    #[arg(
        long,
        short = 'd',
        env = "NEMUTATOR_PROFILE_DURATION",
        default_value = "10s"
    )]
    pub duration: HumanDuration,
    /// Samples per second of CPU time (99 costs the target about 0.15%).
    #[arg(
        long,
        short = 'F',
        env = "NEMUTATOR_PROFILE_FREQUENCY",
        default_value_t = 99,
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    pub frequency: u32,
    /// Output file: `.svg` for an interactive flamegraph, `.folded` (or `.txt`)
    /// for folded stacks.
    #[arg(
        long,
        short = 'o',
        env = "NEMUTATOR_PROFILE_OUTPUT",
        default_value = "flame.svg"
    )]
    pub output: PathBuf,
    /// Profiler backend.
    #[arg(long, env = "NEMUTATOR_PROFILE_BACKEND", value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// The host's cgroup v2 mount (default: found in /proc/self/mounts).
    #[arg(long, env = "NEMUTATOR_CGROUP_ROOT", value_name = "DIR")]
    pub cgroup_root: Option<PathBuf>,
    #[command(flatten)]
    pub kube: KubeArgs,
}

pub async fn run(_global: &Global, args: ProfileArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    if args.duration.0.is_zero() {
        anyhow::bail!("--duration must be at least 1s");
    }
    let (target, title) = match (args.pid, &args.pod) {
        (Some(pid), _) => (ProfileTarget::Pid(pid), format!("pid {pid}")),
        (None, Some(pod)) => {
            let (ns, name) = parse_pod_ref(pod)?;
            let kube = args.kube.client().await?;
            let found = pod_target(
                &kube,
                &discovery(args.cgroup_root.as_ref()),
                &ns,
                &name,
                args.container.as_deref(),
            )
            .await?;
            (
                found.target,
                format!("pod {ns}/{name} container {}", found.container),
            )
        }
        (None, None) => anyhow::bail!("give --pid PID or --pod NS/NAME"),
    };
    let request = ProfileRequest {
        target,
        duration: args.duration.0,
        frequency_hz: args.frequency,
    };
    let profiler = profiler_for(args.backend.into());
    let format = OutputFormat::from_path(&args.output);
    let (profile, text) = tokio::task::spawn_blocking(move || {
        let profile = profiler.profile(&request)?;
        let text = profile_to_output(&profile, format, &title);
        Ok::<_, nemutator_core::profile::ProfileError>((profile, text))
    })
    .await
    .context("profiler task")??;
    std::fs::write(&args.output, text)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let hint = if profile.samples == 0 {
        " (the target did not run on a CPU while it was sampled)"
    } else {
        ""
    };
    println!(
        "{}: {} samples{hint}, {} lost, backend {}, {:.1}s",
        args.output.display(),
        profile.samples,
        profile.lost,
        profile.backend,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
