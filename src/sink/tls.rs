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
    let names = vec![hostname.to_string(), "localhost".to_string()];
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

/// The highest TLS version a ClientHello offers, read from the first
/// bytes a client sent (for the log line of a failed handshake).
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
    Some(match legacy {
        0x0300 => "SSLv3",
        0x0301 => "TLSv1.0",
        0x0302 => "TLSv1.1",
        0x0303 => "TLSv1.2",
        _ => "unknown",
    })
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
