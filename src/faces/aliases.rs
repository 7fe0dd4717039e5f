//! `newaliases` (there is no database to build: it validates the aliases
//! file and the `[aliases]` table) and `sendmail -bv` (where would mail go).

use std::io::Write;

use crate::config::Config;
use crate::rewrite::Rewriter;
use crate::sysexits::{Failure, Sysexit};

use super::queue::output;

pub fn check(config: &Config, out: &mut impl Write) -> Result<Sysexit, Failure> {
    let rewriter = Rewriter::new(config)?;
    let mut errors = 0;
    for problem in &rewriter.problems {
        writeln!(out, "{problem}").map_err(output)?;
        errors += usize::from(problem.fatal);
    }
    let names = rewriter.alias_names();
    for name in &names {
        if let Err(e) = rewriter.recipients(std::slice::from_ref(name), true) {
            writeln!(out, "alias {name}: {e}").map_err(output)?;
            errors += 1;
        }
    }
    let file = config
        .rewrite
        .aliases_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "no aliases file".into());
    writeln!(
        out,
        "{file} and [aliases]: {} aliases, {errors} error{}",
        names.len(),
        if errors == 1 { "" } else { "s" }
    )
    .map_err(output)?;
    Ok(if errors == 0 {
        Sysexit::Ok
    } else {
        Sysexit::Config
    })
}

pub fn verify(
    config: &Config,
    recipients: &[String],
    no_aliases: bool,
    out: &mut impl Write,
) -> Result<Sysexit, Failure> {
    if recipients.is_empty() {
        return Err(Failure::new(
            Sysexit::Usage,
            "-bv needs at least one address to verify",
        ));
    }
    let rewriter = Rewriter::new(config)?;
    let mut worst = Sysexit::Ok;
    for typed in recipients {
        match rewriter.recipients(std::slice::from_ref(typed), !no_aliases) {
            Ok(found) => {
                let list: Vec<&str> = found.iter().map(|r| r.address.as_str()).collect();
                writeln!(
                    out,
                    "{typed}... deliverable: relayed to {}",
                    list.join(", ")
                )
                .map_err(output)?;
            }
            Err(e) => {
                let failure = Failure::from(e);
                writeln!(out, "{typed}... {}", failure.message).map_err(output)?;
                worst = failure.exit;
            }
        }
    }
    Ok(worst)
}
