#!/usr/bin/env bash
# A/B of two `nemutator` binaries on the HTTPS /mutate path, with the bare
# baseline (nemutator-bin/examples/baseline_server.rs) in the same rounds:
#
#   ./scripts/bench-ab.sh OLD_BINARY [NEW_BINARY] [ROUNDS]
#
# NEW_BINARY defaults to this tree's release build. The three servers run side
# by side on loopback; each round drives baseline, old, new in turn with
# `wrk -t1 -c16 -d8s` (POST examples/admission-review.json) and prints
# requests/s and the server's CPU time per request over the middle 6 s
# (/proc/PID/stat). Build an old binary with, e.g.:
#
#   git worktree add /tmp/old REV && (cd /tmp/old && cargo build --release -p nemutator-bin --bin nemutator)
#
# With BENCH_RATE=N the servers are driven open loop instead, at N requests
# per second by nemutator-bin/examples/loadgen.rs (16 connections), and each
# line adds the p50 and p99 latency at that rate.
#
# Environment: BENCH_SECONDS (8), BENCH_RATE (unset: closed loop with wrk).
set -euo pipefail
cd "$(dirname "$0")/.."

OLD=${1:?usage: bench-ab.sh OLD_BINARY [NEW_BINARY] [ROUNDS]}
ROUNDS=${3:-3}
SECS=${BENCH_SECONDS:-8}
LUA=scripts/bench-lua/mutate.lua
BODY=examples/admission-review.json

# shellcheck source=scripts/lib/servers.sh
source scripts/lib/servers.sh
ensure_wrk
cargo build --release --locked -p nemutator-bin --bin nemutator --example baseline_server --example loadgen
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
NEW=${2:-$target_dir/release/nemutator}

# start NAME CMD...: start a server on a free port; sets ADDR_NAME and PID_NAME.
start() {
  local name=$1
  shift
  "$@" --listen 127.0.0.1:0 >/dev/null 2>"$tmp/$name.err" &
  local pid=$! addr
  pids+=("$pid")
  addr=$(listen_addr "$tmp/$name.err" "$pid") || exit 1
  printf -v "ADDR_$name" '%s' "$addr"
  printf -v "PID_$name" '%s' "$pid"
}

start baseline "$target_dir/release/examples/baseline_server"
start old "$OLD" webhook
start new "$NEW" webhook
sleep 1 # recommendations loaded

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# drive NAME: one wrk run; prints requests/s and server CPU per request.
drive() {
  local addr_var="ADDR_$1" pid_var="PID_$1"
  local addr=${!addr_var} pid=${!pid_var}
  if [ -n "${BENCH_RATE:-}" ]; then
    "$target_dir/release/examples/loadgen" --url "https://$addr/mutate" --body "$BODY" \
      --rate "$BENCH_RATE" --connections 16 --duration "$SECS" --warmup 0 >"$tmp/wrk" &
  else
    BENCH_BODY=$BODY wrk -t1 -c16 -d"${SECS}s" -s "$LUA" "https://$addr/mutate" >"$tmp/wrk" &
  fi
  local wrk_pid=$!
  sleep 1
  local c0 t0 c1 t1
  c0=$(ticks "$pid")
  t0=$(date +%s.%N)
  sleep $((SECS - 2))
  c1=$(ticks "$pid")
  t1=$(date +%s.%N)
  wait "$wrk_pid"
  local rps latency=""
  rps=$(grep -o ' rps=[0-9.]*' "$tmp/wrk" | cut -d= -f2)
  if [ -n "${BENCH_RATE:-}" ]; then
    latency=$(grep -o 'p50_us=[0-9]* \|p99_us=[0-9]*' "$tmp/wrk" | tr '\n' ' ')
  fi
  awk -v n="$1" -v c=$((c1 - c0)) -v t0="$t0" -v t1="$t1" -v r="$rps" -v l="$latency" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { cpu = c / hz / (t1 - t0); printf "%-9s %8.0f req/s  server CPU %.2f cores  %.1f us/req  %s\n", n, r, cpu, cpu * 1e6 / r, l }'
}

echo "== $(nproc) cores; load before: $(uptime)"
echo "== old: $OLD"
echo "== new: $NEW"
for i in $(seq 1 "$ROUNDS"); do
  echo "-- round $i"
  drive baseline
  drive old
  drive new
done
echo "== load after: $(uptime)"
