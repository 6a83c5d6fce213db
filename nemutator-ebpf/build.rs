//! Chooses the BPF object that `src/bpf.rs` embeds.
//!
//! By default it is the compiled object shipped with the crate,
//! `bpf/profile.bpf.o`: building needs nothing but a Rust toolchain.
//!
//! With `NEMUTATOR_BPF_REBUILD=1`, `bpf/profile.bpf.c` is compiled with clang
//! into `$OUT_DIR/profile.bpf.o` and that object is embedded instead (the
//! source tree is not written). `scripts/check-bpf.sh` compares it with the
//! shipped object, and `scripts/check-bpf.sh --update` copies it over the
//! shipped one. Needs Debian's `clang` (the shipped object is built by clang
//! 14 of Debian 12), `libbpf-dev` (for `<bpf/bpf_helpers.h>`) and
//! `linux-libc-dev` (for `<linux/bpf.h>`). Set `CLANG` to use another clang
//! binary.
//!
//! The flags make the object depend on the source and the compiler only:
//! paths in the debug information (the BTF needs `-g`) are mapped to fixed
//! names, so the object is the same whatever directory it is built in.
//!
//! The profiler samples Linux processes: on other targets the build stops
//! here with a message (leave the crate out: nemutator-bin builds without it
//! with `--no-default-features`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SRC: &str = "bpf/profile.bpf.c";
const SHIPPED: &str = "bpf/profile.bpf.o";

fn main() {
    println!("cargo:rerun-if-env-changed=NEMUTATOR_BPF_REBUILD");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" {
        eprintln!(
            "nemutator-ebpf profiles Linux processes and builds only for Linux targets, not \
             {os:?}; leave it out there (nemutator-bin: --no-default-features, without the \
             `profiler` feature)"
        );
        std::process::exit(1);
    }
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let rebuild = env::var("NEMUTATOR_BPF_REBUILD").is_ok_and(|v| !v.is_empty() && v != "0");
    let object = if rebuild {
        println!("cargo:rerun-if-changed={SRC}");
        println!("cargo:rerun-if-env-changed=CLANG");
        let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
        let out = out_dir.join("profile.bpf.o");
        if let Err(e) = compile(&manifest_dir, &out) {
            // A build script reports through its exit status and stderr.
            eprintln!("nemutator-ebpf: {e}");
            std::process::exit(1);
        }
        out
    } else {
        println!("cargo:rerun-if-changed={SHIPPED}");
        manifest_dir.join(SHIPPED)
    };
    println!("cargo:rustc-env=NEMUTATOR_BPF_OBJECT={}", object.display());
}

/// `clang -target bpfel|bpfeb -O2 -g` on [`SRC`], with paths mapped.
fn compile(manifest_dir: &Path, out: &Path) -> Result<(), String> {
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    // <asm/types.h> lives in the multiarch include directory on Debian; the
    // BPF target does not search it by itself.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        "powerpc64" => "powerpc64le-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        other => other,
    };
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("big") => "bpfeb",
        _ => "bpfel",
    };
    let status = Command::new(&clang)
        .current_dir(manifest_dir)
        .args(["-target", target, "-O2", "-g", "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{multiarch}"))
        // The build directory and the architecture's include directory
        // would otherwise be recorded in the debug information.
        .arg(format!("-ffile-prefix-map={}=.", manifest_dir.display()))
        .arg(format!(
            "-ffile-prefix-map=/usr/include/{multiarch}=/usr/include/multiarch"
        ))
        .args(["-c", SRC, "-o"])
        .arg(out)
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!(
            "`{clang} -target {target}` failed on {SRC} ({s}); are the headers installed? \
             apt-get install -y clang libbpf-dev linux-libc-dev"
        )),
        Err(e) => Err(format!(
            "cannot run `{clang}` ({e}) for NEMUTATOR_BPF_REBUILD; install it with \
             apt-get install -y clang libbpf-dev linux-libc-dev (or set CLANG=/path/to/clang), \
             or unset NEMUTATOR_BPF_REBUILD to use the shipped {SHIPPED}"
        )),
    }
}
