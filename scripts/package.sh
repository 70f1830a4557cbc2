#!/usr/bin/env bash
# Build the .deb (debian/, dpkg-buildpackage -us -uc -b) and the .rpm (packaging/zhttpd.spec,
# rpmbuild --nodeps) from this tree into dist/. Needs what scripts/deps.sh installs; no root.
# Both are built from a copy of the tree's files (tracked and untracked, not ignored) in a
# temporary directory, so nothing is written beside the repository and build*/ is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^project(zhttpd VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
[ -n "$version" ] || { echo "package.sh: no version in CMakeLists.txt" >&2; exit 1; }
for f in debian/changelog packaging/zhttpd.spec; do
    grep -q "$version" "$f" || { echo "package.sh: $f does not name version $version" >&2; exit 1; }
done

work=$(mktemp -d /tmp/zhttpd-package.XXXXXX)
[ -n "${ZH_PACKAGE_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
src="$work/zhttpd-$version"
mkdir -p "$src" dist
git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -xf - -C "$src"
rm -f dist/zhttpd_* dist/zhttpd-*

echo "== .deb (dpkg-buildpackage -us -uc -b)"
(cd "$src" && dpkg-buildpackage -us -uc -b >"$work/deb.log" 2>&1) || { tail -40 "$work/deb.log"; exit 1; }
cp "$work"/zhttpd_"$version"_*.deb dist/

echo "== .rpm (rpmbuild --nodeps)"
mkdir -p "$work/rpm/SOURCES"
tar -C "$work" -czf "$work/rpm/SOURCES/zhttpd-$version.tar.gz" "zhttpd-$version"
rpmbuild -bb --nodeps --define "_topdir $work/rpm" packaging/zhttpd.spec >"$work/rpm.log" 2>&1 ||
    { tail -40 "$work/rpm.log"; exit 1; }
cp "$work"/rpm/RPMS/*/zhttpd-"$version"-*.rpm dist/

ls -l dist/
