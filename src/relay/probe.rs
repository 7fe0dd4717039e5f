//! Step-by-step diagnosis of the smarthost for `relaymail doctor`: each
//! step of a delivery session (resolve, connect, greeting, EHLO, TLS,
//! AUTH, a test message) done on its own so that its result can be shown.
//! Uses the same client and TLS settings as delivery.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::smtp::{self, Client, Wrap};
use super::tls;
use crate::config::{Mode, Smarthost, TlsMode};
use crate::tls_failure::{self, CertInfo, Explanation};

/// The relays delivery would try, in order.
pub fn endpoints(host: &Smarthost) -> Vec<(String, u16)> {
    std::iter::once((host.host.clone(), host.port))
        .chain(host.fallback_hosts.iter().cloned())
        .collect()
}

pub fn resolve(name: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = (name, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {name}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{name} has no A or AAAA address"));
    }
    Ok(addrs)
}

/// How to check the relay's certificate on this attempt.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// As delivery does: configured CA, system roots or pin.
    Configured,
    /// Accept any certificate, only to show it after a failure.
    Inspect,
}

/// One certificate of the relay's chain, as shown to the admin.
#[derive(Debug, serde::Serialize)]
pub struct CertFacts {
    pub subject: String,
    pub issuer: String,
    pub not_after: String,
    /// Negative when expired.
    pub days_left: i64,
    pub sha256: String,
}

/// A step that failed: where, in words, and for a TLS failure its full
/// explanation (the same as a deferral's).
#[derive(Debug)]
pub struct Failed {
    /// connect, banner or tls.
    pub stage: &'static str,
    pub detail: String,
    pub explained: Option<Explanation>,
}

impl Failed {
    fn tls(explained: Explanation) -> Failed {
        Failed {
            stage: "tls",
            detail: explained.problem.clone(),
            explained: Some(explained),
        }
    }
}

/// An open session being diagnosed.
pub struct Probe {
    client: Client,
    pub elapsed: Duration,
}

impl Probe {
    /// TCP connect, greeting (and implicit TLS) and EHLO.
    pub fn connect(
        addr: &SocketAddr,
        host: &Smarthost,
        name: &str,
        mode: Mode,
        hello: &str,
        trust: Trust,
    ) -> Result<Probe, Failed> {
        let failed = |stage, detail| Failed {
            stage,
            detail,
            explained: None,
        };
        let settings = match host.tls {
            TlsMode::Implicit => {
                Some(settings(host, name, mode, trust).map_err(|e| failed("tls", e))?)
            }
            _ => None,
        };
        let started = Instant::now();
        let wrap = settings.as_ref().map(|s| Wrap {
            config: &s.config,
            server_name: &s.server_name,
        });
        let suggested = tls::suggested_ca_file(mode);
        let words = super::words(host, name, addr.port(), &suggested);
        let client =
            Client::connect(addr, host.connect_timeout, wrap, hello).map_err(|e| match e {
                smtp::Error::Tls(failure) => {
                    Failed::tls(tls_failure::relay_failure(&failure, &words))
                }
                smtp::Error::Silent(mut silence) => {
                    match super::silent_port(host, &words, &mut silence) {
                        Some(explained) => Failed::tls(explained),
                        None if silence.tcp.is_none() => {
                            failed("connect", super::closed_before_greeting(&words))
                        }
                        None => failed("connect", smtp::Error::Silent(silence).to_string()),
                    }
                }
                smtp::Error::Reply(_) => failed("banner", e.to_string()),
                other => failed("connect", other.to_string()),
            })?;
        Ok(Probe {
            client,
            elapsed: started.elapsed(),
        })
    }

    pub fn greeting(&self) -> String {
        self.client.greeting.text()
    }

    /// EHLO capabilities as the relay listed them (selected keywords).
    pub fn capabilities(&self) -> Vec<String> {
        let caps = &self.client.caps;
        let mut out = Vec::new();
        if caps.starttls {
            out.push("STARTTLS".to_string());
        }
        if caps.pipelining {
            out.push("PIPELINING".into());
        }
        match caps.size {
            Some(0) => out.push("SIZE".into()),
            Some(n) => out.push(format!("SIZE {n}")),
            None => {}
        }
        if caps.eight_bit_mime {
            out.push("8BITMIME".into());
        }
        if caps.smtputf8 {
            out.push("SMTPUTF8".into());
        }
        if !caps.auth.is_empty() {
            out.push(format!("AUTH {}", caps.auth.join(" ")));
        }
        out
    }

    pub fn offers_starttls(&self) -> bool {
        self.client.caps.starttls
    }

    pub fn auth_mechanisms(&self) -> Vec<String> {
        self.client.caps.auth.clone()
    }

    pub fn starttls(
        &mut self,
        host: &Smarthost,
        name: &str,
        mode: Mode,
        hello: &str,
        trust: Trust,
    ) -> Result<(), Failed> {
        let failed = |detail| Failed {
            stage: "tls",
            detail,
            explained: None,
        };
        let settings = settings(host, name, mode, trust).map_err(failed)?;
        self.client
            .set_timeout(host.command_timeout)
            .map_err(|e| failed(e.to_string()))?;
        let port = self.client.peer_port();
        self.client
            .starttls(
                Wrap {
                    config: &settings.config,
                    server_name: &settings.server_name,
                },
                hello,
            )
            .map_err(|e| match e {
                smtp::Error::Tls(failure) => {
                    let suggested = tls::suggested_ca_file(mode);
                    let words = super::words(host, name, port, &suggested);
                    Failed::tls(tls_failure::relay_failure(&failure, &words))
                }
                other => failed(other.to_string()),
            })
    }

    /// "TLSv1.3/TLS_AES_256_GCM_SHA384" once encrypted.
    pub fn tls(&self) -> Option<String> {
        self.client.tls_description()
    }

    /// SHA-256 of the relay's own certificate, as pinning compares it.
    pub fn leaf_sha256(&self) -> Option<Vec<u8>> {
        super::leaf_sha256(&self.client).map(|d| d.as_ref().to_vec())
    }

    /// The relay's own certificate (DER), once encrypted.
    pub fn leaf(&self) -> Option<Vec<u8>> {
        self.client.peer_certificates().into_iter().next()
    }

    pub fn chain(&self) -> Vec<CertFacts> {
        self.client
            .peer_certificates()
            .iter()
            .map(|der| cert_facts(der))
            .collect()
    }

    /// AUTH as delivery would do it. Ok(mechanism) or the reason.
    pub fn auth(&mut self, host: &Smarthost, secret: &str) -> Result<String, String> {
        let Some(user) = &host.username else {
            return Err("no username is configured".into());
        };
        let mechanism = super::choose_auth(host, &self.client.caps)?;
        self.client
            .auth(mechanism, user, secret)
            .map(|()| mechanism.to_string())
            .map_err(|e| e.to_string())
    }

    /// Sends a short test message. Ok(the relay's final reply).
    pub fn send_test(
        &mut self,
        from: &str,
        to: &[String],
        hostname: &str,
    ) -> Result<String, String> {
        if let Some(bad) = std::iter::once(from)
            .filter(|f| !f.is_empty())
            .chain(to.iter().map(String::as_str))
            .find(|a| !super::is_sendable(a))
        {
            return Err(format!("<{bad}> cannot be sent as an SMTP path"));
        }
        let rcpts: Vec<String> = to.iter().map(|t| format!("RCPT TO:<{t}>")).collect();
        let (mail, replies, data) = self
            .client
            .envelope(&format!("MAIL FROM:<{from}>"), &rcpts)
            .map_err(|e| e.to_string())?;
        if !mail.is_positive() {
            return Err(format!("MAIL FROM:<{from}> refused: {}", mail.text()));
        }
        if let Some((rcpt, refused)) = rcpts.iter().zip(&replies).find(|(_, r)| !r.is_positive()) {
            if data.as_ref().is_some_and(|d| d.code == 354) {
                let _ = self.client.data(&mut std::io::empty());
            }
            return Err(format!("{rcpt} refused: {}", refused.text()));
        }
        match data {
            Some(d) if d.code == 354 => {}
            Some(d) => return Err(format!("DATA refused: {}", d.text())),
            None => return Err("DATA was not reached".into()),
        }
        let to = to.join(", ");
        let date = chrono::Local::now().to_rfc2822();
        let body = format!(
            "From: <{from}>\r\nTo: {to}\r\nSubject: relaymail doctor test from {hostname}\r\nDate: {date}\r\nMessage-ID: <doctor.{}@{hostname}>\r\n\r\nThis is a test message sent by `relaymail doctor --send-to` on {hostname}.\r\nIf you can read it, mail from this host reaches you.\r\n",
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        );
        let reply = self
            .client
            .data(&mut body.as_bytes())
            .map_err(|e| format!("{e:?}"))?;
        if reply.is_positive() {
            Ok(reply.text())
        } else {
            Err(reply.text())
        }
    }

    pub fn quit(self) {
        self.client.quit();
    }
}

/// Whether `der` is one of the certificates in `ca_file`, trusted as
/// given.
pub fn named_in_ca_file(host: &Smarthost, der: &[u8]) -> bool {
    tls::named_in_ca_file(host, der)
}

fn settings(
    host: &Smarthost,
    name: &str,
    mode: Mode,
    trust: Trust,
) -> Result<tls::Settings, String> {
    match trust {
        Trust::Configured => tls::settings(host, name, mode),
        Trust::Inspect => tls::inspection_settings(host, name),
    }
}

fn cert_facts(der: &[u8]) -> CertFacts {
    let info = CertInfo::parse(der);
    let days_left = (info.not_after - chrono::Utc::now().timestamp()) / 86_400;
    CertFacts {
        not_after: tls_failure::date(info.not_after),
        days_left,
        subject: info.subject,
        issuer: info.issuer,
        sha256: info.sha256,
    }
}
