//! Message IDs for the queue and the sink: 11 characters of microseconds since the epoch plus 5 random
//! characters, in Crockford base32 (no I, L, O, U). They sort by arrival
//! time, are safe as file names, and are unique across concurrent
//! submitters (creation is O_EXCL, so a collision is retried, not lost).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const TIME_CHARS: usize = 11;
const RANDOM_CHARS: usize = 5;
pub const LEN: usize = TIME_CHARS + RANDOM_CHARS;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(String);

impl QueueId {
    pub fn generate() -> QueueId {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let mut random = [0u8; 4];
        // Without randomness the time part alone still orders IDs; O_EXCL
        // catches the rare collision.
        let _ = getrandom::fill(&mut random);
        let random = u32::from_le_bytes(random) as u64;
        let mut id = String::with_capacity(LEN);
        encode(micros, TIME_CHARS, &mut id);
        encode(random, RANDOM_CHARS, &mut id);
        QueueId(id)
    }

    /// Accepts only well-formed IDs (so a user-typed ID can never be a path).
    pub fn parse(text: &str) -> Option<QueueId> {
        let upper = text.trim().to_ascii_uppercase();
        (upper.len() == LEN && upper.bytes().all(|b| ALPHABET.contains(&b)))
            .then_some(QueueId(upper))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn encode(mut value: u64, chars: usize, out: &mut String) {
    let mut buf = vec![b'0'; chars];
    for slot in buf.iter_mut().rev() {
        *slot = ALPHABET.get((value & 31) as usize).copied().unwrap_or(b'0');
        value >>= 5;
    }
    out.push_str(std::str::from_utf8(&buf).unwrap_or(""));
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_parse_back() {
        let a = QueueId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = QueueId::generate();
        assert!(a < b, "{a} < {b}");
        assert_eq!(QueueId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(QueueId::parse(&a.as_str().to_lowercase()), Some(a));
        assert_eq!(QueueId::parse("../../etc/passwd"), None);
        assert_eq!(QueueId::parse("0123456789ABCDEU"), None);
    }

    #[test]
    fn many_ids_are_distinct() {
        let ids: std::collections::HashSet<QueueId> =
            (0..10_000).map(|_| QueueId::generate()).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
