//! The sendmail command line as real programs use it: one table row per
//! flag or caller, each run through the real binary via the `sendmail`
//! symlink, asserting what a user would check: exit status, where the
//! message goes, what is stored.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;

const CRON_MESSAGE: &str = "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> run-parts /etc/cron.daily\nContent-Type: text/plain; charset=UTF-8\n\nline one\n.\nline three\n";

struct Case {
    name: &'static str,
    args: &'static [&'static str],
    stdin: &'static str,
    recipients: &'static [&'static str],
    /// Substrings the stored message must contain.
    stored: &'static [&'static str],
    /// Substrings it must not contain.
    absent: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "Debian cron",
        args: &["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"],
        stdin: CRON_MESSAGE,
        recipients: &["admin@example.com", "ops@example.org"],
        stored: &["\r\nline one\r\n.\r\nline three\r\n", "From: root@host.test.example (Cron Daemon)\r\n", "To: root@test.example\r\n"],
        absent: &[],
    },
    Case {
        name: "cronie",
        args: &["-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "root"],
        stdin: CRON_MESSAGE,
        recipients: &["admin@example.com", "ops@example.org"],
        stored: &["line three"],
        absent: &[],
    },
    Case {
        name: "mailx (s-nail, bsd-mailx)",
        args: &["-oi", "--", "user@example.net"],
        stdin: "Subject: hi\nTo: user@example.net\n\nbody\n",
        recipients: &["user@example.net"],
        stored: &["Subject: hi\r\n", "\r\nFrom: ", "@host.test.example", "\r\nDate: ", "\r\nMessage-ID: <"],
        absent: &[],
    },
    Case {
        name: "scripts: -t -oi with Bcc",
        args: &["-t", "-oi"],
        stdin: "To: a@example.net, B <b@example.net>\nCc: c@example.net\nBcc: secret@example.net\nSubject: report\n\nbody\n",
        recipients: &["a@example.net", "b@example.net", "c@example.net", "secret@example.net"],
        stored: &["To: a@example.net, B <b@example.net>\r\n", "Cc: c@example.net\r\n"],
        absent: &["Bcc", "secret@"],
    },
    Case {
        name: "git send-email",
        args: &["-i", "dev@example.net", "list@example.org"],
        stdin: "From: Dev <dev@example.net>\nSubject: [PATCH] fix\nMessage-ID: <patch.1@example.net>\n\n---\n.\n",
        recipients: &["dev@example.net", "list@example.org"],
        stored: &["Message-ID: <patch.1@example.net>\r\n", "\r\n---\r\n.\r\n"],
        absent: &["Message-ID: <patch.1@example.net>\r\nMessage-ID"],
    },
    Case {
        name: "without -i a lone dot ends the message",
        args: &["x@example.net"],
        stdin: "Subject: dots\n\nbefore\n.\nafter\n",
        recipients: &["x@example.net"],
        stored: &["\r\n\r\nbefore\r\n"],
        absent: &["after"],
    },
    Case {
        name: "-f sets the envelope sender, -F the From name",
        args: &["-f", "alerts@example.com", "-F", "Backup Job", "x@example.net"],
        stdin: "Subject: s\n\nb\n",
        recipients: &["x@example.net"],
        stored: &["From: Backup Job <alerts@example.com>\r\n"],
        absent: &[],
    },
    Case {
        name: "-r is -f",
        args: &["-ralerts@example.com", "x@example.net"],
        stdin: "Subject: s\n\nb\n",
        recipients: &["x@example.net"],
        stored: &["From: alerts@example.com\r\n"],
        absent: &[],
    },
    Case {
        name: "comma-separated recipients in one argument, clustered -ti",
        args: &["-ti", "a@example.net,b@example.net"],
        stdin: "To: c@example.net\n\nb\n",
        recipients: &["a@example.net", "b@example.net", "c@example.net"],
        stored: &[],
        absent: &[],
    },
    Case {
        name: "a bare CR cannot start an injected header line",
        args: &["-t", "-i"],
        stdin: "To: a@example.net\nSubject: hello\rBcc: victim@evil.example\n\nbody\n",
        recipients: &["a@example.net"],
        stored: &["Subject: hello Bcc: victim@evil.example\r\n"],
        absent: &["\r\nBcc"],
    },
    Case {
        name: "IPv6 address literal",
        args: &["u@[IPv6:::1]"],
        stdin: "\nb\n",
        recipients: &["u@[IPv6:::1]"],
        stored: &[],
        absent: &[],
    },
    Case {
        name: "-n skips aliases",
        args: &["-n", "root"],
        stdin: "\nb\n",
        recipients: &["root@test.example"],
        stored: &[],
        absent: &[],
    },
    Case {
        name: "compatibility flags are accepted silently",
        args: &["-G", "-U", "-m", "-L", "tag", "-h", "3", "-p", "local", "-oem", "-oep", "-odb", "-o7", "-B", "7BIT", "x@example.net"],
        stdin: "\nb\n",
        recipients: &["x@example.net"],
        stored: &[],
        absent: &[],
    },
];

#[test]
fn real_caller_invocations() {
    for case in CASES {
        let env = Env::new();
        let out = env.sendmail(case.args, case.stdin);
        assert_exit(&out, 0, &env, case.name);
        assert_eq!(stderr(&out), "", "{}: no warnings expected", case.name);
        let q = env.only_message();
        assert_eq!(q.recipients(), case.recipients, "{}", case.name);
        let text = q.text();
        for want in case.stored {
            assert!(
                text.contains(want),
                "{}: stored message lacks {want:?}:\n{text}",
                case.name
            );
        }
        for unwanted in case.absent {
            assert!(
                !text.contains(unwanted),
                "{}: stored message has {unwanted:?}:\n{text}",
                case.name
            );
        }
        assert!(
            text.starts_with("Received: by host.test.example (relaymail, from userid "),
            "{}",
            case.name
        );
    }
}

#[test]
fn sender_defaults_to_calling_user_and_follows_f() {
    let env = Env::new();
    let out = env.sendmail(&["x@example.net"], "\nb\n");
    assert_exit(&out, 0, &env, "default sender");
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name;
    assert_eq!(
        env.only_message().sender(),
        format!("{user}@host.test.example")
    );

    let env = Env::new();
    env.sendmail(&["-f", "<>", "x@example.net"], "\nb\n");
    assert_eq!(env.only_message().sender(), "", "null sender");
}

#[test]
fn masquerading_rewrites_local_senders() {
    let env = Env::with_sections("masquerade_domain = \"example.com\"", "", "");
    let out = env.sendmail(&["-f", "cron", "x@example.net"], "From: cron\n\nb\n");
    assert_exit(&out, 0, &env, "masquerade");
    let q = env.only_message();
    assert_eq!(q.sender(), "cron@example.com");
    assert!(
        q.header().contains("From: cron@example.com\r\n"),
        "{}",
        q.header()
    );
}

#[test]
fn dsn_and_body_type_flags_are_stored() {
    let env = Env::new();
    let out = env.sendmail(
        &[
            "-N",
            "failure,delay",
            "-R",
            "hdrs",
            "-V",
            "env-42",
            "-B8BITMIME",
            "x@example.net",
        ],
        "\nb\n",
    );
    assert_exit(&out, 0, &env, "dsn flags");
    let q = env.only_message();
    let dsn = q.env_value("dsn").unwrap();
    assert_eq!(dsn["notify"].as_str(), Some("FAILURE,DELAY"));
    assert_eq!(dsn["ret"].as_str(), Some("HDRS"));
    assert_eq!(dsn["envid"].as_str(), Some("env-42"));
    assert_eq!(q.env_value("eight_bit").unwrap().as_bool(), Some(true));
}

#[test]
fn delivery_modes_queue_when_no_smarthost_is_configured() {
    for flag in ["-odb", "-odi", "-odq", "-odd"] {
        let env = Env::new();
        let out = env.sendmail(&[flag, "x@example.net"], "\nb\n");
        assert_exit(&out, 0, &env, flag);
        assert_eq!(env.queued().len(), 1, "{flag}");
    }
}

#[test]
fn verbose_prints_queue_id_and_log_line() {
    let env = Env::new();
    let out = env.sendmail(&["-v", "x@example.net"], "\nb\n");
    assert_exit(&out, 0, &env, "-v");
    let id = env.only_message().id;
    let err = stderr(&out);
    assert!(err.contains(&format!("sendmail: queued as {id}")), "{err}");
    assert!(err.contains("event=queued"), "{err}");
}

#[test]
fn unknown_flags_warn_once_each_and_still_queue() {
    let env = Env::new();
    let out = env.sendmail(
        &["-k", "-oQ/tmp/elsewhere", "--frob", "x@example.net"],
        "\nb\n",
    );
    assert_exit(&out, 0, &env, "unknown flags");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 3, "{err}");
    assert!(err.contains("ignoring unknown option -k"), "{err}");
    assert!(err.contains("-oQ"), "{err}");
    assert_eq!(env.queued().len(), 1);
}

#[test]
fn modes_that_are_not_available_yet_say_so() {
    let env = Env::new();
    let out = env.sendmail(&["-q30m"], "");
    assert_exit(&out, 64, &env, "-q30m");
    assert!(
        stderr(&out).contains("intervals and selectors are not supported"),
        "{}",
        stderr(&out)
    );
    let env = Env::new();
    let out = env.sendmail(&["-bd"], "");
    assert_exit(&out, 64, &env, "-bd");
    assert!(
        stderr(&out).contains("-bd: this mode is not supported"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn q_without_a_smarthost_says_what_to_configure() {
    let env = Env::new();
    assert_exit(
        &env.sendmail(&["-q"], ""),
        0,
        &env,
        "-q with an empty queue",
    );
    env.sendmail(&["-odq", "x@example.net"], "\nb\n");
    let out = env.sendmail(&["-q"], "");
    assert_exit(&out, 78, &env, "-q without [smarthost]");
    assert!(
        stderr(&out).contains("no [smarthost] is configured"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.queued().len(), 1, "the message stays queued");
}

#[test]
fn config_flag_and_environment_choose_the_file() {
    let env = Env::new();
    let other_spool = env.path("other-spool");
    let other = env.path("other.toml");
    std::fs::write(
        &other,
        format!(
            "hostname = \"other.example\"\nspool_dir = {:?}\n[log]\nsyslog = false\n",
            other_spool.display().to_string()
        ),
    )
    .unwrap();
    let out = env.sendmail(&["-C", other.to_str().unwrap(), "x@example.net"], "\nb\n");
    assert_exit(&out, 0, &env, "-C");
    assert!(env.queued().is_empty(), "-C must win over RELAYMAIL_CONFIG");
    assert_eq!(
        std::fs::read_dir(other_spool.join("queue"))
            .unwrap()
            .count(),
        1,
        "one queue file"
    );
}

#[test]
fn user_mode_without_any_config_uses_the_state_directory() {
    let env = Env::new();
    let home = env.path("home");
    let mut sendmail = env.cmd("sendmail");
    sendmail
        .env_remove("RELAYMAIL_CONFIG")
        .env("XDG_STATE_HOME", home.join("state"))
        .args(["-odq", "x@example.net"]);
    let Some(mut cmd) = without_system_config(sendmail) else {
        return;
    };
    let out = run_with_stdin(&mut cmd, b"\nb\n");
    assert_exit(&out, 0, &env, "defaults");
    let queue = home.join("state/relaymail/queue");
    assert_eq!(
        std::fs::read_dir(&queue).unwrap().count(),
        1,
        "one queue file in {}",
        queue.display()
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(home.join("state/relaymail"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn user_config_is_found_in_the_config_directory() {
    let env = Env::new();
    let home = env.path("home");
    let spool = env.path("user-spool");
    std::fs::create_dir_all(home.join(".config/relaymail")).unwrap();
    std::fs::write(
        home.join(".config/relaymail/relaymail.toml"),
        format!(
            "hostname = \"mine.example\"\nspool_dir = {:?}\n[log]\nsyslog = false\n",
            spool.display().to_string()
        ),
    )
    .unwrap();
    let out = run_with_stdin(
        env.cmd("sendmail")
            .env_remove("RELAYMAIL_CONFIG")
            .args(["x@example.net"]),
        b"\nb\n",
    );
    assert_exit(&out, 0, &env, "user config");
    assert_eq!(std::fs::read_dir(spool.join("queue")).unwrap().count(), 1);
}

#[test]
fn mailq_and_bp_list_the_queue() {
    let env = Env::new();
    let empty = env.run("mailq", &[], b"");
    assert_exit(&empty, 0, &env, "mailq empty");
    assert_eq!(stdout(&empty), "Mail queue is empty\n");
    env.sendmail(
        &["-f", "alerts@example.com", "root"],
        "Subject: x\n\nbody\n",
    );
    let id = env.only_message().id;
    for out in [
        env.run("mailq", &[], b""),
        env.sendmail(&["-bp"], ""),
        env.run("relaymail", &["mailq"], b""),
    ] {
        assert_exit(&out, 0, &env, "mailq");
        let text = stdout(&out);
        assert!(text.contains(&id), "{text}");
        assert!(text.contains("alerts@example.com"), "{text}");
        assert!(
            text.contains("admin@example.com") && text.contains("ops@example.org"),
            "{text}"
        );
        assert!(text.contains("in 1 Request."), "{text}");
    }
}

#[test]
fn newaliases_and_bi_check_the_aliases() {
    let env = Env::new();
    for out in [
        env.run("newaliases", &[], b""),
        env.sendmail(&["-bi"], ""),
        env.sendmail(&["-I"], ""),
    ] {
        assert_exit(&out, 0, &env, "newaliases");
        assert!(
            stdout(&out).contains("3 aliases, 0 errors"),
            "{}",
            stdout(&out)
        );
    }
    std::fs::write(env.path("aliases"), "a: b\nb: a\nbad line\n").unwrap();
    let out = env.run("newaliases", &[], b"");
    assert_exit(&out, 78, &env, "broken aliases");
    let text = stdout(&out);
    assert!(text.contains("aliases:3: expected"), "{text}");
    assert!(text.contains("a -> b -> a"), "{text}");
}

#[test]
fn bv_shows_where_mail_goes() {
    let env = Env::new();
    let out = env.sendmail(&["-bv", "postmaster", "x@example.net"], "");
    assert_exit(&out, 0, &env, "-bv");
    let text = stdout(&out);
    assert!(
        text.contains("postmaster... deliverable: relayed to admin@example.com, ops@example.org"),
        "{text}"
    );
    assert!(
        text.contains("x@example.net... deliverable: relayed to x@example.net"),
        "{text}"
    );
    assert!(env.queued().is_empty());
}

#[test]
fn help_and_version_work_with_a_broken_config() {
    let env = Env::new();
    std::fs::write(&env.config, "this is = = not toml").unwrap();
    let out = env.sendmail(&["--version"], "");
    assert_exit(&out, 0, &env, "--version");
    assert!(stdout(&out).starts_with("relaymail "));
    let out = env.run("relaymail", &["--help"], b"");
    assert_exit(&out, 0, &env, "--help");
    assert!(stdout(&out).contains("queue"));
    // sendmail's usage points to the page that has every sendmail flag
    // (relaymail --help has none of them).
    let out = env.sendmail(&["--help"], "");
    assert_exit(&out, 0, &env, "sendmail --help");
    assert!(
        stdout(&out).contains("relaymail-sendmail(8) describes every flag"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_latin1_byte_in_the_aliases_file_does_not_stop_mail() {
    let env = Env::new();
    let mut aliases = std::fs::read(env.path("aliases")).unwrap();
    aliases.extend_from_slice(b"# G\xe9rard's old entry\n");
    std::fs::write(env.path("aliases"), aliases).unwrap();
    let out = env.sendmail(&["root"], "\nb\n");
    assert_exit(&out, 0, &env, "latin-1 comment");
    assert_eq!(
        env.only_message().recipients(),
        ["admin@example.com", "ops@example.org"]
    );
}

#[test]
fn junk_in_tmp_does_not_stop_submission() {
    let env = Env::new();
    assert_exit(
        &env.sendmail(&["x@example.net"], "\nfirst\n"),
        0,
        &env,
        "first",
    );
    std::fs::create_dir(env.spool.join("tmp/lost+found")).unwrap();
    std::fs::write(env.spool.join("tmp/notes.txt"), "admin's file").unwrap();
    assert_exit(
        &env.sendmail(&["x@example.net"], "\nsecond\n"),
        0,
        &env,
        "second",
    );
    assert!(
        env.spool.join("tmp/notes.txt").exists(),
        "files that are not ours are left alone"
    );
    assert_eq!(env.queued().len(), 2);
}

#[test]
fn a_broken_stderr_never_fails_a_queued_message() {
    let env = Env::new();
    let mut child = env
        .cmd("sendmail")
        .args(["-v", "-k", "x@example.net"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"\nb\n").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "queued, so exit 0 even with nowhere to print"
    );
    assert_eq!(env.queued().len(), 1);
}

#[test]
fn forced_sender_keeps_the_original_in_reply_to_and_x_original_from() {
    let env = Env::with_sections(
        "sender = \"alerts@example.com\"\nrewrite_from = true",
        "",
        "",
    );
    let out = env.sendmail(&["-F", "Backup", "x@example.net"], "Subject: s\n\nb\n");
    assert_exit(&out, 0, &env, "forced sender");
    let q = env.only_message();
    assert_eq!(q.sender(), "alerts@example.com");
    let header = q.header();
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name;
    assert!(header.contains("\r\nFrom: alerts@example.com"), "{header}");
    assert!(
        header.contains(&format!("\r\nReply-To: Backup <{user}@host.test.example>")),
        "{header}"
    );
    assert!(
        header.contains(&format!(
            "\r\nX-Original-From: Backup <{user}@host.test.example>"
        )),
        "{header}"
    );
    let env = Env::with_sections("sender = \"alerts@example.com\"", "", "");
    env.sendmail(&["-f", "<>", "x@example.net"], "\nb\n");
    assert_eq!(env.only_message().sender(), "", "a null sender stays null");
}

/// `cmd` as it would run on a host without /etc/relaymail: where this host
/// has one (relaymail installed in system mode), in a private mount
/// namespace with an empty tmpfs over it. None (skipped, with a note)
/// when that needs root and the test has none.
fn without_system_config(cmd: std::process::Command) -> Option<std::process::Command> {
    if !std::path::Path::new("/etc/relaymail").exists() {
        return Some(cmd);
    }
    if !is_root() || !have("unshare") {
        eprintln!("skipped: /etc/relaymail exists and hiding it needs root");
        return None;
    }
    let mut wrapped = std::process::Command::new("unshare");
    wrapped
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs tmpfs /etc/relaymail && exec \"$@\"")
        .arg("sh")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    // The harness clears the environment and sets what the test needs.
    wrapped.env_clear();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            wrapped.env(key, value);
        }
    }
    Some(wrapped)
}

/// The programs an invocation of `sendmail` (the small submitter) runs,
/// as strace sees them: the path of every execve that succeeded.
fn programs_run(env: &Env, args: &[&str], stdin: &str) -> Vec<String> {
    let trace = env.path("exec-trace");
    let out = run_with_stdin(
        &mut env.traced("sendmail", "execve", &trace, args),
        stdin.as_bytes(),
    );
    assert_exit(&out, 0, env, &format!("sendmail {args:?}"));
    std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .filter(|l| l.contains("execve(") && l.trim_end().ends_with("= 0"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_string))
        .collect()
}

/// `sendmail` is the small submitter: a plain submission is its own work,
/// anything else becomes the full relaymail beside it.
#[test]
fn a_plain_submission_runs_only_the_submitter_and_the_rest_is_handed_to_relaymail() {
    if !have("strace") {
        return;
    }
    let env = Env::new();
    let name = |p: &String| {
        std::fs::canonicalize(p)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default()
    };
    let plain = programs_run(&env, &["-odq", "x@example.net"], "Subject: plain\n\nb\n");
    assert_eq!(
        plain.iter().map(name).collect::<Vec<_>>(),
        ["relaymail-sendmail"],
        "{plain:?}"
    );
    let listing = programs_run(&env, &["-bp"], "");
    assert_eq!(
        listing.iter().map(name).collect::<Vec<_>>(),
        ["relaymail-sendmail", "relaymail"],
        "{listing:?}"
    );
    let out = env.sendmail(&["-bp"], "");
    assert!(stdout(&out).contains("x@example.net"), "{}", stdout(&out));
}
