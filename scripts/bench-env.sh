#!/usr/bin/env bash
# `nemutator env` resolving 10 secrets from a local OpenBao (scripts/openbao.sh,
# token auth) and exec'ing `true`: wall time of the whole command, BENCH_RUNS
# (30) runs after 3 warm-ups; prints the median and p90 against `true` alone.
# Goal (issue 14): under 50 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/servers.sh
. scripts/lib/servers.sh

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
cargo build --release --locked -p nemutator-bin --bin nemutator
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
NEMUTATOR=$target_dir/release/nemutator

./scripts/openbao.sh start "$tmp/bao"
stop_bao() { ./scripts/openbao.sh stop "$tmp/bao" || true; cleanup; }
trap stop_bao EXIT
# shellcheck disable=SC1091
. "$tmp/bao/env"
bao=$(./scripts/openbao.sh build)

refs=()
for i in $(seq 1 10); do
  BAO_ADDR=$NEMUTATOR_TEST_VAULT_ADDR BAO_TOKEN=$NEMUTATOR_TEST_VAULT_TOKEN \
    "$bao" kv put -mount=secret "bench/s$i" password="value-$i" >/dev/null
  refs+=("SECRET_$i=vault:secret/data/bench/s$i#password")
done

VAULT_ADDR=$NEMUTATOR_TEST_VAULT_ADDR VAULT_TOKEN=$NEMUTATOR_TEST_VAULT_TOKEN \
  python3 - "$NEMUTATOR" "${BENCH_RUNS:-30}" "${refs[@]}" <<'PY'
import os, statistics, subprocess, sys, time
nemutator, runs, refs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
env = dict(os.environ)
for r in refs:
    k, v = r.split("=", 1)
    env[k] = v
def timed(cmd):
    out = []
    for i in range(runs + 3):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True)
        if i >= 3:
            out.append((time.perf_counter() - t) * 1000)
    out.sort()
    return statistics.median(out), out[int(len(out) * 0.9) - 1]
check = subprocess.run([nemutator, "env", "--", "sh", "-c", 'test "$SECRET_10" = value-10'], env=env)
assert check.returncode == 0, "the secrets did not resolve"
base = timed(["true"])
env_run = timed([nemutator, "env", "--", "true"])
print(f"true alone:                       median {base[0]:.1f} ms  p90 {base[1]:.1f} ms")
print(f"nemutator env (10 secrets) true:  median {env_run[0]:.1f} ms  p90 {env_run[1]:.1f} ms  ({runs} runs)")
print(f"goal < 50 ms: {'met' if env_run[0] < 50 else 'not met'}")
PY
