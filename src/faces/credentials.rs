//! `relaymail credentials set|check|clear`: the smarthost password in the
//! OS keyring, for user mode. The secret is asked for without echo (or
//! read from `--stdin`) and never printed.

use std::io::{BufRead, Write};

use crate::cli::{CredentialsAction, CredentialsEntry};
use crate::config::oauth2::ClientSecret;
use crate::config::{Config, KeyringEntry, Mode, KEYRING_SERVICE};
use crate::creds::keyring::{self, Found};
use crate::creds::Secret;
use crate::sysexits::{Failure, Sysexit};

use super::queue::output;

pub fn run(
    config: &Config,
    action: CredentialsAction,
    out: &mut impl Write,
) -> Result<Sysexit, Failure> {
    if config.mode == Mode::System {
        return Err(Failure::new(
            Sysexit::Config,
            "the OS keyring is per user; in system mode the password is in password_file (root:relaymail 0640, e.g. /etc/relaymail/credentials)",
        ));
    }
    match action {
        CredentialsAction::Set { entry, stdin } => {
            let key = key(config, &entry)?;
            let secret = if stdin {
                crate::creds::secret_from_stdin("password")?
            } else {
                ask(&key)?
            };
            let (stored, failed) = keyring::set(&key, &secret);
            for (store, why) in &failed {
                writeln!(out, "not stored in {}: {why}", store.name()).map_err(output)?;
            }
            if stored.is_empty() {
                return Err(Failure::new(
                    Sysexit::Unavailable,
                    format!("no keyring took the password for {}", key.account),
                ));
            }
            for store in stored {
                writeln!(
                    out,
                    "stored the password for {} (service {}) in {}",
                    key.account,
                    key.service,
                    store.describe()
                )
                .map_err(output)?;
            }
            hint(config, &key, out)?;
            Ok(Sysexit::Ok)
        }
        CredentialsAction::Check { entry } => {
            let key = key(config, &entry)?;
            let found = keyring::find(&key);
            report(&key, &found, "held by", out)?;
            if found.iter().any(|f| f.held == Ok(true)) {
                hint(config, &key, out)?;
                Ok(Sysexit::Ok)
            } else {
                Err(Failure::new(
                    Sysexit::Unavailable,
                    format!(
                        "no password for {} in any keyring; store it with: relaymail credentials set --account {}",
                        key.account, key.account
                    ),
                ))
            }
        }
        CredentialsAction::Clear { entry } => {
            let key = key(config, &entry)?;
            let found = keyring::clear(&key);
            report(&key, &found, "removed from", out)?;
            Ok(Sysexit::Ok)
        }
    }
}

/// The entry named by `--account`, else by the configuration.
fn key(config: &Config, entry: &CredentialsEntry) -> Result<KeyringEntry, Failure> {
    let host = config.smarthost.as_ref();
    let configured = host.and_then(|h| h.keyring.clone());
    let service = configured
        .as_ref()
        .map(|k| k.service.clone())
        .unwrap_or_else(|| KEYRING_SERVICE.to_string());
    let account = entry
        .account
        .clone()
        .or_else(|| configured.map(|k| k.account))
        .or_else(|| host.and_then(|h| h.username.clone()))
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            Failure::new(
                Sysexit::Usage,
                "which account? give --account NAME, or set [smarthost] username",
            )
        })?;
    if account.chars().any(char::is_control) {
        return Err(Failure::new(
            Sysexit::Usage,
            "--account: the name contains a control character",
        ));
    }
    Ok(KeyringEntry { service, account })
}

fn report(
    key: &KeyringEntry,
    found: &[Found],
    verb: &str,
    out: &mut impl Write,
) -> Result<(), Failure> {
    for f in found {
        let line = match &f.held {
            Ok(true) => format!(
                "{}/{}: {verb} {} ({})",
                key.service,
                key.account,
                f.store.name(),
                f.store.describe()
            ),
            Ok(false) => format!("{}/{}: not in {}", key.service, key.account, f.store.name()),
            Err(why) => format!(
                "{}/{}: {} not reachable: {why}",
                key.service,
                key.account,
                f.store.name()
            ),
        };
        writeln!(out, "{line}").map_err(output)?;
    }
    Ok(())
}

/// Delivery reads the keyring only when the configuration says so.
fn hint(config: &Config, key: &KeyringEntry, out: &mut impl Write) -> Result<(), Failure> {
    let host = config.smarthost.as_ref();
    let used = host
        .and_then(|h| h.keyring.as_ref())
        .is_some_and(|k| k == key)
        // [smarthost.oauth2] client_secret = "keyring".
        || host.and_then(|h| h.oauth2.as_ref()).is_some_and(|o| {
            matches!(&o.client_secret, ClientSecret::Keyring(k) if k == key)
        });
    if !used {
        writeln!(
            out,
            "note: delivery uses it once [smarthost] has password = \"keyring\" (and keyring_account = {:?} unless that is the username)",
            key.account
        )
        .map_err(output)?;
    }
    Ok(())
}

/// Asks on the terminal with echo off, twice.
fn ask(key: &KeyringEntry) -> Result<Secret, Failure> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| {
            Failure::new(
                Sysexit::Usage,
                format!("no terminal to ask on ({e}); pipe the password in with --stdin"),
            )
        })?;
    let first = read_hidden(
        &tty,
        &format!("Password for {} (service {}): ", key.account, key.service),
    )?;
    let again = read_hidden(&tty, "Again: ")?;
    if first.expose() != again.expose() {
        return Err(Failure::new(
            Sysexit::DataErr,
            "the two entries differ; nothing stored",
        ));
    }
    Ok(first)
}

fn read_hidden(tty: &std::fs::File, prompt: &str) -> Result<Secret, Failure> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let io = |e: std::io::Error| Failure::new(Sysexit::IoErr, format!("terminal: {e}"));
    let saved = tcgetattr(tty).map_err(|e| io(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    // Echo goes off before the prompt appears, and nothing typed is
    // discarded: a fast typist (or a paste) right after the prompt must
    // not lose the first characters.
    tcsetattr(tty, SetArg::TCSADRAIN, &quiet).map_err(|e| io(e.into()))?;
    let mut writer = tty;
    let mut line = String::new();
    let read = writer
        .write_all(prompt.as_bytes())
        .and_then(|()| std::io::BufReader::new(tty).read_line(&mut line));
    // The terminal is given back even when reading failed.
    let restored = tcsetattr(tty, SetArg::TCSADRAIN, &saved);
    read.map_err(io)?;
    restored.map_err(|e| io(e.into()))?;
    crate::creds::secret_line(line, "password")
}
