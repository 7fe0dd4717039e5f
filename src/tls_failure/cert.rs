//! A certificate as an admin reads it (subject, issuer, names, dates,
//! fingerprint), and the verifier's refusal that carries it, so that the
//! words name the certificate that was refused.

use std::fmt;
use std::sync::Arc;

use rustls::{CertificateError, OtherError};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::words::certificate_words;

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
