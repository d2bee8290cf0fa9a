#!/usr/bin/env bash
# The gateway a new party tests against (docs/onboarding.md, step 4): the demo federation's
# gateway (deploy/demo/gateway.yaml) on 127.0.0.1:18443 with the BRP person service
# (127.0.0.1:18501) and Groningen's backoffice endpoint (127.0.0.1:18502), in the foreground
# until Ctrl-C. Unlike tools/demo.sh it plays no scenario: it waits for your backoffice.
#
#   examples/demo-gateway.sh [--policies DIR]
#
# --policies: a directory with registry.yaml and agreements/ (default: the repository's
# policies/). The gateway re-reads them when they change, so a registry entry or agreement
# added while it runs is in force within seconds (a broken one is rejected and logged).
# Builds what is missing into $KNOOPPUNT_BUILD_DIR (default build/, as tools/demo.sh does);
# the dev PKI is certs/dev (tools/dev-pki.sh).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${KNOOPPUNT_BUILD_DIR:-$repo/build}"
policies="$repo/policies"
if [ "${1:-}" = "--policies" ] && [ -n "${2:-}" ]; then
  policies="$(cd "$2" && pwd)"
elif [ $# -gt 0 ]; then
  echo "usage: $0 [--policies DIR]" >&2
  exit 2
fi
[ -f "$policies/registry.yaml" ] || { echo "no registry.yaml in $policies" >&2; exit 2; }

run_dir="$(mktemp -d "${TMPDIR:-/tmp}/knooppunt-demo-gateway.XXXXXX")"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

if [ ! -x "$build/gateway/knooppunt-gateway" ] || [ ! -x "$build/tools/demo/knooppunt-party" ]; then
  echo "== Building the gateway and the demo parties into $build"
  cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DKNOOPPUNT_BUILD_TESTS=OFF >/dev/null
  cmake --build "$build" -j"$(nproc)" --target knooppunt-gateway knooppunt-party
fi
"$repo/tools/dev-pki.sh" >/dev/null
pki="$repo/certs/dev"

wait_for_port_file() {  # file, pid, name
  for _ in $(seq 1 100); do
    [ -s "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || { echo "$3 exited early; its log:" >&2; cat "$run_dir/$3.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$3 did not start within 10 s" >&2
  exit 1
}

start_party() {  # name, cert name, port, extra flags...
  local name=$1 cert=$2 port=$3
  shift 3
  "$build/tools/demo/knooppunt-party" --name="$name" --listen="127.0.0.1:$port" \
    --cert="$pki/$cert.crt" --key="$pki/$cert.key" --ca="$pki/ca.crt" \
    --gateway_oin=00000099000000000001 --port_file="$run_dir/$cert.port" "$@" \
    2>"$run_dir/$cert.log" &
  pids+=($!)
  wait_for_port_file "$run_dir/$cert.port" "$!" "$cert"
}

start_party "BRP person service" brp 18501 --brp_register="$repo/tools/demo/brp-register.textproto"
start_party "Groningen backoffice" groningen 18502

# The committed demo config, with the policies from --policies and the decision log and
# melding store in this run's directory.
config="$run_dir/gateway.yaml"
sed -e "s#\.\./\.\./policies#$policies#g" -e "s#\.\./\.\./#$repo/#g" \
  -e "s#^instance_id:.*#&\ndecision_log:\n  path: $run_dir/decisions.jsonl#" \
  "$repo/deploy/demo/gateway.yaml" >"$config"
"$build/gateway/knooppunt-gateway" --config="$config" --port_file="$run_dir/gateway.port" \
  2>"$run_dir/gateway.log" &
pids+=($!)
wait_for_port_file "$run_dir/gateway.port" "$!" gateway

cat <<INFO
Knooppunt demo gateway on 127.0.0.1:18443 (gateway OIN 00000099000000000001, CA $pki/ca.crt)
  policies        $policies (re-read on change)
  BRP endpoint    127.0.0.1:18501   Groningen endpoint 127.0.0.1:18502
  decision log    $run_dir/decisions.jsonl
  gateway log     $run_dir/gateway.log
Ctrl-C stops everything.
INFO
wait "${pids[@]}"
