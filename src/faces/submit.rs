//! The sendmail face's submission: message from stdin to a committed spool
//! entry. The order matters: everything that can be refused from the
//! command line is checked before stdin is read, and nothing is visible
//! in the queue until `Draft::commit` returns.

use std::io::{self, Write};

use crate::cli::sendmail::{BodyType, DsnEvent, DsnNotify, DsnReturn, Invocation};
use crate::config::Config;
use crate::log::{event, Event, Logger};
use crate::message::{self, address, shape};
use crate::rewrite::{Recipient, Rewriter};
use crate::spool::{envelope, Envelope, QueueId, Spool};
use crate::sysexits::{Failure, Sysexit};
use crate::system;

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

    rewriter.qualify_header(&mut header);
    // The passwd full name only describes the user's own address.
    let own_name = inv
        .sender
        .is_none()
        .then_some(user.full_name.as_deref())
        .flatten();
    let name = inv.full_name.as_deref().or(own_name);
    let from = shape::from_value(&sender, name, &config.hostname);
    let message_id = shape::complete(&mut header, &from, &config.hostname, id.as_str());
    let sender = rewriter.enforce_sender(&mut header, sender);
    let mut head = shape::received(&config.hostname, user.uid, id.as_str()).into_bytes();
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
