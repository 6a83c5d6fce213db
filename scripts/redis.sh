#!/usr/bin/env bash
# A real Redis for tests and benchmarks (Debian's `redis-server` package,
# installed by scripts/deps.sh), on a free loopback port, nothing persisted.
#
#   scripts/redis.sh start DIR   start redis-server, wait until it answers;
#                                writes DIR/env
#   scripts/redis.sh stop DIR    stop it (TERM, then KILL)
#
# DIR/env exports NEMUTATOR_TEST_REDIS_URL (redis://127.0.0.1:PORT), which the
# tests read; each test uses a key prefix of its own, so they share the server.
set -euo pipefail
me=$(basename "$0")

. "$(dirname "$0")/lib/daemon.sh"

pid_of() { pid_in "$1/redis.pid" redis-server; }

stop() { stop_pid "$1/redis.pid" redis-server; }

start() {
  local dir=$1
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if pid_of "$dir" >/dev/null; then
    echo "$me: Redis already runs in $dir; run: $0 stop $dir" >&2
    exit 1
  fi
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || {
    echo "$me: redis-server is not installed (scripts/deps.sh installs it)" >&2
    exit 1
  }
  local port
  port=$(free_port)
  # No snapshot, no append-only file: the tests start from nothing.
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --dir "$dir" --logfile "$dir/redis.log" --daemonize no --protected-mode yes \
    </dev/null >/dev/null 2>&1 &
  echo $! >"$dir/redis.pid"
  for _ in $(seq 1 100); do
    if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
      printf 'export NEMUTATOR_TEST_REDIS_URL=%q\n' "redis://127.0.0.1:$port" >"$dir/env"
      echo "$me: ready at redis://127.0.0.1:$port; . $dir/env" >&2
      return 0
    fi
    pid_of "$dir" >/dev/null || break
    sleep 0.05
  done
  echo "$me: Redis did not start; last lines of $dir/redis.log:" >&2
  tail -n 20 "$dir/redis.log" >&2 || true
  stop "$dir"
  exit 1
}

case "${1:-}" in
start)
  [ $# -eq 2 ] || { echo "usage: $0 start DIR" >&2; exit 2; }
  start "$2"
  ;;
stop)
  [ $# -eq 2 ] || { echo "usage: $0 stop DIR" >&2; exit 2; }
  [ -d "$2" ] || exit 0
  stop "$(cd "$2" && pwd)"
  ;;
*)
  echo "usage: $0 start DIR | stop DIR" >&2
  exit 2
  ;;
esac
