//! Delivery status notifications (RFC 3464 multipart/report) for
//! recipients that failed for good or expired. A DSN goes back through the
//! spool like any message, from the null sender and marked `is_bounce`,
//! so it can never cause another one.

use std::io::Read;
use std::io::{BufRead, BufReader, Write};

use crate::config::Config;
use crate::id::QueueId;
use crate::smtp_syntax::one_line;
use crate::spool::{envelope, Envelope, Spool};

/// One failed recipient, as reported.
pub struct Failed {
    pub address: String,
    pub original: String,
    pub reply: String,
}

/// Where a DSN for `env` goes, or None when none may be sent (a bounce
/// never bounces; the null sender has nobody to tell).
pub fn recipient(config: &Config, env: &Envelope) -> Option<String> {
    // `-N never` or `-N success,delay`: the sender asked for no failure DSN.
    let refused = env
        .dsn
        .notify
        .as_deref()
        .is_some_and(|n| !n.to_ascii_uppercase().contains("FAILURE"));
    if env.is_bounce || refused {
        return None;
    }
    let local = env.sender.is_empty() || config.is_local_address(&env.sender);
    match (&config.queue.bounce_to, local) {
        (Some(admin), true) => Some(admin.clone()),
        (_, _) if env.sender.is_empty() => None,
        _ => Some(env.sender.clone()),
    }
}

/// Queues a DSN about `failed` recipients of `env` (whose message
/// `message` reads) for `to`. Returns the DSN's queue ID.
pub fn queue(
    config: &Config,
    spool: &Spool,
    env: &Envelope,
    message: &mut dyn Read,
    failed: &[Failed],
    remote: &str,
    to: &str,
) -> Result<QueueId, crate::spool::Error> {
    let mut draft = spool.create()?;
    let id = draft.id().clone();
    let text = compose(config, env, message, failed, remote, to, &id);
    let io = |e: std::io::Error| crate::spool::Error::Io {
        action: "write a bounce into",
        path: spool.root().to_path_buf(),
        source: e,
    };
    draft.write_all(text.as_bytes()).map_err(io)?;
    let submitter = envelope::Submitter {
        uid: 0,
        user: "MAILER-DAEMON".into(),
    };
    let mut dsn = Envelope::new(
        id.as_str(),
        "",
        submitter,
        text.len() as u64,
        vec![(to.to_string(), to.to_string())],
    );
    dsn.is_bounce = true;
    dsn.eight_bit = !text.is_ascii();
    dsn.smtputf8 = !to.is_ascii();
    draft.commit(&dsn)?;
    Ok(id)
}

fn compose(
    config: &Config,
    env: &Envelope,
    message: &mut dyn Read,
    failed: &[Failed],
    remote: &str,
    to: &str,
    id: &QueueId,
) -> String {
    let host = &config.hostname;
    let now = chrono::Local::now();
    let boundary = format!("{id}/{host}");
    let mut human = format!(
        "This is the mail system at host {host}.\r\n\r\nYour message could not be delivered to one or more recipients; it was\r\nreturned by the mail relay or could not be delivered in time. The reason\r\nfor each recipient is below.\r\n\r\n"
    );
    for f in failed {
        human.push_str(&format!("<{}>: {}\r\n", f.address, one_line(&f.reply)));
    }
    let arrival = chrono::DateTime::from_timestamp(env.created, 0)
        .map(|t| t.with_timezone(&chrono::Local).to_rfc2822())
        .unwrap_or_default();
    let mut status = format!(
        "Reporting-MTA: dns; {host}\r\nX-Relaymail-Queue-ID: {}\r\nArrival-Date: {arrival}\r\n",
        env.id
    );
    for f in failed {
        let code = enhanced(&f.reply);
        status.push_str(&format!("\r\nFinal-Recipient: rfc822; {}\r\n", f.address));
        if f.original != f.address {
            status.push_str(&format!("Original-Recipient: rfc822; {}\r\n", f.original));
        }
        status.push_str(&format!(
            "Action: failed\r\nStatus: {code}\r\nRemote-MTA: dns; {}\r\nDiagnostic-Code: smtp; {}\r\nLast-Attempt-Date: {}\r\n",
            remote.split('[').next().unwrap_or(remote),
            one_line(&f.reply),
            now.to_rfc2822()
        ));
    }
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\nTo: <{to}>\r\nSubject: Undelivered Mail Returned to Sender\r\nDate: {date}\r\nMessage-ID: <{lower}@{host}>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\nThis is a MIME-encapsulated delivery status notification.\r\n\r\n--{boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{human}\r\n--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n{status}\r\n--{boundary}\r\nContent-Description: Undelivered message headers\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n--{boundary}--\r\n",
        date = now.to_rfc2822(),
        lower = id.as_str().to_ascii_lowercase(),
        headers = original_headers(message),
    )
}

/// The original header section (bounded), CRLF line ends.
fn original_headers(message: &mut dyn Read) -> String {
    let mut reader = BufReader::new(message);
    let mut out = String::new();
    let mut line = Vec::new();
    while out.len() < 64 << 10 {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == b"\r\n" => break,
            Ok(_) => out.push_str(&String::from_utf8_lossy(&line)),
        }
    }
    out
}

/// The enhanced status in a reply, else 5.0.0.
fn enhanced(reply: &str) -> String {
    crate::smtp_syntax::enhanced_status(reply)
        .filter(|code| code.starts_with('5'))
        .unwrap_or("5.0.0")
        .to_string()
}
