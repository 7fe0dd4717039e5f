//! Delivery to the configured smarthost (and its fallbacks) over SMTP,
//! command by command so that every recipient gets its own result. Only
//! the configured relays are ever contacted: no MX lookups, no probes.
//!
//! This module never touches spool files: it gets an envelope and a
//! reader for the message and returns an outcome per recipient.
//! Required TLS that is missing or fails verification is a deferral,
//! never a fallback to cleartext.

use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::config::{AuthMethod, Mode, Smarthost, TlsMode};
use crate::creds::Secret;
use crate::oauth2::{self, Token, Tokens};
use crate::tls_failure::{self, CertInfo, Explanation};

pub mod probe;
pub mod smtp;
mod tls;

use smtp::{BodyError, Client, Reply, Wrap};

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

/// The smarthost and its fallbacks, each with its TLS settings built
/// once per run and shared by every session a flush opens.
pub struct Relay {
    host: Smarthost,
    mode: Mode,
    targets: Vec<Target>,
    /// Where a TLS failure's fix suggests keeping the relay's certificate.
    suggested_ca: PathBuf,
    /// With `[smarthost.oauth2]`: where access tokens come from.
    tokens: Option<Tokens>,
}

struct Target {
    name: String,
    port: u16,
    /// Built on first use (reading the system trust store costs a few
    /// milliseconds a run that finds nothing to send should not pay). A
    /// setup error (unreadable CA file, client key) defers like a failed
    /// handshake: the message waits until the admin fixes it.
    tls: OnceLock<Result<tls::Settings, String>>,
}

/// An open, greeted (and, as configured, encrypted and authenticated)
/// session with the smarthost, reused for many messages.
pub struct Session {
    client: Client,
    /// `host[ip]:port`, for log lines.
    pub relay: String,
    /// `TLSv1.3/TLS_AES_256_GCM_SHA384`, or `none`.
    pub tls: String,
}

impl Relay {
    pub fn new(host: &Smarthost, mode: Mode) -> Relay {
        let targets = probe::endpoints(host)
            .into_iter()
            .map(|(name, port)| Target {
                tls: OnceLock::new(),
                name,
                port,
            })
            .collect();
        Relay {
            host: host.clone(),
            mode,
            targets,
            suggested_ca: tls::suggested_ca_file(mode),
            tokens: Tokens::for_smarthost(host, mode),
        }
    }

    /// What the OAuth2 client did since the last call (token obtained,
    /// refresh token rotated), for the log.
    pub fn oauth2_notes(&self) -> Vec<String> {
        self.tokens
            .as_ref()
            .map(Tokens::take_notes)
            .unwrap_or_default()
    }

    /// A session with the first relay that works, in configured order.
    /// When all fail, the failure names each one's reason.
    pub fn open(&self, hello: &str, secret: Option<&Secret>) -> Result<Session, ConnectionFailure> {
        // The token first: when the token endpoint fails, no relay is
        // bothered, and the reason is the endpoint's (never a bounce).
        let mut token = match &self.tokens {
            Some(tokens) => match tokens.access_token() {
                Ok(token) => Some(token),
                Err(e) => {
                    return Err(ConnectionFailure {
                        outcome: Outcome::Deferred,
                        relay: format!("{}:{}", self.host.host, self.host.port),
                        tls: "none".into(),
                        stage: "oauth2",
                        reply: format!("no OAuth2 access token: {}", e.message),
                    })
                }
            },
            None => None,
        };
        let mut failures: Vec<ConnectionFailure> = Vec::new();
        for target in &self.targets {
            match self.open_target(target, hello, secret, &mut token) {
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
        token: &mut Option<Token>,
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
        let settings = match host.tls {
            TlsMode::None => None,
            _ => match target
                .tls
                .get_or_init(|| tls::settings(host, &target.name, self.mode))
            {
                Ok(settings) => Some(settings),
                Err(e) => return Err(early("tls", e.clone())),
            },
        };
        let wrap = || {
            settings.map(|s| Wrap {
                config: &s.config,
                server_name: &s.server_name,
            })
        };
        let addrs = probe::resolve(&target.name, target.port).map_err(|e| early("connect", e))?;
        // Every address of the name in turn (A and AAAA), for connect
        // failures only: a relay that answered and then failed is final.
        let mut refused = Vec::new();
        let (mut client, relay) = 'connected: {
            for addr in &addrs {
                let relay = format!("{}[{}]:{}", target.name, addr.ip(), target.port);
                let implicit = wrap().filter(|_| host.tls == TlsMode::Implicit);
                let words = words(host, &target.name, target.port, &self.suggested_ca);
                let failed = |stage, reply| ConnectionFailure {
                    outcome: Outcome::Deferred,
                    relay: relay.clone(),
                    tls: "none".into(),
                    stage,
                    reply,
                };
                match Client::connect(addr, host.connect_timeout, implicit, hello) {
                    Ok(client) => break 'connected (client, relay),
                    Err(smtp::Error::Io(e)) if is_unreachable(&e) => {
                        refused.push(format!("{}: {}", addr.ip(), smtp::Error::Io(e)));
                    }
                    Err(smtp::Error::Silent(mut silence)) => {
                        if let Some(explained) = silent_port(host, &words, &mut silence) {
                            return Err(failed("tls", tls_reason(&explained)));
                        }
                        let e = smtp::Error::Silent(silence);
                        match &e {
                            // A timeout: the next address may answer.
                            smtp::Error::Silent(s) if s.tcp.is_some() => {
                                refused.push(format!("{}: {e}", addr.ip()));
                            }
                            _ => return Err(failed("connect", closed_before_greeting(&words))),
                        }
                    }
                    Err(smtp::Error::Tls(failure)) => {
                        let explained = tls_failure::relay_failure(&failure, &words);
                        return Err(failed("tls", tls_reason(&explained)));
                    }
                    Err(e) => return Err(failed("connect", e.to_string())),
                }
            }
            return Err(early("connect", refused.join("; ")));
        };
        let defer = |stage, tls: &str, reply: String| ConnectionFailure {
            outcome: Outcome::Deferred,
            relay: relay.clone(),
            tls: tls.to_string(),
            stage,
            reply,
        };
        client
            .set_timeout(host.command_timeout)
            .map_err(|e| defer("connect", "none", e.to_string()))?;
        let starttls = match host.tls {
            TlsMode::Starttls if !client.caps.starttls => {
                client.abort();
                return Err(defer(
                    "tls",
                    "none",
                    "TLS is required (tls = \"starttls\") but the relay does not offer STARTTLS; nothing was sent in cleartext".into(),
                ));
            }
            TlsMode::Starttls => true,
            // Dangerous by name: cleartext when STARTTLS is not offered.
            TlsMode::Opportunistic => client.caps.starttls,
            TlsMode::Implicit | TlsMode::None => false,
        };
        if starttls {
            let wrap = wrap().ok_or_else(|| defer("tls", "none", "no TLS settings".into()))?;
            client.starttls(wrap, hello).map_err(|e| match e {
                smtp::Error::Tls(failure) => {
                    let words = words(host, &target.name, target.port, &self.suggested_ca);
                    let explained = tls_failure::relay_failure(&failure, &words);
                    defer("tls", "none", tls_reason(&explained))
                }
                other => defer("tls", "none", other.to_string()),
            })?;
        }
        let tls = client.tls_description().unwrap_or_else(|| "none".into());
        // Pinning: checked right after the handshake, before AUTH or mail.
        if let Some(pin) = &host.fingerprint {
            let seen = leaf_sha256(&client);
            if seen.as_ref().map(|d| d.as_ref()) != Some(pin.as_slice()) {
                client.abort();
                let presented = client
                    .peer_certificates()
                    .first()
                    .map(|der| CertInfo::parse(der));
                let explained = tls_failure::pin_mismatch(
                    presented.as_ref(),
                    &tls_failure::fingerprint_hex(pin),
                );
                return Err(defer(
                    "tls",
                    &tls,
                    format!("certificate fingerprint mismatch: {}", explained.sentence()),
                ));
            }
        }
        // A copy of the token (dropped, and so wiped, with this call): a
        // refused one is replaced in `token` below.
        let copy = token
            .as_ref()
            .map(|t| Secret::new(t.secret.expose().to_string()));
        let password = copy.as_ref().or(secret).map(Secret::expose);
        if let (Some(user), Some(password), true) =
            (&host.username, password, host.auth != AuthMethod::None)
        {
            if !client.is_encrypted() && !host.allow_cleartext_auth {
                client.abort();
                return Err(defer(
                    "auth",
                    &tls,
                    "refusing to send the password over a cleartext connection; use tls = \"starttls\" or \"implicit\" (or, on a closed network only, allow_cleartext_auth = true)".into(),
                ));
            }
            let mechanism = match choose_auth(host, &client.caps) {
                Ok(m) => m,
                Err(reason) => {
                    client.abort();
                    return Err(defer(
                        "auth",
                        &tls,
                        format!("authentication failed: {reason}"),
                    ));
                }
            };
            if let Some(e) = client.auth(mechanism, user, password).err() {
                self.after_refusal(&mut client, mechanism, user, token, e)
                    .map_err(|(stage, reply)| defer(stage, &tls, reply))?;
            }
        }
        Ok(Session { client, relay, tls })
    }
}

/// The words' view of one relay of `host`.
fn words<'a>(
    host: &'a Smarthost,
    name: &'a str,
    port: u16,
    suggested_ca: &'a std::path::Path,
) -> tls_failure::Relay<'a> {
    tls_failure::Relay {
        host: name,
        port,
        mode: host.tls,
        min_version: host.tls_min_version,
        ca_file: host.ca_file.as_deref(),
        server_name: host.tls_server_name.as_deref(),
        client_cert: host.client_cert.is_some(),
        suggested_ca_file: suggested_ca,
    }
}

/// A TLS failure as a deferral reason: "TLS: <problem>; fix: <fix>".
fn tls_reason(explained: &Explanation) -> String {
    format!("TLS: {}", explained.sentence())
}

/// No greeting came in time: when the port answers a TLS hello instead,
/// it is an implicit-TLS port and `tls` is set wrong (issue 16). The
/// hello goes over the same connection, which has failed anyway.
fn silent_port(
    host: &Smarthost,
    words: &tls_failure::Relay<'_>,
    silence: &mut smtp::Silence,
) -> Option<Explanation> {
    if host.tls == TlsMode::Implicit {
        return None;
    }
    let tcp = silence.tcp.as_mut()?;
    // Any certificate will do: only the answer's first bytes are read.
    let settings = tls::inspection_settings(host, words.host).ok()?;
    let wait = host.connect_timeout.min(std::time::Duration::from_secs(5));
    smtp::answers_tls(tcp, &settings.config, &settings.server_name, wait)
        .then(|| tls_failure::silent_tls_port(words, host.connect_timeout))
}

/// The relay closed the connection before greeting.
fn closed_before_greeting(words: &tls_failure::Relay<'_>) -> String {
    let hint = if words.port == 465 && words.mode != TlsMode::Implicit {
        "; port 465 is normally an implicit-TLS port: if so, set tls = \"implicit\""
    } else {
        ""
    };
    format!("the relay closed the connection before its greeting{hint}")
}

impl Relay {
    /// AUTH was refused. With an OAuth2 token that may have expired (or
    /// been revoked since it was cached): one new token and one more AUTH
    /// in the same session. Err is the stage and reason to defer with.
    fn after_refusal(
        &self,
        client: &mut Client,
        mechanism: &str,
        user: &str,
        token: &mut Option<Token>,
        refused: smtp::Error,
    ) -> Result<(), (&'static str, String)> {
        let failed = |e: &smtp::Error| {
            let mut text = format!("authentication failed: {e}");
            if let Some(known) = oauth2::replies::explain(&e.to_string()) {
                text.push_str(&format!("; {}; fix: {}", known.meaning, known.fix));
            }
            ("auth", text)
        };
        let (Some(tokens), Some(rejected)) = (&self.tokens, token.as_ref()) else {
            client.abort();
            return Err(failed(&refused));
        };
        let expired = match &refused {
            smtp::Error::Reply(reply) => oauth2::replies::may_be_expired(
                reply.code,
                &reply.text(),
                client.auth_details.as_deref(),
            ),
            _ => false,
        };
        // A token the endpoint has just issued is not stale: a new one
        // would be refused the same way.
        if !expired || rejected.fresh || client.is_broken() {
            client.abort();
            return Err(failed(&refused));
        }
        let renewed = match tokens.after_rejection(rejected) {
            Ok(renewed) => renewed,
            Err(e) => {
                client.abort();
                return Err((
                    "oauth2",
                    format!(
                        "the relay refused the access token ({refused}) and no new one could be had: {}",
                        e.message
                    ),
                ));
            }
        };
        let retried = client.auth(mechanism, user, renewed.secret.expose());
        *token = Some(renewed);
        retried.map_err(|e| {
            client.abort();
            let (stage, text) = failed(&e);
            (stage, format!("{text} (with a new access token too)"))
        })
    }
}

/// The AUTH mechanism for `host` among those the relay offers (auto:
/// PLAIN, then LOGIN; with `[smarthost.oauth2]` XOAUTH2, then
/// OAUTHBEARER), or why there is none.
fn choose_auth(host: &Smarthost, caps: &smtp::Capabilities) -> Result<&'static str, String> {
    let wanted: &[&'static str] = match host.auth {
        AuthMethod::Plain => &["PLAIN"],
        AuthMethod::Login => &["LOGIN"],
        AuthMethod::Xoauth2 => &["XOAUTH2"],
        AuthMethod::Oauthbearer => &["OAUTHBEARER"],
        AuthMethod::Auto | AuthMethod::None if host.oauth2.is_some() => &["XOAUTH2", "OAUTHBEARER"],
        AuthMethod::Auto | AuthMethod::None => &["PLAIN", "LOGIN"],
    };
    wanted
        .iter()
        .find(|m| caps.offers_auth(m))
        .copied()
        .ok_or_else(|| {
            let offered = if caps.auth.is_empty() {
                "it offers no AUTH at all".to_string()
            } else {
                format!("it offers {}", caps.auth.join(" "))
            };
            format!(
                "the relay offers no {} authentication: {offered}",
                wanted.join(" or ")
            )
        })
}

/// Connect errors after which the next address of the name is worth a try.
fn is_unreachable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused
            | TimedOut
            | WouldBlock
            | HostUnreachable
            | NetworkUnreachable
            | AddrNotAvailable
            | ConnectionReset
    )
}

impl Session {
    pub fn is_usable(&self) -> bool {
        !self.client.is_broken()
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
        let caps = self.client.caps.clone();
        let every = |outcome, reply: String| {
            recipients
                .iter()
                .map(|_| RecipientResult {
                    outcome,
                    reply: reply.clone(),
                })
                .collect::<Vec<_>>()
        };
        let needs_utf8 = !sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
        if needs_utf8 && !caps.smtputf8 {
            return Ok(every(
                Outcome::Bounced,
                "555 5.6.7 the relay does not support SMTPUTF8, needed for a non-ASCII address"
                    .into(),
            ));
        }
        if let Some(limit) = caps.size.filter(|l| *l > 0 && size > *l) {
            return Ok(every(
                Outcome::Bounced,
                format!("552 5.3.4 the message ({size} bytes) is larger than the relay's limit of {limit} bytes (its EHLO SIZE)"),
            ));
        }
        if let Some(bad) = std::iter::once(sender)
            .filter(|s| !s.is_empty())
            .chain(recipients.iter().map(String::as_str))
            .find(|a| !is_sendable(a))
        {
            return Ok(every(
                Outcome::Bounced,
                format!("553 5.1.3 invalid address <{bad}>"),
            ));
        }
        let mut mail = format!("MAIL FROM:<{sender}>");
        if caps.size.is_some() {
            // SIZE=n lets a relay with a limit refuse at MAIL (552 5.3.4),
            // a permanent answer that bounces at once.
            mail.push_str(&format!(" SIZE={size}"));
        }
        if eight_bit && caps.eight_bit_mime {
            mail.push_str(" BODY=8BITMIME");
        }
        if needs_utf8 {
            mail.push_str(" SMTPUTF8");
        }
        let rcpts: Vec<String> = recipients
            .iter()
            .map(|r| format!("RCPT TO:<{r}>"))
            .collect();
        let (mail_reply, rcpt_replies, data_reply) = self
            .client
            .envelope(&mail, &rcpts)
            .map_err(|e| self.broken("mail", &e))?;
        if !mail_reply.is_positive() {
            self.end_transaction(data_reply.as_ref());
            return Ok(every(classify(&mail_reply), mail_reply.text()));
        }
        let mut results: Vec<RecipientResult> = rcpt_replies
            .iter()
            .map(|r| RecipientResult {
                outcome: if r.is_positive() {
                    Outcome::Sent
                } else {
                    classify(r)
                },
                reply: if r.is_positive() {
                    String::new()
                } else {
                    r.text()
                },
            })
            .collect();
        let accepted = results.iter().any(|r| r.outcome == Outcome::Sent);
        let data_reply = match data_reply {
            Some(reply) if reply.code == 354 && accepted => reply,
            other => {
                self.end_transaction(other.as_ref());
                if let Some(reply) = other.filter(|_| accepted) {
                    // DATA refused although recipients were accepted: the
                    // relay's verdict on the transaction, for each of them
                    // (4xx defers, 5xx fails for good, as at RCPT).
                    for r in results.iter_mut().filter(|r| r.outcome == Outcome::Sent) {
                        r.outcome = classify(&reply);
                        r.reply = reply.text();
                    }
                }
                return Ok(results);
            }
        };
        debug_assert_eq!(data_reply.code, 354);
        let final_reply = match self.client.data(body) {
            Ok(reply) => reply,
            Err(BodyError::Source(e)) => {
                // The spool file failed mid-DATA: the connection is
                // dropped without the final "." so the relay discards it.
                self.client.abort();
                return Err(ConnectionFailure {
                    outcome: Outcome::Deferred,
                    relay: self.relay.clone(),
                    tls: self.tls.clone(),
                    stage: "data",
                    reply: format!("reading the queued message failed: {e}"),
                });
            }
            Err(BodyError::Smtp(e)) => {
                // A drop mid-DATA is a deferral (at-least-once).
                let failure = self.broken("data", &e);
                for r in results.iter_mut().filter(|r| r.outcome == Outcome::Sent) {
                    r.outcome = Outcome::Deferred;
                    r.reply = format!("{} (data failed)", failure.reply);
                }
                return Ok(results);
            }
        };
        // The reply to the final "." is the relay's verdict on the message
        // for every recipient it accepted at RCPT: 4xx defers them, 5xx
        // (552 5.3.4 too big, 554 5.7.1 content refused) fails them for
        // good, like a 5xx at RCPT. No reply at all (a cut connection, a
        // timeout, bytes that are not SMTP) ended above as a deferral:
        // the relay may have kept the message.
        for r in results.iter_mut().filter(|r| r.outcome == Outcome::Sent) {
            if !final_reply.is_positive() {
                r.outcome = classify(&final_reply);
            }
            r.reply = final_reply.text();
        }
        Ok(results)
    }

    /// After a transaction that did not reach DATA: when the pipelined
    /// DATA was accepted anyway (a server that took no recipient but said
    /// 354), an empty message is ended with "." so the session stays in
    /// step; the RSET that follows discards it.
    fn end_transaction(&mut self, data_reply: Option<&Reply>) {
        if data_reply.is_some_and(|r| r.code == 354) {
            let _ = self.client.data(&mut std::io::empty());
        }
    }

    /// RSET between messages on a reused connection.
    pub fn reset(&mut self) -> bool {
        matches!(self.client.command("RSET"), Ok(r) if r.code == 250)
    }

    pub fn quit(self) {
        self.client.quit();
    }

    fn broken(&mut self, stage: &'static str, e: &smtp::Error) -> ConnectionFailure {
        self.client.abort();
        ConnectionFailure {
            outcome: Outcome::Deferred,
            relay: self.relay.clone(),
            tls: self.tls.clone(),
            stage,
            reply: e.to_string(),
        }
    }
}

/// 4xx -> deferred, anything else unsuccessful -> bounced.
fn classify(reply: &Reply) -> Outcome {
    if reply.is_transient() {
        Outcome::Deferred
    } else {
        Outcome::Bounced
    }
}

/// SHA-256 of the relay's own (leaf) certificate; None without TLS.
fn leaf_sha256(client: &Client) -> Option<ring::digest::Digest> {
    client
        .peer_certificates()
        .first()
        .map(|der| ring::digest::digest(&ring::digest::SHA256, der))
}

/// An address that can go into MAIL FROM:<...> / RCPT TO:<...> without
/// changing the command: no angle brackets, spaces or control bytes.
fn is_sendable(address: &str) -> bool {
    !address.is_empty()
        && address.contains('@')
        && !address
            .chars()
            .any(|c| c.is_control() || c == ' ' || c == '<' || c == '>')
}
