#!/usr/bin/env bash
# Configure and build one flavour of zhttpd into build*/ (release by default).
#   scripts/build.sh            -> build/         (RelWithDebInfo, -Werror)
#   scripts/build.sh asan       -> build-asan/    (ASan + UBSan, -Werror)
#   scripts/build.sh fuzz       -> build-fuzz/    (clang, libFuzzer + ASan + UBSan)
#   scripts/build.sh coverage   -> build-cov/     (gcov, unit tests only)
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
jobs=$(nproc)
case "$flavour" in
    release) dir=build; opts=(-DZH_WERROR=ON) ;;
    asan) dir=build-asan; opts=(-DZH_WERROR=ON -DZH_ASAN=ON -DZH_UBSAN=ON -DCMAKE_BUILD_TYPE=Debug) ;;
    fuzz) dir=build-fuzz; opts=(-DZH_WERROR=ON -DZH_FUZZ=ON -DZH_ASAN=ON -DZH_UBSAN=ON -DZH_TESTS=OFF
                                -DCMAKE_C_COMPILER=clang) ;;
    coverage) dir=build-cov; opts=(-DZH_WERROR=ON -DZH_COVERAGE=ON -DCMAKE_BUILD_TYPE=Debug) ;;
    *) echo "build.sh: unknown flavour '$flavour' (release|asan|fuzz|coverage)" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" "${opts[@]}" >/dev/null
cmake --build "$dir" -j"$jobs"
echo "built $flavour in $dir"
