#!/usr/bin/env bash
# A real etcd + kube-apiserver for tests, built from their Go modules in
# testenv/apiserver (see docs/TESTENV.md).
#
#   scripts/apiserver.sh build      build once (cached), print the binary's path
#   scripts/apiserver.sh start DIR  new cluster in DIR; waits until ready
#   scripts/apiserver.sh stop DIR   stop it (TERM, then KILL)
#
# Environment: NEMUTATOR_CACHE (binary cache root), NEMUTATOR_APISERVER_TIMEOUT
# (readiness wait, default 90s), NEMUTATOR_APISERVER_ARGS (extra flags, split
# on spaces, appended to kube-apiserver's).
set -euo pipefail

# shellcheck source=scripts/lib/gobuild.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/gobuild.sh"

moddir="$repo_root/testenv/apiserver"
me=$(basename "$0")

build() {
  local k8s
  k8s=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$moddir/go.mod")
  local major=${k8s#v}
  major=${major%%.*}
  local minor=${k8s#v*.}
  minor=${minor%%.*}
  # The version that /version and --version report, as Kubernetes' own build
  # sets it; without it they say v0.0.0-master.
  local x="" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $p.gitVersion=$k8s -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  go_cached_build testenv "$moddir" ./cmd/nemutator-testenv nemutator-testenv -ldflags "-s -w$x"
}

. "$(dirname "$0")/lib/daemon.sh"

# pid_of DIR NAME: the pid in DIR/NAME.pid if that process is ours and runs.
pid_of() { pid_in "$1/$2.pid" "nemutator-testenv $2"; }

stop_one() { stop_pid "$1/$2.pid" "nemutator-testenv $2"; }

stop() {
  stop_one "$1" kube-apiserver
  stop_one "$1" etcd
}

fail_start() {
  local dir=$1
  shift
  echo "$me: $*" >&2
  local log
  for log in etcd.log apiserver.log; do
    if [ -f "$dir/$log" ]; then
      echo "---- last lines of $dir/$log ----" >&2
      tail -n 40 "$dir/$log" >&2
    fi
  done
  stop "$dir"
  exit 1
}

start() {
  local dir=$1
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if pid_of "$dir" etcd >/dev/null || pid_of "$dir" kube-apiserver >/dev/null; then
    echo "$me: a cluster already runs in $dir; run: $0 stop $dir" >&2
    exit 1
  fi
  local bin
  bin=$(build)
  local t0=$SECONDS

  # A fresh cluster each time: new keys, empty etcd.
  rm -rf "$dir/pki" "$dir/etcd"
  "$bin" pki "$dir/pki"
  local ports etcd_port peer_port api_port
  ports=$("$bin" freeports 3)
  { read -r etcd_port; read -r peer_port; read -r api_port; } <<<"$ports"
  local server="https://127.0.0.1:$api_port"
  "$bin" kubeconfig "$dir" "$server"
  printf 'export KUBECONFIG=%q\nexport NEMUTATOR_TEST_KUBECONFIG=%q\n' \
    "$dir/kubeconfig" "$dir/kubeconfig" >"$dir/env"

  # --unsafe-no-fsync as envtest: a test cluster needs no durability.
  "$bin" etcd \
    --name=nemutator-testenv \
    --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="nemutator-testenv=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync \
    --log-level=warn \
    </dev/null >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"

  local pki=$dir/pki
  # shellcheck disable=SC2086 # NEMUTATOR_APISERVER_ARGS is split on purpose
  "$bin" kube-apiserver \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --secure-port="$api_port" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --tls-cert-file="$pki/apiserver.crt" \
    --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --allow-privileged=true \
    --disable-admission-plugins=ServiceAccount \
    --cert-dir="$pki" \
    ${NEMUTATOR_APISERVER_ARGS:-} \
    </dev/null >"$dir/apiserver.log" 2>&1 &
  echo $! >"$dir/kube-apiserver.pid"

  if ! "$bin" wait-ready "$dir/kubeconfig" "${NEMUTATOR_APISERVER_TIMEOUT:-90s}" \
    "$(cat "$dir/etcd.pid")" "$(cat "$dir/kube-apiserver.pid")" 2>"$dir/wait.log"; then
    fail_start "$dir" "kube-apiserver did not become ready: $(cat "$dir/wait.log")"
  fi
  rm -f "$dir/wait.log"
  echo "$me: ready in $((SECONDS - t0)) s at $server; . $dir/env" >&2
}

case "${1:-}" in
build)
  [ $# -eq 1 ] || { echo "usage: $0 build" >&2; exit 2; }
  build
  ;;
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
  echo "usage: $0 build | start DIR | stop DIR" >&2
  exit 2
  ;;
esac
