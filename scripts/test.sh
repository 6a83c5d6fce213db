#!/usr/bin/env bash
# Runs every test of the workspace. This is the command the README names and
# .ci/run calls. It installs what the tests need on a fresh Debian machine
# (as root; skipped when already present), then builds the test binaries once
# and runs them: unit and in-process tests first, end-to-end tests (their own
# test binaries) after.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# One build of every test binary, then run them.
cargo test --workspace --locked --no-run
cargo test --workspace --locked
