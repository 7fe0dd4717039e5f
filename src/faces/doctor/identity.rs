//! The identity mail leaves with: the sender root's cron mail gets, and
//! where mail to root goes through the aliases. Makes no connection.

use super::{Report, Status};
use crate::config::Config;

/// What root's cron mail would look like: its sender and where it goes.
pub(super) fn check(config: &Config, report: &mut Report) {
    let rewriter = match crate::rewrite::Rewriter::new(config) {
        Ok(r) => r,
        Err(e) => {
            report.fail(
                "aliases",
                e.to_string(),
                "correct the aliases file named above (`relaymail newaliases` checks it)",
            );
            return;
        }
    };
    let root = crate::system::LocalUser {
        uid: 0,
        name: "root".into(),
        full_name: None,
    };
    match rewriter.sender(None, &root) {
        Ok(sender) => {
            let forced = config
                .rewrite
                .sender
                .as_deref()
                .map(|s| format!(" (the envelope is rewritten to {s})"))
                .unwrap_or_default();
            report.add(
                "sender",
                Status::Ok,
                format!("mail from root goes out as {sender}{forced}"),
            );
        }
        Err(e) => report.fail(
            "sender",
            e.to_string(),
            "set hostname or [rewrite] masquerade_domain to a real domain",
        ),
    }
    match rewriter.recipients(&["root".to_string()], true) {
        Ok(list) => {
            let to: Vec<&str> = list.iter().map(|r| r.address.as_str()).collect();
            let status = if list
                .iter()
                .any(|r| r.address.ends_with(&format!("@{}", config.hostname)))
            {
                Status::Warn
            } else {
                Status::Ok
            };
            let detail = format!("mail to root goes to {}", to.join(", "));
            if status == Status::Warn {
                report.with_fix(
                    "alias",
                    status,
                    detail,
                    "add root = [\"you@example.com\"] under [aliases] (or to /etc/aliases), or the relay will try this host's own domain",
                );
            } else {
                report.add("alias", status, detail);
            }
        }
        Err(e) => report.fail("alias", e.to_string(), "fix the alias named above"),
    }
}
