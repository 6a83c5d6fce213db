//! Compiles `bpf/profile.bpf.c` into a BPF ELF object with clang.
//!
//! Needs Debian's `clang` (any version with the BPF target, 14+ tested),
//! `libbpf-dev` (for `<bpf/bpf_helpers.h>`) and `linux-libc-dev` (for
//! `<linux/bpf.h>`): `apt-get install -y clang libbpf-dev linux-libc-dev`.
//! Set `CLANG` to use another clang binary.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/profile.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CLANG");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let out = out_dir.join("profile.bpf.o");
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

    let status = Command::new(&clang)
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .args(["-c", src, "-o"])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "nemutator-ebpf: `{clang} -target bpf` failed on {src} ({s}). \
             Are the headers installed? apt-get install -y clang libbpf-dev linux-libc-dev"
        ),
        Err(e) => panic!(
            "nemutator-ebpf: cannot run `{clang}` ({e}); the BPF profiler is compiled from C at \
             build time. Install it with: apt-get install -y clang libbpf-dev linux-libc-dev \
             (or set CLANG=/path/to/clang)"
        ),
    }
}
