#!/usr/bin/env bash
# The helm CLI for tests, built from its Go module in testenv/helm (see
# docs/TESTENV.md).
#
#   scripts/helm.sh build        build once (cached), print the binary's path
#   scripts/helm.sh ARGS...      run helm ARGS... (e.g. lint charts/x)
set -euo pipefail

# shellcheck source=scripts/lib/gobuild.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/gobuild.sh"

moddir="$repo_root/testenv/helm"

build() {
  local v
  v=$(awk '$1 == "helm.sh/helm/v4" && $2 ~ /^v/ { print $2; exit }' "$moddir/go.mod")
  # As helm's Makefile for a tagged release: version set, no metadata.
  go_cached_build helm "$moddir" helm.sh/helm/v4/cmd/helm helm \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$v -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
}

if [ "${1:-}" = build ] && [ $# -eq 1 ]; then
  build
else
  bin=$(build)
  exec "$bin" "$@"
fi
