//! What a local submission adds to a message's header: the fields a mail
//! user agent may leave out (From, Date, Message-ID), the trace field
//! (Received), and the header side of a forced sender. Plain values in:
//! which sender, name and host they are is decided above (`rewrite`, the
//! submission face), so this module still knows message syntax only.

use super::{base64, Field, Header};

/// Bcc removed; From (`from`, the value to use when there is none), Date
/// and Message-ID (`<queue id@hostname>`) added when missing. Returns
/// the Message-ID.
pub fn complete(header: &mut Header, from: &str, hostname: &str, queue_id: &str) -> Option<String> {
    header.remove("Bcc");
    if !header.has("From") {
        header.push(Field::new("From", from));
    }
    if !header.has("Date") {
        header.push(Field::new("Date", &chrono::Local::now().to_rfc2822()));
    }
    match header.first("Message-ID") {
        Some(field) => Some(field.value()),
        None => {
            let mid = format!("<{}@{hostname}>", queue_id.to_ascii_lowercase());
            header.push(Field::new("Message-ID", &mid));
            Some(mid)
        }
    }
}

/// The From value for `address` (the null sender's is the host's
/// MAILER-DAEMON), with the display name when there is one.
pub fn from_value(address: &str, name: Option<&str>, hostname: &str) -> String {
    let address = if address.is_empty() {
        format!("MAILER-DAEMON@{hostname}")
    } else {
        address.to_string()
    };
    match name.filter(|n| !n.trim().is_empty()) {
        Some(name) => format!("{} <{address}>", display_name(name)),
        None => address,
    }
}

/// A forced sender in From: the original From moves to X-Original-From
/// and, when there is none, Reply-To (so that replies still reach the
/// author).
pub fn force_from(header: &mut Header, forced: &str) {
    let Some(from) = header.first("From").map(Field::value) else {
        return;
    };
    header.remove("From");
    if !header.has("Reply-To") {
        header.push(Field::new("Reply-To", &from));
    }
    header.push(Field::new("X-Original-From", &from));
    header.push(Field::new("From", forced));
}

/// The trace field for local submission (RFC 5321 4.4), CRLF-terminated.
pub fn received(hostname: &str, uid: u32, queue_id: &str) -> String {
    format!(
        "Received: by {hostname} (relaymail, from userid {uid})\r\n\tid {queue_id}; {}\r\n",
        chrono::Local::now().to_rfc2822()
    )
}

/// A display name as RFC 5322 wants it: bare when it is plain ASCII
/// words, quoted when it has specials, RFC 2047-encoded when not ASCII.
fn display_name(name: &str) -> String {
    let name = name.trim();
    if !name.is_ascii() {
        return format!("=?UTF-8?B?{}?=", base64::encode(name.as_bytes()));
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
