//! What `doctor` found: each step's status, detail and fix, gathered in a
//! report, and the report written as text or JSON. It runs no check.

use std::io::Write;

use crate::sysexits::{Failure, Sysexit};
use crate::tls_failure::Explanation;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Info,
    Warn,
    Fail,
}

#[derive(Debug, serde::Serialize)]
pub struct Check {
    pub step: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Configuration lines that fix it, exactly as they are to be added
    /// to `[smarthost]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<String>,
}

#[derive(Default)]
pub(super) struct Report {
    checks: Vec<Check>,
}

impl Report {
    pub(super) fn add(&mut self, step: &'static str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            step,
            status,
            detail: detail.into(),
            fix: None,
            settings: Vec::new(),
        });
    }

    pub(super) fn fail(
        &mut self,
        step: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.with_fix(step, Status::Fail, detail, fix);
    }

    pub(super) fn with_fix(
        &mut self,
        step: &'static str,
        status: Status,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.checks.push(Check {
            step,
            status,
            detail: detail.into(),
            fix: Some(fix.into()),
            settings: Vec::new(),
        });
    }

    /// A FAIL explained as delivery explains it, with the lines to add.
    pub(super) fn explained(
        &mut self,
        step: &'static str,
        detail: String,
        explained: &Explanation,
    ) {
        self.checks.push(Check {
            step,
            status: Status::Fail,
            detail,
            fix: Some(explained.fix.clone()),
            settings: explained.settings.clone(),
        });
    }

    pub(super) fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }

    /// One line per check (with its fix and the settings to add under it),
    /// or with `json` one JSON document.
    pub(super) fn write(&self, json: bool, out: &mut impl Write) -> Result<(), Failure> {
        if json {
            let doc = serde_json::json!({ "ok": !self.failed(), "checks": self.checks });
            writeln!(out, "{doc}").map_err(output)?;
        } else {
            for c in &self.checks {
                let word = match c.status {
                    Status::Ok => "OK",
                    Status::Info => "INFO",
                    Status::Warn => "WARN",
                    Status::Fail => "FAIL",
                };
                writeln!(out, "{word:<5} {:<12} {}", c.step, c.detail).map_err(output)?;
                if let Some(fix) = &c.fix {
                    writeln!(out, "{:<18} fix: {fix}", "").map_err(output)?;
                }
                for line in &c.settings {
                    writeln!(out, "{:<18} add to [smarthost]: {line}", "").map_err(output)?;
                }
            }
        }
        Ok(())
    }
}

fn output(e: std::io::Error) -> Failure {
    Failure::new(Sysexit::IoErr, format!("writing the report: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_fail_makes_the_report_fail() {
        let mut r = Report::default();
        r.add("a", Status::Ok, "fine");
        r.with_fix("b", Status::Warn, "meh", "do x");
        assert!(!r.failed());
        r.fail("c", "broken", "do y");
        assert!(r.failed());
    }
}
