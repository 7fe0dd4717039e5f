//! The sendmail command line (`sendmail`, `mailq`, `newaliases`): which
//! operation it asks for, and what happens after a submission (deliver in
//! the background, now, or not at all).

use std::io::{self, Write};

use super::flush_command::flush_and_report;
use super::setup::{load_config, open_log};
use crate::cli::sendmail::{Invocation, Operation};
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
    for warning in &inv.warnings {
        log::stderr(&format!("{}: warning: {warning}", face.name()));
    }
    if inv.help || inv.version {
        return usage(face, inv.version, out);
    }
    let (_, config) = load_config(inv.config.clone(), caller)?;
    match inv.operation() {
        Operation::Submit => {
            let mut log = open_log(face, &config, inv.verbose);
            let done = faces::submit::submit(&inv, &config, &mut log, io::stdin().lock())?;
            if inv.verbose {
                log::stderr(&format!(
                    "{}: queued as {} for {} recipient(s)",
                    face.name(),
                    done.id,
                    done.recipients.len()
                ));
            }
            deliver_after_submit(face, &inv, &config, &done.id, &mut log)
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
    use crate::cli::sendmail::DeliveryMode;
    if config.smarthost.is_none() || inv.delivery == DeliveryMode::QueueOnly {
        return Ok(Sysexit::Ok);
    }
    if inv.delivery == DeliveryMode::Background {
        if !faces::flush::runner_at_work(config) {
            spawn_background_delivery(id, inv.config.as_deref());
        }
        return Ok(Sysexit::Ok);
    }
    let options = faces::flush::Options {
        ids: vec![id.clone()],
        ..Default::default()
    };
    let summary = faces::flush::flush(config, &options, log)?;
    let status = summary.sysexit();
    if status != Sysexit::Ok {
        log::stderr(&format!(
            "{}: {id} was queued; {} recipient(s) sent, {} deferred (it stays queued and is retried), {} refused (see mailq and the mail log)",
            face.name(),
            summary.sent,
            summary.deferred,
            summary.bounced
        ));
    }
    Ok(status)
}

/// Starts `relaymail flush --id ID --detach --then-due` with no stdio, so
/// that the caller returns at once; after this message it also delivers
/// whatever else is due. A failure to start only leaves the message for
/// the next flush.
fn spawn_background_delivery(id: &spool::QueueId, config: Option<&std::path::Path>) {
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg0("relaymail");
    if let Some(path) = config {
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
            "usage: {} [flags] [recipient ...] < message\n\n  -t            also take recipients from To:, Cc:, Bcc: (Bcc: is removed)\n  -i, -oi       a line with a single dot does not end the message\n  -f ADDR       envelope sender (also -r)\n  -F NAME       full name for an added From: header\n  -odb|-odi|-odq  background, interactive or queue-only delivery\n  -bp           list the queue (mailq)   -bi  check aliases (newaliases)\n  -bv ADDR      show where mail for ADDR goes\n  -C FILE       configuration file\n  -v            print the log lines on stderr\n\nOther sendmail flags are accepted for compatibility. See `relaymail --help`.\n",
            face.name()
        )
    };
    out.write_all(text.as_bytes())
        .map_err(faces::queue::output)?;
    Ok(Sysexit::Ok)
}
