#!/usr/bin/env bash
# Profile-guided release build of the `nemutator` binary (and of the HTTPS
# benchmark's bare baseline server, so that the two are compared built the
# same way):
#
#   ./scripts/build-pgo.sh            # -> target/pgo/release/nemutator
#                                     #    target/pgo/release/examples/baseline_server
#
# 1. builds both instrumented (`-Cprofile-generate`, target dir target/pgo-gen);
# 2. runs them on loopback under a training load: the AdmissionReviews in
#    scripts/pgo/ and nemutator-core/tests/data/ (a compact ReplicaSet pod as
#    the API server sends it, an indented one with a native sidecar, a
#    Guaranteed StatefulSet pod, a DaemonSet pod in dry-run, a pod in an
#    excluded namespace, a Deployment), each sent open loop by
#    nemutator-bin/examples/loadgen.rs and closed loop by wrk, plus the
#    health and metrics endpoints; the benchmark's own request
#    (examples/admission-review.json) is deliberately not in the set;
# 3. merges the profiles with the toolchain's llvm-profdata (rustup component
#    llvm-tools, added when missing) and builds both again with
#    `-Cprofile-use`;
# 4. when llvm-bolt is at hand (Debian package bolt-22, installed when run as
#    root; PGO_NO_BOLT=1 skips this step), instruments those builds with it,
#    trains them the same way and lets BOLT lay out their code by that
#    second profile. The results go to target/pgo/release.
#
# The profile tells LLVM which code is hot: it lays out and inlines for the
# review and the TLS/HTTP path, and keeps the rest small. Measured effect in
# docs/PERFORMANCE.md ("The profile-guided build"). Takes about 7 minutes on 2 cores.
#
# Environment: PGO_SECONDS (4: seconds of each training run), PGO_NO_BOLT.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${PGO_SECONDS:-4}
host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
  rustup component add llvm-tools
fi
# shellcheck source=scripts/lib/servers.sh
source scripts/lib/servers.sh
ensure_wrk

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# The load generator itself is an ordinary build.
cargo build --release --locked -p nemutator-bin --example loadgen
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
LOADGEN=$target_dir/release/examples/loadgen

# `--target` keeps the flags off build scripts and proc macros, which would
# otherwise write profiles of the build itself.
build() { # build TARGET_DIR RUSTFLAGS
  RUSTFLAGS=$2 cargo build --release --locked --target "$host" --target-dir "$1" \
    -p nemutator-bin --bin nemutator --example baseline_server
}
# Fixed paths, so that the instrumented build is rebuilt only when the code
# changes (rustc records the merged profile as an input of the second build).
profiles=$target_dir/pgo-gen/profiles
build "$target_dir/pgo-gen" "-Cprofile-generate=$profiles"
rm -rf "$profiles"
gen=$target_dir/pgo-gen/$host/release

train() { # train ADDR BODY
  "$LOADGEN" --url "https://$1/mutate" --body "$2" --rate 8000 --duration "$SECS" --warmup 0.5 >/dev/null
  BENCH_BODY=$2 wrk -t1 -c16 -d"${SECS}s" -s scripts/bench-lua/mutate.lua "https://$1/mutate" >/dev/null
}

# train_servers NEMUTATOR BASELINE: run both under the training load, then
# stop them with SIGTERM (both drain and exit 0, which writes their profiles).
train_servers() {
  "$1" webhook --listen 127.0.0.1:0 >/dev/null 2>"$tmp/nemutator.err" &
  local nemu_pid=$!
  pids+=("$nemu_pid")
  local nemu_addr base_addr
  nemu_addr=$(listen_addr "$tmp/nemutator.err" "$nemu_pid")
  "$2" --listen 127.0.0.1:0 2>"$tmp/baseline.err" &
  local base_pid=$!
  pids+=("$base_pid")
  base_addr=$(listen_addr "$tmp/baseline.err" "$base_pid")
  for _ in $(seq 1 500); do
    [ "$(curl -sk -o /dev/null -w '%{http_code}' "https://$nemu_addr/readyz")" = 200 ] && break
    sleep 0.02
  done
  for body in scripts/pgo/*.json nemutator-core/tests/data/guaranteed-pod.json \
    nemutator-core/tests/data/deployment-create.json; do
    echo "build-pgo.sh: training on $body"
    train "$nemu_addr" "$body"
  done
  for _ in $(seq 1 50); do
    for path in healthz readyz metrics; do curl -sk -o /dev/null "https://$nemu_addr/$path"; done
  done
  train "$base_addr" scripts/pgo/shop-api-compact.json
  kill -TERM "$nemu_pid" "$base_pid"
  wait "$nemu_pid"
  wait "$base_pid"
  pids=()
}

train_servers "$gen/nemutator" "$gen/examples/baseline_server"
"$profdata" merge -o "$target_dir/pgo-gen/merged.profdata" "$profiles"/*.profraw

# --emit-relocs keeps what BOLT needs to move functions.
build "$target_dir/pgo-use" "-Cprofile-use=$target_dir/pgo-gen/merged.profdata -Clink-arg=-Wl,--emit-relocs"
use=$target_dir/pgo-use/$host/release
out=$target_dir/pgo/release
mkdir -p "$out/examples"

# Then BOLT, when llvm-bolt is there (Debian: bolt-22, installed when run as
# root): the binaries instrumented, trained again, and their code laid out by
# that profile (hot functions together, cold blocks split off).
bolt=$(command -v llvm-bolt || ls /usr/lib/llvm-*/bin/llvm-bolt 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$bolt" ] && [ "$(id -u)" = 0 ] && [ -z "${PGO_NO_BOLT:-}" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bolt-22 >/dev/null 2>&1 || true
  bolt=$(ls /usr/lib/llvm-*/bin/llvm-bolt 2>/dev/null | sort -V | tail -n1 || true)
fi
if [ -n "$bolt" ] && [ -z "${PGO_NO_BOLT:-}" ]; then
  mkdir -p "$tmp/bolt"
  for bin in nemutator examples/baseline_server; do
    name=$(basename "$bin")
    "$bolt" "$use/$bin" -instrument -o "$tmp/bolt/$name" \
      --instrumentation-file="$tmp/bolt/$name.fdata" >"$tmp/bolt/$name.log" 2>&1 ||
      { cat "$tmp/bolt/$name.log" >&2; exit 1; }
  done
  train_servers "$tmp/bolt/nemutator" "$tmp/bolt/baseline_server"
  for bin in nemutator examples/baseline_server; do
    name=$(basename "$bin")
    rm -f "$out/$bin" # a new file, in case the old one is running
    "$bolt" "$use/$bin" -o "$out/$bin" -data="$tmp/bolt/$name.fdata" \
      -reorder-blocks=ext-tsp -reorder-functions=cdsort -split-functions -split-all-cold \
      -split-eh -icf=1 -use-gnu-stack >"$tmp/bolt/$name.log" 2>&1 ||
      { cat "$tmp/bolt/$name.log" >&2; exit 1; }
  done
  how="profile-guided and BOLT-optimised"
else
  rm -f "$out/nemutator" "$out/examples/baseline_server"
  cp "$use/nemutator" "$out/nemutator"
  cp "$use/examples/baseline_server" "$out/examples/baseline_server"
  how="profile-guided (no llvm-bolt: not BOLT-optimised)"
fi
echo "build-pgo.sh: built $out/nemutator and $out/examples/baseline_server, $how"
