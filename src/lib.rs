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
use std::io::{self, Write};
use std::path::PathBuf;

use cli::sendmail::Operation;
use cli::{Action, Command, ConfigAction, Face, QueueAction};
use config::{Config, Source};
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
    match command {
        Command::Sendmail(inv) => {
            for warning in &inv.warnings {
                log::stderr(&format!("{}: warning: {warning}", face.name()));
            }
            if inv.help || inv.version {
                return usage(face, inv.version, &mut out);
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
                Operation::ListQueue => faces::queue::list(&config, &mut out),
                Operation::CheckAliases => faces::aliases::check(&config, &mut out),
                Operation::VerifyRecipients => faces::aliases::verify(&config, &inv.recipients, inv.no_aliases, &mut out),
                Operation::SmtpDialogue => {
                    let mut log = open_log(face, &config, inv.verbose);
                    let stdin = io::stdin();
                    faces::smtp_stdin::run(
                        &inv,
                        &config,
                        &mut log,
                        &mut stdin.lock(),
                        &mut io::stdout().lock(),
                        |id, log| {
                            // The 250 is already sent: a delivery problem
                            // is the queue's business, not the dialogue's.
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
                    format!("-q{arg}: queue-run intervals and selectors are not supported; use -q (or relaymail flush, and the relaymail-flush timer for periodic runs)"),
                )),
            }
        }
        Command::Relaymail(args) => {
            // Each face loads the configuration itself: demo uses none,
            // and doctor reports a broken one instead of stopping at it.
            let path = args.config;
            let configured = || -> Result<(Source, Config, log::Logger), Failure> {
                let (source, config) = load_config(path.clone(), caller)?;
                let log = open_log(face, &config, false);
                Ok((source, config, log))
            };
            match args.action {
                Action::Demo => {
                    privilege::drop_group()?;
                    faces::demo::run(&mut out)
                }
                Action::Doctor { send_to, json } => {
                    let loaded = load_config(path.clone(), caller).map(|(_, config)| config);
                    let options = faces::doctor::Options { send_to, json };
                    faces::doctor::run(loaded, &options, &mut out)
                }
                Action::Queue { action } => {
                    let (_, config, mut log) = configured()?;
                    match action {
                        QueueAction::List { json: false } => faces::queue::list(&config, &mut out),
                        QueueAction::List { json: true } => {
                            faces::queue::list_json(&config, &mut out)
                        }
                        QueueAction::Show { id, json } => {
                            faces::queue::show(&config, &id, json, &mut out)
                        }
                        QueueAction::Delete { ids } => faces::queue::change(
                            &config,
                            &ids,
                            faces::queue::Change::Delete,
                            &mut log,
                            &mut out,
                        ),
                        QueueAction::Hold { ids } => faces::queue::change(
                            &config,
                            &ids,
                            faces::queue::Change::Hold,
                            &mut log,
                            &mut out,
                        ),
                        QueueAction::Release { ids } => faces::queue::change(
                            &config,
                            &ids,
                            faces::queue::Change::Release,
                            &mut log,
                            &mut out,
                        ),
                        QueueAction::Clean => faces::queue::clean(&config, &mut log, &mut out),
                    }
                }
                Action::Config {
                    action: ConfigAction::Check,
                } => {
                    let (source, config, _) = configured()?;
                    faces::config_check::check(&source, &config, &mut out)
                }
                Action::Newaliases => {
                    let (_, config, _) = configured()?;
                    faces::aliases::check(&config, &mut out)
                }
                Action::Flush {
                    due,
                    ids,
                    detach,
                    then_due,
                } => {
                    let (_, config, mut log) = configured()?;
                    if detach {
                        // Background delivery: out of the caller's session
                        // and process group, so cron never waits for it.
                        let _ = nix::unistd::setsid();
                    }
                    let ids = ids
                        .iter()
                        .map(|t| {
                            spool::QueueId::parse(t)
                                .ok_or_else(|| Failure::from(spool::Error::BadId(t.clone())))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    if then_due {
                        // The -odb child: these, then whatever is due (so
                        // deferred mail moves on even before a timer is
                        // set up), sharing sessions with other runners.
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
                        // The timer's run also keeps an idle host's OAuth2
                        // refresh token alive.
                        faces::oauth2::keep_alive(&config, &mut log);
                    }
                    status
                }
                Action::Credentials { action } => {
                    let (_, config, _) = configured()?;
                    faces::credentials::run(&config, action, &mut out)
                }
                Action::Generate { what } => {
                    // Writes where the caller says: never with the group.
                    privilege::drop_group()?;
                    faces::generate::run(what, &mut out)
                }
                Action::OAuth2 { action } => {
                    let (_, config, _) = configured()?;
                    faces::oauth2::run(&config, action, &mut out)
                }
                Action::Sink(sink) => {
                    let (source, mut config, log) = configured()?;
                    // The sink writes and reads where its caller says
                    // (--store, --state-dir, an index's paths): never with
                    // the group. The system's [sink.users] are the admin's.
                    privilege::drop_group()?;
                    if matches!(source, Source::System(_)) && !nix::unistd::getuid().is_root() {
                        config.sink.users.clear();
                    }
                    match sink.action {
                        Some(action) => faces::sink::act(&config, action, &mut out),
                        None => {
                            drop(out);
                            faces::sink::run(&config, sink.run, log)
                        }
                    }
                }
            }
        }
    }
}

/// After a message is queued: `-odb` starts a detached delivery of it
/// (unless a runner at work will take it), `-odi` delivers it now and reports the outcome, `-odq` does nothing.
/// Without a smarthost the message simply stays queued.
fn deliver_after_submit(
    face: Face,
    inv: &cli::Invocation,
    config: &Config,
    id: &spool::QueueId,
    log: &mut log::Logger,
) -> Result<Sysexit, Failure> {
    use cli::sendmail::DeliveryMode;
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

fn flush_and_report(
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

/// Finds and loads the configuration, giving up the setgid group first
/// when the caller chose the file.
fn load_config(
    explicit: Option<PathBuf>,
    caller: &privilege::Caller,
) -> Result<(Source, Config), Failure> {
    let own = caller
        .own_config
        .clone()
        .filter(|path| privilege::as_caller(|| path.is_file()));
    let source = config::discover(explicit, caller.config_env.clone(), own);
    privilege::settle(&source, caller)?;
    let loaded = config::load(&source)
        .map_err(Failure::from)
        .and_then(|config| {
            if privilege::is_setgid() {
                privilege::check_system_files(&config.files)?;
            }
            creds::check_trusted(&config)?;
            Ok(config)
        });
    match loaded {
        Ok(config) => Ok((source, config)),
        Err(failure) => {
            // Best effort: an admin reading the mail log should see why
            // mail stopped, without a warning when there is no syslog.
            let mut log = log::Logger::open(
                "relaymail",
                log::Settings {
                    // Only a syslog that answers: no extra warning here.
                    syslog: std::os::unix::net::UnixDatagram::unbound()
                        .and_then(|s| s.connect("/dev/log"))
                        .is_ok(),
                    socket: "/dev/log".into(),
                    file: None,
                    shared_file: false,
                    echo: false,
                },
            );
            log.log(
                log::Severity::Error,
                &log::Event::new(log::event::CONFIG_ERROR).field("reason", &failure.message),
            );
            Err(failure)
        }
    }
}

fn open_log(face: Face, config: &Config, verbose: bool) -> log::Logger {
    log::Logger::open(
        face.name(),
        log::Settings {
            syslog: config.log.syslog,
            socket: config.log.syslog_socket.clone(),
            file: config.log.file.clone(),
            shared_file: config.mode == config::Mode::System,
            echo: verbose,
        },
    )
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
