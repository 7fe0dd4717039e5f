//! A system-mode install for the OAuth2 tests, made as the README says
//! (setgid binary, root:relaymail configuration and 2770 spool) inside a
//! private mount namespace with overlays on /etc and /var/spool, as
//! tests/hostile.rs does, so it leaves nothing behind on the host. The
//! network is the host's: the sink and the authorisation server of the
//! test are reachable on loopback. Users `alice` and `bob` exist only in
//! the namespace. Needs root and the `relaymail` group.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::{have, is_root, outcome, stderr, stdout, BIN};

pub const ALICE: u32 = 47201;
pub const BOB: u32 = 47202;

/// Mounts the private view, adds the users, then becomes `$2` and runs
/// the rest with a bare environment. Exit 99: no namespace.
const SETUP: &str = r#"
d=$1 user=$2; shift 2
fail() { echo "namespace setup failed: $*" >&2; exit 99; }
for m in /etc /var/spool; do
    n=$(echo "$m" | tr / _)
    mount -t overlay overlay -o "lowerdir=$m,upperdir=$d/ns/up$n,workdir=$d/ns/work$n" "$m" || fail "overlay on $m"
done
mkdir -p /etc/relaymail /var/spool/relaymail || fail mkdir
mount --bind "$d/etc" /etc/relaymail || fail "bind etc"
mount --bind "$d/spool" /var/spool/relaymail || fail "bind spool"
if ! grep -q '^alice:' /etc/passwd; then
    echo "alice:x:47201:47201:Alice:$d/home/alice:/bin/sh" >> /etc/passwd
    echo "bob:x:47202:47202:Bob:$d/home/bob:/bin/sh" >> /etc/passwd
    echo "alice:x:47201:" >> /etc/group
    echo "bob:x:47202:" >> /etc/group
fi
path="$d/prefix:/usr/bin:/bin"
if [ "$user" = root ]; then
    exec env -i PATH="$path" HOME=/root "$@"
fi
exec setpriv --reuid="$user" --regid="$user" --init-groups env -i PATH="$path" HOME="$d/home/$user" "$@"
"#;

pub struct Host {
    pub dir: tempfile::TempDir,
    pub gid: u32,
}

fn chown(path: &Path, uid: u32, gid: u32, mode: u32) {
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Host {
    /// The installed shape with `config` as /etc/relaymail/relaymail.toml
    /// and `files` (name, source) copied beside it (root:root 0644), or
    /// None with a note where it cannot be made.
    pub fn new(config: &str, files: &[(&str, &Path)]) -> Option<Host> {
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
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in [
            "ns/up_etc",
            "ns/work_etc",
            "ns/up_var_spool",
            "ns/work_var_spool",
            "prefix",
            "etc",
            "spool/tmp",
            "spool/queue",
            "home/alice",
            "home/bob",
        ] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::set_permissions(d.join("ns"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let binary = d.join("prefix/relaymail");
        std::fs::copy(BIN, &binary).unwrap();
        chown(&binary, 0, gid, 0o2755);
        std::os::unix::fs::symlink("relaymail", d.join("prefix/sendmail")).unwrap();
        chown(&d.join("etc"), 0, gid, 0o750);
        for sub in ["spool", "spool/tmp", "spool/queue"] {
            chown(&d.join(sub), 0, gid, 0o2770);
        }
        chown(&d.join("home/alice"), ALICE, ALICE, 0o700);
        chown(&d.join("home/bob"), BOB, BOB, 0o700);
        for (name, source) in files {
            std::fs::copy(source, d.join("etc").join(name)).unwrap();
            chown(&d.join("etc").join(name), 0, 0, 0o644);
        }
        std::fs::write(d.join("etc/relaymail.toml"), config).unwrap();
        chown(&d.join("etc/relaymail.toml"), 0, gid, 0o640);
        let host = Host { dir, gid };
        // Control: the binary really gains the group here (a nosuid
        // temporary filesystem would make every check below moot).
        let id = host.path("home/alice/id");
        std::fs::copy("/usr/bin/id", &id).unwrap();
        chown(&id, 0, gid, 0o2755);
        let egid = host.run("alice", &[id.to_str().unwrap(), "-g"]);
        if stdout(&egid).trim() != gid.to_string() {
            eprintln!("skipped: the temporary filesystem ignores setgid (nosuid)");
            return None;
        }
        Some(host)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `script` run by `sh -c` as `user` inside the namespace.
    pub fn shell(&self, user: &str, script: &str) -> Output {
        self.run(user, &["sh", "-c", script])
    }

    pub fn run(&self, user: &str, args: &[&str]) -> Output {
        let out = Command::new("unshare")
            .args([
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
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(99), "{}", outcome(&out));
        let _ = stderr(&out);
        out
    }
}
