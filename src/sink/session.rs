//! One SMTP session of the sink (RFC 5321), tolerant of what old devices
//! send: HELO without EHLO, lowercase verbs, MAIL without HELO, bare LF and
//! CR CR LF line ends, `AUTH=<>` on MAIL, AUTH LOGIN with or without an
//! initial response. Replies carry enhanced status codes (RFC 3463).
//!
//! Nothing here can send mail anywhere: a session ends in the store.

pub use crate::smtp_syntax::{path_argument, split_command};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::conn::{accept_tls, Conn, Expired, HandshakeError, Line, Stream, Timed};
use super::events::Accepted;
use super::store::Envelope;
use super::Shared;
use crate::config::{SinkAuth, SinkTls};
use crate::id::QueueId;
use crate::message::base64;
use crate::tls_failure;

/// Command lines (RFC 5321 allows 512; extensions make them longer).
const MAX_COMMAND: usize = 4096;
/// An AUTH exchange line (RFC 4954 section 4).
const MAX_AUTH_LINE: usize = 12288;
/// After this many bad commands the client is disconnected.
const MAX_ERRORS: u32 = 20;
/// The time given to the 421 after a timeout: the longest a session can
/// outlive its deadline (against a client that stopped reading).
const FAREWELL: Duration = Duration::from_secs(1);

/// Why a session ended early.
enum End {
    Quit,
    Closed,
    Timeout,
    Io,
}

/// What the session was waiting for (named in the log when it times out).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Command,
    Data,
    Handshake,
}

struct Transaction {
    sender: String,
    recipients: Vec<String>,
}

struct Session<'a> {
    shared: &'a Shared,
    peer: SocketAddr,
    /// The listener's own address, for TLS failure log lines.
    local: String,
    listener_tls: SinkTls,
    /// No line has been read yet (a TLS hello there is a client set up
    /// for implicit TLS).
    first_line: bool,
    helo: Option<String>,
    esmtp: bool,
    tls: Option<(String, String)>,
    auth_user: Option<String>,
    /// The mechanism and, for XOAUTH2/OAUTHBEARER, the SHA-256 of the
    /// bearer token presented (the sink keeps no usable token).
    auth_mechanism: Option<String>,
    auth_token_sha256: Option<String>,
    tx: Option<Transaction>,
    errors: u32,
    stage: Stage,
}

/// Serves one accepted connection to its end. From the accept on, every
/// read and write is bounded by the session's deadline and the current
/// step's (a command line, a DATA line, a TLS handshake; see `Timed`).
pub fn serve(shared: &Shared, tcp: TcpStream, listener_tls: SinkTls) {
    let Ok(peer) = tcp.peer_addr() else { return };
    let local = tcp.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let _ = tcp.set_nodelay(true);
    // The first step (the implicit TLS handshake, or the greeting and
    // the first command) starts here.
    let timed = Timed::new(
        tcp,
        shared.settings.command_timeout,
        shared.settings.session_timeout,
    );
    let mut session = Session {
        shared,
        peer,
        local,
        listener_tls,
        first_line: true,
        helo: None,
        esmtp: false,
        tls: None,
        auth_user: None,
        auth_mechanism: None,
        auth_token_sha256: None,
        tx: None,
        errors: 0,
        stage: Stage::Handshake,
    };
    let stream = if listener_tls == SinkTls::Implicit {
        let Some(config) = shared.tls.as_ref() else {
            return;
        };
        match accept_tls(timed, config) {
            Ok(stream) => stream,
            Err((e, _socket)) => {
                session.handshake_failed(e);
                return;
            }
        }
    } else {
        Stream::Plain(timed)
    };
    session.tls = stream.tls_info();
    session.stage = Stage::Command;
    let mut conn = Conn::new(stream);
    conn.reply(&format!(
        "220 {} ESMTP relaymail sink (receive only)",
        shared.hostname
    ));
    loop {
        match session.run(&mut conn) {
            // STARTTLS was accepted: upgrade the socket and go on.
            Ok(()) => {
                let pipelined = conn.buffered();
                let Ok(Some(mut timed)) = conn.into_plain() else {
                    return;
                };
                if pipelined > 0 {
                    // RFC 3207 section 4.2: commands sent before the
                    // handshake must not be trusted; drop the client.
                    return;
                }
                let Some(config) = shared.tls.as_ref() else {
                    return;
                };
                session.stage = Stage::Handshake;
                timed.next_step();
                match accept_tls(timed, config) {
                    Ok(stream) => {
                        session.restart_with_tls(stream.tls_info());
                        conn = Conn::new(stream);
                    }
                    Err((e, _socket)) => {
                        session.handshake_failed(e);
                        return;
                    }
                }
            }
            Err(End::Quit) | Err(End::Closed) | Err(End::Io) => {
                let _ = conn.flush();
                return;
            }
            Err(End::Timeout) => {
                let expired = conn.stream.timed().expired().unwrap_or(Expired::Command);
                let reply = format!("421 4.4.2 {} Error: timeout exceeded", shared.hostname);
                shared
                    .events
                    .refused_because(peer, &reply, &session.timeout_reason(expired));
                conn.stream.timed().farewell(FAREWELL);
                conn.reply(&reply);
                let _ = conn.flush();
                return;
            }
        }
    }
}

impl Session<'_> {
    /// Reads and answers commands until the session ends. STARTTLS
    /// replaces the connection and continues inside this loop.
    fn run(&mut self, conn: &mut Conn) -> Result<(), End> {
        loop {
            let line = self.read(conn, MAX_COMMAND)?;
            let Some(text) = line else {
                conn.reply("500 5.5.6 Error: line too long");
                self.error()?;
                continue;
            };
            let (verb, args) = split_command(&text);
            match verb.as_str() {
                "EHLO" => self.hello(conn, &args, true),
                "HELO" => self.hello(conn, &args, false),
                "MAIL" => self.mail(conn, &args)?,
                "RCPT" => self.rcpt(conn, &args)?,
                "DATA" => self.data(conn)?,
                "RSET" => {
                    self.tx = None;
                    conn.reply("250 2.0.0 Ok");
                }
                "NOOP" => conn.reply("250 2.0.0 Ok"),
                "QUIT" => {
                    conn.reply(&format!("221 2.0.0 {} closing connection", self.shared.hostname));
                    return Err(End::Quit);
                }
                "VRFY" => conn.reply("252 2.5.2 Cannot VRFY user, but will accept message"),
                "HELP" => conn.reply("214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS AUTH"),
                "AUTH" => self.auth(conn, &args)?,
                "STARTTLS" => {
                    if self.starttls(conn)? {
                        return Ok(());
                    }
                }
                "" => {
                    conn.reply("500 5.5.2 Error: bad syntax");
                    self.error()?;
                }
                _ => {
                    conn.reply("502 5.5.2 Error: command not recognized");
                    self.error()?;
                }
            }
        }
    }

    /// One line as text; None when it was too long.
    fn read(&mut self, conn: &mut Conn, max: usize) -> Result<Option<String>, End> {
        Ok(match self.next_line(conn, max)? {
            Line::TooLong => None,
            _ => Some(String::from_utf8_lossy(&conn.line).into_owned()),
        })
    }

    /// The next line into `conn.line` (Complete or TooLong): a new step,
    /// so it has `command_timeout` to arrive whole, within the session's
    /// deadline.
    fn next_line(&mut self, conn: &mut Conn, max: usize) -> Result<Line, End> {
        conn.stream.timed().next_step();
        let read = conn.read_line(max);
        if std::mem::replace(&mut self.first_line, false) && conn.began_with_tls() {
            // A TLS hello where a command belongs: the client expects
            // implicit TLS. Say so in the log; no reply can help it.
            let explained = tls_failure::tls_on_plain_listener(&self.listener_words());
            self.shared
                .events
                .tls_failed(self.peer, &explained.sentence());
            return Err(End::Closed);
        }
        match read {
            Ok(Line::Closed) => Err(End::Closed),
            Ok(line) => Ok(line),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(End::Timeout)
            }
            Err(_) => Err(End::Io),
        }
    }

    /// For the log: which timeout passed, and while waiting for what.
    fn timeout_reason(&self, expired: Expired) -> String {
        let settings = &self.shared.settings;
        let limit = match expired {
            Expired::Command => {
                format!("command_timeout ({}s)", settings.command_timeout.as_secs())
            }
            Expired::Session => {
                format!("session_timeout ({}s)", settings.session_timeout.as_secs())
            }
        };
        let during = match (self.stage, &self.helo) {
            (Stage::Handshake, _) => "during the TLS handshake",
            (Stage::Data, _) => "during DATA",
            (Stage::Command, None) => "waiting for a command, before HELO/EHLO",
            (Stage::Command, Some(_)) => "waiting for a command",
        };
        format!("{limit} passed {during}")
    }

    /// Logs a TLS handshake that failed or timed out, before the caller
    /// drops the socket. Nothing is sent: the client is inside the
    /// handshake, and a 421 in plain text would only be read as a broken
    /// TLS record.
    fn handshake_failed(&self, e: HandshakeError) {
        let listener = self.listener_words();
        let reason = match e.expired {
            // A client that stalled inside its handshake: the deadline
            // is the whole story.
            Some(expired) if !e.failure.peer_bytes.is_empty() => self.timeout_reason(expired),
            Some(expired) => format!(
                "{}; {}",
                self.timeout_reason(expired),
                tls_failure::client_failure(&e.failure, &listener).sentence()
            ),
            None => tls_failure::client_failure(&e.failure, &listener).sentence(),
        };
        self.shared.events.tls_failed(self.peer, &reason);
    }

    /// The words' view of this session's listener.
    fn listener_words(&self) -> tls_failure::Listener<'_> {
        tls_failure::Listener {
            addr: self.local.clone(),
            mode: self.listener_tls,
            min_version: self.shared.settings.tls_min_version,
            certificate: &self.shared.certificate,
            all: &self.shared.listeners,
        }
    }

    fn error(&mut self) -> Result<(), End> {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            return Err(End::Quit);
        }
        Ok(())
    }

    fn hello(&mut self, conn: &mut Conn, args: &str, esmtp: bool) {
        let name = args.split_whitespace().next().unwrap_or("");
        let name = if name.is_empty() {
            format!("[{}]", self.peer.ip())
        } else {
            clean(name)
        };
        self.helo = Some(name.clone());
        self.esmtp = esmtp;
        self.tx = None;
        let host = &self.shared.hostname;
        if !esmtp {
            conn.reply(&format!("250 {host} Hello {name} [{}]", self.peer.ip()));
            return;
        }
        let mut lines = vec![
            format!("{host} Hello {name} [{}]", self.peer.ip()),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.shared.settings.max_message_size),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if self.listener_tls == SinkTls::Starttls && self.tls.is_none() && self.shared.tls.is_some()
        {
            lines.push("STARTTLS".to_string());
        }
        if self.shared.settings.auth != SinkAuth::None {
            lines.push("AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER".to_string());
            lines.push("AUTH=PLAIN LOGIN".to_string());
        }
        lines.push("HELP".to_string());
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            conn.reply(&format!("250{sep}{line}"));
        }
    }

    fn mail(&mut self, conn: &mut Conn, args: &str) -> Result<(), End> {
        if self.tx.is_some() {
            conn.reply("503 5.5.1 Error: nested MAIL command");
            return self.error();
        }
        if self.shared.settings.auth == SinkAuth::Users && self.auth_user.is_none() {
            conn.reply("530 5.7.0 Authentication required");
            return self.error();
        }
        let Some((address, params)) = path_argument(args, "FROM:") else {
            conn.reply("501 5.5.4 Syntax: MAIL FROM:<address>");
            return self.error();
        };
        for param in params.split_whitespace() {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            match key.to_ascii_uppercase().as_str() {
                "SIZE" => {
                    let declared: u64 = value.parse().unwrap_or(0);
                    if declared > self.shared.settings.max_message_size {
                        conn.reply("552 5.3.4 Error: message size exceeds fixed limit");
                        return Ok(());
                    }
                }
                "BODY" if matches!(value.to_ascii_uppercase().as_str(), "7BIT" | "8BITMIME") => {}
                "SMTPUTF8" | "AUTH" | "RET" | "ENVID" => {}
                _ => {
                    conn.reply(&format!("555 5.5.4 Unsupported option: {}", clean(param)));
                    return self.error();
                }
            }
        }
        self.tx = Some(Transaction {
            sender: address,
            recipients: Vec::new(),
        });
        conn.reply("250 2.1.0 Ok");
        Ok(())
    }

    fn rcpt(&mut self, conn: &mut Conn, args: &str) -> Result<(), End> {
        let max = self.shared.settings.max_recipients;
        let Some(tx) = self.tx.as_mut() else {
            conn.reply("503 5.5.1 Error: need MAIL command");
            return self.error();
        };
        let Some((address, _params)) = path_argument(args, "TO:") else {
            conn.reply("501 5.5.4 Syntax: RCPT TO:<address>");
            return self.error();
        };
        if address.is_empty() {
            conn.reply("501 5.1.3 Error: empty recipient address");
            return self.error();
        }
        if tx.recipients.len() >= max {
            conn.reply("452 4.5.3 Error: too many recipients");
            return Ok(());
        }
        tx.recipients.push(address);
        conn.reply("250 2.1.5 Ok");
        Ok(())
    }

    fn data(&mut self, conn: &mut Conn) -> Result<(), End> {
        let Some(tx) = self.tx.take() else {
            conn.reply("503 5.5.1 Error: need MAIL command");
            return self.error();
        };
        if tx.recipients.is_empty() {
            self.tx = Some(tx);
            conn.reply("503 5.5.1 Error: need RCPT command");
            return self.error();
        }
        conn.reply("354 End data with <CR><LF>.<CR><LF>");
        self.stage = Stage::Data;
        let settings = &self.shared.settings;
        let id = QueueId::generate();
        let now = chrono::Local::now();
        let envelope = Envelope {
            id: id.to_string(),
            sender: tx.sender.clone(),
            recipients: tx.recipients.clone(),
            received_at: now,
        };
        let mut failure: Option<String> = None;
        let mut incoming = match self.shared.store.begin(&envelope) {
            Ok(incoming) => Some(incoming),
            Err(e) => {
                failure = Some(format!("451 4.3.0 Error: cannot store the message: {e}"));
                None
            }
        };
        let mut size: u64 = 0;
        let mut subject: Option<String> = None;
        let mut in_header = true;
        if let Some(inc) = incoming.as_mut() {
            for line in self.trace_header(&id, &tx, &now) {
                size += line.len() as u64 + 2;
                if let Err(e) = inc.line(line.as_bytes()) {
                    failure = Some(format!("451 4.3.0 Error: cannot store the message: {e}"));
                }
            }
        }
        let max_line = usize::try_from(settings.max_line_length).unwrap_or(usize::MAX);
        loop {
            let line = match self.next_line(conn, max_line)? {
                Line::TooLong => {
                    incoming = None;
                    failure.get_or_insert_with(|| {
                        format!("554 5.6.0 Error: a line is longer than {max_line} bytes ([sink] max_line_length)")
                    });
                    continue;
                }
                _ => &conn.line,
            };
            if line.as_slice() == b"." {
                self.stage = Stage::Command;
                break;
            }
            let content = line.strip_prefix(b".").unwrap_or(line);
            size += content.len() as u64 + 2;
            if size > settings.max_message_size {
                incoming = None;
                failure.get_or_insert_with(|| {
                    "552 5.3.4 Error: message size exceeds fixed limit".to_string()
                });
                continue;
            }
            if in_header {
                track_subject(content, &mut in_header, &mut subject);
            }
            if let Some(inc) = incoming.as_mut() {
                if let Err(e) = inc.line(content) {
                    incoming = None;
                    failure.get_or_insert_with(|| {
                        format!("451 4.3.0 Error: cannot store the message: {e}")
                    });
                }
            }
        }
        if let Some(reply) = failure {
            drop(incoming);
            self.shared.events.refused(self.peer, &reply);
            conn.reply(&reply);
            return Ok(());
        }
        let Some(inc) = incoming else {
            conn.reply("451 4.3.0 Error: cannot store the message");
            return Ok(());
        };
        match inc.commit() {
            Ok(stored) => {
                let accepted = Accepted {
                    id: id.to_string(),
                    stored,
                    time: now.to_rfc3339(),
                    sender: tx.sender,
                    recipients: tx.recipients,
                    client: self.peer.to_string(),
                    helo: self.helo.clone(),
                    tls: self.tls.as_ref().map(|t| t.0.clone()),
                    cipher: self.tls.as_ref().map(|t| t.1.clone()),
                    auth_user: self.auth_user.clone(),
                    auth_mechanism: self.auth_mechanism.clone(),
                    auth_token_sha256: self.auth_token_sha256.clone(),
                    size,
                    subject: subject_text(subject),
                };
                self.shared.events.accepted(&accepted);
                conn.reply(&format!("250 2.0.0 Ok: queued as {id}"));
            }
            Err(e) => {
                let reply = format!("451 4.3.0 Error: cannot store the message: {e}");
                self.shared.events.refused(self.peer, &reply);
                conn.reply(&reply);
            }
        }
        Ok(())
    }

    /// `Return-Path:` and a `Received:` header recording the client, HELO,
    /// TLS, AUTH user and envelope (RFC 5321 section 4.4). Every client-
    /// supplied value is cleaned, so it can never start a new header line.
    fn trace_header(
        &self,
        id: &QueueId,
        tx: &Transaction,
        now: &chrono::DateTime<chrono::Local>,
    ) -> Vec<String> {
        let protocol = match (self.esmtp, self.tls.is_some(), self.auth_user.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        };
        let tls = match &self.tls {
            Some((version, cipher)) => format!("tls={version} cipher={cipher}"),
            None => "tls=none".to_string(),
        };
        let auth = self
            .auth_user
            .as_deref()
            .map(clean)
            .unwrap_or_else(|| "none".into());
        let recipients: Vec<String> = tx
            .recipients
            .iter()
            .map(|r| format!("<{}>", clean(r)))
            .collect();
        vec![
            format!("Return-Path: <{}>", clean(&tx.sender)),
            format!(
                "Received: from {} ([{}]:{})",
                self.helo.as_deref().unwrap_or("unknown"),
                self.peer.ip(),
                self.peer.port()
            ),
            format!(
                "\tby {} (relaymail sink) with {protocol} id {id}",
                self.shared.hostname
            ),
            format!(
                "\t({tls}; auth={auth}; envelope-from <{}>)",
                clean(&tx.sender)
            ),
            format!("\tfor {}; {}", recipients.join(", "), now.to_rfc2822()),
        ]
    }

    fn auth(&mut self, conn: &mut Conn, args: &str) -> Result<(), End> {
        let mode = self.shared.settings.auth;
        if mode == SinkAuth::None {
            conn.reply("503 5.5.1 Error: authentication not enabled");
            return self.error();
        }
        if self.auth_user.is_some() || self.tx.is_some() {
            conn.reply("503 5.5.1 Error: already authenticated or in a transaction");
            return self.error();
        }
        let mut words = args.split_whitespace();
        let mechanism = words.next().unwrap_or("").to_ascii_uppercase();
        let initial = words.next().map(str::to_string);
        let credentials = match mechanism.as_str() {
            "PLAIN" => {
                let Some(text) = self.response(conn, initial, "334 ")? else {
                    return Ok(());
                };
                let decoded = base64::decode(&text).unwrap_or_default();
                let mut parts = decoded.split(|b| *b == 0);
                match (parts.next(), parts.next(), parts.next(), parts.next()) {
                    (Some(_authzid), Some(user), Some(pass), None) => {
                        Some((user.to_vec(), pass.to_vec()))
                    }
                    _ => None,
                }
            }
            "LOGIN" => {
                let Some(user) = self.response(conn, initial, "334 VXNlcm5hbWU6")? else {
                    return Ok(());
                };
                let Some(pass) = self.response(conn, None, "334 UGFzc3dvcmQ6")? else {
                    return Ok(());
                };
                base64::decode(&user).zip(base64::decode(&pass))
            }
            // "user=U^Aauth=Bearer TOKEN^A^A" (Google's and Microsoft's
            // SASL XOAUTH2); in `users` mode the token is the password.
            "XOAUTH2" => {
                let Some(text) = self.response(conn, initial, "334 ")? else {
                    return Ok(());
                };
                let decoded = base64::decode(&text).unwrap_or_default();
                let mut user = None;
                let mut token = None;
                for part in decoded.split(|b| *b == 1) {
                    if let Some(u) = part.strip_prefix(b"user=") {
                        user = Some(u.to_vec());
                    } else if let Some(t) = part.strip_prefix(b"auth=Bearer ") {
                        token = Some(t.to_vec());
                    }
                }
                user.zip(token)
            }
            // RFC 7628: "n,a=USER,^Aauth=Bearer TOKEN^A^A" (host and port
            // pairs may come too); the user is optional there.
            "OAUTHBEARER" => {
                let Some(text) = self.response(conn, initial, "334 ")? else {
                    return Ok(());
                };
                let decoded = base64::decode(&text).unwrap_or_default();
                let mut parts = decoded.split(|b| *b == 1);
                let header = parts.next().unwrap_or_default();
                let user = header
                    .split(|b| *b == b',')
                    .find_map(|f| f.strip_prefix(b"a="))
                    .map(|u| {
                        String::from_utf8_lossy(u)
                            .replace("=2C", ",")
                            .replace("=3D", "=")
                            .into_bytes()
                    })
                    .unwrap_or_default();
                let token = parts.find_map(|p| p.strip_prefix(b"auth=Bearer ").map(<[u8]>::to_vec));
                (header.starts_with(b"n,") || header.starts_with(b"y,"))
                    .then_some(())
                    .and(token)
                    .map(|t| (user, t))
            }
            _ => {
                conn.reply(
                    "504 5.5.4 Error: unsupported authentication mechanism; use PLAIN, LOGIN, XOAUTH2 or OAUTHBEARER",
                );
                return self.error();
            }
        };
        let Some((user, pass)) = credentials else {
            conn.reply("501 5.5.2 Error: cannot decode the AUTH response");
            return self.error();
        };
        let user = String::from_utf8_lossy(&user).into_owned();
        let valid = match mode {
            SinkAuth::AcceptAny => true,
            SinkAuth::Users => self
                .shared
                .settings
                .users
                .get(&user)
                .is_some_and(|expected| constant_time_eq(expected.as_bytes(), &pass)),
            SinkAuth::None => false,
        };
        let bearer = matches!(mechanism.as_str(), "XOAUTH2" | "OAUTHBEARER");
        if valid {
            self.auth_user = Some(clean(&user));
            self.auth_mechanism = Some(mechanism.clone());
            self.auth_token_sha256 = bearer.then(|| {
                ring::digest::digest(&ring::digest::SHA256, &pass)
                    .as_ref()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            });
            conn.reply("235 2.7.0 Authentication successful");
        } else {
            if bearer {
                // As Gmail does (RFC 7628 section 3.2.2): the error
                // document first; the client's answer ends the exchange.
                conn.reply(&format!(
                    "334 {}",
                    base64::encode(br#"{"status":"401","schemes":"bearer"}"#)
                ));
                if self.read(conn, MAX_AUTH_LINE)?.is_none() {
                    conn.reply("500 5.5.6 Error: AUTH line too long");
                    return Ok(());
                }
            }
            self.shared.events.auth_failed(self.peer, &clean(&user));
            conn.reply("535 5.7.8 Error: authentication failed");
        }
        Ok(())
    }

    /// The client's answer to an AUTH challenge (or its initial response).
    /// None when it cancelled with "*".
    fn response(
        &mut self,
        conn: &mut Conn,
        initial: Option<String>,
        challenge: &str,
    ) -> Result<Option<String>, End> {
        let text = match initial {
            Some(text) => text,
            None => {
                conn.reply(challenge);
                match self.read(conn, MAX_AUTH_LINE)? {
                    Some(text) => text,
                    None => {
                        conn.reply("500 5.5.6 Error: AUTH line too long");
                        return Ok(None);
                    }
                }
            }
        };
        let text = text.trim().to_string();
        if text == "*" {
            conn.reply("501 5.7.0 Error: authentication cancelled");
            return Ok(None);
        }
        Ok(Some(if text == "=" { String::new() } else { text }))
    }

    /// Returns true when the client may now start the TLS handshake.
    fn starttls(&mut self, conn: &mut Conn) -> Result<bool, End> {
        let offered = self.listener_tls == SinkTls::Starttls && self.tls.is_none();
        if !offered || self.shared.tls.is_none() {
            conn.reply("502 5.5.1 Error: STARTTLS not available on this listener");
            self.error()?;
            return Ok(false);
        }
        conn.reply("220 2.0.0 Ready to start TLS");
        Ok(true)
    }

    /// RFC 3207 section 4.2: forget everything learnt before TLS.
    fn restart_with_tls(&mut self, tls: Option<(String, String)>) {
        self.tls = tls;
        self.stage = Stage::Command;
        self.helo = None;
        self.esmtp = false;
        self.auth_user = None;
        self.auth_mechanism = None;
        self.auth_token_sha256 = None;
        self.tx = None;
    }
}

/// Client-supplied text made safe for a header: printable, no comment
/// delimiters or backslashes, bounded.
pub fn clean(text: &str) -> String {
    text.chars()
        .take(200)
        .map(|c| {
            if c.is_control() || matches!(c, '(' | ')' | '\\') {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// Keeps the first Subject: (unfolded, bounded) while in the header section.
pub fn track_subject(line: &[u8], in_header: &mut bool, subject: &mut Option<String>) {
    const MAX: usize = 500;
    if line.is_empty() {
        *in_header = false;
        return;
    }
    let text = String::from_utf8_lossy(line);
    if matches!(line.first(), Some(b' ' | b'\t')) {
        if let Some(s) = subject
            .as_mut()
            .filter(|s| s.len() < MAX && !s.ends_with('\u{1}'))
        {
            s.push(' ');
            s.push_str(text.trim());
        }
        return;
    }
    // A new field ends any Subject: continuation.
    if let Some(s) = subject.as_mut() {
        if !s.ends_with('\u{1}') {
            s.push('\u{1}');
        }
    }
    if subject.is_none()
        && text.len() > 8
        && text
            .get(..8)
            .is_some_and(|h| h.eq_ignore_ascii_case("subject:"))
    {
        *subject = Some(text.get(8..).unwrap_or("").trim().to_string());
    }
}

/// Finished subject text (without the end marker used while tracking).
pub fn subject_text(subject: Option<String>) -> Option<String> {
    // Control characters (an escape sequence from a device) never reach
    // an admin's terminal through `sink list`.
    subject.map(|s| {
        crate::smtp_syntax::one_line(s.trim_end_matches('\u{1}'))
            .chars()
            .take(500)
            .collect()
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = |a: &str, k: &str| path_argument(a, k);
        assert_eq!(
            p("FROM:<a@b.c>", "FROM:"),
            Some(("a@b.c".into(), "".into()))
        );
        assert_eq!(
            p("from: <a@b.c> SIZE=10 BODY=8BITMIME", "FROM:"),
            Some(("a@b.c".into(), "SIZE=10 BODY=8BITMIME".into()))
        );
        assert_eq!(p("FROM:<>", "FROM:"), Some(("".into(), "".into())));
        assert_eq!(p("FROM:a@b.c", "FROM:"), Some(("a@b.c".into(), "".into())));
        assert_eq!(
            p("To:<@relay:u@x.org>", "TO:"),
            Some(("u@x.org".into(), "".into()))
        );
        assert_eq!(p("TO <a@b>", "TO:"), None);
        assert_eq!(p("FROM:<a b@c>", "FROM:"), None);
    }

    #[test]
    fn cleaning_blocks_header_injection() {
        assert_eq!(clean("evil\r\nBcc: x"), "evil??Bcc: x");
        assert_eq!(clean("a (comment) \\"), "a ?comment? ?");
    }

    #[test]
    fn subject_tracking() {
        let mut in_header = true;
        let mut subject = None;
        for line in [
            &b"From: a"[..],
            b"Subject: disk",
            b"\tfailure on sda",
            b"To: b",
            b"",
            b"Subject: body",
        ] {
            track_subject(line, &mut in_header, &mut subject);
            if !in_header {
                break;
            }
        }
        assert_eq!(
            subject_text(subject).as_deref(),
            Some("disk failure on sda")
        );
    }
}
