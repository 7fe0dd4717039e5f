//! Mail addresses: RFC 5322 address lists as found in headers and on the
//! command line, and the syntax check for envelope addresses (RFC 5321),
//! with UTF-8 allowed (RFC 6531).

use std::fmt;
use std::ops::Range;

/// One mailbox found in an address list: its addr-spec and where that
/// addr-spec sits in the list text (for in-place rewriting).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    pub address: String,
    pub span: Range<usize>,
}

/// Splits an address list into mailboxes. Display names, comments and
/// group syntax (`undisclosed-recipients:;`) are understood; anything
/// unparseable is returned as typed so that validation can name it.
pub fn parse_list(text: &str) -> Vec<Mailbox> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut start = 0;
    let mut angle: Option<usize> = None;
    let mut angle_span: Option<Range<usize>> = None;
    while i < bytes.len() {
        match bytes.get(i).copied().unwrap_or(b',') {
            b'"' => i = skip_quoted(bytes, i),
            b'(' => i = skip_comment(bytes, i),
            // An address literal ([IPv6:::1]) holds colons that are not
            // group syntax.
            b'[' => {
                i = bytes
                    .get(i..)
                    .and_then(|r| r.iter().position(|b| *b == b']'))
                    .map_or(bytes.len(), |p| i + p)
            }
            b'<' if angle.is_none() => angle = Some(i + 1),
            b'>' => {
                if let Some(open) = angle.take() {
                    angle_span = Some(open..i);
                }
            }
            b':' if angle.is_none() => start = i + 1, // group name
            b',' | b';' if angle.is_none() => {
                push_mailbox(text, start..i, angle_span.take(), &mut out);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    push_mailbox(text, start..text.len(), angle_span.take(), &mut out);
    out
}

fn push_mailbox(
    text: &str,
    element: Range<usize>,
    angle: Option<Range<usize>>,
    out: &mut Vec<Mailbox>,
) {
    let span = match angle {
        Some(inner) => {
            // Drop an obsolete source route: <@a,@b:user@example.com>.
            let inner_text = text.get(inner.clone()).unwrap_or("");
            let skip = if inner_text.starts_with('@') {
                inner_text.find(':').map(|p| p + 1).unwrap_or(0)
            } else {
                0
            };
            inner.start + skip..inner.end
        }
        None => bare_span(text, element),
    };
    let address = text.get(span.clone()).unwrap_or("").trim();
    if !address.is_empty() {
        let lead = text
            .get(span.clone())
            .map(|s| s.len() - s.trim_start().len())
            .unwrap_or(0);
        let start = span.start + lead;
        out.push(Mailbox {
            address: address.to_string(),
            span: start..start + address.len(),
        });
    }
}

/// For a mailbox without angle brackets: the text before any comment.
fn bare_span(text: &str, element: Range<usize>) -> Range<usize> {
    let bytes = text.as_bytes();
    let mut i = element.start;
    let mut first: Option<usize> = None;
    let mut last = element.start;
    while i < element.end {
        match bytes.get(i).copied().unwrap_or(b' ') {
            b'(' => {
                i = skip_comment(bytes, i) + 1;
                continue;
            }
            b'"' => {
                first.get_or_insert(i);
                i = skip_quoted(bytes, i);
                last = i + 1;
            }
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => {
                first.get_or_insert(i);
                last = i + 1;
            }
        }
        i += 1;
    }
    match first {
        Some(f) => f..last.min(element.end),
        None => element.start..element.start,
    }
}

/// Index of the closing quote (or the end).
fn skip_quoted(bytes: &[u8], open: usize) -> usize {
    let mut i = open + 1;
    while let Some(b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Index of the closing parenthesis of a (possibly nested) comment.
fn skip_comment(bytes: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while let Some(b) = bytes.get(i) {
        match b {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

#[derive(Debug, PartialEq, Eq)]
pub struct Invalid {
    pub address: String,
    pub reason: &'static str,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid address {:?}: {}", self.address, self.reason)
    }
}

/// Checks an envelope address: `local@domain`, or a bare local name that
/// will be qualified. Returns the address without surrounding `<>`.
pub fn check(address: &str) -> Result<String, Invalid> {
    let bad = |reason| Invalid {
        address: address.to_string(),
        reason,
    };
    let trimmed = address.trim();
    let a = trimmed
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(trimmed);
    if a.is_empty() {
        return Err(bad("it is empty"));
    }
    if a.chars().any(|c| c.is_control()) {
        return Err(bad("it contains a control character or line break"));
    }
    if a.len() > 254 {
        return Err(bad("it is longer than 254 characters"));
    }
    let (local, domain) = match a.rsplit_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (a, None),
    };
    check_local(local).map_err(bad)?;
    if let Some(domain) = domain {
        check_domain(domain).map_err(bad)?;
    }
    Ok(a.to_string())
}

fn check_local(local: &str) -> Result<(), &'static str> {
    if local.is_empty() {
        return Err("the part before @ is empty");
    }
    if local.len() > 64 {
        return Err("the part before @ is longer than 64 characters");
    }
    if local.starts_with('"') && local.ends_with('"') && local.len() >= 2 {
        return Ok(());
    }
    const SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~.";
    if !local
        .chars()
        .all(|c| c.is_alphanumeric() || SPECIALS.contains(c) || !c.is_ascii())
    {
        return Err("it contains spaces or characters not allowed in an address (quote the local part if it must)");
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("dots must not start, end or double in the part before @");
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), &'static str> {
    if domain.starts_with('[') && domain.ends_with(']') {
        let inner = domain.get(1..domain.len() - 1).unwrap_or("");
        let inner = inner.strip_prefix("IPv6:").unwrap_or(inner);
        return inner
            .parse::<std::net::IpAddr>()
            .map(|_| ())
            .map_err(|_| "the address literal after @ is not an IP address");
    }
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || !c.is_ascii())
        });
    if ok {
        Ok(())
    } else {
        Err("the domain after @ is not a valid host name")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(text: &str) -> Vec<String> {
        parse_list(text).into_iter().map(|m| m.address).collect()
    }

    #[test]
    fn address_lists() {
        assert_eq!(addrs("a@example.com"), ["a@example.com"]);
        assert_eq!(
            addrs("A <a@example.com>, \"B, Jr\" <b@example.com>"),
            ["a@example.com", "b@example.com"]
        );
        assert_eq!(addrs("root (Cron Daemon)"), ["root"]);
        assert_eq!(
            addrs("team: a@x.org, b@x.org;, c@x.org"),
            ["a@x.org", "b@x.org", "c@x.org"]
        );
        assert_eq!(addrs("undisclosed-recipients:;"), Vec::<String>::new());
        assert_eq!(addrs("<@relay.example:u@example.com>"), ["u@example.com"]);
        assert_eq!(addrs("a@x.org,,b@x.org"), ["a@x.org", "b@x.org"]);
        assert_eq!(addrs("\"odd (not comment)\" <q@x.org>"), ["q@x.org"]);
        assert_eq!(addrs("u@[IPv6:::1], v@x.org"), ["u@[IPv6:::1]", "v@x.org"]);
        assert_eq!(addrs("a@x.org,\r\n root"), ["a@x.org", "root"]);
    }

    #[test]
    fn spans_point_at_the_address() {
        let text = "Admin <admin> , root (Cron)";
        for m in parse_list(text) {
            assert_eq!(text.get(m.span.clone()), Some(m.address.as_str()));
        }
    }

    #[test]
    fn envelope_check() {
        for good in [
            "a@example.com",
            "<a@example.com>",
            "root",
            "first.last+tag@sub.example.co.uk",
            "用户@例子.测试",
            "u@[127.0.0.1]",
            "\"john doe\"@example.com",
        ] {
            assert!(check(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a@",
            "@example.com",
            "a b@example.com",
            "a@exa mple.com",
            "a..b@x.org",
            "a@-x.org",
            "a@x.org\r\nBcc: v@x.org",
            "a@[999.1.1.1]",
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
    }
}
