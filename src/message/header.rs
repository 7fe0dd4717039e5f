//! The header section: fields kept as their raw bytes (folding preserved),
//! with lookups by name and in-place address rewriting. Fields we do not
//! change are written back exactly as they came.

use super::address;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The whole field, continuation lines included, ending in CRLF.
    raw: Vec<u8>,
    name_len: usize,
}

impl Field {
    /// Builds a field from a name and an unfolded value.
    pub fn new(name: &str, value: &str) -> Field {
        let raw = format!("{name}: {value}\r\n").into_bytes();
        Field {
            raw,
            name_len: name.len(),
        }
    }

    pub fn name(&self) -> &str {
        std::str::from_utf8(self.raw.get(..self.name_len).unwrap_or(b"")).unwrap_or("")
    }

    pub fn is(&self, name: &str) -> bool {
        self.name().eq_ignore_ascii_case(name)
    }

    /// The value with folding removed (CRLF before whitespace dropped).
    pub fn value(&self) -> String {
        let after_colon = self
            .raw
            .iter()
            .position(|b| *b == b':')
            .and_then(|p| self.raw.get(p + 1..))
            .unwrap_or(b"");
        let text = String::from_utf8_lossy(after_colon);
        text.replace("\r\n", "").trim().to_string()
    }

    pub fn raw(&self) -> &[u8] {
        &self.raw
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub fields: Vec<Field>,
}

/// Splitting the start of a normalised (CRLF) message into header and body.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// The header is complete; the body starts at this offset.
    Complete { header: Header, body_start: usize },
    /// More input is needed to decide.
    NeedMore,
}

/// Scans `buf` for the end of the header section: an empty line, or the
/// first line that is neither a field nor a continuation (that line then
/// starts the body, as Postfix does). A leading mbox "From " line is
/// dropped. `at_eof` says no more input will come.
pub fn scan(buf: &[u8], at_eof: bool) -> Scan {
    let mut header = Header::default();
    let mut pos = 0;
    let mut first = true;
    loop {
        let rest = buf.get(pos..).unwrap_or(b"");
        let Some(eol) = find_crlf(rest) else {
            return if at_eof || rest.len() > super::MAX_HEADER_LINE && !looks_like_field(rest) {
                Scan::Complete {
                    header,
                    body_start: pos,
                }
            } else {
                Scan::NeedMore
            };
        };
        let line = rest.get(..eol).unwrap_or(b"");
        let next = pos + eol + 2;
        if line.is_empty() {
            return Scan::Complete {
                header,
                body_start: next,
            };
        }
        if first && line.starts_with(b"From ") {
            first = false;
            pos = next;
            continue;
        }
        first = false;
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some(field) = header.fields.last_mut() {
                field.raw.extend_from_slice(line);
                field.raw.extend_from_slice(b"\r\n");
                pos = next;
                continue;
            }
            return Scan::Complete {
                header,
                body_start: pos,
            };
        }
        match field_name_len(line) {
            Some(name_len) => {
                let mut raw = line.to_vec();
                raw.extend_from_slice(b"\r\n");
                header.fields.push(Field { raw, name_len });
                pos = next;
            }
            None => {
                return Scan::Complete {
                    header,
                    body_start: pos,
                }
            }
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    memchr::memmem::find(buf, b"\r\n")
}

/// RFC 5322 field name: printable ASCII except colon, then optional
/// whitespace (obsolete syntax), then a colon.
fn field_name_len(line: &[u8]) -> Option<usize> {
    let name_len = line
        .iter()
        .position(|b| !(0x21..=0x7e).contains(b) || *b == b':')?;
    if name_len == 0 {
        return None;
    }
    let after = line.get(name_len..)?;
    let spaces = after
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    (after.get(spaces) == Some(&b':')).then_some(name_len)
}

fn looks_like_field(partial: &[u8]) -> bool {
    field_name_len(partial.get(..partial.len().min(200)).unwrap_or(b"")).is_some()
}

impl Header {
    pub fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f.is(name))
    }

    pub fn first(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.is(name))
    }

    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|f| !f.is(name));
    }

    pub fn push(&mut self, field: Field) {
        self.fields.push(field);
    }

    /// Addresses in all fields called `names`, in order.
    pub fn addresses(&self, names: &[&str]) -> Vec<String> {
        self.fields
            .iter()
            .filter(|f| names.iter().any(|n| f.is(n)))
            .flat_map(|f| address::parse_list(&f.value()))
            .map(|m| m.address)
            .collect()
    }

    /// Rewrites addresses in the fields called `names`: `map` returns the
    /// replacement for an address, or None to keep it. Only the changed
    /// addresses are spliced into the raw field, so folding and every other
    /// byte stay as they were; a field that is not UTF-8 is left alone.
    pub fn rewrite_addresses(&mut self, names: &[&str], map: impl Fn(&str) -> Option<String>) {
        for field in self
            .fields
            .iter_mut()
            .filter(|f| names.iter().any(|n| f.is(n)))
        {
            let Ok(raw) = std::str::from_utf8(&field.raw) else {
                continue;
            };
            let Some(colon) = raw.find(':') else { continue };
            let value_start = colon + 1;
            let value_end = raw.len().saturating_sub(2).max(value_start);
            let Some(value) = raw.get(value_start..value_end) else {
                continue;
            };
            let mut changed = raw.to_string();
            let mut mailboxes = address::parse_list(value);
            // Replace from the end so earlier spans stay valid.
            mailboxes.reverse();
            for mailbox in mailboxes {
                if let Some(new) = map(&mailbox.address) {
                    let span = value_start + mailbox.span.start..value_start + mailbox.span.end;
                    changed.replace_range(span, &new);
                }
            }
            field.raw = changed.into_bytes();
        }
    }

    /// Byte length when written.
    pub fn len(&self) -> usize {
        self.fields.iter().map(|f| f.raw.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        for f in &self.fields {
            out.extend_from_slice(&f.raw);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> (Header, usize) {
        match scan(buf, true) {
            Scan::Complete { header, body_start } => (header, body_start),
            Scan::NeedMore => unreachable!("at eof the scan completes"),
        }
    }

    #[test]
    fn folding_is_preserved_and_unfolded_for_reading() {
        let msg = b"Subject: a long\r\n\tsubject\r\nTo: x@example.com\r\n\r\nbody\r\n";
        let (h, start) = complete(msg);
        assert_eq!(h.fields.len(), 2);
        assert_eq!(
            h.first("subject").map(Field::value).as_deref(),
            Some("a long\tsubject")
        );
        assert_eq!(
            h.first("Subject").map(|f| f.raw().to_vec()),
            Some(b"Subject: a long\r\n\tsubject\r\n".to_vec())
        );
        assert_eq!(msg.get(start..), Some(&b"body\r\n"[..]));
    }

    #[test]
    fn body_without_header() {
        let (h, start) = complete(b"just text\r\nmore\r\n");
        assert!(h.is_empty());
        assert_eq!(start, 0);
        let (h, start) = complete(b"Subject: x\r\nnot a header line\r\n");
        assert_eq!(h.fields.len(), 1);
        assert_eq!(start, 12);
    }

    #[test]
    fn mbox_from_line_dropped() {
        let (h, _) = complete(b"From root Mon Jan 1 00:00:00 2024\r\nSubject: x\r\n\r\n");
        assert_eq!(h.fields.len(), 1);
        assert!(h.has("subject"));
    }

    #[test]
    fn needs_more_until_blank_line() {
        assert_eq!(scan(b"Subject: x\r\nTo: y", false), Scan::NeedMore);
        assert_eq!(scan(b"Subject: x\r\n", false), Scan::NeedMore);
    }

    #[test]
    fn rewriting_keeps_folding_and_leaves_8bit_fields_alone() {
        let (mut h, _) =
            complete(b"To: a@x.org,\r\n  root,\r\n\tb@x.org\r\nCc: J\xf6rg <root>\r\n\r\n");
        h.rewrite_addresses(&["to", "cc"], |a| {
            (!a.contains('@')).then(|| format!("{a}@example.com"))
        });
        let mut out = Vec::new();
        h.write_to(&mut out);
        assert_eq!(
            out,
            b"To: a@x.org,\r\n  root@example.com,\r\n\tb@x.org\r\nCc: J\xf6rg <root>\r\n".to_vec()
        );
    }

    #[test]
    fn rewrite_addresses_in_place() {
        let (mut h, _) = complete(b"From: root (Cron Daemon)\r\nTo: Admin <admin>, b@example.com\r\nSubject: root\r\n\r\n");
        h.rewrite_addresses(&["from", "to"], |a| {
            (!a.contains('@')).then(|| format!("{a}@example.com"))
        });
        let mut out = Vec::new();
        h.write_to(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "From: root@example.com (Cron Daemon)\r\nTo: Admin <admin@example.com>, b@example.com\r\nSubject: root\r\n"
        );
    }
}
