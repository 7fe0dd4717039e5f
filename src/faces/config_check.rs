//! `relaymail config check`: validate and print the effective settings
//! (paths to secrets are shown, secrets never are).

use std::io::Write;

use crate::config::{Config, Source};
use crate::sysexits::{Failure, Sysexit};

use super::queue::output;

pub fn check(source: &Source, config: &Config, out: &mut impl Write) -> Result<Sysexit, Failure> {
    let files = config.describe_files();
    let origin = match source {
        Source::Explicit(_) => "chosen with -C or RELAYMAIL_CONFIG",
        Source::User(_) => "the user's own configuration",
        Source::System(_) => "the system configuration",
        Source::Defaults => "no file found",
    };
    writeln!(out, "# configuration OK: {files} ({origin})").map_err(output)?;
    // Every setting with its effective value, the computed defaults too.
    let mut effective = config.clone();
    effective.sink.max_connections_per_client = Some(config.sink.per_client_limit());
    let text = toml::to_string(&effective).map_err(|e| {
        Failure::new(
            Sysexit::Software,
            format!("cannot show the configuration: {e}"),
        )
    })?;
    out.write_all(text.as_bytes()).map_err(output)?;
    Ok(Sysexit::Ok)
}
