//! `relaymail flush` and `sendmail -q` as commands: what to deliver, the
//! detached `-odb` child, and the one-line report on stderr.

use super::setup::Setup;
use crate::cli::Face;
use crate::config::Config;
use crate::sysexits::{Failure, Sysexit};
use crate::{faces, log, spool};

/// `relaymail flush [--due] [--id ID...] [--detach --then-due]`.
pub fn run(
    setup: &Setup<'_>,
    due: bool,
    ids: &[String],
    detach: bool,
    then_due: bool,
) -> Result<Sysexit, Failure> {
    let face = setup.face;
    let (_, config, mut log) = setup.configured()?;
    if detach {
        // Background delivery: out of the caller's session and process
        // group, so cron never waits for it, and holding none of the
        // caller's descriptors (a script's lock, a pipe its parent reads
        // to the end), as it may outlive the caller by minutes.
        let _ = nix::unistd::setsid();
        close_inherited_fds();
    }
    let ids = ids
        .iter()
        .map(|t| {
            spool::QueueId::parse(t).ok_or_else(|| Failure::from(spool::Error::BadId(t.clone())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if then_due {
        // The -odb child: these, then whatever is due (so deferred mail
        // moves on even before a timer is set up), sharing sessions with
        // other runners.
        let summary = faces::flush::background(&config, ids, &mut log)?;
        return Ok(report(face, &summary));
    }
    let options = faces::flush::Options {
        due_only: due,
        ids,
        ..Default::default()
    };
    let status = flush_and_report(face, &config, &options, &mut log);
    if due {
        // The timer's run also keeps an idle host's OAuth2 refresh token
        // alive.
        faces::oauth2::keep_alive(&config, &mut log);
    }
    status
}

/// Closes the descriptors above stderr this process inherited: those
/// without close-on-exec, as /proc/self/fdinfo shows (every file relaymail
/// opens itself has it). Without /proc nothing is closed.
fn close_inherited_fds() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC.bits();
    for fd in fds {
        let flags = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
            .ok()
            .and_then(|info| {
                let value = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
                i32::from_str_radix(value.trim(), 8).ok()
            });
        if flags.is_some_and(|f| f & cloexec == 0) {
            let _ = nix::unistd::close(fd);
        }
    }
}

/// One flush, then its report.
pub fn flush_and_report(
    face: Face,
    config: &Config,
    options: &faces::flush::Options,
    log: &mut log::Logger,
) -> Result<Sysexit, Failure> {
    let summary = faces::flush::flush(config, options, log)?;
    Ok(report(face, &summary))
}

/// The one-line summary on stderr when anything was not sent; 75 when
/// something stays queued for a retry.
fn report(face: Face, summary: &faces::flush::Summary) -> Sysexit {
    if summary.deferred + summary.bounced + summary.busy > 0 {
        log::stderr(&format!(
            "{}: {} sent, {} deferred, {} refused, {} busy (see mailq and the mail log)",
            face.name(),
            summary.sent,
            summary.deferred,
            summary.bounced,
            summary.busy
        ));
    }
    if summary.deferred > 0 {
        Sysexit::TempFail
    } else {
        Sysexit::Ok
    }
}
