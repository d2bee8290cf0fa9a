#!/usr/bin/env bash
# Generates the Python modules for Knooppunt's API and domain types from proto/ with Debian's
# protoc (protobuf-compiler) and gRPC Python plugin (protobuf-compiler-grpc), so the generated
# code matches Debian's python3-protobuf and python3-grpcio exactly.
#
#   examples/python/generate_stubs.sh [OUT_DIR]     (default: examples/python/gen)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_dir="$(cd "$here/../../proto" && pwd)"
out="${1:-$here/gen}"

plugin="$(command -v grpc_python_plugin || true)"
if [ -z "$plugin" ] || ! command -v protoc >/dev/null; then
  echo "generate_stubs: needs protoc and grpc_python_plugin" \
       "(apt-get install protobuf-compiler protobuf-compiler-grpc)" >&2
  exit 1
fi

mkdir -p "$out"
cd "$proto_dir"
# Messages for everything the example uses; gRPC stubs only for the services.
protoc -I . --python_out="$out" \
  knooppunt/options/v1/options.proto \
  gemeente/common/v1/common.proto gemeente/brp/v1/brp.proto \
  gemeente/verhuizen/v1/verhuizen.proto gemeente/zaken/v1/zaken.proto \
  gemeente/overlijden/v1/overlijden.proto \
  knooppunt/exchange/v1/envelope.proto knooppunt/exchange/v1/melding.proto \
  knooppunt/exchange/v1/error_details.proto
protoc -I . --python_out="$out" --grpc_out="$out" --plugin=protoc-gen-grpc="$plugin" \
  knooppunt/exchange/v1/exchange.proto
# grpc_by_hand.py: gRPC's health service and the part of server reflection that lists
# services (wire-compatible subsets kept with the observability tests; Debian's python3-grpcio
# ships neither). Messages only, in their own directory: a package named "grpc" on sys.path
# would shadow grpcio itself, so grpc_by_hand.py loads these two files by path.
testdata="$here/../../tests/observability/testdata"
mkdir -p "$out/standard"
protoc -I "$testdata" --python_out="$out/standard" \
  grpc/health/v1/health.proto grpc/reflection/v1alpha/reflection.proto
echo "generate_stubs: Python modules in $out"
