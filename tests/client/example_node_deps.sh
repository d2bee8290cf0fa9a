#!/usr/bin/env bash
# ctest fixture: installs the Node example's packages (examples/node/package-lock.json) from
# the npm registry into the build directory with `npm ci`. Idempotent: when the installed
# packages match the lock file, it does nothing (and needs no network).
#
#   example_node_deps.sh <examples/node source dir> <destination dir>
set -euo pipefail

src="$1"
dest="$2"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "example_node_deps: node and npm are needed for the Node example;" \
       "tools/install-deps.sh installs Debian's nodejs and npm when node is absent" >&2
  exit 1
fi

stamp="$dest/.installed-lock.sha256"
want="$(sha256sum "$src/package-lock.json" | cut -d' ' -f1)"
if [ -d "$dest/node_modules" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
  echo "example_node_deps: packages already installed in $dest/node_modules"
  exit 0
fi

mkdir -p "$dest"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
rm -f "$stamp"
log="$dest/npm-ci.log"
if ! (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error >"$log" 2>&1); then
  cat "$log" >&2
  echo "example_node_deps: 'npm ci' failed in $dest (output above). The Node example needs" \
       "@grpc/grpc-js, @grpc/proto-loader and protobufjs from the npm registry: check that the" \
       "registry is reachable (network, proxy: npm config get registry) and run the tests again." >&2
  exit 1
fi
echo "$want" >"$stamp"
echo "example_node_deps: installed $(ls "$dest/node_modules" | wc -l) packages into $dest/node_modules"
