//! The client TLS configuration for one smarthost: trust (system roots,
//! a CA file, or a pinned fingerprint), minimum version, client
//! certificate and the name to verify. Built once per run.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

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
        let roots = match &host.ca_file {
            Some(ca) => roots_from_file(ca)?,
            None => system_roots()?,
        };
        builder.with_root_certificates(roots)
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

fn roots_from_file(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path, "ca_file")? {
        roots
            .add(cert)
            .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    }
    Ok(roots)
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
