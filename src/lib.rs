//! relaymail: a daemonless, send-only, sendmail-compatible mail relay.
//!
//! Data flows one way (DESIGN.md): cli -> config -> message -> rewrite ->
//! spool -> relay, with log beside every step. `run` picks the face and
//! hands it to the module in `faces` that does that one job.

pub mod bounce;
pub mod cli;
pub mod config;
pub mod creds;
pub mod faces;
pub mod id;
pub mod log;
pub mod message;
pub mod oauth2;
pub mod privilege;
pub mod relay;
pub mod rewrite;
pub mod sink;
pub mod smtp_syntax;
pub mod spool;
pub mod sysexits;
pub mod system;
pub mod tls_failure;

use std::ffi::OsString;
use std::io;
use std::process::ExitCode;

use cli::{Action, Command, ConfigAction, Face};
use sysexits::{Failure, Sysexit};

/// Runs one invocation of `relaymail` (and its sendmail, mailq and
/// newaliases faces).
pub fn run(argv: Vec<OsString>) -> RunOutcome {
    let caller = privilege::start();
    let (face, command) = cli::parse(argv);
    let result = match command {
        Ok(command) => dispatch(face, command, &caller),
        Err(cli::Failure::Sendmail(e)) => Err(e.into()),
        Err(cli::Failure::Clap(e)) => {
            // clap formats its own help, version and usage errors.
            let _ = e.print();
            Ok(if e.exit_code() == 0 {
                Sysexit::Ok
            } else {
                Sysexit::Usage
            })
        }
    };
    (face, result)
}

/// What one run of a binary gives `main_with`: the face (for message
/// prefixes) and the exit status, or the failure to report.
pub type RunOutcome = (Face, Result<Sysexit, Failure>);

/// `relaymail-sendmail`, the small program installed as
/// /usr/sbin/sendmail: a plain submission (`-odb`, `-odq`) runs here,
/// linking only what submitting needs, so the program every cron job and
/// script starts is a third of the size and starts faster; anything else
/// (`-bp`, `-bs`, `-q`, `-odi`, help) becomes the full `relaymail`.
pub fn run_submitter(argv: Vec<OsString>) -> RunOutcome {
    let result = match faces::sendmail::plain_submission(&argv) {
        Some(inv) => {
            let caller = privilege::start();
            faces::sendmail::submit_plain(inv, &caller)
        }
        None => Err(faces::sendmail::hand_over(argv)),
    };
    (Face::Sendmail, result)
}

/// What each binary's `main` does around its run: a bug ends in
/// EX_SOFTWARE with one line, never a trace that could carry message
/// data, and never a misleading exit 0; a failure is one line on stderr.
pub fn main_with(run: fn(Vec<OsString>) -> RunOutcome) -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        log::stderr(&format!("relaymail: internal error{place}; nothing was queued unless mailq shows it. Please report this."));
        std::process::exit(70);
    }));
    let (face, result) = run(std::env::args_os().collect());
    match result {
        Ok(status) => ExitCode::from(status.code()),
        Err(failure) => {
            if !failure.message.is_empty() {
                log::stderr(&format!("{}: {}", face.name(), failure.message));
            }
            ExitCode::from(failure.exit.code())
        }
    }
}

fn dispatch(face: Face, command: Command, caller: &privilege::Caller) -> Result<Sysexit, Failure> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let args = match command {
        Command::Sendmail(inv) => return faces::sendmail::run(face, *inv, caller, &mut out),
        Command::Relaymail(args) => args,
    };
    let setup = faces::setup::Setup {
        face,
        caller,
        explicit: args.config,
    };
    match args.action {
        Action::Demo => {
            privilege::drop_group()?;
            faces::demo::run(&mut out)
        }
        Action::Doctor { send_to, json } => {
            let options = faces::doctor::Options { send_to, json };
            faces::doctor::run(setup.config().map(|(_, c)| c), &options, &mut out)
        }
        Action::Queue { action } => {
            let (_, config, mut log) = setup.configured()?;
            faces::queue::act(&config, action, &mut log, &mut out)
        }
        Action::Config {
            action: ConfigAction::Check,
        } => {
            let (source, config, _) = setup.configured()?;
            faces::config_check::check(&source, &config, &mut out)
        }
        Action::Newaliases => faces::aliases::check(&setup.configured()?.1, &mut out),
        Action::Flush {
            due,
            ids,
            detach,
            then_due,
        } => faces::flush_command::run(&setup, due, &ids, detach, then_due),
        Action::Credentials { action } => {
            faces::credentials::run(&setup.configured()?.1, action, &mut out)
        }
        Action::Generate { what } => {
            // Writes where the caller says: never with the group.
            privilege::drop_group()?;
            faces::generate::run(what, &mut out)
        }
        Action::OAuth2 { action } => faces::oauth2::run(&setup.configured()?.1, action, &mut out),
        Action::Sink(sink) => {
            let (source, config, log) = setup.configured()?;
            faces::sink::command(&source, config, *sink, log, out)
        }
    }
}
