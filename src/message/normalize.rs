//! Streaming line-ending normalisation to CRLF (what SMTP and lettre's
//! dot-stuffing expect): CRLF, bare LF and CR CR LF end a line. A lone CR
//! never starts a header line (that would let `Subject: x\rBcc: victim`
//! through a filter that only strips LF): in the header section it becomes
//! a space; in the body, a line end (old Mac text). NUL bytes are refused,
//! and without `-i` a line holding only "." ends the message.
//! Lines are never cut or re-wrapped, whatever their length: bytes pass
//! through unchanged, so 8-bit and UTF-8 text is kept byte for byte.
//! Memory is bounded by the caller's chunk size, never by line length.

use memchr::memchr3;

#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// More input may follow.
    More,
    /// A lone "." line was seen: the message is complete.
    Ended,
}

/// A NUL byte at a 1-based line and 0-based input offset.
#[derive(Debug, PartialEq, Eq)]
pub struct NulByte {
    pub line: u64,
    pub offset: u64,
}

#[derive(Debug)]
pub struct Normalizer {
    ignore_dots: bool,
    pending_cr: bool,
    /// The current line so far is exactly "." and has not been written yet.
    held_dot: bool,
    /// Still in the header section (no empty line seen yet).
    in_header: bool,
    line_len: u64,
    pub lines: u64,
    pub longest_line: u64,
    pub eight_bit: bool,
    consumed: u64,
}

impl Normalizer {
    pub fn new(ignore_dots: bool) -> Self {
        Normalizer {
            ignore_dots,
            pending_cr: false,
            held_dot: false,
            in_header: true,
            line_len: 0,
            lines: 0,
            longest_line: 0,
            eight_bit: false,
            consumed: 0,
        }
    }

    /// Normalises `input`, appending to `out`. After `Ended`, input is ignored.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Progress, NulByte> {
        let mut rest = input;
        while !rest.is_empty() {
            if self.pending_cr {
                // CRs followed by LF end one line; a lone CR is a space in
                // the header and a line end in the body.
                match rest.first() {
                    Some(b'\r') => {
                        rest = rest.get(1..).unwrap_or(&[]);
                        self.consumed += 1;
                        continue;
                    }
                    Some(b'\n') => {
                        rest = rest.get(1..).unwrap_or(&[]);
                        self.consumed += 1;
                        self.pending_cr = false;
                    }
                    _ => {
                        self.pending_cr = false;
                        if self.in_header {
                            self.text(b" ", out);
                            continue;
                        }
                    }
                }
                if self.end_line(out) == Progress::Ended {
                    return Ok(Progress::Ended);
                }
                continue;
            }
            let run = memchr3(b'\r', b'\n', 0, rest).unwrap_or(rest.len());
            if run > 0 {
                let (text, tail) = rest.split_at(run);
                self.text(text, out);
                self.consumed += run as u64;
                rest = tail;
                continue;
            }
            let (byte, tail) = match rest.split_first() {
                Some((b, t)) => (*b, t),
                None => break,
            };
            rest = tail;
            self.consumed += 1;
            match byte {
                b'\r' => self.pending_cr = true,
                b'\n' => {
                    if self.end_line(out) == Progress::Ended {
                        return Ok(Progress::Ended);
                    }
                }
                _ => {
                    return Err(NulByte {
                        line: self.lines + 1,
                        offset: self.consumed - 1,
                    })
                }
            }
        }
        Ok(Progress::More)
    }

    /// End of input: completes a last line that had no line ending.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Progress {
        if self.pending_cr || self.line_len > 0 {
            self.pending_cr = false;
            return self.end_line(out);
        }
        Progress::More
    }

    fn text(&mut self, text: &[u8], out: &mut Vec<u8>) {
        if self.held_dot {
            out.push(b'.');
            self.held_dot = false;
        }
        if !self.eight_bit && text.iter().any(|b| *b >= 0x80) {
            self.eight_bit = true;
        }
        if self.line_len == 0 && !self.ignore_dots && text == b"." {
            self.held_dot = true;
        } else {
            out.extend_from_slice(text);
        }
        self.line_len += text.len() as u64;
    }

    fn end_line(&mut self, out: &mut Vec<u8>) -> Progress {
        if self.held_dot && self.line_len == 1 {
            self.held_dot = false;
            return Progress::Ended;
        }
        if self.held_dot {
            out.push(b'.');
            self.held_dot = false;
        }
        out.extend_from_slice(b"\r\n");
        if self.line_len == 0 {
            self.in_header = false;
        }
        self.longest_line = self.longest_line.max(self.line_len);
        self.line_len = 0;
        self.lines += 1;
        Progress::More
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split at every possible point, so chunk boundaries
    /// between CR and LF or after a lone dot are all covered.
    fn normalise_all_splits(input: &[u8], ignore_dots: bool) -> Vec<u8> {
        let whole = normalise(&[input], ignore_dots);
        for split in 0..=input.len() {
            let (a, b) = input.split_at(split);
            assert_eq!(normalise(&[a, b], ignore_dots), whole, "split at {split}");
        }
        whole
    }

    fn normalise(chunks: &[&[u8]], ignore_dots: bool) -> Vec<u8> {
        let mut n = Normalizer::new(ignore_dots);
        let mut out = Vec::new();
        for chunk in chunks {
            if n.feed(chunk, &mut out).expect("no NUL") == Progress::Ended {
                return out;
            }
        }
        n.finish(&mut out);
        out
    }

    #[test]
    fn line_endings() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"a\r\nb\r\n", b"a\r\nb\r\n"),
            (b"a\nb\n", b"a\r\nb\r\n"),
            (b"\na\rb\r", b"\r\na\r\nb\r\n"),
            (b"a\r\r\nb", b"a\r\nb\r\n"),
            (b"\na\r\r\r\nb", b"\r\na\r\nb\r\n"),
            (b"no newline", b"no newline\r\n"),
            (b"", b""),
            (b"\n\n", b"\r\n\r\n"),
        ];
        for (input, want) in cases {
            assert_eq!(normalise_all_splits(input, true), *want, "{input:?}");
        }
    }

    #[test]
    fn lone_cr_never_starts_a_header_line() {
        let input = b"Subject: hi\rBcc: victim@example.net\n\nbody\rline\n";
        assert_eq!(
            normalise_all_splits(input, true),
            b"Subject: hi Bcc: victim@example.net\r\n\r\nbody\r\nline\r\n"
        );
    }

    #[test]
    fn lone_dot_ends_without_i() {
        let input = b"a\n.\nafter\n";
        assert_eq!(normalise_all_splits(input, false), b"a\r\n");
        assert_eq!(normalise_all_splits(input, true), b"a\r\n.\r\nafter\r\n");
        assert_eq!(normalise_all_splits(b"a\r\n.\r\n", false), b"a\r\n");
        assert_eq!(normalise_all_splits(b"a\n.", false), b"a\r\n");
        assert_eq!(
            normalise_all_splits(b"..\n.x\nx.\n", false),
            b"..\r\n.x\r\nx.\r\n"
        );
    }

    #[test]
    fn eight_bit_and_long_lines_pass_through() {
        let long = vec![b'x'; 5000];
        let mut input = "grüße €\n".as_bytes().to_vec();
        input.extend_from_slice(&long);
        let mut n = Normalizer::new(true);
        let mut out = Vec::new();
        n.feed(&input, &mut out).expect("ok");
        n.finish(&mut out);
        let mut want = "grüße €\r\n".as_bytes().to_vec();
        want.extend_from_slice(&long);
        want.extend_from_slice(b"\r\n");
        assert_eq!(out, want);
        assert!(n.eight_bit);
        assert_eq!(n.longest_line, 5000);
    }

    #[test]
    fn nul_is_reported_with_position() {
        let mut n = Normalizer::new(true);
        let mut out = Vec::new();
        let err = n.feed(b"ok\nbad\0line\n", &mut out).expect_err("NUL");
        assert_eq!(err, NulByte { line: 2, offset: 6 });
    }
}
