#!/usr/bin/env bash
# Packages every published crate and verifies that each builds from its
# package alone (`cargo package --workspace`: the dependencies between the
# workspace's crates resolve to the packages just made, through a temporary
# local registry). nemutator-testkit is publish = false. Extra arguments go to
# cargo package (e.g. --no-verify, --list).
#
# cargo treats those packages as it treats any registry package: one of a
# version it has seen is taken as unchanged. Their version stays the same
# between releases, so a second run would verify against the first run's
# sources: cargo reuses the copy it unpacked under
# $CARGO_HOME/registry/src/-<hash>/ and the builds of it in the target
# directory. Both are removed first (only the workspace's own crates; the
# crates.io sources and builds are not touched).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo_home=${CARGO_HOME:-$HOME/.cargo}
for dir in "$cargo_home"/registry/src/-*/; do
  [ -d "$dir" ] || continue
  rm -rf "$dir"nemutator-*
done
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
for dep_file in "$target_dir"/debug/deps/nemutator_*.d; do
  [ -f "$dep_file" ] || continue
  # Builds of the unpacked packages name their sources there.
  grep -q "registry/src/-" "$dep_file" || continue
  stem=$(basename "${dep_file%.d}")
  rm -f "$target_dir/debug/deps/$stem".* "$target_dir/debug/deps/lib$stem".*
done
exec cargo package --workspace --exclude nemutator-testkit --locked "$@"
