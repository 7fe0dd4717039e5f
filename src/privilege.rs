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
