//! Where the sink keeps what it accepts: a Maildir, an mbox file, or one
//! `.eml` file per message. Every store makes a message durable (file and
//! directory fsynced) before `commit` returns, because the sink answers
//! `250` to DATA only after that. A message dropped without `commit`
//! leaves nothing behind.
//!
//! Line endings: Maildir and mbox files use LF (what mutt, bsd-mailx,
//! s-nail and Dovecot expect); `.eml` files use CRLF (RFC 5322 form).
//! Content bytes are otherwise stored exactly as received.
//!
//! This module must not know about SMTP or the sink's sessions: it gets an
//! envelope and lines, and gives back where the message is. It never
//! rewrites or deletes a stored message.

mod eml;
mod maildir;
mod mbox;

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// `[sink] store`, parsed: `maildir:DIR`, `mbox:FILE` or `eml:DIR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    Maildir(PathBuf),
    Mbox(PathBuf),
    Eml(PathBuf),
}

impl Spec {
    pub fn parse(text: &str) -> Result<Spec, String> {
        let (kind, path) = text.split_once(':').ok_or_else(|| {
            format!("store {text:?} has no kind; write maildir:DIR, mbox:FILE or eml:DIR")
        })?;
        if path.is_empty() {
            return Err(format!("store {text:?} has no path after the colon"));
        }
        let path = PathBuf::from(path);
        match kind {
            "maildir" => Ok(Spec::Maildir(path)),
            "mbox" => Ok(Spec::Mbox(path)),
            "eml" => Ok(Spec::Eml(path)),
            other => Err(format!(
                "unknown store kind {other:?}; write maildir:DIR, mbox:FILE or eml:DIR"
            )),
        }
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Spec::Maildir(p) => write!(f, "maildir:{}", p.display()),
            Spec::Mbox(p) => write!(f, "mbox:{}", p.display()),
            Spec::Eml(p) => write!(f, "eml:{}", p.display()),
        }
    }
}

/// What a store needs to know about a message before its content.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// The sink's message ID (16 characters, see `crate::id`), safe in file names.
    pub id: String,
    /// MAIL FROM, without angle brackets; empty for the null sender.
    pub sender: String,
    pub recipients: Vec<String>,
    /// When the message was received (for the mbox `From ` line).
    pub received_at: chrono::DateTime<chrono::Local>,
}

/// Where a committed message is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub path: PathBuf,
    /// Byte offset of the message in `path` (0 except in an mbox, where it
    /// is the offset of its `From ` line).
    pub offset: u64,
    /// Bytes the message occupies in `path` from `offset`.
    pub length: u64,
}

/// A message store shared by all sessions (it must be safe to use from
/// many threads, and from several sink processes on the same files).
pub trait Store: Send + Sync {
    /// Starts a new message. Content follows line by line.
    fn begin(&self, envelope: &Envelope) -> io::Result<Box<dyn Incoming>>;
}

/// A message being received.
pub trait Incoming: Send {
    /// One line of content, without its line ending (already
    /// dot-unstuffed). May be empty; may contain any byte but LF.
    fn line(&mut self, line: &[u8]) -> io::Result<()>;

    /// Makes the message durable and visible; only then may the sink
    /// answer 250.
    fn commit(self: Box<Self>) -> io::Result<Stored>;
}

/// Opens the store `spec` names, creating what is missing (a Maildir's
/// `tmp/`, `new/` and `cur/`, an `.eml` directory; an mbox's parent
/// directory must already exist). `scratch` is a directory the sink owns:
/// the mbox store streams each incoming message there first, so a slow
/// client never holds the mailbox lock.
pub fn open(spec: &Spec, scratch: &Path) -> io::Result<Box<dyn Store>> {
    Ok(match spec {
        Spec::Maildir(dir) => Box::new(maildir::Maildir::open(dir)?),
        Spec::Mbox(file) => Box::new(mbox::Mbox::open(file, scratch)?),
        Spec::Eml(dir) => Box::new(eml::Eml::open(dir)?),
    })
}

/// The raw message as stored: a Maildir or `.eml` file as it is (LF or
/// CRLF), or an mbox message without its `From ` line and separator, with
/// the `>From` escaping undone (LF line ends).
///
/// The kind of store is told by the path: a file in a Maildir's `new/` or
/// `cur/` (found again in `cur/` after a mail reader moved it there), a
/// `.eml` file, or else an mbox. An mbox message is checked to still start
/// with its `From ` line, since a mail reader may rewrite the file.
pub fn read(stored: &Stored) -> io::Result<Vec<u8>> {
    if maildir::holds(&stored.path) {
        maildir::read(&stored.path)
    } else if stored.path.extension().is_some_and(|e| e == "eml") {
        fs::read(&stored.path).map_err(context("cannot read", &stored.path))
    } else {
        mbox::read(stored)
    }
}

/// How long a temporary file left by a crashed sink is kept before `open`
/// removes it (the Maildir specification's 36 hours).
const ORPHAN_AGE: Duration = Duration::from_secs(36 * 3600);

/// Wraps an error so that it names what failed and on which path, and adds
/// a hint for the errors an operator can fix.
fn context<'a>(action: &'a str, path: &'a Path) -> impl FnOnce(io::Error) -> io::Error + 'a {
    move |e| {
        let hint = match e.kind() {
            io::ErrorKind::PermissionDenied => {
                "; check that the sink's user may write there (owner, mode, SELinux label)"
            }
            io::ErrorKind::StorageFull => "; free some space on that file system",
            io::ErrorKind::ReadOnlyFilesystem => "; the file system is mounted read-only",
            _ => "",
        };
        io::Error::new(e.kind(), format!("{action} {}: {e}{hint}", path.display()))
    }
}

/// Creates `dir` and any missing parents with mode 0700, then fsyncs the
/// parent of each directory it created so the new entries survive a crash.
fn create_dirs(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(d) = cursor {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d);
        cursor = d.parent();
    }
    for d in missing.iter().rev() {
        match DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => {}
            // Another sink process made it first.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => continue,
            Err(e) => return Err(context("cannot create the directory", d)(e)),
        }
        sync_dir(parent_dir(d))?;
    }
    Ok(())
}

/// The directory an entry lives in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsync of a directory, which makes the entries created or renamed in it
/// durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(context("cannot fsync the directory", dir))
}

/// Best-effort removal of temporary files a crashed sink left in `dir`:
/// names `is_temp` accepts, untouched for `ORPHAN_AGE`. Failures are
/// ignored: an orphan costs only space, and must not stop the sink.
fn remove_orphans(dir: &Path, is_temp: impl Fn(&str) -> bool) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(&is_temp) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > ORPHAN_AGE);
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A temporary file being written, removed when dropped unless it was
/// renamed into place (`Draft::finish`, then `TempPath::keep`).
struct Draft {
    // Declared before `temp`: dropped (and flushed) first, then removed.
    out: BufWriter<File>,
    temp: TempPath,
    /// Bytes written so far.
    written: u64,
}

impl Draft {
    /// Creates `path` (mode 0600); it must not exist yet.
    fn create(path: PathBuf) -> io::Result<Draft> {
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(context("cannot create", &path))?;
        Ok(Draft {
            out: BufWriter::with_capacity(64 * 1024, file),
            temp: TempPath(Some(path)),
            written: 0,
        })
    }

    /// Writes `parts` one after another. A long slice goes straight to the
    /// file (BufWriter does not copy what exceeds its buffer).
    fn write(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        for part in parts {
            if let Err(e) = self.out.write_all(part) {
                return Err(context("cannot write", self.temp.path())(e));
            }
            self.written += part.len() as u64;
        }
        Ok(())
    }

    /// Flushes and fsyncs the file; returns it and the guard that still
    /// removes it unless kept.
    fn finish(self, sync: bool) -> io::Result<(File, TempPath, u64)> {
        let Draft { out, temp, written } = self;
        let file = out
            .into_inner()
            .map_err(|e| context("cannot write", temp.path())(e.into_error()))?;
        if sync {
            file.sync_all()
                .map_err(context("cannot fsync", temp.path()))?;
        }
        Ok((file, temp, written))
    }
}

impl Draft {
    /// One file per message (Maildir, .eml): fsyncs the draft, renames it
    /// to `path` and fsyncs `path`'s directory, all before the 250.
    fn publish(self, path: PathBuf) -> io::Result<Stored> {
        let (file, temp, length) = self.finish(true)?;
        drop(file);
        fs::rename(temp.path(), &path).map_err(context("cannot rename the message to", &path))?;
        temp.keep();
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(Stored {
            path,
            offset: 0,
            length,
        })
    }
}

/// Removes the file at its path when dropped, unless `keep` was called.
struct TempPath(Option<PathBuf>);

impl TempPath {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    /// The file was renamed into place: nothing to remove any more.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // Nothing to report to from a drop; `remove_orphans` gets the
            // rare file that stays.
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            Spec::parse("maildir:/var/lib/sink"),
            Ok(Spec::Maildir("/var/lib/sink".into()))
        );
        assert_eq!(
            Spec::parse("mbox:/var/mail/root"),
            Ok(Spec::Mbox("/var/mail/root".into()))
        );
        assert_eq!(Spec::parse("eml:out"), Ok(Spec::Eml("out".into())));
        assert!(Spec::parse("/var/mail/root").is_err());
        assert!(Spec::parse("mbox:").is_err());
        assert!(Spec::parse("pst:/x").is_err());
        assert_eq!(Spec::Mbox("/m".into()).to_string(), "mbox:/m");
    }
}

/// Shared by the stores' unit tests.
#[cfg(test)]
mod testing {
    use chrono::TimeZone;

    use super::{Envelope, Store, Stored};

    pub(super) fn envelope(id: &str, sender: &str) -> Envelope {
        Envelope {
            id: id.to_string(),
            sender: sender.to_string(),
            recipients: vec!["root@lab".to_string()],
            received_at: chrono::Local
                .with_ymd_and_hms(2026, 11, 23, 19, 2, 58)
                .single()
                .expect("an unambiguous local time"),
        }
    }

    /// 8-bit and UTF-8 lines, `From ` lines to escape and not, a 2 MB line
    /// and an empty last line.
    pub(super) fn sample_lines() -> Vec<Vec<u8>> {
        let every_byte: Vec<u8> = (0u8..=255).filter(|b| *b != b'\n').collect();
        vec![
            b"Subject: caf\xc3\xa9 \xe2\x82\xac".to_vec(),
            b"".to_vec(),
            every_byte,
            b"From me".to_vec(),
            b">From you".to_vec(),
            b">>From them".to_vec(),
            b"From".to_vec(),
            b" From x".to_vec(),
            b"from lower".to_vec(),
            vec![b'y'; 2 * 1024 * 1024],
            b"".to_vec(),
        ]
    }

    pub(super) fn write_all(store: &dyn Store, envelope: &Envelope, lines: &[Vec<u8>]) -> Stored {
        let mut incoming = store.begin(envelope).expect("begin");
        for line in lines {
            incoming.line(line).expect("line");
        }
        incoming.commit().expect("commit")
    }
}
