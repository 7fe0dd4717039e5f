//! `relaymail sink`: run the receive-only SMTP sink, or read what it
//! received (`list`, `show`, `wait`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cli::{SinkAction, SinkArgs, SinkRun};
use crate::config::{self, values, Config, SinkAuth, SinkTls, Source};
use crate::log::Logger;
use crate::sink::events::{read_index, Record, INDEX};
use crate::sink::store;
use crate::sysexits::{Failure, Sysexit};

use super::queue::output;

/// `relaymail sink [ACTION]`: the server, or a look at what it stored.
/// The sink writes and reads where its caller says (--store, --state-dir,
/// an index's paths): never with the group. The system's [sink.users]
/// are the admin's.
pub fn command(
    source: &Source,
    mut config: Config,
    sink: SinkArgs,
    log: Logger,
    mut out: impl Write,
) -> Result<Sysexit, Failure> {
    crate::privilege::drop_group()?;
    if matches!(source, Source::System(_)) && !nix::unistd::getuid().is_root() {
        config.sink.users.clear();
    }
    match sink.action {
        Some(action) => act(&config, action, &mut out),
        None => {
            drop(out);
            run(&config, sink.run, log)
        }
    }
}

pub fn run(config: &Config, flags: SinkRun, log: Logger) -> Result<Sysexit, Failure> {
    let mut settings = config.sink.clone();
    apply(&mut settings, &flags)?;
    settings
        .check_limits()
        .map_err(|(key, message)| usage(format!("{key} (or its flag): {message}")))?;
    let hostname = flags
        .hostname
        .clone()
        .unwrap_or_else(|| config.hostname.clone());
    crate::sink::run(&hostname, settings, log)
}

fn usage(message: String) -> Failure {
    Failure::new(Sysexit::Usage, message)
}

fn parse_tls(text: &str) -> Result<SinkTls, Failure> {
    match text {
        "none" => Ok(SinkTls::None),
        "starttls" => Ok(SinkTls::Starttls),
        "implicit" => Ok(SinkTls::Implicit),
        _ => Err(usage(format!(
            "TLS mode {text:?}: use none, starttls or implicit"
        ))),
    }
}

fn parse_addr(text: &str) -> Result<std::net::SocketAddr, Failure> {
    text.parse().map_err(|_| {
        usage(format!(
            "{text:?} is not an address:port; write e.g. 0.0.0.0:25 or [::]:587"
        ))
    })
}

fn apply(s: &mut config::Sink, f: &SinkRun) -> Result<(), Failure> {
    let tls = f.tls.as_deref().map(parse_tls).transpose()?;
    if !f.listen.is_empty() || !f.listener.is_empty() {
        s.listeners.clear();
    }
    for addr in &f.listen {
        s.listeners.push(config::Listener {
            addr: parse_addr(addr)?,
            tls: tls.unwrap_or(SinkTls::None),
        });
    }
    for spec in &f.listener {
        let (addr, mode) = spec.rsplit_once('=').ok_or_else(|| {
            usage(format!(
                "--listener {spec:?}: write ADDR=none|starttls|implicit"
            ))
        })?;
        s.listeners.push(config::Listener {
            addr: parse_addr(addr)?,
            tls: parse_tls(mode)?,
        });
    }
    if let (Some(tls), true) = (tls, f.listen.is_empty() && f.listener.is_empty()) {
        for l in &mut s.listeners {
            l.tls = tls;
        }
    }
    if let Some(store) = &f.store {
        store::Spec::parse(store).map_err(usage)?;
        s.store = store.clone();
    }
    if let Some(user) = &f.user {
        s.user = Some(user.clone());
    }
    if let Some(auth) = &f.auth {
        s.auth = match auth.as_str() {
            "none" => SinkAuth::None,
            "accept-any" => SinkAuth::AcceptAny,
            "users" => SinkAuth::Users,
            _ => {
                return Err(usage(format!(
                    "--auth {auth:?}: use none, accept-any or users"
                )))
            }
        };
    }
    for pair in &f.auth_users {
        let (name, pass) = pair
            .split_once('=')
            .ok_or_else(|| usage("--auth-user: write NAME=PASSWORD".into()))?;
        s.users.insert(name.to_string(), pass.to_string());
    }
    if s.auth == SinkAuth::Users && s.users.is_empty() {
        return Err(usage(
            "--auth users needs at least one --auth-user NAME=PASSWORD or a [sink.users] table"
                .into(),
        ));
    }
    if let (Some(cert), Some(key)) = (&f.cert, &f.key) {
        s.cert_file = Some(cert.clone());
        s.key_file = Some(key.clone());
    }
    if let Some(dir) = &f.state_dir {
        s.state_dir = dir.clone();
        if s.store_in_state_dir && f.store.is_none() {
            s.store = format!("maildir:{}", dir.join("mail").display());
        }
    }
    if let Some(size) = &f.max_message_size {
        s.max_message_size = values::parse_size(size).map_err(usage)?;
    }
    if let Some(n) = f.max_recipients {
        s.max_recipients = n;
    }
    if let Some(n) = f.max_connections {
        s.max_connections = n;
    }
    if let Some(n) = f.max_connections_per_client {
        s.max_connections_per_client = Some(n);
    }
    if let Some(t) = &f.command_timeout {
        s.command_timeout = values::parse_duration(t).map_err(usage)?;
    }
    if let Some(t) = &f.session_timeout {
        s.session_timeout = values::parse_duration(t).map_err(usage)?;
    }
    Ok(())
}

pub fn act(config: &Config, action: SinkAction, out: &mut impl Write) -> Result<Sysexit, Failure> {
    let dir = |given: Option<PathBuf>| given.unwrap_or_else(|| config.sink.state_dir.clone());
    match action {
        SinkAction::List { json, state_dir } => list(&dir(state_dir), json, out),
        SinkAction::Show { id, state_dir } => show(&dir(state_dir), &id, out),
        SinkAction::Wait {
            count,
            to,
            since,
            timeout,
            state_dir,
        } => {
            let timeout = values::parse_duration(&timeout).map_err(usage)?;
            wait(
                &dir(state_dir),
                count,
                to.as_deref(),
                since.as_deref(),
                timeout,
                out,
            )
        }
    }
}

fn records(state_dir: &Path) -> Result<Vec<Record>, Failure> {
    read_index(&state_dir.join(INDEX), 0)
        .map(|(records, _)| records)
        .map_err(|e| Failure::new(Sysexit::IoErr, format!("cannot read the sink index: {e}")))
}

fn list(state_dir: &Path, json: bool, out: &mut impl Write) -> Result<Sysexit, Failure> {
    let records = records(state_dir)?;
    if json {
        let text = serde_json::to_string(&records).unwrap_or_else(|_| "[]".into());
        writeln!(out, "{text}").map_err(output)?;
        return Ok(Sysexit::Ok);
    }
    if records.is_empty() {
        writeln!(
            out,
            "no messages received (index: {})",
            state_dir.join(INDEX).display()
        )
        .map_err(output)?;
        return Ok(Sysexit::Ok);
    }
    writeln!(
        out,
        "{:<16} {:<19} {:<21} {:<16} {:<7} {:<24} {:<24} SUBJECT",
        "ID", "TIME", "CLIENT", "HELO", "TLS", "FROM", "TO"
    )
    .map_err(output)?;
    for r in &records {
        writeln!(
            out,
            "{:<16} {:<19} {:<21} {:<16} {:<7} {:<24} {:<24} {}",
            r.id,
            r.time.get(..19).unwrap_or(&r.time).replace('T', " "),
            r.client,
            r.helo.as_deref().unwrap_or("-"),
            r.tls.as_deref().unwrap_or("plain"),
            format!("<{}>", r.from),
            r.rcpt.join(","),
            r.subject.as_deref().unwrap_or("")
        )
        .map_err(output)?;
    }
    Ok(Sysexit::Ok)
}

fn show(state_dir: &Path, id: &str, out: &mut impl Write) -> Result<Sysexit, Failure> {
    let wanted = crate::id::QueueId::parse(id.trim()).ok_or_else(|| {
        usage(format!(
            "{id:?} is not a message ID (see relaymail sink list)"
        ))
    })?;
    let record = records(state_dir)?
        .into_iter()
        .find(|r| r.id == wanted.as_str())
        .ok_or_else(|| {
            usage(format!(
                "no received message {id:?} (see relaymail sink list)"
            ))
        })?;
    let stored = store::Stored {
        path: record.path.clone(),
        offset: record.offset,
        length: record.length,
    };
    let bytes = store::read(&stored).map_err(|e| {
        Failure::new(
            Sysexit::IoErr,
            format!("cannot read {}: {e}", record.path.display()),
        )
    })?;
    out.write_all(&bytes).map_err(output)?;
    Ok(Sysexit::Ok)
}

/// Where counting starts for `--since`.
enum Since {
    Everything,
    /// Records appended after this index offset.
    Offset(u64),
    AfterId(String),
    AfterTime(chrono::DateTime<chrono::FixedOffset>),
}

fn wait(
    state_dir: &Path,
    count: usize,
    to: Option<&str>,
    since: Option<&str>,
    timeout: Duration,
    out: &mut impl Write,
) -> Result<Sysexit, Failure> {
    let index = state_dir.join(INDEX);
    let since = match since {
        None => Since::Everything,
        Some("now") => Since::Offset(std::fs::metadata(&index).map(|m| m.len()).unwrap_or(0)),
        Some(text) => match chrono::DateTime::parse_from_rfc3339(text) {
            Ok(time) => Since::AfterTime(time),
            Err(_) => Since::AfterId(
                crate::id::QueueId::parse(text)
                    .ok_or_else(|| {
                        usage(format!(
                            "--since {text:?}: give a message ID, an RFC 3339 time or \"now\""
                        ))
                    })?
                    .to_string(),
            ),
        },
    };
    let start = match since {
        Since::Offset(offset) => offset,
        _ => 0,
    };
    let matches = |r: &Record| {
        let after = match &since {
            Since::Everything | Since::Offset(_) => true,
            Since::AfterId(id) => r.id.as_str() > id.as_str(),
            Since::AfterTime(t) => {
                chrono::DateTime::parse_from_rfc3339(&r.time).is_ok_and(|rt| rt > *t)
            }
        };
        after && to.is_none_or(|addr| r.rcpt.iter().any(|x| x.eq_ignore_ascii_case(addr)))
    };
    let deadline = Instant::now().checked_add(timeout).ok_or_else(|| {
        usage(format!(
            "--timeout {}s is too far in the future",
            timeout.as_secs()
        ))
    })?;
    let mut offset = start;
    let mut found: Vec<Record> = Vec::new();
    loop {
        let (records, next) = read_index(&index, offset).map_err(|e| {
            Failure::new(Sysexit::IoErr, format!("cannot read the sink index: {e}"))
        })?;
        offset = next;
        found.extend(records.into_iter().filter(|r| matches(r)));
        if found.len() >= count {
            for r in found.iter().take(count) {
                writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default())
                    .map_err(output)?;
            }
            return Ok(Sysexit::Ok);
        }
        if Instant::now() >= deadline {
            return Err(Failure::new(
                Sysexit::TempFail,
                format!(
                    "timed out after {}s with {} of {count} matching messages",
                    timeout.as_secs(),
                    found.len()
                ),
            ));
        }
        // The index only grows; polling its tail is cheap and needs no
        // cooperation from the running sink.
        std::thread::sleep(Duration::from_millis(20));
    }
}
