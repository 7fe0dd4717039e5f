//! System mode: the spool shape (root:relaymail, group-only) and the
//! setgid seam (a configuration chosen by a user gives up the group).
//! These need root and the `relaymail` group (scripts/test creates it).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use common::*;
use relaymail::config::Mode;
use relaymail::spool::{envelope, Envelope, Spool};

fn relaymail_gid() -> Option<u32> {
    if !is_root() {
        eprintln!("skipped: needs root");
        return None;
    }
    let group = nix::unistd::Group::from_name("relaymail").unwrap();
    if group.is_none() {
        eprintln!("skipped: no relaymail group (scripts/test creates it)");
    }
    group.map(|g| g.gid.as_raw())
}

fn sample(id: &str) -> Envelope {
    Envelope::new(
        id,
        "root@example.com",
        envelope::Submitter {
            uid: 0,
            user: "root".into(),
        },
        5,
        Vec::new(),
    )
}

#[test]
fn system_spool_is_root_relaymail_group_only() {
    let Some(gid) = relaymail_gid() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("spool");
    let spool = Spool::open(&root, Mode::System).unwrap();
    for sub in ["", "tmp", "queue"] {
        let meta = std::fs::metadata(root.join(sub)).unwrap();
        assert_eq!(meta.uid(), 0, "{sub}");
        assert_eq!(meta.gid(), gid, "{sub}");
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            0o2770,
            "{sub}: group-only, setgid directory"
        );
    }
    let mut draft = spool.create().unwrap();
    let id = draft.id().clone();
    std::io::Write::write_all(&mut draft, b"hello").unwrap();
    let locked = draft.commit(&sample(id.as_str())).unwrap();
    // A state change writes the .env beside the committed .msg.
    let mut changed = sample(id.as_str());
    changed.attempts = 1;
    locked.update(&changed).unwrap();
    drop(locked);
    for path in [spool.message_path(&id), spool.envelope_path(&id)] {
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o640,
            "{}",
            path.display()
        );
        assert_eq!(meta.gid(), gid, "{}", path.display());
    }
}

#[test]
fn user_chosen_config_gives_up_the_setgid_group() {
    let Some(gid) = relaymail_gid() else { return };
    let env = Env::new();
    // The installed shape: a setgid relaymail binary and a spool only the
    // group can write.
    let binary = env.path("relaymail-setgid");
    std::fs::copy(BIN, &binary).unwrap();
    nix::unistd::chown(&binary, None, Some(nix::unistd::Gid::from_raw(gid))).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o2755)).unwrap();
    Spool::open(&env.spool, Mode::System).unwrap();
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in [&env.config, &env.path("aliases")] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    // As nobody with -C: the group is dropped before the file is read, so
    // the group-only spool is out of reach.
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&binary)
        .args(["sendmail", "-C"])
        .arg(&env.config)
        .arg("x@example.net")
        .env_clear()
        .env("HOME", "/nonexistent");
    // Control: on this filesystem a setgid binary really gains the group
    // (otherwise the 77 below would prove nothing).
    let id = env.path("id-setgid");
    std::fs::copy("/usr/bin/id", &id).unwrap();
    nix::unistd::chown(&id, None, Some(nix::unistd::Gid::from_raw(gid))).unwrap();
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o2755)).unwrap();
    let egid = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&id)
        .arg("-g")
        .output()
        .unwrap();
    let nosuid = nix::sys::statvfs::statvfs(env.dir.path())
        .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID));
    if nosuid {
        eprintln!("skipped: the temporary filesystem ignores setgid (nosuid)");
        return;
    }
    assert_eq!(
        stdout(&egid).trim(),
        gid.to_string(),
        "a setgid binary gains its group here: {}",
        outcome(&egid)
    );
    let out = run_with_stdin(&mut cmd, b"\nb\n");
    assert_exit(&out, 77, &env, "user config under setgid");
    assert!(env.queued().is_empty());
}
