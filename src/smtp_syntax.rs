//! SMTP command-line syntax shared by the sink and `sendmail -bs`: the
//! verb and its arguments, and the path of MAIL FROM / RCPT TO as clients
//! and old devices really write it. Fuzzed (fuzz/smtp_command).

/// A command line's verb (upper-cased) and its argument text.
pub fn split_command(text: &str) -> (String, String) {
    match text.split_once(' ') {
        Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_string()),
        None => (text.trim().to_ascii_uppercase(), String::new()),
    }
}

/// `FROM:<addr> params` / `TO:<addr> params`, case-insensitive, with the
/// spacing and missing brackets old devices produce. Returns the address
/// (without brackets) and the parameters.
pub fn path_argument(args: &str, keyword: &str) -> Option<(String, String)> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = args.get(keyword.len()..)?.trim_start();
    let (address, params) = match rest.strip_prefix('<') {
        Some(inner) => {
            let close = inner.find('>')?;
            (inner.get(..close)?, inner.get(close + 1..)?)
        }
        None => match rest.split_once(' ') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        },
    };
    // Drop an obsolete source route: <@a,@b:user@example.com>.
    let address = match address.strip_prefix('@') {
        Some(route) => route.split_once(':').map(|(_, a)| a).unwrap_or(address),
        None => address,
    };
    if address.chars().any(|c| c.is_control() || c == ' ') || address.len() > 512 {
        return None;
    }
    Some((address.to_string(), params.trim().to_string()))
}

/// Text for a one-line reply or log field: control characters (CR, LF)
/// become spaces, so a message can never start another line.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The enhanced status code (RFC 3463) right after a reply's code:
/// "550 5.1.1 <x>: unknown" -> Some("5.1.1").
pub fn enhanced_status(reply: &str) -> Option<&str> {
    reply.split_whitespace().nth(1).filter(|w| {
        let parts: Vec<&str> = w.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_and_without_brackets_and_source_routes() {
        let path = |args, keyword| path_argument(args, keyword);
        assert_eq!(
            path("FROM:<a@b.example> SIZE=10", "FROM:"),
            Some(("a@b.example".into(), "SIZE=10".into()))
        );
        assert_eq!(path("from: a@b", "FROM:"), Some(("a@b".into(), "".into())));
        assert_eq!(path("FROM:<>", "FROM:"), Some(("".into(), "".into())));
        assert_eq!(
            path("FROM:<@relay.example:a@b.org>", "FROM:"),
            Some(("a@b.org".into(), "".into()))
        );
        assert_eq!(path("TO a@b", "TO:"), None);
        assert_eq!(one_line("a\r\nRSET"), "a  RSET");
        assert_eq!(enhanced_status("550 5.1.1 <x>: unknown"), Some("5.1.1"));
        assert_eq!(enhanced_status("550 unknown user"), None);
    }
}
