#!/usr/bin/env bash
# Builds the Debian package (CPack, deploy/package.cmake): binaries, example configuration,
# systemd unit, maintainer scripts that create the `knooppunt` system user.
#
#   tools/package.sh [--build-dir DIR] [--out DIR]   install deps, configure Release, build, pack
#   tools/package.sh --existing DIR [--out DIR]      pack an already built tree (no deps, no build)
#
# Release build without tests or benchmarks in build-package/ by default; the .deb is copied
# to --out (default: the build directory) and its path printed last. The Dockerfile
# (deploy/docker/Dockerfile) runs this script; CI packs its test build with --existing
# (tests/deploy).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$repo/build-package"
out=""
existing=0
die() { echo "package: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) [ $# -ge 2 ] || die "--build-dir needs a directory"; build=$2; shift 2 ;;
    --existing) [ $# -ge 2 ] || die "--existing needs a build directory"; build=$2; existing=1; shift 2 ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done

if [ "$existing" -eq 0 ]; then
  "$repo/tools/install-deps.sh"
  cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DKNOOPPUNT_BUILD_TESTS=OFF \
    -DKNOOPPUNT_BUILD_BENCHMARKS=OFF >/dev/null
  cmake --build "$build" -j"$(nproc)"
else
  [ -f "$build/CPackConfig.cmake" ] || die "$build is not a configured build tree (no CPackConfig.cmake)"
fi

# Pack in a directory of our own so concurrent runs on one tree do not collide.
stage="$(mktemp -d "${TMPDIR:-/tmp}/knooppunt-package.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
if ! (cd "$build" && cpack -G DEB -B "$stage" >"$stage/cpack.log" 2>&1); then
  cat "$stage/cpack.log" >&2
  die "cpack failed"
fi
deb="$(ls "$stage"/*.deb 2>/dev/null | head -n1)"
[ -n "$deb" ] || { cat "$stage/cpack.log" >&2; die "cpack made no .deb"; }
out="${out:-$build}"
mkdir -p "$out"
cp "$deb" "$out/"
echo "$out/$(basename "$deb")"
