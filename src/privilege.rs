//! The setgid seam. In system mode the binary is setgid `relaymail` so any
//! user can write the shared spool; that group must never serve input the
//! caller controls. Today: a configuration chosen by a non-root caller
//! (`-C`, `RELAYMAIL_CONFIG`, the user's own file) makes the process give
//! up the group before the file is read, and core dumps are disabled.
//! Environment sanitising and per-user queue rules build on this module.

use nix::unistd::{getegid, getgid, getuid, setresgid};

use crate::config::Source;
use crate::sysexits::{Failure, Sysexit};

/// Running with a group we were not started with.
pub fn is_setgid() -> bool {
    getegid() != getgid()
}

/// Called once, before the configuration is read.
pub fn settle(source: &Source) -> Result<(), Failure> {
    if !is_setgid() {
        return Ok(());
    }
    // A core dump of a setgid process could expose spool contents.
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    if source.is_user_supplied() && !getuid().is_root() {
        let gid = getgid();
        setresgid(gid, gid, gid).map_err(|e| {
            Failure::new(Sysexit::OsErr, format!("cannot give up the relaymail group before reading a user-chosen configuration: {e}"))
        })?;
    }
    Ok(())
}

/// Gives up the setgid group for good (for faces that never need the
/// shared spool, such as `demo`, which works in a directory the caller
/// controls).
pub fn drop_group() -> Result<(), Failure> {
    if !is_setgid() {
        return Ok(());
    }
    let gid = getgid();
    setresgid(gid, gid, gid).map_err(|e| {
        Failure::new(
            Sysexit::OsErr,
            format!("cannot give up the relaymail group: {e}"),
        )
    })
}

/// The account a root-started service (the sink) runs as once its ports
/// are bound. Checked before anything is bound or generated.
pub fn service_user(name: &str) -> Result<nix::unistd::User, Failure> {
    let user = nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .ok_or_else(|| {
            Failure::new(
                Sysexit::Config,
                format!("[sink] user: no user {name:?}; create it or remove the setting"),
            )
        })?;
    if !nix::unistd::geteuid().is_root() {
        return Err(Failure::new(
            Sysexit::NoPerm,
            format!("[sink] user = {name:?} needs the sink to start as root; start it as root or remove the setting"),
        ));
    }
    Ok(user)
}

/// Makes `dir` (created if missing) the service user's, so that it can
/// keep writing there after `become_user`.
pub fn give_dir(dir: &std::path::Path, user: &nix::unistd::User) -> Result<(), Failure> {
    let failed = |e: String| {
        Failure::new(
            Sysexit::CantCreate,
            format!(
                "cannot prepare {} for user {}: {e}",
                dir.display(),
                user.name
            ),
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
    nix::unistd::chown(dir, Some(user.uid), Some(user.gid)).map_err(|e| failed(e.to_string()))
}

/// Switches the whole process to `user` for good (groups, gid, uid).
pub fn become_user(user: &nix::unistd::User) -> Result<(), Failure> {
    use nix::unistd::{setgroups, setresuid};
    let failed = |e: nix::Error| {
        Failure::new(
            Sysexit::OsErr,
            format!("cannot switch to user {}: {e}", user.name),
        )
    };
    setgroups(&[user.gid]).map_err(failed)?;
    setresgid(user.gid, user.gid, user.gid).map_err(failed)?;
    setresuid(user.uid, user.uid, user.uid).map_err(failed)
}
