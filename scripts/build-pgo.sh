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
#    excluded namespace, a Deployment), each sent
#    open loop by nemutator-bin/examples/loadgen.rs and closed loop by wrk,
#    plus the health and metrics endpoints; the benchmark's own request
#    (examples/admission-review.json) is deliberately not in the set;
# 3. merges the profiles with the toolchain's llvm-profdata (rustup component
#    llvm-tools, added when missing) and builds both again with
#    `-Cprofile-use` into target/pgo.
#
# The profile tells LLVM which code is hot: it lays out and inlines for the
# review and the TLS/HTTP path, and keeps the rest small. Measured effect in
# docs/PERFORMANCE.md ("Profile-guided build"). Takes about 6 minutes on 2 cores.
#
# Environment: PGO_SECONDS (4: seconds of each training run).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${PGO_SECONDS:-4}
host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
  rustup component add llvm-tools
fi
command -v wrk >/dev/null || { echo "build-pgo.sh: wrk is missing (apt-get install wrk)" >&2; exit 1; }

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# The load generator itself is an ordinary build.
cargo build --release --locked -p nemutator-bin --example loadgen
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
LOADGEN=$target_dir/release/examples/loadgen

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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

listen_addr() { # listen_addr STDERR_FILE PID
  local addr=""
  for _ in $(seq 1 500); do
    addr=$(sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -o 'listen=[0-9.]*:[0-9]*' | head -n1 | cut -d= -f2 || true)
    [ -n "$addr" ] && { echo "$addr"; return 0; }
    kill -0 "$2" 2>/dev/null || break
    sleep 0.02
  done
  echo "build-pgo.sh: server did not start; its stderr:" >&2
  cat "$1" >&2
  return 1
}

"$gen/nemutator" webhook --listen 127.0.0.1:0 >/dev/null 2>"$tmp/nemutator.err" &
nemu_pid=$!
pids+=("$nemu_pid")
nemu_addr=$(listen_addr "$tmp/nemutator.err" "$nemu_pid")
"$gen/examples/baseline_server" --listen 127.0.0.1:0 2>"$tmp/baseline.err" &
base_pid=$!
pids+=("$base_pid")
base_addr=$(listen_addr "$tmp/baseline.err" "$base_pid")
for _ in $(seq 1 500); do
  [ "$(curl -sk -o /dev/null -w '%{http_code}' "https://$nemu_addr/readyz")" = 200 ] && break
  sleep 0.02
done

train() { # train ADDR BODY
  "$LOADGEN" --url "https://$1/mutate" --body "$2" --rate 8000 --duration "$SECS" --warmup 0.5 >/dev/null
  BENCH_BODY=$2 wrk -t1 -c16 -d"${SECS}s" -s scripts/bench-lua/mutate.lua "https://$1/mutate" >/dev/null
}
for body in scripts/pgo/*.json nemutator-core/tests/data/guaranteed-pod.json \
  nemutator-core/tests/data/deployment-create.json; do
  echo "build-pgo.sh: training on $body"
  train "$nemu_addr" "$body"
done
for _ in $(seq 1 50); do
  for path in healthz readyz metrics; do curl -sk -o /dev/null "https://$nemu_addr/$path"; done
done
train "$base_addr" scripts/pgo/shop-api-compact.json

# SIGTERM: both drain and exit 0, which writes their profiles.
kill -TERM "$nemu_pid" "$base_pid"
wait "$nemu_pid"
wait "$base_pid"
pids=()
"$profdata" merge -o "$target_dir/pgo-gen/merged.profdata" "$profiles"/*.profraw

build "$target_dir/pgo-use" "-Cprofile-use=$target_dir/pgo-gen/merged.profdata"
mkdir -p "$target_dir/pgo/release/examples"
cp "$target_dir/pgo-use/$host/release/nemutator" "$target_dir/pgo/release/nemutator"
cp "$target_dir/pgo-use/$host/release/examples/baseline_server" "$target_dir/pgo/release/examples/baseline_server"
echo "build-pgo.sh: built $target_dir/pgo/release/nemutator and $target_dir/pgo/release/examples/baseline_server"
