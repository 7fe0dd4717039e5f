#!/usr/bin/env bash
# Builds the guest's base root for selinux/tests/vm/run.sh: Debian 12
# (bookworm) from the mirror apt uses on this machine, with the kernel,
# systemd, Debian's SELinux policy, cron, sshd, sudo, ca-certificates
# and logwatch.  relaymail itself is not in it: run.sh installs the tree's
# binary and module into a copy on every run.  run.sh caches the result
# under a hash of this file, the suite and the mirror, so any change here
# rebuilds it.
#
# Usage: base.sh DIR MIRROR    (writes DIR/root; DIR must not hold one)
set -euo pipefail
dir=$1
mirror=$2
suite=bookworm
packages=linux-image-amd64,systemd-sysv,udev,selinux-basics,selinux-policy-default,policycoreutils,cron,procps,kmod,openssh-server,openssh-client,sudo,ca-certificates

tmp=$dir/root.partial
rm -rf "$tmp"
mkdir -p "$dir"
log=$dir/debootstrap.log
if ! timeout 900 debootstrap --variant=minbase --include="$packages" "$suite" "$tmp" "$mirror" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "base.sh: debootstrap $suite from $mirror failed; its log is $log" >&2
    exit 1
fi

# logwatch depends on an MTA.  A placeholder that provides
# mail-transport-agent keeps exim4 out; relaymail is the MTA of each run.
pkg=$dir/placeholder-mta
mkdir -p "$pkg/DEBIAN"
cat >"$pkg/DEBIAN/control" <<'CONTROL'
Package: relaymail-guest-mta
Version: 1
Architecture: all
Maintainer: relaymail <root@localhost>
Provides: mail-transport-agent
Description: placeholder MTA for the relaymail SELinux test guest
 Satisfies logwatch's dependency; each test run installs relaymail.
CONTROL
dpkg-deb --build "$pkg" "$tmp/tmp/placeholder-mta.deb" >/dev/null
chroot "$tmp" dpkg -i /tmp/placeholder-mta.deb >>"$log" 2>&1
if ! chroot "$tmp" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends logwatch >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "base.sh: installing logwatch in the guest failed; the log is $log" >&2
    exit 1
fi
chroot "$tmp" apt-get clean
rm -rf "$pkg" "$tmp/tmp/placeholder-mta.deb"
# Labelled with the guest's own policy: a run then relabels only what it
# changes (run.sh puts each run's root over this one as an overlay).
setfiles -r "$tmp" -F "$tmp/etc/selinux/default/contexts/files/file_contexts" "$tmp"
mv "$tmp" "$dir/root"
