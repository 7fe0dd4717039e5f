//! The token endpoint's transport: HTTPS POSTs of a form, JSON back. On
//! ureq (blocking, no async runtime) over the same rustls and ring as the
//! SMTP client, with our own trust store: the system's roots plus
//! `[smarthost.oauth2] ca_file`. Redirects are never followed (a form
//! carrying a client secret or refresh token goes only where configured),
//! no proxy is taken from the environment (only `proxy` in the
//! configuration), and replies are bounded.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use super::{Error, Kind};
use crate::config::OAuth2;

/// A reply body larger than this is not a token response.
const MAX_BODY: u64 = 64 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The whole exchange, connect to the last byte of the reply.
const TIMEOUT: Duration = Duration::from_secs(60);

pub struct Http {
    agent: ureq::Agent,
}

/// What the endpoint answered: its status and the JSON object (an empty
/// object when the body was not JSON, with the text kept for messages).
pub struct Reply {
    pub status: u16,
    pub json: serde_json::Map<String, serde_json::Value>,
    /// The start of a body that was not JSON (an HTML error page).
    pub text: String,
}

impl Reply {
    pub fn str(&self, key: &str) -> Option<&str> {
        self.json.get(key).and_then(|v| v.as_str())
    }

    /// A number, sent as a number or (some servers) as a string.
    pub fn number(&self, key: &str) -> Option<u64> {
        match self.json.get(key)? {
            serde_json::Value::Number(n) => {
                n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64))
            }
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

impl Http {
    pub fn new(settings: &OAuth2) -> Result<Http, Error> {
        let tls = client_config(settings)?;
        let mut builder = ureq::AgentBuilder::new()
            .tls_config(tls)
            .redirects(0)
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout(TIMEOUT)
            .user_agent(concat!("relaymail/", env!("CARGO_PKG_VERSION")));
        if let Some(proxy) = &settings.proxy {
            let proxy = ureq::Proxy::new(proxy).map_err(|e| {
                Error::new(
                    Kind::Config,
                    format!("[smarthost.oauth2] proxy {proxy:?}: {e}"),
                )
            })?;
            builder = builder.proxy(proxy);
        }
        Ok(Http {
            agent: builder.build(),
        })
    }

    /// POSTs `form` (application/x-www-form-urlencoded) to `url`. An HTTP
    /// error status is a `Reply` too: OAuth2 errors come as 400 with a
    /// JSON body. `Err` is a failure to get any answer.
    pub fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Result<Reply, Error> {
        let response = match self
            .agent
            .post(url)
            .set("Accept", "application/json")
            .send_form(form)
        {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(transport(url, &t)),
        };
        let status = response.status();
        let mut body = Vec::new();
        response
            .into_reader()
            .take(MAX_BODY)
            .read_to_end(&mut body)
            .map_err(|e| {
                Error::new(
                    Kind::Network,
                    format!("reading the reply of {}: {e}", host_of(url)),
                )
            })?;
        let json = match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        let text = if json.is_empty() {
            super::printable(&String::from_utf8_lossy(&body), 200)
        } else {
            String::new()
        };
        Ok(Reply { status, json, text })
    }
}

/// The host (and port) of an endpoint, for messages.
pub fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_else(|| url.to_string())
}

/// A failure to reach the endpoint at all, with what to check.
fn transport(url: &str, t: &ureq::Transport) -> Error {
    let host = host_of(url);
    let detail = t.to_string();
    let hint = match t.kind() {
        ureq::ErrorKind::Dns => "check the name and this host's resolver",
        ureq::ErrorKind::ConnectionFailed => {
            "check that outgoing HTTPS (port 443) is allowed from this host, or set [smarthost.oauth2] proxy"
        }
        ureq::ErrorKind::ProxyConnect | ureq::ErrorKind::InvalidProxyUrl => {
            "check [smarthost.oauth2] proxy"
        }
        _ if detail.contains("certificate") || detail.contains("Certificate") => {
            "the endpoint's certificate is not trusted here: install the system's CA certificates, or give its CA in [smarthost.oauth2] ca_file"
        }
        _ => "the message stays queued and is retried",
    };
    // ureq's text names the URL (no secret is ever in a URL here).
    Error::new(
        Kind::Network,
        format!("cannot reach the token endpoint {host}: {detail}; {hint}"),
    )
}

/// rustls with ring, TLS 1.2 and 1.3, the system's roots plus `ca_file`.
fn client_config(settings: &OAuth2) -> Result<Arc<ClientConfig>, Error> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    if let Some(path) = &settings.ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                Error::new(
                    Kind::Config,
                    format!(
                        "cannot read [smarthost.oauth2] ca_file {}: {e}",
                        path.display()
                    ),
                )
            })?;
        if certs.is_empty() {
            return Err(Error::new(
                Kind::Config,
                format!(
                    "[smarthost.oauth2] ca_file {}: no PEM certificate in it",
                    path.display()
                ),
            ));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                Error::new(
                    Kind::Config,
                    format!("[smarthost.oauth2] ca_file {}: {e}", path.display()),
                )
            })?;
        }
    }
    if roots.is_empty() {
        return Err(Error::new(
            Kind::Config,
            "no trusted CA certificates on this system to verify the token endpoint with; install ca-certificates or set [smarthost.oauth2] ca_file",
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::new(Kind::Config, format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
