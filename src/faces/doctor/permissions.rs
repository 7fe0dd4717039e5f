//! Who owns, and who may read or write, each file relaymail depends on:
//! the binary, the configuration, the secrets, the spool and the JSON log.
//! Each wrong one is reported with the command that fixes it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{Report, Status};
use crate::config::oauth2::ClientSecret;
use crate::config::{Config, Mode};
use crate::spool::GROUP;

/// The mode each installed path has in system mode; all of them are
/// root's, group relaymail (packaging/README.md).
const CONFIG: u32 = 0o640;
const SECRET: u32 = 0o640;
const SPOOL_DIR: u32 = 0o2770;
const LOG_FILE: u32 = 0o660;
const BINARY: u32 = 0o2755;

pub(super) fn check(config: &Config, report: &mut Report) {
    match config.mode {
        Mode::System => system(config, report),
        Mode::User => user(config, report),
    }
}

fn system(config: &Config, report: &mut Report) {
    let gid = nix::unistd::Group::from_name(GROUP)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw());
    let Some(gid) = gid else {
        report.fail(
            "permissions",
            format!("group {GROUP} does not exist"),
            format!("groupadd --system {GROUP} (the packages do this)"),
        );
        return;
    };
    if let Ok(exe) = std::env::current_exe() {
        binary(&exe, gid, report);
        // What sendmail runs, installed beside relaymail.
        let submitter = exe.with_file_name("relaymail-sendmail");
        if submitter.exists() {
            binary(&submitter, gid, report);
        }
    }
    for file in &config.files {
        if let Some((path, problem)) = crate::privilege::untrusted(file, &[0]) {
            report.fail(
                "permissions",
                format!(
                    "{}: {} {problem}; the setgid binary refuses this configuration",
                    file.display(),
                    path.display()
                ),
                format!("chown root {0} && chmod go-w {0}", path.display()),
            );
        } else {
            shape("permissions", "configuration", file, CONFIG, gid, report);
        }
    }
    if let Some(host) = &config.smarthost {
        for (what, path) in [
            ("password_file", &host.password_file),
            ("client_key", &host.client_key),
        ] {
            if let Some(path) = path {
                shape("permissions", what, path, SECRET, gid, report);
            }
        }
        if let Some(oauth2) = &host.oauth2 {
            if let ClientSecret::File(path) = &oauth2.client_secret {
                shape(
                    "permissions",
                    "client_secret_file",
                    path,
                    SECRET,
                    gid,
                    report,
                );
            }
            token_cache(&oauth2.token_cache, gid, report);
        }
    }
    let root = &config.spool_dir;
    if !root.exists() {
        report.fail(
            "spool",
            format!("{} does not exist", root.display()),
            format!(
                "install -d -o root -g {GROUP} -m 2770 {0} {0}/tmp {0}/queue",
                root.display()
            ),
        );
    } else {
        for dir in [root.clone(), root.join("tmp"), root.join("queue")] {
            shape("spool", "spool directory", &dir, SPOOL_DIR, gid, report);
        }
    }
    if let Some(log) = &config.log.file {
        if log.exists() {
            shape("log", "JSON log", log, LOG_FILE, gid, report);
        } else {
            report.with_fix(
                "log",
                Status::Warn,
                format!(
                    "{} does not exist; only root's events can create it, users' events are not written there",
                    log.display()
                ),
                format!("install -m 0660 -o root -g {GROUP} /dev/null {}", log.display()),
            );
        }
    }
}

/// The OAuth2 state directory is the spool's kind (root:relaymail 2770,
/// made by root); the token file in it is rewritten by whichever delivery
/// refreshes (so it may belong to that user), group relaymail, 0640, and
/// nobody outside the group can reach it.
fn token_cache(cache: &Path, gid: u32, report: &mut Report) {
    let dir = cache.parent().unwrap_or(Path::new("/"));
    if !dir.exists() {
        report.with_fix(
            "oauth2",
            Status::Warn,
            format!("the OAuth2 state directory {} does not exist yet", dir.display()),
            format!(
                "relaymail oauth2 login, run as root, creates it (or install -d -o root -g {GROUP} -m 2770 {})",
                dir.display()
            ),
        );
        return;
    }
    shape(
        "oauth2",
        "OAuth2 state directory",
        dir,
        SPOOL_DIR,
        gid,
        report,
    );
    let Ok(meta) = std::fs::metadata(cache) else {
        return;
    };
    let mode = meta.mode() & 0o7777;
    if meta.gid() != gid || mode & 0o037 != 0 {
        report.fail(
            "oauth2",
            format!(
                "token cache {}: group gid {}, mode {mode:04o}; it holds the refresh token",
                cache.display(),
                meta.gid()
            ),
            format!("chgrp {GROUP} {0} && chmod 640 {0}", cache.display()),
        );
    } else {
        report.add(
            "oauth2",
            Status::Ok,
            format!("token cache {} group {GROUP} {mode:04o}", cache.display()),
        );
    }
}

/// In system mode unprivileged users queue through the setgid binary.
fn binary(exe: &Path, gid: u32, report: &mut Report) {
    let Ok(meta) = std::fs::metadata(exe) else {
        return;
    };
    let fix = format!(
        "chown root:{GROUP} {0} && chmod 2755 {0} (the packages do this)",
        exe.display()
    );
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        report.fail(
            "binary",
            format!(
                "{} belongs to uid {} with mode {:04o}: whoever can change it runs as every user who sends mail",
                exe.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ),
            fix,
        );
    } else if meta.mode() & 0o2000 == 0 || meta.gid() != gid {
        report.with_fix(
            "binary",
            Status::Warn,
            format!(
                "{} is not setgid {GROUP}: only root can queue mail",
                exe.display()
            ),
            fix,
        );
    } else {
        shape("binary", "binary", exe, BINARY, gid, report);
    }
}

/// Compares owner (root), group and mode with `want`: OK, or FAIL with
/// the chown/chmod that makes it so.
fn shape(step: &'static str, what: &str, path: &Path, want: u32, gid: u32, report: &mut Report) {
    let Ok(meta) = std::fs::metadata(path) else {
        report.fail(
            step,
            format!("{what} {} cannot be read", path.display()),
            "check the path in the configuration",
        );
        return;
    };
    let mode = meta.mode() & 0o7777;
    let mut wrong = Vec::new();
    if meta.uid() != 0 {
        wrong.push(format!("owner uid {} (want root)", meta.uid()));
    }
    if meta.gid() != gid {
        wrong.push(format!("group gid {} (want {GROUP})", meta.gid()));
    }
    if mode != want {
        wrong.push(format!("mode {mode:04o} (want {:04o})", want));
    }
    if wrong.is_empty() {
        report.add(
            step,
            Status::Ok,
            format!("{what} {} root:{GROUP} {mode:04o}", path.display()),
        );
        return;
    }
    report.fail(
        step,
        format!("{what} {}: {}", path.display(), wrong.join(", ")),
        format!(
            "chown root:{GROUP} {0} && chmod {1:o} {0}",
            path.display(),
            want
        ),
    );
}

fn user(config: &Config, report: &mut Report) {
    let uid = nix::unistd::getuid().as_raw();
    for file in &config.files {
        if let Some((path, problem)) = crate::privilege::untrusted(file, &[0, uid]) {
            report.fail(
                "permissions",
                format!("{}: {} {problem}", file.display(), path.display()),
                format!("chown $USER {0} && chmod go-w {0}", path.display()),
            );
        }
    }
    if let Some(key) = config
        .smarthost
        .as_ref()
        .and_then(|h| h.client_key.as_deref())
    {
        match crate::creds::check_private(key, "client_key", config.mode) {
            Ok(()) => report.add(
                "permissions",
                Status::Ok,
                format!("client_key {} is private", key.display()),
            ),
            Err(e) => report.fail(
                "permissions",
                e.message,
                format!("chmod 600 {}", key.display()),
            ),
        }
    }
    if let Some(ClientSecret::File(path)) = config
        .smarthost
        .as_ref()
        .and_then(|h| h.oauth2.as_ref())
        .map(|o| &o.client_secret)
    {
        match crate::creds::check_private(path, "client_secret_file", config.mode) {
            Ok(()) => report.add(
                "permissions",
                Status::Ok,
                format!("client_secret_file {} is private", path.display()),
            ),
            Err(e) => report.fail(
                "permissions",
                e.message,
                format!("chmod 600 {}", path.display()),
            ),
        }
    }
    // password_file is checked with the credentials, as delivery reads it.
    let dir = &config.spool_dir;
    let Ok(meta) = std::fs::metadata(dir) else {
        report.add(
            "spool",
            Status::Ok,
            format!("{} will be created on first use", dir.display()),
        );
        return;
    };
    let bits = meta.mode() & 0o7777;
    if bits & 0o077 != 0 {
        report.with_fix(
            "spool",
            Status::Warn,
            format!("{} is readable by others (mode {bits:04o})", dir.display()),
            format!("chmod 700 {}", dir.display()),
        );
    } else {
        report.add("spool", Status::Ok, format!("{} {bits:04o}", dir.display()));
    }
}
