//! Where the configuration comes from, and so the mode relaymail runs in.
//!
//! Discovery order: `-C FILE`, then `RELAYMAIL_CONFIG`, then the user's own
//! `~/.config/relaymail/relaymail.toml`, then the system file
//! `/etc/relaymail/relaymail.toml` (+ `conf.d/*.toml`), then built-in
//! defaults in user mode. Only the system file gives system mode: the
//! shared, group-owned spool. Anything chosen by a user runs in user mode
//! (the seam where the setgid binary gives up its group; see `privilege`).

use std::fs;
use std::path::{Path, PathBuf};

use super::{Error, Mode, SYSTEM_DIR};

/// Where the configuration was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `-C` or `RELAYMAIL_CONFIG`.
    Explicit(PathBuf),
    /// The user's own file.
    User(PathBuf),
    /// The system directory (`relaymail.toml` + `conf.d/*.toml`).
    System(PathBuf),
    /// No file at all: built-in defaults, user mode.
    Defaults,
}

impl Source {
    pub fn mode(&self) -> Mode {
        match self {
            Source::System(_) => Mode::System,
            _ => Mode::User,
        }
    }

    /// Chosen by the caller rather than by the administrator.
    pub fn is_user_supplied(&self) -> bool {
        matches!(self, Source::Explicit(_) | Source::User(_))
    }
}

/// Finds the configuration. `explicit` is `-C`, `env` is
/// `RELAYMAIL_CONFIG`, `own` the caller's own file if it exists (looked
/// at with the caller's rights, see `privilege::as_caller`).
pub fn discover(explicit: Option<PathBuf>, env: Option<PathBuf>, own: Option<PathBuf>) -> Source {
    if let Some(path) = explicit.or(env).filter(|p| !p.as_os_str().is_empty()) {
        return Source::Explicit(path);
    }
    if let Some(own) = own {
        return Source::User(own);
    }
    let system = Path::new(SYSTEM_DIR);
    if system.join("relaymail.toml").is_file() {
        return Source::System(system.to_path_buf());
    }
    Source::Defaults
}

/// `relaymail.toml` first, then `conf.d/*.toml` in name order.
pub(super) fn system_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut files = vec![dir.join("relaymail.toml")];
    let conf_d = dir.join("conf.d");
    match fs::read_dir(&conf_d) {
        Ok(entries) => {
            let mut extra: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            extra.sort();
            files.extend(extra);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Read {
                path: conf_d,
                source,
            })
        }
    }
    Ok(files)
}
