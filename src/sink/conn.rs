//! One client connection: the socket (plain or TLS) with a bounded line
//! reader and a reply buffer flushed when no pipelined command is waiting.
//! Lines end at LF; any CRs before it are dropped, so CRLF, bare LF and the
//! CR CR LF of BusyBox sendmail all work.
//!
//! Every read and write, TLS handshake included, goes through [`Timed`],
//! which holds the session's deadlines: a socket timeout alone bounds one
//! read() only, and a client sending a byte every few seconds would never
//! hit it (issue 17).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::tls_failure::{Cause, Failure, PEER_BYTES};

pub enum Stream {
    Plain(Timed),
    Tls(Box<StreamOwned<ServerConnection, Timed>>),
}

impl Stream {
    /// The socket and its deadlines, under TLS or not.
    pub fn timed(&mut self) -> &mut Timed {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &mut s.sock,
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

/// Which deadline ended a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    /// `command_timeout`: one command line, DATA line or TLS handshake
    /// took too long.
    Command,
    /// `session_timeout`: the whole connection took too long.
    Session,
}

/// The client's TCP socket with two deadlines: the session's end
/// (`session_timeout` after the accept) and the current step's
/// (`command_timeout` after the session began waiting for a line or a
/// handshake, see [`Timed::next_step`]). No read or write blocks past the
/// nearer one; once it has passed, both fail with `TimedOut`.
///
/// The socket timeout (SO_RCVTIMEO/SO_SNDTIMEO) is only ever lowered
/// below what is left, never left above it, and it is changed only when
/// the one set is longer than what is left: it is then set to half of
/// what is left (the exact rest after a call that woke up early). A fast
/// client whose step deadline moves forward with every line so costs no
/// setsockopt per line, and one trickling towards a deadline a few dozen
/// at most (each change halves the time), not one per read.
pub struct Timed {
    tcp: TcpStream,
    command_timeout: Duration,
    session_end: Instant,
    step_end: Instant,
    read_timeout: Armed,
    write_timeout: Armed,
}

/// A socket timeout as last set.
#[derive(Default)]
struct Armed {
    set: Option<Duration>,
    /// The last call timed out before the deadline: set the exact rest.
    woke_early: bool,
    /// setsockopt calls so far (for tests).
    changes: u32,
}

impl Armed {
    /// The timeout to set before a call with `left` to go, if it changes.
    fn change_for(&mut self, left: Duration) -> Option<Duration> {
        if self.set.is_some_and(|set| set <= left) {
            return None;
        }
        let wanted = if self.woke_early || left < Duration::from_millis(2) {
            left
        } else {
            left / 2
        };
        self.woke_early = false;
        self.set = Some(wanted);
        self.changes += 1;
        Some(wanted)
    }
}

/// `start + span`, for spans up to the 7 days the limits allow.
fn after(start: Instant, span: Duration) -> Instant {
    start
        .checked_add(span)
        .or_else(|| start.checked_add(Duration::from_secs(7 * 86_400)))
        .unwrap_or(start)
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "sink deadline passed")
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Timed {
    /// Starts the clock at the accept: the first step (greeting, first
    /// command, or the implicit TLS handshake) begins now.
    pub fn new(tcp: TcpStream, command_timeout: Duration, session_timeout: Duration) -> Timed {
        let now = Instant::now();
        Timed {
            tcp,
            command_timeout,
            session_end: after(now, session_timeout),
            step_end: after(now, command_timeout),
            read_timeout: Armed::default(),
            write_timeout: Armed::default(),
        }
    }

    /// A new step (waiting for a command line, a DATA line, a TLS
    /// handshake) gets `command_timeout`, within the session's deadline.
    pub fn next_step(&mut self) {
        self.step_end = after(Instant::now(), self.command_timeout);
    }

    /// After a timeout: `grace` to write the 421 and nothing more.
    pub fn farewell(&mut self, grace: Duration) {
        let end = after(Instant::now(), grace);
        self.step_end = end;
        self.session_end = end;
    }

    /// Which deadline has passed, if one has.
    pub fn expired(&self) -> Option<Expired> {
        let now = Instant::now();
        if now >= self.session_end {
            Some(Expired::Session)
        } else if now >= self.step_end {
            Some(Expired::Command)
        } else {
            None
        }
    }

    /// Time left before the nearer deadline; `TimedOut` once it passed.
    fn left(&self) -> io::Result<Duration> {
        let left = self
            .session_end
            .min(self.step_end)
            .saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        Ok(left)
    }

    /// The socket's first bytes, not consumed (to name what a client
    /// offered when its TLS handshake fails), within the deadlines.
    pub fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let left = self.left()?;
            if let Some(t) = self.read_timeout.change_for(left) {
                self.tcp.set_read_timeout(Some(t))?;
            }
            match self.tcp.peek(buf) {
                Err(e) if is_timeout(&e) => self.read_timeout.woke_early = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let left = self.left()?;
            if let Some(t) = self.read_timeout.change_for(left) {
                self.tcp.set_read_timeout(Some(t))?;
            }
            match self.tcp.read(buf) {
                // Woke up before the deadline: the loop sees what is left.
                Err(e) if is_timeout(&e) => self.read_timeout.woke_early = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let left = self.left()?;
            if let Some(t) = self.write_timeout.change_for(left) {
                self.tcp.set_write_timeout(Some(t))?;
            }
            match self.tcp.write(buf) {
                Err(e) if is_timeout(&e) => self.write_timeout.woke_early = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// Why a TLS handshake did not complete: the failure with the client's
/// first bytes (what it offered), and which deadline passed, if one did.
#[derive(Debug)]
pub struct HandshakeError {
    pub expired: Option<Expired>,
    pub failure: Failure,
}

/// Completes a TLS handshake on `tcp` within its deadlines (the caller
/// starts a step for it). On failure, the error keeps the client's first
/// bytes (`tls_failure` names what it offered from them), and the socket
/// comes back with it, so the caller can log before the client sees the
/// connection close.
pub fn accept_tls(
    mut tcp: Timed,
    config: &Arc<ServerConfig>,
) -> Result<Stream, (HandshakeError, Box<Timed>)> {
    let failed = |tcp: &Timed, cause: Cause, peer_bytes: Vec<u8>| HandshakeError {
        expired: tcp.expired(),
        failure: Failure { cause, peer_bytes },
    };
    let mut hello = [0u8; PEER_BYTES];
    let peeked = match tcp.peek(&mut hello) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            let why = HandshakeError {
                expired: Some(tcp.expired().unwrap_or(Expired::Command)),
                failure: Failure {
                    cause: Cause::TimedOut,
                    peer_bytes: Vec::new(),
                },
            };
            return Err((why, Box::new(tcp)));
        }
        Err(_) => 0,
    };
    let first = hello.get(..peeked).unwrap_or(&[]).to_vec();
    let conn = match ServerConnection::new(config.clone()) {
        Ok(conn) => conn,
        Err(e) => return Err((failed(&tcp, Cause::Tls(e), first), Box::new(tcp))),
    };
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
            let timed_out = e.kind() == io::ErrorKind::TimedOut && stream.sock.expired().is_some();
            let mut why = HandshakeError {
                expired: None,
                failure: Failure::from_io(e, first),
            };
            if timed_out {
                why.expired = stream.sock.expired();
                why.failure.cause = Cause::TimedOut;
            }
            return Err((why, Box::new(stream.sock)));
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
    /// The first two bytes the client ever sent (a TLS record starts
    /// 0x16 0x03), and how many of them have been seen.
    first: [u8; 2],
    seen: usize,
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
            first: [0; 2],
            seen: 0,
        }
    }

    /// Whether the client's first bytes were a TLS handshake record: a
    /// client set up for implicit TLS on a listener that greets first.
    pub fn began_with_tls(&self) -> bool {
        self.seen >= 2 && self.first == [0x16, 0x03]
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
            for &b in self.buf.get(..n).unwrap_or_default() {
                if let Some(slot) = self.first.get_mut(self.seen) {
                    *slot = b;
                    self.seen += 1;
                } else {
                    break;
                }
            }
            self.end = n;
        }
    }
}

impl Conn<Stream> {
    /// Drops input the client pipelined before a STARTTLS took effect
    /// (RFC 3207 section 4.2: it must not be trusted) and hands out the
    /// plain socket.
    pub fn into_plain(mut self) -> io::Result<Option<Timed>> {
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

    #[test]
    fn the_socket_timeout_changes_only_when_longer_than_what_is_left() {
        let ms = Duration::from_millis;
        let mut armed = Armed::default();
        assert_eq!(armed.change_for(ms(10_000)), Some(ms(5_000)));
        // A fast client: every line's deadline is a fresh command_timeout
        // away, so what is left never drops below what is set.
        for i in 0..100_000u64 {
            assert_eq!(armed.change_for(ms(10_000 - i % 7)), None);
        }
        assert_eq!(armed.changes, 1);
        // A trickle towards a fixed deadline, one read each 300 ms: a few
        // changes (halving), never a timeout longer than what is left.
        let mut armed = Armed::default();
        let mut left = ms(300_000);
        while !left.is_zero() {
            armed.change_for(left);
            assert!(armed.set.is_some_and(|set| set <= left), "{left:?}");
            left = left.saturating_sub(ms(300));
        }
        assert!(armed.changes <= 12, "{} changes", armed.changes);
        // A call that woke up early: the exact rest, not half of it.
        let mut armed = Armed::default();
        assert_eq!(armed.change_for(ms(1_000)), Some(ms(500)));
        armed.woke_early = true;
        assert_eq!(armed.change_for(ms(499)), Some(ms(499)));
        assert_eq!(armed.changes, 2);
    }

    #[test]
    fn deadlines_past_a_week_do_not_overflow() {
        let now = Instant::now();
        assert!(after(now, Duration::MAX) > now);
    }
}
