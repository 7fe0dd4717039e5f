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

use cli::{Action, Command, ConfigAction, Face};
use sysexits::{Failure, Sysexit};

/// Runs one invocation. Returns the face (for message prefixes) and the
/// exit status, or the failure to report.
pub fn run(argv: Vec<OsString>) -> (Face, Result<Sysexit, Failure>) {
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
