//! The locks an mbox commit holds: the ones mail readers respect, in the
//! order of Dovecot's default `mbox_write_locks = dotlock fcntl`. First the
//! `<mbox>.lock` dotlock (O_EXCL; one older than 5 minutes is stale and
//! removed), then a POSIX `fcntl` write lock on the whole file (what mutt
//! and s-nail take; `flock(2)` is a different lock and is not used).
//! Threads of one process also queue on an in-process lock, because
//! `fcntl` locks belong to the process, not to a thread or a descriptor.
//!
//! The dotlock and the `fcntl` lock are guards released when dropped;
//! either one not obtained within the wait is a `TimedOut` error (the sink
//! then answers with a temporary failure). Nothing here reads or writes
//! the mbox's content.
//! The tests of these locks are the store's (in `mod.rs`): they take them
//! through a commit, as the sink does.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};
use nix::libc;

use super::super::parent_dir;

/// How long a commit waits for each lock before giving up (the sink then
/// answers with a temporary failure and the client retries).
pub(super) const LOCK_WAIT: Duration = Duration::from_secs(10);

/// A dotlock older than this was left by a crashed program (liblockfile,
/// which Debian's mail tools use, takes the same age).
const STALE_LOCK: Duration = Duration::from_secs(300);

/// One lock per mbox file per process, shared by every `Mbox` opened on it.
pub(super) fn gate_for(path: &Path) -> Arc<Mutex<()>> {
    static GATES: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    let gates = GATES.get_or_init(|| Mutex::new(HashMap::new()));
    // The map stays consistent even if a holder panicked: it only grows.
    let mut gates = gates.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(gates.entry(path.to_path_buf()).or_default())
}

pub(super) fn lock_error(lock_path: &Path, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "cannot create the lock file {}: {e}; the sink's user must be able to create files in {} (on Debian: make it a member of group mail, which owns /var/mail with mode 2775)",
            lock_path.display(),
            parent_dir(lock_path).display()
        ),
    )
}

/// The `<mbox>.lock` file, removed when dropped.
pub(super) struct DotLock {
    path: PathBuf,
}

impl DotLock {
    pub(super) fn acquire(path: &Path, mbox: &Path, wait: Duration) -> io::Result<DotLock> {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        loop {
            let created = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path);
            match created {
                Ok(_) => {
                    return Ok(DotLock {
                        path: path.to_path_buf(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if is_stale(path) {
                        // Racy by nature (as in every dotlock user), but a
                        // live holder refreshes nothing for 5 minutes only
                        // when it is hung.
                        let _ = fs::remove_file(path);
                        continue;
                    }
                }
                Err(e) => return Err(lock_error(path, e)),
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "mbox {} stayed locked by {} for {} s; a mail reader is probably writing it (the client will retry); if none runs, remove the lock file",
                        mbox.display(),
                        path.display(),
                        wait.as_secs()
                    ),
                ));
            }
            std::thread::sleep(jitter(pause));
            pause = (pause * 2).min(Duration::from_millis(32));
        }
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        // A lock we cannot remove becomes stale after 5 minutes; the
        // message itself is already durable, so there is nothing to undo.
        let _ = fs::remove_file(&self.path);
    }
}

fn is_stale(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > STALE_LOCK)
}

/// Somewhere between half and all of `pause`, so that competing writers
/// do not retry in step.
fn jitter(pause: Duration) -> Duration {
    let random = getrandom::u32().unwrap_or(0) % 1024;
    pause / 2 + pause * random / 2048
}

/// The mbox file under a POSIX write lock on its whole length, released
/// when dropped (closing the file would release it too).
pub(super) struct FcntlLocked {
    pub(super) file: File,
}

impl FcntlLocked {
    pub(super) fn acquire(file: File, path: &Path, wait: Duration) -> io::Result<FcntlLocked> {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        loop {
            // F_SETLK polled rather than F_SETLKW: a reader that holds the
            // fcntl lock while it waits for our dotlock must not block us
            // forever (the kernel sees no deadlock between the two kinds).
            match fcntl(&file, FcntlArg::F_SETLK(&whole_file(libc::F_WRLCK))) {
                Ok(_) => return Ok(FcntlLocked { file }),
                Err(Errno::EACCES | Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        io::Error::from(e).kind(),
                        format!("cannot lock the mbox {} (fcntl): {e}", path.display()),
                    ))
                }
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "mbox {} stayed locked (fcntl) by another program for {} s; a mail reader is probably open on it (the client will retry)",
                        path.display(),
                        wait.as_secs()
                    ),
                ));
            }
            std::thread::sleep(jitter(pause));
            pause = (pause * 2).min(Duration::from_millis(32));
        }
    }
}

impl Drop for FcntlLocked {
    fn drop(&mut self) {
        // Closing the file releases it anyway; this only makes it prompt.
        let _ = fcntl(&self.file, FcntlArg::F_SETLK(&whole_file(libc::F_UNLCK)));
    }
}

fn whole_file(kind: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}
