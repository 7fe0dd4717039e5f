//! The configuration: where it comes from, how its files are merged, and
//! the typed values the rest of relaymail reads, which are defined here.
//!
//! - `discover`: which file is used (or none), and so system or user mode.
//! - `merge`: reading each file, checking it alone, merging `conf.d`.
//! - `resolve`: defaults and cross-checks, from `schema` to these types.
//! - `schema` is the TOML as written, `values` the settings parsed from
//!   its strings, `oauth2` the `[smarthost.oauth2]` section and `error`
//!   what a mistake in any of them says.

mod discover;
pub mod error;
mod merge;
pub mod oauth2;
mod resolve;
pub mod schema;
pub mod values;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use discover::{discover, Source};
pub use error::Error;
pub use merge::load;
pub use oauth2::OAuth2;
pub use values::{
    parse_fingerprint, parse_host_port, AuthMethod, MinTls, OAuth2Flow, Provider, SinkAuth,
    SinkTls, TlsMode,
};

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
    /// Shown as `[[sink.listener]]`, the tables' name in the file.
    #[serde(rename = "listener")]
    pub listeners: Vec<Listener>,
    pub store: String,
    /// No `store` was set and the default is `<state_dir>/mail` (user
    /// mode): a `--state-dir` flag moves it along.
    #[serde(skip)]
    pub store_in_state_dir: bool,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    // Also the fixtures of the tests in `merge` and `resolve`.
    pub(super) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("test dir");
        }
        fs::write(&path, text).expect("test file");
        path
    }

    pub(super) fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
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
