//! The `sendmail` command line: every flag real callers pass (cron, mailx,
//! mutt, PHP, git, smartd), parsed getopt-style into a pure `Invocation`.
//!
//! This module only records what was typed; it never touches the system.
//! Flags kept for compatibility are listed explicitly; unknown ones produce
//! one warning and are otherwise ignored, as sendmail itself does.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use crate::sysexits::{ExitStatus, Sysexit};

/// What the invocation asks for (`-b` mode, `-q`, `-I`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `-bm` (the default): read a message from stdin and queue it.
    Submit,
    /// `-bp`, or the `mailq` face: list the queue.
    ListQueue,
    /// `-bs`: an SMTP dialogue on stdin/stdout.
    SmtpDialogue,
    /// `-bi`/`-I`, or the `newaliases` face: check the aliases file.
    CheckAliases,
    /// `-bv`: show where each recipient would go, queue nothing.
    VerifyRecipients,
    /// `-q[...]`: deliver what is queued; the argument is kept as typed.
    Flush(String),
}

/// `-od<mode>`: when the message is handed to the smarthost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeliveryMode {
    /// `-odb` (default): a detached child delivers; `sendmail` returns at once.
    #[default]
    Background,
    /// `-odi`: deliver in the foreground; the exit status tells the outcome.
    Interactive,
    /// `-odq` (also `-odd`): only queue; the next flush delivers.
    QueueOnly,
}

/// `-N`: which DSN notifications the sender asks for (RFC 3461).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DsnNotify {
    Never,
    On(Vec<DsnEvent>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsnEvent {
    Success,
    Failure,
    Delay,
}

/// `-R`: how much of the message a DSN returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsnReturn {
    Full,
    Headers,
}

/// `-B`: the body type declared by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invocation {
    pub operation: Option<Operation>,
    pub recipients: Vec<String>,
    /// `-t`: also take recipients from To:, Cc: and Bcc:.
    pub recipients_from_headers: bool,
    /// `-i`, `-oi`: a line holding only "." is data, not the end.
    pub ignore_dots: bool,
    /// `-f`/`-r`, as typed (validated later against address syntax).
    pub sender: Option<String>,
    /// `-F`: full name for an added From: header.
    pub full_name: Option<String>,
    pub delivery: DeliveryMode,
    pub dsn_notify: Option<DsnNotify>,
    pub dsn_return: Option<DsnReturn>,
    /// `-V`: DSN envelope id.
    pub envelope_id: Option<String>,
    pub body_type: Option<BodyType>,
    /// `-n`: no alias expansion.
    pub no_aliases: bool,
    pub verbose: bool,
    /// `-C`: a config file chosen by the caller.
    pub config: Option<PathBuf>,
    /// `--help` / `--version`.
    pub help: bool,
    pub version: bool,
    /// One line per flag that was ignored and deserves a word on stderr.
    pub warnings: Vec<String>,
}

impl Invocation {
    pub fn operation(&self) -> Operation {
        self.operation.clone().unwrap_or(Operation::Submit)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    MissingArgument(char),
    NotUtf8(OsString),
    Unsafe {
        flag: &'static str,
        what: &'static str,
    },
    BadValue {
        flag: String,
        value: String,
        allowed: &'static str,
    },
    UnsupportedMode(String),
    /// A recipient argument with CR, LF or another control character.
    UnsafeRecipient(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingArgument(c) => write!(f, "option -{c} needs a value, e.g. -{c} VALUE"),
            Error::NotUtf8(arg) => write!(
                f,
                "argument {arg:?} is not valid UTF-8; addresses and options must be UTF-8 text"
            ),
            Error::Unsafe { flag, what } => write!(
                f,
                "{flag}: the {what} contains a line break or control character, which could inject mail headers; remove it"
            ),
            Error::BadValue {
                flag,
                value,
                allowed,
            } => write!(f, "{flag}: invalid value {value:?}; use {allowed}"),
            Error::UnsafeRecipient(arg) => write!(
                f,
                "recipient argument {arg:?} contains a line break or control character, which could inject recipients or headers; nothing was queued; remove it"
            ),
            Error::UnsupportedMode(mode) => write!(
                f,
                "-b{mode}: this mode is not supported; supported modes are -bm (send), -bp (list queue), -bi (check aliases), -bv (verify recipients), -bs (SMTP on stdin)"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl ExitStatus for Error {
    fn sysexit(&self) -> Sysexit {
        Sysexit::Usage
    }
}

/// How a single-letter option takes its value, as in sendmail's getopt string.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Arity {
    Flag,
    /// Value attached (`-fX`) or in the next argument (`-f X`).
    Value,
    /// Value only when attached (`-q`, `-q30m`).
    Attached,
}

fn arity(flag: char) -> Option<Arity> {
    match flag {
        'A' | 'B' | 'C' | 'F' | 'L' | 'M' | 'N' | 'O' | 'R' | 'V' | 'X' | 'b' | 'e' | 'f' | 'h'
        | 'o' | 'p' | 'r' => Some(Arity::Value),
        'q' | 'd' => Some(Arity::Attached),
        'G' | 'I' | 'U' | 'c' | 'i' | 'm' | 'n' | 's' | 't' | 'v' | 'x' => Some(Arity::Flag),
        _ => None,
    }
}

/// Parses the arguments after argv[0]. Options may appear anywhere before
/// `--` (callers put `-f` after recipients); every other argument is a
/// recipient list.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Invocation, Error> {
    let mut inv = Invocation::default();
    let mut args = args
        .into_iter()
        .map(|a| a.into_string().map_err(Error::NotUtf8))
        .collect::<Result<Vec<String>, Error>>()?
        .into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            for rest in args.by_ref() {
                inv.recipients.push(recipient(rest)?);
            }
            break;
        }
        match arg.strip_prefix("--") {
            Some("help") => inv.help = true,
            Some("version") => inv.version = true,
            Some(_) => inv.warnings.push(format!("ignoring unknown option {arg}")),
            None => {}
        }
        if arg.starts_with("--") {
            continue;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else {
            inv.recipients.push(recipient(arg)?);
            continue;
        };
        let chars = cluster.char_indices();
        for (at, flag) in chars {
            let rest = &cluster[at + flag.len_utf8()..];
            match arity(flag) {
                None => inv
                    .warnings
                    .push(format!("ignoring unknown option -{flag}")),
                Some(Arity::Flag) => apply_flag(&mut inv, flag),
                Some(Arity::Attached) => {
                    apply_value(&mut inv, flag, rest.to_string())?;
                    break;
                }
                Some(Arity::Value) => {
                    let value = if rest.is_empty() {
                        args.next().ok_or(Error::MissingArgument(flag))?
                    } else {
                        rest.to_string()
                    };
                    apply_value(&mut inv, flag, value)?;
                    break;
                }
            }
        }
    }
    Ok(inv)
}

fn apply_flag(inv: &mut Invocation, flag: char) {
    match flag {
        't' => inv.recipients_from_headers = true,
        'i' => inv.ignore_dots = true,
        'v' => inv.verbose = true,
        'n' => inv.no_aliases = true,
        'I' => inv.operation = Some(Operation::CheckAliases),
        // Kept for compatibility, no effect here: -G (gateway submission),
        // -U (initial user submission), -m (send to me too), -c, -s, -x.
        _ => {}
    }
}

fn apply_value(inv: &mut Invocation, flag: char, value: String) -> Result<(), Error> {
    match flag {
        'f' | 'r' => inv.sender = Some(single_line(value, "-f", "sender address")?),
        'F' => inv.full_name = Some(single_line(value, "-F", "full name")?),
        'C' => inv.config = Some(PathBuf::from(value)),
        'b' => inv.operation = Some(mode(&value)?),
        'q' => inv.operation = Some(Operation::Flush(value)),
        'o' => apply_o_option(inv, &value)?,
        'O' => apply_long_option(inv, &value)?,
        'N' => inv.dsn_notify = Some(dsn_notify(&value)?),
        'R' => {
            inv.dsn_return = Some(match value.to_ascii_lowercase().as_str() {
                "full" => DsnReturn::Full,
                "hdrs" => DsnReturn::Headers,
                _ => {
                    return Err(Error::BadValue {
                        flag: "-R".into(),
                        value,
                        allowed: "full or hdrs",
                    })
                }
            })
        }
        'V' => inv.envelope_id = Some(envelope_id(value)?),
        'B' => match value.to_ascii_uppercase().as_str() {
            "7BIT" => inv.body_type = Some(BodyType::SevenBit),
            "8BITMIME" => inv.body_type = Some(BodyType::EightBitMime),
            _ => inv
                .warnings
                .push(format!("ignoring -B{value}: body type must be 7BIT or 8BITMIME")),
        },
        'X' => inv.warnings.push(
            "ignoring -X: no transcript file is written; use `relaymail doctor` to see an SMTP session".into(),
        ),
        'd' => inv.warnings.push(format!("ignoring debug option -d{value}")),
        'M' => inv.warnings.push(format!("ignoring macro option -M{value}")),
        // -L (syslog label), -h (hop count), -p (protocol), -A, -e: kept for
        // compatibility, no effect.
        _ => {}
    }
    Ok(())
}

fn single_line(value: String, flag: &'static str, what: &'static str) -> Result<String, Error> {
    if value.chars().any(|c| c.is_control()) {
        return Err(Error::Unsafe { flag, what });
    }
    Ok(value)
}

/// A recipient argument is one line of text: a CR or LF in it could
/// smuggle extra recipients or headers past the caller.
fn recipient(arg: String) -> Result<String, Error> {
    if arg.chars().any(|c| c.is_control()) {
        return Err(Error::UnsafeRecipient(arg));
    }
    Ok(arg)
}

fn mode(value: &str) -> Result<Operation, Error> {
    Ok(match value {
        "m" => Operation::Submit,
        "p" => Operation::ListQueue,
        "s" => Operation::SmtpDialogue,
        "i" => Operation::CheckAliases,
        "v" => Operation::VerifyRecipients,
        other => return Err(Error::UnsupportedMode(other.to_string())),
    })
}

/// `-o<letter><value>`, sendmail's short options.
fn apply_o_option(inv: &mut Invocation, value: &str) -> Result<(), Error> {
    let mut chars = value.chars();
    let letter = chars.next();
    let rest = chars.as_str();
    match letter {
        Some('i') => inv.ignore_dots = !matches!(rest, "f" | "false" | "False"),
        Some('d') => inv.delivery = delivery_mode(rest, &format!("-od{rest}"))?,
        // Errors are always reported on stderr and in the exit status;
        // -oem/-oep/-oeq/-oew are accepted so that cron and mutt work.
        Some('e') => {}
        // Alias file, queue directory: a caller must never redirect where a
        // privileged binary reads or writes, so these are refused quietly.
        Some(c @ ('A' | 'Q')) => inv.warnings.push(format!(
            "ignoring -o{c}{rest}: paths come only from the relaymail configuration"
        )),
        Some('m' | 'o' | 'B' | 'L' | 'R' | '7' | '8') => {}
        _ => inv
            .warnings
            .push(format!("ignoring unknown option -o{value}")),
    }
    Ok(())
}

/// `-O Name=value`, sendmail's long options; the few that matter here.
fn apply_long_option(inv: &mut Invocation, value: &str) -> Result<(), Error> {
    let (name, val) = value.split_once('=').unwrap_or((value, ""));
    match name.trim() {
        "DeliveryMode" => inv.delivery = delivery_mode(val.trim(), &format!("-O {value}"))?,
        "IgnoreDots" => inv.ignore_dots = !matches!(val.trim(), "false" | "False" | "f"),
        "ErrorMode" => {}
        _ => inv
            .warnings
            .push(format!("ignoring unknown option -O {value}")),
    }
    Ok(())
}

fn delivery_mode(value: &str, flag: &str) -> Result<DeliveryMode, Error> {
    match value {
        "b" | "background" => Ok(DeliveryMode::Background),
        "i" | "interactive" => Ok(DeliveryMode::Interactive),
        "q" | "queue" | "d" | "deferred" => Ok(DeliveryMode::QueueOnly),
        _ => Err(Error::BadValue {
            flag: flag.to_string(),
            value: value.to_string(),
            allowed: "-odb (background), -odi (interactive) or -odq (queue only)",
        }),
    }
}

fn dsn_notify(value: &str) -> Result<DsnNotify, Error> {
    let bad = || Error::BadValue {
        flag: "-N".into(),
        value: value.to_string(),
        allowed: "never, or a comma list of success, failure, delay",
    };
    let words: Vec<String> = value
        .split(',')
        .map(|w| w.trim().to_ascii_lowercase())
        .collect();
    if words == ["never"] {
        return Ok(DsnNotify::Never);
    }
    let mut events = Vec::new();
    for word in &words {
        let event = match word.as_str() {
            "success" => DsnEvent::Success,
            "failure" => DsnEvent::Failure,
            "delay" => DsnEvent::Delay,
            _ => return Err(bad()),
        };
        if !events.contains(&event) {
            events.push(event);
        }
    }
    Ok(DsnNotify::On(events))
}

/// RFC 3461 ENVID: printable ASCII, at most 100 characters.
fn envelope_id(value: String) -> Result<String, Error> {
    let printable = value.bytes().all(|b| (0x21..0x7f).contains(&b));
    if value.is_empty() || value.len() > 100 || !printable {
        return Err(Error::BadValue {
            flag: "-V".into(),
            value,
            allowed: "1-100 printable ASCII characters without spaces",
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn ok(list: &[&str]) -> Invocation {
        match parse(args(list)) {
            Ok(inv) => inv,
            Err(e) => unreachable!("{list:?} should parse: {e}"),
        }
    }

    #[test]
    fn cron_debian_line() {
        let inv = ok(&["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"]);
        assert_eq!(inv.full_name.as_deref(), Some("CronDaemon"));
        assert!(inv.ignore_dots);
        assert_eq!(inv.body_type, Some(BodyType::EightBitMime));
        assert_eq!(inv.recipients, ["root"]);
        assert!(inv.warnings.is_empty());
    }

    #[test]
    fn cronie_line() {
        let inv = ok(&[
            "-FCronDaemon",
            "-i",
            "-odi",
            "-oem",
            "-oi",
            "-t",
            "-f",
            "root",
        ]);
        assert_eq!(inv.delivery, DeliveryMode::Interactive);
        assert!(inv.recipients_from_headers);
        assert_eq!(inv.sender.as_deref(), Some("root"));
        assert!(inv.recipients.is_empty());
    }

    #[test]
    fn control_characters_in_recipient_arguments_are_refused() {
        for args in [
            &["bob@test.example\r\nBcc: victim@x.y"][..],
            &["--", "a@b.example\n"][..],
            &["-t", "x@y.example\u{7f}"][..],
        ] {
            let argv = args.iter().map(OsString::from);
            assert!(
                matches!(parse(argv), Err(Error::UnsafeRecipient(_))),
                "{args:?}"
            );
        }
    }

    #[test]
    fn mailx_double_dash() {
        let inv = ok(&["-oi", "--", "-weird@example.com", "b@example.com"]);
        assert!(inv.ignore_dots);
        assert_eq!(inv.recipients, ["-weird@example.com", "b@example.com"]);
    }

    #[test]
    fn dots_end_message_unless_i() {
        assert!(!ok(&["a@example.com"]).ignore_dots);
        assert!(ok(&["-i", "a@example.com"]).ignore_dots);
        assert!(ok(&["-oi", "a@example.com"]).ignore_dots);
        assert!(ok(&["-O", "IgnoreDots=true", "a@example.com"]).ignore_dots);
        assert!(ok(&["-ti"]).ignore_dots, "clustered flags");
    }

    #[test]
    fn sender_spellings() {
        for list in [
            &["-fme@example.com"][..],
            &["-f", "me@example.com"],
            &["-rme@example.com"],
            &["-r", "me@example.com"],
            &["x@example.com", "-f", "me@example.com"],
        ] {
            assert_eq!(
                ok(list).sender.as_deref(),
                Some("me@example.com"),
                "{list:?}"
            );
        }
        assert_eq!(parse(args(&["-f"])), Err(Error::MissingArgument('f')));
    }

    #[test]
    fn injection_through_sender_or_name_is_refused() {
        for list in [
            &["-f", "a@example.com\r\nBcc: victim@example.com"][..],
            &["-F", "Name\nBcc: victim@example.com"],
            &["-FName\r"],
        ] {
            assert!(
                matches!(parse(args(list)), Err(Error::Unsafe { .. })),
                "{list:?}"
            );
        }
    }

    #[test]
    fn delivery_modes() {
        assert_eq!(ok(&[]).delivery, DeliveryMode::Background);
        assert_eq!(ok(&["-odb"]).delivery, DeliveryMode::Background);
        assert_eq!(ok(&["-odi"]).delivery, DeliveryMode::Interactive);
        assert_eq!(ok(&["-odq"]).delivery, DeliveryMode::QueueOnly);
        assert_eq!(ok(&["-o", "dq"]).delivery, DeliveryMode::QueueOnly);
        assert_eq!(
            ok(&["-O", "DeliveryMode=i"]).delivery,
            DeliveryMode::Interactive
        );
        assert!(matches!(
            parse(args(&["-odx"])),
            Err(Error::BadValue { .. })
        ));
    }

    #[test]
    fn modes() {
        assert_eq!(ok(&[]).operation(), Operation::Submit);
        assert_eq!(ok(&["-bm"]).operation(), Operation::Submit);
        assert_eq!(ok(&["-bp"]).operation(), Operation::ListQueue);
        assert_eq!(ok(&["-bs"]).operation(), Operation::SmtpDialogue);
        assert_eq!(ok(&["-bi"]).operation(), Operation::CheckAliases);
        assert_eq!(ok(&["-I"]).operation(), Operation::CheckAliases);
        assert_eq!(
            ok(&["-bv", "root"]).operation(),
            Operation::VerifyRecipients
        );
        assert_eq!(ok(&["-q"]).operation(), Operation::Flush(String::new()));
        assert_eq!(ok(&["-q30m"]).operation(), Operation::Flush("30m".into()));
        assert!(matches!(
            parse(args(&["-bd"])),
            Err(Error::UnsupportedMode(_))
        ));
    }

    #[test]
    fn dsn_flags() {
        let inv = ok(&["-N", "success,delay", "-R", "hdrs", "-V", "abc123"]);
        assert_eq!(
            inv.dsn_notify,
            Some(DsnNotify::On(vec![DsnEvent::Success, DsnEvent::Delay]))
        );
        assert_eq!(inv.dsn_return, Some(DsnReturn::Headers));
        assert_eq!(inv.envelope_id.as_deref(), Some("abc123"));
        assert_eq!(ok(&["-Nnever"]).dsn_notify, Some(DsnNotify::Never));
        assert!(parse(args(&["-N", "sometimes"])).is_err());
        assert!(parse(args(&["-R", "all"])).is_err());
        assert!(parse(args(&["-V", "has space"])).is_err());
    }

    #[test]
    fn compatibility_flags_are_silent() {
        let inv = ok(&[
            "-G",
            "-U",
            "-m",
            "-L",
            "label",
            "-h",
            "5",
            "-p",
            "local",
            "-oem",
            "-oep",
            "-Cx.toml",
            "-v",
            "-B",
            "7BIT",
            "a@example.com",
        ]);
        assert!(inv.warnings.is_empty(), "{:?}", inv.warnings);
        assert_eq!(inv.config, Some(PathBuf::from("x.toml")));
        assert!(inv.verbose);
        assert_eq!(inv.recipients, ["a@example.com"]);
    }

    #[test]
    fn unknown_flags_warn_once_each() {
        let inv = ok(&["-k", "--frobnicate", "-oZ", "-O", "Foo=1", "a@example.com"]);
        assert_eq!(inv.warnings.len(), 4, "{:?}", inv.warnings);
        assert_eq!(inv.recipients, ["a@example.com"]);
        let inv = ok(&["-oQ/tmp/q", "a@example.com"]);
        assert_eq!(inv.warnings.len(), 1);
    }

    #[test]
    fn help_and_version() {
        assert!(ok(&["--help"]).help);
        assert!(ok(&["--version"]).version);
    }
}
