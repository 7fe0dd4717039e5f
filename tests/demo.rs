//! The README's main job: `relaymail demo` relays a message end to end
//! through the built-in sink and leaves nothing behind.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;

#[test]
fn demo_relays_end_to_end_and_cleans_up() {
    let out = std::process::Command::new(BIN)
        .arg("demo")
        .env_remove("RELAYMAIL_CONFIG")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    assert_eq!(text.matches("event=delivery").count(), 2, "{text}");
    assert_eq!(text.matches("status=sent").count(), 2, "{text}");
    assert!(text.contains("Mail queue is empty"), "{text}");
    assert!(
        text.contains("with ESMTPSA") && text.contains("tls=TLSv1.3") && text.contains("auth=demo"),
        "{text}"
    );
    assert!(
        text.contains("From: CronDaemon <root@demo.example.com>"),
        "{text}"
    );
    let dir = text
        .split("removes ")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches(" now.");
    assert!(!std::path::Path::new(dir).exists(), "{dir} removed");
    let port = text
        .split("relaymail sink on 127.0.0.1:")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap();
    assert!(
        std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err(),
        "the demo's sink is stopped"
    );
}
