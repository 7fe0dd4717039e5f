//! One client connection: the socket (plain or TLS) with a bounded line
//! reader and a reply buffer flushed when no pipelined command is waiting.
//! Lines end at LF; any CRs before it are dropped, so CRLF, bare LF and the
//! CR CR LF of BusyBox sendmail all work.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection, StreamOwned};

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Stream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// Version and cipher once TLS is up.
    pub fn tls_info(&self) -> Option<(String, String)> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(s) => {
                let version = s.conn.protocol_version().map(|v| match v {
                    rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
                    rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
                    other => format!("{other:?}"),
                })?;
                let cipher = s
                    .conn
                    .negotiated_cipher_suite()
                    .map(|c| format!("{:?}", c.suite()))
                    .unwrap_or_default();
                Some((version, cipher))
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Completes a TLS handshake on `tcp`. On failure, the error names what
/// the client offered, read from its first bytes.
pub fn accept_tls(tcp: TcpStream, config: &Arc<ServerConfig>) -> Result<Stream, String> {
    let mut hello = [0u8; 512];
    let peeked = tcp.peek(&mut hello).unwrap_or(0);
    let offered = super::tls::offered_version(hello.get(..peeked).unwrap_or(&[]));
    let conn = ServerConnection::new(config.clone()).map_err(|e| e.to_string())?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
            let offered = offered.unwrap_or("nothing");
            return Err(format!(
                "TLS handshake failed ({e}); the client offered {offered}; this listener speaks TLS 1.2 and 1.3 only, so an older device must use a plain listener"
            ));
        }
    }
    Ok(Stream::Tls(Box::new(stream)))
}

/// What `read_line` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line; its bytes are in `Conn::line`.
    Complete,
    /// Longer than the limit: consumed up to its end, content dropped.
    TooLong,
    /// The client closed the connection.
    Closed,
}

pub struct Conn<S = Stream> {
    pub stream: S,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The last line read, without its line ending.
    pub line: Vec<u8>,
    out: Vec<u8>,
}

impl<S: Read + Write> Conn<S> {
    pub fn new(stream: S) -> Conn<S> {
        Conn {
            stream,
            buf: vec![0; 16 << 10],
            start: 0,
            end: 0,
            line: Vec::with_capacity(1024),
            out: Vec::with_capacity(1024),
        }
    }

    /// Queues a reply; replies go out when the client has nothing pending
    /// (PIPELINING) or on `flush`.
    pub fn reply(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out)?;
            self.out.clear();
        }
        self.stream.flush()
    }

    /// True when buffered input holds a complete line (a pipelined command).
    fn has_pending_line(&self) -> bool {
        self.buf
            .get(self.start..self.end)
            .is_some_and(|b| b.contains(&b'\n'))
    }

    /// Bytes the client sent ahead that have not been read as lines.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Reads one line of at most `max` bytes into `self.line`.
    pub fn read_line(&mut self, max: usize) -> io::Result<Line> {
        if !self.has_pending_line() {
            self.flush()?;
        }
        self.line.clear();
        let mut too_long = false;
        loop {
            let pending = self.buf.get(self.start..self.end).unwrap_or(&[]);
            if let Some(pos) = memchr::memchr(b'\n', pending) {
                let part = pending.get(..pos).unwrap_or(&[]);
                if !too_long && self.line.len() + part.len() <= max.saturating_add(2) {
                    self.line.extend_from_slice(part);
                } else {
                    too_long = true;
                }
                self.start += pos + 1;
                while self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                if too_long || self.line.len() > max {
                    self.line.clear();
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Complete);
            }
            if !too_long && self.line.len() + pending.len() <= max.saturating_add(2) {
                self.line.extend_from_slice(pending);
            } else {
                too_long = true;
                self.line.clear();
            }
            self.start = 0;
            self.end = 0;
            let n = loop {
                match self.stream.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                return Ok(Line::Closed);
            }
            self.end = n;
        }
    }
}

impl Conn<Stream> {
    /// Drops input the client pipelined before a STARTTLS took effect
    /// (RFC 3207 section 4.2: it must not be trusted) and hands out the
    /// plain socket.
    pub fn into_plain(mut self) -> io::Result<Option<TcpStream>> {
        self.flush()?;
        Ok(match self.stream {
            Stream::Plain(tcp) => Some(tcp),
            Stream::Tls(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that sends `input` and swallows replies.
    struct Script(io::Cursor<Vec<u8>>);
    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            // One byte at a time: every line crosses read boundaries.
            let Some(first) = buf.first_mut() else {
                return Ok(0);
            };
            let mut one = [0u8; 1];
            let n = self.0.read(&mut one)?;
            *first = one[0];
            Ok(n)
        }
    }
    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines(input: &[u8], max: usize) -> Vec<Result<Vec<u8>, Line>> {
        let mut conn = Conn::new(Script(io::Cursor::new(input.to_vec())));
        let mut out = Vec::new();
        loop {
            match conn.read_line(max).expect("in-memory reads do not fail") {
                Line::Complete => out.push(Ok(conn.line.clone())),
                Line::Closed => return out,
                other => out.push(Err(other)),
            }
        }
    }

    #[test]
    fn line_ends_and_limits() {
        let got = lines(b"a\r\nb\nc\r\r\nd\re\n", 10);
        assert_eq!(
            got,
            vec![
                Ok(b"a".to_vec()),
                Ok(b"b".to_vec()),
                Ok(b"c".to_vec()),
                Ok(b"d\re".to_vec())
            ]
        );
        let got = lines(b"short\n0123456789abcdef\nnext\n", 10);
        assert_eq!(
            got,
            vec![
                Ok(b"short".to_vec()),
                Err(Line::TooLong),
                Ok(b"next".to_vec())
            ]
        );
        assert!(
            lines(b"no newline at end", 100).is_empty(),
            "an unfinished line is not a line"
        );
    }
}
