#!/usr/bin/env bash
# Fresh Debian 12, as root: install every dependency, build every flavour and run the whole test suite:
#   1. release build (-Werror): cmocka unit tests via ctest
#   2. ASan+UBSan build: unit tests again, then the pytest integration suite against this build
#      (every daemon the tests start is checked for sanitizer reports)
#   3. coverage build: line coverage of shared/proto by the unit tests (gcovr)
#   4. packages: .deb and .rpm into dist/ (scripts/package.sh), checked by tests/package (lintian,
#      rpmlint, file lists, install under the policy-rc.d guard, the packaged service's settings, purge)
#   5. fuzz build (clang/libFuzzer): each fuzz target for ZH_FUZZ_SECONDS (default 30) on its seed corpus
# Prints the ctest and pytest summary lines and the total wall time.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
fail=0
step() { printf '\n==== %s ====\n' "$*"; }

step "dependencies"
bash scripts/deps.sh || exit 1

step "format (clang-format --dry-run -Werror)"
if ! git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror; then
    echo "clang-format: files above need formatting"
    fail=1
else
    echo "clang-format: clean"
fi

step "release build + unit tests"
bash scripts/build.sh release || exit 1
ctest --test-dir build --output-on-failure -j"$(nproc)" || fail=1

step "ASan+UBSan build + unit tests"
bash scripts/build.sh asan || exit 1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
ctest --test-dir build-asan --output-on-failure -j"$(nproc)" || fail=1

step "integration tests (pytest, ASan+UBSan binary)"
ZH_BUILD_DIR=$PWD/build-asan /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration
rc=$?
if [ $rc -eq 5 ]; then
    echo "pytest collected no tests: that is a broken suite, not a pass"
    fail=1
elif [ $rc -ne 0 ]; then
    fail=1
fi

step "coverage of shared/proto (unit tests, must be >= 80 % of lines)"
if bash scripts/build.sh coverage >/dev/null; then
    ctest --test-dir build-cov -j"$(nproc)" >/dev/null 2>&1 || true
    cov=$(gcovr -r . --filter 'shared/proto/' build-cov -s 2>&1 | tail -4)
    echo "$cov"
    pct=$(echo "$cov" | sed -n 's/^lines: \([0-9.]*\)%.*/\1/p')
    if [ -z "$pct" ] || ! awk -v p="$pct" 'BEGIN { exit !(p >= 80) }'; then
        echo "coverage of shared/proto below 80 % (or not measured)"
        fail=1
    fi
else
    fail=1
fi

step "packages (scripts/package.sh, then tests/package: lintian, rpmlint, contents, install, purge)"
if bash scripts/package.sh; then
    /usr/bin/python3 -m pytest -v -s -p no:cacheprovider tests/package || fail=1
else
    echo "package.sh: FAILED"
    fail=1
fi

step "fuzz targets (${ZH_FUZZ_SECONDS:-30} s each)"
bash scripts/build.sh fuzz || exit 1
for f in build-fuzz/tests/fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    name=$(basename "$f"); corpus=tests/fuzz/corpus/${name#fuzz_}
    work=$(mktemp -d); cp -r "$corpus"/. "$work"/ 2>/dev/null || true
    if "$f" -max_total_time="${ZH_FUZZ_SECONDS:-30}" -print_final_stats=0 "$work" >"$work.log" 2>&1; then
        echo "$name: ok ($(grep -Eo '#[0-9]+' "$work.log" | tail -1 | tr -d '#') runs)"
    else
        echo "$name: FAILED"; tail -40 "$work.log"; fail=1
    fi
    rm -rf "$work" "$work.log"
done

end=$(date +%s)
step "summary"
echo "wall time: $((end - start)) s"
if [ $fail -ne 0 ]; then
    echo "RESULT: FAILED"
    exit 1
fi
echo "RESULT: all passed"
