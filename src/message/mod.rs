//! Reading a message from stdin: line endings normalised to CRLF, the
//! header section parsed (bounded), the body streamed to a writer with a
//! size limit. Memory stays flat whatever the message size.
//!
//! This module knows message syntax only: where the bytes go (the spool)
//! and how addresses are rewritten (rewrite) are decided by the caller.

pub mod address;
pub mod base64;
pub mod header;
pub mod normalize;
pub mod shape;

use std::fmt;
use std::io::{self, Read, Write};

pub use header::{Field, Header};
use normalize::{Normalizer, Progress};

use crate::sysexits::{self, ExitStatus, Sysexit};

/// The header section is held in memory while it is rewritten; beyond
/// this it is refused rather than buffered without bound.
pub const MAX_HEADER_SIZE: usize = 1 << 20;
/// A first line this long without a colon is body, not header.
pub const MAX_HEADER_LINE: usize = 64 << 10;
const CHUNK: usize = 64 << 10;

#[derive(Debug)]
pub enum Error {
    Nul { line: u64, offset: u64 },
    TooLarge { limit: u64 },
    HeaderTooLarge,
    Input(io::Error),
    Store(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Nul { line, offset } => write!(
                f,
                "message refused: NUL byte at line {line} (byte {offset}); mail cannot carry NUL bytes, send binary data as a MIME attachment (e.g. mutt -a, mail -A)"
            ),
            Error::TooLarge { limit } => write!(
                f,
                "message refused: larger than the limit of {limit} bytes ([queue] max_message_size); send a smaller message or raise the limit"
            ),
            Error::HeaderTooLarge => write!(
                f,
                "message refused: header section larger than {MAX_HEADER_SIZE} bytes without an empty line ending it"
            ),
            Error::Input(e) => write!(f, "cannot read the message from standard input: {e}"),
            Error::Store(e) => write!(
                f,
                "cannot write the message to the spool: {e}{}",
                sysexits::store_advice(e)
            ),
        }
    }
}

impl std::error::Error for Error {}

impl ExitStatus for Error {
    fn sysexit(&self) -> Sysexit {
        match self {
            Error::Nul { .. } | Error::TooLarge { .. } | Error::HeaderTooLarge => Sysexit::DataErr,
            Error::Input(_) => Sysexit::IoErr,
            Error::Store(e) => sysexits::for_store_error(e),
        }
    }
}

/// What was learnt while streaming the message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes written (header + body, CRLF line endings).
    pub size: u64,
    /// A byte >= 0x80 was seen: the relay needs BODY=8BITMIME.
    pub eight_bit: bool,
    pub longest_line: u64,
}

/// A message on its way in: the header first, then the body.
pub struct Reader<R> {
    input: R,
    normalizer: Normalizer,
    /// Normalised bytes read ahead of the body start.
    pending: Vec<u8>,
    done: bool,
    chunk: Vec<u8>,
}

impl<R: Read> Reader<R> {
    pub fn new(input: R, ignore_dots: bool) -> Self {
        Reader {
            input,
            normalizer: Normalizer::new(ignore_dots),
            pending: Vec::new(),
            done: false,
            chunk: vec![0; CHUNK],
        }
    }

    /// Reads up to the end of the header section.
    pub fn read_header(&mut self) -> Result<Header, Error> {
        loop {
            match header::scan(&self.pending, self.done) {
                header::Scan::Complete { header, body_start } => {
                    self.pending.drain(..body_start.min(self.pending.len()));
                    return Ok(header);
                }
                header::Scan::NeedMore if self.pending.len() > MAX_HEADER_SIZE => {
                    return Err(Error::HeaderTooLarge)
                }
                header::Scan::NeedMore => self.fill()?,
            }
        }
    }

    /// Streams the rest of the message to `out`. `budget` is how many bytes
    /// may still be written before the size limit `limit` is exceeded.
    pub fn copy_body<W: Write>(
        &mut self,
        out: &mut W,
        budget: u64,
        limit: u64,
    ) -> Result<u64, Error> {
        let mut written: u64 = 0;
        loop {
            if !self.pending.is_empty() {
                written += self.pending.len() as u64;
                if written > budget {
                    return Err(Error::TooLarge { limit });
                }
                out.write_all(&self.pending).map_err(Error::Store)?;
                self.pending.clear();
            }
            if self.done {
                return Ok(written);
            }
            self.fill()?;
        }
    }

    pub fn eight_bit(&self) -> bool {
        self.normalizer.eight_bit
    }

    pub fn longest_line(&self) -> u64 {
        self.normalizer.longest_line
    }

    /// Reads one chunk of input and normalises it into `pending`.
    fn fill(&mut self) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        let n = loop {
            match self.input.read(&mut self.chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Input(e)),
            }
        };
        let progress = if n == 0 {
            self.normalizer.finish(&mut self.pending);
            Progress::Ended
        } else {
            let input = self.chunk.get(..n).unwrap_or(&[]);
            self.normalizer
                .feed(input, &mut self.pending)
                .map_err(|e| Error::Nul {
                    line: e.line,
                    offset: e.offset,
                })?
        };
        self.done = progress == Progress::Ended;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte at a time, to cross every boundary.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(slot)) => {
                    *slot = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    fn read_all(input: &[u8], ignore_dots: bool) -> (Header, Vec<u8>) {
        let mut reader = Reader::new(Trickle(input), ignore_dots);
        let header = reader.read_header().expect("header");
        let mut body = Vec::new();
        reader
            .copy_body(&mut body, u64::MAX, u64::MAX)
            .expect("body");
        (header, body)
    }

    #[test]
    fn header_and_body_split_across_tiny_reads() {
        let (h, body) = read_all(b"Subject: hi\nTo: a@x.org\n\nline 1\n.\nline 3\n", true);
        assert_eq!(h.fields.len(), 2);
        assert_eq!(body, b"line 1\r\n.\r\nline 3\r\n");
        let (_, body) = read_all(b"Subject: hi\n\nline 1\n.\nline 3\n", false);
        assert_eq!(body, b"line 1\r\n");
    }

    #[test]
    fn size_limit_while_streaming() {
        let input = vec![b'x'; 10_000];
        let mut reader = Reader::new(&input[..], true);
        reader.read_header().expect("header");
        let mut sink = Vec::new();
        let err = reader
            .copy_body(&mut sink, 5_000, 5_000)
            .expect_err("too big");
        assert!(matches!(err, Error::TooLarge { limit: 5_000 }));
    }

    #[test]
    fn empty_input() {
        let (h, body) = read_all(b"", false);
        assert!(h.is_empty());
        assert!(body.is_empty());
    }
}
