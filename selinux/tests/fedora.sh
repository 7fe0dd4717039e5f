#!/usr/bin/env bash
# RHEL/Fedora check, by hand (CI cannot fetch Fedora's policy sources, and
# they are not copied into this tree): builds the module against Fedora's
# headers and, where the branch ships its module lists (rawhide:
# dist/targeted), links it into a complete targeted policy built from the
# sources, then runs offline.py --redhat and file_contexts.py on it.
#
# Usage: selinux/tests/fedora.sh POLICY_SRC [CONTAINER_SELINUX_SRC]
#   POLICY_SRC             a checkout of fedora-selinux/selinux-policy
#                          (a branch: c9s for RHEL 9, c10s, rawhide)
#   CONTAINER_SELINUX_SRC  a checkout of containers/container-selinux,
#                          needed for the complete policy (base.pp uses its
#                          interfaces); without it, headers only
# Needs what selinux/test.sh needs.  Takes about 4 minutes on 2 cores
# (make conf, 20 s of modules, 20 s of linking).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
src=$(cd "$1" && pwd)
container=${2:+$(cd "$2" && pwd)}
work=$(mktemp -d /var/tmp/relaymail-fedora.XXXXXX)
trap 'rm -rf --one-file-system "$work"' EXIT
P=(TYPE=mcs NAME=targeted DISTRO=redhat UBAC=n DIRECT_INITRC=n MONOLITHIC=n MLS_CATS=1024 MCS_CATS=1024 UNK_PERMS=allow)

cp -a "$src" "$work/policy-src"
cd "$work/policy-src"
full=
if [ -n "$container" ] && [ -f dist/targeted/modules.conf ]; then
    full=yes
    for f in container.te container.if container.fc; do
        cp "$container/$f" policy/modules/contrib/
    done
    cp dist/targeted/modules.conf policy/modules.conf
    cp dist/targeted/booleans.conf policy/booleans.conf
    echo "container = module" >>policy/modules.conf
    # Lines for modules this branch does not have (corenetwork is generated).
    for m in $(awk '$2 == "=" { print $1 }' policy/modules.conf); do
        [ "$m" = corenetwork ] && continue
        ls policy/modules/*/"$m".te >/dev/null 2>&1 || sed -i -E "/^$m = /d" policy/modules.conf
    done
else
    make "${P[@]}" conf >"$work/conf.log" 2>&1
fi
make "${P[@]}" DESTDIR="$work/hdr" install-headers >"$work/hdr.log" 2>&1
headers=$work/hdr/usr/share/selinux/targeted/include

mkdir -p "$work/module"
cp "$here"/relaymail.te "$here"/relaymail.fc "$here"/relaymail.if "$here"/relaymail_port.cil \
    "$here"/tests/policy/relaymail_iftest.te "$work/module/"
(cd "$work/module" && make -f "$headers/Makefile" HEADERDIR="$headers" NAME=targeted \
    relaymail.pp relaymail_iftest.pp >"$work/module.log" 2>&1) || {
    cat "$work/module.log" >&2
    echo "fedora.sh: FAIL: the module does not build against $(basename "$src")'s headers" >&2
    exit 1
}
echo "fedora.sh: relaymail.pp and relaymail_iftest.pp build against these headers"
[ -n "$full" ] || exit 0

make -k -j2 "${P[@]}" base.pp modules >"$work/modules.log" 2>&1
root=$work/root
mkdir -p "$root/etc/selinux" "$root/var/lib/selinux"
printf 'module-store = direct\nexpand-check = 0\n' >"$root/etc/selinux/semanage.conf"
modules=()
for pp in *.pp; do
    modules+=(-i "$pp")
done
semodule -p "$root" -s targeted -n -X 100 "${modules[@]}" >"$work/link.log" 2>&1
fcdir=$root/etc/selinux/targeted/contexts/files
cp config/file_contexts.subs_dist "$fcdir/"
mkdir -p "$work/base-fc"
cp -a "$fcdir"/file_contexts* "$work/base-fc/"
semodule -p "$root" -s targeted -n -i "$work/module/relaymail.pp" -i "$work/module/relaymail_port.cil" \
    -i "$work/module/relaymail_iftest.pp" >>"$work/link.log" 2>&1
/usr/libexec/selinux/hll/pp "$work/module/relaymail.pp" >"$work/module/relaymail.cil"
status=0
/usr/bin/python3 "$here/tests/offline.py" "$root"/etc/selinux/targeted/policy/policy.* \
    "$work/module/relaymail.cil" --redhat | grep -v '^ok ' || status=1
/usr/bin/python3 "$here/tests/file_contexts.py" "$fcdir/file_contexts" "$work/base-fc/file_contexts" \
    "$here/tests/paths.txt" | grep -v '^ok ' || status=1
exit $status
