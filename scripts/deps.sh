#!/usr/bin/env bash
# The one list of Debian 12 packages zhttpd needs to build, test, fuzz, benchmark and package.
# Run as root on a fresh machine: bash scripts/deps.sh
#
# It installs what is missing and nothing else: it never starts, stops or kills a service or a
# process. Packages are installed under a policy-rc.d guard (scripts/policy-guard.sh), so the
# services of zurl, condure and nginx are not started by their install; a policy-rc.d that was
# already there is put back byte-identical afterwards, even when the install fails. The tests do
# not need those services stopped: they start their own processes on free ports and private paths.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
here=$(dirname "$0")

PACKAGES=(
    # build
    build-essential cmake pkg-config git ca-certificates
    libzmq3-dev libcurl4-openssl-dev libc-ares-dev libssl-dev zlib1g-dev libsystemd-dev libjansson-dev
    # unit tests, coverage, fuzzing
    libcmocka-dev gcovr clang libclang-rt-14-dev llvm clang-format
    # integration tests
    python3 python3-zmq python3-pytest python3-websockets python3-aiohttp curl openssl
    # reference peers and benchmarks (installed with their services kept from starting)
    zurl condure nginx-light wrk pushpin
    # packages: .deb (debhelper provides dh-sequence-installsysusers), .rpm, their checks,
    # the man page and systemd-analyze
    debhelper dpkg-dev fakeroot lintian rpm rpmlint man-db systemd
    # the package test runs the packaged service in a private network namespace (ip, unshare)
    iproute2 util-linux
)

if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: run as root (apt-get install)" >&2
    exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

# shellcheck source=scripts/policy-guard.sh
. "$here/policy-guard.sh"
apt-get update -q
policy_guard_on
apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}"
policy_guard_off
