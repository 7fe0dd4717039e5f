//! `relaymail doctor`: why would mail not go? Reads the configuration as
//! a real run would, then checks, step by step, what a delivery needs:
//! permissions, the sender and root's alias, DNS, TCP, the greeting, EHLO,
//! TLS (version, cipher, chain, expiry, verification, pin), AUTH, and with
//! `--send-to` a real message. Each step is OK, WARN or FAIL with a
//! one-line fix; any FAIL makes the exit status 69. Secrets never appear.
//!
//! This file holds the order of the checks; each group lives in its own
//! file (`permissions`, `identity`, `credentials`, `relay`) and adds its
//! findings to the `report`.

mod credentials;
mod identity;
mod permissions;
mod relay;
mod report;

use std::io::Write;

use crate::config::{Config, Mode};
use crate::relay::probe;
use crate::sysexits::{Failure, Sysexit};
use report::Report;
pub use report::{Check, Status};

pub struct Options {
    pub send_to: Option<String>,
    pub json: bool,
}

/// The `--send-to` message's envelope, as a submission by this user would
/// have it: sender rewritten, recipient through the aliases.
struct TestEnvelope {
    from: String,
    to: Vec<String>,
}

/// A bad --send-to address is a usage error (64), found before any
/// connection is made.
fn test_envelope(config: &Config, to: &str) -> Result<TestEnvelope, Failure> {
    let rewriter = crate::rewrite::Rewriter::new(config)?;
    let from = match &config.rewrite.sender {
        Some(forced) => forced.clone(),
        None => rewriter.sender(None, &crate::system::calling_user())?,
    };
    let to = rewriter
        .recipients(&[to.to_string()], true)
        .map_err(|e| Failure::new(Sysexit::Usage, format!("--send-to: {e}")))?
        .into_iter()
        .map(|r| r.address)
        .collect();
    Ok(TestEnvelope { from, to })
}

/// `loaded` is the configuration, or why it could not be loaded.
pub fn run(
    loaded: Result<Config, Failure>,
    options: &Options,
    out: &mut impl Write,
) -> Result<Sysexit, Failure> {
    let mut report = Report::default();
    match loaded {
        Err(e) => report.fail(
            "config",
            e.message,
            "correct the file and line named above; `relaymail config check` shows the result",
        ),
        Ok(config) => {
            let test = options
                .send_to
                .as_deref()
                .map(|to| test_envelope(&config, to))
                .transpose()?;
            diagnose(&config, test.as_ref(), &mut report)
        }
    }
    report.write(options.json, out)?;
    Ok(if report.failed() {
        Sysexit::Unavailable
    } else {
        Sysexit::Ok
    })
}

/// The checks in the order a delivery meets what they check. The first
/// relay that could carry mail ends the list: delivery tries no fallback
/// after it either.
fn diagnose(config: &Config, test: Option<&TestEnvelope>, report: &mut Report) {
    let mode = match config.mode {
        Mode::System => "system mode",
        Mode::User => "user mode",
    };
    report.add(
        "config",
        Status::Ok,
        format!("{} ({mode})", config.describe_files()),
    );
    permissions::check(config, report);
    identity::check(config, report);
    let Some(host) = &config.smarthost else {
        report.fail(
            "smarthost",
            "no [smarthost] is configured: mail is queued but never sent",
            "add a [smarthost] section (see relaymail.toml(5))",
        );
        return;
    };
    let tokens = crate::oauth2::Tokens::new(config);
    let secret = match &tokens {
        Some(tokens) => credentials::oauth2(config, tokens, report),
        None => credentials::password(config, host, report),
    };
    for (name, port) in probe::endpoints(host) {
        let credential = relay::Credential {
            secret: secret.as_ref(),
            tokens: tokens.as_ref(),
        };
        if relay::check(config, host, &name, port, credential, test, report) {
            return;
        }
    }
}
