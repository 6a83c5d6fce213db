# Shared by the scripts that start a test server on loopback (sourced, not
# run): a free port, the server's pid file, and stopping it.

# free_port: a TCP port free on 127.0.0.1 now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# pid_in FILE PATTERN: print the pid in FILE if that process runs and its
# command line holds PATTERN (a reused pid is not ours); fail otherwise.
pid_in() {
  local f=$1 pattern=$2 pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern" || return 1
  printf '%s\n' "$pid"
}

# stop_pid FILE PATTERN: TERM the process of `pid_in FILE PATTERN`, KILL it
# (saying so) if it still runs 5 s later; remove FILE.
stop_pid() {
  local f=$1 pattern=$2 pid
  if pid=$(pid_in "$f" "$pattern"); then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$(basename "$0"): $pattern ($pid) ignored TERM for 5 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}
