//! The on-disk queue: durable, crash-safe, safe for concurrent processes.
//! docs/spool.md is the reference for the format and its guarantees.
//!
//! Layout under the spool directory:
//!   tmp/<ID>.<pid>.msg, tmp/<ID>.<pid>.env   being written by process <pid>
//!   queue/<ID>.msg   the message and its first envelope (queue_file.rs),
//!                    immutable once linked here
//!   queue/<ID>.env   the envelope and delivery state once it changed
//!                    (TOML), replaced atomically; absent until then
//!
//! Enqueue: write tmp/…msg (O_EXCL) and flock it: a fixed-width first
//! line, the message, the envelope; complete the first line in place;
//! fsync; link it to queue/<ID>.msg; fsync queue/. That link is the commit
//! point: a message is visible (to mailq, flush) exactly when queue/<ID>.msg
//! exists, and `sendmail` exits 0 only after the directory fsync that makes
//! it durable: two flushes. Links, not renames, so that an existing entry
//! is never overwritten. The envelope is `.env` when present, else the one
//! inside the `.msg`.
//!
//! Format 1 (earlier releases): queue/<ID>.msg held the message alone and
//! queue/<ID>.env (linked last) was the commit point. Such entries are
//! still read, delivered, listed and removed; a format-1 `.msg` without
//! `.env` is an interrupted submission.
//!
//! Locking: whoever writes, delivers or changes a message holds an
//! exclusive flock on its `.msg` inode (the same inode from tmp/ to
//! queue/), taken right after creation. A failed lock is `Busy`, a normal
//! outcome. State updates write a new `.env` in tmp/ and rename it over.
//!
//! Removal: the `.msg` first (it is what makes an entry visible), then the
//! directory fsync, then the `.env`: a crash in between leaves a stray
//! `.env`, never a message that would be sent again.
//!
//! Orphans: a tmp/ file whose writer process is gone, a format-1 queue/
//! `.msg` without `.env` whose lock is free, or a `.env` without `.msg`;
//! `clean_orphans` removes and reports them.

pub mod envelope;
pub mod queue_file;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

pub use crate::id::QueueId;
pub use envelope::{Envelope, RecipientState, Status};

use crate::config::Mode;
use crate::sysexits::{self, ExitStatus, Sysexit};

pub const GROUP: &str = "relaymail";

#[derive(Debug)]
pub enum Error {
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    LowSpace {
        path: PathBuf,
        free: u64,
        needed: u64,
    },
    NotFound(QueueId),
    BadId(String),
    Busy(QueueId),
    Corrupt {
        path: PathBuf,
        reason: String,
    },
    NoGroup,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { action, path, source } => write!(
                f,
                "cannot {action} {}: {source}{}",
                path.display(),
                sysexits::store_advice(source)
            ),
            Error::LowSpace { path, free, needed } => write!(
                f,
                "spool filesystem of {} has only {free} bytes free, less than [queue] min_free_space = {needed}; free some space, then send again",
                path.display()
            ),
            Error::NotFound(id) => write!(f, "no message {id} in the queue (see mailq)"),
            Error::BadId(text) => write!(f, "{text:?} is not a queue ID; IDs are 16 characters as shown by mailq"),
            Error::Busy(id) => write!(f, "message {id} is being delivered or changed by another process; try again in a moment"),
            Error::Corrupt { path, reason } => write!(f, "{}: {reason}", path.display()),
            Error::NoGroup => write!(f, "group {GROUP} does not exist; create it (groupadd --system {GROUP}) or install the relaymail package"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl ExitStatus for Error {
    fn sysexit(&self) -> Sysexit {
        match self {
            Error::Io { source, .. } => sysexits::for_store_error(source),
            Error::LowSpace { .. } | Error::Busy(_) => Sysexit::TempFail,
            Error::NotFound(_) | Error::BadId(_) => Sysexit::Usage,
            Error::Corrupt { .. } => Sysexit::DataErr,
            Error::NoGroup => Sysexit::Config,
        }
    }
}

fn io_err<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> Error + 'p {
    move |source| Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

pub struct Spool {
    root: PathBuf,
    tmp: PathBuf,
    queue: PathBuf,
    mode: Mode,
}

impl Spool {
    /// Opens the spool, creating its directories when missing: 0700 for a
    /// user, root:relaymail 2770 in system mode (root only).
    pub fn open(root: &Path, mode: Mode) -> Result<Spool, Error> {
        let dir_mode = match mode {
            Mode::User => 0o700,
            Mode::System => 0o2770,
        };
        let spool = Spool {
            root: root.to_path_buf(),
            tmp: root.join("tmp"),
            queue: root.join("queue"),
            mode,
        };
        for dir in [&spool.root, &spool.tmp, &spool.queue] {
            if dir.is_dir() {
                continue;
            }
            // The shared spool belongs to root:relaymail; a user running
            // the setgid binary must not create (and so own) any of it.
            if mode == Mode::System && !nix::unistd::geteuid().is_root() {
                return Err(Error::Io {
                    action: "find spool directory",
                    path: dir.to_path_buf(),
                    source: io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "missing; create it as root: install -d -o root -g {GROUP} -m 2770 {}",
                            dir.display()
                        ),
                    ),
                });
            }
            fs::create_dir_all(dir).map_err(io_err("create spool directory", dir))?;
            if let Some(parent) = dir.parent() {
                // A new directory is durable only once its parent is synced.
                sync_dir(parent)?;
            }
            fs::set_permissions(dir, fs::Permissions::from_mode(dir_mode))
                .map_err(io_err("set the mode of", dir))?;
            if mode == Mode::System {
                let group = nix::unistd::Group::from_name(GROUP)
                    .ok()
                    .flatten()
                    .ok_or(Error::NoGroup)?;
                nix::unistd::chown(
                    dir.as_path(),
                    Some(nix::unistd::Uid::from_raw(0)),
                    Some(group.gid),
                )
                .map_err(|e| Error::Io {
                    action: "set the owner of",
                    path: dir.to_path_buf(),
                    source: e.into(),
                })?;
            }
        }
        Ok(spool)
    }

    /// Queue files: the user's alone, or readable by the relaymail group
    /// (other users' mailq and flush) in system mode.
    fn file_mode(&self) -> u32 {
        match self.mode {
            Mode::User => 0o600,
            Mode::System => 0o640,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn message_path(&self, id: &QueueId) -> PathBuf {
        self.queue.join(format!("{id}.msg"))
    }

    pub fn envelope_path(&self, id: &QueueId) -> PathBuf {
        self.queue.join(format!("{id}.env"))
    }

    /// Refuses new mail when the spool filesystem is nearly full, before a
    /// byte is written (as OpenSMTPD does), so the caller can retry later.
    pub fn check_space(&self, needed: u64) -> Result<(), Error> {
        if needed == 0 {
            return Ok(());
        }
        if let Ok(stat) = nix::sys::statvfs::statvfs(self.queue.as_path()) {
            let free = stat.blocks_available().saturating_mul(stat.fragment_size());
            if free < needed {
                return Err(Error::LowSpace {
                    path: self.root.clone(),
                    free,
                    needed,
                });
            }
        }
        Ok(())
    }

    /// Starts a new message: an exclusive, locked file in tmp/.
    pub fn create(&self) -> Result<Draft<'_>, Error> {
        let pid = std::process::id();
        loop {
            let id = QueueId::generate();
            let path = self.tmp.join(format!("{id}.{pid}.msg"));
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(self.file_mode())
                .open(&path);
            match file {
                Ok(file) => {
                    // The mode is the spool's, whatever the submitter's
                    // umask: other users' mailq and flush read it.
                    file.set_permissions(fs::Permissions::from_mode(self.file_mode()))
                        .map_err(io_err("set the mode of", &path))?;
                    let lock = lock(file, &path)?.ok_or_else(|| Error::Busy(id.clone()))?;
                    // Same open file description: the flock covers both.
                    let file = lock.try_clone().map_err(io_err("open", &path))?;
                    let mut writer = BufWriter::with_capacity(64 << 10, file);
                    if let Err(e) = writer.write_all(&queue_file::placeholder()) {
                        let _ = fs::remove_file(&path);
                        return Err(io_err("write", &path)(e));
                    }
                    return Ok(Draft {
                        id,
                        path,
                        writer: Some(writer),
                        lock: Some(lock),
                        spool: self,
                        linked: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create a message file in", &self.tmp)(e)),
            }
        }
    }

    /// Every committed message's envelope, oldest first. Unreadable entries
    /// are returned as errors alongside, never hiding the rest.
    pub fn list(&self) -> Result<Vec<Result<Envelope, Error>>, Error> {
        // Gone meanwhile (delivered) or never committed: not queued.
        Ok(self
            .ids()?
            .iter()
            .map(|id| self.read(id))
            .filter(|r| !matches!(r, Err(Error::NotFound(_))))
            .collect())
    }

    /// The ids in `queue/`, oldest first, from the directory alone: no
    /// envelope is read.
    pub fn ids(&self) -> Result<Vec<QueueId>, Error> {
        let mut ids = Vec::new();
        for entry in
            fs::read_dir(&self.queue).map_err(io_err("read the queue directory", &self.queue))?
        {
            let entry = entry.map_err(io_err("read the queue directory", &self.queue))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".msg")) else {
                continue;
            };
            if let Some(id) = QueueId::parse(stem) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The current envelope: `.env` once the state changed, else the
    /// first one inside the `.msg`. NotFound when nothing is committed.
    pub fn read(&self, id: &QueueId) -> Result<Envelope, Error> {
        let path = self.envelope_path(id);
        let (text, path) = match fs::read_to_string(&path) {
            Ok(text) => (text, path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match self.first_envelope(id)? {
                Some(found) => found,
                None => return Err(Error::NotFound(id.clone())),
            },
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        Envelope::from_toml(&text).map_err(|reason| Error::Corrupt { path, reason })
    }

    /// The envelope a format-2 `.msg` carries; None for no `.msg` or a
    /// format-1 one.
    fn first_envelope(&self, id: &QueueId) -> Result<Option<(String, PathBuf)>, Error> {
        let path = self.message_path(id);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        let corrupt = |e: io::Error| Error::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        };
        let Some(layout) = queue_file::layout(&file).map_err(corrupt)? else {
            return Ok(None);
        };
        let text = queue_file::envelope_text(&file, layout).map_err(corrupt)?;
        Ok(Some((text, path.clone())))
    }

    /// One of `slots` background-runner slots (`runner.N` in the spool
    /// directory, flocked while a runner works). `Busy`: every usable slot
    /// is held, so a runner will take newly queued mail. `Unavailable`:
    /// no slot can be used (files missing where only root may create
    /// them, or not root's in system mode), so the caller delivers by
    /// itself as before.
    pub fn runner_slot(&self, slots: usize) -> Slot {
        let mut busy = false;
        for n in 0..slots.max(1) {
            let path = self.root.join(format!("runner.{n}"));
            let Some(file) = self.slot_file(&path) else {
                continue;
            };
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Slot::Held(lock),
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => busy = true,
                Err(_) => {}
            }
        }
        if busy {
            Slot::Busy
        } else {
            Slot::Unavailable
        }
    }

    /// A slot file that only the spool's owner made: in system mode only
    /// root creates them (a file a user made could be held by that user
    /// for ever), and one that is not root's is ignored.
    fn slot_file(&self, path: &Path) -> Option<File> {
        let system = self.mode == Mode::System;
        let may_create = !system || nix::unistd::geteuid().is_root();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(may_create)
            .mode(if system { 0o660 } else { 0o600 })
            .open(path)
            .ok()?;
        let meta = file.metadata().ok()?;
        if system && meta.uid() != 0 {
            return None;
        }
        Some(file)
    }

    /// A token that changes whenever an entry is linked into or removed
    /// from queue/ (the directory's modification time).
    pub fn queue_changed_token(&self) -> Option<(i64, i64)> {
        fs::metadata(&self.queue)
            .ok()
            .map(|m| (m.mtime(), m.mtime_nsec()))
    }

    /// Makes the removals done with `Locked::remove_unsynced` durable.
    pub fn sync_queue(&self) -> Result<(), Error> {
        sync_dir(&self.queue)
    }

    /// A reader of exactly the queued message (without the envelope).
    pub fn body(&self, id: &QueueId) -> Result<io::Take<File>, Error> {
        let path = self.message_path(id);
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(id.clone()),
            _ => io_err("open", &path)(e),
        })?;
        queue_file::body(file).map_err(|e| Error::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    /// Takes the message's lock; `Busy` if another process holds it.
    pub fn lock(&self, id: &QueueId) -> Result<Locked<'_>, Error> {
        let path = self.message_path(id);
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound if self.envelope_path(id).exists() => Error::Corrupt {
                path: path.clone(),
                reason:
                    "the message file is missing; delete the entry with `relaymail queue delete`"
                        .into(),
            },
            io::ErrorKind::NotFound => Error::NotFound(id.clone()),
            _ => io_err("open", &path)(e),
        })?;
        let lock = lock(file, &path)?.ok_or_else(|| Error::Busy(id.clone()))?;
        // Removed by its last holder between our open and our lock.
        if lock.metadata().map_err(io_err("stat", &path))?.nlink() == 0 {
            return Err(Error::NotFound(id.clone()));
        }
        Ok(Locked {
            id: id.clone(),
            spool: self,
            _lock: lock,
        })
    }

    /// Like `lock`, but for an entry whose envelope may be missing or
    /// unreadable (so that a broken entry can still be deleted).
    fn lock_any(&self, id: &QueueId) -> Result<Option<Flock<File>>, Error> {
        let path = self.message_path(id);
        match File::open(&path) {
            Ok(file) => lock(file, &path)?
                .map(Some)
                .ok_or_else(|| Error::Busy(id.clone())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("open", &path)(e)),
        }
    }

    /// Removes a message whatever the state of its files.
    pub fn delete(&self, id: &QueueId) -> Result<(), Error> {
        let _lock = self.lock_any(id)?;
        let env = self.envelope_path(id);
        let msg = self.message_path(id);
        if !env.exists() && !msg.exists() {
            return Err(Error::NotFound(id.clone()));
        }
        remove_if_present(&msg)?;
        sync_dir(&self.queue)?;
        remove_if_present(&env)?;
        Ok(())
    }

    /// Removes leftovers of interrupted submissions (see the module doc);
    /// `queue_too` also scans queue/ for a `.msg` without `.env`.
    pub fn clean_orphans(&self, queue_too: bool) -> Result<Vec<Orphan>, Error> {
        let mut removed = Vec::new();
        for entry in fs::read_dir(&self.tmp).map_err(io_err("read", &self.tmp))? {
            let entry = entry.map_err(io_err("read", &self.tmp))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Only our own names: <ID>.<pid>.msg or <ID>.<pid>.env.
            let parts: Vec<&str> = name.split('.').collect();
            let (Some(id), Some(pid), Some(kind), 3) =
                (parts.first(), parts.get(1), parts.get(2), parts.len())
            else {
                continue;
            };
            let Ok(writer) = pid.parse::<i32>() else {
                continue;
            };
            if QueueId::parse(id).is_none()
                || !matches!(*kind, "msg" | "env")
                || process_alive(writer)
            {
                continue;
            }
            let path = entry.path();
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            // A writer that committed and exited between the listing and
            // here took its files along: nothing was left over.
            if remove_if_present(&path)? {
                removed.push(Orphan { path, size });
            }
        }
        if queue_too {
            for entry in fs::read_dir(&self.queue).map_err(io_err("read", &self.queue))? {
                let entry = entry.map_err(io_err("read", &self.queue))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(id) = name.strip_suffix(".env").and_then(QueueId::parse) {
                    // A removal interrupted after its .msg went.
                    if !self.message_path(&id).exists() && remove_if_present(&entry.path())? {
                        removed.push(Orphan {
                            path: entry.path(),
                            size: 0,
                        });
                    }
                    continue;
                }
                let Some(id) = name.strip_suffix(".msg").and_then(QueueId::parse) else {
                    continue;
                };
                if self.envelope_path(&id).exists() || !self.is_format_1(&id) {
                    continue;
                }
                // Held by a live submitter that has not committed yet: skip.
                let Ok(Some(_lock)) = self.lock_any(&id) else {
                    continue;
                };
                if self.envelope_path(&id).exists() {
                    continue;
                }
                let path = entry.path();
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                if remove_if_present(&path)? {
                    removed.push(Orphan { path, size });
                }
            }
        }
        Ok(removed)
    }

    /// A `.msg` written by an earlier release (the message alone).
    fn is_format_1(&self, id: &QueueId) -> bool {
        File::open(self.message_path(id))
            .and_then(|f| queue_file::layout(&f))
            .is_ok_and(|layout| layout.is_none())
    }

    /// Writes `envelope` as the new state of `id` (tmp + fsync + rename +
    /// directory fsync). The caller holds the message's lock.
    fn replace_envelope(&self, id: &QueueId, envelope: &Envelope) -> Result<(), Error> {
        let tmp = self.write_tmp_envelope(id, envelope)?;
        let target = self.envelope_path(id);
        fs::rename(&tmp, &target).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err("replace", &target)(e)
        })?;
        sync_dir(&self.queue)
    }

    fn write_tmp_envelope(&self, id: &QueueId, envelope: &Envelope) -> Result<PathBuf, Error> {
        let path = self.tmp.join(format!("{id}.{}.env", std::process::id()));
        let text = envelope.to_toml().map_err(|reason| Error::Corrupt {
            path: path.clone(),
            reason: format!("cannot serialise the state: {reason}"),
        })?;
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(self.file_mode())
                .open(&path)?;
            file.set_permissions(fs::Permissions::from_mode(self.file_mode()))?;
            file.write_all(text.as_bytes())?;
            file.sync_data()
        })();
        result.map_err(|e| {
            let _ = fs::remove_file(&path);
            io_err("write the state file", &path)(e)
        })?;
        Ok(path)
    }
}

/// A leftover removed by `clean_orphans`.
#[derive(Debug)]
pub struct Orphan {
    pub path: PathBuf,
    pub size: u64,
}

/// A message being written. Dropping it without `commit` removes every
/// trace of it, so a failed submission leaves nothing visible.
pub struct Draft<'a> {
    id: QueueId,
    path: PathBuf,
    /// Both None once committed.
    writer: Option<BufWriter<File>>,
    lock: Option<Flock<File>>,
    spool: &'a Spool,
    linked: bool,
}

impl Write for Draft<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.writer {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("message already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.writer {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl<'a> Draft<'a> {
    pub fn id(&self) -> &QueueId {
        &self.id
    }

    /// Makes the message durable and visible. Only after this returns Ok
    /// may `sendmail` report success. The lock is kept by the returned
    /// handle, so the caller may go on to deliver it.
    pub fn commit(mut self, envelope: &Envelope) -> Result<Locked<'a>, Error> {
        let spool = self.spool;
        let writer = self
            .writer
            .take()
            .ok_or_else(|| io_err("write", &self.path)(io::Error::other("already committed")))?;
        let mut file = writer
            .into_inner()
            .map_err(|e| io_err("write", &self.path)(e.into_error()))?;
        let path = &self.path;
        let text = envelope.to_toml().map_err(|reason| Error::Corrupt {
            path: path.clone(),
            reason: format!("cannot serialise the state: {reason}"),
        })?;
        let envelope_at = file.stream_position().map_err(io_err("write", path))?;
        let layout = queue_file::Layout {
            envelope_at,
            envelope_len: text.len() as u64,
        };
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all_at(&queue_file::header(layout), 0))
            .map_err(io_err("write", path))?;
        // Flush 1: the whole file, message and envelope.
        file.sync_data().map_err(io_err("fsync", path))?;
        let msg = spool.message_path(&self.id);
        fs::hard_link(&self.path, &msg).map_err(io_err("link the message into", &spool.queue))?;
        self.linked = true;
        let _ = fs::remove_file(&self.path);
        // Flush 2: the link, which is the commit point.
        sync_dir(&spool.queue)?;
        drop(file);
        let lock = self
            .lock
            .take()
            .ok_or_else(|| io_err("lock", &msg)(io::Error::other("lock already released")))?;
        self.linked = false;
        self.path = PathBuf::new();
        Ok(Locked {
            id: self.id.clone(),
            spool,
            _lock: lock,
        })
    }
}

impl Drop for Draft<'_> {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        let _ = fs::remove_file(&self.path);
        if self.linked {
            let _ = fs::remove_file(self.spool.message_path(&self.id));
        }
    }
}

/// A committed message whose lock this process holds.
pub struct Locked<'a> {
    id: QueueId,
    spool: &'a Spool,
    _lock: Flock<File>,
}

impl Locked<'_> {
    pub fn id(&self) -> &QueueId {
        &self.id
    }

    pub fn envelope(&self) -> Result<Envelope, Error> {
        self.spool.read(&self.id)
    }

    pub fn update(&self, envelope: &Envelope) -> Result<(), Error> {
        self.spool.replace_envelope(&self.id, envelope)
    }

    /// A reader of exactly the queued message.
    pub fn body(&self) -> Result<io::Take<File>, Error> {
        self.spool.body(&self.id)
    }

    /// Removes the delivered (or bounced) message: the `.msg` first, made
    /// durable, so that a crash in between leaves a stray `.env`, never an
    /// entry that would be sent again.
    pub fn remove(self) -> Result<(), Error> {
        remove_if_present(&self.spool.message_path(&self.id))?;
        sync_dir(&self.spool.queue)?;
        remove_if_present(&self.spool.envelope_path(&self.id)).map(drop)
    }

    /// `remove` with the directory fsync left to the caller
    /// (`Spool::sync_queue`), so that one session's removals share one.
    pub fn remove_unsynced(self) -> Result<(), Error> {
        remove_if_present(&self.spool.message_path(&self.id))?;
        remove_if_present(&self.spool.envelope_path(&self.id)).map(drop)
    }
}

/// A background runner's slot (see `Spool::runner_slot`).
pub enum Slot {
    Held(Flock<File>),
    Busy,
    Unavailable,
}

/// Non-blocking exclusive flock: Ok(None) when another process holds it.
fn lock(file: File, path: &Path) -> Result<Option<Flock<File>>, Error> {
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(io_err("lock", path)(errno.into())),
    }
}

/// Ok(false) when the file was already gone (another process got there
/// first, or its writer renamed it).
fn remove_if_present(path: &Path) -> Result<bool, Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Whether a process exists (EPERM means it exists but is not ours).
fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::ESRCH) => false,
        Err(_) => true,
    }
}
