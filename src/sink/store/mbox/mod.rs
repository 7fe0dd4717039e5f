//! The mbox store, e.g. `/var/mail/root`, in the mboxrd form that mutt,
//! bsd-mailx, s-nail and Dovecot read: each message starts with a
//! `From <sender> <asctime date>` line, a content line matching `^>*From `
//! gets one more `>`, and the message ends with a newline and one empty
//! line.
//!
//! An incoming message is first streamed to a temporary file in the sink's
//! scratch directory, so a slow client never holds the mailbox lock. At
//! commit the store takes the locks mail readers respect (the dotlock, then
//! `fcntl`; see `lock`), appends, fsyncs, and releases them.
//!
//! It must not change anything before the end of the file as it found it:
//! if an append fails midway (disk full), the file is cut back to its
//! previous length, so no partial message remains.

mod lock;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::{
    context, create_dirs, parent_dir, remove_orphans, sync_dir, Draft, Envelope, Incoming, Store,
    Stored,
};
use lock::{gate_for, lock_error, DotLock, FcntlLocked, LOCK_WAIT};

pub(super) struct Mbox {
    path: PathBuf,
    lock_path: PathBuf,
    scratch: PathBuf,
    /// Serialises this process's appends to `path` (see `lock`).
    gate: Arc<Mutex<()>>,
    wait: Duration,
}

impl Mbox {
    pub(super) fn open(path: &Path, scratch: &Path) -> io::Result<Mbox> {
        let parent = parent_dir(path);
        let Some(name) = path.file_name() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "mbox {}: the path names no file; write e.g. mbox:/var/mail/root",
                    path.display()
                ),
            ));
        };
        let dir = fs::canonicalize(parent).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "mbox {}: its directory {} is unusable: {e}; create it or choose another file",
                    path.display(),
                    parent.display()
                ),
            )
        })?;
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!(
                    "mbox {}: {} is not a directory",
                    path.display(),
                    parent.display()
                ),
            ));
        }
        let path = dir.join(name);
        if path.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!(
                    "mbox {}: is a directory; for a Maildir write maildir:{}",
                    path.display(),
                    path.display()
                ),
            ));
        }
        let mut lock_name = name.to_os_string();
        lock_name.push(".lock");
        let lock_path = dir.join(lock_name);
        probe(&path, &lock_path)?;
        create_dirs(scratch)?;
        remove_orphans(scratch, is_temp_name);
        Ok(Mbox {
            lock_path,
            gate: gate_for(&path),
            path,
            scratch: scratch.to_path_buf(),
            wait: LOCK_WAIT,
        })
    }
}

impl Store for Mbox {
    fn begin(&self, envelope: &Envelope) -> io::Result<Box<dyn Incoming>> {
        let temp = self
            .scratch
            .join(format!(".mbox-{}.{}.tmp", envelope.id, std::process::id()));
        let mut draft = Draft::create(temp)?;
        draft.write(&[&from_line(envelope)])?;
        Ok(Box::new(Message {
            draft,
            path: self.path.clone(),
            lock_path: self.lock_path.clone(),
            gate: Arc::clone(&self.gate),
            wait: self.wait,
        }))
    }
}

/// Finds at start-up, rather than at the first message, a mailbox the sink
/// may not write or lock: opens an existing mbox for writing, and creates
/// and removes the dotlock (one that exists is someone else's, and fine).
fn probe(path: &Path, lock_path: &Path) -> io::Result<()> {
    match OpenOptions::new().write(true).open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(context("cannot open the mbox for writing", path)(e)),
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(lock_path)
    {
        Ok(_) => {
            fs::remove_file(lock_path).map_err(context("cannot remove the lock file", lock_path))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(lock_error(lock_path, e)),
    }
}

fn is_temp_name(name: &str) -> bool {
    name.starts_with(".mbox-") && name.ends_with(".tmp")
}

/// `From <sender> <asctime date>`. The sender comes from the client: any
/// space or control byte in it would end the address early or break the
/// line, so it becomes `_`.
fn from_line(envelope: &Envelope) -> Vec<u8> {
    let mut line = b"From ".to_vec();
    if envelope.sender.is_empty() {
        line.extend_from_slice(b"MAILER-DAEMON");
    } else {
        line.extend(envelope.sender.bytes().map(|b| {
            if b.is_ascii_whitespace() || b.is_ascii_control() {
                b'_'
            } else {
                b
            }
        }));
    }
    line.push(b' ');
    line.extend_from_slice(
        envelope
            .received_at
            .format("%a %b %e %H:%M:%S %Y")
            .to_string()
            .as_bytes(),
    );
    line.push(b'\n');
    line
}

/// Whether `line` matches `^>*From ` and so needs one more `>` (mboxrd).
fn needs_escape(line: &[u8]) -> bool {
    let start = line.iter().position(|b| *b != b'>').unwrap_or(line.len());
    line.get(start..)
        .is_some_and(|rest| rest.starts_with(b"From "))
}

struct Message {
    draft: Draft,
    path: PathBuf,
    lock_path: PathBuf,
    gate: Arc<Mutex<()>>,
    wait: Duration,
}

impl Incoming for Message {
    fn line(&mut self, line: &[u8]) -> io::Result<()> {
        if needs_escape(line) {
            self.draft.write(&[b">", line, b"\n"])
        } else {
            self.draft.write(&[line, b"\n"])
        }
    }

    fn commit(self: Box<Self>) -> io::Result<Stored> {
        let Message {
            mut draft,
            path,
            lock_path,
            gate,
            wait,
        } = *self;
        // The empty line that separates this message from the next.
        draft.write(&[b"\n"])?;
        // No fsync: the copy in the mbox is the one made durable.
        let (mut temp_file, temp, length) = draft.finish(false)?;
        temp_file
            .seek(SeekFrom::Start(0))
            .map_err(context("cannot read back", temp.path()))?;

        let _gate = gate.lock().unwrap_or_else(PoisonError::into_inner);
        let _dotlock = DotLock::acquire(&lock_path, &path, wait)?;
        let (mbox, created) = open_or_create(&path)?;
        let mut mbox = FcntlLocked::acquire(mbox, &path, wait)?;
        let offset = append(&mut mbox.file, &path, &mut temp_file, length)?;
        if created {
            sync_dir(parent_dir(&path))?;
        }
        // Locks are released in reverse order as the guards drop: the fcntl
        // lock, then the dotlock; the temporary file is removed last.
        Ok(Stored {
            path,
            offset,
            length,
        })
    }
}

/// Opens the mbox for reading and writing, creating it (mode 0600) if it
/// is missing; says whether it did.
fn open_or_create(path: &Path) -> io::Result<(File, bool)> {
    let existing = OpenOptions::new().read(true).write(true).open(path);
    match existing {
        Ok(file) => Ok((file, false)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // We hold the dotlock, but a program that ignores it may still
            // create the file: then use theirs.
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(file) => Ok((file, true)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map(|f| (f, false))
                    .map_err(context("cannot open the mbox", path)),
                Err(e) => Err(context("cannot create the mbox", path)(e)),
            }
        }
        Err(e) => Err(context("cannot open the mbox", path)(e)),
    }
}

/// Appends the message in `temp` (`length` bytes) at the end of `mbox` and
/// fsyncs it; returns the offset of its `From ` line. The caller holds both
/// locks. On failure the file is cut back to the length it had.
fn append(mbox: &mut File, path: &Path, temp: &mut File, length: u64) -> io::Result<u64> {
    let old_len = mbox
        .metadata()
        .map_err(context("cannot read the size of", path))?
        .len();
    let padding = padding_for(mbox, old_len).map_err(context("cannot read the end of", path))?;
    let written = (|| {
        mbox.seek(SeekFrom::Start(old_len))?;
        mbox.write_all(padding)?;
        let copied = io::copy(&mut temp.take(length), mbox)?;
        if copied != length {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the temporary copy had {copied} of {length} bytes"),
            ));
        }
        mbox.sync_data()
    })();
    match written {
        Ok(()) => Ok(old_len + padding.len() as u64),
        Err(e) => {
            let undo = mbox.set_len(old_len).and_then(|()| mbox.sync_data());
            let undo = match undo {
                Ok(()) => format!("; the mbox is back to its previous {old_len} bytes"),
                Err(u) => format!(
                    "; cutting it back to {old_len} bytes failed too ({u}): the last message in it may be partial"
                ),
            };
            Err(io::Error::new(
                e.kind(),
                format!("cannot append to the mbox {}: {e}{undo}", path.display()),
            ))
        }
    }
}

/// What must precede a new `From ` line so that the previous message ends
/// with an empty line, even if another program did not leave one.
fn padding_for(mbox: &mut File, len: u64) -> io::Result<&'static [u8]> {
    if len == 0 {
        return Ok(b"");
    }
    let tail_len = len.min(2);
    let mut tail = [0u8; 2];
    let tail = tail.get_mut(..tail_len as usize).unwrap_or(&mut []);
    mbox.seek(SeekFrom::Start(len - tail_len))?;
    mbox.read_exact(tail)?;
    Ok(match tail {
        [b'\n', b'\n'] => b"",
        // A file of one newline: nothing before it to separate.
        [b'\n'] => b"",
        [_, b'\n'] => b"\n",
        _ => b"\n\n",
    })
}

/// The message at `stored` without its `From ` line and separating empty
/// line, with one `>` removed from each `^>+From ` line.
pub(super) fn read(stored: &Stored) -> io::Result<Vec<u8>> {
    let path = &stored.path;
    let mut file = File::open(path).map_err(context("cannot read the mbox", path))?;
    file.seek(SeekFrom::Start(stored.offset))
        .map_err(context("cannot read the mbox", path))?;
    let mut raw = Vec::new();
    file.take(stored.length)
        .read_to_end(&mut raw)
        .map_err(context("cannot read the mbox", path))?;
    let changed = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "mbox {}: no message at offset {} any more (a mail reader has rewritten the file since)",
                path.display(),
                stored.offset
            ),
        )
    };
    if raw.len() as u64 != stored.length || !raw.starts_with(b"From ") || !raw.ends_with(b"\n\n") {
        return Err(changed());
    }
    let body_start = memchr::memchr(b'\n', &raw).map_or(raw.len(), |i| i + 1);
    let body = raw
        .get(body_start..raw.len().saturating_sub(1))
        .ok_or_else(changed)?;
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|b| *b == b'\n') {
        match line.strip_prefix(b">") {
            Some(rest) if needs_escape(rest) => out.extend_from_slice(rest),
            _ => out.extend_from_slice(line),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{envelope, sample_lines, write_all};
    use super::super::{open, read, Spec};
    use super::*;
    use std::time::{Instant, SystemTime};

    fn expected_file(lines: &[Vec<u8>], from: &[u8]) -> Vec<u8> {
        let mut out = from.to_vec();
        for line in lines {
            if needs_escape(line) {
                out.push(b'>');
            }
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.push(b'\n');
        out
    }

    fn lf_text(lines: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in lines {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn stores_mboxrd_and_reads_back_the_original_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mbox = dir.path().join("root");
        let scratch = dir.path().join("state");
        let store = open(&Spec::Mbox(mbox.clone()), &scratch).expect("open");
        let lines = sample_lines();
        let first = write_all(store.as_ref(), &envelope("0000000000AAAAAA", "a@b"), &lines);
        let second = write_all(
            store.as_ref(),
            &envelope("0000000000BBBBBB", ""),
            &[b"Subject: 2".to_vec()],
        );

        let mut file = expected_file(&lines, b"From a@b Mon Nov 23 19:02:58 2026\n");
        let first_len = file.len() as u64;
        file.extend(expected_file(
            &[b"Subject: 2".to_vec()],
            b"From MAILER-DAEMON Mon Nov 23 19:02:58 2026\n",
        ));
        let on_disk = fs::read(&mbox).expect("mbox");
        assert!(on_disk == file, "the mbox differs from the mboxrd expected");
        let text = String::from_utf8_lossy(&on_disk);
        assert!(text.contains("\n>From me\n>>From you\n>>>From them\nFrom\n From x\nfrom lower\n"));

        assert_eq!((first.offset, first.length), (0, first_len));
        assert_eq!(
            (second.offset, second.length),
            (first_len, file.len() as u64 - first_len)
        );
        assert_eq!(first.path, fs::canonicalize(&mbox).expect("exists"));
        assert!(read(&first).expect("read") == lf_text(&lines));
        assert_eq!(read(&second).expect("read"), b"Subject: 2\n");
        assert_eq!(fs::read_dir(&scratch).expect("scratch").count(), 0);
        assert!(!dir.path().join("root.lock").exists());
    }

    #[test]
    fn creates_a_missing_mbox_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mbox = dir.path().join("root");
        let store = open(&Spec::Mbox(mbox.clone()), dir.path()).expect("open");
        assert!(!mbox.exists(), "created only when a message comes");
        write_all(
            store.as_ref(),
            &envelope("0000000000AAAAAA", "a@b"),
            &[b"x".to_vec()],
        );
        let mode = fs::metadata(&mbox).expect("mbox").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_missing_directory_is_refused_with_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mbox = dir.path().join("no-such-dir/root");
        let err = match open(&Spec::Mbox(mbox.clone()), dir.path()) {
            Ok(_) => panic!("opened an mbox in a missing directory"),
            Err(e) => e,
        };
        assert!(
            err.to_string().contains(&mbox.display().to_string()),
            "{err}"
        );
        assert!(err.to_string().contains("create it"), "{err}");
    }

    #[test]
    fn a_dropped_message_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mbox = dir.path().join("root");
        let scratch = dir.path().join("state");
        let store = open(&Spec::Mbox(mbox.clone()), &scratch).expect("open");
        let mut incoming = store
            .begin(&envelope("0000000000DROP00", "a@b"))
            .expect("begin");
        incoming.line(b"From me").expect("line");
        incoming.line(&vec![b'z'; 100_000]).expect("line");
        assert_eq!(fs::read_dir(&scratch).expect("scratch").count(), 1);
        drop(incoming);
        assert_eq!(fs::read_dir(&scratch).expect("scratch").count(), 0);
        assert!(!mbox.exists());
    }

    #[test]
    fn a_message_follows_an_mbox_that_lacks_its_final_empty_line() {
        for (before, padding) in [
            (&b"From x Mon Nov 23 19:02:58 2026\nA: b\n\nbody"[..], 2),
            (&b"From x Mon Nov 23 19:02:58 2026\nA: b\n\nbody\n"[..], 1),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mbox = dir.path().join("root");
            fs::write(&mbox, before).expect("write");
            let store = open(&Spec::Mbox(mbox.clone()), dir.path()).expect("open");
            let stored = write_all(
                store.as_ref(),
                &envelope("0000000000AAAAAA", "a@b"),
                &[b"x".to_vec()],
            );
            assert_eq!(stored.offset, before.len() as u64 + padding);
            let text = fs::read(&mbox).expect("mbox");
            assert!(text.ends_with(b"body\n\nFrom a@b Mon Nov 23 19:02:58 2026\nx\n\n"));
            assert_eq!(read(&stored).expect("read"), b"x\n");
        }
    }

    #[test]
    fn waits_for_a_dotlock_and_removes_a_stale_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mbox = dir.path().join("root");
        let lock = dir.path().join("root.lock");
        let store = open(&Spec::Mbox(mbox.clone()), dir.path()).expect("open");

        fs::write(&lock, b"").expect("lock");
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(300));
                fs::remove_file(&lock).expect("unlock");
            });
            write_all(
                store.as_ref(),
                &envelope("0000000000AAAAAA", "a@b"),
                &[b"x".to_vec()],
            );
        });
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "did not wait for the dotlock"
        );

        let old = File::create(&lock).expect("lock");
        old.set_modified(SystemTime::now() - Duration::from_secs(600))
            .expect("mtime");
        drop(old);
        write_all(
            store.as_ref(),
            &envelope("0000000000BBBBBB", "a@b"),
            &[b"y".to_vec()],
        );
        assert!(!lock.exists());
        assert_eq!(
            fs::read(&mbox)
                .expect("mbox")
                .iter()
                .filter(|b| **b == b'F')
                .count(),
            2
        );
    }

    #[test]
    fn gives_up_on_a_held_dotlock_with_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mbox = dir.path().join("root");
        let mut store = Mbox::open(&mbox, dir.path()).expect("open");
        store.wait = Duration::from_millis(200);
        fs::write(dir.path().join("root.lock"), b"").expect("lock");
        let mut incoming = store
            .begin(&envelope("0000000000AAAAAA", "a@b"))
            .expect("begin");
        incoming.line(b"x").expect("line");
        let err = incoming.commit().expect_err("the lock is held");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("root.lock"), "{err}");
        assert!(!mbox.exists());
        let left: Vec<_> = fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["root.lock"], "the temporary file must be gone");
    }

    #[test]
    fn threads_with_their_own_stores_never_interleave() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mbox = dir.path().join("root");
        std::thread::scope(|s| {
            for t in 0..4 {
                let (mbox, scratch) = (&mbox, dir.path());
                s.spawn(move || {
                    let store = open(&Spec::Mbox(mbox.clone()), scratch).expect("open");
                    for i in 0..50 {
                        let lines = [
                            format!("T: {t} {i}").into_bytes(),
                            b"From me".to_vec(),
                            vec![b'a' + t; 5000],
                        ];
                        let stored = write_all(
                            store.as_ref(),
                            &envelope(&format!("000000000T{t}{i:05}"), "a@b"),
                            &lines,
                        );
                        assert!(
                            read(&stored).expect("read") == lf_text(&lines),
                            "message {t} {i} damaged"
                        );
                    }
                });
            }
        });
        let text = fs::read(&mbox).expect("mbox");
        let messages = text
            .split(|b| *b == b'\n')
            .filter(|l| l.starts_with(b"From a@b "))
            .count();
        assert_eq!(messages, 200);
    }

    #[test]
    fn from_lines_need_a_safe_sender_and_an_asctime_date() {
        let env = envelope("0000000000AAAAAA", "we ird\r\n@b");
        assert_eq!(
            from_line(&env),
            b"From we_ird__@b Mon Nov 23 19:02:58 2026\n"
        );
        let mut env = envelope("0000000000AAAAAA", "a@b");
        env.received_at = chrono::TimeZone::with_ymd_and_hms(&chrono::Local, 2026, 1, 5, 7, 8, 9)
            .single()
            .expect("time");
        assert_eq!(from_line(&env), b"From a@b Mon Jan  5 07:08:09 2026\n");
    }

    #[test]
    fn escapes_exactly_the_from_lines() {
        for (line, escape) in [
            (&b"From "[..], true),
            (b"From me", true),
            (b">From me", true),
            (b">>>From me", true),
            (b"From", false),
            (b"from me", false),
            (b" From me", false),
            (b">", false),
            (b"", false),
            (b"> From me", false),
        ] {
            assert_eq!(
                needs_escape(line),
                escape,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn read_refuses_a_rewritten_mbox() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mbox = dir.path().join("root");
        let store = open(&Spec::Mbox(mbox.clone()), dir.path()).expect("open");
        let stored = write_all(
            store.as_ref(),
            &envelope("0000000000AAAAAA", "a@b"),
            &[b"x".to_vec()],
        );
        fs::write(&mbox, b"something else entirely\n").expect("rewrite");
        let err = read(&stored).expect_err("changed");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
