//! From the merged schema to the typed `Config`: the defaults (some differ
//! between system and user mode) and the checks the schema alone cannot
//! make, each error naming the file and the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::schema::{self, RawConfig};
use super::values::{self, parse_fingerprint, parse_host_port};
use super::{
    oauth2, AuthMethod, Config, Error, KeyringEntry, Listener, Log, MinTls, Mode, OAuth2, Queue,
    Rewrite, Sink, SinkAuth, SinkTls, Smarthost, TlsMode, DEFAULT_MAX_LIFETIME,
    DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MIN_FREE_SPACE, KEYRING_SERVICE, SYSTEM_SPOOL,
};

/// The typed configuration from `raw`, merged from `files`; errors name
/// the last of them.
pub(super) fn resolve(raw: RawConfig, mode: Mode, files: Vec<PathBuf>) -> Result<Config, Error> {
    let where_ = files
        .last()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "built-in defaults".to_string());
    let hostname = match raw.hostname {
        Some(h) => check_domain(&where_, "hostname", h)?,
        None => crate::system::mail_name().to_ascii_lowercase(),
    };
    let spool_dir = match (raw.spool_dir, mode) {
        (Some(dir), _) => dir,
        (None, Mode::System) => PathBuf::from(SYSTEM_SPOOL),
        (None, Mode::User) => user_state_dir().ok_or_else(|| Error::Invalid {
            path: where_.clone(),
            key: "spool_dir",
            message: "no home directory to put the user spool in; set spool_dir".into(),
        })?,
    };
    let rewrite = raw.rewrite.unwrap_or_default();
    let default_domain = match rewrite.default_domain {
        Some(d) => check_domain(&where_, "[rewrite] default_domain", d)?,
        None => hostname.clone(),
    };
    let aliases_file = match rewrite.aliases_file {
        Some(p) if p.as_os_str().is_empty() => None,
        Some(p) => Some(p),
        None => Some(PathBuf::from("/etc/aliases")).filter(|p| p.exists()),
    };
    let masquerade_domain = rewrite
        .masquerade_domain
        .map(|d| check_domain(&where_, "[rewrite] masquerade_domain", d))
        .transpose()?;
    let smarthost = raw
        .smarthost
        .map(|s| resolve_smarthost(&where_, s, mode, &spool_dir))
        .transpose()?;
    if mode == Mode::System && smarthost.as_ref().is_some_and(|h| h.keyring.is_some()) {
        return Err(Error::Invalid {
            path: where_.clone(),
            key: "[smarthost] password",
            message: "the OS keyring is per user and cannot serve system mode; use password_file = \"/etc/relaymail/credentials\" (root:relaymail 0640)".into(),
        });
    }
    let queue = raw.queue.unwrap_or_default();
    let log = raw.log.unwrap_or_default();
    let sink = raw.sink.unwrap_or_default();
    Ok(Config {
        mode,
        files,
        hostname,
        spool_dir,
        smarthost,
        rewrite: Rewrite {
            default_domain,
            aliases_file,
            sender: rewrite
                .sender
                .map(|s| {
                    let invalid = |message: String| Error::Invalid {
                        path: where_.clone(),
                        key: "[rewrite] sender",
                        message,
                    };
                    let address =
                        crate::message::address::check(&s).map_err(|e| invalid(e.to_string()))?;
                    // It goes to the relay as is: a bare name would be
                    // refused (553) for every message.
                    if !address.contains('@') {
                        return Err(invalid(format!(
                            "{address:?} has no domain; give the relay account's full address, e.g. \"{address}@example.com\""
                        )));
                    }
                    Ok(address)
                })
                .transpose()?,
            rewrite_from: rewrite.rewrite_from.unwrap_or(false),
            masquerade_domain,
            qualify_headers: rewrite.qualify_headers.unwrap_or(true),
        },
        aliases: raw
            .aliases
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.into_vec()))
            .collect(),
        queue: Queue {
            max_lifetime: queue
                .max_lifetime
                .map(|s| s.0)
                .unwrap_or(DEFAULT_MAX_LIFETIME),
            bounce_to: queue.bounce_to,
            max_message_size: queue
                .max_message_size
                .map(|s| s.0)
                .unwrap_or(DEFAULT_MAX_MESSAGE_SIZE),
            min_free_space: queue
                .min_free_space
                .map(|s| s.0)
                .unwrap_or(DEFAULT_MIN_FREE_SPACE),
        },
        log: Log {
            syslog: log.syslog.unwrap_or(true),
            syslog_socket: log
                .syslog_socket
                .unwrap_or_else(|| PathBuf::from("/dev/log")),
            file: log.file,
        },
        sink: resolve_sink(&where_, sink, mode)?,
    })
}

fn resolve_sink(where_: &str, raw: schema::RawSink, mode: Mode) -> Result<Sink, Error> {
    let invalid = |key: &'static str, message: String| Error::Invalid {
        path: where_.to_string(),
        key,
        message,
    };
    let tls = raw.tls.unwrap_or(SinkTls::None);
    let parse_addr = |key: &'static str, text: &str| {
        text.parse::<std::net::SocketAddr>().map_err(|_| {
            invalid(
                key,
                format!(
                    "{text:?} is not an address:port; write e.g. \"0.0.0.0:25\" or \"[::]:587\""
                ),
            )
        })
    };
    let mut listeners = Vec::new();
    for text in raw.listen.unwrap_or_default() {
        listeners.push(Listener {
            addr: parse_addr("[sink] listen", &text)?,
            tls,
        });
    }
    for table in raw.listener.unwrap_or_default() {
        listeners.push(Listener {
            addr: parse_addr("[[sink.listener]] addr", &table.addr)?,
            tls: table.tls.unwrap_or(tls),
        });
    }
    if listeners.is_empty() {
        listeners.push(Listener {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 2525)),
            tls,
        });
    }
    let auth = raw.auth.unwrap_or(SinkAuth::None);
    let users = raw.users.unwrap_or_default();
    if auth == SinkAuth::Users && users.is_empty() {
        return Err(invalid(
            "[sink] auth",
            "\"users\" needs a [sink.users] table of name = \"password\" entries".into(),
        ));
    }
    if raw.cert_file.is_some() != raw.key_file.is_some() {
        return Err(invalid(
            "[sink] cert_file",
            "cert_file and key_file go together; set both, or neither for a generated certificate"
                .into(),
        ));
    }
    let state_dir = match (raw.state_dir, mode) {
        (Some(dir), _) => dir,
        (None, Mode::System) => PathBuf::from("/var/lib/relaymail"),
        (None, Mode::User) => user_state_dir().map(|d| d.join("sink")).ok_or_else(|| {
            invalid(
                "[sink] state_dir",
                "no home directory; set state_dir".into(),
            )
        })?,
    };
    let sink = Sink {
        listeners,
        store_in_state_dir: raw.store.is_none() && mode == Mode::User,
        store: raw.store.unwrap_or_else(|| match mode {
            Mode::System => "maildir:/var/lib/relaymail/sink".to_string(),
            Mode::User => format!("maildir:{}", state_dir.join("mail").display()),
        }),
        cert_file: raw.cert_file,
        key_file: raw.key_file,
        tls_min_version: raw.tls_min_version.unwrap_or(MinTls::V1_2),
        auth,
        users,
        state_dir,
        user: raw.user,
        max_message_size: raw.max_message_size.map(|s| s.0).unwrap_or(50 << 20),
        max_recipients: raw.max_recipients.unwrap_or(100),
        max_connections: raw.max_connections.unwrap_or(100),
        max_connections_per_client: raw.max_connections_per_client,
        max_line_length: raw.max_line_length.map(|s| s.0).unwrap_or(1 << 20),
        command_timeout: raw
            .command_timeout
            .map(|s| s.0)
            .unwrap_or(Duration::from_secs(300)),
        session_timeout: raw
            .session_timeout
            .map(|s| s.0)
            .unwrap_or(Duration::from_secs(1800)),
    };
    sink.check_limits()
        .map_err(|(key, message)| Error::Invalid {
            path: where_.to_string(),
            key,
            message,
        })?;
    Ok(sink)
}

/// `password = "keyring"` (or either keyring key): service and account,
/// the account defaulting to the username.
fn keyring_entry(
    raw: &schema::RawSmarthost,
    invalid: &impl Fn(&'static str, String) -> Error,
) -> Result<Option<KeyringEntry>, Error> {
    match raw.password.as_deref() {
        None | Some("keyring") => {}
        Some(_) => {
            return Err(invalid(
                "[smarthost] password",
                "the only value is \"keyring\" (the secret itself never goes in a configuration file); store it with `relaymail credentials set`, or use password_file or password_command".into(),
            ))
        }
    }
    if raw.password.is_none() && raw.keyring_service.is_none() && raw.keyring_account.is_none() {
        return Ok(None);
    }
    let account = raw
        .keyring_account
        .clone()
        .or_else(|| raw.username.clone())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            invalid(
                "[smarthost] keyring_account",
                "the keyring needs an account name: set username (or keyring_account)".into(),
            )
        })?;
    Ok(Some(KeyringEntry {
        service: raw
            .keyring_service
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| KEYRING_SERVICE.to_string()),
        account,
    }))
}

fn resolve_smarthost(
    where_: &str,
    mut raw: schema::RawSmarthost,
    mode: Mode,
    spool_dir: &Path,
) -> Result<Smarthost, Error> {
    let keyring = keyring_entry(&raw, &|key, message| Error::Invalid {
        path: where_.to_string(),
        key,
        message,
    })?;
    let oauth2 = resolve_oauth2(where_, &mut raw, keyring.is_some(), mode, spool_dir)?;
    let host = raw
        .host
        .filter(|h| !h.trim().is_empty())
        .ok_or_else(|| Error::Invalid {
            path: where_.to_string(),
            key: "[smarthost] host",
            message: "missing; name the relay, e.g. host = \"smtp.example.com\"".into(),
        })?;
    let invalid = |key, message: String| Error::Invalid {
        path: where_.to_string(),
        key,
        message,
    };
    if parse_host_port(&host, 25).map(|(h, _)| h) != Some(host.trim().to_string()) {
        return Err(invalid(
            "[smarthost] host",
            format!("{host:?} is not a host name or address; put the port in `port`"),
        ));
    }
    if raw.port == Some(0) {
        return Err(invalid(
            "[smarthost] port",
            "0 is not a port; use 1 to 65535".into(),
        ));
    }
    if let Some(name) = &raw.tls_server_name {
        if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
            return Err(invalid(
                "[smarthost] tls_server_name",
                format!(
                    "{name:?} is not a DNS name or IP address to verify the certificate against"
                ),
            ));
        }
    }
    let tls = raw.tls.unwrap_or(TlsMode::Starttls);
    let default_port = match tls {
        TlsMode::Implicit => 465,
        TlsMode::Starttls | TlsMode::Opportunistic => 587,
        TlsMode::None => 25,
    };
    let port = raw.port.unwrap_or(default_port);
    let (client_cert, client_key) = match (raw.client_cert, raw.client_key) {
        (Some(c), Some(k)) => (Some(c), Some(k)),
        (None, None) => (None, None),
        _ => {
            return Err(Error::Invalid {
                path: where_.to_string(),
                key: "[smarthost] client_cert",
                message: "client_cert and client_key go together: set both (PEM files) or neither"
                    .into(),
            })
        }
    };
    if keyring.is_some() && (raw.password_file.is_some() || raw.password_command.is_some()) {
        return Err(invalid(
            "[smarthost] password",
            "\"keyring\" and password_file or password_command name two places for one secret; keep one".into(),
        ));
    }
    Ok(Smarthost {
        host,
        port,
        tls,
        tls_min_version: raw.tls_min_version.unwrap_or(MinTls::V1_2),
        ca_file: raw.ca_file,
        fingerprint: raw
            .fingerprint
            .map(|f| {
                parse_fingerprint(&f).ok_or_else(|| Error::Invalid {
                    path: where_.to_string(),
                    key: "[smarthost] fingerprint",
                    message: format!("{f:?} is not a SHA-256 fingerprint; write \"sha256:\" and 64 hex digits, colons allowed (openssl x509 -noout -fingerprint -sha256 prints one)"),
                })
            })
            .transpose()?,
        auth: raw.auth.unwrap_or(AuthMethod::Auto),
        username: raw.username,
        password_file: raw.password_file,
        password_command: raw.password_command,
        keyring,
        fallback_hosts: raw
            .fallback_hosts
            .unwrap_or_default()
            .iter()
            .map(|h| {
                parse_host_port(h, port).ok_or_else(|| Error::Invalid {
                    path: where_.to_string(),
                    key: "[smarthost] fallback_hosts",
                    message: format!("{h:?} is not a host name or \"host:port\" (use \"[2001:db8::1]:587\" for IPv6)"),
                })
            })
            .collect::<Result<_, _>>()?,
        allow_cleartext_auth: raw.allow_cleartext_auth.unwrap_or(false),
        oauth2,
        tls_server_name: raw.tls_server_name.filter(|n| !n.is_empty()),
        client_cert,
        client_key,
        connect_timeout: positive(where_, "[smarthost] connect_timeout", raw.connect_timeout, 30)?,
        command_timeout: positive(where_, "[smarthost] command_timeout", raw.command_timeout, 300)?,
        session_linger: match raw.session_linger.map(|s| s.0) {
            None => Duration::from_secs(2),
            Some(d) if d <= Duration::from_secs(60) => d,
            Some(d) => {
                return Err(Error::Invalid {
                    path: where_.to_string(),
                    key: "[smarthost] session_linger",
                    message: format!(
                        "{}s is too long for a session kept open for more mail; use 0 to 60s (default 2s)",
                        d.as_secs()
                    ),
                })
            }
        },
        connections: match raw.connections.unwrap_or(4) {
            n @ 1..=32 => n,
            n => {
                return Err(Error::Invalid {
                    path: where_.to_string(),
                    key: "[smarthost] connections",
                    message: format!("{n} is out of range; use 1 to 32 (default 4)"),
                })
            }
        },
    })
}

/// `[smarthost.oauth2]`, which replaces the password: a second secret
/// source, or a mechanism that sends a password, is a mistake to name.
fn resolve_oauth2(
    where_: &str,
    raw: &mut schema::RawSmarthost,
    keyring: bool,
    mode: Mode,
    spool_dir: &Path,
) -> Result<Option<OAuth2>, Error> {
    let Some(section) = raw.oauth2.take() else {
        return Ok(None);
    };
    let invalid = |key, message: String| Error::Invalid {
        path: where_.to_string(),
        key,
        message,
    };
    if keyring || raw.password_file.is_some() || raw.password_command.is_some() {
        return Err(invalid(
            "[smarthost.oauth2]",
            "relaymail fetches the token itself here: remove password_file, password_command and password from [smarthost]".into(),
        ));
    }
    if let Some(auth @ (AuthMethod::Plain | AuthMethod::Login | AuthMethod::None)) = raw.auth {
        return Err(invalid(
            "[smarthost] auth",
            format!(
                "{} does not carry an OAuth2 token; use \"xoauth2\", \"oauthbearer\" or \"auto\" with [smarthost.oauth2]",
                serde_json::to_string(&auth).unwrap_or_default()
            ),
        ));
    }
    let service = raw
        .keyring_service
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| KEYRING_SERVICE.to_string());
    oauth2::resolve(
        section,
        &oauth2::Context {
            where_,
            mode,
            spool_dir,
            username: raw.username.as_deref(),
            keyring_service: &service,
        },
    )
    .map(Some)
}

/// A timeout: the configured value, or `default` seconds; zero is refused
/// because it would mean "wait forever" to the socket layer.
fn positive(
    where_: &str,
    key: &'static str,
    value: Option<values::Span>,
    default: u64,
) -> Result<Duration, Error> {
    match value.map(|s| s.0) {
        None => Ok(Duration::from_secs(default)),
        Some(d) if d.is_zero() => Err(Error::Invalid {
            path: where_.to_string(),
            key,
            message: format!("must be more than 0 (default \"{default}s\")"),
        }),
        Some(d) => Ok(d),
    }
}

fn user_state_dir() -> Option<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "relaymail")?;
    Some(
        dirs.state_dir()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dirs.data_local_dir().to_path_buf()),
    )
}

/// A domain: letters, digits, hyphens and dots, as relays demand in EHLO.
fn check_domain(path: &str, key: &'static str, value: String) -> Result<String, Error> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if ok {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(Error::Invalid {
            path: path.to_string(),
            key,
            message: format!("{value:?} is not a valid domain name; use letters, digits, hyphens and dots, e.g. \"host.example.com\""),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{tempdir, write};
    use crate::config::{load, Source};

    #[test]
    fn keyring_passwords_are_named_never_written() {
        let dir = tempdir();
        let user = |text: &str| load(&Source::Explicit(write(dir.path(), "k.toml", text)));
        let sh = user("[smarthost]\nhost = \"x\"\nusername = \"u@x\"\npassword = \"keyring\"\n")
            .expect("keyring")
            .smarthost
            .expect("smarthost");
        assert_eq!(
            sh.keyring,
            Some(KeyringEntry {
                service: "relaymail".into(),
                account: "u@x".into()
            })
        );
        let text = user("[smarthost]\nhost = \"x\"\nusername = \"u\"\npassword = \"hunter2\"\n")
            .expect_err("a literal password")
            .to_string();
        assert!(
            text.contains("never goes in a configuration file") && !text.contains("hunter2"),
            "{text}"
        );
        let text = user("[smarthost]\nhost = \"x\"\nusername = \"u\"\npassword = \"keyring\"\npassword_file = \"/p\"\n")
            .expect_err("two places")
            .to_string();
        assert!(text.contains("keep one"), "{text}");
        let system = dir.path().join("etc");
        std::fs::create_dir(&system).expect("dir");
        write(
            &system,
            "relaymail.toml",
            "[smarthost]\nhost = \"x\"\nusername = \"u\"\npassword = \"keyring\"\n",
        );
        let text = load(&Source::System(system))
            .expect_err("system")
            .to_string();
        assert!(
            text.contains("per user") && text.contains("password_file"),
            "{text}"
        );
    }

    #[test]
    fn defaults() {
        let dir = tempdir();
        let f = write(dir.path(), "c.toml", "hostname = \"Web01.Example.com\"\nspool_dir = \"/tmp/x\"\n[rewrite]\naliases_file = \"\"\n");
        let cfg = load(&Source::Explicit(f)).expect("valid");
        assert_eq!(cfg.mode, Mode::User);
        assert_eq!(cfg.hostname, "web01.example.com");
        assert_eq!(cfg.rewrite.default_domain, "web01.example.com");
        assert_eq!(cfg.rewrite.aliases_file, None);
        assert_eq!(cfg.queue.max_lifetime, DEFAULT_MAX_LIFETIME);
        assert!(cfg.log.syslog);
    }

    #[test]
    fn smarthost_port_follows_tls_mode() {
        let dir = tempdir();
        let f = write(
            dir.path(),
            "c.toml",
            "[smarthost]\nhost = \"x\"\ntls = \"implicit\"\n",
        );
        let cfg = load(&Source::Explicit(f)).expect("valid");
        assert_eq!(cfg.smarthost.expect("set").port, 465);
    }
}
