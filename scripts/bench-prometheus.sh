#!/usr/bin/env bash
# `nemutator recommend` against a real Prometheus holding 7 days of 1-minute
# history of 2,000 Deployments x 2 containers, side by side with KRR's query
# pattern (one query per workload and resource) on the same server:
# wall time, peak RSS and HTTP queries of each (docs/PERFORMANCE.md).
#
#   scripts/bench-prometheus.sh
#
# Environment: BENCH_NAMESPACES (20), BENCH_WORKLOADS per namespace (100),
# BENCH_DAYS (7), BENCH_DIR (/tmp/nemutator-bench: the generated TSDB is kept
# there and reused while these stay the same), BENCH_CONCURRENCY (4, both
# patterns). Generating and backfilling the history takes a while (minutes)
# the first time; queries are counted from Prometheus' own
# prometheus_http_requests_total.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh

namespaces=${BENCH_NAMESPACES:-20}
per=${BENCH_WORKLOADS:-100}
days=${BENCH_DAYS:-7}
dir=${BENCH_DIR:-/tmp/nemutator-bench}
concurrency=${BENCH_CONCURRENCY:-4}
end=1764547200 # 2025-12-01 00:00 UTC, where generate.py ends its history
target=${CARGO_TARGET_DIR:-target}

# One invocation, one feature set: the binary and the KRR-pattern client.
cargo build --release --locked -q -p nemutator-bin -p nemutator-metrics --bins --example krr_pattern

key="$namespaces $per $days"
mkdir -p "$dir"
if [ "$(cat "$dir/key" 2>/dev/null)" != "$key" ]; then
  rm -rf "$dir/prom" "$dir/om" "$dir/key"
  t0=$SECONDS
  python3 examples/data/generate.py --namespaces "$namespaces" --workloads "$per" --pods 1 \
    --containers 2 --step 60 --days "$days" --offset 17 --only-deployments --out-dir "$dir/om"
  echo "generated in $((SECONDS - t0)) s: $(du -sh "$dir/om" | cut -f1) of OpenMetrics" >&2
  ./scripts/prometheus.sh start "$dir/prom" "$dir/om"
  rm -rf "$dir/om"
  echo "$key" >"$dir/key"
else
  ./scripts/prometheus.sh start "$dir/prom"
fi
trap './scripts/prometheus.sh stop "$dir/prom"' EXIT
# shellcheck disable=SC1091
. "$dir/prom/env"
url=$NEMUTATOR_TEST_PROMETHEUS

queries() {
  curl -fsS "$url/metrics" |
    awk '/^prometheus_http_requests_total\{.*handler="\/api\/v1\/(query|query_range|series)"/ { n += $NF } END { print n + 0 }'
}

cat >"$dir/config.yaml" <<EOF
metrics:
  source: prometheus
  prometheus: { url: "$url", end: $end, timeout: 5m, concurrency: $concurrency }
EOF
# The same at the KRR pattern's resolution: 1-minute steps of 5-minute rates.
sed 's/^  source: prometheus$/  source: prometheus\n  step: 1m/' "$dir/config.yaml" >"$dir/config-1m.yaml"

# run NAME CMD...: wall time, peak RSS, queries and output lines of CMD.
run() {
  local name=$1
  shift
  local before after
  before=$(queries)
  /usr/bin/time -f '%e %M' -o "$dir/$name.time" "$@" >"$dir/$name.out" 2>"$dir/$name.err" || {
    echo "$name failed:" >&2
    tail -n 5 "$dir/$name.err" >&2
    exit 1
  }
  after=$(queries)
  read -r wall rss <"$dir/$name.time"
  printf '%-34s %8s s %8s MB %8s queries\n' "$name" "$wall" "$((rss / 1024))" "$((after - before))"
}

echo "$(date -u '+%Y-%m-%d %H:%M'), load $(cut -d' ' -f1 /proc/loadavg), $(nproc) cores, Prometheus $(prometheus --version 2>&1 | awk 'NR == 1 { print $3 }'), $namespaces namespaces x $per Deployments x 2 containers, $days days of 1-minute samples"
run "nemutator recommend (batched)" "$target/release/nemutator" recommend --config "$dir/config.yaml" -o json
echo "  recommendations: $(grep -c '"target"' "$dir/nemutator recommend (batched).out")"
run "nemutator recommend, 1m steps" "$target/release/nemutator" recommend --config "$dir/config-1m.yaml" -o json
run "one query per workload and resource" "$target/release/examples/krr_pattern" "$url" "$end" "$concurrency"
echo "  $(cat "$dir/one query per workload and resource.out")"
echo "load $(cut -d' ' -f1 /proc/loadavg) after"
