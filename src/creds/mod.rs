//! The smarthost password: from `password_file` (refused when others can
//! read it) or `password_command` (honoured only from a root-owned
//! configuration). The secret never appears in errors or logs.

pub mod keyring;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::config::{Config, Mode};
use crate::sysexits::{Failure, Sysexit};

/// The configured secret, if a username is set.
pub fn load(config: &Config) -> Result<Option<Secret>, Failure> {
    let Some(host) = &config.smarthost else {
        return Ok(None);
    };
    // With [smarthost.oauth2] the relay asks the OAuth2 client for an
    // access token instead (issue 14).
    if host.username.is_none() || host.oauth2.is_some() {
        return Ok(None);
    }
    // No core file or ptrace may show the secret read below.
    crate::privilege::no_core_dumps();
    if let Some(path) = &host.password_file {
        return from_file(path, config.mode).map(Some);
    }
    if let Some(command) = &host.password_command {
        return from_command(command, config).map(Some);
    }
    if let Some(entry) = &host.keyring {
        return match keyring::get(entry) {
            Ok((secret, _)) => Ok(Some(secret)),
            Err(asked) => Err(Failure::new(
                Sysexit::TempFail,
                format!(
                    "no password for {} (service {}) in the OS keyring ({}); store it with: relaymail credentials set --account {}",
                    entry.account,
                    entry.service,
                    keyring::explain(&asked),
                    entry.account
                ),
            )),
        };
    }
    Err(Failure::new(
        Sysexit::Config,
        "[smarthost] username is set but no password is: add password_file, password_command or password = \"keyring\"",
    ))
}

fn from_file(path: &Path, mode: Mode) -> Result<Secret, Failure> {
    check_private(path, "password_file", mode)?;
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            Sysexit::Config,
            format!("cannot read password_file {}: {e}", path.display()),
        )
    })?;
    let first = text.lines().next().unwrap_or("");
    if first.is_empty() {
        return Err(Failure::new(
            Sysexit::Config,
            format!("password_file {} is empty", path.display()),
        ));
    }
    Ok(Secret::new(first.to_string()))
}

/// Refuses a secret file (`what` names its key) that others can read:
/// 0600, or root:relaymail 0640 in system mode.
pub fn check_private(path: &Path, what: &str, mode: Mode) -> Result<(), Failure> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Failure::new(
            Sysexit::Config,
            format!("cannot read {what} {}: {e}", path.display()),
        )
    })?;
    let bits = meta.mode() & 0o777;
    let group_ok = mode == Mode::System
        && nix::unistd::Group::from_name(crate::spool::GROUP)
            .ok()
            .flatten()
            .is_some_and(|g| g.gid.as_raw() == meta.gid());
    let too_open = bits & 0o007 != 0 || (bits & 0o070 != 0 && !group_ok);
    if too_open {
        let fix = if mode == Mode::System {
            format!("chown root:relaymail {0} && chmod 640 {0}", path.display())
        } else {
            format!("chmod 600 {}", path.display())
        };
        return Err(Failure::new(
            Sysexit::NoPerm,
            format!(
                "refusing {what} {}: readable by others (mode {bits:04o}); run {fix}",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// A password or token: kept out of `Debug` and `Display`, and its bytes
/// overwritten when it is dropped.
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(text: String) -> Secret {
        Secret(text.into_bytes())
    }

    /// The secret itself, for the AUTH exchange only.
    pub fn expose(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
        // Keeps the stores above from being optimised away.
        std::hint::black_box(&self.0);
    }
}

/// One secret typed or piped in (`what` names it in the error): the line
/// without its line ending; an empty one is refused (exit 65).
pub fn secret_line(mut line: String, what: &str) -> Result<Secret, Failure> {
    while line.ends_with(['\n', '\r']) {
        line.pop();
    }
    if line.is_empty() {
        return Err(Failure::new(
            Sysexit::DataErr,
            format!("no {what} given (the line is empty); nothing stored"),
        ));
    }
    Ok(Secret::new(line))
}

/// The first line of standard input as a secret.
pub fn secret_from_stdin(what: &str) -> Result<Secret, Failure> {
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::stdin().lock(), &mut line)
        .map_err(|e| Failure::new(Sysexit::IoErr, format!("cannot read standard input: {e}")))?;
    secret_line(line, what)
}

/// Who may own a configuration that names a command or a private key:
/// root alone for root and the setgid binary (they act for others), else
/// root or the caller.
fn trusted_owners() -> Vec<u32> {
    let uid = nix::unistd::getuid().as_raw();
    if crate::privilege::is_setgid() || nix::unistd::geteuid().is_root() || uid == 0 {
        vec![0]
    } else {
        vec![0, uid]
    }
}

/// `password_command` and `client_key` are honoured only from a
/// configuration that no one else can change: every file and every
/// directory above it. Checked when the configuration is loaded.
pub fn check_trusted(config: &Config) -> Result<(), Failure> {
    let Some(host) = &config.smarthost else {
        return Ok(());
    };
    let key = match (&host.password_command, &host.client_key) {
        (Some(_), _) => "password_command",
        (None, Some(_)) => "client_key",
        (None, None) => return Ok(()),
    };
    let owners = trusted_owners();
    for file in &config.files {
        if let Some((path, problem)) = crate::privilege::untrusted(file, &owners) {
            let owner = if owners == [0] { "root" } else { "$USER" };
            return Err(Failure::new(
                Sysexit::Config,
                format!(
                    "{}: {key} is honoured only from a configuration no one else can change, but {} {problem}; run chown {owner} {1} && chmod go-w {1}, or remove {key}",
                    file.display(),
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// How long `password_command` may take (a token helper or a vault
/// client) before it is stopped and the delivery deferred.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `password_command` with `/bin/sh -p` (dash and bash would
/// otherwise drop the relaymail group the command needs to read a
/// root:relaymail secret), no input, a time limit, and whatever
/// environment the process has: under setgid only the fixed PATH. Its
/// stdout's first line is the secret; its stderr is shown (never the
/// secret) so that an admin sees why it failed.
fn from_command(command: &str, config: &Config) -> Result<Secret, Failure> {
    // Checked at load too; a command from a file someone else could
    // write would run with the caller's (or the group's) rights.
    check_trusted(config)?;
    let child = Command::new("/bin/sh")
        .args(["-p", "-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::new(Sysexit::Config, format!("cannot run password_command: {e}")))?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(result) => result,
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            return Err(Failure::new(
                Sysexit::TempFail,
                format!(
                    "password_command did not finish within {}s and was stopped; the message stays queued",
                    COMMAND_TIMEOUT.as_secs()
                ),
            ));
        }
    }
    .map_err(|e| Failure::new(Sysexit::TempFail, format!("password_command: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or("").to_string();
    let said = summary(&out.stderr, &first);
    if !out.status.success() {
        return Err(Failure::new(
            Sysexit::TempFail,
            format!(
                "password_command failed ({}){}; its output is not shown",
                out.status,
                said.map(|s| format!(", saying: {s}")).unwrap_or_default()
            ),
        ));
    }
    if first.is_empty() {
        return Err(Failure::new(
            Sysexit::Config,
            format!(
                "password_command printed nothing{}",
                said.map(|s| format!("; it said: {s}")).unwrap_or_default()
            ),
        ));
    }
    if let Some(said) = said {
        crate::log::stderr(&format!("relaymail: password_command said: {said}"));
    }
    Ok(Secret::new(first))
}

/// The first lines of a command's stderr, one line, control characters
/// as spaces, and `secret` (if it shows) masked.
fn summary(stderr: &[u8], secret: &str) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let mut line: String = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join(" / ")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    if !secret.is_empty() {
        line = line.replace(secret, "***");
    }
    (!line.is_empty()).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::summary;

    #[test]
    fn a_commands_stderr_never_shows_the_secret() {
        assert_eq!(
            summary(b"vault: token hunter2 expired\n\nretry\n", "hunter2").as_deref(),
            Some("vault: token *** expired / retry")
        );
        assert_eq!(summary(b"\n  \n", "x"), None);
        assert_eq!(
            summary(b"bad\x1b[2Jterm", "").as_deref(),
            Some("bad [2Jterm")
        );
    }
}
