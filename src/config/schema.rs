//! The TOML schema exactly as written by users (DESIGN.md "Configuration").
//! Every key is optional here so that `conf.d` fragments validate on their
//! own; `config::resolve` applies the defaults. Unknown keys are errors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::values::{
    AuthMethod, MinTls, OAuth2Flow, Provider, SinkAuth, SinkTls, Size, Span, TlsMode,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub hostname: Option<String>,
    pub spool_dir: Option<PathBuf>,
    pub smarthost: Option<RawSmarthost>,
    pub rewrite: Option<RawRewrite>,
    pub aliases: Option<BTreeMap<String, OneOrMany>>,
    pub queue: Option<RawQueue>,
    pub log: Option<RawLog>,
    pub sink: Option<RawSink>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmarthost {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<TlsMode>,
    pub tls_min_version: Option<MinTls>,
    pub ca_file: Option<PathBuf>,
    pub fingerprint: Option<String>,
    pub auth: Option<AuthMethod>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_command: Option<String>,
    /// Only `"keyring"`: the secret is in the OS keyring.
    pub password: Option<String>,
    pub keyring_service: Option<String>,
    pub keyring_account: Option<String>,
    pub fallback_hosts: Option<Vec<String>>,
    pub tls_server_name: Option<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub connect_timeout: Option<Span>,
    pub command_timeout: Option<Span>,
    pub connections: Option<usize>,
    pub session_linger: Option<Span>,
    pub allow_cleartext_auth: Option<bool>,
    /// `[smarthost.oauth2]`: tokens fetched and refreshed by relaymail.
    pub oauth2: Option<RawOAuth2>,
}

/// `[smarthost.oauth2]` (issue 14). The key names are a public interface.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth2 {
    pub provider: Option<Provider>,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    /// Only `"keyring"`: the client secret is in the OS keyring.
    pub client_secret: Option<String>,
    pub scope: Option<String>,
    pub token_endpoint: Option<String>,
    pub device_authorization_endpoint: Option<String>,
    pub flow: Option<OAuth2Flow>,
    pub ca_file: Option<PathBuf>,
    pub token_cache: Option<PathBuf>,
    pub proxy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRewrite {
    pub default_domain: Option<String>,
    pub aliases_file: Option<PathBuf>,
    pub sender: Option<String>,
    pub rewrite_from: Option<bool>,
    pub masquerade_domain: Option<String>,
    pub qualify_headers: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub max_lifetime: Option<Span>,
    pub bounce_to: Option<String>,
    pub max_message_size: Option<Size>,
    pub min_free_space: Option<Size>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub syslog: Option<bool>,
    pub syslog_socket: Option<PathBuf>,
    pub file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    pub listen: Option<Vec<String>>,
    pub listener: Option<Vec<RawListener>>,
    pub store: Option<String>,
    pub tls: Option<SinkTls>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub auth: Option<SinkAuth>,
    pub users: Option<BTreeMap<String, String>>,
    pub state_dir: Option<PathBuf>,
    pub user: Option<String>,
    pub max_message_size: Option<Size>,
    pub max_recipients: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_connections_per_client: Option<usize>,
    pub max_line_length: Option<Size>,
    pub tls_min_version: Option<MinTls>,
    pub command_timeout: Option<Span>,
    pub session_timeout: Option<Span>,
}

/// `[[sink.listener]]`: one address with its own TLS mode.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub addr: String,
    pub tls: Option<SinkTls>,
}

/// An alias target list: `root = "a@example.com"` or `root = ["a@…", "b@…"]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}
