# Shared by the benchmark and build scripts (sourced, not run): a scratch
# directory `tmp`, the servers started in `pids` stopped on exit, the
# address a server prints on its `listen=` line, and wrk.

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# listen_addr STDERR_FILE PID: wait until the file shows `listen=ADDR` and
# print ADDR; fail with the server's stderr if it exits first.
listen_addr() {
  local file=$1 pid=$2 addr=""
  for _ in $(seq 1 500); do
    addr=$(sed 's/\x1b\[[0-9;]*m//g' "$file" | grep -o 'listen=[0-9.]*:[0-9]*' | head -n1 | cut -d= -f2 || true)
    [ -n "$addr" ] && { echo "$addr"; return 0; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
  done
  echo "$(basename "$0"): server did not start; its stderr:" >&2
  cat "$file" >&2
  return 1
}

# ensure_wrk: install wrk when it is missing (as root; otherwise say so).
ensure_wrk() {
  command -v wrk >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "$(basename "$0"): wrk is missing; run as root or apt-get install wrk" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
}
