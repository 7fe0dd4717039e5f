//! `[smarthost.oauth2]` end to end (issue 14). So far the sink's side:
//! relaymail's own sink, the relay in these tests, takes XOAUTH2 and
//! OAUTHBEARER and records the AUTH user and a digest of the bearer token,
//! so that a test can check which token a client presented.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod authserver;
mod common;

use std::io::BufRead;
use std::time::Duration;

use authserver::sha256_hex;
use common::sink::Sink;

/// A bare SMTP client: one command, one (possibly multi-line) reply.
struct Raw {
    stream: std::net::TcpStream,
    reader: std::io::BufReader<std::net::TcpStream>,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut raw = Raw { stream, reader };
        assert!(raw.reply().starts_with("220 "));
        raw
    }

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
        use std::io::Write;
        self.stream
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }
}

#[test]
fn the_sink_takes_xoauth2_and_oauthbearer_and_records_the_user_and_a_token_digest() {
    use relaymail::message::base64::encode;
    let sink = Sink::start(&["--listen", "127.0.0.1:0", "--auth", "accept-any"]);
    let cases = [
        (
            "OAUTHBEARER",
            "n,a=ups=2C01@lab,\x01host=sink\x01port=25\x01auth=Bearer ya29.bearer-one\x01\x01",
            "ups,01@lab",
            "ya29.bearer-one",
        ),
        (
            "XOAUTH2",
            "user=bmc@lab\x01auth=Bearer ya29.bearer-two\x01\x01",
            "bmc@lab",
            "ya29.bearer-two",
        ),
    ];
    for (mechanism, response, user, token) in cases {
        let mut c = Raw::connect(sink.port(0));
        let ehlo = c.cmd("EHLO device");
        assert!(
            ehlo.contains("AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER"),
            "{ehlo}"
        );
        // Without an initial response: the 334 challenge, then the answer.
        assert!(c.cmd(&format!("AUTH {mechanism}")).starts_with("334 "));
        assert!(
            c.cmd(&encode(response.as_bytes())).starts_with("235 "),
            "{mechanism}"
        );
        assert!(c.cmd("MAIL FROM:<dev@lab>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<root@lab>").starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        assert!(c.cmd("Subject: t\r\n\r\nb\r\n.").starts_with("250"));
        let e = sink.event();
        assert_eq!(e["auth_user"], user);
        assert_eq!(e["auth_mechanism"], mechanism);
        assert_eq!(e["auth_token_sha256"], sha256_hex(token));
        let index =
            std::fs::read_to_string(sink.dir.path().join("state/sink-index.jsonl")).unwrap();
        assert!(
            !index.contains(token),
            "the index keeps no usable token: {index}"
        );
    }

    // `users` mode: a wrong token gets Gmail's answer, an error document
    // in a 334 first, then 535 once the client has answered it.
    let sink = Sink::start(&[
        "--listen",
        "127.0.0.1:0",
        "--auth",
        "users",
        "--auth-user",
        "ups@lab=ya29.right",
    ]);
    let mut c = Raw::connect(sink.port(0));
    c.cmd("EHLO device");
    let wrong = encode(b"n,a=ups@lab,\x01auth=Bearer ya29.wrong\x01\x01");
    let challenge = c.cmd(&format!("AUTH OAUTHBEARER {wrong}"));
    assert!(challenge.starts_with("334 "), "{challenge}");
    assert!(c.cmd("AQ==").starts_with("535 5.7.8"));
    let right = encode(b"n,a=ups@lab,\x01auth=Bearer ya29.right\x01\x01");
    assert!(c
        .cmd(&format!("AUTH OAUTHBEARER {right}"))
        .starts_with("235 "));
}
