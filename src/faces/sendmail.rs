//! The sendmail command line (`sendmail`, `mailq`, `newaliases`): which
//! operation it asks for, and what happens after a submission (deliver in
//! the background, now, or not at all).

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::flush_command::flush_and_report;
use super::setup::{load_config, open_log};
use crate::cli::sendmail::{DeliveryMode, Invocation, Operation};
use crate::cli::Face;
use crate::config::Config;
use crate::sysexits::{Failure, Sysexit};
use crate::{faces, log, privilege, spool};

/// One sendmail-style invocation: submit, list the queue, check aliases,
/// verify recipients, an SMTP dialogue on stdin (-bs) or a queue run (-q).
pub fn run(
    face: Face,
    inv: Invocation,
    caller: &privilege::Caller,
    out: &mut impl Write,
) -> Result<Sysexit, Failure> {
    warn(face, &inv);
    if inv.help || inv.version {
        return usage(face, inv.version, out);
    }
    let (_, config) = load_config(inv.config.clone(), caller)?;
    match inv.operation() {
        Operation::Submit => {
            let (id, mut log) = queue(face, &inv, &config)?;
            deliver_after_submit(face, &inv, &config, &id, &mut log)
        }
        Operation::ListQueue => faces::queue::list(&config, out),
        Operation::CheckAliases => faces::aliases::check(&config, out),
        Operation::VerifyRecipients => {
            faces::aliases::verify(&config, &inv.recipients, inv.no_aliases, out)
        }
        Operation::SmtpDialogue => {
            let mut log = open_log(face, &config, inv.verbose);
            let stdin = io::stdin();
            faces::smtp_stdin::run(
                &inv,
                &config,
                &mut log,
                &mut stdin.lock(),
                out,
                |id, log| {
                    // The 250 is already sent: a delivery problem is the
                    // queue's business, not the dialogue's.
                    let _ = deliver_after_submit(face, &inv, &config, id, log);
                },
            )
        }
        Operation::Flush(arg) if arg.is_empty() => {
            let mut log = open_log(face, &config, inv.verbose);
            flush_and_report(face, &config, &faces::flush::Options::default(), &mut log)
        }
        Operation::Flush(arg) => Err(Failure::new(
            Sysexit::Usage,
            format!(
                "-q{arg}: queue-run intervals and selectors are not supported; use -q (or relaymail flush, and the relaymail-flush timer for periodic runs)"
            ),
        )),
    }
}

/// The message on stdin into the queue, with the log the rest of the
/// invocation writes to.
fn queue(
    face: Face,
    inv: &Invocation,
    config: &Config,
) -> Result<(spool::QueueId, log::Logger), Failure> {
    let mut log = open_log(face, config, inv.verbose);
    let done = faces::submit::submit(inv, config, &mut log, io::stdin().lock())?;
    if inv.verbose {
        log::stderr(&format!(
            "{}: queued as {} for {} recipient(s)",
            face.name(),
            done.id,
            done.recipients.len()
        ));
    }
    Ok((done.id, log))
}

/// The invocation, when it is a plain submission (`-odb` or `-odq`) that
/// the small `relaymail-sendmail` program completes by itself. Reads only
/// argv: nothing has run yet, and anything else is handed over untouched.
pub fn plain_submission(argv: &[OsString]) -> Option<Invocation> {
    let (argv0, rest) = argv.split_first()?;
    let named = std::path::Path::new(argv0).file_name() == Some(OsStr::new(SUBMITTER));
    if Face::of(argv0) != Face::Sendmail && !named {
        return None;
    }
    let inv = crate::cli::sendmail::parse(rest.to_vec()).ok()?;
    let plain = matches!(inv.operation(), Operation::Submit)
        && inv.delivery != DeliveryMode::Interactive
        && !inv.help
        && !inv.version;
    plain.then_some(inv)
}

/// A plain submission in `relaymail-sendmail`: queued, then left to a
/// runner at work or to a background delivery by the full `relaymail`.
pub fn submit_plain(inv: Invocation, caller: &privilege::Caller) -> Result<Sysexit, Failure> {
    warn(Face::Sendmail, &inv);
    let (_, config) = load_config(inv.config.clone(), caller)?;
    let (id, _log) = queue(Face::Sendmail, &inv, &config)?;
    if config.smarthost.is_some() && inv.delivery == DeliveryMode::Background {
        start_background(&config, &inv, &id, full_program());
    }
    Ok(Sysexit::Ok)
}

/// sendmail's warnings about flags it ignores.
fn warn(face: Face, inv: &Invocation) {
    for warning in &inv.warnings {
        log::stderr(&format!("{}: warning: {warning}", face.name()));
    }
}

/// Everything but a plain submission: `relaymail-sendmail` becomes the
/// full `relaymail` beside it, with the same argv and environment. A
/// user's setgid group goes first, so that only a genuinely setgid
/// `relaymail` has it again (a copy of this program next to someone else's
/// `relaymail` gives that program nothing). Returns only on failure.
pub fn hand_over(argv: Vec<OsString>) -> Failure {
    use std::os::unix::process::CommandExt;
    // Root needs no guarding from itself, and giving up a group would be
    // a capability (setgid) the mail domains are not granted.
    if !nix::unistd::getuid().is_root() {
        if let Err(failure) = privilege::drop_group() {
            return failure;
        }
    }
    let Some(full) = full_program() else {
        return Failure::new(
            Sysexit::OsErr,
            "cannot find where relaymail-sendmail runs from",
        );
    };
    let mut args = argv.into_iter();
    // Called by its own name it is sendmail; linked as mailq or newaliases
    // it stays that face.
    let argv0 = args
        .next()
        .filter(|a| Path::new(a).file_name() != Some(OsStr::new(SUBMITTER)))
        .unwrap_or_else(|| OsString::from("sendmail"));
    let error = std::process::Command::new(&full)
        .arg0(argv0)
        .args(args)
        .exec();
    Failure::new(
        Sysexit::OsErr,
        format!(
            "cannot run {}: {error}; relaymail-sendmail hands everything but a plain submission to relaymail, installed beside it",
            full.display()
        ),
    )
}

/// The small submitter's own name (`relaymail-sendmail`).
const SUBMITTER: &str = "relaymail-sendmail";

/// The full `relaymail` installed beside the running program.
fn full_program() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("relaymail"))
}

/// After a message is queued: `-odb` starts a detached delivery of it
/// (unless a runner at work will take it), `-odi` delivers it now and
/// reports the outcome, `-odq` does nothing. Without a smarthost the
/// message simply stays queued.
fn deliver_after_submit(
    face: Face,
    inv: &Invocation,
    config: &Config,
    id: &spool::QueueId,
    log: &mut log::Logger,
) -> Result<Sysexit, Failure> {
    if config.smarthost.is_none() || inv.delivery == DeliveryMode::QueueOnly {
        return Ok(Sysexit::Ok);
    }
    if inv.delivery == DeliveryMode::Background {
        start_background(config, inv, id, std::env::current_exe().ok());
        return Ok(Sysexit::Ok);
    }
    let options = faces::flush::Options {
        ids: vec![id.clone()],
        ..Default::default()
    };
    // Its own recipients: a bounce report this run queued and delivered
    // for it is not part of its outcome.
    let summary = faces::flush::flush(config, &options, log)?.without_reports();
    let status = summary.sysexit();
    if status != Sysexit::Ok {
        // Only a deferred (or busy) message is still in the queue.
        let stays = if summary.deferred + summary.busy > 0 {
            " (it stays queued and is retried)"
        } else {
            ""
        };
        log::stderr(&format!(
            "{}: {id} was queued; {} recipient(s) sent, {} deferred{stays}, {} refused (see mailq and the mail log)",
            face.name(),
            summary.sent,
            summary.deferred,
            summary.bounced
        ));
    }
    Ok(status)
}

/// `-odb`: leaves the message to a runner at work, or starts `program`
/// (a full relaymail) as `relaymail flush --id ID --detach --then-due`
/// with no stdio, so that the caller returns at once; after this message
/// it also delivers whatever else is due. A failure to start only leaves
/// the message for the next flush. A user's setgid group is not passed
/// on: the program gains it by its own setgid bit, so a copy of the small
/// submitter next to someone else's `relaymail` lends that one nothing
/// (root is left alone, as in `hand_over`).
fn start_background(
    config: &Config,
    inv: &Invocation,
    id: &spool::QueueId,
    program: Option<PathBuf>,
) {
    use std::os::unix::process::CommandExt;
    if faces::flush::runner_at_work(config) {
        return;
    }
    let Some(program) = program else {
        return;
    };
    let mut cmd = std::process::Command::new(program);
    if !nix::unistd::getuid().is_root() {
        cmd.gid(nix::unistd::getgid().as_raw());
    }
    cmd.arg0("relaymail");
    if let Some(path) = &inv.config {
        cmd.arg("-C").arg(path);
    }
    cmd.args(["flush", "--detach", "--then-due", "--id", id.as_str()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _ = cmd.spawn();
}

fn usage(face: Face, version: bool, out: &mut impl Write) -> Result<Sysexit, Failure> {
    let text = if version {
        format!("relaymail {}\n", env!("CARGO_PKG_VERSION"))
    } else {
        format!(
            "usage: {} [flags] [recipient ...] < message\n\n  -t            also take recipients from To:, Cc:, Bcc: (Bcc: is removed)\n  -i, -oi       a line with a single dot does not end the message\n  -f ADDR       envelope sender (also -r)\n  -F NAME       full name for an added From: header\n  -odb|-odi|-odq  background, interactive or queue-only delivery\n  -bp           list the queue (mailq)   -bi  check aliases (newaliases)\n  -bv ADDR      show where mail for ADDR goes\n  -bs           an SMTP dialogue on stdin and stdout\n  -q            deliver the whole queue now (relaymail flush)\n  -C FILE       configuration file\n  -v            print the log lines on stderr\n\nOther sendmail flags are accepted for compatibility; relaymail-sendmail(8) describes every flag.\n",
            face.name()
        )
    };
    out.write_all(text.as_bytes())
        .map_err(faces::queue::output)?;
    Ok(Sysexit::Ok)
}
