//! What the peer's first bytes say: the TLS version a ClientHello offers
//! or a ServerHello chose, or the plain-text SMTP greeting sent where TLS
//! was expected. Bytes only: it never reads from the network.

/// How many of the peer's first bytes are kept to explain a failure (a
/// hello's version, a plain-text greeting).
pub const PEER_BYTES: usize = 512;

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

/// The first line of a plain-text SMTP reply at the start of `bytes`
/// ("220 relay.example ESMTP"), if that is what they are.
pub(super) fn smtp_greeting(bytes: &[u8]) -> Option<String> {
    let code = bytes.get(..3)?;
    let after = *bytes.get(3)?;
    if !code.iter().all(u8::is_ascii_digit) || !matches!(after, b' ' | b'-' | b'\r' | b'\n') {
        return None;
    }
    Some(preview(bytes))
}

/// The first line of `bytes` as printable text, at most 80 characters.
pub(super) fn preview(bytes: &[u8]) -> String {
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
pub(super) fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(0x14..=0x17)) && bytes.get(1) == Some(&0x03)
}

/// "TLSv1.1" when the relay's first record shows it speaks a version
/// older than TLS 1.2: its ServerHello's version, or (for an alert sent
/// after the version was chosen) the record's. TLS 1.0 in an alert
/// record proves nothing (servers frame early alerts that way).
pub(super) fn old_server_version(bytes: &[u8]) -> Option<&'static str> {
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
