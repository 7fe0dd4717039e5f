//! Delivery to the configured smarthost over SMTP (lettre's
//! `SmtpConnection`, driven command by command so that every recipient
//! gets its own result). Only the configured smarthost is ever contacted:
//! no MX lookups, no probes.
//!
//! This module never touches spool files: it gets an envelope and a
//! reader for the message and returns an outcome per recipient.
//! Required TLS that is missing or fails verification is a deferral,
//! never a fallback to cleartext.

use std::io::{self, Read};
use std::net::ToSocketAddrs;
use std::time::Duration;

use lettre::address::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    Certificate, CertificateStore, SmtpConnection, TlsParameters, TlsVersion,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};

use crate::config::{AuthMethod, MinTls, Smarthost, TlsMode};

/// What happened to one recipient in one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Deferred,
    Bounced,
}

/// One recipient's result, with the reply to quote in logs and bounces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientResult {
    pub outcome: Outcome,
    pub reply: String,
}

/// A failure of the whole connection (connect, TLS, AUTH, network): every
/// recipient of the message gets `outcome`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionFailure {
    pub outcome: Outcome,
    /// `host[ip]:port` when the address was known.
    pub relay: String,
    /// Whether the connection was encrypted when it failed.
    pub tls: &'static str,
    /// Where it failed: connect, tls, auth, mail, data.
    pub stage: &'static str,
    pub reply: String,
}

/// A password, kept out of `Debug` and `Display`.
pub struct Secret(String);

impl Secret {
    pub fn new(text: String) -> Secret {
        Secret(text)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// An open, greeted (and, as configured, encrypted and authenticated)
/// session with the smarthost, reused for many messages.
pub struct Session {
    conn: SmtpConnection,
    /// `host[ip]:port`, for log lines.
    pub relay: String,
    /// `TLS` or `none`, for log lines.
    pub tls: &'static str,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

impl Session {
    pub fn open(
        host: &Smarthost,
        hello: &str,
        secret: Option<&Secret>,
    ) -> Result<Session, ConnectionFailure> {
        let unresolved = format!("{}:{}", host.host, host.port);
        let early = |stage, reply: String| ConnectionFailure {
            outcome: Outcome::Deferred,
            relay: unresolved.clone(),
            tls: "none",
            stage,
            reply,
        };
        let addr = (host.host.as_str(), host.port)
            .to_socket_addrs()
            .map_err(|e| early("connect", format!("cannot resolve {}: {e}", host.host)))?
            .next()
            .ok_or_else(|| early("connect", format!("{} has no address", host.host)))?;
        let relay = format!("{}[{}]:{}", host.host, addr.ip(), host.port);
        let defer = |stage, reply: String| ConnectionFailure {
            outcome: Outcome::Deferred,
            relay: relay.clone(),
            tls: "none",
            stage,
            reply,
        };
        let hello = ClientId::Domain(hello.to_string());
        let params = tls_parameters(host).map_err(|e| defer("tls", e))?;
        let wrapped = (host.tls == TlsMode::Implicit).then_some(&params);
        let mut conn = SmtpConnection::connect(
            (host.host.as_str(), host.port),
            Some(CONNECT_TIMEOUT),
            &hello,
            wrapped,
            None,
        )
        .map_err(|e| {
            // With implicit TLS the handshake is part of connecting.
            let text = reply_text(&e);
            let tls = e.is_tls() || (host.tls == TlsMode::Implicit && text.contains("certificate"));
            defer(if tls { "tls" } else { "connect" }, text)
        })?;
        match host.tls {
            TlsMode::Starttls if !conn.can_starttls() => {
                conn.abort();
                return Err(defer(
                    "tls",
                    "TLS is required (tls = \"starttls\") but the relay does not offer STARTTLS; nothing was sent in cleartext".into(),
                ));
            }
            TlsMode::Starttls => conn
                .starttls(&params, &hello)
                .map_err(|e| defer("tls", reply_text(&e)))?,
            // Dangerous by name: cleartext when STARTTLS is not offered.
            TlsMode::Opportunistic if conn.can_starttls() => conn
                .starttls(&params, &hello)
                .map_err(|e| defer("tls", reply_text(&e)))?,
            _ => {}
        }
        let encrypted = conn.is_encrypted();
        // Pinning: checked right after the handshake, before AUTH or mail.
        if let Some(pin) = &host.fingerprint {
            let seen = conn
                .peer_certificate()
                .ok()
                .map(|der| ring::digest::digest(&ring::digest::SHA256, &der));
            if seen.as_ref().map(|d| d.as_ref()) != Some(pin.as_slice()) {
                conn.abort();
                let shown = seen
                    .map(|d| hex_colons(d.as_ref()))
                    .unwrap_or_else(|| "none (no TLS)".into());
                return Err(defer(
                    "tls",
                    format!("certificate fingerprint mismatch: the relay presented sha256:{shown}, the configuration pins sha256:{}; nothing was sent", hex_colons(pin)),
                ));
            }
        }
        if let (Some(user), Some(secret)) = (&host.username, secret) {
            if !encrypted {
                conn.abort();
                return Err(defer(
                    "auth",
                    "refusing to send the password over a cleartext connection; use tls = \"starttls\" or \"implicit\"".into(),
                ));
            }
            let mechanisms: &[Mechanism] = match host.auth {
                AuthMethod::Plain => &[Mechanism::Plain],
                AuthMethod::Login => &[Mechanism::Login],
                AuthMethod::Xoauth2 => &[Mechanism::Xoauth2],
                AuthMethod::Auto | AuthMethod::None => &[Mechanism::Plain, Mechanism::Login],
            };
            if host.auth != AuthMethod::None {
                let credentials = Credentials::new(user.clone(), secret.0.clone());
                // AUTH happens only over TLS (checked above).
                conn.auth(mechanisms, &credentials)
                    .map_err(|e| ConnectionFailure {
                        tls: "TLS",
                        ..defer("auth", format!("authentication failed: {}", reply_text(&e)))
                    })?;
            }
        }
        Ok(Session {
            conn,
            relay,
            tls: if encrypted { "TLS" } else { "none" },
        })
    }

    pub fn is_usable(&self) -> bool {
        !self.conn.has_broken()
    }

    /// Sends one message to `recipients`: MAIL, one RCPT each, DATA with
    /// the body streamed from `body`. Returns one result per recipient, or
    /// a connection failure (then the session must not be reused).
    pub fn send(
        &mut self,
        sender: &str,
        recipients: &[String],
        size: u64,
        eight_bit: bool,
        body: &mut dyn Read,
    ) -> Result<Vec<RecipientResult>, ConnectionFailure> {
        let info = self.conn.server_info().clone();
        let every = |outcome, reply: String| {
            recipients
                .iter()
                .map(|_| RecipientResult {
                    outcome,
                    reply: reply.clone(),
                })
                .collect::<Vec<_>>()
        };
        // SIZE=n lets a relay with a limit refuse at MAIL (552 5.3.4), a
        // permanent answer that bounces at once instead of retrying for days.
        let mut params = vec![MailParameter::Size(
            usize::try_from(size).unwrap_or(usize::MAX),
        )];
        if eight_bit && info.supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let needs_utf8 = !sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
        if needs_utf8 {
            if !info.supports_feature(Extension::SmtpUtfEight) {
                return Ok(every(
                    Outcome::Bounced,
                    "555 5.6.7 the relay does not support SMTPUTF8, needed for a non-ASCII address"
                        .into(),
                ));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        let from = if sender.is_empty() {
            None
        } else {
            Some(sender.parse::<Address>().map_err(|e| ConnectionFailure {
                outcome: Outcome::Bounced,
                relay: self.relay.clone(),
                tls: self.tls,
                stage: "mail",
                reply: format!("invalid sender <{sender}>: {e}"),
            })?)
        };
        if let Err(e) = self.conn.command(Mail::new(from, params)) {
            return match classify(&e) {
                Some(outcome) => {
                    let _ = self.conn.command(Rset);
                    Ok(every(outcome, reply_text(&e)))
                }
                None => Err(self.broken("mail", &e)),
            };
        }
        let mut results = Vec::with_capacity(recipients.len());
        for rcpt in recipients {
            let address = match rcpt.parse::<Address>() {
                Ok(a) => a,
                Err(e) => {
                    results.push(RecipientResult {
                        outcome: Outcome::Bounced,
                        reply: format!("invalid recipient <{rcpt}>: {e}"),
                    });
                    continue;
                }
            };
            match self.conn.command(Rcpt::new(address, vec![])) {
                Ok(_) => results.push(RecipientResult {
                    outcome: Outcome::Sent,
                    reply: String::new(),
                }),
                Err(e) => match classify(&e) {
                    Some(outcome) => results.push(RecipientResult {
                        outcome,
                        reply: reply_text(&e),
                    }),
                    None => return Err(self.broken("rcpt", &e)),
                },
            }
        }
        if !results.iter().any(|r| r.outcome == Outcome::Sent) {
            let _ = self.conn.command(Rset);
            return Ok(results);
        }
        if let Err(e) = self.conn.command(Data) {
            let outcome = classify(&e).map(|_| Outcome::Deferred);
            for r in results.iter_mut().filter(|r| r.outcome == Outcome::Sent) {
                r.outcome = Outcome::Deferred;
                r.reply = reply_text(&e);
            }
            return match outcome {
                Some(_) => {
                    let _ = self.conn.command(Rset);
                    Ok(results)
                }
                None => Err(self.broken("data", &e)),
            };
        }
        let mut chunks = Chunks::new(body);
        let sent = self.conn.message_iter(&mut chunks);
        if let Some(e) = chunks.error.take() {
            // The spool file failed mid-DATA; the relay has a truncated
            // copy. Drop the connection so it never counts as delivered.
            self.conn.abort();
            return Err(ConnectionFailure {
                outcome: Outcome::Deferred,
                relay: self.relay.clone(),
                tls: self.tls,
                stage: "data",
                reply: format!("reading the queued message failed: {e}"),
            });
        }
        match sent {
            Ok(response) => {
                let reply = format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                );
                for r in results.iter_mut().filter(|r| r.outcome == Outcome::Sent) {
                    r.reply = reply.clone();
                }
                Ok(results)
            }
            Err(e) => {
                // DATA-phase refusals and drops are deferrals (at-least-once).
                for r in results.iter_mut().filter(|r| r.outcome == Outcome::Sent) {
                    r.outcome = Outcome::Deferred;
                    r.reply = reply_text(&e);
                }
                if classify(&e).is_none() {
                    self.conn.abort();
                }
                Ok(results)
            }
        }
    }

    /// RSET between messages on a reused connection.
    pub fn reset(&mut self) -> bool {
        self.conn.command(Rset).is_ok()
    }

    pub fn quit(mut self) {
        let _ = self.conn.quit();
    }

    fn broken(
        &mut self,
        stage: &'static str,
        e: &lettre::transport::smtp::Error,
    ) -> ConnectionFailure {
        self.conn.abort();
        ConnectionFailure {
            outcome: Outcome::Deferred,
            relay: self.relay.clone(),
            tls: self.tls,
            stage,
            reply: reply_text(e),
        }
    }
}

/// 4xx -> deferred, 5xx -> bounced; None for network/TLS/protocol errors.
fn classify(e: &lettre::transport::smtp::Error) -> Option<Outcome> {
    if e.is_permanent() {
        Some(Outcome::Bounced)
    } else if e.is_transient() {
        Some(Outcome::Deferred)
    } else {
        None
    }
}

/// The server's reply as "550 5.1.1 text" when there is one.
pub fn reply_text(e: &lettre::transport::smtp::Error) -> String {
    let text = e.to_string();
    match (e.status(), text.split_once("): ")) {
        (Some(code), Some((_, message))) => format!("{code} {message}"),
        _ => text,
    }
}

fn tls_parameters(host: &Smarthost) -> Result<TlsParameters, String> {
    let mut builder =
        TlsParameters::builder(host.host.clone()).set_min_tls_version(match host.tls_min_version {
            MinTls::V1_2 => TlsVersion::Tlsv12,
            MinTls::V1_3 => TlsVersion::Tlsv13,
        });
    if host.fingerprint.is_some() {
        // Dangerous by name, and safe only because the pinned fingerprint
        // is checked right after the handshake (closed networks with
        // self-signed relays).
        builder = builder
            .dangerous_accept_invalid_certs(true)
            .dangerous_accept_invalid_hostnames(true);
    } else if let Some(ca) = &host.ca_file {
        let pem =
            std::fs::read(ca).map_err(|e| format!("cannot read ca_file {}: {e}", ca.display()))?;
        let cert =
            Certificate::from_pem(&pem).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        builder = builder
            .certificate_store(CertificateStore::None)
            .add_root_certificate(cert);
    }
    builder
        .build_rustls()
        .map_err(|e| format!("TLS setup: {e}"))
}

fn hex_colons(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The message in 64 KiB pieces for lettre's `message_iter`, which takes
/// an iterator and so cannot see read errors: they are kept here. The
/// final CRLF is held back because lettre ends DATA with "\r\n.\r\n".
struct Chunks<'a> {
    body: &'a mut dyn Read,
    buf: Vec<u8>,
    carry: Vec<u8>,
    done: bool,
    error: Option<io::Error>,
}

impl<'a> Chunks<'a> {
    fn new(body: &'a mut dyn Read) -> Self {
        Chunks {
            body,
            buf: vec![0; 64 << 10],
            carry: Vec::new(),
            done: false,
            error: None,
        }
    }
}

impl Iterator for &mut Chunks<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        loop {
            match self.body.read(&mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    let mut last = std::mem::take(&mut self.carry);
                    if last.ends_with(b"\r\n") {
                        last.truncate(last.len() - 2);
                    }
                    return (!last.is_empty()).then_some(last);
                }
                Ok(n) => {
                    let mut out = std::mem::take(&mut self.carry);
                    out.extend_from_slice(self.buf.get(..n).unwrap_or(&[]));
                    // Keep the last two bytes until we know they end the message.
                    let keep = out.len().saturating_sub(2);
                    self.carry = out.split_off(keep);
                    if out.is_empty() {
                        continue;
                    }
                    return Some(out);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.error = Some(e);
                    self.done = true;
                    return None;
                }
            }
        }
    }
}
