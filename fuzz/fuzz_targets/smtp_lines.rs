//! The sink's line reader (commands and DATA): any byte stream, read in
//! arbitrary pieces, yields lines without CR/LF at their ends, each within
//! the limit, and never panics; DATA handling (dot-unstuffing, Subject
//! tracking) never panics either.
#![no_main]

use std::io::{self, Read, Write};

use libfuzzer_sys::fuzz_target;
use relaymail::sink::conn::{Conn, Line};
use relaymail::sink::session::track_subject;

/// Hands out the input in pieces whose sizes come from the input itself.
struct Pieces<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        buf[..n].copy_from_slice(head);
        self.data = tail;
        self.step = self.step % 13 + 1;
        Ok(n)
    }
}

impl Write for Pieces<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(first) + 1;
    let mut conn = Conn::new(Pieces {
        data: rest,
        step: usize::from(first % 7) + 1,
    });
    let mut in_header = true;
    let mut subject = None;
    loop {
        match conn.read_line(max).expect("in-memory reads do not fail") {
            Line::Complete => {
                let line = &conn.line;
                assert!(line.len() <= max);
                assert!(!line.contains(&b'\n'));
                assert!(line.last() != Some(&b'\r'));
                if line.as_slice() == b"." {
                    continue;
                }
                let content = line.strip_prefix(b".").unwrap_or(line);
                if in_header {
                    track_subject(content, &mut in_header, &mut subject);
                }
            }
            Line::TooLong => {}
            Line::Closed => break,
        }
    }
});
