//! Event logging: one syslog line per event (facility mail, ident
//! relaymail), `<queue id>: event=<name> key=value ...`, plus an optional
//! JSON-lines file with the same fields. The keys are a public interface
//! (documented in the README); they are spelled here and nowhere else.
//!
//! If the syslog socket is missing, one warning goes to stderr and the
//! program carries on: losing a log line must never lose a message.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use syslog::{Facility, Formatter3164, LoggerBackend};

/// Event names (the `event=` value).
pub mod event {
    pub const QUEUED: &str = "queued";
    pub const DELIVERY: &str = "delivery";
    pub const BOUNCE: &str = "bounce";
    pub const EXPIRED: &str = "expired";
    pub const DELETED: &str = "deleted";
    pub const HELD: &str = "held";
    pub const RELEASED: &str = "released";
    pub const ORPHAN_REMOVED: &str = "orphan_removed";
    pub const CONFIG_ERROR: &str = "config_error";
    pub const REJECTED: &str = "rejected";
    /// The OAuth2 client obtained a token (and maybe a rotated refresh
    /// token) from the provider; never the token itself.
    pub const OAUTH2: &str = "oauth2";
    pub const SINK_RECEIVED: &str = "received";
    pub const SINK_REFUSED: &str = "refused";
    pub const SINK_TLS_FAILED: &str = "tls_failed";
    pub const SINK_AUTH_FAILED: &str = "auth_failed";
    pub const SINK_LISTENING: &str = "listening";
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// One log event: a name, an optional queue ID, and ordered fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub name: &'static str,
    pub id: Option<String>,
    pub fields: Vec<(&'static str, String)>,
}

impl Event {
    pub fn new(name: &'static str) -> Self {
        Event {
            name,
            id: None,
            fields: Vec::new(),
        }
    }

    pub fn id(mut self, id: impl ToString) -> Self {
        self.id = Some(id.to_string());
        self
    }

    pub fn field(mut self, key: &'static str, value: impl ToString) -> Self {
        self.fields.push((key, value.to_string()));
        self
    }

    /// An address field, written `<addr>` (empty for the null sender).
    pub fn addr(self, key: &'static str, address: &str) -> Self {
        self.field(key, format!("<{address}>"))
    }

    /// The syslog text: `ID: event=queued from=<a@b> size=12 ...`.
    pub fn line(&self) -> String {
        let mut out = String::new();
        if let Some(id) = &self.id {
            out.push_str(id);
            out.push_str(": ");
        }
        out.push_str("event=");
        out.push_str(self.name);
        for (key, value) in &self.fields {
            out.push(' ');
            out.push_str(key);
            out.push('=');
            out.push_str(&quote(value));
        }
        out
    }

    pub fn json(&self, time: &str) -> String {
        let mut map = serde_json::Map::new();
        map.insert("time".into(), time.into());
        map.insert("event".into(), self.name.into());
        if let Some(id) = &self.id {
            map.insert("id".into(), id.clone().into());
        }
        for (key, value) in &self.fields {
            map.insert((*key).into(), value.clone().into());
        }
        serde_json::Value::Object(map).to_string()
    }
}

/// Values with spaces, quotes or `=` are double-quoted; control characters
/// never reach the log (no forged lines).
fn quote(value: &str) -> String {
    let clean: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let needs = clean.is_empty() || clean.contains([' ', '"', '=', '\\']);
    if !needs {
        return clean;
    }
    let mut out = String::with_capacity(clean.len() + 2);
    out.push('"');
    for c in clean.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// One line on stderr. A closed or broken stderr must not abort the
/// program (and so never turn a queued message into a failure exit).
pub fn stderr(line: &str) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = err
        .write_all(line.as_bytes())
        .and_then(|()| err.write_all(b"\n"));
}

pub struct Settings {
    pub syslog: bool,
    pub socket: PathBuf,
    pub file: Option<PathBuf>,
    /// The system's log file, which every user's submissions append to:
    /// only root may create it (root:relaymail 0660).
    pub shared_file: bool,
    /// Also print each line on stderr (`-v`).
    pub echo: bool,
}

pub struct Logger {
    face: &'static str,
    syslog: Option<syslog::Logger<LoggerBackend, Formatter3164>>,
    file: Option<PathBuf>,
    shared_file: bool,
    echo: bool,
}

impl Logger {
    /// A logger that writes nowhere (before the config is known).
    pub fn none(face: &'static str) -> Logger {
        Logger {
            face,
            syslog: None,
            file: None,
            shared_file: false,
            echo: false,
        }
    }

    pub fn open(face: &'static str, settings: Settings) -> Logger {
        let syslog = settings
            .syslog
            .then(|| connect(&settings.socket))
            .and_then(|result| match result {
                Ok(logger) => Some(logger),
                Err(reason) => {
                    stderr(&format!("{face}: warning: cannot log to syslog at {}: {reason}; continuing without syslog (set [log] syslog_socket, or syslog = false)",
                        settings.socket.display()
                    ));
                    None
                }
            });
        Logger {
            face,
            syslog,
            file: settings.file,
            shared_file: settings.shared_file,
            echo: settings.echo,
        }
    }

    pub fn log(&mut self, severity: Severity, event: &Event) {
        let line = event.line();
        if self.echo {
            stderr(&format!("{}: {line}", self.face));
        }
        if let Some(logger) = &mut self.syslog {
            let sent = match severity {
                Severity::Info => logger.info(&line),
                Severity::Warning => logger.warning(&line),
                Severity::Error => logger.err(&line),
            };
            if let Err(e) = sent {
                stderr(&format!(
                    "{}: warning: syslog write failed: {e}; continuing without syslog",
                    self.face
                ));
                self.syslog = None;
            }
        }
        if let Some(path) = &self.file {
            let time = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
            if let Err(e) = append_line(path, &event.json(&time), self.shared_file) {
                stderr(&format!(
                    "{}: warning: cannot append to log file {}: {e}",
                    self.face,
                    path.display()
                ));
                self.file = None;
            }
        }
    }

    pub fn info(&mut self, event: &Event) {
        self.log(Severity::Info, event);
    }
}

fn connect(socket: &Path) -> Result<syslog::Logger<LoggerBackend, Formatter3164>, String> {
    if !socket.exists() {
        return Err("no such socket".into());
    }
    let formatter = Formatter3164 {
        facility: Facility::LOG_MAIL,
        hostname: None,
        process: "relaymail".into(),
        pid: std::process::id(),
    };
    let logger = syslog::unix_custom(formatter, socket).map_err(|e| e.to_string())?;
    // A syslog daemon that stops reading (or a full datagram queue: Linux
    // queues only 10 by default) must not hang a committed submission.
    let timeout = Some(SYSLOG_WRITE_TIMEOUT);
    let set = match &logger.backend {
        LoggerBackend::Unix(socket) => socket.set_write_timeout(timeout),
        LoggerBackend::UnixStream(stream) => stream.get_ref().set_write_timeout(timeout),
        _ => Ok(()),
    };
    set.map_err(|e| e.to_string())?;
    Ok(logger)
}

/// How long one syslog line may wait for the daemon before logging is
/// given up for the rest of the process.
const SYSLOG_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// One `write` per line on an O_APPEND file, so concurrent writers never
/// interleave within a line. Opened for each line, so logrotate's
/// `create` works without a signal. A missing file is created only by its
/// owner-to-be: the user in user mode (0600); in system mode only root,
/// as root:relaymail 0660 (users' submissions append through the setgid
/// group), so that no submitter ever owns the shared log.
fn append_line(path: &Path, line: &str, shared: bool) -> std::io::Result<()> {
    let mut file = open_log_file(path, shared)?;
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    file.write_all(&buf)
}

fn open_log_file(path: &Path, shared: bool) -> std::io::Result<File> {
    use std::io::ErrorKind;
    loop {
        match OpenOptions::new().append(true).open(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            other => return other,
        }
        let root = nix::unistd::geteuid().is_root();
        if shared && !root {
            return Err(std::io::Error::new(
                ErrorKind::NotFound,
                format!(
                    "it does not exist and only root may create it; run as root: install -m 0660 -o root -g {group} /dev/null {}",
                    path.display(),
                    group = crate::spool::GROUP
                ),
            ));
        }
        let created = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            // Another writer created it first: append to theirs.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
            Ok(file) => {
                if shared {
                    let group = nix::unistd::Group::from_name(crate::spool::GROUP)
                        .ok()
                        .flatten()
                        .map(|g| g.gid);
                    nix::unistd::fchown(&file, Some(nix::unistd::Uid::from_raw(0)), group)?;
                    file.set_permissions(std::fs::Permissions::from_mode(0o660))?;
                }
                return Ok(file);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let e = Event::new(event::QUEUED)
            .id("0ABC")
            .addr("from", "root@x.org")
            .field("size", 12)
            .field("subject", "two words \"q\"")
            .field("evil", "a\nevent=forged");
        assert_eq!(
            e.line(),
            "0ABC: event=queued from=<root@x.org> size=12 subject=\"two words \\\"q\\\"\" evil=\"a event=forged\""
        );
    }

    #[test]
    fn json_format() {
        let e = Event::new(event::QUEUED).id("0ABC").field("size", 12);
        let v: serde_json::Value = serde_json::from_str(&e.json("T")).expect("json");
        assert_eq!(v["event"], "queued");
        assert_eq!(v["id"], "0ABC");
        assert_eq!(v["size"], "12");
    }
}
