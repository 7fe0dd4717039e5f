//! The `.env` file: envelope and delivery state of one message, small and
//! replaced atomically on every change. Versioned so that a future format
//! is recognised instead of misread.

use serde::{Deserialize, Serialize};

pub const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    pub id: String,
    /// Unix time the message was queued.
    pub created: i64,
    /// Envelope sender; empty for the null sender (bounces).
    pub sender: String,
    pub size: u64,
    /// The message has bytes >= 0x80 (BODY=8BITMIME).
    pub eight_bit: bool,
    /// An address is not ASCII (SMTPUTF8).
    pub smtputf8: bool,
    pub message_id: Option<String>,
    pub submitter: Submitter,
    #[serde(default)]
    pub dsn: Dsn,
    #[serde(default)]
    pub held: bool,
    /// A bounce we generated: it never bounces itself.
    #[serde(default)]
    pub is_bounce: bool,
    /// Queued with -odq: background runners leave it to the queue run
    /// (`flush`, the timer) until it has been tried once.
    #[serde(default)]
    pub queue_only: bool,
    /// Queued with -odi: its submitter delivers it and reports the
    /// outcome, so background runners leave it alone until it has been
    /// tried once.
    #[serde(default)]
    pub interactive: bool,
    #[serde(default)]
    pub attempts: u32,
    pub last_attempt: Option<i64>,
    pub next_attempt: Option<i64>,
    pub last_error: Option<String>,
    pub recipients: Vec<RecipientState>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitter {
    pub uid: u32,
    pub user: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dsn {
    /// RFC 3461 NOTIFY value (`NEVER` or a list), as given by `-N`.
    pub notify: Option<String>,
    /// `FULL` or `HDRS`, from `-R`.
    pub ret: Option<String>,
    /// ENVID, from `-V`.
    pub envid: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not yet tried, or tried and deferred: will be tried again.
    Pending,
    Deferred,
    /// Accepted by the smarthost: never sent again.
    Sent,
    /// Refused permanently: never sent again.
    Bounced,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientState {
    pub address: String,
    /// What the caller typed, before aliases.
    pub original: String,
    pub status: Status,
    /// The server's last reply for this recipient.
    pub reply: Option<String>,
}

impl Envelope {
    /// The envelope of a message just queued: nothing tried yet, every
    /// recipient pending. Optional facts (8-bit, DSN, ...) are set after.
    pub fn new(
        id: &str,
        sender: &str,
        submitter: Submitter,
        size: u64,
        recipients: Vec<(String, String)>,
    ) -> Envelope {
        Envelope {
            version: VERSION,
            id: id.to_string(),
            created: chrono::Utc::now().timestamp(),
            sender: sender.to_string(),
            size,
            eight_bit: false,
            smtputf8: false,
            message_id: None,
            submitter,
            dsn: Dsn::default(),
            held: false,
            is_bounce: false,
            queue_only: false,
            interactive: false,
            attempts: 0,
            last_attempt: None,
            next_attempt: None,
            last_error: None,
            recipients: recipients
                .into_iter()
                .map(|(address, original)| RecipientState {
                    address,
                    original,
                    status: Status::Pending,
                    reply: None,
                })
                .collect(),
        }
    }

    pub fn to_toml(&self) -> Result<String, String> {
        toml::to_string(self).map_err(|e| e.to_string())
    }

    pub fn from_toml(text: &str) -> Result<Envelope, String> {
        let version: Option<u32> = text
            .lines()
            .find_map(|l| l.strip_prefix("version = "))
            .and_then(|v| v.trim().parse().ok());
        match version {
            Some(VERSION) => toml::from_str(text).map_err(|e| e.message().to_string()),
            Some(other) => Err(format!("state file version {other} is not supported by this relaymail (it writes version {VERSION})")),
            None => Err("not a relaymail state file (no version)".into()),
        }
    }

    /// Recipients still to deliver.
    pub fn pending(&self) -> impl Iterator<Item = &RecipientState> {
        self.recipients.iter().filter(|r| r.is_pending())
    }

    /// The positions of the recipients still to deliver.
    pub fn pending_indices(&self) -> Vec<usize> {
        (0..self.recipients.len())
            .filter(|i| {
                self.recipients
                    .get(*i)
                    .is_some_and(RecipientState::is_pending)
            })
            .collect()
    }
}

impl RecipientState {
    fn is_pending(&self) -> bool {
        matches!(self.status, Status::Pending | Status::Deferred)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample() -> Envelope {
        let mut env = Envelope::new(
            "0000000000000ABCD",
            "root@web01.example.com",
            Submitter {
                uid: 0,
                user: "root".into(),
            },
            1234,
            vec![("admin@example.com".into(), "root".into())],
        );
        env.eight_bit = true;
        env.message_id = Some("<x@y>".into());
        env
    }

    #[test]
    fn round_trip() {
        let env = sample();
        assert_eq!(
            Envelope::from_toml(&env.to_toml().expect("serialises")),
            Ok(env)
        );
    }

    #[test]
    fn other_versions_are_refused() {
        let text = sample()
            .to_toml()
            .expect("serialises")
            .replace("version = 1", "version = 9");
        assert!(Envelope::from_toml(&text)
            .expect_err("v9")
            .contains("version 9"));
        assert!(Envelope::from_toml("garbage").is_err());
    }
}
