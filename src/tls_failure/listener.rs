//! The sink: relaymail is the TLS server. Why a client's handshake with a
//! sink listener failed, naming the listener it belongs on instead.

use rustls::{AlertDescription, PeerIncompatible};

use super::hello::{offered_version, preview};
use super::words::{an, describe};
use super::{Cause, Explanation, Failure};
use crate::config::{MinTls, SinkTls};

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

#[cfg(test)]
mod tests {
    use super::super::testing::failed;
    use super::*;

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
}
