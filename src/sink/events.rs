//! What the sink reports: exactly one JSON line per stored message on
//! stdout (written after the store's fsync, before the 250), the same
//! record appended to the index that `sink list/show/wait` read, and a
//! syslog line for every message, refusal and failed handshake or login.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::store::Stored;
use crate::log::{event, Event, Logger, Severity};

/// A stored message, as reported and indexed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub path: PathBuf,
    pub time: String,
    pub from: String,
    pub rcpt: Vec<String>,
    pub client: String,
    pub helo: Option<String>,
    pub tls: Option<String>,
    pub cipher: Option<String>,
    pub auth_user: Option<String>,
    /// The AUTH mechanism, and the SHA-256 (hex) of an XOAUTH2 or
    /// OAUTHBEARER bearer token: a test compares it with the token it
    /// issued, and the index holds nothing that could be replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mechanism: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token_sha256: Option<String>,
    pub size: u64,
    pub subject: Option<String>,
    pub offset: u64,
    pub length: u64,
}

/// A message the session has committed to the store.
pub struct Accepted {
    pub id: String,
    pub stored: Stored,
    pub time: String,
    pub sender: String,
    pub recipients: Vec<String>,
    pub client: String,
    pub helo: Option<String>,
    pub tls: Option<String>,
    pub cipher: Option<String>,
    pub auth_user: Option<String>,
    pub auth_mechanism: Option<String>,
    pub auth_token_sha256: Option<String>,
    pub size: u64,
    pub subject: Option<String>,
}

pub const INDEX: &str = "sink-index.jsonl";

pub struct Events {
    index: Mutex<File>,
    log: Mutex<Logger>,
    stdout: Mutex<io::Stdout>,
}

impl Events {
    pub fn open(state_dir: &Path, log: Logger) -> io::Result<Events> {
        std::fs::create_dir_all(state_dir)?;
        let path = state_dir.join(INDEX);
        let index = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Events {
            index: Mutex::new(index),
            log: Mutex::new(log),
            stdout: Mutex::new(io::stdout()),
        })
    }

    pub fn accepted(&self, a: &Accepted) {
        let record = Record {
            id: a.id.clone(),
            path: a.stored.path.clone(),
            time: a.time.clone(),
            from: a.sender.clone(),
            rcpt: a.recipients.clone(),
            client: a.client.clone(),
            helo: a.helo.clone(),
            tls: a.tls.clone(),
            cipher: a.cipher.clone(),
            auth_user: a.auth_user.clone(),
            auth_mechanism: a.auth_mechanism.clone(),
            auth_token_sha256: a.auth_token_sha256.clone(),
            size: a.size,
            subject: a.subject.clone(),
            offset: a.stored.offset,
            length: a.stored.length,
        };
        let mut line = serde_json::to_string(&record).unwrap_or_default();
        line.push('\n');
        if let Ok(mut index) = self.index.lock() {
            // One write per line (O_APPEND): concurrent sinks never
            // interleave. The message itself is already fsynced; the index
            // is not, to keep a third flush per message off the hot path (it
            // survives a killed sink, not a power cut).
            if let Err(e) = index.write_all(line.as_bytes()) {
                self.warn(&format!("cannot append to the sink index: {e}"));
            }
        }
        if let Ok(mut out) = self.stdout.lock() {
            let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
        }
        let event = Event::new(event::SINK_RECEIVED)
            .id(&a.id)
            .addr("from", &a.sender)
            .field(
                "to",
                a.recipients
                    .iter()
                    .map(|r| format!("<{r}>"))
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .field("client", &a.client)
            .field("helo", a.helo.as_deref().unwrap_or(""))
            .field("tls", a.tls.as_deref().unwrap_or("none"))
            .field("auth", a.auth_user.as_deref().unwrap_or(""))
            .field("size", a.size)
            .field("path", a.stored.path.display());
        self.log(Severity::Info, &event);
    }

    pub fn refused(&self, peer: SocketAddr, reply: &str) {
        self.log(
            Severity::Warning,
            &Event::new(event::SINK_REFUSED)
                .field("client", peer)
                .field("reply", reply),
        );
    }

    /// A connection ended by a deadline or refused by a limit: the reply
    /// it got, and why (which limit, and at what stage).
    pub fn refused_because(&self, peer: SocketAddr, reply: &str, reason: &str) {
        self.log(
            Severity::Warning,
            &Event::new(event::SINK_REFUSED)
                .field("client", peer)
                .field("reply", reply)
                .field("reason", reason),
        );
    }

    pub fn tls_failed(&self, peer: SocketAddr, reason: &str) {
        self.log(
            Severity::Warning,
            &Event::new(event::SINK_TLS_FAILED)
                .field("client", peer)
                .field("reason", reason),
        );
    }

    pub fn auth_failed(&self, peer: SocketAddr, user: &str) {
        self.log(
            Severity::Warning,
            &Event::new(event::SINK_AUTH_FAILED)
                .field("client", peer)
                .field("user", user),
        );
    }

    pub fn log(&self, severity: Severity, event: &Event) {
        if let Ok(mut log) = self.log.lock() {
            log.log(severity, event);
        }
    }

    fn warn(&self, text: &str) {
        crate::log::stderr(&format!("relaymail sink: warning: {text}"));
    }
}

/// Reads index records from `offset` on; returns them and the offset
/// after the last complete line (a line still being written is left).
pub fn read_index(path: &Path, offset: u64) -> io::Result<(Vec<Record>, u64)> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut end = offset;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            return Ok((records, end));
        }
        end += n as u64;
        if let Ok(record) = serde_json::from_str::<Record>(&line) {
            records.push(record);
        }
    }
}
