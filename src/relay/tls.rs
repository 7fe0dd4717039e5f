//! The client TLS configuration for one smarthost: trust (system roots,
//! a CA file, or a pinned fingerprint), minimum version, client
//! certificate and the name to verify. Built once per run.
//!
//! Verification is webpki's, with one exception (issue 16): a server
//! certificate that is byte for byte one of the certificates in
//! `ca_file` is trusted as given, whatever its CA flag, because the admin
//! named that very certificate; its validity dates and its name (or
//! `tls_server_name`) are still checked, and the handshake signature
//! still proves the relay holds its key. Nothing else is relaxed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, DistinguishedName,
    RootCertStore, SignatureScheme,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::{MinTls, Mode, Smarthost};

/// What `Client::connect`/`starttls` need: the config and the name.
pub struct Settings {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

/// The TLS settings to reach `name` (the smarthost or a fallback). An
/// error is a sentence for the log: the message is deferred until the
/// admin fixes the file it names.
pub fn settings(host: &Smarthost, name: &str, mode: Mode) -> Result<Settings, String> {
    build(host, name, mode, false)
}

/// Settings that accept any certificate (the handshake signature is still
/// checked), for `relaymail doctor` to show a chain that failed to verify.
/// Never used to send mail.
pub fn inspection_settings(host: &Smarthost, name: &str) -> Result<Settings, String> {
    build(host, name, Mode::User, true)
}

fn build(host: &Smarthost, name: &str, mode: Mode, inspect: bool) -> Result<Settings, String> {
    let verify_name = host.tls_server_name.as_deref().unwrap_or(name);
    let server_name = ServerName::try_from(verify_name.to_string()).map_err(|_| {
        format!("{verify_name:?} is not a valid TLS server name (set tls_server_name)")
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match host.tls_min_version {
        MinTls::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinTls::V1_3 => &[&rustls::version::TLS13],
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = if host.fingerprint.is_some() || inspect {
        // The pinned fingerprint replaces CA and name checks; it is
        // compared right after the handshake, before AUTH or any mail.
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedLater { provider }))
    } else {
        let (roots, exact) = match &host.ca_file {
            Some(ca) => {
                let certs = certificates(ca, "ca_file")?;
                (roots_from(ca, &certs)?, certs)
            }
            None => (system_roots()?, Vec::new()),
        };
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("TLS setup: {e}"))?;
        // Custom only in that it adds the exact-certificate case (see the
        // module doc) and names the refused certificate in its errors.
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier { webpki, exact }))
    };
    let config = match (&host.client_cert, &host.client_key) {
        (Some(cert), Some(key)) if !inspect => {
            crate::creds::check_private(key, "client_key", mode).map_err(|e| e.message)?;
            let chain = certificates(cert, "client_cert")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                format!(
                    "client_key {}: {e} (a PEM private key: PKCS#8, RSA or EC)",
                    key.display()
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                format!(
                    "client_cert {} / client_key {}: {e}",
                    cert.display(),
                    host.client_key
                        .as_deref()
                        .unwrap_or(Path::new(""))
                        .display()
                )
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Settings {
        config: Arc::new(config),
        server_name,
    })
}

/// "TLSv1.3/TLS_AES_256_GCM_SHA384" (the IANA cipher name, as OpenSSL
/// and Postfix print it).
pub fn describe(conn: &ClientConnection) -> String {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    let suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    let suite = match suite.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => suite,
    };
    format!("{version}/{suite}")
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

fn roots_from(path: &Path, certs: &[CertificateDer<'static>]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert.clone())
            .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// Whether `der` is byte for byte one of the certificates in `ca_file`
/// (for doctor, to say which way the certificate was trusted).
pub fn named_in_ca_file(host: &Smarthost, der: &[u8]) -> bool {
    host.ca_file.as_deref().is_some_and(|ca| {
        certificates(ca, "ca_file").is_ok_and(|certs| certs.iter().any(|c| c.as_ref() == der))
    })
}

/// Where an admin without a `ca_file` would keep the relay's certificate.
pub fn suggested_ca_file(mode: Mode) -> PathBuf {
    match mode {
        Mode::System => PathBuf::from("/etc/relaymail/relay-ca.pem"),
        Mode::User => directories::ProjectDirs::from("", "", "relaymail")
            .map(|d| d.config_dir().join("relay-ca.pem"))
            .unwrap_or_else(|| PathBuf::from("relay-ca.pem")),
    }
}

/// webpki's verdict, the exact-certificate case, and errors that carry
/// the refused certificate's facts (`tls_failure::Rejected`).
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// The certificates of `ca_file` (none with system roots).
    exact: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => return Ok(verified),
            Err(e) => e,
        };
        let verdict = if self.exact.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            match exactly_this(end_entity, server_name, now) {
                Ok(()) => return Ok(ServerCertVerified::assertion()),
                Err(e) => e,
            }
        } else {
            verdict
        };
        Err(crate::tls_failure::rejected(verdict, end_entity))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.webpki.root_hint_subjects()
    }
}

/// The checks kept for a certificate the admin named exactly: it is
/// valid now, and it holds the name relaymail connects to.
fn exactly_this(
    cert: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let invalid = rustls::Error::InvalidCertificate;
    let (_, parsed) =
        X509Certificate::from_der(cert).map_err(|_| invalid(CertificateError::BadEncoding))?;
    let at = now.as_secs();
    let validity = parsed.validity();
    let unix =
        |t: i64| UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(t).unwrap_or(0)));
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    if i64::try_from(at).unwrap_or(i64::MAX) < not_before {
        return Err(invalid(CertificateError::NotValidYetContext {
            time: now,
            not_before: unix(not_before),
        }));
    }
    if i64::try_from(at).unwrap_or(i64::MAX) > not_after {
        return Err(invalid(CertificateError::ExpiredContext {
            time: now,
            not_after: unix(not_after),
        }));
    }
    let end_entity = rustls::server::ParsedCertificate::try_from(cert)?;
    rustls::client::verify_server_name(&end_entity, server_name)
}

/// The system trust store, read once per process.
fn system_roots() -> Result<RootCertStore, String> {
    static ROOTS: OnceLock<Result<RootCertStore, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                Err(format!(
                    "no trusted CA certificates found on this system ({}); install ca-certificates or set ca_file",
                    found
                        .errors
                        .first()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "empty store".into())
                ))
            } else {
                Ok(roots)
            }
        })
        .clone()
}

/// Accepts any certificate whose handshake signature is valid; the
/// relay compares the pinned fingerprint right after the handshake.
#[derive(Debug)]
struct PinnedLater {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedLater {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
