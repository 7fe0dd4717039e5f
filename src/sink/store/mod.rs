//! Where the sink keeps what it accepts: a Maildir, an mbox file, or one
//! `.eml` file per message. Every store makes a message durable (file and
//! directory fsynced) before `commit` returns, because the sink answers
//! `250` to DATA only after that. A message dropped without `commit`
//! leaves nothing behind.
//!
//! Line endings: Maildir and mbox files use LF (what mutt, bsd-mailx,
//! s-nail and Dovecot expect); `.eml` files use CRLF (RFC 5322 form).
//! Content bytes are otherwise stored exactly as received.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// `[sink] store`, parsed: `maildir:DIR`, `mbox:FILE` or `eml:DIR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    Maildir(PathBuf),
    Mbox(PathBuf),
    Eml(PathBuf),
}

impl Spec {
    pub fn parse(text: &str) -> Result<Spec, String> {
        let (kind, path) = text.split_once(':').ok_or_else(|| {
            format!("store {text:?} has no kind; write maildir:DIR, mbox:FILE or eml:DIR")
        })?;
        if path.is_empty() {
            return Err(format!("store {text:?} has no path after the colon"));
        }
        let path = PathBuf::from(path);
        match kind {
            "maildir" => Ok(Spec::Maildir(path)),
            "mbox" => Ok(Spec::Mbox(path)),
            "eml" => Ok(Spec::Eml(path)),
            other => Err(format!(
                "unknown store kind {other:?}; write maildir:DIR, mbox:FILE or eml:DIR"
            )),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Spec::Maildir(p) | Spec::Mbox(p) | Spec::Eml(p) => p,
        }
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Spec::Maildir(p) => write!(f, "maildir:{}", p.display()),
            Spec::Mbox(p) => write!(f, "mbox:{}", p.display()),
            Spec::Eml(p) => write!(f, "eml:{}", p.display()),
        }
    }
}

/// What a store needs to know about a message before its content.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// The sink's message ID (16 characters, see `crate::id`), safe in file names.
    pub id: String,
    /// MAIL FROM, without angle brackets; empty for the null sender.
    pub sender: String,
    pub recipients: Vec<String>,
    /// When the message was received (for the mbox `From ` line).
    pub received_at: chrono::DateTime<chrono::Local>,
}

/// Where a committed message is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub path: PathBuf,
    /// Byte offset of the message in `path` (0 except in an mbox, where it
    /// is the offset of its `From ` line).
    pub offset: u64,
    /// Bytes the message occupies in `path` from `offset`.
    pub length: u64,
}

/// A message store shared by all sessions (it must be safe to use from
/// many threads, and from several sink processes on the same files).
pub trait Store: Send + Sync {
    /// Starts a new message. Content follows line by line.
    fn begin(&self, envelope: &Envelope) -> io::Result<Box<dyn Incoming>>;
}

/// A message being received.
pub trait Incoming: Send {
    /// One line of content, without its line ending (already
    /// dot-unstuffed). May be empty; may contain any byte but LF.
    fn line(&mut self, line: &[u8]) -> io::Result<()>;

    /// Makes the message durable and visible; only then may the sink
    /// answer 250.
    fn commit(self: Box<Self>) -> io::Result<Stored>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            Spec::parse("maildir:/var/lib/sink"),
            Ok(Spec::Maildir("/var/lib/sink".into()))
        );
        assert_eq!(
            Spec::parse("mbox:/var/mail/root"),
            Ok(Spec::Mbox("/var/mail/root".into()))
        );
        assert_eq!(Spec::parse("eml:out"), Ok(Spec::Eml("out".into())));
        assert!(Spec::parse("/var/mail/root").is_err());
        assert!(Spec::parse("mbox:").is_err());
        assert!(Spec::parse("pst:/x").is_err());
        assert_eq!(Spec::Mbox("/m".into()).to_string(), "mbox:/m");
    }
}
