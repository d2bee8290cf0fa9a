#!/usr/bin/env bash
# The soak run (issue 8): 10 minutes of mixed traffic at a fixed rate against the real gateway
# binary (audit log, melding store, mTLS), printing the gateway's RSS over time, outcomes by
# kind, and meldingen lost — which must be 0. Exits non-zero when anything was lost, a call
# failed unexpectedly, or RSS kept growing.
#
#   tools/soak.sh                       # 10 minutes, 200 calls/s
#   tools/soak.sh --duration=30m --rate=500
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${KNOOPPUNT_SOAK_BUILD_DIR:-$repo/build-tests}"

"$repo/tools/install-deps.sh"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKNOOPPUNT_BUILD_TESTS=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target knooppunt-soak knooppunt-gateway
"$repo/tools/dev-pki.sh" --out "$build/test-pki" >/dev/null

export KNOOPPUNT_TEST_PKI_DIR="$build/test-pki"
export KNOOPPUNT_GATEWAY_BIN="$build/gateway/knooppunt-gateway"
exec "$build/tests/soak/knooppunt-soak" --duration=10m --rate=200 --sample_every=10s "$@"
