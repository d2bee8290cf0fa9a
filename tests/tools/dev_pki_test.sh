#!/usr/bin/env bash
# Tests tools/dev-pki.sh: generates a dev PKI into OUT_DIR and checks it with the openssl CLI.
#
#   tests/tools/dev_pki_test.sh OUT_DIR
#
# OUT_DIR is (re)generated with --force; it must be absent, empty or a previous dev PKI.
# Set DEV_PKI=/path/to/dev-pki.sh to test another copy of the script.
set -euo pipefail

prog=dev_pki_test
if [ $# -ne 1 ] || [ -z "$1" ]; then echo "usage: $0 OUT_DIR" >&2; exit 2; fi
out=$1

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
script=${DEV_PKI:-$here/../../tools/dev-pki.sh}
[ -f "$script" ] || { echo "$prog: FAIL: script not found: $script" >&2; exit 1; }

checks=0
fail() { echo "$prog: FAIL: $*" >&2; exit 1; }
pass() { checks=$((checks + 1)); }

parties=(gateway verhuizen brp groningen zaanstad amsterdam auditor operator)
declare -A oin=(
  [gateway]=00000099000000000001 [verhuizen]=00000099100000000001
  [brp]=00000099200000000001 [groningen]=00000099300000000014
  [zaanstad]=00000099300000000479 [amsterdam]=00000099300000000363
  [auditor]=00000099400000000001 [operator]=00000099500000000001
)

# verify ARGS... : runs openssl verify; sets o to its output and vrc to its exit status.
o='' vrc=0
verify() { vrc=0; o=$(openssl verify "$@" 2>&1) || vrc=$?; }

# serial_numbers CERT: prints the subject serialNumber values, one per line.
serial_numbers() {
  openssl x509 -noout -subject -nameopt multiline -in "$1" |
    sed -n 's/^ *serialNumber *= *//p'
}

# --- 1. fresh generation --------------------------------------------------------
start=$(date +%s%N)
first_log=$(bash "$script" --out "$out" --force 2>&1) || { echo "$first_log" >&2; fail "dev-pki.sh --force exited non-zero"; }
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
pass
out=$(cd "$out" && pwd)
[ -f "$out/COMPLETE" ] || fail "COMPLETE missing in $out"; pass

expected_files=(ca.key ca.crt other-ca.key other-ca.crt crl.pem README COMPLETE)
for n in "${parties[@]}" foreign no-oin two-oins bad-oin expired not-yet-valid revoked no-client-auth; do
  expected_files+=("$n.key" "$n.crt")
done
for f in "${expected_files[@]}"; do
  [ -e "$out/$f" ] || fail "missing: $out/$f"
  [ -s "$out/$f" ] || [ "$f" = COMPLETE ] || fail "empty: $out/$f"
  pass
done

# Permissions: directory 0700, every key 0600.
[ "$(stat -c %a "$out")" = 700 ] || fail "$out has mode $(stat -c %a "$out"), want 700"; pass
for k in "$out"/*.key; do
  [ "$(stat -c %a "$k")" = 600 ] || fail "$k has mode $(stat -c %a "$k"), want 600"
  pass
done
ls -d "$out".tmp.* >/dev/null 2>&1 && fail "temporary directory left behind next to $out"; pass

# One line printed per certificate.
lines=$(grep -c '^dev-pki: made [^ ]*\.crt ' <<<"$first_log" || true)
[ "$lines" -eq 18 ] || fail "expected 18 'made X.crt' lines, got $lines"; pass

# CA properties.
openssl x509 -noout -subject -in "$out/ca.crt" | grep -q 'CN = Knooppunt Dev CA' || fail "ca.crt subject is not Knooppunt Dev CA"; pass
openssl x509 -noout -ext basicConstraints -in "$out/ca.crt" | grep -q 'critical' || fail "ca.crt basicConstraints not critical"; pass
openssl x509 -noout -ext basicConstraints -in "$out/ca.crt" | grep -q 'CA:TRUE' || fail "ca.crt is not CA:TRUE"; pass
openssl x509 -noout -checkend $((9 * 365 * 86400)) -in "$out/ca.crt" >/dev/null || fail "ca.crt is not valid for ~10 years"; pass
openssl x509 -noout -text -in "$out/ca.key" >/dev/null 2>&1 && fail "ca.key parses as a certificate?"; pass
openssl pkey -noout -text -in "$out/ca.key" | grep -q 'P-256' || fail "ca.key is not an EC P-256 key"; pass

# --- 2. party certificates ------------------------------------------------------------
for n in "${parties[@]}"; do
  verify -CAfile "$out/ca.crt" "$out/$n.crt"
  [ "$vrc" -eq 0 ] || fail "$n.crt does not verify against ca.crt: $o"; pass
  verify -CAfile "$out/ca.crt" -crl_check -CRLfile "$out/crl.pem" "$out/$n.crt"
  [ "$vrc" -eq 0 ] || fail "$n.crt does not pass the CRL check: $o"; pass
  verify -CAfile "$out/ca.crt" -purpose sslclient "$out/$n.crt"
  [ "$vrc" -eq 0 ] || fail "$n.crt is not valid for client auth: $o"; pass
  verify -CAfile "$out/ca.crt" -purpose sslserver "$out/$n.crt"
  [ "$vrc" -eq 0 ] || fail "$n.crt is not valid for server auth: $o"; pass
  got=$(serial_numbers "$out/$n.crt")
  [ "$got" = "${oin[$n]}" ] || fail "$n.crt serialNumber is '$got', want ${oin[$n]}"; pass
  openssl x509 -noout -subject -in "$out/$n.crt" | grep -q "CN = $n.knooppunt.test" || fail "$n.crt has wrong CN"; pass
  openssl x509 -noout -ext subjectAltName -in "$out/$n.crt" |
    grep -q "DNS:localhost, DNS:$n.knooppunt.test, IP Address:127.0.0.1" || fail "$n.crt has wrong subjectAltName"; pass
  openssl x509 -noout -text -in "$out/$n.crt" | grep -q 'CA:FALSE' || fail "$n.crt is not CA:FALSE"; pass
  [ "$(openssl x509 -noout -pubkey -in "$out/$n.crt")" = "$(openssl pkey -pubout -in "$out/$n.key")" ] ||
    fail "$n.key does not match $n.crt"; pass
done

# --- 3. negative-test certificates ----------------------------------------------------
verify -CAfile "$out/ca.crt" "$out/foreign.crt"
[ "$vrc" -ne 0 ] || fail "foreign.crt verifies against ca.crt but must not"; pass
verify -CAfile "$out/other-ca.crt" "$out/foreign.crt"
[ "$vrc" -eq 0 ] || fail "foreign.crt does not verify against other-ca.crt: $o"; pass
[ "$(serial_numbers "$out/foreign.crt")" = 00000099300000000014 ] || fail "foreign.crt does not claim Groningen's OIN"; pass

verify -CAfile "$out/ca.crt" "$out/expired.crt"
[ "$vrc" -ne 0 ] || fail "expired.crt verifies but must not"; pass
grep -q 'certificate has expired' <<<"$o" || fail "expired.crt fails without an expiry error: $o"; pass

verify -CAfile "$out/ca.crt" "$out/not-yet-valid.crt"
[ "$vrc" -ne 0 ] || fail "not-yet-valid.crt verifies but must not"; pass
grep -q 'certificate is not yet valid' <<<"$o" || fail "not-yet-valid.crt fails without a not-yet-valid error: $o"; pass

verify -CAfile "$out/ca.crt" "$out/revoked.crt"
[ "$vrc" -eq 0 ] || fail "revoked.crt should verify without a CRL check: $o"; pass
verify -CAfile "$out/ca.crt" -crl_check -CRLfile "$out/crl.pem" "$out/revoked.crt"
[ "$vrc" -ne 0 ] || fail "revoked.crt passes -crl_check but must not"; pass
grep -q 'certificate revoked' <<<"$o" || fail "revoked.crt fails without a revocation error: $o"; pass
hash=$(openssl x509 -hash -noout -in "$out/ca.crt")
[ -f "$out/crl/$hash.r0" ] || fail "crl/$hash.r0 missing"; pass
cmp -s "$out/crl.pem" "$out/crl/$hash.r0" || fail "crl/$hash.r0 differs from crl.pem"; pass
openssl crl -noout -in "$out/crl.pem" -CAfile "$out/ca.crt" 2>&1 | grep -q 'verify OK' || fail "crl.pem is not signed by ca.crt"; pass

verify -CAfile "$out/ca.crt" "$out/no-client-auth.crt"
[ "$vrc" -eq 0 ] || fail "no-client-auth.crt should chain to ca.crt: $o"; pass
verify -CAfile "$out/ca.crt" -purpose sslclient "$out/no-client-auth.crt"
[ "$vrc" -ne 0 ] || fail "no-client-auth.crt is accepted for client auth but must not"; pass

c=$(serial_numbers "$out/two-oins.crt" | wc -l)
[ "$c" -eq 2 ] || fail "two-oins.crt has $c serialNumber entries, want 2"; pass
[ "$(serial_numbers "$out/two-oins.crt" | tr '\n' ' ')" = "00000099300000000014 00000099300000000479 " ] ||
  fail "two-oins.crt has the wrong serialNumber values"; pass
c=$(serial_numbers "$out/no-oin.crt" | wc -l)
[ "$c" -eq 0 ] || fail "no-oin.crt has $c serialNumber entries, want 0"; pass
[ "$(serial_numbers "$out/bad-oin.crt")" = 12345 ] || fail "bad-oin.crt serialNumber is not 12345"; pass
for n in no-oin two-oins bad-oin; do
  verify -CAfile "$out/ca.crt" "$out/$n.crt"
  [ "$vrc" -eq 0 ] || fail "$n.crt should chain to ca.crt: $o"; pass
done

# --- 4. idempotency ---------------------------------------------------------------------
before=$(cd "$out" && find . -type f -exec sha256sum {} + | sort)
second_log=$(bash "$script" --out "$out" 2>&1) || { echo "$second_log" >&2; fail "second run exited non-zero"; }
pass
[ "$second_log" = "dev-pki: $out already complete" ] || fail "second run is not a no-op, printed: $second_log"; pass
after=$(cd "$out" && find . -type f -exec sha256sum {} + | sort)
[ "$before" = "$after" ] || fail "second run changed files in $out"; pass

# --force regenerates (a new CA key).
old_ca=$(sha256sum <"$out/ca.crt")
bash "$script" --out "$out" --force >/dev/null 2>&1 || fail "--force run exited non-zero"; pass
[ "$(sha256sum <"$out/ca.crt")" != "$old_ca" ] || fail "--force did not regenerate ca.crt"; pass
verify -CAfile "$out/ca.crt" "$out/gateway.crt"
[ "$vrc" -eq 0 ] || fail "gateway.crt does not verify after --force: $o"; pass

echo "$prog: first run took ${elapsed_ms} ms"
echo "$prog: $checks checks passed"
