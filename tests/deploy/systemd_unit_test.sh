#!/usr/bin/env bash
# systemd-analyze verify of deploy/systemd/knooppunt-gateway.service. verify insists that
# ExecStart's binary exists, so a copy with /usr/bin/knooppunt-gateway replaced by the binary
# of this build is verified (the unit is otherwise unchanged). Then the offline
# `systemd-analyze security` exposure must stay at or below 2.0 ("OK").
set -euo pipefail
src="${KNOOPPUNT_SOURCE_DIR:?}"
bin="${KNOOPPUNT_BIN_DIR:?}/gateway/knooppunt-gateway"
work="${1:?work dir}"
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v systemd-analyze >/dev/null || fail "systemd-analyze not installed (tools/install-deps.sh installs systemd)"
[ -x "$bin" ] || fail "$bin not built"
rm -rf "$work"; mkdir -p "$work"
unit="$work/knooppunt-gateway.service"
sed "s#/usr/bin/knooppunt-gateway#$bin#g" "$src/deploy/systemd/knooppunt-gateway.service" >"$unit"

out="$(systemd-analyze verify "$unit" 2>&1)" || { echo "$out"; fail "systemd-analyze verify"; }
# verify exits 0 on some warnings; a line naming our unit is a finding.
if grep -q "knooppunt-gateway.service" <<<"$out"; then echo "$out"; fail "systemd-analyze verify reported"; fi
echo "verify: ok"

for key in User=knooppunt ProtectSystem=strict NoNewPrivileges=yes PrivateTmp=yes ProtectHome=yes \
           "CapabilityBoundingSet=" "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" \
           SystemCallFilter=@system-service MemoryDenyWriteExecute=yes ReadWritePaths=/var/lib/knooppunt \
           'ExecReload=/bin/kill -HUP $MAINPID' LimitNOFILE=65536; do
  grep -qxF "$key" "$unit" || fail "unit lacks $key"
done
# TimeoutStopSec must exceed the example config's shutdown_grace.
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)$/\1/p' "$unit")
grace=$(sed -n 's/^shutdown_grace: \([0-9]*\)s$/\1/p' "$src/deploy/config/gateway.yaml")
[ -n "$stop" ] && [ -n "$grace" ] && [ "$stop" -gt "$grace" ] || fail "TimeoutStopSec ($stop) must exceed shutdown_grace ($grace)"

sec="$(systemd-analyze security --offline=yes "$unit" 2>&1 | tail -n1)"
echo "$sec"
score=$(sed -n 's/.*exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$sec")
[ -n "$score" ] || fail "no exposure score"
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "exposure $score > 2.0"
echo "PASS"
