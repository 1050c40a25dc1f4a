#!/usr/bin/env bash
# Install the Debian packages the integration fixtures need (idempotent).
# Installs only what is missing; runs `apt-get update` once, only if needed.
# Never starts a service: policy-rc.d blocks invoke-rc.d during the install.
set -euo pipefail

PACKAGES=(docker-registry docker.io containerd skopeo runc iproute2 openssl)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all present (${PACKAGES[*]})"
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  # A minimal Debian has no sudo: say what to do instead of failing on "sudo: command not found".
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: missing ${missing[*]}; installing them needs root, and sudo is not installed." >&2
    echo "install-deps: run as root (su -c 'bash scripts/install-deps.sh'), or install sudo. The end-to-end tests need root anyway." >&2
    exit 1
  fi
  SUDO=(sudo)
fi

echo "install-deps: installing ${missing[*]}"

# Forbid service starts from maintainer scripts (docker.io, containerd and
# docker-registry would otherwise try to start their daemons).
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 755 "$policy"
  added_policy=1
fi
cleanup() {
  if [ "$added_policy" -eq 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"

echo "install-deps: done"
