//! rustls's errors, certificate verdicts and alerts in plain words,
//! without a fix and without a Rust debug string.

use rustls::{AlertDescription, CertificateError, OtherError, PeerIncompatible};

use super::cert::{date, CertInfo, Rejected};

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
pub(super) fn certificate_words(verdict: &CertificateError, leaf: Option<&CertInfo>) -> String {
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
pub(super) fn an(alert: AlertDescription) -> String {
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

/// `DnsName("a.example")` -> `a.example`; other text unchanged.
pub(super) fn unquoted(name: &str) -> String {
    match (name.find('"'), name.rfind('"')) {
        (Some(start), Some(end)) if end > start => {
            name.get(start + 1..end).unwrap_or(name).to_string()
        }
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Arc;

    use super::*;

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
