#!/usr/bin/env bash
# Installs the system packages the tests need when they are missing (Debian).
# Safe to run repeatedly; does nothing when everything is present.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }

have python3 || need_apt+=(python3)
# nemutator-ebpf: build.rs compiles the BPF program with clang against the
# libbpf and kernel UAPI headers; the profiling tests build C and Go programs.
have clang || need_apt+=(clang)
[ -e /usr/include/bpf/bpf_helpers.h ] || need_apt+=(libbpf-dev)
[ -e /usr/include/linux/bpf.h ] || need_apt+=(linux-libc-dev)
have gcc || need_apt+=(gcc)
have go || need_apt+=(golang-go)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: missing ${need_apt[*]}; run as root or install them" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
