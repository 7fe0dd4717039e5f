//! Command-line faces. `argv[0]` picks the face (`sendmail`, `mailq`,
//! `newaliases`, anything else is `relaymail`); this module turns argv into a
//! pure `Command` and never touches the system.

pub mod sendmail;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

pub use sendmail::Invocation;

/// The name the program was started as, used to prefix its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Face {
    Sendmail,
    Mailq,
    Newaliases,
    Relaymail,
}

impl Face {
    pub fn of(argv0: &OsStr) -> Face {
        let name = Path::new(argv0)
            .file_name()
            .and_then(OsStr::to_str)
            .unwrap_or("relaymail");
        match name {
            "sendmail" => Face::Sendmail,
            "mailq" => Face::Mailq,
            "newaliases" => Face::Newaliases,
            _ => Face::Relaymail,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Face::Sendmail => "sendmail",
            Face::Mailq => "mailq",
            Face::Newaliases => "newaliases",
            Face::Relaymail => "relaymail",
        }
    }
}

/// Everything a run can be asked to do.
#[derive(Debug)]
pub enum Command {
    Sendmail(Box<Invocation>),
    Relaymail(Box<Relaymail>),
}

/// Parses argv into the face and the command. The `relaymail sendmail ...`,
/// `relaymail mailq` and `relaymail newaliases` spellings reach the same
/// faces without a symlink.
pub fn parse(argv: Vec<OsString>) -> (Face, Result<Command, Failure>) {
    let mut args = argv.into_iter();
    let argv0 = args.next().unwrap_or_else(|| OsString::from("relaymail"));
    let mut face = Face::of(&argv0);
    let mut rest: Vec<OsString> = args.collect();
    if face == Face::Relaymail {
        if let Some(first) = rest.first() {
            let named = Face::of(first);
            if named != Face::Relaymail && Some(first.as_os_str()) == Some(OsStr::new(named.name()))
            {
                face = named;
                rest.remove(0);
            }
        }
    }
    let command = match face {
        Face::Sendmail => sendmail::parse(rest)
            .map(|inv| Command::Sendmail(Box::new(inv)))
            .map_err(Failure::from),
        Face::Mailq => sendmail::parse(rest)
            .map(|mut inv| {
                inv.operation = Some(sendmail::Operation::ListQueue);
                Command::Sendmail(Box::new(inv))
            })
            .map_err(Failure::from),
        Face::Newaliases => sendmail::parse(rest)
            .map(|mut inv| {
                inv.operation = Some(sendmail::Operation::CheckAliases);
                Command::Sendmail(Box::new(inv))
            })
            .map_err(Failure::from),
        Face::Relaymail => {
            let full = std::iter::once(argv0).chain(rest);
            Relaymail::try_parse_from(full)
                .map(|r| Command::Relaymail(Box::new(r)))
                .map_err(Failure::Clap)
        }
    };
    (face, command)
}

/// A parse failure: ours (with a sysexit) or clap's (which prints its own
/// help and usage text).
#[derive(Debug)]
pub enum Failure {
    Sendmail(sendmail::Error),
    Clap(clap::Error),
}

impl From<sendmail::Error> for Failure {
    fn from(e: sendmail::Error) -> Self {
        Failure::Sendmail(e)
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "relaymail",
    version,
    about = "Send-only, sendmail-compatible mail relay with a durable queue",
    after_help = "Installed as sendmail, mailq and newaliases it behaves as those commands.\nExit statuses follow sysexits.h; see the README."
)]
pub struct Relaymail {
    /// Configuration file to use instead of the system or user one.
    #[arg(short = 'C', long = "config", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// List, inspect and change queued messages.
    Queue {
        #[command(subcommand)]
        action: QueueAction,
    },
    /// Check the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Check the aliases file and the [aliases] table (same as newaliases).
    Newaliases,
    /// Deliver queued mail now (sendmail -q); --due only what is due.
    Flush {
        /// Only messages whose retry time has come (for the periodic timer).
        #[arg(long)]
        due: bool,
        /// Only this message (repeatable).
        #[arg(long = "id", value_name = "ID")]
        ids: Vec<String>,
        /// Start a new session first (used for background delivery).
        #[arg(long, hide = true)]
        detach: bool,
        /// After the --id messages, also deliver everything that is due.
        #[arg(long, hide = true)]
        then_due: bool,
    },
    /// Send a message as cron does through a throw-away setup with a local sink as the smarthost; show each step.
    Demo,
    /// Check config, permissions, DNS, the relay's TLS and AUTH; say what to fix.
    Doctor {
        /// Also send a real test message to ADDR and report the relay's answer.
        #[arg(long, value_name = "ADDR")]
        send_to: Option<String>,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the receive-only SMTP sink, or read what it received.
    Sink(Box<SinkArgs>),
    /// Store, check or remove the smarthost password in the OS keyring (user mode).
    Credentials {
        #[command(subcommand)]
        action: CredentialsAction,
    },
    /// Write the man pages or a shell completion script (for packagers and
    /// `make install`).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: GenerateAction,
    },
    /// Sign in once for [smarthost.oauth2], show the tokens held, or forget them.
    #[command(name = "oauth2")]
    OAuth2 {
        #[command(subcommand)]
        action: OAuth2Action,
    },
}

#[derive(Debug, Subcommand)]
pub enum GenerateAction {
    /// Write every man page (relaymail.8, relaymail-*.8, relaymail.toml.5) into DIR.
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print the completion script for SHELL on standard output.
    Completion {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum OAuth2Action {
    /// Sign in with the device code flow: open the URL shown, enter the code;
    /// the refresh token is stored (keyring in user mode, the state file in
    /// system mode, where this needs root).
    Login {
        /// Store a refresh token obtained elsewhere (first line of standard
        /// input) instead; it is redeemed once to prove that it works.
        #[arg(long)]
        refresh_token_stdin: bool,
    },
    /// Which tokens are held and when the access token expires (never the tokens).
    Status {
        /// One JSON document instead of text (for monitoring).
        #[arg(long)]
        json: bool,
    },
    /// Remove the refresh token and the cached access token.
    Logout,
}

#[derive(Debug, Subcommand)]
pub enum CredentialsAction {
    /// Store the password (asked for without echo, or read from --stdin).
    Set {
        #[command(flatten)]
        entry: CredentialsEntry,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        stdin: bool,
    },
    /// Say which keyring holds the password (never shows it).
    Check {
        #[command(flatten)]
        entry: CredentialsEntry,
    },
    /// Remove the password from every keyring that holds it.
    Clear {
        #[command(flatten)]
        entry: CredentialsEntry,
    },
}

#[derive(Debug, clap::Args)]
pub struct CredentialsEntry {
    /// The keyring account (default: [smarthost] keyring_account or username).
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SinkArgs {
    #[command(subcommand)]
    pub action: Option<SinkAction>,
    #[command(flatten)]
    pub run: SinkRun,
}

/// Settings given on the command line win over `[sink]` in the config.
#[derive(Debug, Default, clap::Args)]
pub struct SinkRun {
    /// Listen on ADDR (repeatable), with the --tls mode.
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Listen on ADDR with its own TLS mode: ADDR=none|starttls|implicit (repeatable).
    #[arg(long, value_name = "ADDR=MODE")]
    pub listener: Vec<String>,
    /// TLS mode for --listen addresses: none, starttls or implicit.
    #[arg(long, value_name = "MODE")]
    pub tls: Option<String>,
    /// maildir:DIR, mbox:FILE or eml:DIR.
    #[arg(long, value_name = "SPEC")]
    pub store: Option<String>,
    /// none, accept-any or users.
    #[arg(long, value_name = "MODE")]
    pub auth: Option<String>,
    /// A user for --auth users: NAME=PASSWORD (repeatable).
    #[arg(long = "auth-user", value_name = "NAME=PASSWORD")]
    pub auth_users: Vec<String>,
    /// Certificate and key (PEM); without them one is generated and kept.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<std::path::PathBuf>,
    /// The private key for --cert (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<std::path::PathBuf>,
    /// Where the generated certificate and the message index live (in user
    /// mode also the default store, DIR/mail, when no store is set).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<std::path::PathBuf>,
    /// Host name in the banner and Received: lines.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Largest message accepted, advertised as SIZE (e.g. 50MiB).
    #[arg(long, value_name = "SIZE")]
    pub max_message_size: Option<String>,
    /// Recipients per message (452 4.5.3 beyond).
    #[arg(long, value_name = "N")]
    pub max_recipients: Option<usize>,
    /// Connections at once (421 4.3.2 beyond).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Connections at once from one client address (default: a quarter of
    /// --max-connections, at least 1).
    #[arg(long, value_name = "N")]
    pub max_connections_per_client: Option<usize>,
    /// Deadline for each command line, DATA line and TLS handshake (e.g. 5m).
    #[arg(long, value_name = "DURATION")]
    pub command_timeout: Option<String>,
    /// Deadline for a whole connection (e.g. 30m).
    #[arg(long, value_name = "DURATION")]
    pub session_timeout: Option<String>,
    /// Run as this user once the listeners are bound (when started as
    /// root; the systemd unit passes relaymail-sink).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SinkAction {
    /// List received messages (time, client, HELO, TLS, from, to, subject).
    List {
        /// One JSON array instead of the table.
        #[arg(long)]
        json: bool,
        /// The sink's state directory (default: [sink] state_dir).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<std::path::PathBuf>,
    },
    /// Print a received message as stored.
    Show {
        /// The message ID, as sink list shows it.
        #[arg(value_name = "ID")]
        id: String,
        /// The sink's state directory (default: [sink] state_dir).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<std::path::PathBuf>,
    },
    /// Wait until COUNT matching messages have been stored; exit 0 then,
    /// 75 on timeout. The server keeps running.
    Wait {
        /// How many matching messages to wait for.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Only messages with this envelope recipient (case-insensitive).
        #[arg(long, value_name = "ADDR")]
        to: Option<String>,
        /// Only messages after this message ID, time (RFC 3339) or "now".
        #[arg(long, value_name = "ID|TIME|now")]
        since: Option<String>,
        /// Give up after this long (e.g. 30s, 5m).
        #[arg(long, value_name = "DURATION", default_value = "60s")]
        timeout: String,
        /// The sink's state directory (default: [sink] state_dir).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// List queued messages (what mailq shows).
    List {
        /// One JSON array instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Show a message's headers and delivery state.
    Show {
        /// The queue ID, as mailq shows it.
        #[arg(value_name = "ID")]
        id: String,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove messages from the queue for good.
    Delete {
        /// Queue IDs.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Keep messages in the queue without delivering them.
    Hold {
        /// Queue IDs.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Release held messages for delivery.
    Release {
        /// Queue IDs.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Remove leftovers of interrupted submissions now.
    Clean,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Validate the configuration files and print the effective settings.
    Check,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn faces_from_argv0() {
        assert_eq!(Face::of(OsStr::new("/usr/sbin/sendmail")), Face::Sendmail);
        assert_eq!(Face::of(OsStr::new("/usr/lib/sendmail")), Face::Sendmail);
        assert_eq!(Face::of(OsStr::new("mailq")), Face::Mailq);
        assert_eq!(Face::of(OsStr::new("newaliases")), Face::Newaliases);
        assert_eq!(Face::of(OsStr::new("/usr/bin/relaymail")), Face::Relaymail);
    }

    #[test]
    fn mailq_face_lists_queue() {
        let (face, cmd) = parse(argv(&["mailq"]));
        assert_eq!(face, Face::Mailq);
        assert!(
            matches!(cmd, Ok(Command::Sendmail(inv)) if inv.operation() == sendmail::Operation::ListQueue)
        );
    }

    #[test]
    fn relaymail_sendmail_spelling() {
        let (face, cmd) = parse(argv(&["relaymail", "sendmail", "-t"]));
        assert_eq!(face, Face::Sendmail);
        assert!(matches!(cmd, Ok(Command::Sendmail(inv)) if inv.recipients_from_headers));
    }

    #[test]
    fn relaymail_queue_list_json() {
        let (_, cmd) = parse(argv(&["relaymail", "queue", "list", "--json"]));
        assert!(matches!(
            cmd,
            Ok(Command::Relaymail(r)) if matches!(
                r.action,
                Action::Queue {
                    action: QueueAction::List { json: true }
                }
            )
        ));
    }
}
