//! The sendmail face's submission: message from stdin to a committed spool
//! entry. The order matters: everything that can be refused from the
//! command line is checked before stdin is read, and nothing is visible
//! in the queue until `Draft::commit` returns.

use std::io::{self, Write};

use crate::cli::sendmail::{BodyType, DsnEvent, DsnNotify, DsnReturn, Invocation};
use crate::config::Config;
use crate::log::{event, Event, Logger};
use crate::message::{self, address, Field, Header};
use crate::rewrite::{Recipient, Rewriter};
use crate::spool::{envelope, Envelope, QueueId, Spool};
use crate::sysexits::{Failure, Sysexit};
use crate::system::{self, LocalUser};

/// RFC 5322 line length limit; longer lines are passed through unchanged
/// and counted in the log so that a relay's refusal can be explained.
const MAX_LINE: u64 = 998;

pub struct Submitted {
    pub id: QueueId,
    pub recipients: Vec<Recipient>,
}

pub fn submit(
    inv: &Invocation,
    config: &Config,
    log: &mut Logger,
    stdin: impl io::Read,
) -> Result<Submitted, Failure> {
    if inv.recipients.is_empty() && !inv.recipients_from_headers {
        return Err(Failure::new(
            Sysexit::Usage,
            "no recipients given; name at least one address, or use -t to take them from the To:, Cc: and Bcc: headers",
        ));
    }
    let user = system::calling_user();
    let rewriter = Rewriter::new(config)?;
    let sender = rewriter.sender(inv.sender.as_deref(), &user)?;
    let typed = split_arguments(&inv.recipients)?;
    if !inv.recipients_from_headers {
        // Refuse bad command-line recipients before reading the message.
        rewriter.recipients(&typed, !inv.no_aliases)?;
    }

    let spool = Spool::open(&config.spool_dir, config.mode)?;
    // Best effort: leftovers of someone else's crash must not stop mail.
    match spool.clean_orphans(false) {
        Ok(removed) => removed
            .iter()
            .for_each(|o| log.info(&super::orphan_event(o))),
        Err(e) => crate::log::stderr(&format!(
            "warning: {e}; leftovers stay until `relaymail queue clean`"
        )),
    }
    spool.check_space(config.queue.min_free_space)?;
    let mut draft = spool.create()?;
    let id = draft.id().clone();

    let mut reader = message::Reader::new(stdin, inv.ignore_dots);
    let mut header = reader.read_header()?;
    let mut wanted = typed;
    if inv.recipients_from_headers {
        wanted.extend(header.addresses(&["To", "Cc", "Bcc"]));
    }
    if wanted.is_empty() {
        return Err(Failure::new(
            Sysexit::Usage,
            "no recipients: -t found no address in the To:, Cc: or Bcc: headers and none was given as an argument",
        ));
    }
    let recipients = rewriter.recipients(&wanted, !inv.no_aliases)?;

    let message_id = complete_header(&mut header, inv, config, &rewriter, &user, &sender, &id);
    let sender = apply_sender_policy(config, &mut header, sender);
    let mut head = received(config, &user, &id).into_bytes();
    header.write_to(&mut head);
    head.extend_from_slice(b"\r\n");
    let limit = config.queue.max_message_size;
    let head_len = head.len() as u64;
    if head_len > limit {
        return Err(message::Error::TooLarge { limit }.into());
    }
    draft
        .write_all(&head)
        .map_err(|e| Failure::from(message::Error::Store(e)))?;
    let body_len = reader.copy_body(&mut draft, limit - head_len, limit)?;

    let size = head_len + body_len;
    let eight_bit =
        reader.eight_bit() || !head.is_ascii() || inv.body_type == Some(BodyType::EightBitMime);
    let smtputf8 = !sender.is_ascii() || recipients.iter().any(|r| !r.address.is_ascii());
    let submitter = envelope::Submitter {
        uid: user.uid,
        user: user.name.clone(),
    };
    let pairs = recipients
        .iter()
        .map(|r| (r.address.clone(), r.original.clone()))
        .collect();
    let mut envelope = Envelope::new(id.as_str(), &sender, submitter, size, pairs);
    envelope.eight_bit = eight_bit;
    envelope.smtputf8 = smtputf8;
    envelope.message_id = message_id.clone();
    envelope.dsn = dsn(inv);
    envelope.queue_only = inv.delivery == crate::cli::sendmail::DeliveryMode::QueueOnly;
    envelope.interactive = inv.delivery == crate::cli::sendmail::DeliveryMode::Interactive;
    // Let go of the lock at once: a background runner may take it now.
    drop(draft.commit(&envelope)?);

    let mut queued = Event::new(event::QUEUED)
        .id(&id)
        .addr("from", &sender)
        .field("to", address_list(&recipients))
        .field("nrcpt", recipients.len())
        .field("size", size)
        .field("uid", user.uid)
        .field("user", &user.name);
    if let Some(mid) = &message_id {
        queued = queued.field("msgid", mid);
    }
    if reader.longest_line() > MAX_LINE {
        queued = queued.field("long_lines", "yes");
    }
    log.info(&queued);
    Ok(Submitted { id, recipients })
}

/// Each argument may itself be a comma-separated list, as with sendmail.
fn split_arguments(args: &[String]) -> Result<Vec<String>, Failure> {
    let mut out = Vec::new();
    for arg in args {
        let found = address::parse_list(arg);
        if found.is_empty() {
            return Err(Failure::new(
                Sysexit::Usage,
                format!("recipient {arg:?} contains no address; give addresses such as user@example.com"),
            ));
        }
        out.extend(found.into_iter().map(|m| m.address));
    }
    Ok(out)
}

fn address_list(recipients: &[Recipient]) -> String {
    recipients
        .iter()
        .map(|r| format!("<{}>", r.address))
        .collect::<Vec<_>>()
        .join(",")
}

/// Bcc removed, addresses qualified, Date/Message-ID/From added when
/// missing. Returns the Message-ID.
fn complete_header(
    header: &mut Header,
    inv: &Invocation,
    config: &Config,
    rewriter: &Rewriter,
    user: &LocalUser,
    sender: &str,
    id: &QueueId,
) -> Option<String> {
    header.remove("Bcc");
    rewriter.qualify_header(header);
    if !header.has("From") {
        let address = if sender.is_empty() {
            format!("MAILER-DAEMON@{}", config.hostname)
        } else {
            sender.to_string()
        };
        let name = inv.full_name.clone().or_else(|| {
            // The passwd full name only describes the user's own address.
            inv.sender
                .is_none()
                .then(|| user.full_name.clone())
                .flatten()
        });
        let value = match name.filter(|n| !n.trim().is_empty()) {
            Some(name) => format!("{} <{address}>", display_name(&name)),
            None => address,
        };
        header.push(Field::new("From", &value));
    }
    if !header.has("Date") {
        header.push(Field::new("Date", &chrono::Local::now().to_rfc2822()));
    }
    match header.first("Message-ID") {
        Some(field) => Some(field.value()),
        None => {
            let mid = format!("<{}@{}>", id.as_str().to_ascii_lowercase(), config.hostname);
            header.push(Field::new("Message-ID", &mid));
            Some(mid)
        }
    }
}

/// `[rewrite] sender`: relays that accept only their account as sender get
/// it as envelope sender (and in From: with `rewrite_from`), the original
/// kept in X-Original-From and, when there is none, Reply-To. The null
/// sender of a bounce stays null.
fn apply_sender_policy(config: &Config, header: &mut Header, sender: String) -> String {
    let Some(forced) = &config.rewrite.sender else {
        return sender;
    };
    if sender.is_empty() || sender.eq_ignore_ascii_case(forced) {
        return sender;
    }
    if config.rewrite.rewrite_from {
        if let Some(from) = header.first("From").map(Field::value) {
            header.remove("From");
            if !header.has("Reply-To") {
                header.push(Field::new("Reply-To", &from));
            }
            header.push(Field::new("X-Original-From", &from));
            header.push(Field::new("From", forced));
        }
    }
    forced.clone()
}

/// The trace header for local submission (RFC 5321 4.4).
fn received(config: &Config, user: &LocalUser, id: &QueueId) -> String {
    format!(
        "Received: by {} (relaymail, from userid {})\r\n\tid {id}; {}\r\n",
        config.hostname,
        user.uid,
        chrono::Local::now().to_rfc2822()
    )
}

/// A display name as RFC 5322 wants it: bare when it is plain ASCII
/// words, quoted when it has specials, RFC 2047-encoded when not ASCII.
fn display_name(name: &str) -> String {
    let name = name.trim();
    if !name.is_ascii() {
        return format!("=?UTF-8?B?{}?=", message::base64::encode(name.as_bytes()));
    }
    const ATEXT: &str = "!#$%&'*+-/=?^_`{|}~ ";
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ATEXT.contains(c))
    {
        return name.to_string();
    }
    let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

fn dsn(inv: &Invocation) -> envelope::Dsn {
    envelope::Dsn {
        notify: inv.dsn_notify.as_ref().map(|n| match n {
            DsnNotify::Never => "NEVER".to_string(),
            DsnNotify::On(events) => events
                .iter()
                .map(|e| match e {
                    DsnEvent::Success => "SUCCESS",
                    DsnEvent::Failure => "FAILURE",
                    DsnEvent::Delay => "DELAY",
                })
                .collect::<Vec<_>>()
                .join(","),
        }),
        ret: inv.dsn_return.map(|r| match r {
            DsnReturn::Full => "FULL".to_string(),
            DsnReturn::Headers => "HDRS".to_string(),
        }),
        envid: inv.envelope_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names() {
        assert_eq!(display_name("CronDaemon"), "CronDaemon");
        assert_eq!(display_name("Cron Daemon"), "Cron Daemon");
        assert_eq!(display_name("Smith, John"), "\"Smith, John\"");
        assert_eq!(display_name("Jürgen"), "=?UTF-8?B?SsO8cmdlbg==?=");
    }
}
