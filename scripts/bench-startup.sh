#!/usr/bin/env bash
# Startup benchmark of `nemutator webhook` (issue 2): one week of one-minute
# usage history for 50 containers (examples/data/generate.py), served from an
# OpenMetrics file; wall time from process start to the first 200 on /readyz,
# polled with curl every 20 ms. Three runs; prints each and the median.
# Goal: ready in under 5 s. Everything runs on loopback; the servers started
# here are killed on exit.
#
# Environment: BENCH_RUNS (3).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${BENCH_RUNS:-3}

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
cargo build --release --locked -p nemutator-bin --bin nemutator
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
NEMUTATOR=$target_dir/release/nemutator

tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 examples/data/generate.py --containers 50 --step 60 --days 7 >"$tmp/usage.om"
samples=$(grep -c '^container_' "$tmp/usage.om" || true)
echo "== history: $tmp/usage.om, $(du -h "$tmp/usage.om" | cut -f1), $(wc -l <"$tmp/usage.om") lines, $samples samples"
cat >"$tmp/config.yaml" <<EOF
metrics:
  source: file
  file:
    path: $tmp/usage.om
EOF
echo "== machine: $(nproc) cores, $(uname -sr); load before: $(uptime)"

now_ms() { echo $(($(date +%s%N) / 1000000)); }

times=()
for run in $(seq 1 "$RUNS"); do
  : >"$tmp/err"
  start=$(now_ms)
  "$NEMUTATOR" --config "$tmp/config.yaml" webhook --listen 127.0.0.1:0 >/dev/null 2>"$tmp/err" &
  pid=$!
  addr=""
  listening=""
  ready=""
  while [ -z "$ready" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "bench-startup.sh: nemutator exited:" >&2; cat "$tmp/err" >&2; exit 1; }
    if [ -z "$addr" ]; then
      addr=$(sed 's/\x1b\[[0-9;]*m//g' "$tmp/err" | grep -o 'listen=[0-9.]*:[0-9]*' | head -n1 | cut -d= -f2 || true)
      [ -n "$addr" ] && listening=$(($(now_ms) - start))
    fi
    if [ -n "$addr" ] && [ "$(curl -sk -o /dev/null -w '%{http_code}' "https://$addr/readyz")" = 200 ]; then
      ready=$(($(now_ms) - start))
      break
    fi
    if [ $(($(now_ms) - start)) -gt 120000 ]; then
      echo "bench-startup.sh: not ready after 120 s" >&2
      exit 1
    fi
    sleep 0.02
  done
  loaded=$(curl -sk "https://$addr/metrics" | awk '$1 == "nemutator_recommendations" { print $2 }')
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
  echo "run $run: listening after ${listening} ms, ready after ${ready} ms, recommendations in store: ${loaded:-?}"
  times+=("$ready")
done

median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "%d\n", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
verdict=MISSED
[ "$median" -lt 5000 ] && verdict=met
echo "== median ready time over $RUNS runs: ${median} ms (goal < 5000 ms: $verdict)"
echo "== load after: $(uptime)"
