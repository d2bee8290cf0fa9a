#!/usr/bin/env bash
# README command 1: install what is missing, build, make the dev PKI, start the gateway and
# the simulated parties on 127.0.0.1, play the scenario, and stop everything again.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${KNOOPPUNT_BUILD_DIR:-$repo/build}"
run_dir="$(mktemp -d "${TMPDIR:-/tmp}/knooppunt-demo.XXXXXX")"
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$run_dir"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }

say "Installing missing Debian packages"
"$repo/tools/install-deps.sh"

say "Building (this takes a few minutes the first time)"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DKNOOPPUNT_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target knooppunt-gateway knooppunt-party knooppunt-demo knooppunt-audit

say "Making the development PKI (certs/dev)"
"$repo/tools/dev-pki.sh"
pki="$repo/certs/dev"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in 18443 18501 18502; do
  if ! port_free "$port"; then
    echo "port $port on 127.0.0.1 is in use; stop whatever holds it and run again" >&2
    exit 1
  fi
done

wait_for_port_file() {  # file, pid, what
  for _ in $(seq 1 100); do
    [ -s "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || { echo "$3 exited early; its log:" >&2; cat "$run_dir/$3.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$3 did not start within 10 s" >&2; exit 1
}

start_party() {  # name, cert name, port, extra flags...
  local name=$1 cert=$2 port=$3; shift 3
  "$build/tools/demo/knooppunt-party" --name="$name" --listen="127.0.0.1:$port" \
    --cert="$pki/$cert.crt" --key="$pki/$cert.key" --ca="$pki/ca.crt" \
    --gateway_oin=00000099000000000001 --port_file="$run_dir/$cert.port" "$@" \
    >"$run_dir/$cert.out" 2>"$run_dir/$cert.log" &
  pids+=($!)
  wait_for_port_file "$run_dir/$cert.port" "$!" "$cert"
}

say "Starting the simulated parties and the gateway on 127.0.0.1"
start_party "BRP person service" brp 18501 --brp_register="$repo/tools/demo/brp-register.textproto"
start_party "Groningen backoffice" groningen 18502
echo "  BRP person service endpoint   127.0.0.1:18501 (OIN 00000099200000000001)"
echo "  Groningen backoffice endpoint 127.0.0.1:18502 (OIN 00000099300000000014)"

config="$run_dir/gateway.yaml"
# The committed demo config, with the decision log pointed into this run's directory.
sed "s#^instance_id:.*#&\ndecision_log:\n  path: $run_dir/decisions.jsonl#" \
  "$repo/deploy/demo/gateway.yaml" | sed "s#\.\./\.\./#$repo/#g" >"$config"
# The tamper-evident audit log, with audit keys made for this run only (never committed):
# the HMAC key for BSN pseudonyms and the Ed25519 key that signs checkpoints.
"$build/tools/audit/knooppunt-audit" init-keys --dir="$run_dir" >/dev/null
cat >>"$config" <<AUDIT

audit:
  db_path: $run_dir/audit.db
  hmac_key_file: $run_dir/audit-hmac.key
  signing_key_file: $run_dir/audit-signing.key
  checkpoint_every_records: 1000
  checkpoint_every: 1s
AUDIT
"$build/gateway/knooppunt-gateway" --config="$config" --port_file="$run_dir/gateway.port" \
  2>"$run_dir/gateway.log" &
pids+=($!)
wait_for_port_file "$run_dir/gateway.port" "$!" gateway
echo "  Knooppunt gateway             127.0.0.1:18443 (mTLS, agreements from policies/)"

say "Playing the scenario"
status=0
"$build/tools/demo/knooppunt-demo" --pki_dir="$pki" --gateway=127.0.0.1:18443 \
  --decision_log="$run_dir/decisions.jsonl" || status=$?
echo "  What the simulated parties saw:"
cat "$run_dir"/brp.out "$run_dir"/groningen.out 2>/dev/null || true

say "The auditor (auditor.crt): who received data about BSN 999993653, and is the log intact?"
audit_tool="$build/tools/audit/knooppunt-audit"
remote=(--gateway=127.0.0.1:18443 --gateway_oin=00000099000000000001 --ca="$pki/ca.crt")
echo "  Query over the gateway's Auditor service (the BSN is pseudonymised by the tool):"
"$audit_tool" query "${remote[@]}" --cert="$pki/auditor.crt" --key="$pki/auditor.key" \
  --bsn=999993653 --hmac_key="$run_dir/audit-hmac.key" >"$run_dir/auditor.out" || status=1
sed 's/^/    /' "$run_dir/auditor.out"
echo "  The operator's certificate may not read the audit log (separation of duties):"
if "$audit_tool" query "${remote[@]}" --cert="$pki/operator.crt" --key="$pki/operator.key" \
  >/dev/null 2>"$run_dir/operator.err"; then
  echo "    !! the operator could read the audit log" >&2; status=1
else
  sed 's/^/    -> /' "$run_dir/operator.err"
fi
sleep 1.5  # let the gateway sign a checkpoint over the last records (checkpoint_every: 1s)
echo "  Verification of the hash chain and the signed checkpoints (offline, on the database):"
"$audit_tool" verify --db="$run_dir/audit.db" --public_key="$run_dir/audit-signing.pub" \
  >"$run_dir/verify.out" || status=1
sed 's/^/    /' "$run_dir/verify.out"

say "Stopping everything the demo started"
if [ "$status" -ne 0 ]; then
  echo "The demo did not go as expected; the gateway's log:" >&2
  cat "$run_dir/gateway.log" >&2
fi
exit "$status"
