#!/usr/bin/env bash
# Proves the SELinux policy module (run by scripts/test; selinux/README.md
# says what each step shows):
#   1. build relaymail.pp with the distribution's devel Makefile, and the
#      test-only modules;
#   2. link it into a copy of this host's policy store (expand-check on,
#      with the must-not neverallows), nothing on the host touched;
#   3. offline.py: callers' domains, what the domains may and must not do;
#   4. file_contexts.py: every installed path, and the built packages';
#   5. vm/run.sh: an enforcing Debian 12 guest under qemu (about 2.5
#      minutes from scratch, under one with its base root cached).
# Installs what it needs with apt-get when run as root; as root, or with
# CI set, a missing tool fails the run instead of skipping a step.
#
# Environment: RELAYMAIL_SELINUX_VM=0 skips step 5 (saying so); the guest
# gets the Debian packages in target/packages when both are there
# (scripts/test builds them first; RELAYMAIL_VM_PACKAGES=none ignores
# them), else RELAYMAIL_BIN (default: target/debug/relaymail, built if
# missing) and the tree's module.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
start=$SECONDS

step() { echo "== selinux: $* ($((SECONDS - start)) s)"; }
die() {
    echo "selinux/test.sh: FAIL: $*" >&2
    exit 1
}

# Tools, as "what|check|Debian packages".
TOOLS=(
    "the policy devel Makefile and headers|[ -f /usr/share/selinux/devel/Makefile ]|selinux-policy-dev"
    "Debian's policy store|[ -d /var/lib/selinux/default/active/modules ]|selinux-policy-default"
    "checkmodule|command -v checkmodule|checkpolicy"
    "semodule, setfiles and the pp-to-CIL converter|command -v semodule && command -v setfiles && [ -x /usr/libexec/selinux/hll/pp ]|policycoreutils semodule-utils"
    "matchpathcon|command -v matchpathcon|selinux-utils"
    "setools and libselinux for Debian's python3|/usr/bin/python3 -c 'import setools, selinux.audit2why'|setools python3-setools python3-selinux"
    "dpkg-deb and rpm2cpio (package trees)|command -v dpkg-deb && command -v rpm2cpio && command -v cpio|dpkg rpm2cpio cpio"
)
VM_TOOLS=(
    "qemu-system-x86_64|command -v qemu-system-x86_64|qemu-system-x86"
    "debootstrap|command -v debootstrap|debootstrap"
    "mkfs.ext4 with -d|command -v mkfs.ext4|e2fsprogs"
    "openssl|command -v openssl|openssl"
    "objcopy|command -v objcopy|binutils"
)

strict=
if [ "$(id -u)" -eq 0 ] || [ -n "${CI:-}" ]; then
    strict=yes
fi
vm=yes
if [ "${RELAYMAIL_SELINUX_VM:-1}" = 0 ]; then
    vm=
fi

missing_tools() {
    local tool
    for tool in "$@"; do
        local check=${tool#*|}
        check=${check%|*}
        (eval "$check") >/dev/null 2>&1 || echo "$tool"
    done
}

ensure_tools() {
    local wanted=("${TOOLS[@]}")
    [ -z "$vm" ] || wanted+=("${VM_TOOLS[@]}")
    local missing packages=() line
    mapfile -t missing < <(missing_tools "${wanted[@]}")
    [ ${#missing[@]} -eq 0 ] && return 0
    for line in "${missing[@]}"; do
        read -ra more <<<"${line##*|}"
        packages+=("${more[@]}")
    done
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        step "installing ${packages[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        if ! apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; then
            echo "selinux/test.sh: apt-get install ${packages[*]} failed" >&2
        fi
    fi
    mapfile -t missing < <(missing_tools "${wanted[@]}")
    [ ${#missing[@]} -eq 0 ] && return 0
    printf 'selinux/test.sh: missing: %s\n' "${missing[@]%%|*}" >&2
    if [ -n "$strict" ]; then
        die "the SELinux tests need all of the above (Debian: apt-get install ${packages[*]}); they could not be installed"
    fi
    echo "selinux/test.sh: SKIPPED: the SELinux tests need the tools above (run as root to install them)" >&2
    exit 0
}

ensure_tools

work=$(mktemp -d /var/tmp/relaymail-selinux-test.XXXXXX)
trap 'rm -rf --one-file-system "$work"' EXIT
failed=0

step "building relaymail.pp (make -f /usr/share/selinux/devel/Makefile)"
build=$work/build
mkdir -p "$build"
cp "$here"/relaymail.te "$here"/relaymail.fc "$here"/relaymail.if "$here"/relaymail_port.cil \
    "$here"/tests/policy/relaymail_assert.te "$here"/tests/policy/relaymail_iftest.te "$here"/tests/vm/relaymail_vmtest.te "$build/"
if ! (cd "$build" && make -f /usr/share/selinux/devel/Makefile relaymail.pp relaymail_assert.pp \
    relaymail_iftest.pp relaymail_vmtest.pp) >"$work/build.log" 2>&1; then
    cat "$work/build.log" >&2
    die "the module does not build"
fi
/usr/libexec/selinux/hll/pp "$build/relaymail.pp" >"$build/relaymail.cil"

step "linking it into a copy of the policy store (expand-check=1, with the neverallows)"
root=$work/root
mkdir -p "$root/etc" "$root/var/lib"
cp -a /etc/selinux "$root/etc/"
cp -a /var/lib/selinux "$root/var/lib/"
sed -i 's/^expand-check *=.*/expand-check=1/' "$root/etc/selinux/semanage.conf"
grep -q '^expand-check=1' "$root/etc/selinux/semanage.conf" || echo 'expand-check=1' >>"$root/etc/selinux/semanage.conf"
mkdir -p "$work/base-fc"
cp -a "$root"/etc/selinux/default/contexts/files/file_contexts* "$work/base-fc/"
if ! semodule -p "$root" -s default -n -i "$build/relaymail.pp" -i "$build/relaymail_port.cil" \
    -i "$build/relaymail_assert.pp" -i "$build/relaymail_iftest.pp" >"$work/link.log" 2>&1; then
    grep -v 'libsemanage.add_user: user .* not in password file' "$work/link.log" >&2
    die "linking failed (a neverallow of tests/policy/relaymail_assert.te, or a conflicting rule)"
fi
policy=$(ls "$root"/etc/selinux/default/policy/policy.* | tail -n 1)
fc=$root/etc/selinux/default/contexts/files/file_contexts
echo "linked: $policy"

step "offline policy checks (tests/offline.py)"
/usr/bin/python3 "$here/tests/offline.py" "$policy" "$build/relaymail.cil" >"$work/offline.log" || failed=1
grep -v '^ok ' "$work/offline.log" || true

step "file contexts (tests/file_contexts.py)"
trees=()
for deb in "$repo"/target/packages/relaymail_*.deb "$repo"/target/packages/relaymail-selinux_*.deb; do
    [ -e "$deb" ] || continue
    mkdir -p "$work/trees/$(basename "$deb")"
    dpkg-deb -x "$deb" "$work/trees/$(basename "$deb")"
    trees+=(--tree "$work/trees/$(basename "$deb")")
done
for rpm in "$repo"/target/packages/relaymail-*.rpm; do
    [ -e "$rpm" ] || continue
    case $rpm in *.src.rpm) continue ;; esac
    mkdir -p "$work/trees/$(basename "$rpm")"
    (cd "$work/trees/$(basename "$rpm")" && rpm2cpio "$rpm" | cpio -idm --quiet)
    trees+=(--tree "$work/trees/$(basename "$rpm")")
done
if [ ${#trees[@]} -eq 0 ]; then
    echo "no built packages in target/packages: checking the layout table alone"
fi
/usr/bin/python3 "$here/tests/file_contexts.py" "$fc" "$work/base-fc/file_contexts" "$here/tests/paths.txt" \
    "${trees[@]}" >"$work/fc.log" || failed=1
grep -v '^ok ' "$work/fc.log" || true

if [ -z "$vm" ]; then
    echo "selinux/test.sh: SKIPPED the enforcing boot test (RELAYMAIL_SELINUX_VM=0)" >&2
elif [ "$(id -u)" -ne 0 ]; then
    [ -z "$strict" ] || die "the enforcing boot test needs root"
    echo "selinux/test.sh: SKIPPED the enforcing boot test: it needs root" >&2
else
    step "enforcing boot test (tests/vm/run.sh)"
    bin=${RELAYMAIL_BIN:-$repo/target/debug/relaymail}
    if [ -z "${RELAYMAIL_BIN:-}" ] && [ ! -x "$bin" ]; then
        (cd "$repo" && cargo build --locked --quiet --bin relaymail)
    fi
    # The built Debian packages when scripts/test made them (their units,
    # drop-ins, module and maintainer scripts), else the binary.
    packages=
    if [ "${RELAYMAIL_VM_PACKAGES:-}" != none ] &&
        ls "$repo"/target/packages/relaymail_*.deb "$repo"/target/packages/relaymail-selinux_*.deb >/dev/null 2>&1; then
        packages=$repo/target/packages
    fi
    "$here/tests/vm/run.sh" "$build" "$bin" $packages || failed=1
fi

step "done"
if [ "$failed" -ne 0 ]; then
    die "see the FAIL lines above"
fi
