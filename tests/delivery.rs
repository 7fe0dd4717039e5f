//! Delivery to a smarthost, tested against relaymail's own sink as the
//! relay (STARTTLS with its generated certificate, AUTH): what an admin
//! checks is whether mail arrived, what the log says, and what stays
//! queued.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::sink::Sink;
use common::*;

/// A submitting side whose [smarthost] is `sink`'s listener `index`.
fn client(sink: &Sink, index: usize, tls: &str, extra: &str) -> Env {
    let cert = sink.dir.path().join("state/sink-cert.pem");
    let env = Env::with_sections("", &format!("file = {:?}", "JSONLOG"), "");
    let password = env.path("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = std::fs::read_to_string(&env.config).unwrap().replace(
        "\"JSONLOG\"",
        &format!("{:?}", env.path("log.jsonl").display().to_string()),
    );
    let smarthost = format!(
        "\n[smarthost]\nhost = \"localhost\"\nport = {}\ntls = \"{tls}\"\nca_file = {:?}\nusername = \"alerts\"\npassword_file = {:?}\n{extra}\n",
        sink.port(index),
        cert.display().to_string(),
        password.display().to_string()
    );
    std::fs::write(&env.config, config + &smarthost).unwrap();
    env
}

fn json_log(env: &Env) -> Vec<serde_json::Value> {
    std::fs::read_to_string(env.path("log.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn odi_delivers_over_starttls_with_auth_and_logs_each_recipient() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let env = client(&sink, 0, "starttls", "");
    let out = env.sendmail(
        &["-odi", "root", "x@example.net"],
        "Subject: nightly\n\nall good\n",
    );
    assert_exit(&out, 0, &env, "-odi");
    let e = sink.event();
    assert_eq!(e["tls"], "TLSv1.3");
    assert_eq!(e["auth_user"], "alerts");
    assert_eq!(
        e["rcpt"],
        serde_json::json!(["admin@example.com", "ops@example.org", "x@example.net"])
    );
    let stored = std::fs::read_to_string(e["path"].as_str().unwrap()).unwrap();
    assert!(
        stored.ends_with("\nSubject: nightly\n") || stored.contains("\nSubject: nightly\n"),
        "{stored}"
    );
    assert!(
        stored.ends_with("\n\nall good\n"),
        "body byte-exact, nothing appended: {stored:?}"
    );
    assert!(
        env.queued().is_empty(),
        "delivered mail leaves the queue\n{}",
        env.listing()
    );
    let lines = env.log_lines();
    let delivered: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("event=delivery"))
        .collect();
    assert_eq!(delivered.len(), 3, "one line per recipient: {lines:?}");
    for line in delivered {
        assert!(
            line.contains(&format!("relay=localhost[127.0.0.1]:{}", sink.port(0))),
            "{line}"
        );
        assert!(
            line.contains("tls=TLSv1.3/TLS_AES_")
                && line.contains("dsn=2.0.0")
                && line.contains("status=sent"),
            "the negotiated version and cipher: {line}"
        );
        assert!(line.contains("reply=\"250 2.0.0 Ok: queued as "), "{line}");
        assert!(!line.contains("s3cret"), "never the password: {line}");
    }
    let json: Vec<serde_json::Value> = json_log(&env)
        .into_iter()
        .filter(|e| e["event"] == "delivery")
        .collect();
    assert_eq!(json.len(), 3, "the JSON log has the same events");
    assert!(json
        .iter()
        .all(|e| e["status"] == "sent" && e["dsn"] == "2.0.0"));
}

#[test]
fn smarthost_down_defers_and_a_later_flush_delivers() {
    // A port with nothing listening: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let env = client(&sink, 0, "starttls", "");
    let live = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        live.replace(
            &format!("port = {}", sink.port(0)),
            &format!("port = {port}"),
        ),
    )
    .unwrap();
    let out = env.sendmail(&["-odi", "x@example.net"], "Subject: while down\n\nb\n");
    assert_exit(&out, 75, &env, "relay down");
    assert!(
        stderr(&out).contains("was queued") && stderr(&out).contains("1 deferred"),
        "{}",
        stderr(&out)
    );
    let mailq = stdout(&env.run("mailq", &[], b""));
    assert!(mailq.contains("connect failed"), "mailq says why: {mailq}");
    let deferred = env
        .log_lines()
        .into_iter()
        .find(|l| l.contains("status=deferred"))
        .expect("a deferred line");
    assert!(deferred.contains("dsn=4.0.0"), "{deferred}");
    // The admin fixes the relay and flushes.
    std::fs::write(&env.config, live).unwrap();
    let flushed = env.run("relaymail", &["flush"], b"");
    assert_exit(&flushed, 0, &env, "flush");
    assert_eq!(sink.event()["rcpt"], serde_json::json!(["x@example.net"]));
    assert!(env.queued().is_empty());
}

#[test]
fn required_tls_not_offered_never_sends_in_cleartext() {
    let sink = Sink::start(&["--listen", "127.0.0.1:0", "--auth", "accept-any"]);
    let env = client(&sink, 0, "starttls", "");
    // A plain listener has no certificate to trust; system roots it is.
    let config: String = std::fs::read_to_string(&env.config)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("ca_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&env.config, config).unwrap();
    let out = env.sendmail(&["-odi", "x@example.net"], "Subject: secret\n\nb\n");
    assert_exit(&out, 75, &env, "no STARTTLS");
    sink.no_event();
    let q = env.only_message();
    assert!(q.env.contains("does not offer STARTTLS"), "{}", q.env);
    assert!(env
        .log_lines()
        .iter()
        .any(|l| l.contains("status=deferred") && l.contains("nothing was sent in cleartext")));
}

#[test]
fn an_unverifiable_certificate_defers() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=implicit", "--auth", "accept-any"]);
    let env = client(&sink, 0, "implicit", "");
    // Trust the system roots instead of the sink's certificate.
    let config = std::fs::read_to_string(&env.config).unwrap();
    let config: String = config
        .lines()
        .filter(|l| !l.starts_with("ca_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&env.config, config).unwrap();
    let out = env.sendmail(&["-odi", "x@example.net"], "\nb\n");
    assert_exit(&out, 75, &env, "bad certificate");
    sink.no_event();
    assert!(
        env.log_lines()
            .iter()
            .any(|l| l.contains("status=deferred") && l.contains("tls failed")),
        "{:?}",
        env.log_lines()
    );
}

#[test]
fn wrong_password_is_logged_as_authentication_failed_without_the_password() {
    let sink = Sink::start(&[
        "--listener",
        "127.0.0.1:0=starttls",
        "--auth",
        "users",
        "--auth-user",
        "alerts=another",
    ]);
    let env = client(&sink, 0, "starttls", "");
    let out = env.sendmail(&["-odi", "x@example.net"], "\nb\n");
    assert_exit(&out, 75, &env, "wrong password");
    let line = env
        .log_lines()
        .into_iter()
        .find(|l| l.contains("status=deferred"))
        .unwrap();
    assert!(
        line.contains("authentication failed") && line.contains("535"),
        "{line}"
    );
    assert!(!line.contains("s3cret") && !stderr(&out).contains("s3cret"));
    assert_eq!(env.queued().len(), 1);
}

#[test]
fn a_password_file_others_can_read_is_refused() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let env = client(&sink, 0, "starttls", "");
    std::fs::set_permissions(env.path("password"), std::fs::Permissions::from_mode(0o644)).unwrap();
    env.sendmail(&["-odq", "x@example.net"], "\nb\n");
    let out = env.run("relaymail", &["flush"], b"");
    assert_exit(&out, 77, &env, "0644 password file");
    assert!(
        stderr(&out).contains("readable by others (mode 0644); run chmod 600"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn background_delivery_returns_at_once_and_delivers() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let env = client(&sink, 0, "starttls", "");
    let out = env.sendmail(&["x@example.net"], "Subject: background\n\nb\n");
    assert_exit(&out, 0, &env, "-odb (default)");
    assert_eq!(sink.event()["subject"], "background");
    // The detached child removes the message once the relay took it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !env.queued().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "queue not emptied\n{}",
            env.listing()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Queues `n` messages with `-odq`, runs two flushes at once, and returns
/// the number of distinct sessions the sink saw, after checking that each
/// message arrived exactly once and the queue is empty.
fn two_flushes_of_a_backlog(connections: usize, n: usize) -> usize {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let extra = format!("connections = {connections}");
    let env = std::sync::Arc::new(client(&sink, 0, "starttls", &extra));
    for i in 0..n {
        assert_exit(
            &env.sendmail(
                &["-odq", "x@example.net"],
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
        assert!(out.status.code() == Some(0), "{}", stderr(&out));
    }
    let events: Vec<serde_json::Value> = (0..n).map(|_| sink.event()).collect();
    sink.no_event();
    let subjects: std::collections::BTreeSet<&str> = events
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects.len(), n, "each message exactly once");
    assert!(env.queued().is_empty());
    let lines = env.log_lines();
    let sent = lines
        .iter()
        .filter(|l| l.contains("event=delivery") && l.contains("status=sent"))
        .count();
    assert_eq!(sent, n, "one whole log line per message: {lines:?}");
    let sessions: std::collections::BTreeSet<&str> = events
        .iter()
        .map(|e| e["client"].as_str().unwrap())
        .collect();
    sessions.len()
}

#[test]
fn flush_reuses_one_session_and_concurrent_flushes_deliver_once() {
    let sessions = two_flushes_of_a_backlog(1, 40);
    assert!(sessions <= 2, "one session per flush, reused: {sessions}");
}

#[test]
fn a_backlog_goes_over_parallel_sessions_each_message_once() {
    let sessions = two_flushes_of_a_backlog(3, 120);
    assert!(
        sessions > 2 && sessions <= 6,
        "up to 3 sessions per flush, more than one each: {sessions}"
    );
}

#[test]
fn a_permanent_refusal_bounces_with_an_rfc3464_report() {
    let sink = Sink::start(&[
        "--listener",
        "127.0.0.1:0=starttls",
        "--auth",
        "accept-any",
        "--max-message-size",
        "4000",
    ]);
    let env = client(&sink, 0, "starttls", "");
    let body = format!("Subject: too big\n\n{}", "0123456789abcdef\n".repeat(400));
    let out = env.sendmail(&["-odi", "-f", "owner@example.org", "a@example.net"], &body);
    assert_exit(&out, 69, &env, "refused for good");
    // The bounce report goes out in the same run, but its recipient is
    // not one of the message's: the message had one, and it was refused.
    let said = stderr(&out);
    assert!(
        said.contains("0 recipient(s) sent, 0 deferred, 1 refused"),
        "{said}"
    );
    assert!(!said.contains("stays queued"), "it does not: {said}");
    // The relay refused at MAIL (SIZE=), so the DSN is what arrives.
    let dsn = sink.event();
    assert_eq!(dsn["from"], "", "a bounce comes from the null sender");
    assert_eq!(dsn["rcpt"], serde_json::json!(["owner@example.org"]));
    assert_eq!(dsn["subject"], "Undelivered Mail Returned to Sender");
    let text = std::fs::read_to_string(dsn["path"].as_str().unwrap()).unwrap();
    for want in [
        "Content-Type: multipart/report; report-type=delivery-status;",
        "Content-Type: message/delivery-status",
        "Final-Recipient: rfc822; a@example.net",
        "Action: failed",
        "Status: 5.3.4",
        "Diagnostic-Code: smtp; 552 5.3.4",
        "Content-Type: text/rfc822-headers",
        "Subject: too big",
        "Auto-Submitted: auto-replied",
    ] {
        assert!(text.contains(want), "DSN lacks {want:?}:\n{text}");
    }
    assert!(
        !text.contains("0123456789abcdef"),
        "only the headers are returned"
    );
    assert!(
        env.queued().is_empty(),
        "original and bounce both done\n{}",
        env.listing()
    );
    let lines = env.log_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("status=bounced") && l.contains("dsn=5.3.4")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("event=bounce") && l.contains("to=<owner@example.org>")),
        "{lines:?}"
    );
    // The recipient's line comes first, then the report queued for it.
    let bounced = lines.iter().position(|l| l.contains("status=bounced"));
    let report = lines.iter().position(|l| l.contains("event=bounce "));
    assert!(
        matches!((bounced, report), (Some(b), Some(r)) if b < r),
        "{lines:?}"
    );
}

#[test]
fn expired_mail_bounces_to_bounce_to_and_a_bounce_never_bounces() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let env = client(
        &sink,
        0,
        "starttls",
        "[queue]\nmax_lifetime = \"0s\"\nbounce_to = \"postmaster@example.org\"\n",
    );
    let live = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        live.replace(
            &format!("port = {}", sink.port(0)),
            &format!("port = {port}"),
        ),
    )
    .unwrap();
    assert_exit(
        &env.sendmail(&["-odq", "x@example.net"], "Subject: stuck\n\nb\n"),
        0,
        &env,
        "queue",
    );
    let out = env.run("relaymail", &["flush"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = env.log_lines();
    assert!(
        lines.iter().any(|l| l.contains("event=expired")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("event=bounce") && l.contains("to=<postmaster@example.org>")),
        "local sender -> bounce_to: {lines:?}"
    );
    // The original is gone; the bounce itself expired too (0s) and, being a
    // bounce, was dropped without another bounce.
    assert!(env.queued().is_empty(), "{}", env.listing());
    assert_eq!(
        lines.iter().filter(|l| l.contains("event=bounce ")).count(),
        1,
        "no bounce of a bounce: {lines:?}"
    );
}

/// SHA-256 of the sink's generated certificate, as an admin would pin it.
fn sink_fingerprint(sink: &Sink) -> String {
    let pem = std::fs::read_to_string(sink.dir.path().join("state/sink-cert.pem")).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = relaymail::message::base64::decode(&b64).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, &der);
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    format!("sha256:{}", hex.join(":"))
}

fn pin(env: &Env, fingerprint: &str) {
    let config: String = std::fs::read_to_string(&env.config)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("ca_file"))
        .map(|l| {
            if l.starts_with("username") {
                format!("fingerprint = \"{fingerprint}\"\n{l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&env.config, config).unwrap();
}

#[test]
fn a_pinned_fingerprint_replaces_ca_verification_and_a_mismatch_defers() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=implicit", "--auth", "accept-any"]);
    let right = client(&sink, 0, "implicit", "");
    pin(&right, &sink_fingerprint(&sink));
    assert_exit(
        &right.sendmail(&["-odi", "x@example.net"], "Subject: pinned\n\nb\n"),
        0,
        &right,
        "right pin",
    );
    assert_eq!(sink.event()["subject"], "pinned");

    let wrong = client(&sink, 0, "implicit", "");
    pin(&wrong, &format!("sha256:{}", ["AB"; 32].join(":")));
    let out = wrong.sendmail(&["-odi", "x@example.net"], "Subject: not for them\n\nb\n");
    assert_exit(&out, 75, &wrong, "wrong pin");
    sink.no_event();
    let line = wrong
        .log_lines()
        .into_iter()
        .find(|l| l.contains("status=deferred"))
        .unwrap();
    assert!(
        line.contains("certificate fingerprint mismatch") && line.contains("tls failed"),
        "{line}"
    );
}

#[test]
fn a_malformed_fingerprint_is_a_config_error() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=implicit"]);
    let env = client(&sink, 0, "implicit", "");
    pin(&env, "sha256:12:34");
    let out = env.sendmail(&["x@example.net"], "\nb\n");
    assert_exit(&out, 78, &env, "bad fingerprint");
    assert!(
        stderr(&out).contains("is not a SHA-256 fingerprint"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sigkill_while_delivering_loses_nothing_and_duplicates_only_in_the_documented_window() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    // One session, so that each kill has at most one message in the window.
    let env = client(&sink, 0, "starttls", "connections = 1");
    let n = std::env::var("RELAYMAIL_CRASH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let kills = queue_and_kill_flushes(&env, n, 40, 60);
    // A last, undisturbed flush (orphans from kills are cleaned by it).
    let out = env.run("relaymail", &["flush"], b"");
    assert_exit(&out, 0, &env, "final flush");
    assert!(env.queued().is_empty(), "{}", env.listing());
    let mut seen = std::collections::BTreeMap::new();
    while let Ok(e) = sink.events.recv_timeout(Duration::from_millis(500)) {
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
        "a duplicate needs a kill between the relay's 250 and the state write"
    );
}

#[test]
fn background_delivery_also_retries_what_is_due() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let env = client(&sink, 0, "starttls", "");
    // A message queued earlier and due now (never tried: no next_attempt).
    assert_exit(
        &env.sendmail(&["-odq", "x@example.net"], "Subject: waiting\n\nb\n"),
        0,
        &env,
        "queued earlier",
    );
    assert_exit(
        &env.sendmail(&["x@example.net"], "Subject: new\n\nb\n"),
        0,
        &env,
        "-odb",
    );
    let mut subjects = vec![
        sink.event()["subject"].as_str().unwrap().to_string(),
        sink.event()["subject"].as_str().unwrap().to_string(),
    ];
    subjects.sort();
    assert_eq!(subjects, ["new", "waiting"]);
}

/// A loopback port with nothing listening.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Replaces one `key = ...` line of the client's [smarthost].
fn set(env: &Env, key: &str, value: &str) {
    let config: String = std::fs::read_to_string(&env.config)
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{key} =")) {
                format!("{key} = {value}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&env.config, config).unwrap();
}

#[test]
fn fallback_hosts_are_tried_in_order_when_the_first_is_down() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let dead = closed_port();
    let env = client(
        &sink,
        0,
        "starttls",
        &format!("fallback_hosts = [\"localhost:{}\"]", sink.port(0)),
    );
    set(&env, "port", &dead.to_string());
    let out = env.sendmail(&["-odi", "x@example.net"], "Subject: via fallback\n\nb\n");
    assert_exit(&out, 0, &env, "fallback");
    assert_eq!(sink.event()["subject"], "via fallback");
    let line = env
        .log_lines()
        .into_iter()
        .find(|l| l.contains("event=delivery"))
        .unwrap();
    assert!(
        line.contains(&format!("relay=localhost[127.0.0.1]:{}", sink.port(0))),
        "the relay that took it: {line}"
    );

    // All down: one deferral that names every relay's reason, in order.
    let other = closed_port();
    set(&env, "fallback_hosts", &format!("[\"127.0.0.1:{other}\"]"));
    let out = env.sendmail(&["-odi", "x@example.net"], "\nb\n");
    assert_exit(&out, 75, &env, "all relays down");
    let q = env.only_message();
    let first = q.env.find(&format!(":{dead}")).expect("first relay named");
    let second = q.env.find(&format!(":{other}")).expect("fallback named");
    assert!(first < second, "in order: {}", q.env);
}

#[test]
fn a_relay_that_never_greets_is_given_up_after_connect_timeout() {
    // The kernel completes the TCP handshake into the backlog; nobody
    // ever answers, as with a hung relay.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let env = client(&sink, 0, "starttls", "connect_timeout = \"1s\"");
    set(
        &env,
        "port",
        &silent.local_addr().unwrap().port().to_string(),
    );
    let started = std::time::Instant::now();
    let out = env.sendmail(&["-odi", "x@example.net"], "\nb\n");
    assert_exit(&out, 75, &env, "silent relay");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "gave up instead of hanging"
    );
    assert!(
        env.log_lines().iter().any(|l| l.contains("status=deferred")
            && l.contains("timed out waiting for the relay")
            && l.contains("connect failed")),
        "{:?}",
        env.log_lines()
    );
    assert_eq!(env.queued().len(), 1);
}

#[test]
fn tls_server_name_verifies_a_relay_reached_by_address() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let env = client(&sink, 0, "starttls", "");
    // The certificate names localhost, not 127.0.0.1.
    set(&env, "host", "\"127.0.0.1\"");
    let out = env.sendmail(&["-odi", "x@example.net"], "\nb\n");
    assert_exit(&out, 75, &env, "name mismatch");
    sink.no_event();
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str("tls_server_name = \"localhost\"\n");
    std::fs::write(&env.config, config).unwrap();
    let out = env.run("relaymail", &["flush"], b"");
    assert_exit(&out, 0, &env, "verified as localhost");
    sink.event();
    assert!(env.queued().is_empty());
}

#[test]
fn auth_over_cleartext_only_when_explicitly_allowed() {
    let sink = Sink::start(&["--listen", "127.0.0.1:0", "--auth", "accept-any"]);
    let env = client(&sink, 0, "none", "");
    let out = env.sendmail(&["-odi", "x@example.net"], "Subject: lab\n\nb\n");
    assert_exit(&out, 75, &env, "AUTH refused over cleartext");
    sink.no_event();
    assert!(
        env.log_lines()
            .iter()
            .any(|l| l.contains("refusing to send the password over a cleartext connection")),
        "{:?}",
        env.log_lines()
    );
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str("allow_cleartext_auth = true\n");
    std::fs::write(&env.config, config).unwrap();
    let out = env.run("relaymail", &["flush"], b"");
    assert_exit(&out, 0, &env, "allowed on a lab network");
    let e = sink.event();
    assert_eq!(e["auth_user"], "alerts");
    assert!(e["tls"].is_null(), "{e}");
    assert!(env
        .log_lines()
        .iter()
        .any(|l| l.contains("status=sent") && l.contains("tls=none")));
}

#[test]
fn a_client_key_others_can_read_defers_with_the_fix() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let cert = sink.dir.path().join("state/sink-cert.pem");
    let key = sink.dir.path().join("state/sink-key.pem");
    let env = client(
        &sink,
        0,
        "starttls",
        &format!("client_cert = {:?}\nclient_key = {:?}", cert, key),
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.sendmail(&["-odi", "x@example.net"], "\nb\n");
    assert_exit(&out, 75, &env, "open client key");
    sink.no_event();
    assert!(
        env.log_lines().iter().any(|l| l.contains("client_key")
            && l.contains("readable by others (mode 0644); run chmod 600")),
        "{:?}",
        env.log_lines()
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = env.run("relaymail", &["flush"], b"");
    assert!(out.status.success(), "{:?}", env.log_lines());
    sink.event();
}

#[test]
fn new_smarthost_settings_are_validated() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    for (extra, wanted) in [
        ("fallback_hosts = [\"a b\"]", "fallback_hosts"),
        ("fallback_hosts = [\"relay:0\"]", "fallback_hosts"),
        ("connections = 0", "1 to 32"),
        ("connect_timeout = \"0s\"", "more than 0"),
        (
            "client_cert = \"/x.pem\"",
            "client_cert and client_key go together",
        ),
        ("tls_server_name = \"bad name!\"", "tls_server_name"),
    ] {
        let env = client(&sink, 0, "starttls", extra);
        let out = env.sendmail(&["x@example.net"], "\nb\n");
        assert_exit(&out, 78, &env, extra);
        assert!(stderr(&out).contains(wanted), "{extra}: {}", stderr(&out));
    }
}

#[test]
fn xoauth2_sends_the_token_a_command_prints() {
    let sink = Sink::start(&[
        "--listener",
        "127.0.0.1:0=starttls",
        "--auth",
        "users",
        "--auth-user",
        "alerts=ya29.token-from-command",
    ]);
    let env = client(&sink, 0, "starttls", "auth = \"xoauth2\"");
    let config: String = std::fs::read_to_string(&env.config)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("password_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        &env.config,
        config + "password_command = \"echo ya29.token-from-command\"\n",
    )
    .unwrap();
    let out = env.sendmail(&["-odi", "x@example.net"], "Subject: oauth\n\nb\n");
    assert_exit(&out, 0, &env, "xoauth2");
    let e = sink.event();
    assert_eq!(e["auth_user"], "alerts");

    // A stale token: deferred, the reply quoted, the token never shown.
    let config = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("echo ya29.token-from-command", "echo ya29.expired");
    std::fs::write(&env.config, config).unwrap();
    let out = env.sendmail(&["-odi", "x@example.net"], "\nb\n");
    assert_exit(&out, 75, &env, "stale token");
    let line = env
        .log_lines()
        .into_iter()
        .find(|l| l.contains("status=deferred"))
        .unwrap();
    assert!(
        line.contains("authentication failed") && line.contains("535"),
        "{line}"
    );
    assert!(
        !line.contains("ya29") && !stderr(&out).contains("ya29"),
        "{line}"
    );
}

#[test]
fn a_mechanism_the_relay_does_not_offer_is_named() {
    // A relay with no AUTH at all.
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls"]);
    let env = client(&sink, 0, "starttls", "auth = \"plain\"");
    let out = env.sendmail(&["-odi", "x@example.net"], "\nb\n");
    assert_exit(&out, 75, &env, "no AUTH offered");
    sink.no_event();
    let line = env
        .log_lines()
        .into_iter()
        .find(|l| l.contains("status=deferred"))
        .unwrap();
    assert!(
        line.contains("authentication failed: the relay offers no PLAIN authentication"),
        "{line}"
    );
}

/// A scripted relay on loopback: for each step, reads one command line
/// that must start with the given prefix ("" for the greeting, which
/// reads nothing) and writes the reply bytes. Returns the port and a
/// handle yielding every line it read.
fn scripted_relay(
    steps: Vec<(&'static str, &'static str)>,
) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut seen = Vec::new();
        for (prefix, reply) in steps {
            if !prefix.is_empty() {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                assert!(line.starts_with(prefix), "wanted {prefix}, got {line:?}");
                seen.push(line.trim_end().to_string());
            }
            writer.write_all(reply.as_bytes()).unwrap();
        }
        // Whatever else the client sends before it hangs up.
        let mut rest = String::new();
        while reader.read_line(&mut rest).unwrap_or(0) > 0 {}
        seen.extend(rest.lines().map(str::to_string));
        seen
    });
    (port, handle)
}

#[test]
fn data_injected_after_the_starttls_reply_is_refused() {
    let (port, server) = scripted_relay(vec![
        ("", "220 relay.example ESMTP\r\n"),
        ("EHLO", "250-relay.example\r\n250 STARTTLS\r\n"),
        // The 220 and a forged reply in one segment: a man in the middle
        // trying to have it read as if it came over TLS.
        ("STARTTLS", "220 2.0.0 go ahead\r\n250 injected\r\n"),
    ]);
    let env = Env::new();
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(&format!(
        "\n[smarthost]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"starttls\"\n"
    ));
    std::fs::write(&env.config, config).unwrap();
    let out = env.sendmail(&["-odi", "x@example.net"], "Subject: s\n\nsecret\n");
    assert_exit(&out, 75, &env, "STARTTLS injection");
    let seen = server.join().unwrap();
    assert!(
        !seen
            .iter()
            .any(|l| l.starts_with("MAIL") || l.contains("secret")),
        "nothing after STARTTLS: {seen:?}"
    );
    assert!(
        env.log_lines()
            .iter()
            .any(|l| l.contains("status=deferred") && l.contains("after its STARTTLS reply")),
        "{:?}",
        env.log_lines()
    );
}

#[test]
fn an_old_relay_without_ehlo_gets_helo_and_plain_smtp() {
    let (port, server) = scripted_relay(vec![
        ("", "220 old.example SMTP\r\n"),
        ("EHLO", "502 5.5.1 command not implemented\r\n"),
        ("HELO", "250 old.example\r\n"),
        ("MAIL FROM:<root@host.test.example>", "250 ok\r\n"),
        ("RCPT TO:<x@example.net>", "250 ok\r\n"),
        ("DATA", "354 go\r\n"),
        ("Received:", ""),
    ]);
    let env = Env::new();
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(&format!(
        "\n[smarthost]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\ncommand_timeout = \"3s\"\n"
    ));
    std::fs::write(&env.config, config).unwrap();
    // The scripted relay never answers the final ".": the message stays
    // queued (deferred), and what the relay saw shows the dialogue.
    let out = env.sendmail(&["-odi", "x@example.net"], "Subject: s\n\n.dot\n");
    assert_exit(&out, 75, &env, "no reply to the final dot");
    let seen = server.join().unwrap();
    let mail = seen.iter().position(|l| l.starts_with("MAIL")).unwrap();
    assert!(
        !seen[mail].contains("SIZE=") && !seen[mail].contains("BODY="),
        "no ESMTP parameters after HELO: {seen:?}"
    );
    assert!(seen.iter().any(|l| l == "..dot"), "dot-stuffed: {seen:?}");
    assert!(
        seen.iter().any(|l| l == "."),
        "ended with a dot line: {seen:?}"
    );
    assert_eq!(env.queued().len(), 1);
}

/// Field `n` (1-based, after the command name) of /proc/PID/stat.
fn stat_field(pid: &str, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(") ")?.1;
    after_name.split_whitespace().nth(n - 3).map(str::to_string)
}

#[test]
fn background_delivery_leaves_the_callers_session() {
    // A relay that accepts and never greets keeps the child alive.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let env = Env::new();
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(&format!(
        "\n[smarthost]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nconnect_timeout = \"5s\"\n",
        silent.local_addr().unwrap().port()
    ));
    std::fs::write(&env.config, config).unwrap();
    let out = env.sendmail(&["x@example.net"], "\nb\n");
    assert_exit(&out, 0, &env, "-odb");
    let config = env.config.display().to_string();
    let me = std::process::id().to_string();
    // Field 6 of /proc/PID/stat is the session ID, 5 the process group.
    // The child calls setsid() once it has read its configuration, so
    // wait until it leads a session of its own (it never does with a bug
    // that keeps it in ours).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let child = loop {
        let found = std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
            let pid = e.file_name().to_string_lossy().into_owned();
            let read = |what| {
                let bytes = std::fs::read(format!("/proc/{pid}/{what}")).unwrap_or_default();
                String::from_utf8_lossy(&bytes).replace('\0', " ")
            };
            (read("cmdline").contains("--detach") && read("environ").contains(&config))
                .then_some(pid)
        });
        if let Some(pid) = found
            .clone()
            .filter(|pid| stat_field(pid, 6).as_deref() == Some(pid.as_str()))
        {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no background child leading its own session (found {:?}, session {:?}, ours {:?})",
            found,
            found.as_deref().and_then(|p| stat_field(p, 6)),
            stat_field(&me, 6)
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_ne!(stat_field(&child, 6), stat_field(&me, 6));
    assert_ne!(stat_field(&child, 5), stat_field(&me, 5));
}

#[test]
fn a_malformed_host_or_port_is_a_config_error() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    for (key, value, wanted) in [
        ("host", "\"smtp.example.com:587\"", "put the port in `port`"),
        ("host", "\"a b\"", "not a host name"),
        ("port", "0", "0 is not a port"),
    ] {
        let env = client(&sink, 0, "starttls", "");
        set(&env, key, value);
        let out = env.sendmail(&["x@example.net"], "\nb\n");
        assert_exit(&out, 78, &env, key);
        assert!(stderr(&out).contains(wanted), "{key}: {}", stderr(&out));
    }
}

#[test]
fn notify_never_means_no_bounce_report() {
    let sink = Sink::start(&[
        "--listener",
        "127.0.0.1:0=starttls",
        "--auth",
        "accept-any",
        "--max-message-size",
        "4000",
    ]);
    let env = client(&sink, 0, "starttls", "");
    let body = format!("Subject: too big\n\n{}", "0123456789abcdef\n".repeat(400));
    let out = env.sendmail(
        &[
            "-odi",
            "-N",
            "never",
            "-f",
            "owner@example.org",
            "a@example.net",
        ],
        &body,
    );
    assert_exit(&out, 69, &env, "refused for good");
    sink.no_event();
    assert!(env.queued().is_empty(), "{}", env.listing());
    assert!(!env.log_lines().iter().any(|l| l.contains("event=bounce")));
}

#[test]
fn a_relay_that_takes_one_connection_still_gets_the_whole_backlog() {
    // Relays often limit concurrent sessions per client: the extra
    // sessions are refused (421) while the first one works.
    let sink = Sink::start(&[
        "--listener",
        "127.0.0.1:0=starttls",
        "--auth",
        "accept-any",
        "--max-connections",
        "1",
    ]);
    let env = client(&sink, 0, "starttls", "connections = 3");
    let n = 40;
    for i in 0..n {
        env.sendmail(
            &["-odq", "x@example.net"],
            &format!("Subject: one {i}\n\nb\n"),
        );
    }
    let out = env.run("relaymail", &["flush"], b"");
    assert_exit(&out, 0, &env, "flush");
    let events: Vec<serde_json::Value> = (0..n).map(|_| sink.event()).collect();
    assert_eq!(events.len(), n);
    assert!(env.queued().is_empty(), "{}", env.listing());
    assert!(!env
        .log_lines()
        .iter()
        .any(|l| l.contains("status=deferred")));
}

#[test]
fn a_552_after_the_final_dot_from_the_sink_bounces_each_recipient_once() {
    // The sink counts its own Return-Path and Received lines against
    // --max-message-size. A limit a few bytes above the queued message
    // passes relaymail's EHLO SIZE check and the sink's SIZE= check at
    // MAIL, and the sink refuses with 552 5.3.4 only after the final dot.
    let first = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let env = client(&first, 0, "starttls", "");
    let body = format!(
        "Subject: just too big\n\n{}",
        "0123456789abcdef\n".repeat(400)
    );
    let out = env.sendmail(
        &[
            "-odq",
            "-f",
            "owner@example.org",
            "a@example.net",
            "b@example.net",
        ],
        &body,
    );
    assert_exit(&out, 0, &env, "queued");
    let size = env.only_message().msg.len();
    // The same state directory, so the same certificate; a new port.
    let dir = first.dir.clone();
    drop(first);
    let limit = (size + 20).to_string();
    let args = [
        "--listener",
        "127.0.0.1:0=starttls",
        "--auth",
        "accept-any",
        "--max-message-size",
        &limit,
    ];
    let sink = Sink::start_in(dir, args.iter().map(|a| a.to_string()).collect(), &[]);
    set(&env, "port", &sink.port(0).to_string());

    let out = env.run("relaymail", &["flush"], b"");
    assert_exit(&out, 0, &env, "flush");
    let reply = "552 5.3.4 Error: message size exceeds fixed limit";
    let lines = env.log_lines();
    let bounced: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("event=delivery") && l.contains("status=bounced"))
        .collect();
    assert_eq!(bounced.len(), 2, "one line per recipient: {lines:?}");
    for (line, to) in bounced.iter().zip(["a@example.net", "b@example.net"]) {
        assert!(
            line.contains(&format!("to=<{to}>"))
                && line.contains("dsn=5.3.4")
                && line.contains(reply),
            "{line}"
        );
    }
    assert!(
        !lines.iter().any(|l| l.contains("status=deferred")),
        "{lines:?}"
    );
    // Exactly one DSN, to the sender, quoting the sink's reply.
    let dsn = sink.event();
    assert_eq!(dsn["from"], "");
    assert_eq!(dsn["rcpt"], serde_json::json!(["owner@example.org"]));
    let text = std::fs::read_to_string(dsn["path"].as_str().unwrap()).unwrap();
    for want in [
        "Final-Recipient: rfc822; a@example.net",
        "Final-Recipient: rfc822; b@example.net",
        "Status: 5.3.4",
        &format!("Diagnostic-Code: smtp; {reply}"),
        "Subject: just too big",
    ] {
        assert!(text.contains(want), "DSN lacks {want:?}:\n{text}");
    }
    sink.no_event();
    assert!(env.queued().is_empty(), "{}", env.listing());
    let mailq = stdout(&env.run("mailq", &[], b""));
    assert!(mailq.contains("Mail queue is empty"), "{mailq}");
    // Nothing left to retry.
    let again = env.run("relaymail", &["flush"], b"");
    assert_exit(&again, 0, &env, "second flush");
    sink.no_event();
    assert_eq!(env.log_lines().len(), lines.len(), "{:?}", env.log_lines());
}

/// A relay on loopback for one session that answers every command by its
/// verb: each RCPT with the next of `rcpt` (then 250), the end of each
/// message with the next of `after_dot` (then 250); `None` there hangs up
/// instead of answering. Returns the port and a handle yielding each
/// message's lines, MAIL FROM first.
fn relay_answering_the_dot(
    rcpt: Vec<&'static str>,
    after_dot: Vec<Option<&'static str>>,
) -> (u16, std::thread::JoinHandle<Vec<Vec<String>>>) {
    relay_answering(rcpt, Vec::new(), after_dot)
}

/// `relay_answering_the_dot`, and each DATA command answered with the
/// next of `data` instead of 354 while there is one.
fn relay_answering(
    rcpt: Vec<&'static str>,
    data: Vec<&'static str>,
    after_dot: Vec<Option<&'static str>>,
) -> (u16, std::thread::JoinHandle<Vec<Vec<String>>>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let (mut rcpt, mut data, mut after_dot) =
            (rcpt.into_iter(), data.into_iter(), after_dot.into_iter());
        let mut messages: Vec<Vec<String>> = Vec::new();
        writer.write_all(b"220 relay.example ESMTP\r\n").unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let command = line.trim_end().to_string();
            let verb = command.get(..4).unwrap_or("").to_ascii_uppercase();
            let reply = match verb.as_str() {
                "EHLO" => "250-relay.example\r\n250 8BITMIME\r\n",
                "MAIL" => {
                    messages.push(vec![command]);
                    "250 2.1.0 Ok\r\n"
                }
                "RCPT" => rcpt.next().unwrap_or("250 2.1.5 Ok\r\n"),
                "DATA" if !data.as_slice().is_empty() => data.next().unwrap_or_default(),
                "DATA" => {
                    writer.write_all(b"354 go ahead\r\n").unwrap();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return messages;
                        }
                        if line == ".\r\n" {
                            break;
                        }
                        if let Some(m) = messages.last_mut() {
                            m.push(line.trim_end().to_string());
                        }
                    }
                    match after_dot.next() {
                        Some(Some(reply)) => reply,
                        Some(None) => return messages,
                        None => "250 2.0.0 Ok: queued\r\n",
                    }
                }
                "QUIT" => {
                    let _ = writer.write_all(b"221 2.0.0 Bye\r\n");
                    break;
                }
                _ => "250 2.0.0 Ok\r\n",
            };
            if writer.write_all(reply.as_bytes()).is_err() {
                break;
            }
        }
        messages
    });
    (port, handle)
}

/// An Env whose smarthost is a plain relay on `port` (no TLS, no AUTH).
fn plain_client(port: u16) -> Env {
    let env = Env::new();
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(&format!(
        "\n[smarthost]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\ncommand_timeout = \"5s\"\n"
    ));
    std::fs::write(&env.config, config).unwrap();
    env
}

#[test]
fn a_5xx_after_the_final_dot_bounces_the_accepted_recipients_with_that_reply() {
    let reply = "554 5.7.1 message content rejected by policy";
    let (port, relay) = relay_answering_the_dot(
        vec![
            "250 2.1.5 Ok\r\n",
            "550 5.1.1 <b@example.net>: no such user\r\n",
        ],
        vec![Some("554 5.7.1 message content rejected by policy\r\n")],
    );
    let env = plain_client(port);
    let out = env.sendmail(
        &[
            "-odi",
            "-f",
            "owner@example.org",
            "a@example.net",
            "b@example.net",
            "c@example.net",
        ],
        "Subject: judged after the dot\n\nb\n",
    );
    assert_exit(&out, 69, &env, "refused for good");
    assert!(env.queued().is_empty(), "{}", env.listing());
    let lines = env.log_lines();
    let line = |to: &str| {
        lines
            .iter()
            .find(|l| l.contains("event=delivery") && l.contains(&format!("to=<{to}>")))
            .unwrap_or_else(|| panic!("no delivery line for {to}: {lines:?}"))
            .clone()
    };
    for to in ["a@example.net", "c@example.net"] {
        let l = line(to);
        assert!(
            l.contains("status=bounced") && l.contains("dsn=5.7.1") && l.contains(reply),
            "{l}"
        );
    }
    let b = line("b@example.net");
    assert!(
        b.contains("status=bounced") && b.contains("dsn=5.1.1"),
        "{b}"
    );
    // The DSN went over the same session, after RSET: one report for all
    // three, each with its own reply.
    let messages = relay.join().unwrap();
    assert_eq!(messages.len(), 2, "the message and one DSN: {messages:?}");
    assert!(messages[1][0].starts_with("MAIL FROM:<>"), "{messages:?}");
    let dsn = messages[1].join("\n");
    for want in [
        "Final-Recipient: rfc822; a@example.net",
        "Final-Recipient: rfc822; c@example.net",
        &format!("Diagnostic-Code: smtp; {reply}"),
        "Diagnostic-Code: smtp; 550 5.1.1 <b@example.net>: no such user",
    ] {
        assert!(dsn.contains(want), "DSN lacks {want:?}:\n{dsn}");
    }
    assert_eq!(dsn.matches("Final-Recipient:").count(), 3, "{dsn}");
}

#[test]
fn a_5xx_to_the_data_command_bounces_and_a_4xx_defers() {
    for (answer, status, exit) in [
        ("554 5.7.1 <DATA>: Data command rejected\r\n", "bounced", 69),
        ("451 4.3.0 try again later\r\n", "deferred", 75),
    ] {
        let (port, relay) = relay_answering(Vec::new(), vec![answer], Vec::new());
        let env = plain_client(port);
        let out = env.sendmail(
            &["-odi", "-f", "owner@example.org", "a@example.net"],
            "Subject: s\n\nb\n",
        );
        assert_exit(&out, exit, &env, answer);
        let lines = env.log_lines();
        let line = lines
            .iter()
            .find(|l| l.contains("event=delivery") && l.contains("to=<a@example.net>"))
            .unwrap_or_else(|| panic!("no delivery line: {lines:?}"));
        assert!(
            line.contains(&format!("status={status}")) && line.contains(answer.trim_end()),
            "{line}"
        );
        let messages = relay.join().unwrap();
        if status == "bounced" {
            // Not kept for a retry: the report to the sender went out over
            // the same session.
            assert!(env.queued().is_empty(), "{}", env.listing());
            assert_eq!(messages.len(), 2, "the message and its DSN: {messages:?}");
            assert!(messages[1][0].starts_with("MAIL FROM:<>"), "{messages:?}");
            assert!(
                messages[1]
                    .iter()
                    .any(|l| l.contains("Diagnostic-Code: smtp; 554 5.7.1")),
                "{messages:?}"
            );
        } else {
            assert_eq!(env.queued().len(), 1, "kept for a retry");
            assert_eq!(messages.len(), 1, "no DSN: {messages:?}");
        }
    }
}

#[test]
fn a_4xx_a_hang_up_or_garbage_after_the_final_dot_defers() {
    for (answer, wanted) in [
        (
            Some("452 4.3.1 insufficient system storage\r\n"),
            "452 4.3.1 insufficient system storage",
        ),
        (None, "the relay closed the connection"),
        (Some("hello there\r\n"), "not an SMTP reply"),
    ] {
        let (port, relay) = relay_answering_the_dot(Vec::new(), vec![answer]);
        let env = plain_client(port);
        let out = env.sendmail(
            &["-odi", "-f", "owner@example.org", "a@example.net"],
            "Subject: s\n\nb\n",
        );
        assert_exit(&out, 75, &env, wanted);
        let messages = relay.join().unwrap();
        assert_eq!(messages.len(), 1, "no DSN: {messages:?}");
        let q = env.only_message();
        assert!(
            q.env.contains("status = \"deferred\"") && q.env.contains(wanted),
            "{wanted}: {}",
            q.env
        );
        assert!(
            env.log_lines()
                .iter()
                .any(|l| l.contains("status=deferred") && l.contains(wanted)),
            "{:?}",
            env.log_lines()
        );
    }
}
