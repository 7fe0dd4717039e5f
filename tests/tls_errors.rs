//! Issue 16: self-signed relays as admins really make them, and every TLS
//! failure said in plain words with the setting that fixes it, in the
//! deferral reason (log line, mailq, queue show), in `doctor --json`, and
//! in the sink's handshake-failure log lines. Certificates are made here
//! as admins make them (`openssl req -x509`; rcgen for dates openssl 3.0
//! cannot set); the relay is relaymail's own sink, or `openssl s_server`
//! for TLS versions rustls does not speak.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::sink::Sink;
use common::*;

/// A certificate and key made in `dir`.
struct Pair {
    cert: PathBuf,
    key: PathBuf,
}

impl Pair {
    fn pem(&self) -> String {
        std::fs::read_to_string(&self.cert).unwrap()
    }

    /// The SHA-256 fingerprint as `openssl x509 -fingerprint -sha256`
    /// prints it, the form `fingerprint =` takes.
    fn sha256(&self) -> String {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(&self.cert)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", outcome(&out));
        stdout(&out).trim().split('=').nth(1).unwrap().to_string()
    }
}

/// The sink on one `listener`, presenting `pair`.
fn serve(pair: &Pair, listener: &str) -> Sink {
    Sink::start(&[
        "--listener",
        listener,
        "--cert",
        pair.cert.to_str().unwrap(),
        "--key",
        pair.key.to_str().unwrap(),
    ])
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", outcome(&out));
}

/// `openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=... -addext
/// subjectAltName=...`, exactly as an admin makes a relay's certificate:
/// OpenSSL marks it CA:TRUE.
fn self_signed(dir: &Path, name: &str, cn: &str, san: &str) -> Pair {
    let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "365",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            &format!("subjectAltName={san}"),
        ],
        dir,
    );
    Pair {
        cert: dir.join(cert),
        key: dir.join(key),
    }
}

/// A CA (openssl req -x509) and a certificate it signs for localhost with
/// the extensions in `ext` (openssl x509 -req -extfile).
fn ca_signed(dir: &Path, ca_cn: &str, ext: &str) -> (Pair, Pair) {
    let ca = self_signed(dir, "ca", ca_cn, "DNS:ca.test.example");
    std::fs::write(dir.join("leaf.ext"), ext).unwrap();
    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
        dir,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-out",
            "leaf.pem",
            "-extfile",
            "leaf.ext",
        ],
        dir,
    );
    let leaf = Pair {
        cert: dir.join("leaf.pem"),
        key: dir.join("leaf.key"),
    };
    (ca, leaf)
}

/// A self-signed certificate for localhost valid only between the dates
/// (rcgen: openssl 3.0 cannot backdate).
fn dated(dir: &Path, name: &str, from: (i32, u8, u8), until: (i32, u8, u8)) -> Pair {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    let cert = params.self_signed(&key).unwrap();
    let pair = Pair {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&pair.cert, cert.pem()).unwrap();
    std::fs::write(&pair.key, key.serialize_pem()).unwrap();
    pair
}

/// A client of the relay on `port` of localhost, `extra` lines in its
/// [smarthost] (no AUTH: the TLS step is what is tested).
fn client(port: u16, tls: &str, extra: &str) -> Env {
    Env::with(&format!(
        "[smarthost]\nhost = \"localhost\"\nport = {port}\ntls = \"{tls}\"\nauth = \"none\"\nconnect_timeout = \"3s\"\n{extra}\n"
    ))
}

fn ca_file(path: &Path) -> String {
    format!("ca_file = {:?}", path.display().to_string())
}

/// Asserts that no text an admin sees carries a Rust debug string.
fn plain(text: &str) {
    for rust in [
        "Other(",
        "OtherError",
        "CaUsedAsEndEntity",
        "UnknownIssuer",
        "NotValidFor",
        "AlertReceived",
        "PeerIncompatible",
        "InvalidCertificate",
    ] {
        assert!(!text.contains(rust), "a debug string ({rust}) in:\n{text}");
    }
}

/// What the admin sees of one deferred message: the syslog line (its
/// quoting undone), mailq, and queue show.
struct Deferral {
    log: String,
    mailq: String,
    show: String,
}

impl Deferral {
    /// Asserts that each of the three says `text`.
    fn says(&self, text: &str) {
        for (what, seen) in [
            ("log line", &self.log),
            ("mailq", &self.mailq),
            ("queue show", &self.show),
        ] {
            assert!(
                seen.contains(text),
                "the {what} should say {text:?}:\n{seen}"
            );
        }
    }
}

/// Submits with -odi, expects a deferral at the TLS stage, and returns
/// what the admin sees of it.
fn deferred(env: &Env) -> Deferral {
    let out = env.sendmail(&["-odi", "ops@example.net"], "Subject: alert\n\nbody\n");
    assert_exit(&out, 75, env, "a TLS failure defers");
    let lines = env.log_lines();
    let log = lines
        .iter()
        .find(|l| l.contains("status=deferred"))
        .unwrap_or_else(|| panic!("no deferred line in {lines:?}"))
        .replace("\\\"", "\"");
    assert!(log.contains("tls failed"), "the TLS stage is named: {log}");
    let mailq = stdout(&env.run("mailq", &[], b""));
    let id = env.only_message().id;
    let show = stdout(&env.run("relaymail", &["queue", "show", &id], b""));
    for text in [&log, &mailq, &show] {
        plain(text);
    }
    Deferral { log, mailq, show }
}

/// `relaymail doctor --json`: exit 69 and the FAIL tls check.
fn doctor_fail(env: &Env) -> serde_json::Value {
    let out = env.run("relaymail", &["doctor", "--json"], b"");
    let text = stdout(&out);
    plain(&text);
    assert_eq!(
        out.status.code(),
        Some(69),
        "doctor fails: {}",
        outcome(&out)
    );
    let doc: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["step"] == "tls" && c["status"] == "FAIL")
        .unwrap_or_else(|| panic!("no FAIL tls check: {text}"))
        .clone()
}

/// The configuration lines doctor says to add.
fn settings(check: &serde_json::Value) -> Vec<String> {
    check["settings"]
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Appends `line` to the client's [smarthost] (the last section).
fn add(env: &Env, line: &str) {
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(line);
    config.push('\n');
    std::fs::write(&env.config, config).unwrap();
}

fn flush_delivers(env: &Env, sink: &Sink) {
    let out = env.run("relaymail", &["flush"], b"");
    assert_exit(&out, 0, env, "delivered once fixed");
    assert_eq!(sink.event()["subject"], "alert");
    assert!(env.queued().is_empty(), "{}", env.listing());
}

#[test]
fn an_openssl_self_signed_certificate_named_in_ca_file_is_trusted_as_given() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let relay = self_signed(dir.path(), "relay", "relay", "DNS:localhost");
    assert!(
        stdout(
            &Command::new("openssl")
                .args(["x509", "-noout", "-ext", "basicConstraints", "-in"])
                .arg(&relay.cert)
                .output()
                .unwrap()
        )
        .contains("CA:TRUE"),
        "openssl req -x509 makes a CA:TRUE certificate"
    );
    for mode in ["starttls", "implicit"] {
        let sink = serve(&relay, &format!("127.0.0.1:0={mode}"));
        let env = client(sink.port(0), mode, &ca_file(&relay.cert));
        let out = env.sendmail(&["-odi", "ops@example.net"], "Subject: alert\n\nbody\n");
        assert_exit(&out, 0, &env, mode);
        assert_eq!(sink.event()["subject"], "alert");
        let out = env.run("relaymail", &["doctor"], b"");
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("OK    tls") && l.contains("trusted as given")),
            "doctor says how it was trusted:\n{text}"
        );
    }
}

#[test]
fn another_self_signed_certificate_defers_with_its_fingerprint_and_the_fix_delivers() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let relay = self_signed(dir.path(), "relay", "relay", "DNS:localhost");
    let other = self_signed(dir.path(), "other", "other", "DNS:localhost");
    let sink = serve(&relay, "127.0.0.1:0=starttls");
    let env = client(sink.port(0), "starttls", &ca_file(&other.cert));
    let pin = format!("fingerprint = \"sha256:{}\"", relay.sha256());
    let d = deferred(&env);
    d.says("the relay's certificate (CN=relay) is self-signed");
    d.says(&format!("is not in ca_file {}", other.cert.display()));
    d.says(&pin);
    sink.no_event();
    let check = doctor_fail(&env);
    assert!(
        check["detail"].as_str().unwrap().contains("is self-signed"),
        "{check}"
    );
    assert!(
        settings(&check).contains(&pin),
        "the exact line to add: {check}"
    );
    // The admin adds the line doctor printed.
    add(&env, &pin);
    flush_delivers(&env, &sink);
}

#[test]
fn a_certificate_from_an_unknown_ca_names_its_issuer() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, leaf) = ca_signed(
        dir.path(),
        "Lab Relay CA",
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost\n",
    );
    let stranger = self_signed(dir.path(), "stranger", "stranger", "DNS:localhost");
    let sink = serve(&leaf, "127.0.0.1:0=implicit");
    let env = client(sink.port(0), "implicit", &ca_file(&stranger.cert));
    let d = deferred(&env);
    d.says("the relay's certificate (CN=localhost) is issued by CN=Lab Relay CA, an issuer that is not in ca_file");
    d.says(&format!("fingerprint = \"sha256:{}\"", leaf.sha256()));
    let check = doctor_fail(&env);
    assert!(
        check["fix"]
            .as_str()
            .unwrap()
            .contains("the CA CN=Lab Relay CA"),
        "{check}"
    );
    // Trusting the CA (the webpki path) delivers.
    std::fs::write(&stranger.cert, ca.pem()).unwrap();
    flush_delivers(&env, &sink);
}

#[test]
fn a_ca_certificate_used_as_the_server_certificate_is_named() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, leaf) = ca_signed(
        dir.path(),
        "Lab Relay CA",
        "basicConstraints=critical,CA:TRUE\nsubjectAltName=DNS:localhost\n",
    );
    let sink = serve(&leaf, "127.0.0.1:0=starttls");
    let env = client(sink.port(0), "starttls", &ca_file(&ca.cert));
    let d = deferred(&env);
    d.says("the relay's certificate (CN=localhost), issued by CN=Lab Relay CA, is a CA certificate (basicConstraints CA:TRUE) used as a server certificate");
    d.says("basicConstraints=critical,CA:FALSE");
    let check = doctor_fail(&env);
    assert!(
        settings(&check).contains(&format!("fingerprint = \"sha256:{}\"", leaf.sha256())),
        "{check}"
    );
    // Named exactly (appended to ca_file), it is trusted as given.
    std::fs::write(&ca.cert, ca.pem() + &leaf.pem()).unwrap();
    flush_delivers(&env, &sink);
}

#[test]
fn a_name_mismatch_lists_the_certificate_names_even_for_an_exact_certificate() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let relay = self_signed(
        dir.path(),
        "relay",
        "relay",
        "DNS:relay.test.example,DNS:mx.test.example",
    );
    let sink = serve(&relay, "127.0.0.1:0=starttls");
    // Named in ca_file, so trusted as given: its name is still checked.
    let env = client(sink.port(0), "starttls", &ca_file(&relay.cert));
    let d = deferred(&env);
    d.says("the relay's certificate (CN=relay) is for relay.test.example, mx.test.example, not for localhost");
    d.says("tls_server_name = \"relay.test.example\"");
    let check = doctor_fail(&env);
    assert_eq!(
        settings(&check),
        ["tls_server_name = \"relay.test.example\""],
        "{check}"
    );
    add(&env, "tls_server_name = \"relay.test.example\"");
    flush_delivers(&env, &sink);
}

#[test]
fn an_expired_certificate_defers_with_its_date_even_when_named_in_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let relay = dated(dir.path(), "expired", (2020, 1, 1), (2021, 6, 30));
    let sink = serve(&relay, "127.0.0.1:0=implicit");
    let env = client(sink.port(0), "implicit", &ca_file(&relay.cert));
    let d = deferred(&env);
    d.says("the relay's certificate (CN=rcgen self signed cert) expired on 2021-06-30 00:00 UTC (");
    d.says("days ago); fix: the relay's admin must renew it");
    sink.no_event();
    let check = doctor_fail(&env);
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("expired on 2021-06-30"),
        "{check}"
    );
    assert!(
        settings(&check).is_empty(),
        "no setting accepts an expired certificate: {check}"
    );
}

#[test]
fn a_certificate_not_yet_valid_points_to_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let relay = dated(dir.path(), "future", (2090, 1, 1), (2091, 1, 1));
    let sink = serve(&relay, "127.0.0.1:0=starttls");
    let env = client(sink.port(0), "starttls", &ca_file(&relay.cert));
    let d = deferred(&env);
    d.says("is not valid before 2090-01-01 00:00 UTC, and this host's clock says");
    d.says("timedatectl");
    let check = doctor_fail(&env);
    assert!(check["fix"].as_str().unwrap().contains("clock"), "{check}");
}

#[test]
fn a_pin_mismatch_names_both_fingerprints_and_the_line_that_pins_the_new_one() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let relay = self_signed(dir.path(), "relay", "relay", "DNS:localhost");
    let sink = serve(&relay, "127.0.0.1:0=implicit");
    let old = ["AB"; 32].join(":");
    let env = client(
        sink.port(0),
        "implicit",
        &format!("fingerprint = \"sha256:{old}\""),
    );
    let new = format!("fingerprint = \"sha256:{}\"", relay.sha256());
    let d = deferred(&env);
    d.says(&format!(
        "the relay's certificate (CN=relay, sha256:{}) does not match the pinned fingerprint (fingerprint = \"sha256:{old}\")",
        relay.sha256()
    ));
    d.says(&format!("pin the new one: {new}"));
    let check = doctor_fail(&env);
    assert_eq!(settings(&check), [new], "{check}");
}

/// `openssl s_server` on a free port speaking only the TLS versions in
/// `flags` (a relay rustls cannot or may not talk to).
struct OpensslServer {
    child: Child,
    port: u16,
}

impl OpensslServer {
    fn start(pair: &Pair, flags: &[&str]) -> OpensslServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("openssl")
            .args(["s_server", "-quiet", "-accept", &port.to_string(), "-cert"])
            .arg(&pair.cert)
            .arg("-key")
            .arg(&pair.key)
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "s_server did not listen"
            );
            assert!(child.try_wait().unwrap().is_none(), "s_server exited");
            std::thread::sleep(Duration::from_millis(20));
        }
        OpensslServer { child, port }
    }
}

impl Drop for OpensslServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_relay_that_speaks_only_tls_1_1_is_unsupported_and_the_reason_is_given() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let relay = self_signed(dir.path(), "relay", "relay", "DNS:localhost");
    let server = OpensslServer::start(&relay, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    let env = client(server.port, "implicit", &ca_file(&relay.cert));
    let d = deferred(&env);
    d.says("it speaks only older versions (TLS 1.0/1.1 or SSL)");
    d.says("relaymail supports TLS 1.2 and 1.3 only: TLS 1.0 and 1.1 are deprecated as insecure (RFC 8996)");
    let check = doctor_fail(&env);
    assert!(
        check["fix"]
            .as_str()
            .unwrap()
            .contains("must enable TLS 1.2"),
        "{check}"
    );
}

#[test]
fn tls_min_version_1_3_against_a_tls_1_2_relay_says_which_version_to_allow() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let relay = self_signed(dir.path(), "relay", "relay", "DNS:localhost");
    let server = OpensslServer::start(&relay, &["-tls1_2"]);
    let env = client(
        server.port,
        "implicit",
        &format!("{}\ntls_min_version = \"1.3\"", ca_file(&relay.cert)),
    );
    let d = deferred(&env);
    d.says("the relay refused TLS 1.3 (a protocol_version alert), the only version tls_min_version = \"1.3\" allows");
    d.says("set tls_min_version = \"1.2\"");
    let check = doctor_fail(&env);
    assert_eq!(settings(&check), ["tls_min_version = \"1.2\""], "{check}");
}

#[test]
fn a_handshake_cut_by_the_relay_is_said_plainly() {
    // A relay that reads the TLS hello and hangs up (a broken TLS
    // terminator, a relay that refuses this client).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut hello = [0u8; 5];
            let _ = conn.read_exact(&mut hello);
        }
    });
    let env = client(port, "implicit", "");
    let d = deferred(&env);
    d.says("the relay closed the connection during the TLS handshake without saying why");
    d.says("it wants a client certificate (client_cert, client_key)");
    doctor_fail(&env);
}

#[test]
fn starttls_on_an_implicit_tls_port_says_set_implicit() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=implicit"]);
    let env = client(sink.port(0), "starttls", "");
    let d = deferred(&env);
    d.says(&format!(
        "port {} sent no SMTP greeting in 3 s but answers a TLS hello: it is an implicit-TLS port",
        sink.port(0)
    ));
    d.says("set tls = \"implicit\"");
    let check = doctor_fail(&env);
    assert_eq!(settings(&check), ["tls = \"implicit\""], "{check}");
}

#[test]
fn implicit_tls_on_a_starttls_port_says_set_starttls() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls"]);
    let env = client(sink.port(0), "implicit", "");
    let d = deferred(&env);
    d.says(&format!(
        "port {} answered in plain SMTP (\"220 sink.test.example ESMTP relaymail sink (receive only)\") instead of starting TLS",
        sink.port(0)
    ));
    d.says("set tls = \"starttls\"");
    let check = doctor_fail(&env);
    assert_eq!(settings(&check), ["tls = \"starttls\""], "{check}");
    // doctor shows the certificate over the mode the port really speaks.
    let out = env.run("relaymail", &["doctor"], b"");
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("INFO  certificate") && l.contains("sha256:")),
        "{}",
        stdout(&out)
    );
}

/// The sink's JSON log file's tls_failed reasons so far.
fn tls_failures(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "tls_failed")
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect()
}

/// Waits for the sink's next tls_failed line after `seen` of them.
fn next_failure(log: &Path, seen: usize) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(reason) = tls_failures(log).get(seen) {
            plain(reason);
            return reason.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no tls_failed line: {:?}",
            tls_failures(log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_sink_says_which_listener_a_failing_client_belongs_on() {
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
        [
            "--listener",
            "127.0.0.1:0=none",
            "--listener",
            "127.0.0.1:0=starttls",
            "--listener",
            "127.0.0.1:0=implicit",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect(),
        &[],
    );
    let (plain_addr, starttls_addr, implicit_addr) = (
        sink.addrs[0].clone(),
        sink.addrs[1].clone(),
        sink.addrs[2].clone(),
    );
    let mut seen = 0;

    // A TLS 1.1 device on the implicit listener: the plain one is named.
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &implicit_addr,
            "-tls1_1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", outcome(&out));
    let reason = next_failure(&log, seen);
    seen += 1;
    assert!(reason.contains("the client offered TLSv1.1"), "{reason}");
    assert!(
        reason.contains(&format!("must use the plain listener {plain_addr}")),
        "{reason}"
    );

    // A plain SMTP client that speaks first on the implicit listener.
    let mut c = TcpStream::connect(&implicit_addr).unwrap();
    c.write_all(b"EHLO device\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    let reason = next_failure(&log, seen);
    seen += 1;
    assert!(
        reason.contains(
            "the client spoke plain SMTP (\"EHLO device\") on this implicit-TLS listener"
        ),
        "{reason}"
    );
    assert!(
        reason.contains(&format!(
            "point it at the STARTTLS listener {starttls_addr}"
        )),
        "{reason}"
    );

    // A STARTTLS client that waits for a greeting, then gives up.
    drop(TcpStream::connect(&implicit_addr).unwrap());
    let reason = next_failure(&log, seen);
    seen += 1;
    assert!(
        reason.contains("the client closed the connection without sending a TLS hello on this implicit-TLS listener"),
        "{reason}"
    );

    // An implicit-TLS client on the STARTTLS listener.
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &starttls_addr])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", outcome(&out));
    let reason = next_failure(&log, seen);
    seen += 1;
    assert!(
        reason.contains("the client started a TLS handshake on this STARTTLS listener"),
        "{reason}"
    );
    assert!(
        reason.contains(&format!(
            "point it at the implicit-TLS listener {implicit_addr}"
        )),
        "{reason}"
    );

    // A client that does not trust the sink's certificate.
    let other_dir = tempfile::tempdir().unwrap();
    let other = self_signed(other_dir.path(), "other", "other", "DNS:localhost");
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &implicit_addr,
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(&other.cert)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", outcome(&out));
    let reason = next_failure(&log, seen);
    assert!(
        reason.contains("the client refused this listener's certificate (an unknown_ca alert)")
            || reason.contains(
                "the client refused this listener's certificate (a bad_certificate alert)"
            ),
        "{reason}"
    );
    assert!(
        reason.contains("sink-cert.pem"),
        "the certificate to trust is named: {reason}"
    );
}
