//! The smarthost password: from `password_file` (refused when others can
//! read it) or `password_command` (honoured only from a root-owned
//! configuration). The secret never appears in errors or logs.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::config::{Config, Mode};
use crate::relay::Secret;
use crate::sysexits::{Failure, Sysexit};

/// The configured secret, if a username is set.
pub fn load(config: &Config) -> Result<Option<Secret>, Failure> {
    let Some(host) = &config.smarthost else {
        return Ok(None);
    };
    if host.username.is_none() {
        return Ok(None);
    }
    // No core file or ptrace may show the secret read below.
    crate::privilege::no_core_dumps();
    if let Some(path) = &host.password_file {
        return from_file(path, config.mode).map(Some);
    }
    if let Some(command) = &host.password_command {
        return from_command(command, config).map(Some);
    }
    Err(Failure::new(
        Sysexit::Config,
        "[smarthost] username is set but neither password_file nor password_command is; add one",
    ))
}

fn from_file(path: &Path, mode: Mode) -> Result<Secret, Failure> {
    check_private(path, "password_file", mode)?;
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            Sysexit::Config,
            format!("cannot read password_file {}: {e}", path.display()),
        )
    })?;
    let first = text.lines().next().unwrap_or("");
    if first.is_empty() {
        return Err(Failure::new(
            Sysexit::Config,
            format!("password_file {} is empty", path.display()),
        ));
    }
    Ok(Secret::new(first.to_string()))
}

/// Refuses a secret file (`what` names its key) that others can read:
/// 0600, or root:relaymail 0640 in system mode.
pub fn check_private(path: &Path, what: &str, mode: Mode) -> Result<(), Failure> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Failure::new(
            Sysexit::Config,
            format!("cannot read {what} {}: {e}", path.display()),
        )
    })?;
    let bits = meta.mode() & 0o777;
    let group_ok = mode == Mode::System
        && nix::unistd::Group::from_name(crate::spool::GROUP)
            .ok()
            .flatten()
            .is_some_and(|g| g.gid.as_raw() == meta.gid());
    let too_open = bits & 0o007 != 0 || (bits & 0o070 != 0 && !group_ok);
    if too_open {
        let fix = if mode == Mode::System {
            "chown root:relaymail and chmod 640"
        } else {
            "chmod 600"
        };
        return Err(Failure::new(
            Sysexit::NoPerm,
            format!(
                "refusing {what} {}: readable by others (mode {bits:04o}); run {fix}",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Every configuration file is root's and closed to writes by others:
/// only then may it name a command for the setgid binary to run.
pub fn config_is_root_owned(config: &Config) -> bool {
    config
        .files
        .iter()
        .all(|f| std::fs::metadata(f).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0))
}

fn from_command(command: &str, config: &Config) -> Result<Secret, Failure> {
    // Under the setgid binary a command from a file a user could write
    // would run with the relaymail group.
    if crate::privilege::is_setgid() && !config_is_root_owned(config) {
        return Err(Failure::new(
            Sysexit::NoPerm,
            "password_command is honoured only from a root-owned configuration not writable by others",
        ));
    }
    let out = Command::new("/bin/sh")
        .args(["-c", command])
        .output()
        .map_err(|e| Failure::new(Sysexit::Config, format!("cannot run password_command: {e}")))?;
    if !out.status.success() {
        return Err(Failure::new(
            Sysexit::TempFail,
            format!(
                "password_command failed ({}); its output is not shown",
                out.status
            ),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or("").to_string();
    if first.is_empty() {
        return Err(Failure::new(
            Sysexit::Config,
            "password_command printed nothing",
        ));
    }
    Ok(Secret::new(first))
}
