//! Interop with a real Postfix smarthost (private instance, loopback only,
//! started by tests/postfix/start.sh): STARTTLS-required and implicit-TLS
//! submission with SASL AUTH (Dovecot), a 550 and a 450 recipient, a 552
//! after the final dot, TLS version limits, a client certificate,
//! pinning, a relay that is down at submission, SIGKILL while
//! delivering, concurrent flushes. Postfix
//! relays what it accepts to relaymail's sink, so the tests see exactly
//! what arrived, and how often.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::sink::Sink;
use common::*;

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/postfix");

struct Postfix {
    dir: tempfile::TempDir,
    submit: u16,
    smtps: u16,
    /// SUBMIT's twin that takes at most 10240 bytes without advertising
    /// SIZE: a larger message gets its 552 after the final dot.
    small: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port p with p + 1 free too (the harness's plain listener).
fn free_port_pair() -> u16 {
    loop {
        let p = free_port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

impl Postfix {
    /// None (with a note) where Postfix cannot run: not root, not installed.
    fn start(sink: &Sink, protocols: &str) -> Option<Postfix> {
        if !is_root() {
            // scripts/test runs as root in CI: there, skipping is a failure.
            assert!(
                std::env::var_os("CI").is_none(),
                "the Postfix interop suite needs root"
            );
            eprintln!("skipped: the Postfix interop suite needs root");
            return None;
        }
        if !have("postfix") || !have("dovecot") || !have("openssl") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (submit, smtps) = (free_port(), free_port_pair());
        let small = std::iter::repeat_with(free_port)
            .find(|p| ![submit, smtps, smtps + 1].contains(p))
            .unwrap();
        let out = Command::new("bash")
            .arg(format!("{SCRIPTS}/start.sh"))
            .arg(dir.path().join("pf"))
            .args([
                submit.to_string(),
                smtps.to_string(),
                format!("127.0.0.1:{}", sink.port(0)),
                protocols.to_string(),
                small.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "postfix did not start: {}",
            outcome(&out)
        );
        Some(Postfix {
            dir,
            submit,
            smtps,
            small,
        })
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join("pf").join(name)
    }

    /// `postfix stop` or `postfix start` on the private instance; after a
    /// start, waits until the submission port accepts connections.
    fn control(&self, verb: &str) {
        let out = Command::new("postfix")
            .arg("-c")
            .arg(self.path("etc"))
            .arg(verb)
            .output()
            .unwrap();
        assert!(out.status.success(), "postfix {verb}: {}", outcome(&out));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let up = || std::net::TcpStream::connect(("127.0.0.1", self.submit)).is_ok();
        while up() != (verb == "start") {
            assert!(
                std::time::Instant::now() < deadline,
                "postfix {verb} timed out"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Lets temp450@ through from now on.
    fn unblock_450(&self) {
        let access = std::fs::read_to_string(self.path("access")).unwrap();
        let kept: String = access
            .lines()
            .filter(|l| !l.starts_with("temp450"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(self.path("access"), kept).unwrap();
        let out = Command::new("postfix")
            .args(["-c"])
            .arg(self.path("etc"))
            .arg("reload")
            .output()
            .unwrap();
        assert!(out.status.success(), "postfix reload: {}", outcome(&out));
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(format!("{SCRIPTS}/stop.sh"))
            .arg(self.path(""))
            .output();
    }
}

/// A relaymail client of `postfix` over `tls` on `port`.
fn client(postfix: &Postfix, port: u16, tls: &str, password: &str, extra: &str) -> Env {
    let env = Env::new();
    let file = env.path("password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let smarthost = format!(
        "\n[smarthost]\nhost = \"localhost\"\nport = {port}\ntls = \"{tls}\"\nca_file = {:?}\nusername = \"alerts\"\npassword_file = {:?}\n{extra}\n",
        postfix.path("tls/ca.pem").display().to_string(),
        file.display().to_string()
    );
    let config = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, config + &smarthost).unwrap();
    env
}

fn sink() -> Sink {
    Sink::start(&["--listen", "127.0.0.1:0"])
}

#[test]
fn starttls_and_implicit_tls_submission_with_auth() {
    let sink = sink();
    let Some(postfix) = Postfix::start(&sink, ">=TLSv1.2") else {
        return;
    };
    for (port, tls) in [(postfix.submit, "starttls"), (postfix.smtps, "implicit")] {
        let env = client(&postfix, port, tls, "interop-secret", "");
        let out = env.sendmail(
            &["-odi", "-f", "owner@example.org", "ok@example.net"],
            &format!("Subject: via {tls}\n\nbody\n"),
        );
        assert_exit(&out, 0, &env, tls);
        let e = sink.event();
        assert_eq!(e["subject"], format!("via {tls}"));
        assert_eq!(e["rcpt"], serde_json::json!(["ok@example.net"]));
        let line = env
            .log_lines()
            .into_iter()
            .find(|l| l.contains("status=sent"))
            .unwrap();
        assert!(
            line.contains("tls=TLSv1.3/TLS_")
                && line.contains(&format!("relay=localhost[127.0.0.1]:{port}")),
            "the version and cipher Postfix negotiated: {line}"
        );
    }
}

#[test]
fn recipient_550_bounces_and_450_is_delivered_once_after_the_block_is_lifted() {
    let sink = sink();
    let Some(postfix) = Postfix::start(&sink, ">=TLSv1.2") else {
        return;
    };
    let env = client(&postfix, postfix.submit, "starttls", "interop-secret", "");
    let out = env.sendmail(
        &[
            "-odi",
            "-f",
            "owner@example.org",
            "ok@example.net",
            "reject550@example.net",
            "temp450@example.net",
        ],
        "Subject: mixed\n\nb\n",
    );
    assert_exit(&out, 75, &env, "one deferred");
    let mut events = [sink.event(), sink.event()];
    events.sort_by_key(|e| e["from"].as_str().unwrap().to_string());
    assert_eq!(events[0]["from"], "", "the DSN, from the null sender");
    assert_eq!(events[0]["rcpt"], serde_json::json!(["owner@example.org"]));
    assert_eq!(
        events[1]["rcpt"],
        serde_json::json!(["ok@example.net"]),
        "only the accepted recipient"
    );
    let dsn = std::fs::read_to_string(events[0]["path"].as_str().unwrap()).unwrap();
    assert!(
        dsn.contains("Final-Recipient: rfc822; reject550@example.net")
            && dsn.contains("Status: 5.1.1"),
        "{dsn}"
    );
    sink.no_event();
    let q = env.only_message();
    assert!(
        q.env.contains("temp450@example.net") && q.env.contains("status = \"deferred\""),
        "{}",
        q.env
    );

    postfix.unblock_450();
    let flushed = env.run("relaymail", &["flush"], b"");
    assert_exit(&flushed, 0, &env, "flush after the block is lifted");
    let e = sink.event();
    assert_eq!(
        e["rcpt"],
        serde_json::json!(["temp450@example.net"]),
        "only the deferred recipient, nobody twice"
    );
    sink.no_event();
    assert!(env.queued().is_empty());
}

#[test]
fn wrong_password_defers_with_the_servers_reply() {
    let sink = sink();
    let Some(postfix) = Postfix::start(&sink, ">=TLSv1.2") else {
        return;
    };
    let env = client(&postfix, postfix.submit, "starttls", "not-the-password", "");
    let out = env.sendmail(&["-odi", "ok@example.net"], "\nb\n");
    assert_exit(&out, 75, &env, "wrong password");
    let line = env
        .log_lines()
        .into_iter()
        .find(|l| l.contains("status=deferred"))
        .unwrap();
    assert!(line.contains("authentication failed: 535 5.7.8"), "{line}");
    assert!(!line.contains("not-the-password"));
    sink.no_event();
}

#[test]
fn tls_version_limits_on_both_sides() {
    let sink = sink();
    let Some(only13) = Postfix::start(&sink, ">=TLSv1.3") else {
        return;
    };
    let env = client(
        &only13,
        only13.submit,
        "starttls",
        "interop-secret",
        "tls_min_version = \"1.2\"",
    );
    assert_exit(
        &env.sendmail(
            &["-odi", "ok@example.net"],
            "Subject: to a 1.3-only relay\n\nb\n",
        ),
        0,
        &env,
        "1.3-only relay",
    );
    assert_eq!(sink.event()["subject"], "to a 1.3-only relay");
    assert!(env
        .log_lines()
        .iter()
        .any(|l| l.contains("status=sent") && l.contains("tls=TLSv1.3/TLS_")));
    drop(only13);

    let Some(only12) = Postfix::start(&sink, "TLSv1.2") else {
        return;
    };
    let env = client(
        &only12,
        only12.submit,
        "starttls",
        "interop-secret",
        "tls_min_version = \"1.3\"",
    );
    let out = env.sendmail(&["-odi", "ok@example.net"], "\nb\n");
    assert_exit(&out, 75, &env, "client demands 1.3, relay has 1.2 only");
    let line = env
        .log_lines()
        .into_iter()
        .find(|l| l.contains("status=deferred"))
        .unwrap();
    assert!(line.contains("tls=none"), "no TLS was established: {line}");
    set_min_version_12_and_deliver(&only12, &sink);
    assert!(
        env.log_lines()
            .iter()
            .any(|l| l.contains("status=deferred") && l.contains("tls failed")),
        "{:?}",
        env.log_lines()
    );
    sink.no_event();
}

/// A TLS 1.2-only relay: delivered, and the log names TLS 1.2 and its
/// ECDHE cipher.
fn set_min_version_12_and_deliver(only12: &Postfix, sink: &Sink) {
    let env = client(
        only12,
        only12.submit,
        "starttls",
        "interop-secret",
        "tls_min_version = \"1.2\"",
    );
    let out = env.sendmail(&["-odi", "ok@example.net"], "Subject: over 1.2\n\nb\n");
    assert_exit(&out, 0, &env, "1.2-only relay");
    assert_eq!(sink.event()["subject"], "over 1.2");
    let line = env
        .log_lines()
        .into_iter()
        .find(|l| l.contains("status=sent"))
        .unwrap();
    assert!(
        line.contains("tls=TLSv1.2/TLS_ECDHE_RSA_WITH_"),
        "the version and cipher Postfix negotiated: {line}"
    );
}

#[test]
fn a_client_certificate_is_presented_and_verified_by_postfix() {
    let sink = sink();
    let Some(postfix) = Postfix::start(&sink, ">=TLSv1.2") else {
        return;
    };
    let extra = format!(
        "client_cert = {:?}\nclient_key = {:?}",
        postfix.path("tls/client.pem"),
        postfix.path("tls/client.key")
    );
    for (port, tls) in [(postfix.submit, "starttls"), (postfix.smtps, "implicit")] {
        let env = client(&postfix, port, tls, "interop-secret", &extra);
        let out = env.sendmail(
            &["-odi", "ok@example.net"],
            &format!("Subject: cert over {tls}\n\nb\n"),
        );
        assert!(out.status.success(), "{tls}: {:?}", env.log_lines());
        assert_eq!(sink.event()["subject"], format!("cert over {tls}"));
    }
    // Postfix logs how each TLS session was authenticated.
    let log = std::fs::read_to_string(postfix.path("maillog")).unwrap();
    let trusted = log
        .lines()
        .filter(|l| l.contains("smtpd") && l.contains("Trusted TLS connection established"))
        .count();
    assert_eq!(trusted, 2, "both sessions verified by certificate:\n{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("smtpd") && l.contains("Anonymous TLS connection")),
        "{log}"
    );
}

#[test]
fn two_concurrent_flushes_deliver_a_200_message_backlog_exactly_once() {
    let sink = sink();
    let Some(postfix) = Postfix::start(&sink, ">=TLSv1.2") else {
        return;
    };
    let env = std::sync::Arc::new(client(
        &postfix,
        postfix.submit,
        "starttls",
        "interop-secret",
        "",
    ));
    let n = 200;
    for i in 0..n {
        assert_exit(
            &env.sendmail(
                &["-odq", "ok@example.net"],
                &format!("Subject: backlog {i}\n\nb\n"),
            ),
            0,
            &env,
            "queue",
        );
    }
    let flushes: Vec<_> = (0..2)
        .map(|_| {
            let env = env.clone();
            std::thread::spawn(move || env.run("relaymail", &["flush"], b""))
        })
        .collect();
    for f in flushes {
        let out = f.join().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    assert!(env.queued().is_empty(), "{}", env.listing());
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        *seen
            .entry(sink.event()["subject"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    sink.no_event();
    assert_eq!(seen.len(), n);
    assert!(seen.values().all(|c| *c == 1), "each message exactly once");
}

#[test]
fn a_pinned_fingerprint_mismatch_stops_before_auth_and_mail() {
    let sink = sink();
    let Some(postfix) = Postfix::start(&sink, ">=TLSv1.2") else {
        return;
    };
    let env = client(
        &postfix,
        postfix.submit,
        "starttls",
        "interop-secret",
        &format!("fingerprint = \"sha256:{}\"", ["AB"; 32].join(":")),
    );
    let out = env.sendmail(
        &["-odi", "ok@example.net"],
        "Subject: must not leave\n\nb\n",
    );
    assert_exit(&out, 75, &env, "pin mismatch");
    assert!(env
        .log_lines()
        .iter()
        .any(|l| l.contains("certificate fingerprint mismatch")));
    sink.no_event();
    let maillog = std::fs::read_to_string(postfix.path("maillog")).unwrap_or_default();
    assert!(
        maillog.contains("starttls=1"),
        "the session reached TLS: {maillog}"
    );
    assert!(
        !maillog.contains("sasl_username")
            && !maillog.contains("auth=1")
            && !maillog.contains("mail=1"),
        "no AUTH, no MAIL: {maillog}"
    );
}

#[test]
fn required_tls_not_offered_sends_no_mail_in_cleartext() {
    let sink = sink();
    let Some(postfix) = Postfix::start(&sink, ">=TLSv1.2") else {
        return;
    };
    let env = client(
        &postfix,
        postfix.smtps + 1,
        "starttls",
        "interop-secret",
        "",
    );
    let out = env.sendmail(&["-odi", "ok@example.net"], "Subject: secret\n\nb\n");
    assert_exit(&out, 75, &env, "no STARTTLS on offer");
    assert!(env
        .log_lines()
        .iter()
        .any(|l| l.contains("does not offer STARTTLS")));
    sink.no_event();
    let maillog = std::fs::read_to_string(postfix.path("maillog")).unwrap_or_default();
    assert!(
        maillog.contains("connect from localhost"),
        "the session happened: {maillog}"
    );
    assert!(
        !maillog.contains("mail=") && !maillog.contains("auth="),
        "no MAIL FROM or AUTH in cleartext: {maillog}"
    );
}

#[test]
fn smarthost_down_at_submission_is_delivered_by_a_later_flush() {
    let sink = sink();
    let Some(postfix) = Postfix::start(&sink, ">=TLSv1.2") else {
        return;
    };
    let env = client(&postfix, postfix.submit, "starttls", "interop-secret", "");
    postfix.control("stop");
    let out = env.sendmail(&["-odi", "ok@example.net"], "Subject: while down\n\nb\n");
    assert_exit(&out, 75, &env, "relay down");
    assert!(env
        .log_lines()
        .iter()
        .any(|l| l.contains("status=deferred") && l.contains("connect failed")));
    postfix.control("start");
    let out = env.run("relaymail", &["flush"], b"");
    assert_exit(&out, 0, &env, "flush after the relay is back");
    assert_eq!(sink.event()["subject"], "while down");
    sink.no_event();
    assert!(env.queued().is_empty());
}

#[test]
fn sigkill_while_delivering_to_postfix_loses_nothing() {
    let sink = sink();
    let Some(postfix) = Postfix::start(&sink, ">=TLSv1.2") else {
        return;
    };
    // One session, so each kill has at most one message in the window.
    let env = client(
        &postfix,
        postfix.submit,
        "starttls",
        "interop-secret",
        "connections = 1",
    );
    let n = 40;
    // A session with Postfix (TLS, SASL) takes longer than with the sink.
    let kills = queue_and_kill_flushes(&env, n, 40, 150);
    let out = env.run("relaymail", &["flush"], b"");
    assert_exit(&out, 0, &env, "final flush");
    assert!(env.queued().is_empty(), "{}", env.listing());
    // Postfix relays on its own schedule: collect until every subject has
    // arrived, then a quiet period for late duplicates.
    let mut seen = std::collections::BTreeMap::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while seen.len() < n && std::time::Instant::now() < deadline {
        if let Ok(e) = sink.events.recv_timeout(std::time::Duration::from_secs(1)) {
            *seen
                .entry(e["subject"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
    }
    while let Ok(e) = sink.events.recv_timeout(std::time::Duration::from_secs(2)) {
        *seen
            .entry(e["subject"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(
        seen.len(),
        n,
        "every message arrived at least once: {seen:?}"
    );
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    eprintln!("{kills} kills, {duplicates} duplicates");
    assert!(
        duplicates <= kills,
        "a duplicate needs a kill between Postfix's 250 and the state write"
    );
}

#[test]
fn doctor_passes_against_postfix_on_both_ports_and_fails_a_wrong_password() {
    let sink = sink();
    let Some(postfix) = Postfix::start(&sink, ">=TLSv1.3") else {
        return;
    };
    for (port, tls) in [(postfix.submit, "starttls"), (postfix.smtps, "implicit")] {
        let env = client(&postfix, port, tls, "interop-secret", "");
        let out = env.run("relaymail", &["doctor"], b"");
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{tls}:\n{text}{}", stderr(&out));
        assert!(text.contains("OK    tls          TLSv1.3/"), "{text}");
        assert!(text.contains("OK    auth"), "{text}");
        assert!(
            text.contains("relaymail interop CA"),
            "the chain is shown: {text}"
        );
        assert!(!text.contains("interop-secret"));
    }
    let env = client(&postfix, postfix.submit, "starttls", "wrong-one", "");
    let out = env.run("relaymail", &["doctor"], b"");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(69), "{text}");
    assert!(
        text.contains("FAIL  auth         authentication failed: 535"),
        "{text}"
    );
    assert!(!text.contains("wrong-one"));
}

/// The syslog lines a test listener caught, as rsyslog writes them to
/// /var/log/mail.log ("<22>Nov 23 22:00:10 relaymail[1]: ..." ->
/// "Nov 23 22:00:10 testhost relaymail[1]: ...").
fn as_mail_log(lines: &[String]) -> String {
    lines
        .iter()
        .filter_map(|l| {
            let rest = l.split_once('>')?.1;
            let (stamp, message) = (rest.get(..15)?, rest.get(16..)?);
            Some(format!("{stamp} testhost {message}\n"))
        })
        .collect()
}

#[test]
fn logwatch_summarises_a_log_from_postfix_deliveries() {
    if !is_root() || !have("logwatch") || !have("unshare") {
        return;
    }
    let sink = sink();
    let Some(postfix) = Postfix::start(&sink, ">=TLSv1.2") else {
        return;
    };
    let env = client(&postfix, postfix.submit, "starttls", "interop-secret", "");
    let out = env.sendmail(
        &[
            "-odi",
            "ok@example.net",
            "reject550@example.net",
            "temp450@example.net",
            "blocked@example.net",
        ],
        "Subject: mixed\n\nb\n",
    );
    assert_exit(&out, 75, &env, "mixed outcomes");
    let wrong = client(&postfix, postfix.submit, "starttls", "wrong-one", "");
    assert_exit(
        &wrong.sendmail(&["-odi", "ok@example.net"], "\nb\n"),
        75,
        &wrong,
        "wrong password",
    );
    let mut lines = env.log_lines();
    lines.extend(wrong.log_lines());

    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("etc");
    let package = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/logwatch");
    for sub in ["conf/services", "scripts/services"] {
        std::fs::create_dir_all(conf.join(sub)).unwrap();
    }
    std::fs::copy(
        format!("{package}/conf/services/relaymail.conf"),
        conf.join("conf/services/relaymail.conf"),
    )
    .unwrap();
    std::fs::copy(
        format!("{package}/scripts/services/relaymail"),
        conf.join("scripts/services/relaymail"),
    )
    .unwrap();
    let logs = dir.path().join("log");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(logs.join("mail.log"), as_mail_log(&lines)).unwrap();
    // /etc/logwatch is logwatch's fixed configuration directory: a private
    // mount namespace shows it our copy, leaving the real one untouched.
    let script = format!(
        "mkdir -p /etc/logwatch && mount --bind {} /etc/logwatch && exec logwatch --service relaymail --logdir {} --range All --output stdout --detail 10",
        conf.display(),
        logs.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output()
        .unwrap();
    let report = stdout(&out);
    assert!(out.status.success(), "logwatch: {}", outcome(&out));
    let value = |label: &str| -> u32 {
        report
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label:?} in:\n{report}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(value("Messages queued:"), 2, "{report}");
    // ok@, and the bounce report to the local sender.
    assert_eq!(value("Recipients sent:"), 2, "{report}");
    assert_eq!(value("Bounce reports sent:"), 1, "{report}");
    assert_eq!(value("Recipients bounced:"), 2, "550 and 554: {report}");
    assert_eq!(
        value("Recipients deferred:"),
        2,
        "450 and the wrong password: {report}"
    );
    assert!(
        report.contains("*** BLOCKLIST REJECTIONS: 1 ***"),
        "{report}"
    );
    assert!(
        report.contains("blocked using zen.spamhaus.org"),
        "{report}"
    );
    assert!(
        report.contains("*** AUTHENTICATION FAILURES: 1 ***"),
        "{report}"
    );
    assert!(report.contains("550 5.1.1"), "top bounce reasons: {report}");
    assert!(
        report.contains("450 4.2.1"),
        "top deferral reasons: {report}"
    );
    assert!(!report.contains("wrong-one") && !report.contains("interop-secret"));
}

#[test]
fn a_552_after_the_final_dot_from_postfix_bounces_once_and_is_not_retried() {
    let sink = sink();
    let Some(postfix) = Postfix::start(&sink, ">=TLSv1.2") else {
        return;
    };
    let env = client(&postfix, postfix.small, "starttls", "interop-secret", "");
    let body = format!(
        "Subject: too big for postfix\n\n{}",
        "0123456789abcdef\n".repeat(1000)
    );
    let out = env.sendmail(
        &[
            "-odi",
            "-f",
            "owner@example.org",
            "ok@example.net",
            "also@example.net",
        ],
        &body,
    );
    assert_exit(&out, 69, &env, "refused for good after the dot");
    // Postfix's smtpd words the limit so when it is hit during DATA.
    let reply = "552 5.3.4 Error: message file too big";
    let lines = env.log_lines();
    for to in ["ok@example.net", "also@example.net"] {
        let line = lines
            .iter()
            .find(|l| l.contains("event=delivery") && l.contains(&format!("to=<{to}>")))
            .unwrap_or_else(|| panic!("no delivery line for {to}: {lines:?}"));
        assert!(
            line.contains("status=bounced") && line.contains("dsn=5.3.4") && line.contains(reply),
            "{line}"
        );
    }
    assert!(
        !lines.iter().any(|l| l.contains("status=deferred")),
        "{lines:?}"
    );
    assert!(env.queued().is_empty(), "{}", env.listing());
    let mailq = stdout(&env.run("mailq", &[], b""));
    assert!(mailq.contains("Mail queue is empty"), "{mailq}");
    // One DSN, relayed by Postfix to the sink, quoting Postfix's reply.
    let dsn = sink.event();
    assert_eq!(dsn["from"], "", "a bounce comes from the null sender");
    assert_eq!(dsn["rcpt"], serde_json::json!(["owner@example.org"]));
    let text = std::fs::read_to_string(dsn["path"].as_str().unwrap()).unwrap();
    for want in [
        "Final-Recipient: rfc822; ok@example.net",
        "Final-Recipient: rfc822; also@example.net",
        "Status: 5.3.4",
        &format!("Diagnostic-Code: smtp; {reply}"),
        "Subject: too big for postfix",
    ] {
        assert!(text.contains(want), "DSN lacks {want:?}:\n{text}");
    }
    // No retry: a later flush has nothing to send, and Postfix saw the
    // message once.
    let again = env.run("relaymail", &["flush"], b"");
    assert_exit(&again, 0, &env, "second flush");
    assert_eq!(env.log_lines().len(), lines.len(), "{:?}", env.log_lines());
    assert!(
        sink.events
            .recv_timeout(std::time::Duration::from_secs(2))
            .is_err(),
        "nothing else arrives"
    );
    let maillog = std::fs::read_to_string(postfix.path("maillog")).unwrap();
    assert_eq!(
        maillog.matches("queue file size limit exceeded").count(),
        1,
        "{maillog}"
    );
}

/// The password held in the kernel keyring (user mode, `password =
/// "keyring"`) authenticates against Postfix's Dovecot SASL over STARTTLS;
/// once it is cleared the message is deferred, not sent unauthenticated.
#[test]
fn a_keyring_held_password_authenticates_to_postfix() {
    let sink = sink();
    let Some(postfix) = Postfix::start(&sink, ">=TLSv1.2") else {
        return;
    };
    let env = Env::new();
    // Postfix's user is "alerts"; a service name of this test's own keeps
    // the entry apart from anything else in this user's keyring.
    let service = format!("relaymail-interop-{}", std::process::id());
    let smarthost = format!(
        "\n[smarthost]\nhost = \"localhost\"\nport = {}\ntls = \"starttls\"\nca_file = {:?}\nusername = \"alerts\"\npassword = \"keyring\"\nkeyring_service = {service:?}\n",
        postfix.submit,
        postfix.path("tls/ca.pem").display().to_string()
    );
    let config = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, config + &smarthost).unwrap();
    let out = env.run(
        "relaymail",
        &["credentials", "set", "--stdin"],
        b"interop-secret\n",
    );
    assert!(out.status.success(), "{}", outcome(&out));
    let out = env.sendmail(
        &["-odi", "ok@example.net"],
        "Subject: via keyring\n\nbody\n",
    );
    let cleared = env.run("relaymail", &["credentials", "clear"], b"");
    assert_exit(&out, 0, &env, "delivery with the keyring password");
    assert_eq!(sink.event()["subject"], "via keyring");
    assert!(cleared.status.success(), "{}", outcome(&cleared));
    let out = env.sendmail(
        &["-odi", "ok@example.net"],
        "Subject: no password\n\nbody\n",
    );
    assert_exit(&out, 75, &env, "no password left");
    sink.no_event();
    for line in env.log_lines() {
        assert!(!line.contains("interop-secret"), "{line}");
    }
}
