//! `relaymail doctor`: why would mail not go? Reads the configuration as
//! a real run would, then checks, step by step, what a delivery needs:
//! permissions, the sender and root's alias, DNS, TCP, the greeting, EHLO,
//! TLS (version, cipher, chain, expiry, verification, pin), AUTH, and with
//! `--send-to` a real message. Each step is OK, WARN or FAIL with a
//! one-line fix; any FAIL makes the exit status 69. Secrets never appear.

mod permissions;

use std::io::Write;

use crate::config::{Config, Mode, Smarthost, TlsMode};
use crate::relay::probe::{self, Probe, Trust};
use crate::sysexits::{Failure, Sysexit};
use crate::tls_failure::{self, CertInfo, Explanation};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Info,
    Warn,
    Fail,
}

#[derive(Debug, serde::Serialize)]
pub struct Check {
    pub step: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Configuration lines that fix it, exactly as they are to be added
    /// to `[smarthost]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<String>,
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, step: &'static str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            step,
            status,
            detail: detail.into(),
            fix: None,
            settings: Vec::new(),
        });
    }

    fn fail(&mut self, step: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.with_fix(step, Status::Fail, detail, fix);
    }

    fn with_fix(
        &mut self,
        step: &'static str,
        status: Status,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.checks.push(Check {
            step,
            status,
            detail: detail.into(),
            fix: Some(fix.into()),
            settings: Vec::new(),
        });
    }

    /// A FAIL explained as delivery explains it, with the lines to add.
    fn explained(&mut self, step: &'static str, detail: String, explained: &Explanation) {
        self.checks.push(Check {
            step,
            status: Status::Fail,
            detail,
            fix: Some(explained.fix.clone()),
            settings: explained.settings.clone(),
        });
    }

    fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }
}

pub struct Options {
    pub send_to: Option<String>,
    pub json: bool,
}

/// The `--send-to` message's envelope, as a submission by this user would
/// have it: sender rewritten, recipient through the aliases.
struct TestEnvelope {
    from: String,
    to: Vec<String>,
}

/// A bad --send-to address is a usage error (64), found before any
/// connection is made.
fn test_envelope(config: &Config, to: &str) -> Result<TestEnvelope, Failure> {
    let rewriter = crate::rewrite::Rewriter::new(config)?;
    let from = match &config.rewrite.sender {
        Some(forced) => forced.clone(),
        None => rewriter.sender(None, &crate::system::calling_user())?,
    };
    let to = rewriter
        .recipients(&[to.to_string()], true)
        .map_err(|e| Failure::new(Sysexit::Usage, format!("--send-to: {e}")))?
        .into_iter()
        .map(|r| r.address)
        .collect();
    Ok(TestEnvelope { from, to })
}

/// `loaded` is the configuration, or why it could not be loaded.
pub fn run(
    loaded: Result<Config, Failure>,
    options: &Options,
    out: &mut impl Write,
) -> Result<Sysexit, Failure> {
    let mut report = Report::default();
    match loaded {
        Err(e) => report.fail(
            "config",
            e.message,
            "correct the file and line named above; `relaymail config check` shows the result",
        ),
        Ok(config) => {
            let test = options
                .send_to
                .as_deref()
                .map(|to| test_envelope(&config, to))
                .transpose()?;
            diagnose(&config, test.as_ref(), &mut report)
        }
    }
    if options.json {
        let doc = serde_json::json!({ "ok": !report.failed(), "checks": report.checks });
        writeln!(out, "{doc}").map_err(output)?;
    } else {
        for c in &report.checks {
            let word = match c.status {
                Status::Ok => "OK",
                Status::Info => "INFO",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            writeln!(out, "{word:<5} {:<12} {}", c.step, c.detail).map_err(output)?;
            if let Some(fix) = &c.fix {
                writeln!(out, "{:<18} fix: {fix}", "").map_err(output)?;
            }
            for line in &c.settings {
                writeln!(out, "{:<18} add to [smarthost]: {line}", "").map_err(output)?;
            }
        }
    }
    Ok(if report.failed() {
        Sysexit::Unavailable
    } else {
        Sysexit::Ok
    })
}

fn output(e: std::io::Error) -> Failure {
    Failure::new(Sysexit::IoErr, format!("writing the report: {e}"))
}

fn diagnose(config: &Config, test: Option<&TestEnvelope>, report: &mut Report) {
    let mode = match config.mode {
        Mode::System => "system mode",
        Mode::User => "user mode",
    };
    report.add(
        "config",
        Status::Ok,
        format!("{} ({mode})", config.describe_files()),
    );
    permissions::check(config, report);
    identity(config, report);
    let Some(host) = &config.smarthost else {
        report.fail(
            "smarthost",
            "no [smarthost] is configured: mail is queued but never sent",
            "add a [smarthost] section (see sendmail.example.toml)",
        );
        return;
    };
    let tokens = crate::oauth2::Tokens::new(config);
    let secret = match &tokens {
        Some(tokens) => oauth2(config, tokens, report),
        None => password(config, host, report),
    };
    for (name, port) in probe::endpoints(host) {
        let credential = Credential {
            secret: secret.as_ref(),
            tokens: tokens.as_ref(),
        };
        if relay(config, host, &name, port, credential, test, report) {
            return;
        }
    }
}

/// `[smarthost.oauth2]`: the refresh token held, and an access token
/// obtained as delivery would (cached or refreshed). Never shown.
fn oauth2(
    config: &Config,
    tokens: &crate::oauth2::Tokens,
    report: &mut Report,
) -> Option<crate::creds::Secret> {
    use crate::oauth2::Kind;
    let settings = tokens.settings();
    let login = if config.mode == Mode::System {
        "run relaymail oauth2 login as root"
    } else {
        "run relaymail oauth2 login"
    };
    match crate::oauth2::status(settings, config.mode, tokens.username()) {
        Ok(status) => match status.refresh {
            Ok(text) => report.add("oauth2", Status::Ok, text),
            Err(text) => report.fail("oauth2", text, login),
        },
        Err(e) => report.fail(
            "oauth2",
            e.message,
            "fix the token cache named above (its mode and owner)",
        ),
    }
    match tokens.access_token() {
        Ok(token) => {
            let left = token.expires_at - crate::oauth2::now();
            let how = if token.fresh {
                "obtained now from"
            } else {
                "cached, from"
            };
            report.add(
                "oauth2",
                Status::Ok,
                format!(
                    "an access token for {} ({how} {}) is valid for {} more minutes (not shown)",
                    tokens.username(),
                    crate::oauth2::http::host_of(&settings.token_endpoint),
                    left.max(0) / 60
                ),
            );
            Some(token.secret)
        }
        Err(e) => {
            let fix = match e.kind {
                Kind::LoginNeeded => login.to_string(),
                Kind::Network => "check DNS, the firewall or [smarthost.oauth2] proxy for the token endpoint; mail stays queued until it answers".into(),
                Kind::Config => "correct [smarthost.oauth2] as named above".into(),
                Kind::Storage => "fix the file or keyring named above".into(),
                Kind::Busy => "another relaymail process holds the token lock; try again".into(),
                Kind::Provider => "change the application or tenant setting named above".into(),
            };
            report.fail("oauth2", e.message, fix);
            None
        }
    }
}

/// A password (file, command or keyring): readable, never shown.
fn password(
    config: &Config,
    host: &Smarthost,
    report: &mut Report,
) -> Option<crate::creds::Secret> {
    match crate::creds::load(config) {
        Ok(secret) => {
            if let Some(user) = &host.username {
                report.add(
                    "credentials",
                    Status::Ok,
                    format!("a secret for {user} is readable (not shown)"),
                );
            }
            secret
        }
        Err(e) => {
            report.fail(
                "credentials",
                e.message,
                "fix the password_file or password_command named above",
            );
            None
        }
    }
}

/// What root's cron mail would look like: its sender and where it goes.
fn identity(config: &Config, report: &mut Report) {
    let rewriter = match crate::rewrite::Rewriter::new(config) {
        Ok(r) => r,
        Err(e) => {
            report.fail(
                "aliases",
                e.to_string(),
                "correct the aliases file named above (`relaymail newaliases` checks it)",
            );
            return;
        }
    };
    let root = crate::system::LocalUser {
        uid: 0,
        name: "root".into(),
        full_name: None,
    };
    match rewriter.sender(None, &root) {
        Ok(sender) => {
            let forced = config
                .rewrite
                .sender
                .as_deref()
                .map(|s| format!(" (the envelope is rewritten to {s})"))
                .unwrap_or_default();
            report.add(
                "sender",
                Status::Ok,
                format!("mail from root goes out as {sender}{forced}"),
            );
        }
        Err(e) => report.fail(
            "sender",
            e.to_string(),
            "set hostname or [rewrite] masquerade_domain to a real domain",
        ),
    }
    match rewriter.recipients(&["root".to_string()], true) {
        Ok(list) => {
            let to: Vec<&str> = list.iter().map(|r| r.address.as_str()).collect();
            let status = if list
                .iter()
                .any(|r| r.address.ends_with(&format!("@{}", config.hostname)))
            {
                Status::Warn
            } else {
                Status::Ok
            };
            let detail = format!("mail to root goes to {}", to.join(", "));
            if status == Status::Warn {
                report.with_fix(
                    "alias",
                    status,
                    detail,
                    "add root = [\"you@example.com\"] under [aliases] (or to /etc/aliases), or the relay will try this host's own domain",
                );
            } else {
                report.add("alias", status, detail);
            }
        }
        Err(e) => report.fail("alias", e.to_string(), "fix the alias named above"),
    }
}

/// What AUTH is tried with: the password or access token, and with
/// `[smarthost.oauth2]` the client that can replace a refused token.
#[derive(Clone, Copy)]
struct Credential<'a> {
    secret: Option<&'a crate::creds::Secret>,
    tokens: Option<&'a crate::oauth2::Tokens>,
}

/// Diagnoses one relay. Returns true when it could carry mail (then the
/// fallbacks are not tried, as delivery would not try them).
fn relay(
    config: &Config,
    host: &Smarthost,
    name: &str,
    port: u16,
    credential: Credential<'_>,
    test: Option<&TestEnvelope>,
    report: &mut Report,
) -> bool {
    let Credential { secret, tokens } = credential;
    let addrs = match probe::resolve(name, port) {
        Ok(a) => a,
        Err(e) => {
            report.fail(
                "dns",
                e,
                format!(
                    "check the name in [smarthost] and this host's resolver (getent ahosts {name})"
                ),
            );
            return false;
        }
    };
    let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    report.add("dns", Status::Ok, format!("{name}: {}", list.join(", ")));
    let hello = &config.hostname;
    // Delivery uses the first address that answers: failures before it
    // are warnings when one does, and the addresses after it are only
    // checked for a TCP connection.
    let mut unreachable = Vec::new();
    let mut connected = None;
    for (index, addr) in addrs.iter().enumerate() {
        match Probe::connect(addr, host, name, config.mode, hello, Trust::Configured) {
            Ok(p) => {
                report.add(
                    "connect",
                    Status::Ok,
                    format!("{addr} in {} ms", p.elapsed.as_millis()),
                );
                connected = Some((p, *addr, index));
                break;
            }
            Err(failed) if failed.stage == "tls" => {
                tls_failure(config, host, name, addr, &failed, report);
                return false;
            }
            Err(failed) if failed.stage == "banner" => {
                report.fail(
                    "banner",
                    format!("{addr} refused the session: {}", failed.detail),
                    "the relay does not accept this client; ask its admin (an IP allow list?)",
                );
                return false;
            }
            Err(failed) => unreachable.push(format!("{addr}: {}", failed.detail)),
        }
    }
    let status = if connected.is_some() {
        Status::Warn
    } else {
        Status::Fail
    };
    for failure in unreachable {
        report.with_fix(
            "connect",
            status,
            failure,
            format!("is the relay up and port {port} open from here (routing, firewall)? Try: nc -vz {name} {port}"),
        );
    }
    let Some((mut probe, addr, index)) = connected else {
        return false;
    };
    for other in addrs.iter().skip(index + 1) {
        match std::net::TcpStream::connect_timeout(other, host.connect_timeout) {
            Ok(_) => report.add("connect", Status::Ok, format!("{other} also reachable")),
            Err(e) => report.with_fix(
                "connect",
                Status::Warn,
                format!("{other}: {e}"),
                "this address is skipped while another answers; check routing or firewall for it",
            ),
        }
    }
    report.add("banner", Status::Ok, probe.greeting());
    report.add("ehlo", Status::Ok, probe.capabilities().join(", "));
    let wants_tls = matches!(host.tls, TlsMode::Starttls | TlsMode::Opportunistic);
    if wants_tls && probe.offers_starttls() {
        if let Err(failed) = probe.starttls(host, name, config.mode, hello, Trust::Configured) {
            tls_failure(config, host, name, &addr, &failed, report);
            return false;
        }
    } else if host.tls == TlsMode::Starttls {
        report.fail(
            "tls",
            "the relay does not offer STARTTLS; relaymail will not send in cleartext",
            "use the relay's TLS port (tls = \"implicit\", usually port 465) or ask for STARTTLS on this one",
        );
        return false;
    }
    match probe.tls() {
        Some(tls) => {
            let leaf = probe.leaf().unwrap_or_default();
            let trust = if host.fingerprint.is_some() {
                "the pinned fingerprint matches".to_string()
            } else {
                match &host.ca_file {
                    Some(ca) if crate::relay::probe::named_in_ca_file(host, &leaf) => format!(
                        "the relay's certificate is one of those in {} and is trusted as given (its dates and name checked)",
                        ca.display()
                    ),
                    Some(ca) => format!("verified against {}", ca.display()),
                    None => "verified against the system's trusted CAs".into(),
                }
            };
            let pinned = pin_matches(host, &probe);
            if let Some(false) = pinned {
                let pin = host
                    .fingerprint
                    .as_deref()
                    .map(tls_failure::fingerprint_hex)
                    .unwrap_or_default();
                let explained = tls_failure::pin_mismatch(Some(&CertInfo::parse(&leaf)), &pin);
                report.explained("tls", format!("{tls}; {}", explained.problem), &explained);
                chain(&probe, report);
                return false;
            }
            report.add("tls", Status::Ok, format!("{tls}, {trust}"));
            chain(&probe, report);
            report.add("ehlo-tls", Status::Ok, probe.capabilities().join(", "));
        }
        // Delivery checks a pin even without TLS, and defers.
        None if host.fingerprint.is_some() => {
            report.fail(
                "tls",
                "a fingerprint is pinned but the session is not encrypted: delivery defers every message",
                "use tls = \"starttls\" or \"implicit\", or remove the fingerprint",
            );
            return false;
        }
        None if host.tls == TlsMode::None => report.with_fix(
            "tls",
            Status::Warn,
            "tls = \"none\": mail and any password cross the network in cleartext",
            "use tls = \"starttls\" or \"implicit\" unless this is a closed lab network",
        ),
        None => report.with_fix(
            "tls",
            Status::Warn,
            "the relay offers no STARTTLS: tls = \"opportunistic\" sends in cleartext",
            "use tls = \"starttls\" once the relay offers it",
        ),
    }
    if host.username.is_some() && host.auth != crate::config::AuthMethod::None {
        if probe.tls().is_none() && !host.allow_cleartext_auth {
            report.fail(
                "auth",
                "no TLS, so relaymail will not send the password",
                "use TLS (tls = \"starttls\" or \"implicit\")",
            );
            return false;
        }
        let Some(secret) = secret else {
            return false;
        };
        let mut result = probe.auth(host, secret.expose());
        // As delivery does: a cached token the relay refuses as if it
        // had expired is replaced once.
        if let (Err(e), Some(tokens)) = (&result, tokens) {
            let code = e.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            if crate::oauth2::replies::may_be_expired(code, e, None) {
                let stale = crate::oauth2::Token {
                    secret: crate::creds::Secret::new(secret.expose().to_string()),
                    expires_at: 0,
                    obtained_at: None,
                    fresh: false,
                };
                match tokens.after_rejection(&stale) {
                    Ok(renewed) => {
                        report.with_fix(
                            "auth",
                            Status::Warn,
                            format!("the relay refused the cached access token: {e}"),
                            "none needed if the next line is OK: delivery gets a new token the same way",
                        );
                        result = probe.auth(host, renewed.secret.expose());
                    }
                    Err(refused) => {
                        report.fail("oauth2", refused.message, "see the reason above");
                    }
                }
            }
        }
        match result {
            Ok(mechanism) => report.add(
                "auth",
                Status::Ok,
                format!(
                    "{mechanism} as {} accepted",
                    host.username.as_deref().unwrap_or("")
                ),
            ),
            Err(e) => {
                match crate::oauth2::replies::explain(&e) {
                    Some(known) => report.fail(
                        "auth",
                        format!("authentication failed: {e} ({})", known.meaning),
                        known.fix,
                    ),
                    None if tokens.is_some() => report.fail(
                        "auth",
                        format!("authentication failed: {e}"),
                        "username must be the mailbox the token was issued for, and the token's scope must allow SMTP ([smarthost.oauth2] scope); relaymail oauth2 status shows both",
                    ),
                    None => report.fail(
                        "auth",
                        format!("authentication failed: {e}"),
                        "check username and password (Office 365/Gmail: SMTP AUTH must be enabled for the account, or use an app password / [smarthost.oauth2])",
                    ),
                }
                return false;
            }
        }
    } else if probe
        .auth_mechanisms()
        .iter()
        .any(|m| m == "PLAIN" || m == "LOGIN")
    {
        report.add(
            "auth",
            Status::Info,
            "the relay offers AUTH but no username is configured; it may refuse to relay",
        );
    }
    if let Some(test) = test {
        let (from, to) = (&test.from, test.to.join(", "));
        match probe.send_test(from, &test.to, &config.hostname) {
            Ok(reply) => report.add(
                "send",
                Status::Ok,
                format!("test message from {from} to {to} accepted: {reply}"),
            ),
            Err(e) => {
                let reply = e.rsplit(": ").next().unwrap_or(&e);
                match crate::oauth2::replies::explain(reply) {
                    Some(known) => report.fail(
                        "send",
                        format!("test message from {from} to {to}: {e} ({})", known.meaning),
                        known.fix,
                    ),
                    None => report.fail(
                        "send",
                        format!("test message from {from} to {to}: {e}"),
                        "the reply above is the relay's reason; a 5.7.x usually means the sender is not allowed ([rewrite] sender)",
                    ),
                }
                return false;
            }
        }
    }
    probe.quit();
    true
}

/// Some(true/false) when a fingerprint is pinned.
fn pin_matches(host: &Smarthost, probe: &Probe) -> Option<bool> {
    let pin = host.fingerprint.as_ref()?;
    Some(probe.leaf_sha256().as_deref() == Some(pin.as_slice()))
}

fn chain(probe: &Probe, report: &mut Report) {
    for (i, cert) in probe.chain().iter().enumerate() {
        let expiry = if cert.days_left < 0 {
            Status::Fail
        } else if cert.days_left < 14 {
            Status::Warn
        } else {
            Status::Info
        };
        let detail = format!(
            "{i}: {} (issuer {}), expires {} ({} days), sha256:{}",
            cert.subject, cert.issuer, cert.not_after, cert.days_left, cert.sha256
        );
        match expiry {
            Status::Fail => report.fail(
                "certificate",
                detail,
                "the relay's certificate has expired; its admin must renew it",
            ),
            Status::Warn => report.with_fix(
                "certificate",
                expiry,
                detail,
                "the relay's certificate expires soon",
            ),
            _ => report.add("certificate", expiry, detail),
        }
    }
}

/// The handshake failed with the configured trust: say why and what to
/// set, exactly as a deferral would, then connect again accepting any
/// certificate (in the TLS mode the port really speaks), only to show
/// what the relay presents.
fn tls_failure(
    config: &Config,
    host: &Smarthost,
    name: &str,
    addr: &std::net::SocketAddr,
    failed: &probe::Failed,
    report: &mut Report,
) {
    let mut inspected = host.clone();
    match &failed.explained {
        Some(explained) => {
            report.explained(
                "tls",
                format!("handshake with {addr} failed: {}", explained.problem),
                explained,
            );
            if let Some(mode) = explained.port_speaks {
                inspected.tls = mode;
            }
        }
        // A setup error (an unreadable ca_file or client key): its text
        // names the file and what is wrong with it.
        None => report.fail(
            "tls",
            format!("TLS setup for {addr} failed: {}", failed.detail),
            "correct the file named above",
        ),
    }
    let host = &inspected;
    let hello = &config.hostname;
    let Ok(mut probe) = Probe::connect(addr, host, name, config.mode, hello, Trust::Inspect) else {
        return;
    };
    if host.tls != TlsMode::Implicit
        && probe
            .starttls(host, name, config.mode, hello, Trust::Inspect)
            .is_err()
    {
        return;
    }
    chain(&probe, report);
    probe.quit();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_fail_makes_the_report_fail() {
        let mut r = Report::default();
        r.add("a", Status::Ok, "fine");
        r.with_fix("b", Status::Warn, "meh", "do x");
        assert!(!r.failed());
        r.fail("c", "broken", "do y");
        assert!(r.failed());
    }
}
