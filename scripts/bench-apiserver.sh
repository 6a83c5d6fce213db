#!/usr/bin/env bash
# Pod creation through a real kube-apiserver + etcd (scripts/apiserver.sh)
# with the nemutator webhook in the path (registered by URL, running on
# loopback, embedded sample history), against the same with no webhook
# configured: p50/p90/p99 of each side and the added latency, over
# BENCH_ROUNDS (10) alternating rounds of BENCH_PER_ROUND (50) creates each,
# so 500 creates per side by default.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/servers.sh
. scripts/lib/servers.sh

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
cargo build --release --locked -p nemutator-bin --bin nemutator --example pod_create_latency
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
NEMUTATOR=$target_dir/release/nemutator

./scripts/apiserver.sh start "$tmp/apiserver"
stop_apiserver() { ./scripts/apiserver.sh stop "$tmp/apiserver" || true; cleanup; }
trap stop_apiserver EXIT

# The certificates first (their names hold no port), then the webhook.
"$NEMUTATOR" install -n nemutator-bench --webhook-url https://127.0.0.1:1/mutate --cert-dir "$tmp/certs" >/dev/null 2>&1
"$NEMUTATOR" webhook --listen 127.0.0.1:0 --tls-cert "$tmp/certs/tls.crt" --tls-key "$tmp/certs/tls.key" \
  >"$tmp/webhook.out" 2>"$tmp/webhook.err" &
pids+=($!)
addr=$(listen_addr "$tmp/webhook.err" "${pids[-1]}")
echo "== webhook on $addr ($NEMUTATOR), kube-apiserver $(grep -o 'https://[0-9.:]*' "$tmp/apiserver/kubeconfig" | head -1)"

"$target_dir/release/examples/pod_create_latency" \
  --kubeconfig "$tmp/apiserver/kubeconfig" \
  --webhook-url "https://$addr/mutate" --certs "$tmp/certs" --nemutator "$NEMUTATOR" \
  --rounds "${BENCH_ROUNDS:-10}" --per-round "${BENCH_PER_ROUND:-50}"
