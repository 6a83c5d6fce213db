# shellcheck shell=bash
# Shared by scripts/apiserver.sh and scripts/helm.sh (sourced, not run): build
# a main package of a test-only Go module once and keep the binary in a cache
# keyed by the module's go.mod, go.sum, .go files, the Go version and the
# build flags.

# shellcheck disable=SC2034 # used by the scripts that source this
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache_root=${NEMUTATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nemutator}

# go_cached_build KIND MODDIR PACKAGE NAME [GO BUILD FLAGS...]: print the path
# of $cache_root/KIND/HASH/NAME, building PACKAGE in MODDIR first if missing.
# Go's output goes to stderr; stdout gets only the path.
go_cached_build() {
  local kind=$1 moddir=$2 pkg=$3 name=$4
  shift 4
  command -v go >/dev/null 2>&1 || { echo "$(basename "$0"): go is not on PATH" >&2; return 1; }
  # An older Go (Debian 12's golang-go is 1.19) cannot read the module: say so
  # in one line rather than with the go command's parse errors.
  local want have
  want=$(awk '$1 == "go" { print $2; exit }' "$moddir/go.mod")
  have=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
  if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" != "$want" ]; then
    echo "$(basename "$0"): $moddir needs Go $want or newer, this is Go ${have:-unknown}" >&2
    return 1
  fi
  local hash
  hash=$(
    cd "$moddir" || exit 1
    {
      go version
      printf '%s\n' "$pkg" "$name" "$@"
      find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) -print0 |
        LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-16
  )
  local dir="$cache_root/$kind/$hash"
  local bin="$dir/$name"
  if [ ! -x "$bin" ]; then
    mkdir -p "$dir"
    echo "$(basename "$0"): building $pkg into $dir (a cold build takes minutes)" >&2
    # GOWORK=off: the module's own go.mod and go.sum pin everything; the
    # default -mod=readonly fails rather than change them.
    (cd "$moddir" && GOWORK=off CGO_ENABLED=0 go build -trimpath -buildvcs=false "$@" -o "$bin.tmp.$$" "$pkg") >&2 || {
      rm -f "$bin.tmp.$$"
      return 1
    }
    mv -f "$bin.tmp.$$" "$bin"
  fi
  printf '%s\n' "$bin"
}
