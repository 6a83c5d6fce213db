#!/usr/bin/env bash
# A real OCI registry for tests: Debian's docker-registry (distribution 2.8)
# on loopback with filesystem storage, twice: one open to anonymous pulls
# and pushes, one behind basic auth (htpasswd, a user and password of the
# run's own) for the imagePullSecrets tests. scripts/deps.sh installs the
# packages (docker-registry, apache2-utils for htpasswd).
#
#   scripts/registry.sh start DIR  both registries in DIR; waits until they answer
#   scripts/registry.sh stop DIR   stop them
#
# DIR/env exports NEMUTATOR_TEST_REGISTRY (HOST:PORT, anonymous),
# NEMUTATOR_TEST_REGISTRY_AUTH (HOST:PORT, basic auth) and
# NEMUTATOR_TEST_REGISTRY_USER / NEMUTATOR_TEST_REGISTRY_PASSWORD.
set -euo pipefail

me=$(basename "$0")

. "$(dirname "$0")/lib/daemon.sh"

config() {
  local dir=$1 name=$2 port=$3 htpasswd=${4:-}
  mkdir -p "$dir/$name/data"
  {
    echo "version: 0.1"
    echo "log: { level: warn, accesslog: { disabled: true } }"
    echo "storage: { filesystem: { rootdirectory: $dir/$name/data }, delete: { enabled: true } }"
    echo "http: { addr: 127.0.0.1:$port, secret: $name-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ') }"
    if [ -n "$htpasswd" ]; then
      echo "auth: { htpasswd: { realm: nemutator-test, path: $htpasswd } }"
    fi
  } >"$dir/$name/config.yml"
}

# ready PORT PIDFILE LOG: wait until /v2/ answers (200, or 401 behind auth).
ready() {
  local port=$1 pidfile=$2 log=$3 code
  for _ in $(seq 1 100); do
    code=$(python3 - "$port" <<'PY' 2>/dev/null || true
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v2/", timeout=1).status)
except urllib.error.HTTPError as e:
    print(e.code)
PY
)
    case "$code" in 200 | 401) return 0 ;; esac
    kill -0 "$(cat "$pidfile")" 2>/dev/null || break
    sleep 0.1
  done
  echo "$me: the registry on port $port did not become ready; its log:" >&2
  tail -n 30 "$log" >&2
  return 1
}

start() {
  local dir=$1 open_port auth_port user password
  command -v docker-registry >/dev/null || { echo "$me: docker-registry is missing (scripts/deps.sh installs it)" >&2; return 1; }
  command -v htpasswd >/dev/null || { echo "$me: htpasswd is missing (apache2-utils; scripts/deps.sh installs it)" >&2; return 1; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  open_port=$(free_port)
  auth_port=$(free_port)
  user=puller
  password="pw-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
  htpasswd -Bbn "$user" "$password" >"$dir/htpasswd" 2>/dev/null
  config "$dir" open "$open_port"
  config "$dir" auth "$auth_port" "$dir/htpasswd"
  local name
  for name in open auth; do
    docker-registry serve "$dir/$name/config.yml" </dev/null >"$dir/$name/registry.log" 2>&1 &
    echo $! >"$dir/$name/registry.pid"
  done
  cat >"$dir/env" <<ENV
export NEMUTATOR_TEST_REGISTRY='127.0.0.1:$open_port'
export NEMUTATOR_TEST_REGISTRY_AUTH='127.0.0.1:$auth_port'
export NEMUTATOR_TEST_REGISTRY_USER='$user'
export NEMUTATOR_TEST_REGISTRY_PASSWORD='$password'
ENV
  if ready "$open_port" "$dir/open/registry.pid" "$dir/open/registry.log" \
    && ready "$auth_port" "$dir/auth/registry.pid" "$dir/auth/registry.log"; then
    echo "$me: ready at 127.0.0.1:$open_port (anonymous) and 127.0.0.1:$auth_port (basic auth); . $dir/env" >&2
    return 0
  fi
  stop "$dir"
  return 1
}

stop() {
  local name
  for name in open auth; do
    stop_pid "$1/$name/registry.pid" docker-registry
  done
}

case "${1:-}" in
start) [ $# -eq 2 ] || { echo "usage: $0 start DIR" >&2; exit 2; }; start "$2" ;;
stop) [ $# -eq 2 ] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop "$2" ;;
*) echo "usage: $0 start DIR | stop DIR" >&2; exit 2 ;;
esac
