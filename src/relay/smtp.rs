//! The SMTP client protocol (RFC 5321) over TCP or rustls: replies,
//! EHLO capabilities, STARTTLS, AUTH, pipelined MAIL/RCPT/DATA (RFC 2920)
//! and a dot-stuffed body streamed from any reader. It knows nothing of
//! spools or policy: `relay` decides what each reply means.
//!
//! Writes are batched (a command group, or 64 KiB of body with the final
//! "." in the same write) and TCP_NODELAY is set, so no small segment
//! ever waits for a delayed ACK.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::message::base64;
use crate::tls_failure::{self, Cause};

/// Longest reply line and whole reply accepted from a server.
const MAX_REPLY_LINE: u64 = 4096;
const MAX_REPLY_LINES: usize = 100;
const BODY_BUFFER: usize = 64 << 10;

/// One server reply: "250-a\r\n250 b" is code 250 with lines [a, b].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// "550 5.1.1 <x>: unknown user" (continuation lines joined by spaces).
    pub fn text(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" "))
    }
}

#[derive(Debug)]
pub enum Error {
    /// The connection failed or timed out.
    Io(io::Error),
    /// The TLS handshake or a TLS record failed (with the relay's first
    /// bytes when it was the handshake, to explain it).
    Tls(tls_failure::Failure),
    /// The server sent nothing at all where its greeting belongs.
    Silent(Silence),
    /// The server answered, but not with success.
    Reply(Reply),
    /// The server said something that is not SMTP.
    Protocol(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(e) if e.kind() == io::ErrorKind::WouldBlock => {
                f.write_str("timed out waiting for the relay")
            }
            Error::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                f.write_str("the relay closed the connection")
            }
            Error::Io(e) => write!(f, "{e}"),
            Error::Tls(e) => write!(f, "TLS: {e}"),
            Error::Silent(s) if s.tcp.is_some() => f.write_str("timed out waiting for the relay"),
            Error::Silent(_) => f.write_str("the relay closed the connection"),
            Error::Reply(r) => f.write_str(&r.text()),
            Error::Protocol(e) => write!(f, "protocol error: {e}"),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        // rustls reports its failures through io::Error.
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => Error::Tls(tls_failure::Failure {
                cause: Cause::Tls(tls.clone()),
                peer_bytes: Vec::new(),
            }),
            None => Error::Io(e),
        }
    }
}

/// No greeting at all: the wait for it timed out (the socket is still
/// open, for `answers_tls`), or the server closed the connection.
#[derive(Debug)]
pub struct Silence {
    /// Some when the wait timed out.
    pub tcp: Option<TcpStream>,
}

/// What the server offered in its EHLO reply.
#[derive(Clone, Debug, Default)]
pub struct Capabilities {
    pub starttls: bool,
    pub pipelining: bool,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    /// SIZE's limit; Some(0) means "SIZE without a limit".
    pub size: Option<u64>,
    /// AUTH mechanisms, upper case.
    pub auth: Vec<String>,
}

impl Capabilities {
    pub fn parse(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let keyword = words.next().unwrap_or("").to_ascii_uppercase();
            match keyword.as_str() {
                "STARTTLS" => caps.starttls = true,
                "PIPELINING" => caps.pipelining = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "AUTH" => caps.auth.extend(words.map(|m| m.to_ascii_uppercase())),
                // Old servers: "AUTH=LOGIN PLAIN".
                k if k.starts_with("AUTH=") => {
                    caps.auth
                        .extend(k.trim_start_matches("AUTH=").split(',').map(str::to_string));
                    caps.auth.extend(words.map(|m| m.to_ascii_uppercase()));
                }
                _ => {}
            }
        }
        caps.auth.sort();
        caps.auth.dedup();
        caps
    }

    pub fn offers_auth(&self, mechanism: &str) -> bool {
        self.auth.iter().any(|m| m == mechanism)
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
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

/// An SMTP connection to one server address.
pub struct Client {
    stream: BufReader<Stream>,
    pub caps: Capabilities,
    /// The server's greeting (220 ...), kept for diagnostics.
    pub greeting: Reply,
    /// The error document a server sent in a 334 during a failed
    /// XOAUTH2/OAUTHBEARER exchange (decoded JSON, one line).
    pub auth_details: Option<String>,
    broken: bool,
}

/// TLS from the first byte (port 465) or none until STARTTLS.
pub struct Wrap<'a> {
    pub config: &'a Arc<ClientConfig>,
    pub server_name: &'a ServerName<'static>,
}

impl Client {
    /// Connects, reads the greeting and says EHLO (HELO when the server
    /// refuses EHLO). `timeout` bounds each step; `wrap` is implicit TLS.
    pub fn connect(
        addr: &SocketAddr,
        timeout: Duration,
        wrap: Option<Wrap<'_>>,
        hello: &str,
    ) -> Result<Client, Error> {
        let tcp = TcpStream::connect_timeout(addr, timeout)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let stream = match wrap {
            Some(w) => Stream::Tls(Box::new(handshake(tcp, w)?)),
            None => {
                // Nothing at all before the timeout is told apart from a
                // slow or broken greeting: an implicit-TLS port is silent
                // like this, waiting for the client's hello.
                match tcp.peek(&mut [0u8; 1]) {
                    Ok(0) => return Err(Error::Silent(Silence { tcp: None })),
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        return Err(Error::Silent(Silence { tcp: Some(tcp) }))
                    }
                    Err(e) => return Err(Error::Io(e)),
                }
                Stream::Plain(tcp)
            }
        };
        let mut client = Client {
            stream: BufReader::new(stream),
            caps: Capabilities::default(),
            greeting: Reply {
                code: 0,
                lines: Vec::new(),
            },
            auth_details: None,
            broken: false,
        };
        let greeting = client.read_reply()?;
        if greeting.code != 220 {
            return Err(Error::Reply(greeting));
        }
        client.greeting = greeting;
        client.hello(hello)?;
        Ok(client)
    }

    fn hello(&mut self, hello: &str) -> Result<(), Error> {
        let ehlo = self.command(&format!("EHLO {hello}"))?;
        if ehlo.code == 250 {
            self.caps = Capabilities::parse(&ehlo);
            return Ok(());
        }
        if ehlo.code >= 500 {
            // An old relay that only knows HELO: no extensions at all.
            self.expect(&format!("HELO {hello}"), 250)?;
            self.caps = Capabilities::default();
            return Ok(());
        }
        Err(Error::Reply(ehlo))
    }

    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), Error> {
        let tcp = self.stream.get_ref().tcp();
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        Ok(())
    }

    /// The server's port (0 when the socket cannot say).
    pub fn peer_port(&self) -> u16 {
        self.stream
            .get_ref()
            .tcp()
            .peer_addr()
            .map(|a| a.port())
            .unwrap_or(0)
    }

    pub fn is_encrypted(&self) -> bool {
        matches!(self.stream.get_ref(), Stream::Tls(_))
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// "TLSv1.3/TLS_AES_256_GCM_SHA384", or None on a plain connection.
    pub fn tls_description(&self) -> Option<String> {
        match self.stream.get_ref() {
            Stream::Plain(_) => None,
            Stream::Tls(s) => Some(super::tls::describe(&s.conn)),
        }
    }

    /// The server's certificate chain, leaf first (DER).
    pub fn peer_certificates(&self) -> Vec<Vec<u8>> {
        match self.stream.get_ref() {
            Stream::Plain(_) => Vec::new(),
            Stream::Tls(s) => s
                .conn
                .peer_certificates()
                .map(|certs| certs.iter().map(|c| c.to_vec()).collect())
                .unwrap_or_default(),
        }
    }

    /// STARTTLS, the handshake, and EHLO again over TLS (RFC 3207).
    pub fn starttls(&mut self, wrap: Wrap<'_>, hello: &str) -> Result<(), Error> {
        self.expect("STARTTLS", 220)?;
        // Anything the server sent after its 220 and before the handshake
        // would be read as if it came over TLS: refuse it (CVE-2011-0411).
        if !self.stream.buffer().is_empty() {
            self.broken = true;
            return Err(Error::Protocol(
                "the relay sent data after its STARTTLS reply, before the handshake".into(),
            ));
        }
        let placeholder = BufReader::new(Stream::Plain(self.stream.get_ref().tcp().try_clone()?));
        let old = std::mem::replace(&mut self.stream, placeholder).into_inner();
        let tcp = match old {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(_) => return Err(Error::Protocol("STARTTLS inside TLS".into())),
        };
        match handshake(tcp, wrap) {
            Ok(tls) => self.stream = BufReader::new(Stream::Tls(Box::new(tls))),
            Err(e) => {
                self.broken = true;
                return Err(e);
            }
        }
        self.hello(hello)
    }

    /// AUTH with `mechanism` (PLAIN, LOGIN, XOAUTH2 or OAUTHBEARER).
    pub fn auth(&mut self, mechanism: &str, user: &str, secret: &str) -> Result<(), Error> {
        self.auth_details = None;
        let reply = match mechanism {
            "PLAIN" => {
                let token = base64::encode(format!("\0{user}\0{secret}").as_bytes());
                self.command(&format!("AUTH PLAIN {token}"))?
            }
            "LOGIN" => {
                self.expect("AUTH LOGIN", 334)?;
                self.expect(&base64::encode(user.as_bytes()), 334)?;
                self.command(&base64::encode(secret.as_bytes()))?
            }
            "XOAUTH2" => {
                let token = base64::encode(
                    format!("user={user}\x01auth=Bearer {secret}\x01\x01").as_bytes(),
                );
                let reply = self.command(&format!("AUTH XOAUTH2 {token}"))?;
                // The error details (base64 JSON); an empty line ends
                // the exchange with the final failure reply.
                self.sasl_error(reply, "")?
            }
            "OAUTHBEARER" => {
                // RFC 7628 section 3.1: a GS2 header naming the user, then
                // key=value pairs separated by ^A (host and port are
                // optional and left out: only the name is known here, and
                // the providers do not ask for them).
                let token = base64::encode(
                    format!("n,a={},\x01auth=Bearer {secret}\x01\x01", gs2_name(user)).as_bytes(),
                );
                let reply = self.command(&format!("AUTH OAUTHBEARER {token}"))?;
                // Section 3.2.3: the client answers the error document
                // with a lone ^A; the server then sends its failure.
                self.sasl_error(reply, &base64::encode(b"\x01"))?
            }
            other => return Err(Error::Protocol(format!("unknown AUTH mechanism {other}"))),
        };
        if reply.code == 235 {
            Ok(())
        } else {
            Err(Error::Reply(reply))
        }
    }

    /// A 334 after an OAuth2 initial response carries the server's error
    /// document (JSON, base64): kept in `auth_details`, then `answer`
    /// ends the exchange and the final reply is returned.
    fn sasl_error(&mut self, reply: Reply, answer: &str) -> Result<Reply, Error> {
        if reply.code != 334 {
            return Ok(reply);
        }
        let text = reply.lines.first().map(String::as_str).unwrap_or("");
        self.auth_details = base64::decode(text.trim())
            .map(|d| {
                String::from_utf8_lossy(&d)
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .take(500)
                    .collect()
            })
            .filter(|d: &String| !d.is_empty());
        self.command(answer)
    }

    /// MAIL FROM, one RCPT TO each, and DATA: pipelined in one write when
    /// the server offers PIPELINING. Returns the replies to MAIL, to each
    /// RCPT, and to DATA (None when DATA was not sent because nothing was
    /// accepted without pipelining).
    pub fn envelope(
        &mut self,
        mail: &str,
        rcpts: &[String],
    ) -> Result<(Reply, Vec<Reply>, Option<Reply>), Error> {
        if self.caps.pipelining {
            let mut batch = format!("{mail}\r\n");
            for rcpt in rcpts {
                batch.push_str(rcpt);
                batch.push_str("\r\n");
            }
            batch.push_str("DATA\r\n");
            self.write(batch.as_bytes())?;
            let mail_reply = self.read_reply()?;
            let rcpt_replies = rcpts
                .iter()
                .map(|_| self.read_reply())
                .collect::<Result<Vec<_>, _>>()?;
            let data = self.read_reply()?;
            return Ok((mail_reply, rcpt_replies, Some(data)));
        }
        let mail_reply = self.command(mail)?;
        if !mail_reply.is_positive() {
            return Ok((mail_reply, Vec::new(), None));
        }
        let mut rcpt_replies = Vec::with_capacity(rcpts.len());
        for rcpt in rcpts {
            rcpt_replies.push(self.command(rcpt)?);
        }
        if !rcpt_replies.iter().any(Reply::is_positive) {
            return Ok((mail_reply, rcpt_replies, None));
        }
        let data = self.command("DATA")?;
        Ok((mail_reply, rcpt_replies, Some(data)))
    }

    /// After a 354: the message, dot-stuffed, and the closing ".". The
    /// body's own final line end is reused; one is added when missing.
    /// Returns the server's final reply. A read error from `body` is
    /// returned as `Err(Io)` and leaves the connection broken (the server
    /// must never see a truncated message end with ".").
    pub fn data(&mut self, body: &mut dyn Read) -> Result<Reply, BodyError> {
        let mut stuffer = DotStuffer::default();
        let mut input = vec![0u8; BODY_BUFFER];
        let mut out = Vec::with_capacity(BODY_BUFFER + BODY_BUFFER / 2);
        loop {
            let n = match body.read(&mut input) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.broken = true;
                    return Err(BodyError::Source(e));
                }
            };
            stuffer.push(input.get(..n).unwrap_or_default(), &mut out);
            if out.len() >= BODY_BUFFER {
                self.write(&out).map_err(BodyError::Smtp)?;
                out.clear();
            }
        }
        stuffer.finish(&mut out);
        self.write(&out).map_err(BodyError::Smtp)?;
        self.read_reply().map_err(BodyError::Smtp)
    }

    /// A command and its reply, whatever the code.
    pub fn command(&mut self, line: &str) -> Result<Reply, Error> {
        self.write(format!("{line}\r\n").as_bytes())?;
        self.read_reply()
    }

    fn expect(&mut self, line: &str, code: u16) -> Result<Reply, Error> {
        let reply = self.command(line)?;
        if reply.code == code {
            Ok(reply)
        } else {
            Err(Error::Reply(reply))
        }
    }

    pub fn quit(mut self) {
        let _ = self.command("QUIT");
    }

    /// Marks the connection unusable (the socket closes when dropped).
    pub fn abort(&mut self) {
        self.broken = true;
        let _ = self
            .stream
            .get_ref()
            .tcp()
            .shutdown(std::net::Shutdown::Both);
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let result = self
            .stream
            .get_mut()
            .write_all(bytes)
            .and_then(|()| self.stream.get_mut().flush());
        result.map_err(|e| {
            self.broken = true;
            Error::from(e)
        })
    }

    fn read_reply(&mut self) -> Result<Reply, Error> {
        let result = read_reply(&mut self.stream);
        // 421: the server is closing the session (RFC 5321 3.8), whatever
        // command it answers.
        if matches!(
            result,
            Err(Error::Io(_) | Error::Tls(_) | Error::Silent(_) | Error::Protocol(_))
                | Ok(Reply { code: 421, .. })
        ) {
            self.broken = true;
        }
        result
    }
}

/// Why DATA's body was not delivered.
#[derive(Debug)]
pub enum BodyError {
    /// Reading the queued message failed.
    Source(io::Error),
    /// The connection failed.
    Smtp(Error),
}

/// The handshake, keeping the relay's first bytes: they tell a plain
/// SMTP greeting on a TLS port, or the version an old relay chose.
fn handshake(
    mut tcp: TcpStream,
    wrap: Wrap<'_>,
) -> Result<StreamOwned<ClientConnection, TcpStream>, Error> {
    let mut conn = ClientConnection::new(Arc::clone(wrap.config), wrap.server_name.clone())
        .map_err(|e| {
            Error::Tls(tls_failure::Failure {
                cause: Cause::Tls(e),
                peer_bytes: Vec::new(),
            })
        })?;
    let mut seen = Recorder {
        inner: &mut tcp,
        first: Vec::new(),
    };
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut seen) {
            return Err(Error::Tls(tls_failure::Failure::from_io(e, seen.first)));
        }
    }
    Ok(StreamOwned::new(conn, tcp))
}

/// Whether a server that sent no greeting answers a TLS hello on the same
/// connection within `wait`: then the port is an implicit-TLS one. Only
/// the first record's header is read; nothing is sent after the hello.
pub fn answers_tls(
    tcp: &mut TcpStream,
    config: &Arc<ClientConfig>,
    server_name: &ServerName<'static>,
    wait: Duration,
) -> bool {
    let Ok(mut conn) = ClientConnection::new(Arc::clone(config), server_name.clone()) else {
        return false;
    };
    while conn.wants_write() {
        if conn.write_tls(tcp).is_err() {
            return false;
        }
    }
    let mut head = [0u8; 3];
    tcp.set_read_timeout(Some(wait)).is_ok()
        && tcp.read_exact(&mut head).is_ok()
        && matches!(head, [0x15 | 0x16, 0x03, _])
}

/// Passes reads and writes through, keeping a copy of the first bytes read.
struct Recorder<'a> {
    inner: &'a mut TcpStream,
    first: Vec<u8>,
}

impl Read for Recorder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let room = tls_failure::PEER_BYTES.saturating_sub(self.first.len());
        self.first
            .extend_from_slice(buf.get(..n.min(room)).unwrap_or_default());
        Ok(n)
    }
}

impl Write for Recorder<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A SASL authorisation identity in a GS2 header (RFC 5801 section 4):
/// "," and "=" escaped.
fn gs2_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// One reply from `input` (a relay's bytes are untrusted: bounded lines,
/// bounded line count, codes 200-599 only).
pub fn read_reply(input: &mut impl BufRead) -> Result<Reply, Error> {
    let mut lines = Vec::new();
    loop {
        let mut raw = Vec::new();
        let n = input
            .by_ref()
            .take(MAX_REPLY_LINE)
            .read_until(b'\n', &mut raw)?;
        if n == 0 {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            )));
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\r', '\n']);
        let code = line
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (200..600).contains(c))
            .ok_or_else(|| Error::Protocol(format!("not an SMTP reply: {line:?}")))?;
        let more = line.as_bytes().get(3) == Some(&b'-');
        lines.push(line.get(4..).unwrap_or("").to_string());
        if lines.len() > MAX_REPLY_LINES {
            return Err(Error::Protocol("reply too long".into()));
        }
        if !more {
            return Ok(Reply { code, lines });
        }
    }
}

/// Dot-stuffing across buffer boundaries (RFC 5321 4.5.2).
pub struct DotStuffer {
    at_line_start: bool,
    /// The last two bytes seen, to know whether the body ended a line.
    tail: [u8; 2],
    empty: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            tail: [0; 2],
            empty: true,
        }
    }
}

impl DotStuffer {
    /// Appends `input`, dot-stuffed, to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut rest = input;
        while let Some((&first, _)) = rest.split_first() {
            if self.at_line_start && first == b'.' {
                out.push(b'.');
            }
            match memchr::memchr(b'\n', rest) {
                Some(i) => {
                    let (line, after) = rest.split_at(i + 1);
                    out.extend_from_slice(line);
                    rest = after;
                    self.at_line_start = true;
                }
                None => {
                    out.extend_from_slice(rest);
                    rest = &[];
                    self.at_line_start = false;
                }
            }
        }
        for &b in input.iter().rev().take(2).rev() {
            self.tail = [self.tail[1], b];
        }
        self.empty &= input.is_empty();
    }

    /// Appends the end of the data: a line end if missing, then ".".
    pub fn finish(&self, out: &mut Vec<u8>) {
        if !self.empty && self.tail != *b"\r\n" {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> Result<Reply, Error> {
        read_reply(&mut io::Cursor::new(text.as_bytes().to_vec()))
    }

    #[test]
    fn multiline_replies_and_capabilities() {
        let r = reply("250-relay.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=LOGIN\r\n250-STARTTLS\r\n250 8BITMIME\r\n").unwrap();
        assert_eq!(r.code, 250);
        let caps = Capabilities::parse(&r);
        assert!(caps.pipelining && caps.starttls && caps.eight_bit_mime && !caps.smtputf8);
        assert_eq!(caps.size, Some(10_240_000));
        assert_eq!(caps.auth, ["LOGIN", "PLAIN"]);
        assert_eq!(
            reply("550 5.1.1 <x>: unknown\r\n").unwrap().text(),
            "550 5.1.1 <x>: unknown"
        );
        assert!(matches!(reply("HTTP/1.1 400\r\n"), Err(Error::Protocol(_))));
        assert!(matches!(reply("250-cut"), Err(Error::Io(_))));
    }

    fn stuffed(pieces: &[&[u8]]) -> Vec<u8> {
        let mut s = DotStuffer::default();
        let mut out = Vec::new();
        for p in pieces {
            s.push(p, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn dots_are_stuffed_across_pieces_and_the_end_is_one_dot_line() {
        assert_eq!(stuffed(&[b"a\r\n.b\r\n"]), b"a\r\n..b\r\n.\r\n");
        assert_eq!(stuffed(&[b"a\r\n", b".", b"b\r\n"]), b"a\r\n..b\r\n.\r\n");
        assert_eq!(stuffed(&[b".\r\n"]), b"..\r\n.\r\n");
        assert_eq!(stuffed(&[b"no end"]), b"no end\r\n.\r\n");
        assert_eq!(stuffed(&[b"x\r", b"\n"]), b"x\r\n.\r\n");
        assert_eq!(stuffed(&[]), b".\r\n");
    }
}
