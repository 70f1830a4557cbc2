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
    # reference peers and benchmarks (their services are stopped below: tests start their own)
    zurl condure nginx-light wrk
)
SERVICES=(zurl condure nginx)

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
    # policy-rc.d 101: packages must not start their services here (zurl, condure and nginx would
    # hold the ports and ipc paths the tests use).
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -q --no-install-recommends "${missing[@]}" || { rm -f /usr/sbin/policy-rc.d; exit 1; }
    rm -f /usr/sbin/policy-rc.d
fi

# Services that an earlier install may have started: stop them (quietly when absent).
for svc in "${SERVICES[@]}"; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
        systemctl stop "$svc" || true
    fi
    service "$svc" stop >/dev/null 2>&1 || true
done
for prog in zurl condure; do
    pkill -x "$prog" 2>/dev/null || true
done
