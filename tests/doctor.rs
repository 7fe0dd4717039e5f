//! `relaymail doctor`: each broken setup an admin meets gives the right
//! FAIL line and a non-zero exit; a working one gives OK lines and exit 0.
//! The password never appears in the output.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::sink::Sink;
use common::*;

const PASSWORD: &str = "d0ctor-s3cret";

/// A client whose [smarthost] is `port` on `host`, with `extra` lines.
fn client(host: &str, port: u16, tls: &str, extra: &str) -> Env {
    let env = Env::new();
    let password = env.path("password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(&format!(
        "\n[smarthost]\nhost = {host:?}\nport = {port}\ntls = \"{tls}\"\nusername = \"alerts\"\npassword_file = {:?}\n{extra}\n",
        password.display().to_string()
    ));
    std::fs::write(&env.config, config).unwrap();
    env
}

fn sink_ca(sink: &Sink) -> String {
    format!(
        "ca_file = {:?}",
        sink.dir
            .path()
            .join("state/sink-cert.pem")
            .display()
            .to_string()
    )
}

/// Runs doctor; returns (exit code, text) after checking the secret is absent.
fn doctor(env: &Env, args: &[&str]) -> (i32, String) {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    let out = env.run("relaymail", &all, b"");
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains(PASSWORD), "the password leaked:\n{text}");
    (out.status.code().unwrap(), text)
}

fn line<'a>(text: &'a str, status: &str, step: &str) -> &'a str {
    text.lines()
        .find(|l| {
            let mut w = l.split_whitespace();
            w.next() == Some(status) && w.next() == Some(step)
        })
        .unwrap_or_else(|| panic!("no {status} {step} line in:\n{text}"))
}

#[test]
fn a_working_starttls_relay_is_all_ok_and_a_test_message_arrives() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let env = client("localhost", sink.port(0), "starttls", &sink_ca(&sink));
    let (code, text) = doctor(&env, &["--send-to", "ops@example.net"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        line(&text, "OK", "tls").contains("TLSv1.3/TLS_AES_"),
        "{text}"
    );
    assert!(line(&text, "OK", "ehlo").contains("STARTTLS"), "{text}");
    assert!(line(&text, "OK", "auth").contains("PLAIN as alerts accepted"));
    assert!(line(&text, "INFO", "certificate").contains("sha256:"));
    assert!(line(&text, "OK", "send").contains("250"));
    let e = sink.event();
    assert_eq!(e["rcpt"], serde_json::json!(["ops@example.net"]));
    assert!(e["subject"]
        .as_str()
        .unwrap()
        .contains("relaymail doctor test"));
}

#[test]
fn a_plain_relay_and_json_output() {
    let sink = Sink::start(&["--listen", "127.0.0.1:0"]);
    let env = client("127.0.0.1", sink.port(0), "none", "");
    // No username for a plain lab relay.
    let config: String = std::fs::read_to_string(&env.config)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("username") && !l.starts_with("password_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&env.config, config).unwrap();
    let (code, text) = doctor(&env, &["--json"]);
    assert_eq!(code, 0, "{text}");
    let doc: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(doc["ok"], true);
    let steps: Vec<(&str, &str)> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["step"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert!(steps.contains(&("banner", "OK")), "{steps:?}");
    assert!(
        steps.contains(&("tls", "WARN")),
        "cleartext is a warning: {steps:?}"
    );
}

#[test]
fn a_closed_port_fails_at_connect() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = client("127.0.0.1", port, "starttls", "");
    let (code, text) = doctor(&env, &[]);
    assert_eq!(code, 69, "{text}");
    assert!(line(&text, "FAIL", "connect").contains("refused"), "{text}");
}

#[test]
fn an_unresolvable_host_fails_at_dns() {
    let env = client("relay.invalid", 587, "starttls", "");
    let (code, text) = doctor(&env, &[]);
    assert_eq!(code, 69, "{text}");
    assert!(
        line(&text, "FAIL", "dns").contains("relay.invalid"),
        "{text}"
    );
}

#[test]
fn a_wrong_password_fails_at_auth_without_showing_it() {
    let sink = Sink::start(&[
        "--listener",
        "127.0.0.1:0=starttls",
        "--auth",
        "users",
        "--auth-user",
        "alerts=another",
    ]);
    let env = client("localhost", sink.port(0), "starttls", &sink_ca(&sink));
    let (code, text) = doctor(&env, &[]);
    assert_eq!(code, 69, "{text}");
    assert!(
        line(&text, "FAIL", "auth").contains("authentication failed: 535"),
        "{text}"
    );
}

#[test]
fn a_self_signed_certificate_without_its_ca_fails_and_is_shown() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=implicit", "--auth", "accept-any"]);
    let env = client("localhost", sink.port(0), "implicit", "");
    let (code, text) = doctor(&env, &[]);
    assert_eq!(code, 69, "{text}");
    let tls = line(&text, "FAIL", "tls");
    assert!(tls.contains("handshake"), "{text}");
    assert!(
        text.contains("set ca_file"),
        "the fix names ca_file:\n{text}"
    );
    assert!(
        line(&text, "INFO", "certificate").contains("rcgen self signed cert"),
        "the presented chain is shown:\n{text}"
    );
}

#[test]
fn a_pinned_fingerprint_mismatch_fails() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let wrong = format!("fingerprint = \"sha256:{}\"", ["AB"; 32].join(":"));
    let env = client("localhost", sink.port(0), "starttls", &wrong);
    let (code, text) = doctor(&env, &[]);
    assert_eq!(code, 69, "{text}");
    assert!(
        line(&text, "FAIL", "tls").contains("does not match the pinned fingerprint"),
        "{text}"
    );
}

#[test]
fn a_broken_configuration_is_a_fail_line_not_a_crash() {
    let env = Env::new();
    std::fs::write(&env.config, "[smarthost]\nhots = \"x\"\n").unwrap();
    let (code, text) = doctor(&env, &[]);
    assert_eq!(code, 69, "{text}");
    assert!(line(&text, "FAIL", "config").contains("hots"), "{text}");
}

#[test]
fn a_password_file_others_can_read_fails() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let env = client("localhost", sink.port(0), "starttls", &sink_ca(&sink));
    std::fs::set_permissions(env.path("password"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, text) = doctor(&env, &[]);
    assert_eq!(code, 69, "{text}");
    assert_eq!(
        text.matches("readable by others").count(),
        1,
        "reported once:\n{text}"
    );
    assert!(
        line(&text, "FAIL", "credentials").contains("readable by others"),
        "{text}"
    );
}

#[test]
fn send_to_goes_through_the_aliases_and_a_bad_address_is_a_usage_error() {
    let sink = Sink::start(&["--listener", "127.0.0.1:0=starttls", "--auth", "accept-any"]);
    let env = client("localhost", sink.port(0), "starttls", &sink_ca(&sink));
    let (code, text) = doctor(&env, &["--send-to", "root"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        sink.event()["rcpt"],
        serde_json::json!(["admin@example.com", "ops@example.org"]),
        "root's aliases, as a submission would have it"
    );
    for bad in ["", "a@b.org>\r\nRSET", "x@y> NOTIFY=SUCCESS"] {
        let (code, text) = doctor(&env, &["--send-to", bad]);
        assert_eq!(code, 64, "{bad:?}: {text}");
        assert!(text.contains("--send-to"), "{text}");
    }
    sink.no_event();
}
