#!/usr/bin/env bash
# tools/package.sh --existing on this (already built) tree, then dpkg-deb -I / -c: the
# binaries, the systemd unit, the example configuration as conffiles, and maintainer scripts
# that create the knooppunt system user. Installing it (dpkg -i) needs root and changes the
# machine, so that is a manual step (docs/operations.md, "Checking the package").
set -euo pipefail
src="${KNOOPPUNT_SOURCE_DIR:?}"
bins="${KNOOPPUNT_BIN_DIR:?}"
work="${1:?work dir}"
fail() { echo "FAIL: $*" >&2; exit 1; }
rm -rf "$work"; mkdir -p "$work"
deb="$("$src/tools/package.sh" --existing "$bins" --out "$work" | tail -n1)"
[ -f "$deb" ] || fail "no package: $deb"
echo "package: $deb ($(du -h "$deb" | cut -f1))"

info="$(dpkg-deb -I "$deb")"
contents="$(dpkg-deb -c "$deb")"
grep -q "^ Package: knooppunt$" <<<"$info" || fail "package name"
grep -q "^ Depends: .*adduser" <<<"$info" || fail "Depends lacks adduser: $(grep Depends <<<"$info")"
grep -q "^ Depends: .*procps" <<<"$info" || fail "Depends lacks procps (/bin/kill for ExecReload)"
grep -q "^ Depends: .*libgrpc++" <<<"$info" || fail "Depends lacks the gRPC library (shlibdeps)"
for f in postinst prerm postrm conffiles; do
  grep -qE "^ +[0-9]+ bytes, +[0-9]+ lines +\*? *$f( |$)" <<<"$info" || fail "control file $f missing"
done
for f in ./usr/bin/knooppunt-gateway ./usr/bin/knooppunt-policy ./usr/bin/knooppunt-audit \
         ./usr/bin/knooppunt-pki ./usr/bin/knooppunt-admin ./usr/bin/knooppunt-health \
         ./lib/systemd/system/knooppunt-gateway.service ./etc/knooppunt/gateway.yaml \
         ./etc/knooppunt/registry.yaml ./etc/knooppunt/agreements/README \
         ./usr/share/doc/knooppunt/operations.md; do
  grep -q " $f$" <<<"$contents" || fail "$f not in the package"
done
grep -q "^-rwxr-xr-x root/root .* ./usr/bin/knooppunt-gateway$" <<<"$contents" || fail "gateway binary mode/owner"

ctl="$work/control"
dpkg-deb -e "$deb" "$ctl"
diff <(sort "$ctl/conffiles") <(sort "$src/deploy/debian/conffiles") >/dev/null || fail "conffiles differ"
grep -q "adduser --system --group" "$ctl/postinst" || fail "postinst does not create the system user"
for s in postinst prerm postrm; do sh -n "$ctl/$s" || fail "$s: syntax"; done

# The packaged example configuration passes the gateway's loader as installed (paths under
# /etc/knooppunt resolved against the unpacked tree).
root="$work/root"
dpkg-deb -x "$deb" "$root"
"$root/usr/bin/knooppunt-gateway" --config="$root/etc/knooppunt/gateway.yaml" --check || fail "example config"
echo "PASS"
