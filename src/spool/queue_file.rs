//! The queued message file, format 2: one file that carries the message
//! and its first envelope, so that a submission is durable after one
//! file flush and one directory flush.
//!
//! ```text
//! relaymail-queue-file 2 envelope-at=00000000000000002048 envelope-len=00000000000000000412\n
//! <the message, CRLF lines, exactly as it will be sent>
//! <the first envelope, TOML>
//! ```
//!
//! The first line has a fixed width: it is written as a placeholder when
//! the file is created and overwritten in place once the message has been
//! streamed and the envelope appended. A file without this line is a
//! format-1 message file (the message alone, its envelope in `.env`).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

const MAGIC: &[u8] = b"relaymail-queue-file 2 ";

/// Length of the first line, newline included.
pub const HEADER_LEN: u64 = 90;

/// Where the parts of a format-2 file are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub envelope_at: u64,
    pub envelope_len: u64,
}

impl Layout {
    /// The message's length in bytes.
    pub fn body_len(&self) -> u64 {
        self.envelope_at.saturating_sub(HEADER_LEN)
    }
}

/// The first line for `layout`; a zero layout is the placeholder.
pub fn header(layout: Layout) -> Vec<u8> {
    let line = format!(
        "relaymail-queue-file 2 envelope-at={:020} envelope-len={:020}\n",
        layout.envelope_at, layout.envelope_len
    );
    debug_assert_eq!(line.len() as u64, HEADER_LEN);
    line.into_bytes()
}

pub fn placeholder() -> Vec<u8> {
    header(Layout {
        envelope_at: 0,
        envelope_len: 0,
    })
}

/// Reads the first line: Some(layout) for a format-2 file, None for a
/// format-1 message file; an error for a format-2 file whose first line
/// was never completed or is damaged.
pub fn layout(file: &File) -> io::Result<Option<Layout>> {
    let mut first = [0u8; HEADER_LEN as usize];
    let got = read_at_most(file, &mut first, 0)?;
    let Some(line) = first.get(..got) else {
        return Ok(None);
    };
    if !line.starts_with(MAGIC) {
        return Ok(None);
    }
    let text = std::str::from_utf8(line).map_err(|_| damaged("first line is not text"))?;
    let number = |key: &str| -> io::Result<u64> {
        text.split(key)
            .nth(1)
            .and_then(|rest| rest.get(..20))
            .and_then(|digits| digits.parse().ok())
            .ok_or_else(|| damaged("first line lacks the envelope position"))
    };
    let layout = Layout {
        envelope_at: number("envelope-at=")?,
        envelope_len: number("envelope-len=")?,
    };
    if got as u64 != HEADER_LEN || layout.envelope_at < HEADER_LEN || layout.envelope_len == 0 {
        return Err(damaged("the file was never completed"));
    }
    Ok(Some(layout))
}

/// The first envelope of a format-2 file (TOML text).
pub fn envelope_text(file: &File, layout: Layout) -> io::Result<String> {
    let len = usize::try_from(layout.envelope_len).map_err(|_| damaged("envelope too large"))?;
    if len > 16 << 20 {
        return Err(damaged("envelope too large"));
    }
    let mut buf = vec![0u8; len];
    let got = read_at_most(file, &mut buf, layout.envelope_at)?;
    if got != len {
        return Err(damaged("the envelope is cut short"));
    }
    String::from_utf8(buf).map_err(|_| damaged("the envelope is not UTF-8"))
}

/// A reader of exactly the message: for format 2 between the first line
/// and the envelope, for format 1 the whole file.
pub fn body(mut file: File) -> io::Result<io::Take<File>> {
    match layout(&file)? {
        Some(layout) => {
            file.seek(SeekFrom::Start(HEADER_LEN))?;
            Ok(file.take(layout.body_len()))
        }
        None => {
            file.seek(SeekFrom::Start(0))?;
            Ok(file.take(u64::MAX))
        }
    }
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let Some(rest) = buf.get_mut(got..) else {
            break;
        };
        match file.read_at(rest, offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn damaged(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("damaged queue file: {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_first_line_has_a_fixed_width() {
        assert_eq!(placeholder().len() as u64, HEADER_LEN);
        let big = header(Layout {
            envelope_at: u64::MAX,
            envelope_len: u64::MAX,
        });
        assert_eq!(big.len() as u64, HEADER_LEN);
    }

    #[test]
    fn round_trip_and_format_1() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("m");
        let mut f = File::create(&path).expect("create");
        f.write_all(&placeholder()).expect("w");
        f.write_all(b"Subject: x\r\n\r\nbody\r\n").expect("w");
        let at = HEADER_LEN + 20;
        f.write_all(b"version = 2\n").expect("w");
        f.write_all_at(
            &header(Layout {
                envelope_at: at,
                envelope_len: 12,
            }),
            0,
        )
        .expect("w");
        let f = File::open(&path).expect("open");
        let found = layout(&f).expect("read").expect("format 2");
        assert_eq!(found.body_len(), 20);
        assert_eq!(envelope_text(&f, found).expect("env"), "version = 2\n");
        let mut text = String::new();
        body(f).expect("body").read_to_string(&mut text).expect("r");
        assert_eq!(text, "Subject: x\r\n\r\nbody\r\n");

        std::fs::write(&path, "Subject: old\r\n\r\nv1\r\n").expect("w");
        let f = File::open(&path).expect("open");
        assert_eq!(layout(&f).expect("read"), None);
        let mut text = String::new();
        body(f).expect("body").read_to_string(&mut text).expect("r");
        assert_eq!(text, "Subject: old\r\n\r\nv1\r\n");
    }

    #[test]
    fn an_unfinished_file_is_damaged_not_misread() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("m");
        std::fs::write(&path, [placeholder(), b"partial".to_vec()].concat()).expect("w");
        let f = File::open(&path).expect("open");
        assert!(layout(&f).is_err());
    }
}
