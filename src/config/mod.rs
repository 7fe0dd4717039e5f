//! Loading and validating the configuration: where it comes from (system
//! or user mode), merging `conf.d`, and resolving defaults into typed values.
//!
//! Discovery order: `-C FILE`, then `RELAYMAIL_CONFIG`, then the user's own
//! `~/.config/relaymail/relaymail.toml`, then the system file
//! `/etc/relaymail/relaymail.toml` (+ `conf.d/*.toml`), then built-in
//! defaults in user mode. Only the system file gives system mode: the
//! shared, group-owned spool. Anything chosen by a user runs in user mode
//! (the seam where the setgid binary gives up its group; see `privilege`).

pub mod error;
pub mod oauth2;
pub mod schema;
pub mod values;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::Error;
pub use oauth2::OAuth2;
use schema::RawConfig;
pub use values::{AuthMethod, MinTls, OAuth2Flow, Provider, SinkAuth, SinkTls, TlsMode};

pub const SYSTEM_DIR: &str = "/etc/relaymail";
pub const SYSTEM_SPOOL: &str = "/var/spool/relaymail";

/// System mode: one shared spool owned by root:relaymail, written through
/// the setgid binary. User mode: everything belongs to the calling user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    System,
    User,
}

/// Where the configuration was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `-C` or `RELAYMAIL_CONFIG`.
    Explicit(PathBuf),
    /// The user's own file.
    User(PathBuf),
    /// The system directory (`relaymail.toml` + `conf.d/*.toml`).
    System(PathBuf),
    /// No file at all: built-in defaults, user mode.
    Defaults,
}

impl Source {
    pub fn mode(&self) -> Mode {
        match self {
            Source::System(_) => Mode::System,
            _ => Mode::User,
        }
    }

    /// Chosen by the caller rather than by the administrator.
    pub fn is_user_supplied(&self) -> bool {
        matches!(self, Source::Explicit(_) | Source::User(_))
    }
}

/// Finds the configuration. `explicit` is `-C`, `env` is
/// `RELAYMAIL_CONFIG`, `own` the caller's own file if it exists (looked
/// at with the caller's rights, see `privilege::as_caller`).
pub fn discover(explicit: Option<PathBuf>, env: Option<PathBuf>, own: Option<PathBuf>) -> Source {
    if let Some(path) = explicit.or(env).filter(|p| !p.as_os_str().is_empty()) {
        return Source::Explicit(path);
    }
    if let Some(own) = own {
        return Source::User(own);
    }
    let system = Path::new(SYSTEM_DIR);
    if system.join("relaymail.toml").is_file() {
        return Source::System(system.to_path_buf());
    }
    Source::Defaults
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Config {
    pub mode: Mode,
    /// Files read, in merge order.
    pub files: Vec<PathBuf>,
    /// EHLO name and the domain of local senders.
    pub hostname: String,
    pub spool_dir: PathBuf,
    pub smarthost: Option<Smarthost>,
    pub rewrite: Rewrite,
    /// `[aliases]`: local name -> targets.
    pub aliases: BTreeMap<String, Vec<String>>,
    pub queue: Queue,
    pub log: Log,
    pub sink: Sink,
}

impl Sink {
    /// Connections at once from one client address (IPv4-mapped IPv6
    /// counting as IPv4). By default a quarter of `max_connections`, at
    /// least 1: one address (a misbehaving device, a slowloris) cannot
    /// take every slot, while a handful of devices behind one NAT still
    /// fit.
    pub fn per_client_limit(&self) -> usize {
        self.max_connections_per_client
            .unwrap_or((self.max_connections / 4).max(1))
    }

    /// The limits that make sense for a server (from the config file or
    /// the command line): Err names the setting and its range.
    pub fn check_limits(&self) -> Result<(), (&'static str, String)> {
        const WEEK: Duration = Duration::from_secs(7 * 86_400);
        for (key, value) in [
            ("[sink] command_timeout", self.command_timeout),
            ("[sink] session_timeout", self.session_timeout),
        ] {
            if value.is_zero() || value > WEEK {
                return Err((
                    key,
                    format!("{}s is out of range; use 1s to 7d", value.as_secs()),
                ));
            }
        }
        for (key, value) in [
            ("[sink] max_connections", self.max_connections),
            ("[sink] max_recipients", self.max_recipients),
        ] {
            if value == 0 {
                return Err((key, "0 would refuse everything; use 1 or more".into()));
            }
        }
        match self.max_connections_per_client {
            Some(0) => {
                return Err((
                    "[sink] max_connections_per_client",
                    "0 would refuse everything; use 1 or more".into(),
                ))
            }
            Some(n) if n > self.max_connections => {
                return Err((
                    "[sink] max_connections_per_client",
                    format!(
                        "{n} is more than max_connections ({}); use 1 to {}",
                        self.max_connections, self.max_connections
                    ),
                ))
            }
            _ => {}
        }
        if !(1000..=1 << 30).contains(&self.max_line_length) {
            return Err((
                "[sink] max_line_length",
                format!(
                    "{} is out of range; use 1000 (RFC 5321) to 1GiB",
                    self.max_line_length
                ),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// A bare name, or an address at localhost or this host: mail that
    /// stays "here" (masqueraded when sent, its bounces to bounce_to).
    pub fn is_local_address(&self, addr: &str) -> bool {
        match addr.rsplit_once('@') {
            None => true,
            Some((_, domain)) => {
                let d = domain.to_ascii_lowercase();
                d == "localhost"
                    || d == "localhost.localdomain"
                    || d == self.hostname.to_ascii_lowercase()
            }
        }
    }

    /// "a.toml, conf.d/b.toml", or that built-in defaults are in use.
    pub fn describe_files(&self) -> String {
        if self.files.is_empty() {
            return "no configuration file (built-in defaults)".into();
        }
        self.files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A secret in the OS keyring, found by service and account name (as
/// `relaymail credentials set` stores it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyringEntry {
    pub service: String,
    pub account: String,
}

/// The keyring service name when `keyring_service` is not set.
pub const KEYRING_SERVICE: &str = "relaymail";

#[derive(Clone, Debug, serde::Serialize)]
pub struct Smarthost {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub tls_min_version: MinTls,
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of the relay's certificate (32 bytes), when pinned.
    #[serde(skip)]
    pub fingerprint: Option<Vec<u8>>,
    pub auth: AuthMethod,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_command: Option<String>,
    /// `password = "keyring"`: where the secret is in the OS keyring.
    pub keyring: Option<KeyringEntry>,
    /// Tried in order when the host above cannot be reached or refuses the
    /// session (connect, TLS, AUTH); they share every other setting.
    pub fallback_hosts: Vec<(String, u16)>,
    /// The name to send as SNI and to verify the certificate against,
    /// when it differs from `host` (e.g. a relay reached by IP address).
    pub tls_server_name: Option<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// TCP connect, greeting, EHLO and (implicit) TLS handshake.
    #[serde(serialize_with = "secs")]
    pub connect_timeout: Duration,
    /// Each later command's reply, and each write.
    #[serde(serialize_with = "secs")]
    pub command_timeout: Duration,
    /// Parallel sessions a flush may open for a backlog, and background
    /// runners at once.
    pub connections: usize,
    /// How long a background delivery keeps its session open for mail
    /// queued after it started (0: it only takes what is queued).
    #[serde(serialize_with = "secs")]
    pub session_linger: Duration,
    /// AUTH without TLS: only for closed lab networks, never the default.
    pub allow_cleartext_auth: bool,
    /// `[smarthost.oauth2]`: relaymail fetches and refreshes the access
    /// token itself (XOAUTH2 / OAUTHBEARER).
    pub oauth2: Option<OAuth2>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Rewrite {
    /// Domain given to bare local names (`root` -> `root@<domain>`).
    pub default_domain: String,
    pub aliases_file: Option<PathBuf>,
    /// Forced envelope sender for relays that accept only their account.
    pub sender: Option<String>,
    /// With `sender`: also put it in From:, the original going to
    /// Reply-To (when absent) and X-Original-From.
    pub rewrite_from: bool,
    /// Sender addresses of this host are rewritten to this domain.
    pub masquerade_domain: Option<String>,
    /// Qualify bare local names in From/To/Cc/Reply-To headers.
    pub qualify_headers: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Queue {
    #[serde(serialize_with = "secs")]
    pub max_lifetime: Duration,
    pub bounce_to: Option<String>,
    pub max_message_size: u64,
    pub min_free_space: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Log {
    pub syslog: bool,
    pub syslog_socket: PathBuf,
    pub file: Option<PathBuf>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Sink {
    pub listeners: Vec<Listener>,
    pub store: String,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub tls_min_version: MinTls,
    pub auth: SinkAuth,
    /// `auth = "users"`: user name -> password. Never printed.
    #[serde(skip)]
    pub users: BTreeMap<String, String>,
    /// Generated certificate and the received-message index.
    pub state_dir: PathBuf,
    /// Run as this user after binding (when started as root).
    pub user: Option<String>,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_connections: usize,
    /// Connections at once from one client address; None: a quarter of
    /// `max_connections` (see `per_client_limit`).
    pub max_connections_per_client: Option<usize>,
    pub max_line_length: u64,
    #[serde(serialize_with = "secs")]
    pub command_timeout: Duration,
    #[serde(serialize_with = "secs")]
    pub session_timeout: Duration,
}

/// One sink listening address and how it speaks TLS.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Listener {
    pub addr: std::net::SocketAddr,
    pub tls: SinkTls,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}s", d.as_secs()))
}

pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 << 20;
pub const DEFAULT_MIN_FREE_SPACE: u64 = 16 << 20;
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(5 * 86_400);

/// Reads, merges and resolves the configuration from `source`.
pub fn load(source: &Source) -> Result<Config, Error> {
    let files = match source {
        Source::Explicit(p) | Source::User(p) => vec![p.clone()],
        Source::System(dir) => system_files(dir)?,
        Source::Defaults => Vec::new(),
    };
    let mut merged = toml::Table::new();
    for file in &files {
        let text = fs::read_to_string(file).map_err(|source| Error::Read {
            path: file.clone(),
            source,
        })?;
        // Validate each file alone so errors point into the file that has them.
        toml::from_str::<RawConfig>(&text).map_err(|e| error::syntax(file, &text, &e))?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| error::syntax(file, &text, &e))?;
        merge(&mut merged, table);
    }
    let raw: RawConfig = merged
        .try_into()
        .map_err(|e: toml::de::Error| Error::Invalid {
            path: files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(" + "),
            key: "(merged)",
            message: e.message().to_string(),
        })?;
    resolve(raw, source.mode(), files)
}

/// `relaymail.toml` first, then `conf.d/*.toml` in name order.
fn system_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut files = vec![dir.join("relaymail.toml")];
    let conf_d = dir.join("conf.d");
    match fs::read_dir(&conf_d) {
        Ok(entries) => {
            let mut extra: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            extra.sort();
            files.extend(extra);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Read {
                path: conf_d,
                source,
            })
        }
    }
    Ok(files)
}

/// Later files win key by key; tables merge recursively.
fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(incoming)) => {
                merge(existing, incoming)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

fn resolve(raw: RawConfig, mode: Mode, files: Vec<PathBuf>) -> Result<Config, Error> {
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

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("test dir");
        }
        fs::write(&path, text).expect("test file");
        path
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    #[test]
    fn conf_d_merges_in_name_order() {
        let dir = tempdir();
        write(
            dir.path(),
            "relaymail.toml",
            "hostname = \"a.example.com\"\n[smarthost]\nhost = \"one\"\nport = 25\n",
        );
        write(
            dir.path(),
            "conf.d/20-b.toml",
            "[smarthost]\nhost = \"three\"\n",
        );
        write(
            dir.path(),
            "conf.d/10-a.toml",
            "[smarthost]\nhost = \"two\"\nusername = \"u\"\n",
        );
        write(dir.path(), "conf.d/ignored.txt", "garbage");
        let cfg = load(&Source::System(dir.path().to_path_buf())).expect("valid");
        let sh = cfg.smarthost.expect("smarthost");
        assert_eq!(sh.host, "three");
        assert_eq!(sh.port, 25);
        assert_eq!(sh.username.as_deref(), Some("u"));
        assert_eq!(cfg.mode, Mode::System);
        assert_eq!(cfg.spool_dir, PathBuf::from(SYSTEM_SPOOL));
        assert_eq!(cfg.files.len(), 3);
    }

    #[test]
    fn error_in_fragment_names_fragment_line_and_key() {
        let dir = tempdir();
        write(
            dir.path(),
            "relaymail.toml",
            "hostname = \"a.example.com\"\n",
        );
        write(
            dir.path(),
            "conf.d/10.toml",
            "# comment\n[smarthost]\nhost = \"x\"\nusr = \"me\"\n",
        );
        let err = load(&Source::System(dir.path().to_path_buf())).expect_err("unknown key");
        let text = err.to_string();
        assert!(text.contains("10.toml:4:1:"), "{text}");
        assert!(text.contains("usr"), "{text}");
        assert!(text.contains("[smarthost]"), "{text}");
        assert!(text.contains("did you mean \"username\""), "{text}");
    }

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
    fn old_tls_versions_are_refused_with_a_reason() {
        let dir = tempdir();
        let f = write(
            dir.path(),
            "c.toml",
            "[smarthost]\nhost = \"x\"\ntls_min_version = \"1.0\"\n",
        );
        let text = load(&Source::Explicit(f)).expect_err("1.0").to_string();
        assert!(text.contains(":3:"), "{text}");
        assert!(text.contains("only TLS 1.2 and 1.3"), "{text}");
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

    #[test]
    fn sink_per_client_limit_defaults_to_a_quarter_and_stays_within_the_total() {
        let dir = tempdir();
        let load_sink = |text: &str| {
            let f = write(dir.path(), "c.toml", text);
            load(&Source::Explicit(f)).map(|c| c.sink)
        };
        let sink = load_sink("[sink]\nmax_connections = 100\n").expect("valid");
        assert_eq!(sink.per_client_limit(), 25);
        let mut small = load_sink("[sink]\nmax_connections = 3\n").expect("valid");
        assert_eq!(small.per_client_limit(), 1, "at least 1");
        small.max_connections = 8;
        assert_eq!(small.per_client_limit(), 2, "follows --max-connections");
        let set = load_sink("[sink]\nmax_connections_per_client = 7\n").expect("valid");
        assert_eq!(set.per_client_limit(), 7);
        for (text, wanted) in [
            (
                "[sink]\nmax_connections_per_client = 0\n",
                "0 would refuse everything",
            ),
            (
                "[sink]\nmax_connections = 8\nmax_connections_per_client = 9\n",
                "9 is more than max_connections (8); use 1 to 8",
            ),
        ] {
            let text = load_sink(text).expect_err(text).to_string();
            assert!(
                text.contains("[sink] max_connections_per_client") && text.contains(wanted),
                "{text}"
            );
        }
    }
}
