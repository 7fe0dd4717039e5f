//! `relaymail generate man DIR` and `relaymail generate completion SHELL`:
//! the man pages and shell completions that the packages and `make
//! install` ship. Pages and completions for `relaymail` come from the same
//! clap definitions that parse its command line, so they cannot drift
//! from it; the sendmail faces (whose flags are sendmail's, parsed by
//! `cli::sendmail`) and the configuration file have pages written by hand
//! in `packaging/man/`, checked against the code by the tests below.
//!
//! Writes only where the caller says; `lib::run` gives up the setgid
//! group first.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
use clap_mangen::roff::{bold, italic, roman, Inline, Roff};
use clap_mangen::Man;

use crate::cli::{GenerateAction, Relaymail};
use crate::sysexits::{Failure, Sysexit};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The hand-written pages, as (file name, roff source with @VERSION@).
const WRITTEN: [(&str, &str); 2] = [
    (
        "relaymail-sendmail.8",
        include_str!("../../packaging/man/relaymail-sendmail.8"),
    ),
    (
        "relaymail.toml.5",
        include_str!("../../packaging/man/relaymail.toml.5"),
    ),
];

/// The sections of relaymail(8) that the command-line definitions do not
/// hold (faces, modes, files, exit status).
const RELAYMAIL_EXTRA: &str = include_str!("../../packaging/man/relaymail.8.in");

const DESCRIPTION: &str = "\
relaymail is a daemonless, send-only mail relay. Installed as /usr/sbin/sendmail, it takes the mail of every program that calls sendmail (cron, logwatch, mailx, mutt, scripts), writes each message durably to a local spool before it returns, and relays it to one authenticated smarthost over STARTTLS or implicit TLS. Nothing listens for mail: a timer (or cron) retries deferred messages, and every delivery attempt is logged to syslog.

The commands below manage the queue, check the configuration and the relay, and run the optional receive-only SMTP sink for testing alert mail on closed networks.";

/// Each command's DESCRIPTION section (its one-line help is the NAME line).
fn description(command: &str) -> Option<&'static str> {
    Some(match command {
        "queue" => "\
Lists, shows and changes queued messages. In system mode every user sees the whole queue (as sendmail's mailq shows it), but a user who is not root may show, hold, release or delete only messages they submitted.

A held message stays queued and is skipped by every flush until it is released. clean removes what interrupted submissions left in the spool's tmp/ directory; submissions and flushes also do this on their own.",
        "config" => "\
config check reads the configuration exactly as sendmail would (the system file and conf.d, or the user's own, or -C), validates every key, and prints the effective settings with their defaults filled in. An error names the file, line and column, the key and the allowed values, and the exit status is 78.",
        "newaliases" => "\
Checks the aliases file ([rewrite] aliases_file, by default /etc/aliases) and the [aliases] table: syntax, loops (reported with the chain) and aliases that expand to nothing. There is no database to build; the files are read at each submission.",
        "flush" => "\
Delivers queued mail to the smarthost. Without --due every queued message that is not held is tried now, whatever its retry time: what an admin runs after fixing the relay (sendmail -q is the same). With --due only messages whose retry time has come are tried: this is what relaymail-flush.timer (or the cron fallback) runs every 5 minutes. A deferred recipient is retried after 1, 5, 15 and 30 minutes, then hourly, until [queue] max_lifetime bounces it.

Messages go over one reused session, a few in parallel for a backlog ([smarthost] connections). Each message is locked while it is delivered, so concurrent flushes never send the same message twice. The exit status is 0 when nothing was deferred and 75 when something was (the outcome of every recipient is in the mail log).",
        "demo" => "\
Shows the main job on a throw-away user-mode setup in a temporary directory: starts relaymail's own sink as the smarthost on a loopback port (STARTTLS with a generated certificate, AUTH accept-any), submits a message through the sendmail face exactly as cron does, delivers it, prints the log lines, the queue and the stored message, and removes everything. It touches no system file.",
        "doctor" => "\
Reads the configuration exactly as sendmail would and checks each step a delivery needs, one line each (OK, INFO, WARN or FAIL, with a fix: line under anything that is not right): the configuration; owner and mode of the config, credential files, spool and binary; the sender and the destination of mail to root; then for the smarthost (and each fallback until one works) DNS, TCP connect to every address, the greeting, EHLO, STARTTLS or implicit TLS with the version, cipher and each certificate (subject, issuer, expiry, SHA-256, whether it verifies or matches the pinned fingerprint), EHLO over TLS, and AUTH. The password is never printed.

The exit status is 0 when no step failed and 69 when one did.",
        "sink" => "\
Runs a small receive-only SMTP server that stores every message it receives and never relays anything (it has no outbound connection at all), for testing the alert mail of switches, storage arrays, UPSes and BMCs on a closed network. Without a command it serves in the foreground; list, show and wait read what it stored.

It listens on [sink] listen (default 127.0.0.1:2525), each listener plain, STARTTLS or implicit TLS (TLS 1.2 and 1.3; without cert_file and key_file a self-signed certificate is generated on first start and kept). It is tolerant of old devices (HELO, lowercase commands, bare LF line ends) and stores to Maildir, mbox (with the dotlock and fcntl lock mutt and mail expect) or one .eml file per message, each with a Received: header naming the client, HELO, TLS and AUTH user. The 250 to DATA is sent only once the message is on disk; then one JSON line per message is printed on standard output and appended to the index in state_dir.

Started as root with --user (as relaymail-sink.service does), it binds its listeners, then runs as that user for good. Command-line flags win over the [sink] keys of the configuration; see relaymail.toml(5).",
        "credentials" => "\
User mode: stores, checks or removes the smarthost password in the OS keyring, for password = \"keyring\" in the user's configuration. The kernel keyutils store is always used (it is found from cron and survives logouts, not reboots), and the desktop's Secret Service too when a session bus exists. The password is asked for twice without echo, or read from standard input with --stdin; it is never shown. In system mode the password lives in password_file instead (/etc/relaymail/credentials, root:relaymail 0640).",
        "oauth2" => "\
For [smarthost.oauth2] (Microsoft 365, Gmail): login is the one-time sign-in with the device code flow. It prints a URL and a code to enter there (on any device), waits while the provider says the sign-in is pending (more slowly after slow_down), and stores the refresh token it is given: in the OS keyring in user mode, in token_cache (root:relaymail 0640) in system mode, where login needs root. --refresh-token-stdin stores a refresh token obtained elsewhere instead, after redeeming it once. With flow = \"client_credentials\" there is nothing to sign in to and login only checks that a token is issued.

From then on every delivery takes the cached access token, renews it ahead of expiry (one process at a time, under a lock), and saves a rotated refresh token. status shows where the refresh token is held, when the access token expires and its scope, never a token; its exit status is 69 when no refresh token is held. logout removes both.",
        _ => return None,
    })
}

pub fn run(what: GenerateAction, out: &mut impl Write) -> Result<Sysexit, Failure> {
    match what {
        GenerateAction::Man { dir } => {
            for (name, text) in pages() {
                write_page(&dir, &name, &text)?;
            }
            Ok(Sysexit::Ok)
        }
        GenerateAction::Completion { shell } => {
            let mut command = Relaymail::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "relaymail", &mut script);
            out.write_all(&script)
                .and_then(|()| out.flush())
                .map_err(|e| {
                    Failure::new(Sysexit::IoErr, format!("writing the completion: {e}"))
                })?;
            Ok(Sysexit::Ok)
        }
    }
}

fn write_page(dir: &Path, name: &str, text: &str) -> Result<(), Failure> {
    let path = dir.join(name);
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, text))
        .map_err(|e| {
            Failure::new(
                Sysexit::CantCreate,
                format!("cannot write {}: {e}", path.display()),
            )
        })
}

/// Every man page, as (file name, roff text).
pub fn pages() -> Vec<(String, String)> {
    let mut command = Relaymail::command().long_about(DESCRIPTION);
    command.build();
    let mut pages = vec![("relaymail.8".to_string(), main_page(&command))];
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        pages.push((format!("relaymail-{}.8", sub.get_name()), command_page(sub)));
    }
    for (name, text) in WRITTEN {
        pages.push((name.to_string(), text.replace("@VERSION@", VERSION)));
    }
    pages
}

/// The date in the pages' title lines: SOURCE_DATE_EPOCH's (reproducible
/// builds set it), else none.
fn date() -> String {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn man(command: clap::Command, title: &str) -> Man {
    Man::new(command)
        .title(title.to_uppercase())
        .section("8")
        .date(date())
        .source(format!("relaymail {VERSION}"))
        .manual("System Manager's Manual")
}

/// Writes one section of a page.
type Section<'a> = &'a dyn Fn(&mut Vec<u8>) -> std::io::Result<()>;

fn render(sections: &[Section]) -> String {
    let mut text = Vec::new();
    for section in sections {
        // Writing to a Vec cannot fail.
        let _ = section(&mut text);
    }
    String::from_utf8_lossy(&text).into_owned()
}

fn main_page(command: &clap::Command) -> String {
    let page = man(command.clone(), "relaymail");
    let commands = |w: &mut Vec<u8>| {
        let mut roff = Roff::new();
        roff.control("SH", ["COMMANDS"]);
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            if sub.get_name() == "help" {
                continue;
            }
            roff.control("TP", []);
            roff.text([bold(format!("relaymail {}", sub.get_name()))]);
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            let stop = if about.ends_with('.') { "" } else { "." };
            roff.text([
                roman(format!("{about}{stop} See ")),
                bold(format!("relaymail-{}", sub.get_name())),
                roman("(8)."),
            ]);
        }
        roff.to_writer(w)
    };
    let extra = |w: &mut Vec<u8>| w.write_all(RELAYMAIL_EXTRA.as_bytes());
    render(&[
        &|w| page.render_title(w),
        &|w| page.render_name_section(w),
        &|w| page.render_synopsis_section(w),
        &|w| page.render_description_section(w),
        &|w| page.render_options_section(w),
        &commands,
        &extra,
    ])
}

fn command_page(sub: &clap::Command) -> String {
    let name = format!("relaymail-{}", sub.get_name());
    let mut sub = sub.clone().display_name(name.clone());
    if let Some(text) = description(sub.get_name()) {
        sub = sub.long_about(text);
    }
    let page = man(sub.clone(), &name);
    let nested = |w: &mut Vec<u8>| {
        let mut roff = Roff::new();
        let children: Vec<&clap::Command> = sub
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            .collect();
        if !children.is_empty() {
            roff.control("SH", ["COMMANDS"]);
        }
        for child in children {
            let line = format!("relaymail {} {}", sub.get_name(), child.get_name());
            roff.control("SS", [line.as_str()]);
            roff.text(synopsis(&line, child));
            if let Some(about) = child.get_long_about().or(child.get_about()) {
                roff.control("PP", []);
                roff.text([roman(about.to_string())]);
            }
            options(&mut roff, child);
        }
        roff.control("SH", ["SEE ALSO"]);
        roff.text([
            bold("relaymail"),
            roman("(8), "),
            bold("relaymail.toml"),
            roman("(5)"),
        ]);
        roff.to_writer(w)
    };
    let has_options = sub
        .get_arguments()
        .any(|a| !a.is_hide_set() && a.get_id() != "help");
    render(&[
        &|w| page.render_title(w),
        &|w| page.render_name_section(w),
        &|w| page.render_synopsis_section(w),
        &|w| page.render_description_section(w),
        &|w| {
            if has_options {
                page.render_options_section(w)
            } else {
                Ok(())
            }
        },
        &nested,
    ])
}

/// `relaymail queue show [--json] <ID>` for a nested command.
fn synopsis(line: &str, command: &clap::Command) -> Vec<Inline> {
    let mut text = vec![bold(line.to_string())];
    for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
        if matches!(arg.get_id().as_str(), "help" | "version" | "config") {
            continue;
        }
        text.push(roman(" "));
        let value = value_name(arg);
        let (open, close) = if arg.is_required_set() {
            ("", "")
        } else {
            ("[", "]")
        };
        text.push(roman(open));
        match arg.get_long() {
            Some(long) => {
                text.push(bold(format!("--{long}")));
                if !value.is_empty() {
                    text.push(roman(" "));
                    text.push(italic(value));
                }
            }
            None => text.push(italic(value)),
        }
        text.push(roman(close));
        if arg.get_num_args().is_some_and(|n| n.max_values() > 1) {
            text.push(roman("..."));
        }
    }
    text
}

fn value_name(arg: &clap::Arg) -> String {
    if !arg.get_action().takes_values() {
        return String::new();
    }
    arg.get_value_names()
        .and_then(|names| names.first())
        .map(|n| n.to_string())
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
}

/// The options of a nested command, as .TP entries.
fn options(roff: &mut Roff, command: &clap::Command) {
    for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
        if matches!(arg.get_id().as_str(), "help" | "version" | "config") {
            continue;
        }
        roff.control("TP", []);
        let value = value_name(arg);
        let mut head = Vec::new();
        if let Some(short) = arg.get_short() {
            head.push(bold(format!("-{short}")));
            head.push(roman(", "));
        }
        match arg.get_long() {
            Some(long) => {
                head.push(bold(format!("--{long}")));
                if !value.is_empty() {
                    head.push(roman(" "));
                    head.push(italic(value));
                }
            }
            None => head.push(italic(value)),
        }
        roff.text(head);
        let mut help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if !defaults.is_empty() && arg.get_action().takes_values() {
            if !help.is_empty() && !help.ends_with('.') {
                help.push('.');
            }
            help.push_str(&format!(" Default: {}.", defaults.join(", ")));
        }
        roff.text([roman(help)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(name: &str) -> String {
        pages()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, text)| text)
            .unwrap_or_else(|| unreachable!("no page {name}"))
    }

    #[test]
    fn every_visible_command_has_a_page_with_a_description() {
        let names: Vec<String> = pages().into_iter().map(|(n, _)| n).collect();
        let main = page("relaymail.8");
        for sub in Relaymail::command().get_subcommands() {
            let page = format!("relaymail-{}.8", sub.get_name());
            if sub.is_hide_set() {
                assert!(!names.contains(&page), "{page} is hidden");
                continue;
            }
            assert!(names.contains(&page), "{page} missing from {names:?}");
            assert!(
                description(sub.get_name()).is_some(),
                "relaymail {} has no DESCRIPTION text",
                sub.get_name()
            );
            assert!(
                main.contains(&format!("relaymail\\-{}", sub.get_name())),
                "relaymail(8) does not point to {page}"
            );
        }
    }

    #[test]
    fn the_sink_page_documents_every_flag() {
        let text = page("relaymail-sink.8");
        for flag in [
            "listen",
            "listener",
            "store",
            "auth",
            "auth\\-user",
            "user",
            "max\\-connections\\-per\\-client",
            "session\\-timeout",
        ] {
            assert!(text.contains(&format!("\\-\\-{flag}")), "--{flag} missing");
        }
        assert!(text.contains(".SS \"relaymail sink wait\""), "{text}");
        // A default follows its sentence, not in the middle of it.
        assert!(
            text.contains("How many matching messages to wait for. Default: 1."),
            "{text}"
        );
    }

    #[test]
    fn the_version_is_filled_in() {
        for (name, text) in pages() {
            assert!(!text.contains("@VERSION@"), "{name}");
            assert!(text.contains(&format!("relaymail {VERSION}")), "{name}");
        }
    }

    /// Every flag letter the sendmail face knows (it does not warn about
    /// it as unknown) is described in relaymail-sendmail(8).
    #[test]
    fn the_sendmail_page_documents_every_flag() {
        let text = page("relaymail-sendmail.8");
        for letter in ('a'..='z').chain('A'..='Z') {
            let argv = vec![format!("-{letter}"), "x".to_string()];
            let inv = crate::cli::sendmail::parse(argv.into_iter().map(std::ffi::OsString::from));
            let known = match &inv {
                Ok(inv) => !inv
                    .warnings
                    .iter()
                    .any(|w| w.contains("unknown") && w.contains(&format!("-{letter}"))),
                Err(_) => true,
            };
            if known {
                assert!(
                    text.contains(&format!("\\-{letter}")),
                    "-{letter} is accepted but not in relaymail-sendmail.8"
                );
            }
        }
    }

    /// Every key of the configuration schema is described in
    /// relaymail.toml(5). serde names the allowed keys when it meets an
    /// unknown one.
    #[test]
    fn the_configuration_page_documents_every_key() {
        let text = page("relaymail.toml.5");
        for section in [
            "",
            "[smarthost]\n",
            "[smarthost.oauth2]\n",
            "[rewrite]\n",
            "[queue]\n",
            "[log]\n",
            "[sink]\n",
            "[[sink.listener]]\naddr = \"127.0.0.1:25\"\n",
        ] {
            let probe = format!("{section}zz_not_a_key = 1\n");
            let error = match toml::from_str::<crate::config::schema::RawConfig>(&probe) {
                Ok(_) => unreachable!("{probe:?} should not parse"),
                Err(e) => e.to_string(),
            };
            let keys: Vec<&str> = error
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|k| *k != "zz_not_a_key")
                .collect();
            assert!(keys.len() > 1, "no key list in {error}");
            for key in keys {
                let roff = key.replace('-', "\\-");
                assert!(
                    [
                        format!("\n.BR {roff} \" = "),
                        format!("\", \" {roff} \" = \""),
                        format!("\n.B {roff} = "),
                        format!("\n.SH \"[{roff}]\""),
                        format!("\n.SH \"[smarthost.{roff}]\""),
                        format!("\n.B [sink.{roff}]\n"),
                        format!("\n.B [[sink.{roff}]]\n"),
                    ]
                    .iter()
                    .any(|form| text.contains(form.as_str())),
                    "{section:?} key {key} is not described in relaymail.toml.5"
                );
            }
        }
    }
}
