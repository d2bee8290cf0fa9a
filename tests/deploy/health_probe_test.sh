#!/usr/bin/env bash
# knooppunt-health, the probe of deploy/kubernetes/deployment.yaml, against a real gateway
# started with the dev PKI: SERVING with nothing but --config (plus the port, since the test
# listens on port 0), a refusal when the OIN is wrong, and failure when the gateway is gone.
set -euo pipefail
src="${KNOOPPUNT_SOURCE_DIR:?}"
bins="${KNOOPPUNT_BIN_DIR:?}"
pki="${KNOOPPUNT_TEST_PKI_DIR:?}"
work="${1:?work dir}"
gateway="$bins/gateway/knooppunt-gateway"
health="$bins/tools/health/knooppunt-health"
fail() { echo "FAIL: $*" >&2; [ -f "$work/gateway.log" ] && tail -n 20 "$work/gateway.log" >&2; exit 1; }
rm -rf "$work"; mkdir -p "$work"

cat >"$work/gateway.yaml" <<YAML
instance_id: deploy-health-test
listen: 127.0.0.1:0
tls:
  cert_file: $pki/gateway.crt
  key_file: $pki/gateway.key
  client_ca_file: $pki/ca.crt
upstream_tls:
  cert_file: $pki/gateway.crt
  key_file: $pki/gateway.key
  ca_file: $pki/ca.crt
registry_file: $src/policies/registry.yaml
agreement_dirs: [$src/policies/agreements]
melding:
  store_path: $work/meldingen.db
shutdown_grace: 1s
YAML

"$gateway" --config="$work/gateway.yaml" --port_file="$work/port" 2>"$work/gateway.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || fail "gateway did not start"
port=$(cat "$work/port")

# The health monitor may need its first tick before SERVING.
ok=0
for _ in $(seq 1 30); do
  if out=$("$health" --config="$work/gateway.yaml" --gateway="127.0.0.1:$port" 2>&1); then ok=1; break; fi
  sleep 0.2
done
[ "$ok" = 1 ] || fail "probe did not report SERVING: $out"
grep -q "SERVING" <<<"$out" || fail "unexpected output: $out"
echo "probe: $out"

"$health" --config="$work/gateway.yaml" --gateway="127.0.0.1:$port" --service=knooppunt.exchange.v1.Exchange >/dev/null \
  || fail "Exchange service not SERVING"
"$health" --config="$work/gateway.yaml" --gateway="127.0.0.1:$port" --any_status >/dev/null \
  || fail "--any_status failed"
# Explicit flags instead of --config (a client certificate of another organisation works too).
gw_oin=$(openssl x509 -noout -subject -in "$pki/gateway.crt" | sed -n 's/.*serialNumber *= *\([0-9]\{20\}\).*/\1/p')
[ -n "$gw_oin" ] || fail "no OIN in $pki/gateway.crt"
"$health" --gateway="127.0.0.1:$port" --gateway_oin="$gw_oin" \
  --cert="$pki/groningen.crt" --key="$pki/groningen.key" --ca="$pki/ca.crt" >/dev/null \
  || fail "probe with explicit flags failed"
# A wrong OIN for the gateway: the probe refuses the server.
if "$health" --config="$work/gateway.yaml" --gateway="127.0.0.1:$port" --gateway_oin=00000099999999999999 >/dev/null 2>&1; then
  fail "probe accepted a gateway with another OIN"
fi
# Usage errors are exit 2.
set +e; "$health" >/dev/null 2>&1; rc=$?; set -e
[ "$rc" = 2 ] || fail "no arguments: exit $rc, want 2"

# Draining (knooppunt-admin drain, operator certificate): NOT_SERVING, so readiness fails
# while liveness (--any_status) still passes.
"$bins/tools/admin/knooppunt-admin" --gateway="127.0.0.1:$port" --gateway_oin="$gw_oin" \
  --cert="$pki/operator.crt" --key="$pki/operator.key" --ca="$pki/ca.crt" drain >/dev/null || fail "drain"
drained=0
for _ in $(seq 1 30); do
  if out=$("$health" --config="$work/gateway.yaml" --gateway="127.0.0.1:$port" 2>&1); then sleep 0.2; continue; fi
  drained=1; break
done
[ "$drained" = 1 ] || fail "probe still SERVING after drain: $out"
grep -q "NOT_SERVING" <<<"$out" || fail "unexpected output after drain: $out"
echo "probe after drain: $out"
"$health" --config="$work/gateway.yaml" --gateway="127.0.0.1:$port" --any_status >/dev/null \
  || fail "--any_status must pass while NOT_SERVING"

kill "$pid"; wait "$pid" 2>/dev/null || true
trap - EXIT
if "$health" --config="$work/gateway.yaml" --gateway="127.0.0.1:$port" --any_status --timeout_seconds=1 >/dev/null 2>&1; then
  fail "probe succeeded with the gateway stopped"
fi
echo "PASS"
