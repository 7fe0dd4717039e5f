//! The setgid seam. In system mode the binary is setgid `relaymail` so any
//! user can write the shared spool; that group must never serve input the
//! caller controls.
//!
//! Order of events in every process (`lib::run`):
//! 1. `start`, before anything else: fds 0-2 are made open, the umask is
//!    fixed, and under setgid core dumps are disabled and the caller's
//!    environment is put aside and replaced by `SAFE_PATH` alone (no
//!    LD_*, locale, TZ, HOME, XDG_*, TMPDIR, SSL_CERT_* reaches privileged
//!    code; the TLS roots then come from the system's fixed paths).
//! 2. `settle`, once the configuration source is known: only the system
//!    configuration keeps the group. Any other source (`-C`,
//!    `RELAYMAIL_CONFIG`, the user's own file, built-in defaults) drops it
//!    for good before the file is read, and gives the caller's
//!    environment back (the process is then just the caller's program).
//! 3. `check_system_files`: a system configuration that a user could
//!    write would steer the group (spool, log, commands); it is refused.
//! 4. Faces that never need the shared spool (`sink`, `demo`) call
//!    `drop_group` before they open anything.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::unistd::{getegid, getgid, setegid, setresgid};

use crate::config::Source;
use crate::sysexits::{Failure, Sysexit};

/// The only environment variable a setgid process keeps (for
/// `password_command` and anything it starts).
pub const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Files relaymail creates are never writable by the group or readable by
/// others, whatever the submitter's umask; modes that need group access
/// (the shared spool) are set explicitly.
const UMASK: u32 = 0o027;

/// What the caller's environment said that relaymail uses, read before
/// the environment is reduced.
pub struct Caller {
    /// `RELAYMAIL_CONFIG`.
    pub config_env: Option<PathBuf>,
    /// Where the caller's own configuration would be (`$XDG_CONFIG_HOME`
    /// or `~/.config`), not yet looked at.
    pub own_config: Option<PathBuf>,
    /// The whole environment, given back when the group is dropped.
    saved: Option<Vec<(OsString, OsString)>>,
}

/// Running with a group we were not started with.
pub fn is_setgid() -> bool {
    getegid() != getgid()
}

/// Step 1: called first, in a process that has no other thread yet.
pub fn start() -> Caller {
    ensure_standard_fds();
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(UMASK));
    let caller = Caller {
        config_env: std::env::var_os("RELAYMAIL_CONFIG").map(PathBuf::from),
        own_config: directories::ProjectDirs::from("", "", "relaymail")
            .map(|dirs| dirs.config_dir().join("relaymail.toml")),
        saved: None,
    };
    if !is_setgid() {
        return caller;
    }
    no_core_dumps();
    let saved: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    for (key, _) in &saved {
        std::env::remove_var(key);
    }
    std::env::set_var("PATH", SAFE_PATH);
    Caller {
        saved: Some(saved),
        ..caller
    }
}

/// A process started with fd 0, 1 or 2 closed would hand that number to
/// the next file it opens (a spool file could then receive error text).
/// Rust's runtime does the same on Linux today; this does not rely on it.
fn ensure_standard_fds() {
    use std::os::fd::{AsFd, IntoRawFd};
    let open = |fd: std::os::fd::BorrowedFd<'_>| {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_ok()
    };
    let missing = [
        !open(std::io::stdin().as_fd()),
        !open(std::io::stdout().as_fd()),
        !open(std::io::stderr().as_fd()),
    ];
    for gap in missing {
        if !gap {
            continue;
        }
        // The lowest free descriptor is the closed standard one.
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            Ok(null) => {
                let _ = null.into_raw_fd();
            }
            Err(_) => std::process::exit(Sysexit::OsErr.code().into()),
        }
    }
}

/// Core dumps and ptrace from the caller are off: the process may hold
/// spool contents or a secret.
pub fn no_core_dumps() {
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    let _ = nix::sys::prctl::set_dumpable(false);
}

/// Runs `f` with the caller's own group as the effective one (the saved
/// set-group-ID keeps the relaymail group for afterwards), for looking
/// at paths the caller chose.
pub fn as_caller<T>(f: impl FnOnce() -> T) -> T {
    if !is_setgid() {
        return f();
    }
    let privileged = getegid();
    let lowered = setegid(getgid()).is_ok();
    let result = f();
    if lowered && setegid(privileged).is_err() {
        // Cannot happen (the saved set-group-ID allows it); without the
        // group the next spool access fails with a clear error.
        crate::log::stderr("relaymail: warning: cannot take back the relaymail group");
    }
    result
}

/// Step 2, once the configuration source is known.
pub fn settle(source: &Source, caller: &Caller) -> Result<(), Failure> {
    if !is_setgid() || matches!(source, Source::System(_)) {
        return Ok(());
    }
    drop_group().map_err(|e| {
        Failure::new(
            Sysexit::OsErr,
            format!(
                "cannot give up the relaymail group before reading a user-chosen configuration: {}",
                e.message
            ),
        )
    })?;
    restore_environment(caller);
    Ok(())
}

/// The process is the caller's own now: their environment is theirs.
fn restore_environment(caller: &Caller) {
    let Some(saved) = &caller.saved else {
        return;
    };
    std::env::remove_var("PATH");
    for (key, value) in saved {
        std::env::set_var(key, value);
    }
}

/// Step 3: every system configuration file, and every directory above
/// it, belongs to root and no one else can write it. Otherwise whoever
/// can write it decides what the relaymail group opens and runs.
pub fn check_system_files(files: &[PathBuf]) -> Result<(), Failure> {
    for file in files {
        if let Some((path, problem)) = untrusted(file, &[0]) {
            return Err(Failure::new(
                Sysexit::Config,
                format!(
                    "refusing the system configuration {}: {} {problem}, so others could change what the relaymail group does; as root run chown root {1} && chmod go-w {1}",
                    file.display(),
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Why `file` could be changed by someone other than `owners`: the first
/// path (the file or a directory above it, as written or where it really
/// leads) that another user owns or that group or others may write.
/// Sticky directories such as /tmp do not count: others cannot swap what
/// they hold.
pub fn untrusted(file: &Path, owners: &[u32]) -> Option<(PathBuf, String)> {
    let real = std::fs::canonicalize(file).ok();
    std::iter::once(file)
        .chain(real.as_deref())
        .flat_map(Path::ancestors)
        .filter(|path| !path.as_os_str().is_empty())
        .find_map(|path| {
            let meta = std::fs::symlink_metadata(path).ok()?;
            if !owners.contains(&meta.uid()) {
                return Some((path.to_path_buf(), format!("belongs to uid {}", meta.uid())));
            }
            let sticky_dir = meta.is_dir() && meta.mode() & 0o1000 != 0;
            (meta.mode() & 0o022 != 0 && !meta.file_type().is_symlink() && !sticky_dir).then(|| {
                (
                    path.to_path_buf(),
                    format!(
                        "is writable by group or others (mode {:04o})",
                        meta.mode() & 0o7777
                    ),
                )
            })
        })
}

/// Gives up the setgid group for good (for faces that never need the
/// shared spool, such as `sink` and `demo`, which work in places the
/// caller controls).
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
