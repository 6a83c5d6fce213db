#!/usr/bin/env bash
# Fails when the shipped BPF object, nemutator-ebpf/bpf/profile.bpf.o, is not
# what nemutator-ebpf/bpf/profile.bpf.c compiles to.
#
#   scripts/check-bpf.sh           compare (CI runs this)
#   scripts/check-bpf.sh --update  copy the fresh object over the shipped one
#
# The object is compiled by nemutator-ebpf's build.rs (NEMUTATOR_BPF_REBUILD=1),
# so the flags are defined in one place, into the build script's OUT_DIR; the
# source tree is only written by --update. The build is deterministic (paths in
# the debug information are mapped) and the debug information holds the MD5 of
# the source file (DWARF 5), so any change of the source, a comment included,
# makes the comparison fail until the object is rebuilt.
# The shipped object is built by Debian 12's clang 14: another clang version
# gives another object, and the check says which clang it used.
# Installs clang, libbpf-dev and linux-libc-dev when missing (scripts/deps.sh bpf).
set -euo pipefail
cd "$(dirname "$0")/.."

update=false
case "${1:-}" in
  --update) update=true ;;
  "") ;;
  *) echo "usage: $0 [--update]" >&2; exit 2 ;;
esac

./scripts/deps.sh bpf

shipped=nemutator-ebpf/bpf/profile.bpf.o
# `cargo check` runs the build script; its JSON messages name its OUT_DIR.
out_dir=$(NEMUTATOR_BPF_REBUILD=1 cargo check -p nemutator-ebpf --locked --quiet \
    --message-format=json |
  grep '"reason":"build-script-executed"' |
  grep -F '"package_id":"path+file://' |
  grep -F '/nemutator-ebpf#' |
  sed -n 's/.*"out_dir":"\([^"]*\)".*/\1/p' | tail -n 1)
fresh=$out_dir/profile.bpf.o
if [ -z "$out_dir" ] || [ ! -f "$fresh" ]; then
  echo "check-bpf.sh: the build script of nemutator-ebpf produced no profile.bpf.o" >&2
  exit 1
fi

if cmp -s "$fresh" "$shipped"; then
  echo "check-bpf.sh: $shipped is up to date ($(clang --version | head -n 1))"
  exit 0
fi
if $update; then
  cp "$fresh" "$shipped"
  echo "check-bpf.sh: updated $shipped ($(clang --version | head -n 1))"
  exit 0
fi
echo "check-bpf.sh: $shipped is stale: nemutator-ebpf/bpf/profile.bpf.c compiles to another object" \
  "with $(clang --version | head -n 1); run scripts/check-bpf.sh --update and commit it" >&2
exit 1
