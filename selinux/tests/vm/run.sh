#!/usr/bin/env bash
# Enforcing boot test: a Debian 12 guest with relaymail and its policy
# module, booted under qemu (software emulation) with SELinux enforcing.
# Cron jobs (system, root's, a user_u and a sysadm_u crontab), logwatch,
# ssh logins of a user_u and a staff_u user (and sudo), a systemd service
# and the relaymail flush and sink units all send mail through
# /usr/sbin/sendmail to relaymail's sink on the guest's loopback; then
# check.py reads the serial console: every caller reached its domain,
# every message arrived, and no AVC denial names relaymail.
#
# Usage: run.sh MODULE_DIR BINARY [PACKAGE_DIR]
#   MODULE_DIR   holds relaymail.pp, relaymail_port.cil, relaymail_vmtest.pp
#   BINARY       the relaymail binary to install (a Debian 12 build)
#   PACKAGE_DIR  holds relaymail_*.deb and relaymail-selinux_*.deb: the
#                guest gets them (their binary, units, drop-ins, module
#                and maintainer scripts) instead of BINARY and MODULE_DIR's
#                module
# Environment:
#   RELAYMAIL_VM_CACHE    where the base root (built once, by base.sh,
#                         keyed by a hash of its inputs) and this run's
#                         files live; default /var/tmp/relaymail-selinux-vm
#   RELAYMAIL_VM_TIMEOUT  seconds the guest may run; default 480
#   RELAYMAIL_VM_NO_DONTAUDIT  non-empty: build the guest policy without
#                         dontaudit rules, to see silent denials too
#
# Needs root, debootstrap, qemu-system-x86_64, mkfs.ext4 (e2fsprogs),
# semodule and setfiles (policycoreutils), openssl and python3.  Nothing
# is left running: qemu is stopped by its pid, within the time limit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
modules=$(cd "$1" && pwd)
binary=$2
packages=
if [ -n "${3:-}" ]; then
    packages=$(cd "$3" && pwd)
fi
cache=${RELAYMAIL_VM_CACHE:-/var/tmp/relaymail-selinux-vm}
timeout=${RELAYMAIL_VM_TIMEOUT:-480}
start=$SECONDS

note() { echo "vm: $* ($((SECONDS - start)) s)"; }
die() {
    echo "vm: FAIL: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, labels)"
for tool in debootstrap qemu-system-x86_64 mkfs.ext4 semodule setfiles openssl python3 chroot; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
for file in relaymail.pp relaymail_port.cil relaymail_vmtest.pp; do
    [ -s "$modules/$file" ] || die "no $modules/$file"
done
[ -x "$binary" ] || die "no relaymail binary at $binary"

mkdir -p "$cache"
exec 9>"$cache/lock"
flock -w 1800 9 || die "another run holds $cache/lock"

# The mirror apt uses here (one-line or deb822 sources).
mirror=$(
    {
        sed -E 's/\[[^]]*\]//' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk '$1 == "deb" && $3 == "bookworm" { print $2 }'
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -e "$f" ] || continue
            awk '
                /^[ \t]*$/ { if (uri != "" && ok && deb) print uri; uri = ""; ok = 0; deb = 0; next }
                tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
                tolower($1) == "uris:" { uri = $2 }
                tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == "bookworm") ok = 1 }
                END { if (uri != "" && ok && deb) print uri }' "$f"
        done
    } | head -n 1
)
[ -n "$mirror" ] || die "no bookworm mirror in /etc/apt/sources.list(.d)"

# The base root, cached under a hash of what builds it.
key=$( (cat "$here/base.sh"; echo "$mirror") | sha256sum | cut -c1-16)
base=$cache/base-$key
if [ ! -x "$base/root/sbin/init" ]; then
    for old in "$cache"/base-*; do
        [ "$old" = "$base" ] || [ ! -e "$old" ] || rm -rf --one-file-system "$old"
    done
    note "building the base root $base from $mirror (debootstrap, about 2 minutes)"
    "$here/base.sh" "$base" "$mirror"
    note "base root built"
else
    note "base root $base (cached)"
fi

# This run's root: the base root under an overlay, so that only what the
# run changes is written (labels included: the base is labelled already);
# a full copy where overlayfs cannot be mounted.
run=$cache/run
if mountpoint -q "$run/root"; then
    umount "$run/root"
fi
rm -rf --one-file-system "$run"
mkdir -p "$run/root" "$run/upper" "$run/work"
R=$run/root
if mount -t overlay overlay -o "lowerdir=$base/root,upperdir=$run/upper,workdir=$run/work" "$R" 2>/dev/null; then
    trap 'umount "$R" 2>/dev/null || true' EXIT
    note "the base root under an overlay"
else
    rmdir "$R"
    cp -a "$base/root" "$R"
    note "copied the base root (no overlayfs here)"
fi
in_root() { chroot "$R" "$@"; }

guest=$here/guest
# relaymail: the built Debian packages (relaymail and relaymail-selinux,
# as packaging/build-deb leaves them, scripts/test builds them first) or,
# without them, BINARY installed as the README's source install does it
# with the tree's module.
packaged=
if [ -n "$packages" ]; then
    packaged=yes
    cp "$packages"/relaymail_*.deb "$packages"/relaymail-selinux_*.deb "$R/tmp/"
    # The placeholder MTA goes: relaymail is the mail-transport-agent now.
    in_root dpkg --force-depends --purge relaymail-guest-mta >/dev/null
    in_root env DEBIAN_FRONTEND=noninteractive sh -c 'dpkg -i /tmp/relaymail_*.deb /tmp/relaymail-selinux_*.deb' \
        >"$run/dpkg.log" 2>&1 || {
        cat "$run/dpkg.log" >&2
        die "the packages do not install in the guest"
    }
    rm -f "$R"/tmp/relaymail*.deb
    note "installed $(cd "$packages" && ls relaymail_*.deb relaymail-selinux_*.deb | tr '\n' ' ')"
else
    in_root groupadd --system relaymail
    if command -v objcopy >/dev/null; then
        objcopy --strip-debug "$binary" "$R/usr/sbin/relaymail"
    else
        cp "$binary" "$R/usr/sbin/relaymail"
    fi
    cp "$(dirname "$binary")/relaymail-sendmail" "$R/usr/sbin/relaymail-sendmail"
    in_root chgrp relaymail /usr/sbin/relaymail /usr/sbin/relaymail-sendmail
    chmod 2755 "$R/usr/sbin/relaymail" "$R/usr/sbin/relaymail-sendmail"
    ln -sf relaymail-sendmail "$R/usr/sbin/sendmail"
    ln -sf /usr/sbin/relaymail-sendmail "$R/usr/lib/sendmail"
    ln -sf /usr/sbin/relaymail "$R/usr/bin/mailq"
    ln -sf /usr/sbin/relaymail "$R/usr/bin/newaliases"
    in_root install -d -m 0750 -g relaymail /etc/relaymail /etc/relaymail/conf.d
    in_root install -d -o root -g relaymail -m 2770 /var/spool/relaymail /var/spool/relaymail/tmp /var/spool/relaymail/queue
    in_root install -d -o root -g relaymail -m 0750 /var/log/relaymail
    in_root install -m 0660 -o root -g relaymail /dev/null /var/log/relaymail/relaymail.jsonl
    # The accounts and the sink's state directory, as the packages make them.
    in_root useradd --system -g relaymail -d /var/spool/relaymail -s /usr/sbin/nologin relaymail
    in_root useradd --system -U -d /var/lib/relaymail -s /usr/sbin/nologin relaymail-sink
    in_root install -d -o relaymail-sink -g relaymail-sink -m 0750 /var/lib/relaymail
    # The units from packaging/ (stand-ins without it), with the module's
    # drop-ins that put them in their domains.
    units=$here/../../../packaging/systemd
    for unit in relaymail-sink.service relaymail-flush.service; do
        if [ -f "$units/$unit" ]; then
            install -m 0644 "$units/$unit" "$R/etc/systemd/system/$unit"
        else
            install -m 0644 "$guest/$unit" "$R/etc/systemd/system/$unit"
        fi
        install -D -m 0644 "$here/../../systemd/$unit.d/selinux.conf" "$R/etc/systemd/system/$unit.d/selinux.conf"
    done
    note "installed $binary as the source install does"
fi
install -m 0640 "$guest/relaymail.toml" "$R/etc/relaymail/relaymail.toml"
echo "vmtest-secret" >"$R/etc/relaymail/credentials"
chmod 0640 "$R/etc/relaymail/credentials"
in_root chgrp relaymail /etc/relaymail/relaymail.toml /etc/relaymail/credentials
printf 'root: admin@lab.example\n' >"$R/etc/aliases"
echo vm >"$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tvm.lab.example vm\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$R/etc/hosts"

# A test CA in the system trust store, and the lab sink's certificate.
ca=$run/ca
mkdir -p "$ca"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=relaymail vmtest CA" -keyout "$ca/ca.key" -out "$ca/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$ca/lab.key" -out "$ca/lab.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$ca/ext"
openssl x509 -req -in "$ca/lab.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" -CAcreateserial \
    -days 30 -extfile "$ca/ext" -out "$ca/lab.pem" 2>/dev/null
install -m 0644 "$ca/ca.pem" "$R/usr/local/share/ca-certificates/relaymail-vmtest.crt"
in_root update-ca-certificates >/dev/null 2>&1
install -m 0644 "$ca/lab.pem" "$R/etc/relaymail/sink-lab-cert.pem"
install -m 0600 "$ca/lab.key" "$R/etc/relaymail/sink-lab-key.pem"
install -m 0640 "$guest/lab-sink.toml" "$R/etc/relaymail/lab-sink.toml"
in_root chgrp relaymail /etc/relaymail/lab-sink.toml
# The lab sink keeps its state where an admin would label it with
# semanage fcontext -a -t relaymail_sink_store_t '/srv/relaymail-lab(/.*)?'
install -d -m 0700 "$R/srv/relaymail-lab"
printf '/srv/relaymail-lab(/.*)?\tsystem_u:object_r:relaymail_sink_store_t:s0\n' \
    >"$R/var/lib/selinux/default/active/file_contexts.local"

install -m 0644 "$guest/relaymail-vmtest-lab-sink.service" "$guest/relaymail-vmtest-service.service" \
    "$R/etc/systemd/system/"
mkdir -p "$R/etc/systemd/system/multi-user.target.wants"
# The packages install the sink disabled: enabled here, as an admin would.
for unit in relaymail-sink.service relaymail-vmtest-lab-sink.service; do
    for dir in /etc/systemd/system /lib/systemd/system; do
        if [ -f "$R$dir/$unit" ]; then
            ln -sf "$dir/$unit" "$R/etc/systemd/system/multi-user.target.wants/$unit"
            break
        fi
    done
done

# Test programs and the phase configurations.
install -m 0755 "$guest/vmtest-send" "$guest/vmtest-cron-system" "$R/usr/local/bin/"
install -m 0755 "$guest/vmtest-orchestrate" "$R/usr/local/sbin/"
mkdir -p "$R/root/vmtest"
install -m 0644 "$guest/50-lab.toml" "$R/root/vmtest/"
sed 's|^password_file = .*|password_command = "cat /etc/relaymail/credentials"|' \
    "$guest/relaymail.toml" >"$R/root/vmtest/password-command.toml"

# Users: alice (user_u), bob (staff_u, sudo), carol (sysadm_u).
for user in alice bob carol; do
    in_root useradd -m -s /bin/sh "$user"
done
install -d -m 0700 "$R/root/.ssh"
in_root ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/id_ed25519
for user in alice bob; do
    install -d -m 0700 "$R/home/$user/.ssh"
    install -m 0600 "$R/root/.ssh/id_ed25519.pub" "$R/home/$user/.ssh/authorized_keys"
    in_root chown -R "$user:$user" "/home/$user/.ssh"
done
printf 'Defaults:bob mail_always, mailto="root"\nbob ALL=(root) NOPASSWD: ALL\n' >"$R/etc/sudoers.d/vmtest"
chmod 0440 "$R/etc/sudoers.d/vmtest"
cat >"$R/var/lib/selinux/default/active/seusers.local" <<'EOF'
alice:user_u:s0
bob:staff_u:s0-s0:c0.c1023
carol:sysadm_u:s0-s0:c0.c1023
EOF

# logwatch reports today (its default is yesterday, which a new guest
# has nothing for: an empty report is not mailed).
mkdir -p "$R/etc/logwatch/conf"
printf 'Range = today\n' >"$R/etc/logwatch/conf/logwatch.conf"

# Cron: a system job, and root's, alice's and carol's crontabs.
cron_path='PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
printf '%s\n@reboot root /usr/local/bin/vmtest-cron-system\n' "$cron_path" >"$R/etc/cron.d/relaymail-vmtest"
# Cron's own stdin feature (text after %) too: sendmail reads cron's pipe.
printf '%s\n@reboot /usr/local/sbin/vmtest-orchestrate\n@reboot sendmail -odq root%%Subject: vmtest root-cron-stdin%%%%from root'"'"'s crontab\n' \
    "$cron_path" | in_root crontab -u root -
printf '%s\n@reboot vmtest-send "vmtest alice-cron"\n@reboot sendmail -odq root%%Subject: vmtest alice-cron-stdin%%%%from alice'"'"'s crontab\n' \
    "$cron_path" | in_root crontab -u alice -
printf '%s\n@reboot vmtest-send "vmtest carol-cron"\n' "$cron_path" | in_root crontab -u carol -

# Console: kernel messages (the AVC records) on the serial port, with no
# rate limit, and no auditd (it would take the AVCs off the console); the
# orchestrator prints relaymail's journal lines at the end.
printf 'kernel.printk = 7 4 1 7\nkernel.printk_ratelimit = 0\n' >"$R/etc/sysctl.d/99-console.conf"
ln -sf /dev/null "$R/etc/systemd/system/auditd.service"
# No login prompts: a getty on the serial line would hang up the
# orchestrator's handle on it.
ln -sf /dev/null "$R/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$R/etc/systemd/system/getty@tty1.service"
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer logrotate.timer man-db.timer; do
    ln -sf /dev/null "$R/etc/systemd/system/$unit"
done
echo '/dev/vda / ext4 rw,relatime 0 1' >"$R/etc/fstab"
sed -i 's/^SELINUX=.*/SELINUX=enforcing/' "$R/etc/selinux/config"

# The module into the guest's policy store, then label everything, last.
# (The packages loaded theirs already: only the test module then.)
if [ -n "$packaged" ]; then
    load=(-i "$modules/relaymail_vmtest.pp")
else
    load=(-i "$modules/relaymail.pp" -i "$modules/relaymail_port.cil" -i "$modules/relaymail_vmtest.pp")
fi
semodule -p "$R" -s default -n ${RELAYMAIL_VM_NO_DONTAUDIT:+-D} "${load[@]}" 2>&1 |
    grep -v -e 'libsemanage.add_user: user .* not in password file' -e 'Invalid cross-device link' || true
grep -q '^alice:user_u' "$R/etc/selinux/default/seusers" || die "the login mappings did not reach the guest policy"
note "module linked into the guest policy"
fc=$R/etc/selinux/default/contexts/files/file_contexts
setfiles -r "$R" -F "$fc" "$R"
# setfiles leaves user crontabs alone (<<none>>): cron wants them labelled
# for their owner's SELinux user.
python3 - "$R/var/spool/cron/crontabs" <<'EOF'
import os, sys
labels = {"root": "unconfined_u:object_r:unconfined_cron_spool_t:s0",
          "alice": "user_u:object_r:user_cron_spool_t:s0",
          "carol": "sysadm_u:object_r:sysadm_cron_spool_t:s0"}
for user, label in labels.items():
    os.setxattr(os.path.join(sys.argv[1], user), "security.selinux", label.encode() + b"\0")
EOF
note "labelled"

image=$run/root.img
mkfs.ext4 -q -F -L root -d "$R" "$image" 3G >/dev/null
note "image built"

kernel=$(ls "$R"/boot/vmlinuz-* | tail -n 1)
initrd=$(ls "$R"/boot/initrd.img-* | tail -n 1)
console=$run/console.log
qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 2048 -smp 2 -nographic -no-reboot \
    -monitor none -kernel "$kernel" -initrd "$initrd" -nic none \
    -drive file="$image",format=raw,if=virtio \
    -append "console=ttyS0 root=/dev/vda rw security=selinux enforcing=1 audit=1 audit_backlog_limit=8192 loglevel=6 panic=-1" \
    >"$console" 2>&1 </dev/null &
qemu=$!
stop_qemu() {
    if kill -0 "$qemu" 2>/dev/null; then
        kill "$qemu" 2>/dev/null || true
        wait "$qemu" 2>/dev/null || true
    fi
}
trap 'stop_qemu; umount "$R" 2>/dev/null || true' EXIT
boot=$SECONDS
while kill -0 "$qemu" 2>/dev/null; do
    if [ $((SECONDS - boot)) -ge "$timeout" ]; then
        echo "vm: the guest did not finish within ${timeout} s; stopping it" >&2
        break
    fi
    sleep 2
done
stop_qemu
umount "$R" 2>/dev/null || true
trap - EXIT
note "guest ran $((SECONDS - boot)) s"
python3 "$here/check.py" "$console"
