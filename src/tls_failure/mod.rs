//! TLS failures in plain words (issue 16): what went wrong, naming what
//! was presented and what was expected, and the setting that fixes it.
//! One mapping serves delivery's deferral reasons (log line, `mailq`,
//! `queue show`), `relaymail doctor` and the sink's handshake-failure log
//! lines, so all of them say the same thing the same way.
//!
//! This module only explains: it never decides whether a certificate is
//! trusted (that is `relay::tls`: webpki, or the exact certificate named
//! in `ca_file`). It depends on rustls, x509-parser and config's value
//! types only, so the sink links it without linking `relay`. No text it
//! makes contains a Rust debug string.

// One file a job: what a certificate is (`cert`), the relay's side
// (`relay`) and the sink's (`listener`) of a failed handshake, what the
// peer's first bytes say (`hello`), and rustls's errors in words
// (`words`). The types both sides share stay here; every name the rest of
// the crate uses is re-exported, so `crate::tls_failure::X` stays the path.
mod cert;
mod hello;
mod listener;
mod relay;
mod words;

use std::fmt;
use std::io;

use crate::config::TlsMode;

pub use cert::{date, fingerprint, fingerprint_hex, rejected, CertInfo, Rejected};
pub use hello::{offered_version, PEER_BYTES};
pub use listener::{client_failure, tls_on_plain_listener, Listener};
pub use relay::{pin_mismatch, relay_failure, silent_tls_port, Relay};
pub use words::{alert_words, describe};

/// Why a TLS handshake (or a later TLS record) failed, as one side saw it.
#[derive(Debug)]
pub enum Cause {
    /// rustls refused, or the peer sent an alert.
    Tls(rustls::Error),
    /// The peer closed the connection (end of file or reset).
    Closed,
    /// The peer stopped answering: a read or write timed out.
    TimedOut,
    /// Another I/O error.
    Io(String),
}

/// A failed handshake: the cause and the first bytes the peer sent.
#[derive(Debug)]
pub struct Failure {
    pub cause: Cause,
    pub peer_bytes: Vec<u8>,
}

impl Failure {
    /// From what rustls's `complete_io` returned (rustls reports its own
    /// errors inside an `io::Error`).
    pub fn from_io(e: io::Error, peer_bytes: Vec<u8>) -> Failure {
        let cause = match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => Cause::Tls(tls.clone()),
            None => match e.kind() {
                io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => Cause::Closed,
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Cause::TimedOut,
                _ => Cause::Io(e.to_string()),
            },
        };
        Failure { cause, peer_bytes }
    }
}

impl fmt::Display for Failure {
    /// Plain words without context (no fix); `relay_failure` and
    /// `client_failure` say more.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Cause::Tls(e) => f.write_str(&describe(e)),
            Cause::Closed => f.write_str("the peer closed the connection"),
            Cause::TimedOut => f.write_str("the peer stopped answering"),
            Cause::Io(e) => f.write_str(e),
        }
    }
}

/// A failure explained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// What went wrong, naming what was presented and what was expected.
    pub problem: String,
    /// What to do; it quotes `settings` verbatim.
    pub fix: String,
    /// Configuration lines that fix it, exactly as they are to be
    /// written in the section concerned (`[smarthost]` for delivery,
    /// `[sink]` for the sink). Empty when no setting can fix it (an
    /// expired certificate must be renewed; nothing here accepts it).
    pub settings: Vec<String>,
    /// The TLS mode the relay's port really speaks, when the failure
    /// shows that `tls` is set wrong for it.
    pub port_speaks: Option<TlsMode>,
}

impl Explanation {
    fn new(problem: impl Into<String>, fix: impl Into<String>, settings: Vec<String>) -> Self {
        Explanation {
            problem: problem.into(),
            fix: fix.into(),
            settings,
            port_speaks: None,
        }
    }

    fn speaks(mut self, mode: TlsMode) -> Self {
        self.port_speaks = Some(mode);
        self
    }

    /// One line for a log field or a deferral reason.
    pub fn sentence(&self) -> String {
        format!("{}; fix: {}", self.problem, self.fix)
    }
}

/// Shared by the files' unit tests.
#[cfg(test)]
mod testing {
    use super::{Cause, Failure};

    pub(super) fn failed(cause: Cause, peer_bytes: &[u8]) -> Failure {
        Failure {
            cause,
            peer_bytes: peer_bytes.to_vec(),
        }
    }
}
