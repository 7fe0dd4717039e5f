//! The sink as devices and scripts use it, driven by independent clients
//! (Python smtplib, swaks) and by a raw socket speaking like old devices.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::sink::Sink;
use common::*;

fn python(script: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{script}\n{}",
        outcome(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const PY_PRELUDE: &str = "import smtplib, ssl\nctx = ssl.create_default_context()\nctx.check_hostname = False\nctx.verify_mode = ssl.CERT_NONE\n";

#[test]
fn smtplib_plain_starttls_implicit_with_auth() {
    let sink = Sink::start(&[
        "--listener",
        "127.0.0.1:0=none",
        "--listener",
        "127.0.0.1:0=starttls",
        "--listener",
        "127.0.0.1:0=implicit",
        "--auth",
        "accept-any",
    ]);
    let (plain, starttls, implicit) = (sink.port(0), sink.port(1), sink.port(2));
    python(&format!(
        "{PY_PRELUDE}
s = smtplib.SMTP('127.0.0.1', {plain}); s.ehlo('plain.example')
s.user, s.password = 'printer', 'x'
s.auth('PLAIN', s.auth_plain)
s.sendmail('dev@lab', ['root@lab'], b'Subject: plain\\r\\n\\r\\nhello\\r\\n'); s.quit()
s = smtplib.SMTP('127.0.0.1', {starttls}); s.ehlo('tls.example'); s.starttls(context=ctx); s.ehlo('tls.example')
s.user, s.password = 'switch01', 'secret'
s.auth('LOGIN', s.auth_login, initial_response_ok=False)
s.sendmail('dev@lab', ['root@lab'], b'Subject: starttls\\r\\n\\r\\nhello\\r\\n'); s.quit()
s = smtplib.SMTP_SSL('127.0.0.1', {implicit}, context=ctx); s.ehlo('ssl.example')
s.login('ups', 'pw')
s.sendmail('dev@lab', ['root@lab'], b'Subject: implicit\\r\\n\\r\\nhello\\r\\n'); s.quit()
"
    ));
    let events: Vec<serde_json::Value> = (0..3).map(|_| sink.event()).collect();
    assert_eq!(events[0]["tls"], serde_json::Value::Null);
    assert_eq!(events[0]["helo"], "plain.example");
    assert_eq!(
        events[0]["auth_user"], "printer",
        "AUTH PLAIN on a plain connection"
    );
    assert_eq!(events[1]["tls"], "TLSv1.3");
    assert_eq!(events[1]["auth_user"], "switch01");
    assert_eq!(events[2]["tls"], "TLSv1.3");
    assert_eq!(events[2]["auth_user"], "ups");
    assert!(
        events[2]["cipher"].as_str().unwrap().contains("TLS13"),
        "{}",
        events[2]
    );
    for e in &events {
        assert_eq!(e["from"], "dev@lab");
        assert_eq!(e["rcpt"], serde_json::json!(["root@lab"]));
        assert!(e["client"].as_str().unwrap().starts_with("127.0.0.1:"));
        let text = std::fs::read_to_string(e["path"].as_str().unwrap()).unwrap();
        assert!(
            text.starts_with("Return-Path: <dev@lab>\nReceived: from "),
            "{text}"
        );
        assert!(
            text.contains("by sink.test.example (relaymail sink) with ESMTP"),
            "{text}"
        );
        assert!(
            text.ends_with("\nhello\n"),
            "LF line ends in Maildir: {text:?}"
        );
    }
    let text = std::fs::read_to_string(events[1]["path"].as_str().unwrap()).unwrap();
    assert!(
        text.contains("with ESMTPSA id ")
            && text.contains("tls=TLSv1.3 cipher=TLS13_")
            && text.contains("auth=switch01;"),
        "{text}"
    );
}

/// A raw SMTP client for dialogues real libraries would never produce.
struct Raw {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut raw = Raw { stream, reader };
        assert!(raw.reply().starts_with("220 "));
        raw
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// A whole (possibly multi-line) reply.
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap() == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }
}

#[test]
fn old_devices_helo_lowercase_bare_lf_auth_login() {
    let sink = Sink::start(&["--listen", "127.0.0.1:0", "--auth", "accept-any"]);
    let mut c = Raw::connect(sink.port(0));
    assert!(c.cmd("helo ups01").starts_with("250 "));
    // AUTH LOGIN without initial response, lowercase, on a plain connection.
    assert_eq!(c.cmd("auth login"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(c.cmd("YWRtaW4="), "334 UGFzc3dvcmQ6\r\n");
    assert!(c.cmd("cGFzc3dvcmQ=").starts_with("235 2.7.0"));
    assert!(c.cmd("mail from: <ups01@lab> AUTH=<>").starts_with("250"));
    assert!(c.cmd("rcpt to: <root@lab>").starts_with("250"));
    assert!(c.cmd("data").starts_with("354"));
    // Bare LF and CR CR LF line ends, a dot-stuffed line, 8-bit text.
    c.send(b"Subject: on battery\n\nline one\r\r\n..starts with a dot\nGr\xc3\xbc\xc3\x9fe\n.\n");
    assert!(c.reply().starts_with("250 2.0.0 Ok: queued as "));
    assert!(c.cmd("quit").starts_with("221"));
    let e = sink.event();
    assert_eq!(e["helo"], "ups01");
    assert_eq!(e["auth_user"], "admin");
    assert_eq!(e["subject"], "on battery");
    let text = std::fs::read(e["path"].as_str().unwrap()).unwrap();
    assert!(
        text.ends_with(
            "\nSubject: on battery\n\nline one\n.starts with a dot\nGr\u{fc}\u{df}e\n".as_bytes()
        ),
        "{}",
        String::from_utf8_lossy(&text)
    );
    assert!(
        String::from_utf8_lossy(&text).contains("with SMTP id"),
        "HELO gives SMTP"
    );
}

#[test]
fn auth_plain_forms_and_refusals() {
    let sink = Sink::start(&[
        "--listen",
        "127.0.0.1:0",
        "--auth",
        "users",
        "--auth-user",
        "bmc=s3cret",
    ]);
    let mut c = Raw::connect(sink.port(0));
    let ehlo = c.cmd("EHLO bmc");
    assert!(
        ehlo.contains("250-AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER\r\n"),
        "{ehlo}"
    );
    assert!(
        c.cmd("MAIL FROM:<bmc@lab>").starts_with("530 5.7.0"),
        "users mode requires AUTH"
    );
    // \0bmc\0wrong
    assert!(c
        .cmd("AUTH PLAIN AGJtYwB3cm9uZw==")
        .starts_with("535 5.7.8"));
    assert!(c.cmd("AUTH CRAM-MD5").starts_with("504 5.5.4"));
    assert_eq!(c.cmd("AUTH PLAIN"), "334 \r\n");
    assert!(c.cmd("*").starts_with("501 5.7.0"), "cancelled");
    assert_eq!(c.cmd("auth plain"), "334 \r\n");
    assert!(
        c.cmd("AGJtYwBzM2NyZXQ=").starts_with("235"),
        "\\0bmc\\0s3cret"
    );
    assert!(
        c.cmd("AUTH PLAIN AGJtYwBzM2NyZXQ=").starts_with("503"),
        "only once"
    );
}

#[test]
fn auth_none_is_not_offered() {
    let sink = Sink::start(&["--listen", "127.0.0.1:0"]);
    let mut c = Raw::connect(sink.port(0));
    let ehlo = c.cmd("EHLO x");
    for ext in [
        "250-PIPELINING",
        "250-SIZE 52428800",
        "250-8BITMIME",
        "250-SMTPUTF8",
        "250-ENHANCEDSTATUSCODES",
    ] {
        assert!(ehlo.contains(ext), "{ehlo}");
    }
    assert!(
        !ehlo.contains("AUTH") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    assert!(c.cmd("AUTH PLAIN AGEAYg==").starts_with("503 5.5.1"));
}

#[test]
fn protocol_errors_and_commands() {
    let sink = Sink::start(&["--listen", "127.0.0.1:0"]);
    let mut c = Raw::connect(sink.port(0));
    assert!(c.cmd("RCPT TO:<a@b>").starts_with("503 5.5.1"));
    assert!(c.cmd("DATA").starts_with("503 5.5.1"));
    assert!(c.cmd("MAIL FROM <a@b>").starts_with("501 5.5.4"));
    assert!(c.cmd("MAIL FROM:<a@b> FROB=1").starts_with("555 5.5.4"));
    assert!(c.cmd("BDAT 10").starts_with("502 5.5.2"));
    assert!(c.cmd("VRFY root").starts_with("252"));
    assert!(c.cmd("HELP").starts_with("214"));
    assert!(c.cmd("NOOP").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<>").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@b>").starts_with("503"), "nested MAIL");
    assert!(c.cmd("DATA").starts_with("503"), "no recipients yet");
    assert!(c.cmd("RSET").starts_with("250"));
    assert!(c.cmd("STARTTLS").starts_with("502"), "plain listener");
    sink.no_event();
}

#[test]
fn limits_have_their_reply_codes() {
    let sink = Sink::start(&[
        "--listen",
        "127.0.0.1:0",
        "--max-message-size",
        "2000",
        "--max-recipients",
        "2",
    ]);
    let mut c = Raw::connect(sink.port(0));
    c.cmd("EHLO x");
    assert!(
        c.cmd("MAIL FROM:<a@b> SIZE=5000").starts_with("552 5.3.4"),
        "declared SIZE"
    );
    assert!(c.cmd("MAIL FROM:<a@b> SIZE=100").starts_with("250"));
    assert!(c.cmd("RCPT TO:<1@x>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<2@x>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<3@x>").starts_with("452 4.5.3"));
    assert!(c.cmd("DATA").starts_with("354"));
    let big = "x".repeat(70) + "\r\n";
    c.send(big.repeat(100).as_bytes());
    c.send(b".\r\n");
    assert!(c.reply().starts_with("552 5.3.4"), "streamed size enforced");
    sink.no_event();
    assert!(c.cmd("NOOP").starts_with("250"), "session goes on");
}

#[test]
fn connection_limit_and_timeouts() {
    let sink = Sink::start(&[
        "--listen",
        "127.0.0.1:0",
        "--max-connections",
        "1",
        "--command-timeout",
        "1s",
    ]);
    let mut first = Raw::connect(sink.port(0));
    let mut second = TcpStream::connect(("127.0.0.1", sink.port(0))).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = String::new();
    second.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("421 4.3.2"), "{reply}");
    // The first client says nothing: after the command timeout, 421 4.4.2.
    assert!(first.reply().starts_with("421 4.4.2"));
}

#[test]
fn session_timeout_ends_a_trickling_client() {
    let sink = Sink::start(&[
        "--listen",
        "127.0.0.1:0",
        "--command-timeout",
        "10s",
        "--session-timeout",
        "1s",
    ]);
    let mut c = Raw::connect(sink.port(0));
    let started = std::time::Instant::now();
    let mut reply = String::new();
    while !reply.starts_with("421") {
        reply = c.cmd("NOOP");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "session timeout must fire"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(reply.starts_with("421 4.4.2"), "{reply}");
}

#[test]
fn header_injection_through_helo_or_auth_user_is_impossible() {
    let sink = Sink::start(&["--listen", "127.0.0.1:0", "--auth", "accept-any"]);
    let mut c = Raw::connect(sink.port(0));
    c.send(b"EHLO evil\rX-Injected: yes\r\n");
    c.reply();
    // user "u\rX-Evil: 1", password "p"
    let creds = relaymail::message::base64::encode(b"\0u\rX-Evil: 1\0p");
    assert!(c.cmd(&format!("AUTH PLAIN {creds}")).starts_with("235"));
    c.cmd("MAIL FROM:<a@b>");
    c.cmd("RCPT TO:<c@d>");
    c.cmd("DATA");
    c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n");
    assert!(c.reply().starts_with("250"));
    let e = sink.event();
    let text = std::fs::read_to_string(e["path"].as_str().unwrap()).unwrap();
    let header = text.split("\n\n").next().unwrap();
    // A bare CR would start a new header line for many readers; str::lines
    // would not split on it, so look for the byte itself.
    assert!(!header.contains('\r'), "{header:?}");
    for line in header.lines() {
        assert!(
            !line.starts_with("X-Injected") && !line.starts_with("X-Evil"),
            "injected line: {line}\n{header}"
        );
    }
    assert!(
        header.contains("u?X-Evil: 1"),
        "the AUTH user is kept, made harmless: {header}"
    );
}

#[test]
fn control_characters_in_a_subject_never_reach_sink_list() {
    let sink = Sink::start(&["--listen", "127.0.0.1:0"]);
    let mut c = Raw::connect(sink.port(0));
    c.send(b"EHLO dev\r\n");
    c.reply();
    c.cmd("MAIL FROM:<a@b>");
    c.cmd("RCPT TO:<c@d>");
    c.cmd("DATA");
    c.send(b"Subject: hi \x1b]0;owned\x07\x1b[2J\r\n\r\nbody\r\n.\r\n");
    assert!(c.reply().starts_with("250"));
    sink.event();
    let out = std::process::Command::new(BIN)
        .args(["sink", "list", "--state-dir"])
        .arg(sink.dir.path().join("state"))
        .env("RELAYMAIL_CONFIG", sink.dir.path().join("relaymail.toml"))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("hi "), "{listing}");
    assert!(
        !listing.contains('\x1b') && !listing.contains('\x07'),
        "{listing:?}"
    );
}

#[test]
fn swaks_with_pipelining() {
    if !have("swaks") {
        return;
    }
    let sink = Sink::start(&["--listen", "127.0.0.1:0"]);
    let out = Command::new("swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{}", sink.port(0)),
            "--from",
            "swaks@lab",
            "--to",
            "a@lab,b@lab",
            "--pipeline",
            "--header",
            "Subject: swaks test",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "swaks: {}", outcome(&out));
    let e = sink.event();
    assert_eq!(e["rcpt"], serde_json::json!(["a@lab", "b@lab"]));
    assert_eq!(e["subject"], "swaks test");
}

/// esmtp (libESMTP) over STARTTLS with AUTH, twenty times: libESMTP 1.1
/// mostly hangs after a TLS 1.3 handshake when the server sends session
/// tickets, so the sink sends none.
#[test]
fn esmtp_sends_over_starttls_with_auth_every_time() {
    if !have("esmtp") {
        return;
    }
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    // libESMTP trusts ~/.config/libesmtp/ca.pem only (0600, directories
    // 0700) and checks the certificate against `hostname`.
    let home = tempfile::tempdir().unwrap();
    let ca_dir = home.path().join(".config/libesmtp");
    std::fs::create_dir_all(&ca_dir).unwrap();
    for dir in [
        home.path().to_path_buf(),
        home.path().join(".config"),
        ca_dir.clone(),
    ] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let ca = ca_dir.join("ca.pem");
    std::fs::copy(sink.dir.path().join("state/sink-cert.pem"), &ca).unwrap();
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o600)).unwrap();
    let rc = home.path().join("esmtprc");
    std::fs::write(
        &rc,
        format!(
            "hostname = localhost:{}\nusername = \"lab\"\npassword = \"secret\"\nstarttls = required\n",
            sink.port(0)
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    for i in 0..20 {
        let mut child = Command::new("esmtp")
            .arg("-C")
            .arg(&rc)
            .args(["-i", "-f", "ups@lab", "alerts@lab"])
            .env("HOME", home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("Subject: on battery {i}\n\npower lost\n").as_bytes())
            .unwrap();
        // A hung session is the failure: give each one 10 s.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("esmtp message {i} hung after STARTTLS");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = child.wait_with_output().unwrap();
        assert!(status.success(), "esmtp message {i}: {}", outcome(&out));
        let e = sink.event();
        assert_eq!(e["subject"], format!("on battery {i}"));
        assert_eq!(e["tls"], "TLSv1.3");
        assert_eq!(e["auth_user"], "lab");
    }
}

#[test]
fn smtputf8_and_eight_bit_bodies_are_stored_byte_for_byte() {
    let sink = Sink::start(&["--listen", "127.0.0.1:0"]);
    let port = sink.port(0);
    python(&format!(
        "import smtplib
s = smtplib.SMTP('127.0.0.1', {port}); s.ehlo('x')
body = 'Subject: Grüße\\r\\n\\r\\nÜmlaut ✓ {long}\\r\\n'.encode('utf-8')
s.sendmail('ärger@lab', ['empfänger@lab'], body, mail_options=['SMTPUTF8', 'BODY=8BITMIME']); s.quit()
",
        long = "y".repeat(3000)
    ));
    let e = sink.event();
    assert_eq!(e["from"], "ärger@lab");
    assert_eq!(e["rcpt"], serde_json::json!(["empfänger@lab"]));
    let text = std::fs::read_to_string(e["path"].as_str().unwrap()).unwrap();
    assert!(
        text.ends_with(&format!(
            "\nSubject: Grüße\n\nÜmlaut ✓ {}\n",
            "y".repeat(3000)
        )),
        "{text}"
    );
}

#[test]
fn list_show_and_wait() {
    let sink = Sink::start(&["--listen", "127.0.0.1:0"]);
    let port = sink.port(0);
    let waiter = {
        let state = sink.dir.path().join("state");
        let config = sink.dir.path().join("relaymail.toml");
        std::thread::spawn(move || {
            Command::new(BIN)
                .args([
                    "sink",
                    "wait",
                    "--count",
                    "2",
                    "--to",
                    "ops@lab",
                    "--since",
                    "now",
                    "--timeout",
                    "20s",
                    "--state-dir",
                ])
                .arg(state)
                .env("RELAYMAIL_CONFIG", config)
                .output()
                .unwrap()
        })
    };
    // Give `wait` its starting point before the first message lands: it
    // must count only what arrives after it started.
    std::thread::sleep(Duration::from_millis(300));
    for (i, to) in ["ops@lab", "other@lab", "OPS@lab"].iter().enumerate() {
        let mut c = Raw::connect(port);
        c.cmd("HELO device");
        c.cmd("MAIL FROM:<dev@lab>");
        c.cmd(&format!("RCPT TO:<{to}>"));
        c.cmd("DATA");
        c.send(format!("Subject: alert {i}\r\n\r\nbody {i}\r\n.\r\n").as_bytes());
        assert!(c.reply().starts_with("250"));
    }
    let waited = waiter.join().unwrap();
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&waited.stdout).lines().count(), 2);
    let list = sink.relaymail(&["sink", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert_eq!(text.lines().count(), 4, "header + 3 messages:\n{text}");
    assert!(
        text.contains("alert 1") && text.contains("device"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&sink.relaymail(&["sink", "list", "--json"]).stdout).unwrap();
    let id = json[0]["id"].as_str().unwrap().to_string();
    let shown = sink.relaymail(&["sink", "show", &id]);
    assert!(shown.status.success());
    assert!(String::from_utf8_lossy(&shown.stdout).ends_with("Subject: alert 0\n\nbody 0\n"));
    let timeout = sink.relaymail(&["sink", "wait", "--count", "4", "--timeout", "1s"]);
    assert_eq!(timeout.status.code(), Some(75), "timeout is 75");
    assert!(String::from_utf8_lossy(&timeout.stderr).contains("3 of 4"));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "wait never stops the server"
    );
}

#[test]
fn bind_failure_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["sink", "--listen", &addr, "--state-dir"])
        .arg(dir.path())
        .env("RELAYMAIL_CONFIG", "/dev/null")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(71));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

#[test]
fn sink_code_never_uses_the_relay_side() {
    for entry in walk(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/sink"
    ))) {
        let text = std::fs::read_to_string(&entry).unwrap();
        for forbidden in [
            "crate::spool",
            "crate::relay",
            "crate::creds",
            "TcpStream::connect",
            "lettre",
        ] {
            assert!(
                !text.contains(forbidden),
                "{} uses {forbidden}",
                entry.display()
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Sends one message; returns the final reply to DATA.
fn send_one(port: u16, subject: &str) -> String {
    let mut c = Raw::connect(port);
    c.cmd("HELO device");
    c.cmd("MAIL FROM:<dev@lab>");
    c.cmd("RCPT TO:<root@lab>");
    c.cmd("DATA");
    c.send(format!("Subject: {subject}\r\n\r\nbody of {subject}\r\n.\r\n").as_bytes());
    c.reply()
}

#[test]
fn kill_9_right_after_the_250_loses_nothing() {
    let rounds: usize = std::env::var("RELAYMAIL_SINK_KILL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut sink = Sink::start(&["--listen", "127.0.0.1:0"]);
    for round in 0..rounds {
        let reply = send_one(sink.port(0), &format!("round {round}"));
        assert!(reply.starts_with("250 2.0.0"), "round {round}: {reply}");
        sink = sink.restart();
    }
    let stored = sink.stored();
    assert_eq!(stored.len(), rounds, "every acknowledged message is stored");
    let mut subjects: Vec<usize> = stored
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            let n: usize = text
                .split("Subject: round ")
                .nth(1)
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                text.ends_with(&format!("\n\nbody of round {n}\n")),
                "intact: {text}"
            );
            n
        })
        .collect();
    subjects.sort();
    assert_eq!(subjects, (0..rounds).collect::<Vec<_>>());
    let tmp = std::fs::read_dir(sink.dir.path().join("mail/tmp"))
        .unwrap()
        .count();
    assert_eq!(tmp, 0, "no partial files left in tmp/");
}

#[test]
fn file_and_directory_are_fsynced_before_the_250() {
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("relaymail.toml"),
        "hostname = \"sink.test.example\"\n[log]\nsyslog = false\n",
    )
    .unwrap();
    let trace = dir.path().join("trace");
    let wrapper = [
        "strace",
        "-f",
        "-y",
        "-e",
        "trace=fsync,fdatasync,rename,renameat,renameat2,write,sendto",
        "-o",
    ];
    let mut args: Vec<&str> = wrapper.to_vec();
    let trace_arg = trace.display().to_string();
    args.push(&trace_arg);
    let dir = std::sync::Arc::new(dir);
    let sink = Sink::start_in(
        dir.clone(),
        vec!["--listen".into(), "127.0.0.1:0".into()],
        &args,
    );
    assert!(send_one(sink.port(0), "traced").starts_with("250 2.0.0"));
    drop(sink);
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let reply = lines
        .iter()
        .position(|l| l.contains("250 2.0.0 Ok: queued"))
        .expect("the 250 in the trace");
    let before = &lines[..reply];
    let mail = dir.path().join("mail").display().to_string();
    let file_sync = before.iter().position(|l| {
        (l.contains("fsync(") || l.contains("fdatasync(")) && l.contains(&format!("{mail}/tmp/"))
    });
    let rename = before
        .iter()
        .position(|l| l.contains("rename") && l.contains(&format!("{mail}/new/")));
    let dir_sync = before
        .iter()
        .position(|l| l.contains("fsync(") && l.contains(&format!("<{mail}/new>")));
    assert!(
        file_sync.is_some(),
        "message file fsynced before the 250:\n{text}"
    );
    assert!(
        rename.is_some() && dir_sync.is_some(),
        "moved to new/ and new/ fsynced before the 250:\n{text}"
    );
    assert!(
        file_sync < rename && rename < dir_sync,
        "order: fsync file, rename, fsync dir:\n{text}"
    );
}

#[test]
fn no_outbound_connection_while_receiving_remote_mail() {
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("relaymail.toml"),
        "hostname = \"sink.test.example\"\n[log]\nsyslog = false\n",
    )
    .unwrap();
    let trace = dir.path().join("trace").display().to_string();
    let dir = std::sync::Arc::new(dir);
    let args = [
        "strace",
        "-f",
        "-e",
        "trace=connect,socket",
        "-o",
        trace.as_str(),
    ];
    let sink = Sink::start_in(
        dir.clone(),
        vec!["--listen".into(), "127.0.0.1:0".into()],
        &args,
    );
    let mut c = Raw::connect(sink.port(0));
    c.cmd("EHLO x");
    c.cmd("MAIL FROM:<alerts@lab>");
    for rcpt in ["someone@gmail.com", "admin@example.com", "user@[192.0.2.1]"] {
        assert!(c.cmd(&format!("RCPT TO:<{rcpt}>")).starts_with("250"));
    }
    c.cmd("DATA");
    c.send(b"Subject: remote\r\n\r\nx\r\n.\r\n");
    assert!(c.reply().starts_with("250"));
    let e = sink.event();
    assert_eq!(e["rcpt"].as_array().unwrap().len(), 3);
    drop(sink);
    let text = std::fs::read_to_string(dir.path().join("trace")).unwrap();
    let outbound: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("connect(") && (l.contains("AF_INET") || l.contains("AF_INET6")))
        .collect();
    assert!(
        outbound.is_empty(),
        "the sink opened outbound connections: {outbound:?}"
    );
    assert!(text.contains("socket("), "the trace saw the process at all");
}

#[test]
fn failed_tls_handshake_logs_the_version_the_client_offered() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    std::fs::write(
        dir.path().join("relaymail.toml"),
        format!(
            "hostname = \"sink.test.example\"\n[log]\nsyslog = false\nfile = {:?}\n",
            log.display().to_string()
        ),
    )
    .unwrap();
    let sink = Sink::start_in(
        std::sync::Arc::new(dir),
        vec!["--listener".into(), "127.0.0.1:0=implicit".into()],
        &[],
    );
    let port = sink.port(0);
    let old = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-tls1_1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !old.status.success(),
        "a TLS 1.1 client must fail: {}",
        outcome(&old)
    );
    let banner = python(&format!(
        "import socket, ssl
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', {port})))
print(s.version(), s.recv(100).decode())"
    ));
    assert!(
        banner.starts_with("TLSv1.2 220 sink.test.example"),
        "TLS 1.2 works: {banner}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let failure = text
        .lines()
        .find(|l| l.contains("\"tls_failed\""))
        .unwrap_or_else(|| panic!("no tls_failed event:\n{text}"));
    assert!(failure.contains("the client offered TLSv1.1"), "{failure}");
    assert!(failure.contains("plain listener"), "{failure}");
}

#[test]
fn asking_for_tls_1_1_is_a_config_error_pointing_to_the_plain_listener() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relaymail.toml");
    std::fs::write(
        &config,
        "[sink]\ntls = \"starttls\"\ntls_min_version = \"1.1\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["sink"])
        .env("RELAYMAIL_CONFIG", &config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":3:19:")
            && err.contains("only TLS 1.2 and 1.3")
            && err.contains("plain listener"),
        "{err}"
    );
}

#[test]
fn ipv4_and_ipv6_listeners_in_one_process() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    let sink = Sink::start(&["--listen", "127.0.0.1:0", "--listen", "[::1]:0"]);
    assert!(sink.addrs[1].starts_with("[::1]:"), "{:?}", sink.addrs);
    let port6 = sink.port(1);
    let stream = TcpStream::connect(("::1", port6)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut c = Raw {
        reader: BufReader::new(stream.try_clone().unwrap()),
        stream,
    };
    assert!(c.reply().starts_with("220 "));
    c.cmd("HELO v6");
    c.cmd("MAIL FROM:<a@lab>");
    c.cmd("RCPT TO:<b@lab>");
    c.cmd("DATA");
    c.send(b"Subject: over ipv6\r\n\r\nx\r\n.\r\n");
    assert!(c.reply().starts_with("250"));
    let e = sink.event();
    assert!(e["client"].as_str().unwrap().starts_with("[::1]:"), "{e}");
    assert!(send_one(sink.port(0), "over ipv4").starts_with("250"));
}

#[test]
fn a_sink_started_as_root_with_a_user_generates_its_certificate_and_serves_as_that_user() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    // The store is the admin's to provide; the state directory is not.
    let mail = dir.path().join("mail");
    std::fs::create_dir(&mail).unwrap();
    nix::unistd::chown(&mail, Some(nobody.uid), Some(nobody.gid)).unwrap();
    std::fs::write(
        dir.path().join("relaymail.toml"),
        "hostname = \"sink.test.example\"\n[log]\nsyslog = false\n[sink]\nuser = \"nobody\"\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let dir = std::sync::Arc::new(dir);
    // Root without CAP_DAC_OVERRIDE, as the packaged unit starts it
    // (CapabilityBoundingSet=): the state directory becomes nobody's
    // 0750, so the certificate can only be made by nobody.
    let sink = Sink::start_in(
        dir.clone(),
        vec!["--listener".into(), "127.0.0.1:0=starttls".into()],
        &["setpriv", "--bounding-set=-dac_override,-dac_read_search"],
    );
    let key = std::fs::metadata(state.join("sink-key.pem")).unwrap();
    assert_eq!(
        key.uid(),
        nobody.uid.as_raw(),
        "the generated key is the sink user's"
    );
    assert_eq!(key.mode() & 0o777, 0o600);
    let out = std::process::Command::new("swaks")
        .args(["--server", &sink.addrs[0], "--tls", "--to", "a@example.net"])
        .output()
        .unwrap();
    assert!(out.status.success(), "swaks --tls: {}", outcome(&out));
    let e = sink.event();
    assert_eq!(e["tls"], "TLSv1.3");
    let status = std::fs::read_to_string(format!("/proc/{}/status", sink.child.id())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == nobody.uid.to_string()),
        "{uid_line}"
    );
}

// Issue 17 item 4: slow clients. Timeouts are deadlines, enforced inside
// every read: a client sending a byte every 0.3 s (never a newline) is cut
// when its line's command_timeout or its session_timeout passes, however
// steadily it sends.

/// A sink with `args` whose JSON log is returned beside it.
fn sink_with_log(args: &[&str]) -> (Sink, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    std::fs::write(
        dir.path().join("relaymail.toml"),
        format!(
            "hostname = \"sink.test.example\"\n[log]\nsyslog = false\nfile = {:?}\n",
            log.display().to_string()
        ),
    )
    .unwrap();
    let args = args.iter().map(|a| a.to_string()).collect();
    (Sink::start_in(std::sync::Arc::new(dir), args, &[]), log)
}

/// The log's `event=refused` and `event=tls_failed` lines.
fn refusals(log: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "refused" || e["event"] == "tls_failed")
        .collect()
}

/// What a trickling client saw.
struct Trickled {
    /// Everything the sink sent.
    got: Vec<u8>,
    /// When the sink closed the connection, from `started`.
    closed_at: Option<Duration>,
    /// Bytes the client sent (one each 0.3 s, none a newline).
    sent: usize,
}

/// Sends `x` every 0.3 s and reads whatever comes back, until the sink
/// closes the connection or `give_up` after `started` has passed.
fn trickle(stream: &mut TcpStream, started: std::time::Instant, give_up: Duration) -> Trickled {
    let step = Duration::from_millis(300);
    let mut got = Vec::new();
    let mut sent = 0;
    let mut next = std::time::Instant::now();
    loop {
        if started.elapsed() > give_up {
            return Trickled {
                got,
                closed_at: None,
                sent,
            };
        }
        if std::time::Instant::now() >= next {
            if stream.write_all(b"x").is_ok() {
                sent += 1;
            }
            next += step;
        }
        let wait = next.saturating_duration_since(std::time::Instant::now());
        stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 8192];
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // A reset after our last byte met the closed socket.
            Err(_) => break,
        }
    }
    Trickled {
        got,
        closed_at: Some(started.elapsed()),
        sent,
    }
}

/// Reads one reply (through its last line) from a raw stream.
fn read_reply(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut all = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if stream.read(&mut byte).unwrap() == 0 {
            break;
        }
        all.push(byte[0]);
        if all.ends_with(b"\n") {
            let text = String::from_utf8_lossy(&all).into_owned();
            let last = text
                .trim_end()
                .rsplit('\n')
                .next()
                .unwrap_or("")
                .to_string();
            if last.as_bytes().get(3) != Some(&b'-') {
                return text;
            }
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// Sends `line` every 0.5 s (reading its 250 when `replies`), the last
/// time at `last_at` after `started`: the line waited for next begins
/// then, less than a command_timeout before the session's end.
fn keep_busy(
    stream: &mut TcpStream,
    line: &str,
    started: std::time::Instant,
    last_at: Duration,
    replies: bool,
) {
    let mut at = started.elapsed();
    loop {
        stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        if replies {
            let reply = read_reply(stream);
            assert!(reply.starts_with("250"), "{line}: {reply}");
        }
        if at >= last_at {
            return;
        }
        at = (at + Duration::from_millis(500)).min(last_at);
        std::thread::sleep(at.saturating_sub(started.elapsed()));
    }
}

/// Asserts that a trickle was cut with 421 4.4.2 between `deadline` and
/// `deadline` + 2 s, after the client kept sending (at least `sent`
/// bytes), and that the log names the deadline and the stage.
fn assert_cut(t: &Trickled, deadline: Duration, sent: usize, log: &std::path::Path, reason: &str) {
    let got = String::from_utf8_lossy(&t.got);
    let Some(closed) = t.closed_at else {
        panic!(
            "still open after {} bytes sent 0.3 s apart; the sink answered {got:?}",
            t.sent
        );
    };
    assert!(
        got.contains("421 4.4.2 sink.test.example Error: timeout exceeded"),
        "{got:?}"
    );
    assert!(
        closed >= deadline && closed < deadline + Duration::from_secs(2),
        "closed after {closed:?}, the deadline was {deadline:?}"
    );
    assert!(t.sent >= sent, "the client kept sending: {} bytes", t.sent);
    let logged = refusals(log);
    assert!(
        logged.iter().any(|e| e["event"] == "refused"
            && e["reply"].as_str().unwrap().starts_with("421 4.4.2")
            && e["reason"] == reason),
        "no refused event with reason {reason:?}: {logged:?}"
    );
}

#[test]
fn a_byte_trickle_before_ehlo_is_cut_at_the_command_and_session_deadlines() {
    let (sink, log) = sink_with_log(&[
        "--listen",
        "127.0.0.1:0",
        "--command-timeout",
        "1s",
        "--session-timeout",
        "3s",
    ]);
    let port = sink.port(0);
    // One line trickled from the start: its command_timeout ends it.
    let started = std::time::Instant::now();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let t = trickle(&mut c, started, Duration::from_secs(8));
    assert!(String::from_utf8_lossy(&t.got).starts_with("220 "));
    assert_cut(
        &t,
        Duration::from_secs(1),
        3,
        &log,
        "command_timeout (1s) passed waiting for a command, before HELO/EHLO",
    );
    // Quick NOOPs until 2.3 s, then a trickle: the session's end (3 s)
    // comes before that line's command_timeout (3.3 s), and ends it.
    let started = std::time::Instant::now();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(read_reply(&mut c).starts_with("220 "));
    keep_busy(&mut c, "NOOP", started, Duration::from_millis(2300), true);
    let t = trickle(&mut c, started, Duration::from_secs(8));
    assert_cut(
        &t,
        Duration::from_secs(3),
        2,
        &log,
        "session_timeout (3s) passed waiting for a command, before HELO/EHLO",
    );
}

#[test]
fn a_byte_trickle_inside_data_is_cut_at_the_command_and_session_deadlines() {
    let (sink, log) = sink_with_log(&[
        "--listen",
        "127.0.0.1:0",
        "--command-timeout",
        "1s",
        "--session-timeout",
        "3s",
    ]);
    let port = sink.port(0);
    // Returns when DATA was sent: the sink waits for the first body line
    // only after it has read DATA.
    let open_data = |c: &mut TcpStream| {
        assert!(read_reply(c).starts_with("220 "));
        let mut data_sent = std::time::Instant::now();
        for (line, code) in [
            ("EHLO slow.example", "250"),
            ("MAIL FROM:<ups@lab>", "250"),
            ("RCPT TO:<root@lab>", "250"),
            ("DATA", "354"),
        ] {
            data_sent = std::time::Instant::now();
            c.write_all(format!("{line}\r\n").as_bytes()).unwrap();
            let reply = read_reply(c);
            assert!(reply.starts_with(code), "{line}: {reply}");
        }
        data_sent
    };
    // A body line trickled at once: command_timeout (1 s) after DATA.
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let started = open_data(&mut c);
    let t = trickle(&mut c, started, Duration::from_secs(8));
    assert_cut(
        &t,
        Duration::from_secs(1),
        3,
        &log,
        "command_timeout (1s) passed during DATA",
    );
    // Body lines every 0.5 s until 2.3 s, then a trickle: session_timeout.
    let started = std::time::Instant::now();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    open_data(&mut c);
    let line = "a body line that arrives in time";
    keep_busy(&mut c, line, started, Duration::from_millis(2300), false);
    let t = trickle(&mut c, started, Duration::from_secs(8));
    assert_cut(
        &t,
        Duration::from_secs(3),
        2,
        &log,
        "session_timeout (3s) passed during DATA",
    );
    sink.no_event();
}

/// A real ClientHello (rustls as a client, nothing verified: the
/// handshake never gets that far).
fn client_hello() -> Vec<u8> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut conn =
        rustls::ClientConnection::new(std::sync::Arc::new(config), "localhost".try_into().unwrap())
            .unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

#[test]
fn a_tls_handshake_stalled_after_the_client_hello_is_cut_at_the_command_deadline() {
    let (sink, log) = sink_with_log(&[
        "--listener",
        "127.0.0.1:0=implicit",
        "--listener",
        "127.0.0.1:0=starttls",
        "--command-timeout",
        "1s",
        // Far beyond the command deadline, so that a loaded machine
        // cannot have the session's deadline end the handshake first.
        "--session-timeout",
        "10s",
    ]);
    // After the ClientHello, the header of a 16,000-byte record whose
    // body then comes one byte each 0.3 s: the server waits for the whole
    // record, so only a deadline can end the handshake.
    let stall = |c: &mut TcpStream| {
        c.write_all(&client_hello()).unwrap();
        c.write_all(&[0x17, 0x03, 0x03, 0x3e, 0x80]).unwrap();
    };
    for (port, starttls) in [(sink.port(0), false), (sink.port(1), true)] {
        // The handshake's deadline runs from the accept (implicit) or
        // from the sink's reading STARTTLS: both after `started`.
        let mut started = std::time::Instant::now();
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        if starttls {
            assert!(read_reply(&mut c).starts_with("220 "));
            c.write_all(b"EHLO tls.example\r\n").unwrap();
            assert!(read_reply(&mut c).contains("STARTTLS"));
            started = std::time::Instant::now();
            c.write_all(b"STARTTLS\r\n").unwrap();
            assert!(read_reply(&mut c).starts_with("220 2.0.0"));
        }
        stall(&mut c);
        let t = trickle(&mut c, started, Duration::from_secs(12));
        let Some(closed) = t.closed_at else {
            panic!(
                "handshake (STARTTLS: {starttls}) still open after {} bytes 0.3 s apart",
                t.sent
            );
        };
        assert_eq!(
            t.got.first(),
            Some(&0x16),
            "the server answered the hello with a TLS record"
        );
        assert!(
            closed >= Duration::from_secs(1) && closed < Duration::from_secs(10),
            "STARTTLS: {starttls}: closed after {closed:?}, the deadline was 1s"
        );
        assert!(t.sent >= 3, "the client kept sending: {} bytes", t.sent);
    }
    let failed: Vec<_> = refusals(&log)
        .into_iter()
        .filter(|e| e["event"] == "tls_failed")
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    for e in &failed {
        assert_eq!(
            e["reason"], "command_timeout (1s) passed during the TLS handshake",
            "{e}"
        );
    }
}

#[test]
fn deadlines_inside_reads_cost_no_setsockopt_per_line_of_a_long_message() {
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("relaymail.toml"),
        "hostname = \"sink.test.example\"\n[log]\nsyslog = false\n",
    )
    .unwrap();
    let trace = dir.path().join("trace");
    let trace_arg = trace.display().to_string();
    let wrapper = ["strace", "-f", "-e", "trace=setsockopt", "-o", &trace_arg];
    let dir = std::sync::Arc::new(dir);
    let sink = Sink::start_in(
        dir.clone(),
        vec!["--listen".into(), "127.0.0.1:0".into()],
        &wrapper,
    );
    let mut c = Raw::connect(sink.port(0));
    c.cmd("EHLO big.example");
    c.cmd("MAIL FROM:<a@lab>");
    c.cmd("RCPT TO:<b@lab>");
    assert!(c.cmd("DATA").starts_with("354"));
    let mut body = b"Subject: long\r\n\r\n".to_vec();
    for i in 0..100_000 {
        body.extend_from_slice(format!("line {i} of a long alert message\r\n").as_bytes());
    }
    body.extend_from_slice(b".\r\n");
    c.send(&body);
    assert!(c.reply().starts_with("250 2.0.0"));
    assert!(c.cmd("QUIT").starts_with("221"));
    sink.event();
    drop(sink);
    let text = std::fs::read_to_string(&trace).unwrap();
    let timeouts = text
        .lines()
        .filter(|l| l.contains("SO_RCVTIMEO") || l.contains("SO_SNDTIMEO"))
        .count();
    assert!(
        (1..=4).contains(&timeouts),
        "{timeouts} socket timeout changes for a 100,000-line message:\n{text}"
    );
}

/// What a client that connects and waits for the sink to close sees (a
/// refused connection's 421).
fn refused_reply(addr: (&str, u16)) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = Vec::new();
    // A served connection stays open: what it sent (a 220) is returned
    // after the read timeout.
    let _ = c.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn one_client_address_cannot_take_every_connection_slot() {
    // max_connections 8: by default 2 (a quarter) per client address.
    let (sink, log) = sink_with_log(&["--listen", "127.0.0.1:0", "--max-connections", "8"]);
    let port = sink.port(0);
    let held: Vec<Raw> = (0..2).map(|_| Raw::connect(port)).collect();
    let reply = refused_reply(("127.0.0.1", port));
    assert!(
        reply.starts_with(
            "421 4.3.2 sink.test.example Error: too many connections from 127.0.0.1, try again later"
        ),
        "{reply}"
    );
    // Another loopback address (Linux routes 127.0.0.0/8 on lo) is still
    // served while 127.0.0.1 holds its two connections.
    let out = python(&format!(
        "import smtplib
s = smtplib.SMTP('127.0.0.1', {port}, source_address=('127.0.0.2', 0))
s.ehlo('other.example')
s.sendmail('dev@lab', ['root@lab'], b'Subject: from another address\\r\\n\\r\\nhello\\r\\n')
s.quit()
print('sent')"
    ));
    assert_eq!(out.trim(), "sent");
    let e = sink.event();
    assert!(
        e["client"].as_str().unwrap().starts_with("127.0.0.2:"),
        "{e}"
    );
    assert_eq!(held.len(), 2, "both connections were open throughout");
    let logged = refusals(&log);
    assert!(
        logged
            .iter()
            .any(|e| e["reply"].as_str().unwrap().starts_with("421 4.3.2")
                && e["reason"] == "max_connections_per_client (2) reached for 127.0.0.1"
                && e["client"].as_str().unwrap().starts_with("127.0.0.1:")),
        "{logged:?}"
    );
    drop(held);
}

#[test]
fn an_ipv4_mapped_client_counts_as_its_ipv4_address() {
    if std::net::TcpListener::bind("[::]:0").is_err() {
        eprintln!("skipped: no IPv6 on this machine");
        return;
    }
    let sink = Sink::start(&[
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "[::]:0",
        "--max-connections",
        "4",
        "--max-connections-per-client",
        "1",
    ]);
    let _held = Raw::connect(sink.port(0));
    // Through the [::] listener, 127.0.0.1 arrives as ::ffff:127.0.0.1.
    let reply = refused_reply(("127.0.0.1", sink.port(1)));
    assert!(
        reply
            .starts_with("421 4.3.2 sink.test.example Error: too many connections from 127.0.0.1,"),
        "{reply}"
    );
}

#[test]
fn a_per_client_limit_above_the_total_or_zero_is_refused() {
    let out = Command::new(BIN)
        .args([
            "sink",
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            "4",
            "--max-connections-per-client",
            "5",
        ])
        .env("RELAYMAIL_CONFIG", "/dev/null")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "a flag: usage");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[sink] max_connections_per_client (or its flag): 5 is more than max_connections (4); use 1 to 4"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relaymail.toml");
    std::fs::write(&config, "[sink]\nmax_connections_per_client = 0\n").unwrap();
    let out = Command::new(BIN)
        .args(["sink", "--listen", "127.0.0.1:0"])
        .env("RELAYMAIL_CONFIG", &config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "the file: config");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: [sink] max_connections_per_client: 0 would refuse everything; use 1 or more",
            config.display()
        )),
        "{err}"
    );
}

/// In user mode the default store is `<state_dir>/mail`; a `--state-dir`
/// flag wins over the configuration, and the default store goes with it.
#[test]
fn state_dir_flag_moves_the_default_store_in_user_mode() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relaymail.toml");
    std::fs::write(
        &config,
        format!(
            "[log]\nsyslog = false\n[sink]\nstate_dir = \"{}\"\n",
            dir.path().join("configured").display()
        ),
    )
    .unwrap();
    let state = dir.path().join("flag");
    let mut child = Command::new(BIN)
        .args(["sink", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&state)
        .env("RELAYMAIL_CONFIG", &config)
        .env("HOME", dir.path())
        .env_remove("XDG_STATE_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let wanted = format!("storing to maildir:{}", state.join("mail").display());
    assert!(line.contains(&wanted), "{line}");
    assert!(state.join("mail/new").is_dir(), "{line}");
    assert!(!dir.path().join("configured").exists(), "{line}");
}
