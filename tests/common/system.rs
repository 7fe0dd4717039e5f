//! A system-mode install made as the README says (setgid `relaymail`
//! binary in a temporary prefix, /etc/relaymail root:relaymail 0750 with a
//! 0640 configuration, /var/spool/relaymail 2770, /var/log/relaymail 0750)
//! inside a private mount namespace: overlays on /etc, /var/spool and
//! /var/log, with this test's own directories bound at the relaymail
//! paths, so a test passes on a host where relaymail is installed and
//! leaves nothing behind. Unprivileged users `alice` and `bob` exist only
//! in the namespace; the network is the host's (loopback servers of the
//! test are reachable). Needs root and the `relaymail` group.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::{have, is_root, outcome, stdout, BIN, SENDMAIL_BIN};

pub const ALICE: u32 = 47101;
pub const BOB: u32 = 47102;

/// Mounts the private view, adds the users, then becomes `$2` and runs
/// the rest of the arguments with a bare environment. Exit 99: the
/// namespace could not be set up.
const SETUP: &str = r#"
d=$1 user=$2; shift 2
fail() { echo "namespace setup failed: $*" >&2; exit 99; }
for m in /etc /var/spool /var/log; do
    n=$(echo "$m" | tr / _)
    mount -t overlay overlay -o "lowerdir=$m,upperdir=$d/ns/up$n,workdir=$d/ns/work$n" "$m" || fail "overlay on $m"
done
mkdir -p /etc/relaymail /var/spool/relaymail /var/log/relaymail || fail mkdir
mount --bind "$d/etc" /etc/relaymail || fail "bind etc"
mount --bind "$d/spool" /var/spool/relaymail || fail "bind spool"
mount --bind "$d/log" /var/log/relaymail || fail "bind log"
if ! grep -q '^alice:' /etc/passwd; then
    echo "alice:x:47101:47101:Alice:$d/home/alice:/bin/sh" >> /etc/passwd
    echo "bob:x:47102:47102:Bob:$d/home/bob:/bin/sh" >> /etc/passwd
    echo "alice:x:47101:" >> /etc/group
    echo "bob:x:47102:" >> /etc/group
fi
path="$d/prefix:/usr/bin:/bin"
if [ "$user" = root ]; then
    exec env -i PATH="$path" HOME=/root "$@"
fi
exec setpriv --reuid="$user" --regid="$user" --init-groups env -i PATH="$path" HOME="$d/home/$user" "$@"
"#;

pub struct Host {
    pub dir: tempfile::TempDir,
    /// The relaymail group.
    pub gid: u32,
}

/// Owner, group and mode, as an install step would set them.
pub fn chown(path: &Path, uid: u32, gid: u32, mode: u32) {
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Host {
    /// The installed shape with `config` as /etc/relaymail/relaymail.toml,
    /// or None (with a note) where it cannot be made: not root, no
    /// relaymail group, or a nosuid temporary filesystem. A setgid binary
    /// that does not gain its group otherwise is a failure, not a skip.
    pub fn new(config: &str) -> Option<Host> {
        if !is_root() {
            eprintln!("skipped: needs root");
            return None;
        }
        if !have("unshare") || !have("setpriv") {
            return None;
        }
        let Some(group) = nix::unistd::Group::from_name("relaymail").unwrap() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "no relaymail group (scripts/test creates it)"
            );
            eprintln!("skipped: no relaymail group (scripts/test creates it)");
            return None;
        };
        let gid = group.gid.as_raw();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(
            !d.starts_with("/etc") && !d.starts_with("/var/spool") && !d.starts_with("/var/log"),
            "the test directory must lie outside the overlaid trees"
        );
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in [
            "ns/up_etc",
            "ns/work_etc",
            "ns/up_var_spool",
            "ns/work_var_spool",
            "ns/up_var_log",
            "ns/work_var_log",
            "prefix",
            "etc",
            "spool/tmp",
            "spool/queue",
            "log",
            "home/alice",
            "home/bob",
        ] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::set_permissions(d.join("ns"), std::fs::Permissions::from_mode(0o700)).unwrap();
        // README's Install section.
        for (name, source) in [("relaymail", BIN), ("relaymail-sendmail", SENDMAIL_BIN)] {
            let binary = d.join("prefix").join(name);
            std::fs::copy(source, &binary).unwrap();
            chown(&binary, 0, gid, 0o2755);
        }
        std::os::unix::fs::symlink("relaymail-sendmail", d.join("prefix/sendmail")).unwrap();
        std::os::unix::fs::symlink("relaymail", d.join("prefix/mailq")).unwrap();
        chown(&d.join("etc"), 0, gid, 0o750);
        for sub in ["spool", "spool/tmp", "spool/queue"] {
            chown(&d.join(sub), 0, gid, 0o2770);
        }
        chown(&d.join("log"), 0, gid, 0o750);
        chown(&d.join("home/alice"), ALICE, ALICE, 0o700);
        chown(&d.join("home/bob"), BOB, BOB, 0o700);
        let host = Host { dir, gid };
        host.install("relaymail.toml", config.as_bytes(), gid, 0o640);
        // Control: in this namespace the binary really gains the group
        // (otherwise every refusal a test checks would prove nothing).
        let nosuid = nix::sys::statvfs::statvfs(host.dir.path())
            .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID));
        if nosuid {
            eprintln!("skipped: the temporary filesystem ignores setgid (nosuid)");
            return None;
        }
        let id = host.path("home/alice/id");
        std::fs::copy("/usr/bin/id", &id).unwrap();
        chown(&id, 0, gid, 0o2755);
        let egid = host.run("alice", &[id.to_str().unwrap(), "-g"]);
        assert_eq!(
            stdout(&egid).trim(),
            gid.to_string(),
            "a setgid binary gains its group here: {}",
            outcome(&egid)
        );
        Some(host)
    }

    /// A file in /etc/relaymail, root-owned with group `gid` and `mode`.
    pub fn install(&self, name: &str, contents: &[u8], gid: u32, mode: u32) {
        let path = self.path("etc").join(name);
        std::fs::write(&path, contents).unwrap();
        chown(&path, 0, gid, mode);
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `args` run as `user` inside the namespace.
    pub fn command(&self, user: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            SETUP,
            "sh",
        ])
        .arg(self.dir.path())
        .arg(user)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, user: &str, args: &[&str]) -> Output {
        let out = self.command(user, args).output().unwrap();
        assert_ne!(out.status.code(), Some(99), "{}", outcome(&out));
        out
    }

    pub fn shell(&self, user: &str, script: &str) -> Output {
        self.run(user, &["sh", "-c", script])
    }

    /// Committed queue entries and their modes, as root sees them.
    pub fn queue(&self) -> Vec<(String, u32, u32)> {
        let mut all: Vec<(String, u32, u32)> = std::fs::read_dir(self.path("spool/queue"))
            .unwrap()
            .flatten()
            .map(|e| {
                let meta = e.metadata().unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    meta.uid(),
                    meta.mode() & 0o7777,
                )
            })
            .collect();
        all.sort();
        all
    }

    pub fn queued_ids(&self) -> Vec<String> {
        self.queue()
            .into_iter()
            .filter_map(|(name, _, _)| name.strip_suffix(".msg").map(String::from))
            .collect()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.path("log/relaymail.jsonl")).unwrap_or_default()
    }

    /// The shared log as the package's logrotate `create` makes it.
    pub fn create_log(&self) {
        let path = self.path("log/relaymail.jsonl");
        std::fs::write(&path, "").unwrap();
        chown(&path, 0, self.gid, 0o660);
    }
}
