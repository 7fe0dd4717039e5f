//! What every face needs before it runs: its configuration, found and
//! loaded across the privilege seam (`privilege`: a file the caller
//! chose costs the setgid group), and its log.

use std::path::PathBuf;

use crate::cli::Face;
use crate::config::{self, Config, Source};
use crate::sysexits::Failure;
use crate::{creds, log, privilege};

/// A `relaymail` subcommand's start: each face loads the configuration
/// itself when it needs one (demo uses none, and doctor reports a broken
/// one instead of stopping at it).
pub struct Setup<'a> {
    pub face: Face,
    pub caller: &'a privilege::Caller,
    /// `-C FILE`.
    pub explicit: Option<PathBuf>,
}

impl Setup<'_> {
    pub fn config(&self) -> Result<(Source, Config), Failure> {
        load_config(self.explicit.clone(), self.caller)
    }

    /// The configuration and the log it asks for.
    pub fn configured(&self) -> Result<(Source, Config, log::Logger), Failure> {
        let (source, config) = self.config()?;
        let log = open_log(self.face, &config, false);
        Ok((source, config, log))
    }
}

/// Finds and loads the configuration, giving up the setgid group first
/// when the caller chose the file.
pub fn load_config(
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

pub fn open_log(face: Face, config: &Config, verbose: bool) -> log::Logger {
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
