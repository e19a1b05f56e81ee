#!/bin/sh
# Builds the Debian package (dpkg-buildpackage -us -uc -b) from a copy of
# the tree in OUTDIR/tpops-VERSION, so that the build touches neither the
# working tree nor its parent; the .deb lands in OUTDIR (default build-deb).
# Prints the path of the .deb on its last line.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-build-deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)
printf '*\n' > "$out/.gitignore"
version=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Version)
stage=$out/tpops-$version
rm -rf "$stage"
mkdir -p "$stage"
cd "$top"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	# tracked and new files, not what .gitignore names (build outputs)
	git ls-files -co --exclude-standard | while IFS= read -r f; do
		[ -e "$f" ] && printf '%s\n' "$f"
	done | tar -cf - -T - | tar -xf - -C "$stage"
else
	tar -cf - --exclude='./build*' --exclude=./run --exclude=./.git . | tar -xf - -C "$stage"
fi
rm -f "$out"/tpops_"$version"_*.deb "$out"/tpops-dbgsym_"$version"_*.deb
(cd "$stage" && dpkg-buildpackage -us -uc -b)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb=$out/tpops_${version}_$arch.deb
[ -f "$deb" ] || { echo "build-deb: $deb was not built" >&2; exit 1; }
echo "$deb"
