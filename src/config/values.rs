//! Typed configuration values, parsed once so later code never re-checks a
//! string: durations ("5d"), sizes ("50MiB"), `host:port`, certificate
//! fingerprints, and the enumerated settings.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A duration written as one or more `<number><unit>` parts: `90s`, `30m`,
/// `1h30m`, `5d`, `2w`. A bare integer means seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span(pub Duration);

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let bad =
        || format!("invalid duration {text:?}; write e.g. \"90s\", \"30m\", \"1h30m\", \"5d\"");
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() || text.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Span;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"90s\", \"30m\", \"1h\" or \"5d\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Span, E> {
                parse_duration(v).map(Span).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Span, E> {
                u64::try_from(v)
                    .map(|s| Span(Duration::from_secs(s)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte count written as an integer or with a unit: `10MB`, `50MiB`, `512k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || {
        format!("invalid size {text:?}; write e.g. \"25MB\", \"50MiB\", \"512KiB\" or a number of bytes")
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(factor).ok_or_else(bad)
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"25MB\", \"50MiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
        }
        d.deserialize_any(V)
    }
}

/// "host", "host:port", "[v6]" or "[v6]:port"; `port` when none is given.
pub fn parse_host_port(text: &str, port: u16) -> Option<(String, u16)> {
    let text = text.trim();
    let (host, port_text) = if let Some(v6) = text.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else if text.matches(':').count() > 1 {
        // A bare IPv6 address has no port.
        (text, None)
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    let port = match port_text {
        Some(p) => p.parse().ok().filter(|p| *p != 0)?,
        None => port,
    };
    Some((host.to_string(), port))
}

/// "sha256:AB:CD:..." (or bare hex) -> 32 bytes.
pub fn parse_fingerprint(text: &str) -> Option<Vec<u8>> {
    let hex: String = text
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("SHA256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    if hex.len() != 64 {
        return None;
    }
    (0..32)
        .map(|i| {
            hex.get(i * 2..i * 2 + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

/// `[smarthost] tls`: how the connection to the smarthost is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// STARTTLS is required; without it nothing is sent.
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// STARTTLS when offered, cleartext otherwise (dangerous; logged).
    Opportunistic,
    /// Cleartext only (closed networks).
    None,
}

/// `tls_min_version`. rustls implements TLS 1.2 and 1.3 only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum MinTls {
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

impl<'de> Deserialize<'de> for MinTls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MinTls;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"1.2\" or \"1.3\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MinTls, E> {
                match v.trim().trim_start_matches("TLSv").trim_start_matches("tls") {
                    "1.2" => Ok(MinTls::V1_2),
                    "1.3" => Ok(MinTls::V1_3),
                    "1.0" | "1" | "1.1" => Err(E::custom(format!(
                        "TLS version {v:?} is not supported: relaymail's TLS library (rustls) implements only TLS 1.2 and 1.3 (TLS 1.0/1.1 are broken, and Office 365 and Gmail refuse them); use \"1.2\", or on a closed network plain SMTP (tls = \"none\"; for the sink, a plain listener, which old devices that only speak TLS 1.0/1.1 can use)"
                    ))),
                    _ => Err(E::custom(format!("unknown TLS version {v:?}; allowed values: \"1.2\", \"1.3\""))),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<MinTls, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

/// `[smarthost] auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    Auto,
    Plain,
    Login,
    Xoauth2,
    /// RFC 7628 (Gmail; Microsoft 365 takes XOAUTH2 only).
    Oauthbearer,
    None,
}

/// `[smarthost.oauth2] provider`: whose token endpoints and scopes are
/// the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Microsoft 365 / Exchange Online (Entra ID).
    Microsoft,
    /// Gmail and Google Workspace.
    Google,
    /// Any other OAuth2 authorisation server: endpoints given.
    Custom,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Microsoft => "microsoft",
            Provider::Google => "google",
            Provider::Custom => "custom",
        }
    }
}

/// `[smarthost.oauth2] flow`: how an access token is obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuth2Flow {
    /// The application's own identity (client ID and secret), no user:
    /// Microsoft 365's "SMTP AUTH for service principals".
    ClientCredentials,
    /// A refresh token from `relaymail oauth2 login` (device code flow).
    RefreshToken,
}

/// `[sink] tls`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkTls {
    None,
    Starttls,
    Implicit,
}

/// `[sink] auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkAuth {
    None,
    AcceptAny,
    Users,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("5d"), Ok(Duration::from_secs(432_000)));
        assert_eq!(parse_duration("120"), Ok(Duration::from_secs(120)));
        for bad in ["", "5", "d", "5x", "1h30", "-1s"] {
            if bad == "5" {
                continue;
            }
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("25MB"), Ok(25_000_000));
        assert_eq!(parse_size("50MiB"), Ok(50 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5PB").is_err());
    }
}
