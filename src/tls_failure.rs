//! TLS failures in plain words (issue 16): what went wrong, naming what
//! was presented and what was expected, and the setting that fixes it.
//! One mapping serves delivery's deferral reasons (log line, `mailq`,
//! `queue show`), `relaymail doctor` and the sink's handshake-failure log
//! lines, so all of them say the same thing the same way.
//!
//! This module only explains: it never decides whether a certificate is
//! trusted (that is `relay::tls`: webpki, or the exact certificate named
//! in `ca_file`). It depends on rustls, x509-parser and config's value
//! types only, so the sink links it without linking `relay`. No text it
//! makes contains a Rust debug string.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::{AlertDescription, CertificateError, OtherError, PeerIncompatible};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::{MinTls, SinkTls, TlsMode};

/// How many of the peer's first bytes are kept to explain a failure (a
/// hello's version, a plain-text greeting).
pub const PEER_BYTES: usize = 512;

/// A certificate as an admin reads it (`openssl x509 -text` words).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// The subjectAltName DNS names and IP addresses, the only names TLS
    /// clients match (RFC 6125; the CN is not used).
    pub names: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// basicConstraints CA:TRUE (what `openssl req -x509` sets by default).
    pub is_ca: bool,
    /// Issuer and subject are the same name.
    pub self_signed: bool,
    /// SHA-256 of the DER, "AB:CD:...", as `fingerprint = "sha256:..."`
    /// takes it.
    pub sha256: String,
}

impl CertInfo {
    pub fn parse(der: &[u8]) -> CertInfo {
        let sha256 = fingerprint(der);
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return CertInfo {
                subject: "(a certificate that cannot be parsed)".into(),
                issuer: "(unknown)".into(),
                names: Vec::new(),
                not_before: 0,
                not_after: 0,
                is_ca: false,
                self_signed: false,
                sha256,
            };
        };
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.push(dns.to_string()),
                    GeneralName::IPAddress(ip) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*ip) {
                            names.push(std::net::Ipv4Addr::from(v4).to_string());
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*ip) {
                            names.push(std::net::Ipv6Addr::from(v6).to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        let shown = |name: &x509_parser::x509::X509Name<'_>| {
            let text = name.to_string();
            if text.is_empty() {
                "(an empty name)".to_string()
            } else {
                text
            }
        };
        CertInfo {
            subject: shown(cert.subject()),
            issuer: shown(cert.issuer()),
            names,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            is_ca: cert.is_ca(),
            self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
            sha256,
        }
    }

    /// `fingerprint = "sha256:..."`, the line that pins this certificate.
    pub fn pin_line(&self) -> String {
        format!("fingerprint = \"sha256:{}\"", self.sha256)
    }
}

/// SHA-256 of `der` as upper-case hex pairs joined by colons.
pub fn fingerprint(der: &[u8]) -> String {
    fingerprint_hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// A digest as upper-case hex pairs joined by colons ("AB:CD:...").
pub fn fingerprint_hex(digest: &[u8]) -> String {
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// "2024-05-01 12:00 UTC".
pub fn date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| unix.to_string())
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// What a certificate verifier returns instead of the bare verdict: the
/// verdict and the certificate it judged, so that the words can name the
/// subject, the issuer and the fingerprint. It travels through rustls as
/// `CertificateError::Other` (the relay is then sent a
/// `certificate_unknown` alert).
#[derive(Debug)]
pub struct Rejected {
    pub verdict: CertificateError,
    pub leaf: CertInfo,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&certificate_words(&self.verdict, Some(&self.leaf)))
    }
}

impl std::error::Error for Rejected {}

/// Wraps a verifier's refusal of `leaf` with the certificate's facts.
/// Errors that are not about the certificate pass unchanged.
pub fn rejected(verdict: rustls::Error, leaf: &[u8]) -> rustls::Error {
    match verdict {
        rustls::Error::InvalidCertificate(verdict) => rustls::Error::InvalidCertificate(
            CertificateError::Other(OtherError(Arc::new(Rejected {
                verdict,
                leaf: CertInfo::parse(leaf),
            }))),
        ),
        other => other,
    }
}

/// Why a TLS handshake (or a later TLS record) failed, as one side saw it.
#[derive(Debug)]
pub enum Cause {
    /// rustls refused, or the peer sent an alert.
    Tls(rustls::Error),
    /// The peer closed the connection (end of file or reset).
    Closed,
    /// The peer stopped answering: a read or write timed out.
    TimedOut,
    /// Another I/O error.
    Io(String),
}

/// A failed handshake: the cause and the first bytes the peer sent.
#[derive(Debug)]
pub struct Failure {
    pub cause: Cause,
    pub peer_bytes: Vec<u8>,
}

impl Failure {
    /// From what rustls's `complete_io` returned (rustls reports its own
    /// errors inside an `io::Error`).
    pub fn from_io(e: io::Error, peer_bytes: Vec<u8>) -> Failure {
        let cause = match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => Cause::Tls(tls.clone()),
            None => match e.kind() {
                io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => Cause::Closed,
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Cause::TimedOut,
                _ => Cause::Io(e.to_string()),
            },
        };
        Failure { cause, peer_bytes }
    }
}

impl fmt::Display for Failure {
    /// Plain words without context (no fix); `relay_failure` and
    /// `client_failure` say more.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Cause::Tls(e) => f.write_str(&describe(e)),
            Cause::Closed => f.write_str("the peer closed the connection"),
            Cause::TimedOut => f.write_str("the peer stopped answering"),
            Cause::Io(e) => f.write_str(e),
        }
    }
}

/// A failure explained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// What went wrong, naming what was presented and what was expected.
    pub problem: String,
    /// What to do; it quotes `settings` verbatim.
    pub fix: String,
    /// Configuration lines that fix it, exactly as they are to be
    /// written in the section concerned (`[smarthost]` for delivery,
    /// `[sink]` for the sink). Empty when no setting can fix it (an
    /// expired certificate must be renewed; nothing here accepts it).
    pub settings: Vec<String>,
    /// The TLS mode the relay's port really speaks, when the failure
    /// shows that `tls` is set wrong for it.
    pub port_speaks: Option<TlsMode>,
}

impl Explanation {
    fn new(problem: impl Into<String>, fix: impl Into<String>, settings: Vec<String>) -> Self {
        Explanation {
            problem: problem.into(),
            fix: fix.into(),
            settings,
            port_speaks: None,
        }
    }

    fn speaks(mut self, mode: TlsMode) -> Self {
        self.port_speaks = Some(mode);
        self
    }

    /// One line for a log field or a deferral reason.
    pub fn sentence(&self) -> String {
        format!("{}; fix: {}", self.problem, self.fix)
    }
}

// ---------------------------------------------------------------------
// Delivery and doctor: relaymail is the TLS client.
// ---------------------------------------------------------------------

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

/// `DnsName("a.example")` -> `a.example`; other text unchanged.
fn unquoted(name: &str) -> String {
    match (name.find('"'), name.rfind('"')) {
        (Some(start), Some(end)) if end > start => {
            name.get(start + 1..end).unwrap_or(name).to_string()
        }
        _ => name.to_string(),
    }
}

fn seconds(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
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

// ---------------------------------------------------------------------
// The sink: relaymail is the TLS server.
// ---------------------------------------------------------------------

/// The sink listener that saw the failure, and the others it has.
pub struct Listener<'a> {
    pub addr: String,
    pub mode: SinkTls,
    pub min_version: MinTls,
    /// The certificate it presents (a path), for the client to trust.
    pub certificate: &'a str,
    /// Every bound listener of the sink, with its mode.
    pub all: &'a [(String, SinkTls)],
}

impl Listener<'_> {
    fn others(&self, mode: SinkTls) -> Vec<&str> {
        self.all
            .iter()
            .filter(|(_, m)| *m == mode)
            .map(|(a, _)| a.as_str())
            .collect()
    }

    /// "the plain listener 0.0.0.0:25", or how to add one.
    fn plain_listener(&self) -> String {
        match self.others(SinkTls::None).as_slice() {
            [] => "a plain listener (add one: --listener 0.0.0.0:25=none, or [[sink.listener]] with addr = \"0.0.0.0:25\" and tls = \"none\")".into(),
            list => format!("the plain listener {}", list.join(" or ")),
        }
    }

    /// Where a client that waits for a greeting belongs.
    fn greeting_listener(&self) -> String {
        let starttls = self.others(SinkTls::Starttls);
        let plain = self.others(SinkTls::None);
        match (starttls.as_slice(), plain.as_slice()) {
            ([], []) => {
                "a STARTTLS or plain listener (add one: --listener 0.0.0.0:587=starttls)".into()
            }
            ([], plain) => format!("the plain listener {}", plain.join(" or ")),
            (starttls, _) => format!("the STARTTLS listener {}", starttls.join(" or ")),
        }
    }
}

/// The highest TLS version a ClientHello offers, from a client's first
/// bytes; "not TLS" for anything else, None for nothing at all.
pub fn offered_version(hello: &[u8]) -> Option<&'static str> {
    // Record header (5 bytes), handshake header (4), then client_version.
    if hello.first() != Some(&0x16) {
        return if hello.is_empty() {
            None
        } else {
            Some("not TLS")
        };
    }
    let legacy = u16::from_be_bytes([*hello.get(9)?, *hello.get(10)?]);
    if legacy == 0x0303 && offers_tls13(hello) {
        return Some("TLSv1.3");
    }
    Some(version_name(legacy))
}

fn version_name(version: u16) -> &'static str {
    match version {
        0x0300 => "SSLv3",
        0x0301 => "TLSv1.0",
        0x0302 => "TLSv1.1",
        0x0303 => "TLSv1.2",
        _ => "an unknown TLS version",
    }
}

/// Whether the supported_versions extension (43) lists TLS 1.3.
fn offers_tls13(hello: &[u8]) -> bool {
    let u16_at = |pos: usize| Some(u16::from_be_bytes([*hello.get(pos)?, *hello.get(pos + 1)?]));
    let mut pos = 11 + 32; // client_version + random
    let Some(&sid_len) = hello.get(pos) else {
        return false;
    };
    pos += 1 + usize::from(sid_len);
    let Some(suites) = u16_at(pos) else {
        return false;
    };
    pos += 2 + usize::from(suites);
    let Some(&comp_len) = hello.get(pos) else {
        return false;
    };
    pos += 1 + usize::from(comp_len) + 2; // compression methods, extensions length
    while let (Some(kind), Some(len)) = (u16_at(pos), u16_at(pos + 2)) {
        let len = usize::from(len);
        if kind == 43 {
            let list = hello.get(pos + 5..pos + 4 + len).unwrap_or(&[]);
            return list.chunks(2).any(|v| v == [0x03, 0x04]);
        }
        pos += 4 + len;
    }
    false
}

/// Why a client's handshake with a sink listener failed, and what to do.
pub fn client_failure(failure: &Failure, listener: &Listener<'_>) -> Explanation {
    let bytes = &failure.peer_bytes;
    let offered = offered_version(bytes);
    let mode = match listener.mode {
        SinkTls::Implicit => "implicit-TLS",
        _ => "STARTTLS",
    };
    if let Some(v @ ("SSLv3" | "TLSv1.0" | "TLSv1.1")) = offered {
        return Explanation::new(
            format!(
                "TLS handshake failed: the client offered {v}, and this listener speaks TLS 1.2 and 1.3 only (TLS 1.0/1.1 are deprecated as insecure, RFC 8996, and rustls does not implement them)"
            ),
            format!(
                "an older device must use {}",
                listener.plain_listener()
            ),
            Vec::new(),
        );
    }
    if offered == Some("TLSv1.2") && listener.min_version == MinTls::V1_3 {
        return Explanation::new(
            "TLS handshake failed: the client offered TLSv1.2, and tls_min_version = \"1.3\" refuses it",
            format!(
                "set tls_min_version = \"1.2\" in [sink] (TLS 1.2 is still safe), or use {}",
                listener.plain_listener()
            ),
            vec!["tls_min_version = \"1.2\"".into()],
        );
    }
    if offered == Some("not TLS") && listener.mode == SinkTls::Implicit {
        return Explanation::new(
            format!(
                "the client spoke plain SMTP (\"{}\") on this implicit-TLS listener, which expects TLS from the first byte",
                preview(bytes)
            ),
            format!(
                "the client is set up for STARTTLS or no TLS: point it at {}, or switch it to SSL/TLS (implicit TLS)",
                listener.greeting_listener()
            ),
            Vec::new(),
        );
    }
    match &failure.cause {
        Cause::Closed | Cause::TimedOut if bytes.is_empty() && listener.mode == SinkTls::Implicit => {
            Explanation::new(
                if matches!(failure.cause, Cause::Closed) {
                    "the client closed the connection without sending a TLS hello on this implicit-TLS listener: it was most likely waiting for an SMTP greeting (a STARTTLS or plain SMTP client)"
                } else {
                    "the client sent no TLS hello on this implicit-TLS listener: it is most likely waiting for an SMTP greeting (a STARTTLS or plain SMTP client)"
                },
                format!(
                    "point it at {}, or switch it to SSL/TLS (implicit TLS)",
                    listener.greeting_listener()
                ),
                Vec::new(),
            )
        }
        Cause::Tls(rustls::Error::AlertReceived(
            alert @ (AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied),
        )) => Explanation::new(
            format!(
                "TLS handshake failed: the client refused this listener's certificate ({} alert)",
                an(*alert)
            ),
            format!(
                "make the client trust {} (import it as trusted, or pin its fingerprint), or point it at {}",
                listener.certificate,
                listener.plain_listener()
            ),
            Vec::new(),
        ),
        Cause::Tls(rustls::Error::AlertReceived(AlertDescription::CertificateExpired)) => {
            Explanation::new(
                "TLS handshake failed: the client says this listener's certificate has expired or is not valid yet (a certificate_expired alert)",
                format!(
                    "check the dates of {} (openssl x509 -noout -dates -in it) and the clocks of this host and the client",
                    listener.certificate
                ),
                Vec::new(),
            )
        }
        Cause::Tls(rustls::Error::AlertReceived(AlertDescription::ProtocolVersion))
        | Cause::Tls(rustls::Error::PeerIncompatible(
            PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled,
        )) => Explanation::new(
            format!(
                "TLS handshake failed: the client offered {}, and this listener speaks {}",
                offered.unwrap_or("no version this listener speaks"),
                match listener.min_version {
                    MinTls::V1_2 => "TLS 1.2 and 1.3 only",
                    MinTls::V1_3 => "TLS 1.3 only (tls_min_version = \"1.3\")",
                }
            ),
            format!("an older device must use {}", listener.plain_listener()),
            Vec::new(),
        ),
        Cause::Tls(rustls::Error::PeerIncompatible(
            PeerIncompatible::NoCipherSuitesInCommon
            | PeerIncompatible::NoKxGroupsInCommon
            | PeerIncompatible::NoSignatureSchemesInCommon,
        )) => Explanation::new(
            format!(
                "TLS handshake failed: the client ({}) offers no cipher suite, key exchange or signature scheme this listener speaks (ECDHE with AES-GCM or ChaCha20-Poly1305)",
                offered.unwrap_or("TLS")
            ),
            format!(
                "an old device (RC4, 3DES or CBC ciphers only) must use {}",
                listener.plain_listener()
            ),
            Vec::new(),
        ),
        Cause::Closed => Explanation::new(
            format!(
                "TLS handshake failed: the client ({}) closed the connection during the handshake, after its hello, without saying why",
                offered.unwrap_or("TLS")
            ),
            format!(
                "it most likely does not trust this listener's certificate {}: make it trust it, or point it at {}",
                listener.certificate,
                listener.plain_listener()
            ),
            Vec::new(),
        ),
        Cause::Tls(e) => Explanation::new(
            format!(
                "TLS handshake failed on this {mode} listener: {}; the client offered {}",
                describe(e),
                offered.unwrap_or("nothing")
            ),
            format!(
                "this listener speaks TLS 1.2 and 1.3 only; a device that cannot must use {}",
                listener.plain_listener()
            ),
            Vec::new(),
        ),
        Cause::TimedOut => Explanation::new(
            "TLS handshake failed: the client stopped answering during the handshake",
            "the client or the network between is stalled",
            Vec::new(),
        ),
        Cause::Io(e) => Explanation::new(
            format!("TLS handshake failed: {e}"),
            "the network between the client and the sink failed",
            Vec::new(),
        ),
    }
}

/// The client started a TLS handshake on a plain or STARTTLS listener:
/// it is set up for implicit TLS (SMTPS, port 465).
pub fn tls_on_plain_listener(listener: &Listener<'_>) -> Explanation {
    let mode = match listener.mode {
        SinkTls::Starttls => "STARTTLS",
        _ => "plain",
    };
    let implicit = listener.others(SinkTls::Implicit);
    let target = match implicit.as_slice() {
        [] => "an implicit-TLS listener (add one: --listener 0.0.0.0:465=implicit)".to_string(),
        list => format!("the implicit-TLS listener {}", list.join(" or ")),
    };
    Explanation::new(
        format!(
            "the client started a TLS handshake on this {mode} listener, which greets in plain text first: it is set up for implicit TLS (SMTPS)"
        ),
        format!(
            "point it at {target}, or switch it to STARTTLS{}",
            if listener.mode == SinkTls::None {
                " (on a STARTTLS listener) or no TLS"
            } else {
                ""
            }
        ),
        Vec::new(),
    )
}

// ---------------------------------------------------------------------
// Words for rustls's errors, without debug strings.
// ---------------------------------------------------------------------

/// A rustls error in plain words, without a fix.
pub fn describe(e: &rustls::Error) -> String {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(c) => format!(
            "the certificate was refused: {}",
            certificate_words(c, None)
        ),
        E::AlertReceived(a) => format!("the peer ended the handshake with {} alert", an(*a)),
        E::PeerIncompatible(p) => format!(
            "the two sides have nothing in common: {}",
            incompatible_words(p)
        ),
        E::PeerMisbehaved(p) => format!(
            "the peer broke the TLS protocol ({})",
            camel_words(&format!("{p:?}"))
        ),
        E::InvalidMessage(_) => "the peer sent a malformed TLS message".into(),
        E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            "the peer sent a TLS message out of order".into()
        }
        E::NoCertificatesPresented => "the peer sent no certificate".into(),
        E::DecryptError => {
            "a TLS record could not be decrypted (corrupted, or a broken middlebox)".into()
        }
        E::EncryptError => "a TLS record could not be encrypted".into(),
        E::PeerSentOversizedRecord => "the peer sent an oversized TLS record".into(),
        E::HandshakeNotComplete => "the handshake did not complete".into(),
        E::NoApplicationProtocol => "no application protocol in common".into(),
        E::FailedToGetCurrentTime => "this host's clock could not be read".into(),
        E::FailedToGetRandomBytes => "the system's random number source failed".into(),
        E::General(text) => text.clone(),
        E::Other(OtherError(inner)) => match inner.downcast_ref::<Rejected>() {
            Some(r) => r.to_string(),
            None => camel_words(&inner.to_string()),
        },
        other => camel_words(&other.to_string()),
    }
}

/// A certificate verdict in words (no fix).
fn certificate_words(verdict: &CertificateError, leaf: Option<&CertInfo>) -> String {
    use CertificateError as C;
    match verdict {
        C::BadEncoding => "it is not correctly encoded".into(),
        C::Expired | C::ExpiredContext { .. } => match leaf {
            Some(l) => format!("it expired on {}", date(l.not_after)),
            None => "it has expired".into(),
        },
        C::NotValidYet | C::NotValidYetContext { .. } => match leaf {
            Some(l) => format!("it is not valid before {}", date(l.not_before)),
            None => "it is not valid yet".into(),
        },
        C::Revoked => "it has been revoked".into(),
        C::UnhandledCriticalExtension => {
            "it has a critical extension that verification does not know".into()
        }
        C::UnknownIssuer => match leaf {
            Some(l) => format!("its issuer {} is not trusted", l.issuer),
            None => "its issuer is not trusted".into(),
        },
        C::BadSignature => "it is not correctly signed by its issuer".into(),
        C::NotValidForName => "it is for another name".into(),
        C::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "it is for {}, not for {}",
            match leaf {
                Some(l) if !l.names.is_empty() => l.names.join(", "),
                _ if presented.is_empty() => "no name at all".to_string(),
                _ => presented
                    .iter()
                    .map(|p| unquoted(p))
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            expected.to_str()
        ),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "it is not for TLS servers (extendedKeyUsage)".into()
        }
        C::ApplicationVerificationFailure => "the application refused it".into(),
        C::Other(OtherError(inner)) => match inner.downcast_ref::<Rejected>() {
            Some(r) => certificate_words(&r.verdict, Some(&r.leaf)),
            None => match inner.to_string().as_str() {
                "CaUsedAsEndEntity" => {
                    "it is a CA certificate (CA:TRUE) used as a server certificate".into()
                }
                "EndEntityUsedAsCa" => "a server certificate is used as the CA of another".into(),
                "UnsupportedCertVersion" => "it is not an X.509 version 3 certificate".into(),
                "PathLenConstraintViolated" => "its chain is longer than a CA allows".into(),
                "NameConstraintViolation" => "its name is outside what its CA may certify".into(),
                "MaximumPathDepthExceeded" => "its chain is too long".into(),
                other => camel_words(other),
            },
        },
        other => camel_words(&format!("{other:?}")),
    }
}

/// "an unknown_ca" / "a bad_certificate": the alert with its article.
fn an(alert: AlertDescription) -> String {
    let name = alert_words(alert);
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

/// A TLS alert's name as RFC 8446 spells it ("unknown_ca").
pub fn alert_words(alert: AlertDescription) -> String {
    use AlertDescription as A;
    let known = match alert {
        A::CloseNotify => "close_notify",
        A::UnexpectedMessage => "unexpected_message",
        A::BadRecordMac => "bad_record_mac",
        A::HandshakeFailure => "handshake_failure",
        A::BadCertificate => "bad_certificate",
        A::UnsupportedCertificate => "unsupported_certificate",
        A::CertificateRevoked => "certificate_revoked",
        A::CertificateExpired => "certificate_expired",
        A::CertificateUnknown => "certificate_unknown",
        A::IllegalParameter => "illegal_parameter",
        A::UnknownCA => "unknown_ca",
        A::AccessDenied => "access_denied",
        A::DecodeError => "decode_error",
        A::DecryptError => "decrypt_error",
        A::ProtocolVersion => "protocol_version",
        A::InsufficientSecurity => "insufficient_security",
        A::InternalError => "internal_error",
        A::InappropriateFallback => "inappropriate_fallback",
        A::UserCanceled => "user_canceled",
        A::MissingExtension => "missing_extension",
        A::UnsupportedExtension => "unsupported_extension",
        A::UnrecognisedName => "unrecognized_name",
        A::CertificateRequired => "certificate_required",
        A::NoApplicationProtocol => "no_application_protocol",
        _ => return format!("TLS alert {}", u8::from(alert)),
    };
    known.to_string()
}

fn incompatible_words(p: &PeerIncompatible) -> String {
    use PeerIncompatible as P;
    match p {
        P::NoCipherSuitesInCommon => "no cipher suite".into(),
        P::NoKxGroupsInCommon => "no key exchange group".into(),
        P::NoSignatureSchemesInCommon => "no signature scheme".into(),
        P::ServerDoesNotSupportTls12Or13 => "the server speaks neither TLS 1.2 nor 1.3".into(),
        P::SupportedVersionsExtensionRequired
        | P::Tls12NotOffered
        | P::Tls12NotOfferedOrEnabled => "no TLS version".into(),
        P::ServerTlsVersionIsDisabledByOurConfig => {
            "the server's TLS version is below tls_min_version".into()
        }
        other => camel_words(&format!("{other:?}")),
    }
}

/// "ServerDoesNotSupportTls12Or13" -> "server does not support tls12 or13",
/// for the few names no table above knows.
fn camel_words(name: &str) -> String {
    let name = name.split(['(', '{']).next().unwrap_or(name).trim();
    let mut out = String::with_capacity(name.len() + 8);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The first line of a plain-text SMTP reply at the start of `bytes`
/// ("220 relay.example ESMTP"), if that is what they are.
fn smtp_greeting(bytes: &[u8]) -> Option<String> {
    let code = bytes.get(..3)?;
    let after = *bytes.get(3)?;
    if !code.iter().all(u8::is_ascii_digit) || !matches!(after, b' ' | b'-' | b'\r' | b'\n') {
        return None;
    }
    Some(preview(bytes))
}

/// The first line of `bytes` as printable text, at most 80 characters.
fn preview(bytes: &[u8]) -> String {
    let line = bytes
        .split(|b| *b == b'\n' || *b == b'\r')
        .next()
        .unwrap_or_default();
    let text: String = line
        .iter()
        .take(80)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
                char::from(b)
            } else {
                '.'
            }
        })
        .collect();
    if text.is_empty() {
        "nothing readable".into()
    } else {
        text
    }
}

/// A TLS record header: a handshake, alert or change-cipher-spec record
/// of version 3.x.
fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(0x14..=0x17)) && bytes.get(1) == Some(&0x03)
}

/// "TLSv1.1" when the relay's first record shows it speaks a version
/// older than TLS 1.2: its ServerHello's version, or (for an alert sent
/// after the version was chosen) the record's. TLS 1.0 in an alert
/// record proves nothing (servers frame early alerts that way).
fn old_server_version(bytes: &[u8]) -> Option<&'static str> {
    let record = u16::from_be_bytes([*bytes.get(1)?, *bytes.get(2)?]);
    match bytes.first()? {
        // A ServerHello: its server_version follows the 4-byte header.
        0x16 if bytes.get(5) == Some(&2) => {
            let chosen = u16::from_be_bytes([*bytes.get(9)?, *bytes.get(10)?]);
            (0x0300..0x0303)
                .contains(&chosen)
                .then(|| version_name(chosen))
        }
        0x15 if record == 0x0300 || record == 0x0302 => Some(version_name(record)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
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

    fn failed(cause: Cause, peer_bytes: &[u8]) -> Failure {
        Failure {
            cause,
            peer_bytes: peer_bytes.to_vec(),
        }
    }

    #[test]
    fn versions_from_client_hello() {
        // TLS 1.0 ClientHello: record 16 03 01, handshake 01, version 03 01.
        let mut hello = vec![
            0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x01,
        ];
        hello.extend_from_slice(&[0u8; 40]);
        assert_eq!(offered_version(&hello), Some("TLSv1.0"));
        assert_eq!(offered_version(b"EHLO x\r\n"), Some("not TLS"));
        assert_eq!(offered_version(b""), None);
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

    #[test]
    fn the_sink_names_the_listener_a_client_belongs_on() {
        let all = [
            ("0.0.0.0:25".to_string(), SinkTls::None),
            ("0.0.0.0:587".to_string(), SinkTls::Starttls),
            ("0.0.0.0:465".to_string(), SinkTls::Implicit),
        ];
        let listener = Listener {
            addr: "0.0.0.0:465".into(),
            mode: SinkTls::Implicit,
            min_version: MinTls::V1_2,
            certificate: "/var/lib/relaymail/sink-cert.pem",
            all: &all,
        };
        let silent = client_failure(&failed(Cause::Closed, b""), &listener);
        assert!(
            silent.fix.contains("the STARTTLS listener 0.0.0.0:587"),
            "{silent:?}"
        );
        let waiting = client_failure(&failed(Cause::TimedOut, b""), &listener);
        assert!(
            waiting
                .problem
                .starts_with("the client sent no TLS hello on this implicit-TLS listener"),
            "{waiting:?}"
        );
        let untrusted = client_failure(
            &failed(
                Cause::Tls(rustls::Error::AlertReceived(
                    AlertDescription::BadCertificate,
                )),
                &[0x16, 0x03, 0x01],
            ),
            &listener,
        );
        assert!(
            untrusted
                .problem
                .ends_with("refused this listener's certificate (a bad_certificate alert)"),
            "{untrusted:?}"
        );
        assert!(
            untrusted.fix.contains("/var/lib/relaymail/sink-cert.pem"),
            "{untrusted:?}"
        );
        let hello = tls_on_plain_listener(&Listener {
            addr: "0.0.0.0:587".into(),
            mode: SinkTls::Starttls,
            ..listener
        });
        assert!(
            hello.fix.contains("the implicit-TLS listener 0.0.0.0:465"),
            "{hello:?}"
        );
    }

    #[test]
    fn unknown_words_never_carry_debug_strings() {
        let all = [
            describe(&rustls::Error::PeerIncompatible(
                PeerIncompatible::NullCompressionRequired,
            )),
            describe(&rustls::Error::AlertReceived(AlertDescription::Unknown(
                200,
            ))),
            describe(&rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(io::Error::other("CaUsedAsEndEntity"))),
            ))),
        ];
        for text in all {
            // No Rust names: no "Other(", no CamelCase words.
            let camel = text.split_whitespace().any(|w| {
                let w = w.trim_matches(|c: char| !c.is_alphanumeric());
                w.chars().skip(1).any(|c| c.is_ascii_lowercase())
                    && w.chars().skip(1).any(|c| c.is_ascii_uppercase())
            });
            assert!(
                !text.contains("Other") && !text.contains("::") && !camel,
                "{text}"
            );
        }
    }
}
