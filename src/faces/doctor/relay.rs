//! One relay, step by step as delivery meets it: DNS, TCP to each
//! address, the greeting, EHLO, TLS (the chain, its expiry and the pin),
//! AUTH, and the `--send-to` message. A failed handshake is explained as a
//! deferral would explain it, then the relay is asked, trusting nothing,
//! what certificate it presents.

use super::{Report, Status, TestEnvelope};
use crate::config::{Config, Smarthost, TlsMode};
use crate::relay::probe::{self, Probe, Trust};
use crate::tls_failure::{self, CertInfo};

/// What AUTH is tried with: the password or access token, and with
/// `[smarthost.oauth2]` the client that can replace a refused token.
#[derive(Clone, Copy)]
pub(super) struct Credential<'a> {
    pub(super) secret: Option<&'a crate::creds::Secret>,
    pub(super) tokens: Option<&'a crate::oauth2::Tokens>,
}

/// Diagnoses one relay. Returns true when it could carry mail (then the
/// fallbacks are not tried, as delivery would not try them).
pub(super) fn check(
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
