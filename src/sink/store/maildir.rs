//! The Maildir store: each message is written to `tmp/<name>`, fsynced,
//! renamed to `new/<name>`, and `new/` is fsynced; only then is it
//! committed. `<name>` is `<unix seconds>.<message ID>.<host>` as the
//! Maildir specification (cr.yp.to/proto/maildir.html) asks: unique across
//! threads, processes and hosts sharing the directory.
//!
//! It must not touch `cur/` (mail readers own it) nor any file in `new/`
//! once renamed there; it only removes its own temporary files.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{context, create_dirs, remove_orphans, Draft, Envelope, Incoming, Store, Stored};

pub(super) struct Maildir {
    tmp: PathBuf,
    new: PathBuf,
    /// This host's name, escaped for a file name.
    host: String,
}

impl Maildir {
    pub(super) fn open(root: &Path) -> io::Result<Maildir> {
        for sub in ["tmp", "new", "cur"] {
            create_dirs(&root.join(sub))?;
        }
        let tmp = root.join("tmp");
        // Only names this store makes: `<digits>.<...>`.
        remove_orphans(&tmp, |name| {
            name.split_once('.').is_some_and(|(secs, _)| {
                !secs.is_empty() && secs.bytes().all(|b| b.is_ascii_digit())
            })
        });
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        Ok(Maildir {
            tmp,
            new: root.join("new"),
            host: escape_host(&host),
        })
    }
}

impl Store for Maildir {
    fn begin(&self, envelope: &Envelope) -> io::Result<Box<dyn Incoming>> {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let name = format!("{secs}.{}.{}", envelope.id, self.host);
        let draft = Draft::create(self.tmp.join(&name))?;
        Ok(Box::new(Message {
            draft,
            new_dir: self.new.clone(),
            name,
        }))
    }
}

struct Message {
    draft: Draft,
    new_dir: PathBuf,
    name: String,
}

impl Incoming for Message {
    fn line(&mut self, line: &[u8]) -> io::Result<()> {
        self.draft.write(&[line, b"\n"])
    }

    fn commit(self: Box<Self>) -> io::Result<Stored> {
        let Message {
            draft,
            new_dir,
            name,
        } = *self;
        draft.publish(new_dir.join(name))
    }
}

/// The Maildir specification's escapes for the two characters that cannot
/// appear in the host part of a name.
fn escape_host(host: &str) -> String {
    host.replace('/', "\\057").replace(':', "\\072")
}

/// Whether `path` names a message in a Maildir: a file in `new/` or
/// `cur/` next to a `tmp/`.
pub(super) fn holds(path: &Path) -> bool {
    let Some(dir) = path.parent() else {
        return false;
    };
    let in_maildir_dir = dir.file_name().is_some_and(|n| n == "new" || n == "cur");
    in_maildir_dir && dir.parent().is_some_and(|root| root.join("tmp").is_dir())
}

/// Reads a message, looking in `cur/` (as `<name>:2,<flags>`) when a mail
/// reader has moved it out of `new/`.
pub(super) fn read(path: &Path) -> io::Result<Vec<u8>> {
    match fs::read(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => match moved(path) {
            Some(found) => fs::read(&found).map_err(context("cannot read", &found)),
            None => Err(context("cannot read", path)(e)),
        },
        other => other.map_err(context("cannot read", path)),
    }
}

/// Where a mail reader put the message once in `new/path`: `cur/<name>`
/// or `cur/<name>:<info>` (the unique part before `:` never changes).
fn moved(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let unique = name.split_once(':').map_or(name, |(u, _)| u);
    let root = path.parent()?.parent()?;
    ["cur", "new"].iter().find_map(|sub| {
        let dir = root.join(sub);
        fs::read_dir(&dir).ok()?.flatten().find_map(|entry| {
            let n = entry.file_name();
            let n = n.to_str()?;
            (n == unique || n.strip_prefix(unique)?.starts_with(':')).then(|| entry.path())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{envelope, sample_lines, write_all};
    use super::super::{open, read, Spec};
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("readable directory")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn creates_the_three_directories_with_mode_0700() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("a/Maildir");
        open(&Spec::Maildir(root.clone()), dir.path()).expect("open");
        for sub in ["tmp", "new", "cur"] {
            let mode = fs::metadata(root.join(sub))
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{sub}");
        }
        assert_eq!(names(&root), ["cur", "new", "tmp"]);
    }

    #[test]
    fn stores_lines_exactly_with_lf_and_reads_them_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("md");
        let store = open(&Spec::Maildir(root.clone()), dir.path()).expect("open");
        let lines = sample_lines();
        let stored = write_all(store.as_ref(), &envelope("0000000000ABCDEF", "a@b"), &lines);

        let mut expected = Vec::new();
        for line in &lines {
            expected.extend_from_slice(line);
            expected.push(b'\n');
        }
        assert_eq!(stored.path.parent(), Some(root.join("new").as_path()));
        assert_eq!(stored.offset, 0);
        assert_eq!(stored.length, expected.len() as u64);
        assert!(
            fs::read(&stored.path).expect("stored file") == expected,
            "stored bytes differ"
        );
        assert!(
            read(&stored).expect("read") == expected,
            "read gives other bytes"
        );
        assert!(names(&root.join("tmp")).is_empty());

        let name = stored
            .path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = name.splitn(3, '.').collect();
        assert_eq!(parts.len(), 3, "{name}");
        assert!(parts
            .first()
            .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit())));
        assert_eq!(parts.get(1), Some(&"0000000000ABCDEF"));
        assert!(!name.contains('/') && !name.contains(':'));
    }

    #[test]
    fn reads_a_message_a_mail_reader_moved_to_cur() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("md");
        let store = open(&Spec::Maildir(root.clone()), dir.path()).expect("open");
        let stored = write_all(
            store.as_ref(),
            &envelope("0000000000MOVED0", "a@b"),
            &[b"x".to_vec()],
        );
        let name = stored
            .path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        fs::rename(&stored.path, root.join("cur").join(format!("{name}:2,S"))).expect("move");
        assert_eq!(read(&stored).expect("read"), b"x\n");
    }

    #[test]
    fn a_dropped_message_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("md");
        let store = open(&Spec::Maildir(root.clone()), dir.path()).expect("open");
        let mut incoming = store
            .begin(&envelope("0000000000DROP00", "a@b"))
            .expect("begin");
        incoming.line(b"Subject: never").expect("line");
        incoming.line(&vec![b'x'; 200_000]).expect("line");
        assert_eq!(names(&root.join("tmp")).len(), 1);
        drop(incoming);
        for sub in ["tmp", "new", "cur"] {
            assert!(names(&root.join(sub)).is_empty(), "{sub}");
        }
    }

    #[test]
    fn many_threads_store_distinct_messages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("md");
        let store = open(&Spec::Maildir(root.clone()), dir.path()).expect("open");
        std::thread::scope(|s| {
            for t in 0..4 {
                let store = store.as_ref();
                s.spawn(move || {
                    for i in 0..25 {
                        let id = format!("00000000T{t}{i:05}");
                        write_all(
                            store,
                            &envelope(&id, "a@b"),
                            &[format!("n {t} {i}").into_bytes()],
                        );
                    }
                });
            }
        });
        assert_eq!(names(&root.join("new")).len(), 100);
    }

    #[test]
    fn host_names_are_escaped() {
        assert_eq!(escape_host("a/b:c"), "a\\057b\\072c");
    }
}
