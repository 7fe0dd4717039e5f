//! The `.eml` store: one file per message, `<dir>/<id>.eml`, with CRLF line
//! ends (RFC 5322 form, what mail clients open by double-click). Written as
//! `<dir>/.<id>.eml.tmp`, fsynced, renamed, then the directory fsynced.
//!
//! It must not change or remove a `.eml` file once renamed into place; it
//! only removes its own temporary files.

use std::io;
use std::path::{Path, PathBuf};

use super::{create_dirs, remove_orphans, Draft, Envelope, Incoming, Store, Stored};

pub(super) struct Eml {
    dir: PathBuf,
}

impl Eml {
    pub(super) fn open(dir: &Path) -> io::Result<Eml> {
        create_dirs(dir)?;
        remove_orphans(dir, |name| {
            name.starts_with('.') && name.ends_with(".eml.tmp")
        });
        Ok(Eml {
            dir: dir.to_path_buf(),
        })
    }
}

impl Store for Eml {
    fn begin(&self, envelope: &Envelope) -> io::Result<Box<dyn Incoming>> {
        let draft = Draft::create(self.dir.join(format!(".{}.eml.tmp", envelope.id)))?;
        Ok(Box::new(Message {
            draft,
            path: self.dir.join(format!("{}.eml", envelope.id)),
        }))
    }
}

struct Message {
    draft: Draft,
    path: PathBuf,
}

impl Incoming for Message {
    fn line(&mut self, line: &[u8]) -> io::Result<()> {
        self.draft.write(&[line, b"\r\n"])
    }

    fn commit(self: Box<Self>) -> io::Result<Stored> {
        let Message { draft, path } = *self;
        draft.publish(path)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{envelope, sample_lines, write_all};
    use super::super::{open, read, Spec};
    use std::fs;

    #[test]
    fn stores_lines_exactly_with_crlf_and_reads_them_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let store = open(&Spec::Eml(out.clone()), dir.path()).expect("open");
        let lines = sample_lines();
        let stored = write_all(store.as_ref(), &envelope("0000000000ABCDEF", "a@b"), &lines);

        let mut expected = Vec::new();
        for line in &lines {
            expected.extend_from_slice(line);
            expected.extend_from_slice(b"\r\n");
        }
        assert_eq!(stored.path, out.join("0000000000ABCDEF.eml"));
        assert_eq!((stored.offset, stored.length), (0, expected.len() as u64));
        assert!(
            fs::read(&stored.path).expect("stored file") == expected,
            "stored bytes differ"
        );
        assert!(
            read(&stored).expect("read") == expected,
            "read gives other bytes"
        );
        let names: Vec<_> = fs::read_dir(&out)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["0000000000ABCDEF.eml"]);
    }

    #[test]
    fn a_dropped_message_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let store = open(&Spec::Eml(out.clone()), dir.path()).expect("open");
        let mut incoming = store
            .begin(&envelope("0000000000DROP00", ""))
            .expect("begin");
        incoming.line(b"Subject: never").expect("line");
        assert_eq!(fs::read_dir(&out).expect("dir").count(), 1);
        drop(incoming);
        assert_eq!(fs::read_dir(&out).expect("dir").count(), 0);
    }

    #[test]
    fn an_unwritable_directory_is_named_in_the_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("plain-file");
        fs::write(&file, b"").expect("write");
        let err = match open(&Spec::Eml(file.join("sub")), dir.path()) {
            Ok(_) => panic!("a directory under a plain file cannot exist"),
            Err(e) => e,
        };
        assert!(
            err.to_string()
                .contains(&file.join("sub").display().to_string()),
            "{err}"
        );
    }
}
