//! TLS for the sink's STARTTLS and implicit-TLS listeners: TLS 1.2 and 1.3
//! only (rustls). The certificate comes from files, or is generated once
//! (self-signed, for the host name and localhost) and kept 0600 in the
//! state directory, so devices that pinned it keep working after a restart.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::config::MinTls;

static ONLY_1_3: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
static FROM_1_2: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Where the certificate and key come from.
pub enum Source<'a> {
    Files { cert: &'a Path, key: &'a Path },
    Generated { dir: &'a Path, hostname: &'a str },
}

pub fn server_config(source: Source<'_>, min: MinTls) -> Result<Arc<ServerConfig>, String> {
    let (cert_path, key_path) = match source {
        Source::Files { cert, key } => (cert.to_path_buf(), key.to_path_buf()),
        Source::Generated { dir, hostname } => generated(dir, hostname)?,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|iter| iter.collect())
        .map_err(|e| format!("cannot read certificate {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in the file",
            cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("cannot read private key {}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(match min {
            MinTls::V1_3 => ONLY_1_3,
            MinTls::V1_2 => FROM_1_2,
        })
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "certificate {} and key {} do not form a usable pair: {e}",
                cert_path.display(),
                key_path.display()
            )
        })?;
    // No TLS 1.3 session tickets: SMTP clients hardly ever resume, and
    // libESMTP 1.1 (esmtp) mostly hangs when tickets follow the handshake.
    let mut config = config;
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The generated pair in `dir`, made on first use.
fn generated(dir: &Path, hostname: &str) -> Result<(PathBuf, PathBuf), String> {
    let cert = dir.join("sink-cert.pem");
    let key = dir.join("sink-key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // Its name, and localhost for clients on this host (once: a client's
    // "it is for ..." should not list a name twice).
    let mut names = vec![hostname.to_string()];
    if !hostname.eq_ignore_ascii_case("localhost") {
        names.push("localhost".to_string());
    }
    let pair = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot generate a certificate: {e}"))?;
    write_private(&key, pair.signing_key.serialize_pem().as_bytes())?;
    write_private(&cert, pair.cert.pem().as_bytes())?;
    Ok((cert, key))
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let result = (|| -> io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(hostname: &str) -> Vec<String> {
        let dir = tempfile::tempdir().expect("tmp");
        let (cert, _) = generated(dir.path(), hostname).expect("generated");
        let der = CertificateDer::from_pem_file(&cert).expect("pem");
        crate::tls_failure::CertInfo::parse(&der).names
    }

    #[test]
    fn generated_certificate_names_the_host_and_localhost_once_each() {
        assert_eq!(names("sink.example"), ["sink.example", "localhost"]);
        assert_eq!(names("localhost"), ["localhost"]);
    }

    #[test]
    fn generated_certificate_is_kept_and_reused() {
        let dir = tempfile::tempdir().expect("tmp");
        let first = server_config(
            Source::Generated {
                dir: dir.path(),
                hostname: "sink.example",
            },
            MinTls::V1_2,
        );
        assert!(first.is_ok(), "{:?}", first.err());
        let key = dir.path().join("sink-key.pem");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&key).expect("key").permissions().mode() & 0o777,
            0o600
        );
        let before = fs::read(&key).expect("key");
        assert!(server_config(
            Source::Generated {
                dir: dir.path(),
                hostname: "sink.example"
            },
            MinTls::V1_2
        )
        .is_ok());
        assert_eq!(
            fs::read(&key).expect("key"),
            before,
            "reused, not regenerated"
        );
    }
}
