#!/usr/bin/env bash
# Installs the system packages the tests need when they are missing (Debian).
# Safe to run repeatedly; does nothing when everything is present.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }

have python3 || need_apt+=(python3)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: missing ${need_apt[*]}; run as root or install them" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
