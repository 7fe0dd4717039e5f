//! The token cache file (`[smarthost.oauth2] token_cache`, default
//! `<spool>/state/oauth2-token.json`) and its lock.
//!
//! The file holds the current access token and its expiry and, in system
//! mode, the refresh token too (user mode keeps that in the OS keyring).
//! It is protected like a password file: 0600 in user mode; in system
//! mode 0640 in the group `relaymail`, in the state directory that only
//! root and the group can enter (root:relaymail 2770, like the spool, so
//! a delivery run by any user through the setgid binary can replace the
//! file, and no user can reach it). It is replaced atomically (a new file
//! written, fsynced and renamed over it, then the directory fsynced): a
//! crash leaves the old tokens or the new ones, never half of either.
//!
//! The lock: `<token_cache>.lock`, an exclusive flock held while a token
//! is refreshed, so that concurrent deliveries refresh once: whoever
//! waited reads the file again and finds the new token.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::{Error, Kind};
use crate::config::Mode;

/// The file's format version: a newer one is not read (nor overwritten).
const VERSION: u32 = 1;
/// A cache file bigger than this is not one.
const MAX_SIZE: u64 = 256 << 10;
/// How long a delivery waits for another process's refresh.
pub const LOCK_WAIT: Duration = Duration::from_secs(90);

/// What the file holds. Its secrets are never shown (no `Debug`).
#[derive(Default, Serialize, Deserialize)]
pub struct Contents {
    pub version: u32,
    /// Whose tokens these are: a cache for another application, account
    /// or endpoint (the configuration changed) is not used.
    pub token_endpoint: String,
    pub client_id: String,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obtained_at: Option<i64>,
    /// The scope the provider granted, when it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// System mode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the refresh token was stored (login or rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_saved_at: Option<i64>,
    /// When `relaymail oauth2 login` last completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_at: Option<i64>,
}

impl Contents {
    pub fn new(token_endpoint: &str, client_id: &str, username: &str) -> Contents {
        Contents {
            version: VERSION,
            token_endpoint: token_endpoint.to_string(),
            client_id: client_id.to_string(),
            username: username.to_string(),
            ..Contents::default()
        }
    }

    pub fn belongs_to(&self, token_endpoint: &str, client_id: &str, username: &str) -> bool {
        self.token_endpoint == token_endpoint
            && self.client_id == client_id
            && self.username == username
    }
}

pub struct Cache {
    pub path: PathBuf,
    mode: Mode,
}

/// The held lock; released when dropped.
pub struct Lock {
    _flock: Flock<File>,
}

impl Cache {
    pub fn new(path: &Path, mode: Mode) -> Cache {
        Cache {
            path: path.to_path_buf(),
            mode,
        }
    }

    fn dir(&self) -> &Path {
        self.path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    /// The contents, or None when there is no file yet. A file others can
    /// read is refused, as a password file would be.
    pub fn read(&self) -> Result<Option<Contents>, Error> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io("read", &self.path, e)),
        };
        crate::creds::check_private(&self.path, "token_cache", self.mode)
            .map_err(|f| Error::new(Kind::Storage, f.message))?;
        let mut text = String::new();
        (&mut file)
            .take(MAX_SIZE)
            .read_to_string(&mut text)
            .map_err(|e| self.io("read", &self.path, e))?;
        let contents: Contents = serde_json::from_str(&text).map_err(|e| {
            Error::new(
                Kind::Storage,
                format!(
                    "token cache {} is damaged ({e}); remove it and run relaymail oauth2 login",
                    self.path.display()
                ),
            )
        })?;
        if contents.version > VERSION {
            return Err(Error::new(
                Kind::Storage,
                format!(
                    "token cache {} was written by a newer relaymail (format {}); use that version",
                    self.path.display(),
                    contents.version
                ),
            ));
        }
        Ok(Some(contents))
    }

    /// Replaces the file atomically and durably.
    pub fn write(&self, contents: &Contents) -> Result<(), Error> {
        self.ensure_dir()?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "oauth2-token.json".into());
        let tmp = self
            .dir()
            .join(format!(".{name}.{}.tmp", std::process::id()));
        let text = serde_json::to_vec_pretty(contents).map_err(|e| {
            Error::new(Kind::Storage, format!("cannot encode the token cache: {e}"))
        })?;
        let result = (|| {
            let _ = fs::remove_file(&tmp);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(self.file_mode())
                .open(&tmp)
                .map_err(|e| self.io("create", &tmp, e))?;
            self.own(&file, &tmp)?;
            file.write_all(&text)
                .and_then(|()| file.sync_all())
                .map_err(|e| self.io("write", &tmp, e))?;
            drop(file);
            fs::rename(&tmp, &self.path).map_err(|e| self.io("replace", &self.path, e))?;
            File::open(self.dir())
                .and_then(|d| d.sync_all())
                .map_err(|e| self.io("sync", self.dir(), e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Removes the file (logout); true when there was one.
    pub fn remove(&self) -> Result<bool, Error> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io("remove", &self.path, e)),
        }
    }

    /// Takes the refresh lock, waiting up to `wait` for another process.
    pub fn lock(&self, wait: Duration) -> Result<Lock, Error> {
        self.ensure_dir()?;
        let mut name = self.path.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        // Read-only is enough for flock, and all a process gets of a lock
        // file another user's delivery created (0640) in system mode.
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(self.file_mode())
                .open(&path)
                .map_err(|e| self.io("create the lock", &path, e))?,
            Err(e) => return Err(self.io("open the lock", &path, e)),
        };
        let deadline = Instant::now() + wait;
        let mut file = file;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(flock) => return Ok(Lock { _flock: flock }),
                Err((back, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    file = back;
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(Error::new(
                        Kind::Busy,
                        format!(
                            "another relaymail process has been refreshing the OAuth2 token for over {}s (lock {}); the message stays queued",
                            wait.as_secs(),
                            path.display()
                        ),
                    ))
                }
                Err((_, e)) => return Err(self.io("lock", &path, e.into())),
            }
        }
    }

    fn file_mode(&self) -> u32 {
        match self.mode {
            Mode::User => 0o600,
            Mode::System => 0o640,
        }
    }

    /// The state directory: made by the user in user mode (0700); in
    /// system mode only by root, as root:relaymail 2770 like the spool.
    fn ensure_dir(&self) -> Result<(), Error> {
        let dir = self.dir().to_path_buf();
        if dir.is_dir() {
            return Ok(());
        }
        let root = nix::unistd::geteuid().is_root();
        if self.mode == Mode::System && !root {
            return Err(Error::new(
                Kind::Storage,
                format!(
                    "the OAuth2 state directory {} is missing; create it as root: install -d -o root -g {} -m 2770 {0} (relaymail oauth2 login, run as root, does)",
                    dir.display(),
                    crate::spool::GROUP
                ),
            ));
        }
        fs::create_dir_all(&dir).map_err(|e| self.io("create", &dir, e))?;
        let mode = match self.mode {
            Mode::User => 0o700,
            Mode::System => 0o2770,
        };
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
            .map_err(|e| self.io("set the mode of", &dir, e))?;
        if self.mode == Mode::System {
            let gid = group()?;
            nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(0)), Some(gid))
                .map_err(|e| self.io("set the owner of", &dir, e.into()))?;
        }
        Ok(())
    }

    /// A new file's mode whatever the umask, and in system mode the group
    /// (root's files would otherwise be root:root).
    fn own(&self, file: &File, path: &Path) -> Result<(), Error> {
        file.set_permissions(fs::Permissions::from_mode(self.file_mode()))
            .map_err(|e| self.io("set the mode of", path, e))?;
        if self.mode == Mode::System {
            let gid = group()?;
            let root = nix::unistd::geteuid().is_root();
            let uid = root.then(|| nix::unistd::Uid::from_raw(0));
            use std::os::fd::AsFd;
            nix::unistd::fchown(file.as_fd(), uid, Some(gid))
                .map_err(|e| self.io("set the group of", path, e.into()))?;
        }
        Ok(())
    }

    fn io(&self, action: &str, path: &Path, e: io::Error) -> Error {
        let hint = match (e.kind(), self.mode) {
            (io::ErrorKind::PermissionDenied, Mode::System) => {
                " (the state directory must be root:relaymail 2770; deliveries reach it through the setgid binary or the relaymail account)"
            }
            _ => "",
        };
        Error::new(
            Kind::Storage,
            format!("cannot {action} {}: {e}{hint}", path.display()),
        )
    }
}

fn group() -> Result<nix::unistd::Gid, Error> {
    nix::unistd::Group::from_name(crate::spool::GROUP)
        .ok()
        .flatten()
        .map(|g| g.gid)
        .ok_or_else(|| {
            Error::new(
                Kind::Storage,
                format!(
                    "no group {:?} on this host; system mode needs it (groupadd --system relaymail)",
                    crate::spool::GROUP
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_replaced_cache_is_private_whole_and_never_left_half_written() {
        let dir = tempfile::tempdir().expect("dir");
        let cache = Cache::new(&dir.path().join("state/oauth2-token.json"), Mode::User);
        assert!(cache.read().expect("no file").is_none());
        let mut c = Contents::new("https://t/token", "app", "a@x");
        c.access_token = Some("at-1".into());
        c.expires_at = Some(100);
        cache.write(&c).expect("write");
        c.access_token = Some("at-2".into());
        cache.write(&c).expect("rewrite");
        let back = cache.read().expect("read").expect("file");
        assert_eq!(back.access_token.as_deref(), Some("at-2"));
        assert!(back.belongs_to("https://t/token", "app", "a@x"));
        assert!(!back.belongs_to("https://t/token", "other", "a@x"));
        let meta = fs::metadata(&cache.path).expect("meta");
        assert_eq!(meta.mode() & 0o777, 0o600);
        let state = fs::metadata(dir.path().join("state")).expect("dir");
        assert_eq!(state.mode() & 0o777, 0o700);
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("state"))
            .expect("list")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
        fs::set_permissions(&cache.path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = cache.read().err().expect("readable by others");
        assert!(e.message.contains("chmod 600"), "{}", e.message);
    }

    #[test]
    fn the_lock_is_exclusive_and_waits_with_a_deadline() {
        let dir = tempfile::tempdir().expect("dir");
        let cache = Cache::new(&dir.path().join("c.json"), Mode::User);
        let held = cache.lock(Duration::from_secs(1)).expect("first");
        let e = cache
            .lock(Duration::from_millis(100))
            .err()
            .expect("second waits, then gives up");
        assert_eq!(e.kind, Kind::Busy);
        drop(held);
        cache.lock(Duration::from_millis(100)).expect("free again");
    }
}
