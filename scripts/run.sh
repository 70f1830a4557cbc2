#!/usr/bin/env bash
# Fresh Debian 12, as root: install every dependency, build, and run zhttpd on the default config
# (packaging/zhttpd.conf: loopback only). Ctrl-C (SIGINT) or SIGTERM stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh release
mkdir -p /run/zhttpd 2>/dev/null || true
exec ./build/zhttpd --config packaging/zhttpd.conf "$@"
