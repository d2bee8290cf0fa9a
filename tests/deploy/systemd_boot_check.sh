#!/usr/bin/env bash
# MANUAL check (root, not part of ctest): installs the .deb on a throw-away overlay of / and
# runs the gateway under a real systemd as PID 1 in private mount/pid/uts/ipc namespaces, so
# the unit's sandbox (ProtectSystem, PrivateUsers, SystemCallFilter, MemoryDenyWriteExecute,
# ...) is exercised on a machine or container whose PID 1 is not systemd. The host's files are
# untouched (everything is written to the overlay's upper directory, removed at the end); the
# network namespace is shared, so port 8443 and 9464 must be free.
#
#   tests/deploy/systemd_boot_check.sh PACKAGE.deb PKI_DIR    (PKI_DIR from tools/dev-pki.sh)
#
# Checks: dpkg -i in the overlay, `systemctl start` (ExecStartPre --check, then the gateway as
# user knooppunt inside the sandbox), knooppunt-health SERVING, the metrics gauge,
# `systemctl reload` (SIGHUP -> policy_reloaded), files in /var/lib/knooppunt 0600,
# `systemd-analyze security` of the running unit, `systemctl stop` (-> stopped, audit verifies).
set -euo pipefail
deb="$(realpath "${1:?usage: systemd_boot_check.sh PACKAGE.deb PKI_DIR}")"
pki="$(realpath "${2:?usage: systemd_boot_check.sh PACKAGE.deb PKI_DIR}")"
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 2; }
work="$(mktemp -d /tmp/knooppunt-boot.XXXXXX)"
fail() { echo "FAIL: $*" >&2; exit 1; }

cat >"$work/boot.sh" <<BOOT
#!/bin/bash
set -e
M=$work/merged
mkdir -p $work/upper $work/work \$M
mount -t overlay overlay -o lowerdir=/,upperdir=$work/upper,workdir=$work/work \$M
mount -t proc proc \$M/proc
mount --rbind /sys \$M/sys
mount --rbind /dev \$M/dev
mount -t tmpfs tmpfs \$M/run
mount -t tmpfs tmpfs \$M/tmp
cp "$deb" \$M/root/knooppunt.deb
chroot \$M dpkg -i /root/knooppunt.deb
for f in gateway.key gateway.crt ca.crt; do install -m 0600 "$pki/\$f" \$M/etc/knooppunt/tls/\$f; done
cp "$pki"/crl/* \$M/etc/knooppunt/tls/crl/
chroot \$M chown -R knooppunt:knooppunt /etc/knooppunt/tls
# Only what the test needs is started: no udev, no sysinit (they would act on the host).
mkdir -p \$M/etc/systemd/system/knooppunt-gateway.service.d
printf '[Unit]\nDefaultDependencies=no\n' >\$M/etc/systemd/system/knooppunt-gateway.service.d/test.conf
printf '[Unit]\nDefaultDependencies=no\nWants=systemd-journald.socket systemd-journald.service\n' >\$M/etc/systemd/system/kp-test.target
mount --make-rprivate /
mkdir -p \$M/.oldroot
cd \$M
pivot_root . .oldroot
umount -l /.oldroot
exec /lib/systemd/systemd --system --unit=kp-test.target --log-target=journal --show-status=no
BOOT
chmod +x "$work/boot.sh"
unshare --mount --pid --fork --uts --ipc --propagation private "$work/boot.sh" >"$work/boot.log" 2>&1 &
sp=""
for _ in $(seq 1 100); do
  sp="$(pgrep -f -- "--unit=kp-test.target" | head -n1 || true)"
  [ -n "$sp" ] && [ -S "/proc/$sp/root/run/systemd/private" ] && break
  sleep 0.2
done
[ -n "$sp" ] || { cat "$work/boot.log"; fail "systemd did not start"; }
cleanup() { kill -9 "$sp" 2>/dev/null || true; sleep 0.5; rm -rf "$work"; }
trap cleanup EXIT
in_ns() { nsenter -t "$sp" -m -p -u -i -r -w "$@"; }
sleep 1
cat "$work/boot.log"

in_ns systemctl start knooppunt-gateway || { in_ns journalctl -u knooppunt-gateway --no-pager | tail -n 30; fail "start"; }
ok=0
for _ in $(seq 1 30); do
  if in_ns runuser -u knooppunt -- knooppunt-health --config=/etc/knooppunt/gateway.yaml; then ok=1; break; fi
  sleep 0.5
done
[ "$ok" = 1 ] || { in_ns journalctl -u knooppunt-gateway --no-pager | tail -n 30; fail "not SERVING"; }
in_ns curl -sf http://127.0.0.1:9464/metrics | grep -q '^knooppunt_health_serving 1' || fail "metrics gauge"
in_ns systemctl reload knooppunt-gateway
sleep 1
in_ns journalctl -u knooppunt-gateway --no-pager | grep -q '"event":"policy_reloaded"' || fail "reload"
in_ns stat -c '%a %U %n' /var/lib/knooppunt/audit.db /var/lib/knooppunt/meldingen.db
[ "$(in_ns stat -c '%a %U' /var/lib/knooppunt/audit.db)" = "600 knooppunt" ] || fail "audit.db mode"
in_ns systemd-analyze security knooppunt-gateway --no-pager | tail -n1
in_ns systemctl stop knooppunt-gateway
in_ns journalctl -u knooppunt-gateway --no-pager | grep -q '"event":"stopped"' || fail "clean stop"
in_ns knooppunt-audit verify --db=/var/lib/knooppunt/audit.db \
  --public_key=/etc/knooppunt/audit/audit-signing.pub || fail "audit verify"
echo "PASS"
