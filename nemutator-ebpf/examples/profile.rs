//! A stand-alone `nemutator profile`: profile a process, PIDs, a cgroup or a
//! container on this host and write a flamegraph SVG or folded stacks.
//!
//! ```text
//! cargo run --example profile -- --pid 1234 --duration 10s --frequency 99 --output flame.svg
//! cargo run --example profile -- --container containerd://<id> --output out.folded
//! cargo run --example profile -- --cgroup /sys/fs/cgroup/... --backend perf
//! ```
//! `--backend auto|bpf|perf` (default auto: BPF, falling back to perf).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nemutator_ebpf::{
    cgroup_dir_for, default_profiler, find_container_pids, profile_to_output, BpfProfiler,
    OutputFormat, PerfEventProfiler, ProfileRequest, ProfileTarget, Profiler,
};

struct Args {
    target: ProfileTarget,
    title: String,
    duration: Duration,
    frequency: u32,
    backend: String,
    output: PathBuf,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {s:?} (e.g. 10s, 500ms)");
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().map(Duration::from_millis).map_err(|_| bad());
    }
    let secs = s.strip_suffix('s').unwrap_or(s);
    secs.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0 && *v < 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(bad)
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut target = None;
    let mut title = String::new();
    let mut duration = Duration::from_secs(10);
    let mut frequency = 99;
    let mut backend = "auto".to_owned();
    let mut output = PathBuf::from("flame.svg");
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--pid" => {
                let v = value()?;
                let pid = v.parse().map_err(|_| format!("bad pid {v:?}"))?;
                title = format!("pid {pid}");
                target = Some(ProfileTarget::Pid(pid));
            }
            "--pids" => {
                let v = value()?;
                let pids = v
                    .split(',')
                    .map(|p| p.trim().parse::<u32>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| format!("bad pid list {v:?}"))?;
                title = format!("pids {v}");
                target = Some(ProfileTarget::Pids(pids));
            }
            "--cgroup" => {
                let v = value()?;
                title = format!("cgroup {v}");
                target = Some(ProfileTarget::Cgroup(PathBuf::from(v)));
            }
            "--container" => {
                let id = value()?;
                title = format!("container {id}");
                // cgroup v2 directory when there is one (covers processes
                // started later), else the container's current PIDs.
                target = Some(match cgroup_dir_for(&id, Path::new("/sys/fs/cgroup")) {
                    Ok(dir) => ProfileTarget::Cgroup(dir),
                    Err(_) => ProfileTarget::Pids(
                        find_container_pids(&id, Path::new("/proc")).map_err(|e| e.to_string())?,
                    ),
                });
            }
            "--duration" => duration = parse_duration(&value()?)?,
            "--frequency" => {
                let v = value()?;
                frequency = v.parse().map_err(|_| format!("bad frequency {v:?}"))?;
            }
            "--backend" => backend = value()?,
            "--output" => output = PathBuf::from(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let target = target.ok_or("one of --pid, --pids, --cgroup, --container is required")?;
    Ok(Args {
        target,
        title,
        duration,
        frequency,
        backend,
        output,
    })
}

fn run() -> Result<(), String> {
    let started = Instant::now();
    let args = parse_args()?;
    let profiler: Box<dyn Profiler> = match args.backend.as_str() {
        "auto" => default_profiler(),
        "bpf" => Box::new(BpfProfiler::new()),
        "perf" => Box::new(PerfEventProfiler::new()),
        other => return Err(format!("unknown backend {other:?} (auto, bpf, perf)")),
    };
    let req = ProfileRequest {
        target: args.target,
        duration: args.duration,
        frequency_hz: args.frequency,
    };
    let profile = profiler.profile(&req).map_err(|e| e.to_string())?;
    let format = OutputFormat::from_path(&args.output);
    let text = profile_to_output(&profile, format, &args.title);
    std::fs::write(&args.output, text)
        .map_err(|e| format!("writing {}: {e}", args.output.display()))?;
    eprintln!(
        "{}: {} samples, {} lost, {} stacks, backend {}, {:.2}s from start to file",
        args.output.display(),
        profile.samples,
        profile.lost,
        profile.stacks.len(),
        profile.backend,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
