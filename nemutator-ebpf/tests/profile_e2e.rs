//! End-to-end tests: profile real programs with both backends.
//!
//! Need root (or CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN), gcc and go:
//! `apt-get install -y gcc libc6-dev golang-go` (`scripts/deps.sh`).
//! The tests that sample take turns (a lock), so `cargo test --workspace`
//! runs them one at a time without `--test-threads=1`.
#![allow(unsafe_code)] // geteuid(2)

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use nemutator_ebpf::{
    folded, AutoProfiler, BpfProfiler, PerfEventProfiler, Profile, ProfileError, ProfileRequest,
    ProfileTarget, Profiler,
};

include!("programs/build.rs.inc");

const C_HOT: &str = "nemutator_hot_spin_c";
const C_SYSCALL: &str = "nemutator_hot_syscall_c";
const GO_HOT: &str = "main.nemutatorHotSpinGo";
/// A PID above the kernel's maximum (2^22), so it never exists.
const MISSING_PID: u32 = 0x7fff_fff0;

fn programs() -> &'static (PathBuf, PathBuf) {
    static P: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    P.get_or_init(|| build_test_programs(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("programs")))
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the end-to-end profiling tests need root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN)"
    );
}

/// The profiling tests take turns: each burns a core or more, and on a
/// two-core machine several at once starve the programs they sample.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running test program, killed and reaped on drop.
struct Running(Child);

impl Running {
    fn start(bin: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning the test program");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the ready line");
        assert_eq!(line.trim(), "ready", "test program did not start");
        Running(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn req(target: ProfileTarget, millis: u64) -> ProfileRequest {
    ProfileRequest {
        target,
        duration: Duration::from_millis(millis),
        frequency_hz: 199,
    }
}

/// Share of samples whose stack contains a frame named `name`.
fn share_with(profile: &Profile, name: &str) -> f64 {
    let hits: u64 = profile
        .stacks
        .iter()
        .filter(|(frames, _)| frames.iter().any(|f| f.name == name))
        .map(|(_, c)| c)
        .sum();
    hits as f64 / profile.samples.max(1) as f64
}

fn assert_dominates(profile: &Profile, name: &str) {
    let share = share_with(profile, name);
    assert!(
        profile.samples >= 20,
        "too few samples ({}) from {}",
        profile.samples,
        profile.backend
    );
    assert!(
        share > 0.5,
        "{name} in only {:.0}% of {} samples ({}); folded:\n{}",
        share * 100.0,
        profile.samples,
        profile.backend,
        folded(profile)
    );
    let line = folded(profile)
        .lines()
        .find(|l| l.contains(name))
        .map(str::to_owned);
    assert!(line.is_some(), "{name} missing from the folded output");
}

/// Root first: the Go runtime's `runtime.main` is below the hot function.
/// (`main.main` itself may be missing: a Go leaf function without a frame
/// hides its caller from frame-pointer unwinding.)
fn assert_go_stack_order(p: &Profile) {
    let text = folded(p);
    assert!(
        text.lines().any(|l| l
            .find("runtime.main;")
            .zip(l.find(GO_HOT))
            .is_some_and(|(a, b)| a < b)),
        "no runtime.main;..;{GO_HOT} stack:\n{text}"
    );
}

fn bpf() -> BpfProfiler {
    BpfProfiler::new()
}

fn perf() -> PerfEventProfiler {
    PerfEventProfiler::new()
}

#[test]
fn bpf_finds_the_c_hot_function() {
    require_root();
    let _turn = serial();
    let prog = Running::start(&programs().0, &[]);
    let p = bpf()
        .profile(&req(ProfileTarget::Pid(prog.pid()), 1500))
        .expect("bpf profile");
    assert_eq!(p.backend, "bpf");
    assert_dominates(&p, C_HOT);
    // Frame order is root first: main calls the hot function.
    assert!(folded(&p).contains(&format!("main;{C_HOT}")));
}

#[test]
fn perf_finds_the_c_hot_function() {
    require_root();
    let _turn = serial();
    let prog = Running::start(&programs().0, &[]);
    let p = perf()
        .profile(&req(ProfileTarget::Pid(prog.pid()), 1500))
        .expect("perf profile");
    assert_eq!(p.backend, "perf_event_open");
    assert_dominates(&p, C_HOT);
    assert!(folded(&p).contains(&format!("main;{C_HOT}")));
}

#[test]
fn bpf_finds_the_go_hot_function() {
    require_root();
    let _turn = serial();
    let prog = Running::start(&programs().1, &[]);
    let p = bpf()
        .profile(&req(ProfileTarget::Pid(prog.pid()), 1500))
        .expect("bpf profile");
    assert_dominates(&p, GO_HOT);
    assert_go_stack_order(&p);
}

#[test]
fn perf_finds_the_go_hot_function() {
    require_root();
    let _turn = serial();
    let prog = Running::start(&programs().1, &[]);
    let p = perf()
        .profile(&req(ProfileTarget::Pid(prog.pid()), 1500))
        .expect("perf profile");
    assert_dominates(&p, GO_HOT);
    assert_go_stack_order(&p);
}

/// Kernel stacks are collected and named from kallsyms, with the `_[k]`
/// suffix in folded output, under the user frames that made the syscall.
#[test]
fn both_backends_symbolise_kernel_frames() {
    require_root();
    let _turn = serial();
    let prog = Running::start(&programs().0, &["0", "sys"]);
    for profiler in [&bpf() as &dyn Profiler, &perf()] {
        let p = profiler
            .profile(&req(ProfileTarget::Pid(prog.pid()), 1500))
            .expect("profile");
        assert_dominates(&p, C_SYSCALL);
        let kernel: u64 = p
            .stacks
            .iter()
            .filter(|(f, _)| {
                f.iter()
                    .any(|f| f.kernel && !f.name.starts_with("[kernel]"))
            })
            .map(|(_, c)| c)
            .sum();
        assert!(
            kernel * 4 > p.samples,
            "{}: only {kernel} of {} samples have named kernel frames",
            p.backend,
            p.samples
        );
        let text = folded(&p);
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("{C_SYSCALL};")) && l.contains("_[k]")),
            "{}: no user-to-kernel stack:\n{text}",
            p.backend
        );
    }
}

/// Several processes at once (a container's PIDs), both programs visible.
#[test]
fn pids_target_covers_every_process() {
    require_root();
    let _turn = serial();
    let c = Running::start(&programs().0, &[]);
    let go = Running::start(&programs().1, &[]);
    // Busy but not a target: must not show up.
    let _outsider = Running::start(&programs().0, &["0", "sys"]);
    let target = ProfileTarget::Pids(vec![c.pid(), go.pid()]);
    for profiler in [&bpf() as &dyn Profiler, &perf()] {
        let p = profiler
            .profile(&req(target.clone(), 1500))
            .expect("profile");
        assert_eq!(
            share_with(&p, C_SYSCALL),
            0.0,
            "{}: sampled a non-target",
            p.backend
        );
        let (sc, sg) = (share_with(&p, C_HOT), share_with(&p, GO_HOT));
        assert!(
            sc > 0.2 && sg > 0.2 && sc + sg > 0.8,
            "{}: C {sc:.2}, Go {sg:.2}",
            p.backend
        );
    }
}

/// A cgroup directory as the target (the container case): the process is
/// moved into a fresh cgroup under the v2 mount (cgroup-id filtering) and,
/// where the host has one, under a v1 hierarchy (filtering on its PIDs).
#[test]
fn cgroup_targets_with_both_backends() {
    require_root();
    let _turn = serial();
    let v2 = cgroup_mount(|fstype, _| fstype == "cgroup2").expect("no cgroup2 mount");
    profile_in_fresh_cgroup(&v2);
    match cgroup_mount(|fstype, opts| fstype == "cgroup" && opts.split(',').any(|o| o == "pids")) {
        Some(v1) => profile_in_fresh_cgroup(&v1),
        None => eprintln!("no cgroup v1 pids hierarchy here: v1 case not exercised"),
    }
}

fn profile_in_fresh_cgroup(root: &Path) {
    let dir = root.join(format!("nemutator-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating a test cgroup");
    let prog = Running::start(&programs().0, &[]);
    std::fs::write(dir.join("cgroup.procs"), prog.pid().to_string()).expect("moving into cgroup");
    // Busy but outside the cgroup: must not show up.
    let outsider = Running::start(&programs().1, &[]);
    let result = std::panic::catch_unwind(|| {
        for profiler in [&bpf() as &dyn Profiler, &perf()] {
            let p = profiler
                .profile(&req(ProfileTarget::Cgroup(dir.clone()), 1500))
                .expect("profile");
            assert_dominates(&p, C_HOT);
            assert_eq!(
                share_with(&p, GO_HOT),
                0.0,
                "{}: sampled a non-member",
                p.backend
            );
        }
    });
    drop(outsider);
    drop(prog);
    // The cgroup can only be removed once empty.
    for _ in 0..50 {
        if std::fs::remove_dir(&dir).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// The first mount point whose (fstype, options) satisfy `want`.
fn cgroup_mount(want: impl Fn(&str, &str) -> bool) -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let (_, path, fstype, opts) = (it.next()?, it.next()?, it.next()?, it.next()?);
        want(fstype, opts).then(|| PathBuf::from(path))
    })
}

/// A program that exits during the profile: sampling stops early and its
/// frames are still named (the ELF files were kept open).
#[test]
fn process_exiting_mid_profile_keeps_its_frames() {
    require_root();
    let _turn = serial();
    for profiler in [&bpf() as &dyn Profiler, &perf()] {
        // ~1 ms a round: about 1 s of work; the profile would last 20 s.
        let mut prog = Running::start(&programs().0, &["1000"]);
        let pid = prog.pid();
        let waiter = std::thread::spawn(move || {
            let _ = prog.0.wait();
            prog
        });
        let p = profiler
            .profile(&req(ProfileTarget::Pid(pid), 20_000))
            .expect("profile");
        drop(waiter.join());
        assert_dominates(&p, C_HOT);
    }
}

#[test]
fn missing_process_is_reported_by_every_backend() {
    let auto = AutoProfiler::new();
    for profiler in [&bpf() as &dyn Profiler, &perf(), &auto] {
        let err = profiler
            .profile(&req(ProfileTarget::Pid(MISSING_PID), 100))
            .expect_err("must fail");
        assert!(matches!(err, ProfileError::NoSuchProcess(MISSING_PID)));
        assert_eq!(err.to_string(), format!("no such process: {MISSING_PID}"));
    }
}

#[test]
fn missing_btf_is_a_clear_error_and_auto_falls_back() {
    require_root();
    let _turn = serial();
    let prog = Running::start(&programs().0, &[]);
    let nope = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-btf");
    let err = bpf()
        .with_btf_path(&nope)
        .profile(&req(ProfileTarget::Pid(prog.pid()), 500))
        .expect_err("must fail");
    assert!(matches!(err, ProfileError::NoBtf(_)));
    assert!(err.to_string().contains("no-such-btf"), "{err}");
    assert!(err.to_string().contains("BTF"), "{err}");

    let auto = AutoProfiler::new().with_bpf(bpf().with_btf_path(&nope));
    let p = auto
        .profile(&req(ProfileTarget::Pid(prog.pid()), 1500))
        .expect("fallback profile");
    assert_eq!(p.backend, "perf_event_open (fallback)");
    assert_dominates(&p, C_HOT);
}

#[test]
fn missing_capabilities_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = dir.path().join("status");
    std::fs::write(&status, "Name:\tx\nCapEff:\t0000000000000000\n").expect("write");
    let err = bpf()
        .with_status_path(&status)
        .profile(&req(ProfileTarget::Pid(std::process::id()), 100))
        .expect_err("must fail");
    assert!(matches!(err, ProfileError::PermissionDenied));
    assert!(err
        .to_string()
        .contains("needs CAP_BPF and CAP_PERFMON, or root"));
}

/// Really unprivileged: this test binary re-runs itself as `nobody` and
/// profiles a root-owned process with every backend.
#[test]
fn unprivileged_user_gets_the_capability_message() {
    require_root();
    let _turn = serial();
    use std::os::unix::process::CommandExt;
    let prog = Running::start(&programs().0, &[]);
    let out = Command::new(std::env::current_exe().expect("current exe"))
        .args(["--ignored", "--exact", "unprivileged_child", "--nocapture"])
        .env("NEMUTATOR_E2E_TARGET_PID", prog.pid().to_string())
        .uid(65534)
        .gid(65534)
        .output()
        .expect("re-running the test binary as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run by `unprivileged_user_gets_the_capability_message` as `nobody`.
#[test]
#[ignore = "helper: run as an unprivileged user by another test"]
fn unprivileged_child() {
    let pid: u32 = std::env::var("NEMUTATOR_E2E_TARGET_PID")
        .expect("NEMUTATOR_E2E_TARGET_PID")
        .parse()
        .expect("a pid");
    // SAFETY: geteuid has no preconditions.
    assert_ne!(unsafe { libc::geteuid() }, 0, "must run unprivileged");
    let auto = AutoProfiler::new();
    for profiler in [&bpf() as &dyn Profiler, &perf(), &auto] {
        let err = profiler
            .profile(&req(ProfileTarget::Pid(pid), 200))
            .expect_err("must fail without privileges");
        assert!(
            err.to_string()
                .contains("needs CAP_BPF and CAP_PERFMON, or root"),
            "{}: {err}",
            profiler.name()
        );
    }
}
