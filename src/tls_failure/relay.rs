//! Delivery and doctor: relaymail is the TLS client. Why the handshake
//! with the smarthost failed, or why its certificate is not the pinned
//! one, and the `[smarthost]` lines that fix it.

use std::path::Path;

use rustls::{AlertDescription, CertificateError, OtherError, PeerIncompatible};

use super::cert::{date, CertInfo, Rejected};
use super::hello::{looks_like_tls, old_server_version, preview, smtp_greeting};
use super::words::{an, certificate_words, describe, unquoted};
use super::{Cause, Explanation, Failure};
use crate::config::{MinTls, TlsMode};

/// The smarthost as configured, for the words and the fix.
pub struct Relay<'a> {
    /// The name as configured (`host`, or a fallback's).
    pub host: &'a str,
    pub port: u16,
    pub mode: TlsMode,
    pub min_version: MinTls,
    pub ca_file: Option<&'a Path>,
    /// `tls_server_name`, when set.
    pub server_name: Option<&'a str>,
    /// Whether `client_cert` is configured.
    pub client_cert: bool,
    /// Where to suggest saving a certificate when no `ca_file` is set.
    pub suggested_ca_file: &'a Path,
}

impl Relay<'_> {
    /// The name the certificate must hold.
    fn verify_name(&self) -> &str {
        self.server_name.unwrap_or(self.host)
    }

    fn trust(&self) -> String {
        match self.ca_file {
            Some(path) => format!("ca_file {}", path.display()),
            None => "this system's trusted CAs (no ca_file is set)".to_string(),
        }
    }

    fn ca_path(&self) -> &Path {
        self.ca_file.unwrap_or(self.suggested_ca_file)
    }

    fn ca_line(&self) -> String {
        format!("ca_file = \"{}\"", self.ca_path().display())
    }

    /// Where a certificate to trust goes: the configured ca_file, or a
    /// new file and the line that names it.
    fn where_to_trust(&self) -> String {
        match self.ca_file {
            Some(path) => format!("in {} (ca_file)", path.display()),
            None => format!("in {} and set {}", self.ca_path().display(), self.ca_line()),
        }
    }

    /// The lines to add for that: `ca_file` when none is set yet.
    fn ca_settings(&self) -> Vec<String> {
        match self.ca_file {
            Some(_) => Vec::new(),
            None => vec![self.ca_line()],
        }
    }

    /// The command that saves the relay's certificate, as an admin types it.
    fn save_command(&self) -> String {
        let starttls = match self.mode {
            TlsMode::Implicit => "",
            _ => " -starttls smtp",
        };
        let append = if self.ca_file.is_some() { ">>" } else { ">" };
        format!(
            "openssl s_client -connect {}:{}{starttls} -servername {} </dev/null | openssl x509 {append} {}",
            self.host,
            self.port,
            self.verify_name(),
            self.ca_path().display()
        )
    }
}

/// Why the TLS handshake with the relay failed, and what to set.
pub fn relay_failure(failure: &Failure, relay: &Relay<'_>) -> Explanation {
    let bytes = &failure.peer_bytes;
    if relay.mode == TlsMode::Implicit {
        if let Some(greeting) = smtp_greeting(bytes) {
            return plain_port(relay, &greeting);
        }
    }
    if let Some(version) = old_server_version(bytes) {
        return old_relay(relay, Some(version));
    }
    match &failure.cause {
        Cause::Tls(rustls::Error::InvalidCertificate(verdict)) => match verdict {
            CertificateError::Other(OtherError(inner)) => {
                match inner.downcast_ref::<Rejected>() {
                    Some(r) => certificate(&r.verdict, Some(&r.leaf), relay),
                    None => certificate(verdict, None, relay),
                }
            }
            other => certificate(other, None, relay),
        },
        Cause::Tls(rustls::Error::PeerIncompatible(PeerIncompatible::ServerDoesNotSupportTls12Or13)) => {
            old_relay(relay, None)
        }
        Cause::Tls(rustls::Error::PeerIncompatible(
            PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig,
        )) => Explanation::new(
            "the relay chose TLS 1.2, and tls_min_version = \"1.3\" refuses it",
            "set tls_min_version = \"1.2\" (TLS 1.2 with relaymail's ECDHE and AEAD cipher suites is still safe), or enable TLS 1.3 on the relay",
            vec!["tls_min_version = \"1.2\"".into()],
        ),
        Cause::Tls(rustls::Error::AlertReceived(AlertDescription::ProtocolVersion)) => {
            match relay.min_version {
                MinTls::V1_3 => Explanation::new(
                    "the relay refused TLS 1.3 (a protocol_version alert), the only version tls_min_version = \"1.3\" allows: it speaks TLS 1.2 at most",
                    "set tls_min_version = \"1.2\" (TLS 1.2 with relaymail's ECDHE and AEAD cipher suites is still safe), or enable TLS 1.3 on the relay",
                    vec!["tls_min_version = \"1.2\"".into()],
                ),
                MinTls::V1_2 => old_relay(relay, None),
            }
        }
        Cause::Tls(rustls::Error::AlertReceived(AlertDescription::CertificateRequired)) => {
            client_certificate(relay, AlertDescription::CertificateRequired)
        }
        Cause::Tls(rustls::Error::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::AccessDenied),
        )) if relay.client_cert => client_certificate(relay, *alert),
        Cause::Tls(rustls::Error::AlertReceived(AlertDescription::HandshakeFailure))
        | Cause::Tls(rustls::Error::PeerIncompatible(
            PeerIncompatible::NoCipherSuitesInCommon
            | PeerIncompatible::NoKxGroupsInCommon
            | PeerIncompatible::NoSignatureSchemesInCommon,
        )) => Explanation::new(
            "the relay refused the handshake (handshake_failure): it and relaymail have no cipher suite, key exchange or signature scheme in common",
            format!(
                "relaymail offers TLS 1.2 and 1.3 with ECDHE key exchange and AES-GCM or ChaCha20-Poly1305 only; the relay's admin must enable one of them (its log names what it wanted){}",
                if relay.client_cert {
                    ""
                } else {
                    "; a relay that wants a client certificate may also answer this way (client_cert, client_key)"
                }
            ),
            Vec::new(),
        ),
        Cause::Tls(rustls::Error::InvalidMessage(_)) if !looks_like_tls(bytes) => {
            Explanation::new(
                format!(
                    "port {} answered the TLS hello with bytes that are not TLS ({})",
                    relay.port,
                    preview(bytes)
                ),
                mode_fix(relay),
                mode_settings(relay),
            )
        }
        Cause::Tls(e) => Explanation::new(
            format!("the TLS handshake with the relay failed: {}", describe(e)),
            "the relay's log names the reason from its side; `relaymail doctor` shows the certificate it presents",
            Vec::new(),
        ),
        Cause::Closed => Explanation::new(
            "the relay closed the connection during the TLS handshake without saying why",
            format!(
                "the relay's log says why; usual reasons: it wants a client certificate{}, it speaks only TLS 1.0/1.1 or old ciphers, or it does not trust relaymail's address",
                if relay.client_cert {
                    " (the one in client_cert was refused?)"
                } else {
                    " (client_cert, client_key)"
                }
            ),
            Vec::new(),
        ),
        Cause::TimedOut => Explanation::new(
            "the relay stopped answering during the TLS handshake",
            "a firewall or proxy that drops TLS, or an overloaded relay; connect_timeout (implicit TLS) or command_timeout (STARTTLS) bound the wait",
            Vec::new(),
        ),
        Cause::Io(e) => Explanation::new(
            format!("the connection failed during the TLS handshake: {e}"),
            "check the network path to the relay",
            Vec::new(),
        ),
    }
}

/// A relay that speaks plain SMTP where TLS was expected from the first
/// byte: tls = "implicit" on a STARTTLS or plain port.
fn plain_port(relay: &Relay<'_>, greeting: &str) -> Explanation {
    Explanation::new(
        format!(
            "port {} answered in plain SMTP (\"{greeting}\") instead of starting TLS: it is a STARTTLS or plain port (587 and 25 usually are), and tls = \"implicit\" expects TLS from the first byte",
            relay.port
        ),
        "set tls = \"starttls\" for this port (or use the relay's implicit-TLS port, usually 465, with tls = \"implicit\")",
        vec!["tls = \"starttls\"".into()],
    )
    .speaks(TlsMode::Starttls)
}

/// A port that sent no SMTP greeting but answers a TLS hello: tls =
/// "starttls" (or opportunistic, or none) on an implicit-TLS port.
/// `timeout` is the configured wait for the greeting (connect_timeout).
pub fn silent_tls_port(relay: &Relay<'_>, timeout: std::time::Duration) -> Explanation {
    let mode = match relay.mode {
        TlsMode::Starttls => "starttls",
        TlsMode::Opportunistic => "opportunistic",
        TlsMode::None => "none",
        TlsMode::Implicit => "implicit",
    };
    Explanation::new(
        format!(
            "port {} sent no SMTP greeting in {} s but answers a TLS hello: it is an implicit-TLS port (465 usually is), which speaks TLS from the first byte, and tls = \"{mode}\" waits for a plain-text greeting first",
            relay.port,
            timeout.as_secs().max(1)
        ),
        "set tls = \"implicit\" for this port (or use the relay's STARTTLS port, usually 587, with tls = \"starttls\")",
        vec!["tls = \"implicit\"".into()],
    )
    .speaks(TlsMode::Implicit)
}

fn mode_fix(relay: &Relay<'_>) -> String {
    match relay.mode {
        TlsMode::Implicit => format!(
            "tls = \"implicit\" expects TLS from the first byte; if port {} is a STARTTLS port, set tls = \"starttls\"",
            relay.port
        ),
        _ => "the relay's STARTTLS is broken or something between rewrites the connection; its log says more".into(),
    }
}

fn mode_settings(relay: &Relay<'_>) -> Vec<String> {
    match relay.mode {
        TlsMode::Implicit => vec!["tls = \"starttls\"".into()],
        _ => Vec::new(),
    }
}

/// A relay that speaks only TLS 1.0/1.1 (or SSL), `version` when its
/// hello said which.
fn old_relay(relay: &Relay<'_>, version: Option<&str>) -> Explanation {
    let problem = match version {
        Some(v) => format!(
            "the relay answered relaymail's TLS 1.2/1.3 hello with {v}: it speaks nothing newer"
        ),
        None => {
            let offered = match relay.min_version {
                MinTls::V1_2 => "TLS 1.2 and 1.3",
                MinTls::V1_3 => "TLS 1.3",
            };
            format!("the relay refused {offered} (a protocol_version alert): it speaks only older versions (TLS 1.0/1.1 or SSL)")
        }
    };
    Explanation::new(
        problem,
        "relaymail supports TLS 1.2 and 1.3 only: TLS 1.0 and 1.1 are deprecated as insecure (RFC 8996), its TLS library (rustls) does not implement them, and no setting turns them on; the relay's admin must enable TLS 1.2 (Postfix: smtpd_tls_protocols = >=TLSv1.2; Exchange and Windows: enable TLS 1.2 in SCHANNEL)",
        Vec::new(),
    )
}

/// The relay refused relaymail's client certificate, or wants one.
fn client_certificate(relay: &Relay<'_>, alert: AlertDescription) -> Explanation {
    if relay.client_cert {
        Explanation::new(
            format!(
                "the relay refused relaymail's client certificate ({} alert)",
                an(alert)
            ),
            "the relay must trust the CA that issued client_cert, and the certificate must be valid now; its log names the reason",
            Vec::new(),
        )
    } else {
        Explanation::new(
            format!(
                "the relay requires a client certificate ({} alert) and none is configured",
                an(alert)
            ),
            "set client_cert and client_key to the certificate and key the relay's admin issued for this host",
            vec![
                "client_cert = \"/etc/relaymail/client.pem\"".into(),
                "client_key = \"/etc/relaymail/client.key\"".into(),
            ],
        )
    }
}

/// A refused server certificate. `leaf` is known when relaymail's own
/// verifier refused it (always, except with an odd verifier error).
fn certificate(
    verdict: &CertificateError,
    leaf: Option<&CertInfo>,
    relay: &Relay<'_>,
) -> Explanation {
    let subject = leaf
        .map(|l| format!(" ({})", l.subject))
        .unwrap_or_default();
    let pin = leaf.map(CertInfo::pin_line);
    let pin_or = |text: &str| match &pin {
        Some(line) => format!("{text}; or pin this very certificate: {line}"),
        None => text.to_string(),
    };
    let ca_used_as_server = matches!(verdict, CertificateError::Other(OtherError(e)) if e.to_string() == "CaUsedAsEndEntity")
        || matches!(verdict, CertificateError::Other(_)) && leaf.is_some_and(|l| l.is_ca);
    let unknown_issuer = matches!(verdict, CertificateError::UnknownIssuer)
        || (ca_used_as_server && leaf.is_some_and(|l| l.self_signed));
    let settings_with_pin = |mut first: Vec<String>| {
        first.extend(pin.clone());
        first
    };
    if unknown_issuer {
        let leaf_is_ca = if leaf.is_some_and(|l| l.is_ca) {
            " (a CA:TRUE certificate, as `openssl req -x509` makes by default)"
        } else {
            ""
        };
        return match leaf {
            Some(l) if l.self_signed => Explanation::new(
                format!(
                    "the relay's certificate{subject} is self-signed{leaf_is_ca} and is not in {}",
                    relay.trust()
                ),
                pin_or(&format!(
                    "if this is your relay's own certificate, trust exactly it (its dates and name are still checked): save it {}: `{}`",
                    relay.where_to_trust(),
                    relay.save_command()
                )),
                settings_with_pin(relay.ca_settings()),
            ),
            _ => {
                let issuer = leaf
                    .map(|l| format!(" {}", l.issuer))
                    .unwrap_or_default();
                Explanation::new(
                    format!(
                        "the relay's certificate{subject} is issued by{issuer}, an issuer that is not in {}",
                        relay.trust()
                    ),
                    pin_or(&format!(
                        "put the certificate of the CA{issuer} (from the relay's admin; an intermediate CA must be sent by the relay or added too) {}",
                        relay.where_to_trust()
                    )),
                    settings_with_pin(relay.ca_settings()),
                )
            }
        };
    }
    if ca_used_as_server {
        let issuer = leaf.map(|l| l.issuer.as_str()).unwrap_or("its CA");
        return Explanation::new(
            format!(
                "the relay's certificate{subject}, issued by {issuer}, is a CA certificate (basicConstraints CA:TRUE) used as a server certificate, which verification refuses"
            ),
            pin_or(&format!(
                "reissue it as a server certificate (openssl: -addext basicConstraints=critical,CA:FALSE), or trust exactly this certificate (its dates and name are still checked): save it {}: `{}`",
                relay.where_to_trust(),
                relay.save_command()
            )),
            settings_with_pin(relay.ca_settings()),
        );
    }
    match verdict {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            // The certificate's own names; rustls's list (debug strings,
            // `DnsName("...")`) only when the certificate is not known.
            let presented: Vec<String> = match (leaf, verdict) {
                (Some(l), _) => l.names.clone(),
                (None, CertificateError::NotValidForNameContext { presented, .. }) => {
                    presented.iter().map(|p| unquoted(p)).collect()
                }
                (None, _) => Vec::new(),
            };
            let expected = relay.verify_name();
            if presented.is_empty() {
                return Explanation::new(
                    format!(
                        "the relay's certificate{subject} holds no name in subjectAltName (a CN alone is not used for names, RFC 6125), so it cannot match {expected}"
                    ),
                    pin_or(&format!(
                        "reissue it with the name: openssl req ... -addext \"subjectAltName=DNS:{expected}\""
                    )),
                    pin.clone().into_iter().collect(),
                );
            }
            let listed = presented.join(", ");
            let first = presented.first().cloned().unwrap_or_default();
            let line = format!("tls_server_name = \"{first}\"");
            let fix = match relay.server_name {
                Some(name) => format!(
                    "tls_server_name = \"{name}\" does not match either; if this is the right relay, set {line}"
                ),
                None => format!(
                    "connect by that name (host = \"{first}\"), or, if {expected} is the right relay, check the certificate against its name instead: {line}"
                ),
            };
            Explanation::new(
                format!(
                    "the relay's certificate{subject} is for {listed}, not for {expected}"
                ),
                fix,
                vec![line],
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            let (at, not_after) = match verdict {
                CertificateError::ExpiredContext { time, not_after } => (
                    seconds(time.as_secs()),
                    Some(seconds(not_after.as_secs())),
                ),
                _ => (now(), leaf.map(|l| l.not_after)),
            };
            let when = not_after
                .map(|t| {
                    format!(
                        " on {} ({} days ago)",
                        date(t),
                        (at - t).max(0) / 86_400
                    )
                })
                .unwrap_or_default();
            Explanation::new(
                format!("the relay's certificate{subject} expired{when}"),
                "the relay's admin must renew it; relaymail never delivers over an expired certificate (if this host's clock is wrong instead, fix it: timedatectl)",
                Vec::new(),
            )
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            let (at, not_before) = match verdict {
                CertificateError::NotValidYetContext { time, not_before } => (
                    seconds(time.as_secs()),
                    Some(seconds(not_before.as_secs())),
                ),
                _ => (now(), leaf.map(|l| l.not_before)),
            };
            let when = not_before
                .map(|t| format!(" before {}", date(t)))
                .unwrap_or_default();
            Explanation::new(
                format!(
                    "the relay's certificate{subject} is not valid{when}, and this host's clock says {}",
                    date(at)
                ),
                "check this host's clock (timedatectl; is NTP running?), or the relay's admin must fix the certificate's start date",
                Vec::new(),
            )
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            Explanation::new(
                format!(
                    "the relay's certificate{subject} is not for TLS servers (its extendedKeyUsage lacks serverAuth)"
                ),
                pin_or(&format!(
                    "reissue it with -addext extendedKeyUsage=serverAuth, or trust exactly this certificate: save it {}: `{}`",
                    relay.where_to_trust(),
                    relay.save_command()
                )),
                settings_with_pin(relay.ca_settings()),
            )
        }
        CertificateError::BadSignature => Explanation::new(
            format!(
                "the relay's certificate{subject} is not correctly signed by its issuer{}",
                leaf.map(|l| format!(" {}", l.issuer)).unwrap_or_default()
            ),
            format!(
                "{} may hold a different CA of the same name, or the relay sends a broken chain",
                relay.trust()
            ),
            Vec::new(),
        ),
        CertificateError::Revoked => Explanation::new(
            format!("the relay's certificate{subject} has been revoked"),
            "the relay's admin must install a new certificate",
            Vec::new(),
        ),
        other => Explanation::new(
            format!(
                "the relay's certificate{subject} was refused: {}",
                certificate_words(other, leaf)
            ),
            pin_or(&format!(
                "the relay's admin must reissue it, or trust exactly this certificate: save it {}: `{}`",
                relay.where_to_trust(),
                relay.save_command()
            )),
            settings_with_pin(relay.ca_settings()),
        ),
    }
}

fn seconds(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The presented certificate is not the pinned one. `presented` is None
/// when the session is not encrypted.
pub fn pin_mismatch(presented: Option<&CertInfo>, pinned: &str) -> Explanation {
    match presented {
        Some(cert) => Explanation::new(
            format!(
                "the relay's certificate ({}, sha256:{}) does not match the pinned fingerprint (fingerprint = \"sha256:{pinned}\"); nothing was sent",
                cert.subject, cert.sha256
            ),
            format!(
                "if the relay's certificate was replaced on purpose, pin the new one: {}; otherwise something else answers for the relay",
                cert.pin_line()
            ),
            vec![cert.pin_line()],
        ),
        None => Explanation::new(
            format!("a certificate is pinned (fingerprint = \"sha256:{pinned}\") but the session is not encrypted; nothing was sent"),
            "use tls = \"starttls\" or \"implicit\" with the pin, or remove the fingerprint",
            vec!["tls = \"starttls\"".into()],
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Arc;

    use super::super::testing::failed;
    use super::*;

    fn relay() -> Relay<'static> {
        Relay {
            host: "relay.example",
            port: 465,
            mode: TlsMode::Implicit,
            min_version: MinTls::V1_2,
            ca_file: None,
            server_name: None,
            client_cert: false,
            suggested_ca_file: Path::new("/etc/relaymail/relay-ca.pem"),
        }
    }

    #[test]
    fn a_plain_greeting_on_an_implicit_port_says_set_starttls() {
        let e = relay_failure(
            &failed(
                Cause::Tls(rustls::Error::InvalidMessage(
                    rustls::InvalidMessage::InvalidContentType,
                )),
                b"220 relay.example ESMTP Postfix\r\n",
            ),
            &relay(),
        );
        assert!(
            e.problem.contains("\"220 relay.example ESMTP Postfix\""),
            "{e:?}"
        );
        assert_eq!(e.settings, ["tls = \"starttls\""]);
    }

    #[test]
    fn an_old_server_hello_names_its_version() {
        // ServerHello (type 2) choosing TLS 1.1.
        let hello = [
            0x16, 0x03, 0x02, 0x00, 0x30, 0x02, 0x00, 0x00, 0x2c, 0x03, 0x02,
        ];
        let e = relay_failure(
            &failed(
                Cause::Tls(rustls::Error::PeerIncompatible(
                    PeerIncompatible::ServerDoesNotSupportTls12Or13,
                )),
                &hello,
            ),
            &relay(),
        );
        assert!(e.problem.contains("with TLSv1.1"), "{e:?}");
        assert!(e.fix.contains("RFC 8996"), "{e:?}");
        // An early alert framed as TLS 1.0 proves nothing about versions.
        assert_eq!(
            old_server_version(&[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28]),
            None
        );
        assert_eq!(
            old_server_version(&[0x15, 0x03, 0x02, 0x00, 0x02, 0x02, 0x28]),
            Some("TLSv1.1")
        );
    }

    #[test]
    fn name_mismatch_lists_the_names_and_sets_tls_server_name() {
        let e = relay_failure(
            &failed(
                Cause::Tls(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForNameContext {
                        expected: rustls::pki_types::ServerName::try_from("relay.example")
                            .unwrap_or_else(|_| unreachable!()),
                        presented: vec!["mx1.example".into(), "mx2.example".into()],
                    },
                )),
                &[0x16, 0x03, 0x03],
            ),
            &relay(),
        );
        assert!(
            e.problem
                .contains("is for mx1.example, mx2.example, not for relay.example"),
            "{e:?}"
        );
        assert_eq!(e.settings, ["tls_server_name = \"mx1.example\""]);
    }

    fn leaf(self_signed: bool, is_ca: bool) -> CertInfo {
        CertInfo {
            subject: "CN=relay".into(),
            issuer: if self_signed { "CN=relay" } else { "CN=Lab CA" }.into(),
            names: vec!["relay.example".into()],
            not_before: 0,
            not_after: 86_400,
            is_ca,
            self_signed,
            sha256: "AB:CD".into(),
        }
    }

    fn refused(verdict: CertificateError, leaf: CertInfo) -> Failure {
        failed(
            Cause::Tls(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(Rejected { verdict, leaf })),
            ))),
            &[0x16, 0x03, 0x03],
        )
    }

    #[test]
    fn a_self_signed_certificate_without_ca_file_suggests_one_and_a_pin() {
        let webpki =
            CertificateError::Other(OtherError(Arc::new(io::Error::other("CaUsedAsEndEntity"))));
        let e = relay_failure(&refused(webpki, leaf(true, true)), &relay());
        assert!(
            e.problem.starts_with(
                "the relay's certificate (CN=relay) is self-signed (a CA:TRUE certificate"
            ),
            "{e:?}"
        );
        assert!(
            e.problem
                .ends_with("this system's trusted CAs (no ca_file is set)"),
            "{e:?}"
        );
        assert_eq!(
            e.settings,
            [
                "ca_file = \"/etc/relaymail/relay-ca.pem\"",
                "fingerprint = \"sha256:AB:CD\""
            ]
        );
        // Implicit TLS: no -starttls in the command that saves it.
        assert!(
            e.fix.contains("`openssl s_client -connect relay.example:465 -servername relay.example </dev/null | openssl x509 > /etc/relaymail/relay-ca.pem`"),
            "{e:?}"
        );
    }

    #[test]
    fn with_ca_file_set_the_certificate_goes_into_it_and_only_the_pin_is_a_new_line() {
        let ca = Path::new("/etc/relaymail/lab.pem");
        let with_ca = Relay {
            ca_file: Some(ca),
            mode: TlsMode::Starttls,
            port: 587,
            ..relay()
        };
        let e = relay_failure(
            &refused(CertificateError::UnknownIssuer, leaf(false, false)),
            &with_ca,
        );
        assert_eq!(
            e.problem,
            "the relay's certificate (CN=relay) is issued by CN=Lab CA, an issuer that is not in ca_file /etc/relaymail/lab.pem"
        );
        assert!(
            e.fix.contains("in /etc/relaymail/lab.pem (ca_file)"),
            "{e:?}"
        );
        assert_eq!(e.settings, ["fingerprint = \"sha256:AB:CD\""]);
    }
}
