//! Log lines as an admin greps them, read from a real unix datagram
//! socket the test owns (what /dev/log is).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::net::UnixDatagram;

use common::*;

#[test]
fn queued_message_is_logged_with_id_sender_recipients_and_size() {
    let env = Env::new();
    let out = env.sendmail(
        &["-f", "alerts@example.com", "root", "x@example.net"],
        "Subject: s\n\nbody\n",
    );
    assert_exit(&out, 0, &env, "submit");
    assert_eq!(stderr(&out), "");
    let q = env.only_message();
    let lines = env.log_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    // <22> = facility mail (2) * 8 + severity info (6).
    assert!(line.starts_with("<22>"), "{line}");
    assert!(
        line.contains(&format!("relaymail[{}]: ", out_pid(line))),
        "{line}"
    );
    let size = q.env_value("size").unwrap().as_integer().unwrap();
    let want = format!(
        "{}: event=queued from=<alerts@example.com> to=<admin@example.com>,<ops@example.org>,<x@example.net> nrcpt=3 size={size} ",
        q.id
    );
    assert!(line.contains(&want), "{line}\nwanted: {want}");
    assert!(line.contains(" msgid=<"), "{line}");
    assert_eq!(size as usize, q.msg.len());
}

fn out_pid(line: &str) -> String {
    line.split("relaymail[")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn long_lines_are_noted() {
    let env = Env::new();
    let body = format!("Subject: s\n\n{}\n", "y".repeat(5000));
    env.sendmail(&["x@example.net"], &body);
    let q = env.only_message();
    assert!(
        q.text().contains(&format!("\r\n{}\r\n", "y".repeat(5000))),
        "line kept whole"
    );
    assert!(env.log_lines()[0].contains(" long_lines=yes"));
}

#[test]
fn missing_syslog_socket_warns_once_and_queues() {
    let env = Env::with_sections("", "", "");
    std::fs::remove_file(&env.log_path).unwrap();
    let out = env.sendmail(&["x@example.net"], "\nb\n");
    assert_exit(&out, 0, &env, "no syslog");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("warning: cannot log to syslog at"), "{err}");
    assert_eq!(env.queued().len(), 1);
}

#[test]
fn a_stuck_syslog_daemon_never_hangs_sendmail() {
    let env = Env::new();
    let stuck = env.path("stuck.sock");
    let _server = UnixDatagram::bind(&stuck).unwrap();
    // Fill its queue (Linux queues 10 datagrams per socket by default).
    let filler = UnixDatagram::unbound().unwrap();
    filler.set_nonblocking(true).unwrap();
    while filler.send_to(b"x", &stuck).is_ok() {}
    let config = std::fs::read_to_string(&env.config).unwrap().replace(
        &format!("syslog_socket = {:?}", env.log_path.display().to_string()),
        &format!("syslog_socket = {:?}", stuck.display().to_string()),
    );
    std::fs::write(&env.config, config).unwrap();
    let out = env.sendmail(&["x@example.net"], "\nb\n");
    assert_exit(&out, 0, &env, "stuck syslog");
    assert!(
        stderr(&out).contains("syslog write failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.queued().len(), 1);
}

#[test]
fn syslog_can_be_turned_off_and_json_lines_turned_on() {
    let env = Env::with_sections("", &format!("syslog = false\nfile = {:?}", "LOGFILE"), "");
    let logfile = env.path("relaymail.jsonl");
    let config = std::fs::read_to_string(&env.config).unwrap().replace(
        "\"LOGFILE\"",
        &format!("{:?}", logfile.display().to_string()),
    );
    std::fs::write(&env.config, config).unwrap();
    env.sendmail(&["x@example.net"], "\nb\n");
    env.sendmail(&["y@example.net"], "\nb\n");
    assert!(env.log_lines().is_empty(), "syslog = false");
    let text = std::fs::read_to_string(&logfile).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event"], "queued");
    assert_eq!(events[1]["to"], "<y@example.net>");
    let ids: Vec<String> = env.queued().into_iter().map(|q| q.id).collect();
    assert_eq!(events[0]["id"], ids[0].as_str());
}

#[test]
fn config_errors_go_to_stderr_with_exit_78() {
    let env = Env::new();
    std::fs::write(&env.config, "[queue]\nmax_lifetime = 5\nbogus = 1\n").unwrap();
    let out = env.sendmail(&["x@example.net"], "\nb\n");
    assert_exit(&out, 78, &env, "config error");
    assert!(
        stderr(&out).contains("relaymail.toml:3:1: unknown field `bogus`"),
        "{}",
        stderr(&out)
    );
}

/// A configuration error is logged to /dev/log (the configuration that
/// would name another socket is the broken one). A private mount
/// namespace shows this test's socket as /dev/log.
#[test]
fn a_configuration_error_is_logged_as_config_error() {
    if !is_root() || !have("unshare") {
        return;
    }
    let env = Env::new();
    std::fs::write(&env.config, "[queue]\nmax_lifetime = \"forever\"\n").unwrap();
    let relaymail = env.cmd("relaymail");
    let program = relaymail.get_program().to_string_lossy().into_owned();
    let script = format!(
        "mount -t tmpfs tmpfs /dev && touch /dev/log && mount --bind {} /dev/log && exec {program} -C {} queue list",
        env.log_path.display(),
        env.config.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", outcome(&out));
    let lines = env.log_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    // <19> = facility mail (2) * 8 + severity error (3).
    assert!(lines[0].starts_with("<19>"), "{}", lines[0]);
    assert!(
        lines[0].contains("event=config_error reason=")
            && lines[0].contains("forever")
            && lines[0].contains(&env.config.display().to_string()),
        "{}",
        lines[0]
    );
}

#[test]
fn concurrent_writers_never_interleave_json_lines() {
    let env = Env::with_sections("", &format!("file = {:?}", "LOGFILE"), "");
    let logfile = env.path("relaymail.jsonl");
    let config = std::fs::read_to_string(&env.config).unwrap().replace(
        "\"LOGFILE\"",
        &format!("{:?}", logfile.display().to_string()),
    );
    std::fs::write(&env.config, config).unwrap();
    let env = std::sync::Arc::new(env);
    let n = 30;
    let writers: Vec<_> = (0..n)
        .map(|i| {
            let env = env.clone();
            // Long lines (many recipients), so a split write would show.
            let rcpts: Vec<String> = (0..20)
                .map(|j| format!("{}{i}x{j}@example.net", "r".repeat(50)))
                .collect();
            std::thread::spawn(move || {
                let args: Vec<&str> = rcpts.iter().map(String::as_str).collect();
                env.sendmail(&args, "\nb\n")
            })
        })
        .collect();
    for w in writers {
        assert!(w.join().unwrap().status.success());
    }
    let text = std::fs::read_to_string(&logfile).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(events.len(), n);
    assert!(events.iter().all(|e| e["event"] == "queued"));
    assert_eq!(env.log_lines().len(), n, "the same events on syslog");
}
