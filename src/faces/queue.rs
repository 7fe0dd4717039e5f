//! Queue management: `mailq`/`sendmail -bp`, and `relaymail queue
//! list|show|delete|hold|release|clean`.

use std::io::{self, BufRead, BufReader, Write};

use chrono::TimeZone;

use crate::cli::QueueAction;
use crate::config::Config;
use crate::log::{event, Event, Logger};
use crate::message::MAX_HEADER_SIZE;
use crate::spool::{self, Envelope, QueueId, Spool, Status};
use crate::sysexits::{Failure, Sysexit};

pub fn open(config: &Config) -> Result<Spool, Failure> {
    Ok(Spool::open(&config.spool_dir, config.mode)?)
}

/// The sendmail-style table, as mailq shows it.
pub fn list(config: &Config, out: &mut impl Write) -> Result<Sysexit, Failure> {
    let spool = open(config)?;
    let entries = spool.list()?;
    if entries.is_empty() {
        writeln!(out, "Mail queue is empty").map_err(output)?;
        return Ok(Sysexit::Ok);
    }
    writeln!(
        out,
        "-Queue ID-        --Size-- ----Arrival Time---- -Sender/Recipient-------"
    )
    .map_err(output)?;
    let mut total: u64 = 0;
    let mut count = 0;
    let mut broken = false;
    for entry in &entries {
        match entry {
            Ok(env) => {
                total += env.size;
                count += 1;
                write_entry(out, env).map_err(output)?;
            }
            Err(e) => {
                broken = true;
                writeln!(out, "(unreadable entry: {e})\n").map_err(output)?;
            }
        }
    }
    writeln!(
        out,
        "-- {} Kbytes in {count} Request{}.",
        total.div_ceil(1024),
        if count == 1 { "" } else { "s" }
    )
    .map_err(output)?;
    Ok(if broken {
        Sysexit::DataErr
    } else {
        Sysexit::Ok
    })
}

fn write_entry(out: &mut impl Write, env: &Envelope) -> io::Result<()> {
    let mark = if env.held { "!" } else { " " };
    let sender = if env.sender.is_empty() {
        "MAILER-DAEMON"
    } else {
        &env.sender
    };
    writeln!(
        out,
        "{}{mark} {:>8} {}  {sender}",
        env.id,
        env.size,
        local_time(env.created, "%a %b %e %H:%M:%S")
    )?;
    let pad = " ".repeat(47);
    if let Some(err) = &env.last_error {
        writeln!(out, "{pad}({err})")?;
    }
    for r in env.pending() {
        writeln!(out, "{pad}{}", r.address)?;
    }
    if env.held {
        writeln!(
            out,
            "{pad}(on hold: `relaymail queue release {}` to deliver)",
            env.id
        )?;
    }
    writeln!(out)
}

fn local_time(unix: i64, format: &str) -> String {
    chrono::Local
        .timestamp_opt(unix, 0)
        .single()
        .map(|t| t.format(format).to_string())
        .unwrap_or_else(|| unix.to_string())
}

fn rfc3339(unix: Option<i64>) -> serde_json::Value {
    unix.and_then(|t| chrono::Local.timestamp_opt(t, 0).single())
        .map(|t| serde_json::Value::String(t.to_rfc3339()))
        .unwrap_or(serde_json::Value::Null)
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::Deferred => "deferred",
        Status::Sent => "sent",
        Status::Bounced => "bounced",
    }
}

fn to_json(env: &Envelope) -> serde_json::Value {
    serde_json::json!({
        "id": env.id,
        "created": rfc3339(Some(env.created)),
        "size": env.size,
        "sender": env.sender,
        "held": env.held,
        "attempts": env.attempts,
        "last_attempt": rfc3339(env.last_attempt),
        "next_attempt": rfc3339(env.next_attempt),
        "last_error": env.last_error,
        "message_id": env.message_id,
        "submitter": { "uid": env.submitter.uid, "user": env.submitter.user },
        "recipients": env.recipients.iter().map(|r| serde_json::json!({
            "address": r.address,
            "original": r.original,
            "status": status_word(r.status),
            "reply": r.reply,
        })).collect::<Vec<_>>(),
    })
}

pub fn list_json(config: &Config, out: &mut impl Write) -> Result<Sysexit, Failure> {
    let spool = open(config)?;
    let mut items = Vec::new();
    let mut broken = false;
    for entry in spool.list()? {
        match entry {
            Ok(env) => items.push(to_json(&env)),
            Err(e) => {
                broken = true;
                items.push(serde_json::json!({ "error": e.to_string() }));
            }
        }
    }
    writeln!(out, "{}", serde_json::Value::Array(items)).map_err(output)?;
    Ok(if broken {
        Sysexit::DataErr
    } else {
        Sysexit::Ok
    })
}

fn parse_id(text: &str) -> Result<QueueId, Failure> {
    QueueId::parse(text).ok_or_else(|| spool::Error::BadId(text.to_string()).into())
}

/// The state and the message's header section.
pub fn show(
    config: &Config,
    id: &str,
    json: bool,
    out: &mut impl Write,
) -> Result<Sysexit, Failure> {
    let spool = open(config)?;
    let id = parse_id(id)?;
    check_owner(&spool, &id, "show")?;
    let env = spool.read(&id)?;
    let unreadable =
        |e: String| Failure::new(Sysexit::IoErr, format!("cannot read message {id}: {e}"));
    let body = spool.body(&id).map_err(|e| unreadable(e.to_string()))?;
    let header = read_header(body).map_err(|e| unreadable(e.to_string()))?;
    if json {
        let mut value = to_json(&env);
        if let Some(map) = value.as_object_mut() {
            map.insert(
                "header".into(),
                String::from_utf8_lossy(&header).into_owned().into(),
            );
        }
        writeln!(out, "{value}").map_err(output)?;
        return Ok(Sysexit::Ok);
    }
    let text = format!(
        "Queue ID:  {}\nArrived:   {}\nSize:      {} bytes\nSender:    <{}>\nSubmitted: uid {} ({})\nHeld:      {}\nAttempts:  {}\n{}{}Recipients:\n{}\n",
        env.id,
        local_time(env.created, "%Y-%m-%d %H:%M:%S %z"),
        env.size,
        env.sender,
        env.submitter.uid,
        env.submitter.user,
        if env.held { "yes" } else { "no" },
        env.attempts,
        env.next_attempt
            .map(|t| format!("Next try:  {}\n", local_time(t, "%Y-%m-%d %H:%M:%S %z")))
            .unwrap_or_default(),
        env.last_error
            .as_ref()
            .map(|e| format!("Last error: {e}\n"))
            .unwrap_or_default(),
        env.recipients
            .iter()
            .map(|r| {
                let via = if r.original != r.address { format!(" (from {})", r.original) } else { String::new() };
                let reply = r.reply.as_ref().map(|x| format!(": {x}")).unwrap_or_default();
                format!("  {:<8} <{}>{via}{reply}", status_word(r.status), r.address)
            })
            .collect::<Vec<_>>()
            .join("\n"),
    );
    out.write_all(text.as_bytes()).map_err(output)?;
    out.write_all(b"\n").map_err(output)?;
    out.write_all(&header).map_err(output)?;
    Ok(Sysexit::Ok)
}

/// The header section of a stored message, up to the empty line (bounded).
fn read_header(body: impl io::Read) -> io::Result<Vec<u8>> {
    let mut reader = BufReader::new(body);
    let mut out = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line == b"\r\n" || out.len() > MAX_HEADER_SIZE {
            return Ok(out);
        }
        let text = line.strip_suffix(b"\r\n").unwrap_or(&line);
        out.extend_from_slice(text);
        out.push(b'\n');
    }
}

/// What to do to each ID in `delete`, `hold` and `release`.
#[derive(Clone, Copy)]
pub enum Change {
    Delete,
    Hold,
    Release,
}

pub fn change(
    config: &Config,
    ids: &[String],
    change: Change,
    log: &mut Logger,
    out: &mut impl Write,
) -> Result<Sysexit, Failure> {
    let spool = open(config)?;
    let mut worst = Sysexit::Ok;
    for text in ids {
        let result = parse_id(text).and_then(|id| apply(&spool, &id, change).map(|()| id));
        match result {
            Ok(id) => {
                let (name, word) = match change {
                    Change::Delete => (event::DELETED, "deleted"),
                    Change::Hold => (event::HELD, "held"),
                    Change::Release => (event::RELEASED, "released"),
                };
                let user = crate::system::calling_user();
                log.info(
                    &Event::new(name)
                        .id(&id)
                        .field("uid", user.uid)
                        .field("user", &user.name),
                );
                writeln!(out, "{id}: {word}").map_err(output)?;
            }
            Err(failure) => {
                crate::log::stderr(&format!("relaymail: {text}: {failure}"));
                worst = failure.exit;
            }
        }
    }
    Ok(worst)
}

/// Through the setgid binary, a user may act on their own messages only;
/// root (and anyone in user mode, where the spool is their own) on all.
fn check_owner(spool: &Spool, id: &QueueId, what: &str) -> Result<(), Failure> {
    if !crate::privilege::is_setgid() || nix::unistd::getuid().is_root() {
        return Ok(());
    }
    let env = spool.read(id)?;
    if env.submitter.uid == nix::unistd::getuid().as_raw() {
        return Ok(());
    }
    Err(Failure::new(
        Sysexit::NoPerm,
        format!(
            "message {id} was submitted by {} (uid {}); only they or root may {what} it",
            env.submitter.user, env.submitter.uid
        ),
    ))
}

fn apply(spool: &Spool, id: &QueueId, change: Change) -> Result<(), Failure> {
    let what = match change {
        Change::Delete => "delete",
        Change::Hold => "hold",
        Change::Release => "release",
    };
    check_owner(spool, id, what)?;
    match change {
        Change::Delete => Ok(spool.delete(id)?),
        Change::Hold | Change::Release => {
            let locked = spool.lock(id)?;
            let mut env = locked.envelope()?;
            env.held = matches!(change, Change::Hold);
            Ok(locked.update(&env)?)
        }
    }
}

pub fn clean(config: &Config, log: &mut Logger, out: &mut impl Write) -> Result<Sysexit, Failure> {
    let spool = open(config)?;
    let removed = spool.clean_orphans(true)?;
    for orphan in &removed {
        log.info(&super::orphan_event(orphan));
        writeln!(
            out,
            "removed {} ({} bytes)",
            orphan.path.display(),
            orphan.size
        )
        .map_err(output)?;
    }
    if removed.is_empty() {
        writeln!(out, "no leftovers in {}", spool.root().display()).map_err(output)?;
    }
    Ok(Sysexit::Ok)
}

/// Output errors: a closed pipe (`mailq | head`) is not a failure.
pub fn output(e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Failure::new(Sysexit::Ok, "")
    } else {
        Failure::new(Sysexit::IoErr, format!("cannot write output: {e}"))
    }
}

/// `relaymail queue ACTION`.
pub fn act(
    config: &Config,
    action: QueueAction,
    log: &mut Logger,
    out: &mut impl Write,
) -> Result<Sysexit, Failure> {
    match action {
        QueueAction::List { json: false } => list(config, out),
        QueueAction::List { json: true } => list_json(config, out),
        QueueAction::Show { id, json } => show(config, &id, json, out),
        QueueAction::Delete { ids } => change(config, &ids, Change::Delete, log, out),
        QueueAction::Hold { ids } => change(config, &ids, Change::Hold, log, out),
        QueueAction::Release { ids } => change(config, &ids, Change::Release, log, out),
        QueueAction::Clean => clean(config, log, out),
    }
}
