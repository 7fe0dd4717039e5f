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
use std::net::{SocketAddr, ToSocketAddrs};

use lettre::address::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    Certificate, CertificateStore, Identity, SmtpConnection, TlsParameters, TlsVersion,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};

use rustls::pki_types::{pem::PemObject, CertificateDer};

use crate::config::{AuthMethod, MinTls, Mode, Smarthost, TlsMode};

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
    /// The TLS in use when it failed (`none` before the handshake).
    pub tls: String,
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

mod tls_info;

/// The smarthost and its fallbacks, each with its TLS settings built
/// once per run and shared by every session a flush opens.
pub struct Relay {
    host: Smarthost,
    targets: Vec<Target>,
}

struct Target {
    name: String,
    port: u16,
    /// A setup error (unreadable CA file, client key) defers like a
    /// failed handshake: the message waits until the admin fixes it.
    tls: Result<TlsParameters, String>,
}

/// An open, greeted (and, as configured, encrypted and authenticated)
/// session with the smarthost, reused for many messages.
pub struct Session {
    conn: SmtpConnection,
    /// `host[ip]:port`, for log lines.
    pub relay: String,
    /// `TLSv1.3/TLS_AES_256_GCM_SHA384`, `TLS` when unknown, or `none`.
    pub tls: String,
}

impl Relay {
    pub fn new(host: &Smarthost, mode: Mode) -> Relay {
        tls_info::install();
        let targets = std::iter::once((host.host.clone(), host.port))
            .chain(host.fallback_hosts.iter().cloned())
            .map(|(name, port)| Target {
                tls: tls_parameters(host, &name, mode),
                name,
                port,
            })
            .collect();
        Relay {
            host: host.clone(),
            targets,
        }
    }

    /// A session with the first relay that works, in configured order.
    /// When all fail, the failure names each one's reason.
    pub fn open(&self, hello: &str, secret: Option<&Secret>) -> Result<Session, ConnectionFailure> {
        let mut failures: Vec<ConnectionFailure> = Vec::new();
        for target in &self.targets {
            match self.open_target(target, hello, secret) {
                Ok(session) => return Ok(session),
                Err(failure) => failures.push(failure),
            }
        }
        let mut last = failures.pop().unwrap_or_else(|| ConnectionFailure {
            outcome: Outcome::Deferred,
            relay: self.host.host.clone(),
            tls: "none".into(),
            stage: "connect",
            reply: "no relay configured".into(),
        });
        if !failures.is_empty() {
            let earlier: Vec<String> = failures
                .iter()
                .map(|f| format!("{}: {} ({} failed)", f.relay, f.reply, f.stage))
                .collect();
            last.reply = format!(
                "{}; then {}: {}",
                earlier.join("; "),
                last.relay,
                last.reply
            );
        }
        Err(last)
    }

    fn open_target(
        &self,
        target: &Target,
        hello: &str,
        secret: Option<&Secret>,
    ) -> Result<Session, ConnectionFailure> {
        let host = &self.host;
        let unresolved = format!("{}:{}", target.name, target.port);
        let early = |stage, reply: String| ConnectionFailure {
            outcome: Outcome::Deferred,
            relay: unresolved.clone(),
            tls: "none".into(),
            stage,
            reply,
        };
        // A TLS setup error matters only when TLS is used.
        let params = match (&target.tls, host.tls) {
            (_, TlsMode::None) => None,
            (Ok(params), _) => Some(params),
            (Err(e), _) => return Err(early("tls", e.clone())),
        };
        let addrs: Vec<SocketAddr> = (target.name.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| early("connect", format!("cannot resolve {}: {e}", target.name)))?
            .collect();
        if addrs.is_empty() {
            return Err(early("connect", format!("{} has no address", target.name)));
        }
        let hello = ClientId::Domain(hello.to_string());
        let wrapped = params.filter(|_| host.tls == TlsMode::Implicit);
        // Every address of the name in turn (A and AAAA), for connect
        // failures only: a relay that answered and then failed is final.
        let mut refused = Vec::new();
        let (mut conn, relay) = 'connected: {
            for addr in &addrs {
                let relay = format!("{}[{}]:{}", target.name, addr.ip(), target.port);
                tls_info::clear();
                match SmtpConnection::connect(
                    *addr,
                    Some(host.connect_timeout),
                    &hello,
                    wrapped,
                    None,
                ) {
                    Ok(conn) => break 'connected (conn, relay),
                    Err(e) => {
                        // With implicit TLS the handshake is part of connecting.
                        let text = reply_text(&e);
                        let tls = e.is_tls()
                            || (host.tls == TlsMode::Implicit && text.contains("certificate"));
                        if tls || e.is_response() || e.is_permanent() || e.is_transient() {
                            return Err(ConnectionFailure {
                                outcome: Outcome::Deferred,
                                relay,
                                tls: "none".into(),
                                stage: if tls { "tls" } else { "connect" },
                                reply: text,
                            });
                        }
                        refused.push(format!("{}: {text}", addr.ip()));
                    }
                }
            }
            return Err(ConnectionFailure {
                outcome: Outcome::Deferred,
                relay: format!("{}:{}", target.name, target.port),
                tls: "none".into(),
                stage: "connect",
                reply: refused.join("; "),
            });
        };
        let defer = |stage, tls: &str, reply: String| ConnectionFailure {
            outcome: Outcome::Deferred,
            relay: relay.clone(),
            tls: tls.to_string(),
            stage,
            reply,
        };
        conn.set_timeout(Some(host.command_timeout))
            .map_err(|e| defer("connect", "none", e.to_string()))?;
        match host.tls {
            TlsMode::Starttls if !conn.can_starttls() => {
                conn.abort();
                return Err(defer(
                    "tls",
                    "none",
                    "TLS is required (tls = \"starttls\") but the relay does not offer STARTTLS; nothing was sent in cleartext".into(),
                ));
            }
            TlsMode::Starttls => conn
                .starttls(
                    params.ok_or_else(|| defer("tls", "none", "no TLS setup".into()))?,
                    &hello,
                )
                .map_err(|e| defer("tls", "none", reply_text(&e)))?,
            // Dangerous by name: cleartext when STARTTLS is not offered.
            TlsMode::Opportunistic if conn.can_starttls() => conn
                .starttls(
                    params.ok_or_else(|| defer("tls", "none", "no TLS setup".into()))?,
                    &hello,
                )
                .map_err(|e| defer("tls", "none", reply_text(&e)))?,
            _ => {}
        }
        let tls = if conn.is_encrypted() {
            tls_info::take().unwrap_or_else(|| "TLS".into())
        } else {
            "none".into()
        };
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
                    &tls,
                    format!("certificate fingerprint mismatch: the relay presented sha256:{shown}, the configuration pins sha256:{}; nothing was sent", hex_colons(pin)),
                ));
            }
        }
        if let (Some(user), Some(secret), true) =
            (&host.username, secret, host.auth != AuthMethod::None)
        {
            if !conn.is_encrypted() && !host.allow_cleartext_auth {
                conn.abort();
                return Err(defer(
                    "auth",
                    &tls,
                    "refusing to send the password over a cleartext connection; use tls = \"starttls\" or \"implicit\" (or, on a closed network only, allow_cleartext_auth = true)".into(),
                ));
            }
            let mechanisms: &[Mechanism] = match host.auth {
                AuthMethod::Plain => &[Mechanism::Plain],
                AuthMethod::Login => &[Mechanism::Login],
                AuthMethod::Xoauth2 => &[Mechanism::Xoauth2],
                AuthMethod::Auto | AuthMethod::None => &[Mechanism::Plain, Mechanism::Login],
            };
            let credentials = Credentials::new(user.clone(), secret.0.clone());
            conn.auth(mechanisms, &credentials).map_err(|e| {
                let offered = conn.server_info().supports_auth_mechanism(
                    mechanisms.first().copied().unwrap_or(Mechanism::Plain),
                );
                let reply = reply_text(&e);
                let reply = if e.is_client() && !offered {
                    let want = match host.auth {
                        AuthMethod::Plain => "PLAIN",
                        AuthMethod::Login => "LOGIN",
                        AuthMethod::Xoauth2 => "XOAUTH2",
                        AuthMethod::Auto | AuthMethod::None => "PLAIN or LOGIN",
                    };
                    format!(
                        "the relay offers no {want} authentication: {}",
                        advertised_auth(&conn)
                    )
                } else {
                    reply
                };
                defer("auth", &tls, format!("authentication failed: {reply}"))
            })?;
        }
        Ok(Session { conn, relay, tls })
    }
}

/// "it offers AUTH LOGIN CRAM-MD5" or "it offers no AUTH" for error text.
fn advertised_auth(conn: &SmtpConnection) -> String {
    let offered: Vec<&str> = [
        (Mechanism::Plain, "PLAIN"),
        (Mechanism::Login, "LOGIN"),
        (Mechanism::Xoauth2, "XOAUTH2"),
    ]
    .into_iter()
    .filter(|(m, _)| conn.server_info().supports_auth_mechanism(*m))
    .map(|(_, name)| name)
    .collect();
    if offered.is_empty() {
        "it offers none that relaymail supports (or no AUTH at all before TLS)".into()
    } else {
        format!("it offers {}", offered.join(" "))
    }
}

impl Session {
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
                tls: self.tls.clone(),
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
                tls: self.tls.clone(),
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
            tls: self.tls.clone(),
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

fn tls_parameters(host: &Smarthost, name: &str, mode: Mode) -> Result<TlsParameters, String> {
    let verify_name = host
        .tls_server_name
        .clone()
        .unwrap_or_else(|| name.to_string());
    let mut builder =
        TlsParameters::builder(verify_name).set_min_tls_version(match host.tls_min_version {
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
    if let (Some(cert), Some(key)) = (&host.client_cert, &host.client_key) {
        let read = |path: &std::path::Path, what: &str| {
            std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
        };
        crate::creds::check_private(key, "client_key", mode).map_err(|e| e.message)?;
        // lettre's rustls `Identity::from_pem` takes the certificate as
        // DER despite its name (the key as PEM), so decode the first
        // certificate here.
        let cert_der = CertificateDer::pem_slice_iter(&read(cert, "client_cert")?)
            .next()
            .ok_or_else(|| format!("client_cert {}: no PEM certificate in it", cert.display()))?
            .map_err(|e| format!("client_cert {}: {e}", cert.display()))?;
        let identity =
            Identity::from_pem(cert_der.as_ref(), &read(key, "client_key")?).map_err(|e| {
                format!(
                "client_cert {} / client_key {}: {e} (both must be PEM; the key PKCS#8, RSA or EC)",
                cert.display(),
                key.display()
            )
            })?;
        builder = builder.identify_with(identity);
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
