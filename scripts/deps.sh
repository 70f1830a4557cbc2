#!/usr/bin/env bash
# The one list of Debian 12 packages zhttpd needs to build, test, fuzz and benchmark.
# Run as root on a fresh machine: bash scripts/deps.sh
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
    # build
    build-essential cmake pkg-config git ca-certificates
    libzmq3-dev libcurl4-openssl-dev libc-ares-dev libssl-dev zlib1g-dev libsystemd-dev libjansson-dev
    # unit tests, coverage, fuzzing
    libcmocka-dev gcovr clang libclang-rt-14-dev llvm clang-format
    # integration tests
    python3 python3-zmq python3-pytest python3-websockets python3-aiohttp curl openssl
)

if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: run as root (apt-get install)" >&2
    exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
