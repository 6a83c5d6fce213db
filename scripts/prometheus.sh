#!/usr/bin/env bash
# A real Prometheus for tests and benchmarks (Debian's `prometheus` package,
# installed by scripts/deps.sh), its history backfilled from OpenMetrics files
# with `promtool tsdb create-blocks-from openmetrics`.
#
#   scripts/prometheus.sh start DIR FILE...   backfill FILEs into DIR/tsdb, start
#                                             Prometheus on a free loopback port,
#                                             wait until ready; writes DIR/env
#   scripts/prometheus.sh start DIR           the same on the TSDB already in DIR
#   scripts/prometheus.sh stop DIR            stop it (TERM, then KILL)
#
# DIR/env exports NEMUTATOR_TEST_PROMETHEUS (the URL) and
# NEMUTATOR_TEST_PROMETHEUS_DATA (the backfilled files, `:`-separated), which
# the tests read. Backfilled history is old: retention is 100 years (it counts
# back from the newest sample and deletes at start), and queries must name
# their time explicitly. A FILE may be a directory: each *.om in it is
# backfilled (one 2-hour block per file is one promtool pass each).
set -euo pipefail
me=$(basename "$0")

. "$(dirname "$0")/lib/daemon.sh"

pid_of() { pid_in "$1/prometheus.pid" prometheus; }

stop() { stop_pid "$1/prometheus.pid" prometheus; }

start() {
  local dir=$1
  shift
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if pid_of "$dir" >/dev/null; then
    echo "$me: Prometheus already runs in $dir; run: $0 stop $dir" >&2
    exit 1
  fi
  command -v prometheus >/dev/null && command -v promtool >/dev/null || {
    echo "$me: prometheus and promtool are not installed (scripts/deps.sh installs them)" >&2
    exit 1
  }
  local t0=$SECONDS
  local data="" f part
  if [ $# -eq 0 ]; then
    [ -d "$dir/tsdb" ] || { echo "$me: no FILE and no $dir/tsdb to reuse" >&2; exit 2; }
    data=$(cat "$dir/data" 2>/dev/null || true)
  else
    rm -rf "$dir/tsdb"
    mkdir -p "$dir/tsdb"
  fi
  for f in "$@"; do
    f=$(cd "$(dirname "$f")" && pwd)/$(basename "$f")
    if [ -d "$f" ]; then
      for part in "$f"/*.om; do
        promtool tsdb create-blocks-from openmetrics --quiet "$part" "$dir/tsdb" >/dev/null
      done
    else
      promtool tsdb create-blocks-from openmetrics --quiet "$f" "$dir/tsdb" >/dev/null
    fi
    data=${data:+$data:}$f
  done
  printf '%s\n' "$data" >"$dir/data"
  local backfill=$((SECONDS - t0))
  printf 'global: { scrape_interval: 1m }\nscrape_configs: []\n' >"$dir/prometheus.yml"
  local port
  port=$(free_port)
  local url="http://127.0.0.1:$port"
  prometheus \
    --config.file="$dir/prometheus.yml" \
    --storage.tsdb.path="$dir/tsdb" \
    --storage.tsdb.retention.time=100y \
    --web.listen-address="127.0.0.1:$port" \
    --log.level=warn \
    ${NEMUTATOR_PROMETHEUS_ARGS:-} \
    </dev/null >"$dir/prometheus.log" 2>&1 &
  echo $! >"$dir/prometheus.pid"
  local i
  for i in $(seq 1 600); do
    if curl -fsS "$url/-/ready" >/dev/null 2>&1; then
      printf 'export NEMUTATOR_TEST_PROMETHEUS=%q\nexport NEMUTATOR_TEST_PROMETHEUS_DATA=%q\n' \
        "$url" "$data" >"$dir/env"
      echo "$me: ready in $((SECONDS - t0)) s (backfill $backfill s) at $url; . $dir/env" >&2
      return 0
    fi
    if ! pid_of "$dir" >/dev/null; then
      break
    fi
    sleep 0.1
  done
  echo "$me: Prometheus did not become ready; last lines of $dir/prometheus.log:" >&2
  tail -n 30 "$dir/prometheus.log" >&2 || true
  stop "$dir"
  exit 1
}

case "${1:-}" in
start)
  [ $# -ge 2 ] || { echo "usage: $0 start DIR [FILE...]" >&2; exit 2; }
  shift
  start "$@"
  ;;
stop)
  [ $# -eq 2 ] || { echo "usage: $0 stop DIR" >&2; exit 2; }
  [ -d "$2" ] || exit 0
  stop "$(cd "$2" && pwd)"
  ;;
*)
  echo "usage: $0 start DIR [FILE...] | stop DIR" >&2
  exit 2
  ;;
esac
