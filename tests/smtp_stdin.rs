//! `sendmail -bs`: an SMTP dialogue on stdin/stdout. What a program that
//! speaks SMTP to the local sendmail checks: the replies, and that each
//! accepted message is in the queue exactly as sent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;

/// The reply lines, one string per line.
fn replies(out: &std::process::Output) -> Vec<String> {
    stdout(out).lines().map(str::to_string).collect()
}

#[test]
fn a_dialogue_queues_each_message_with_dot_stuffing_undone() {
    let env = Env::new();
    let dialogue = "EHLO client.example\r\n\
        MAIL FROM:<app@example.org> SIZE=100\r\n\
        RCPT TO:<a@example.net>\r\n\
        RCPT TO:<root>\r\n\
        DATA\r\n\
        Subject: one\r\n\
        \r\n\
        ..leading dot\r\n\
        .\r\n\
        MAIL FROM:<> \r\n\
        RCPT TO:<b@example.net>\r\n\
        DATA\r\n\
        Subject: two\r\n\
        \r\n\
        second\r\n\
        .\r\n\
        QUIT\r\n";
    let out = env.sendmail(&["-bs", "-odq"], dialogue);
    assert_exit(&out, 0, &env, "-bs");
    let r = replies(&out);
    assert!(r[0].starts_with("220 "), "{r:?}");
    assert!(r.iter().any(|l| l == "250-PIPELINING"), "{r:?}");
    assert!(r.iter().any(|l| l == "250-8BITMIME"), "{r:?}");
    let queued: Vec<&String> = r.iter().filter(|l| l.contains("queued as")).collect();
    assert_eq!(queued.len(), 2, "{r:?}");
    assert_eq!(r.last().unwrap(), "221 2.0.0 Bye");
    let mut messages = env.queued();
    messages.sort_by_key(|m| m.text().contains("Subject: two"));
    let (one, two) = (&messages[0], &messages[1]);
    assert!(queued[0].ends_with(&one.id), "{queued:?} {}", one.id);
    assert_eq!(one.sender(), "app@example.org");
    assert_eq!(
        one.recipients(),
        ["a@example.net", "admin@example.com", "ops@example.org"],
        "root goes through the aliases"
    );
    assert_eq!(one.body(), b".leading dot\r\n");
    assert_eq!(two.sender(), "", "MAIL FROM:<> is the null sender");
    assert_eq!(two.body(), b"second\r\n");
    assert!(
        env.log_lines()
            .iter()
            .filter(|l| l.contains("event=queued"))
            .count()
            == 2
    );
}

#[test]
fn errors_are_smtp_replies_and_the_dialogue_goes_on() {
    let env = Env::with("[queue]\nmax_message_size = \"2k\"\n");
    let big = "x".repeat(100);
    let dialogue = format!(
        "HELO c\r\n\
         RCPT TO:<a@example.net>\r\n\
         MAIL FROM:<not an address>\r\n\
         MAIL FROM:<not@@valid>\r\n\
         MAIL FROM:<ok@example.org> SIZE=999999\r\n\
         MAIL FROM:<ok@example.org>\r\n\
         RCPT TO:<bad address@@>\r\n\
         RCPT TO:<bad@@x>\r\n\
         DATA\r\n\
         RCPT TO:<a@example.net>\r\n\
         DATA\r\n\
         {}\
         .\r\n\
         BOGUS\r\n\
         RSET\r\n\
         NOOP\r\n\
         QUIT\r\n",
        format!("{big}\r\n").repeat(40)
    );
    let out = env.sendmail(&["-bs", "-odq"], &dialogue);
    assert_exit(&out, 0, &env, "-bs");
    let r = replies(&out);
    let codes: Vec<&str> = r.iter().map(|l| &l[..3]).collect();
    assert_eq!(
        codes,
        [
            "220", "250", "503", "501", "553", "552", "250", "501", "550", "554", "250", "354",
            "552", "500", "250", "250", "221"
        ],
        "{r:?}"
    );
    assert!(r[12].contains("max_message_size"), "{}", r[12]);
    assert!(env.queued().is_empty(), "{}", env.listing());
    assert!(env.spool_files().iter().all(|f| !f.contains("tmp/")));
}

#[test]
fn input_ending_inside_data_queues_nothing() {
    let env = Env::new();
    let out = env.sendmail(
        &["-bs", "-odq"],
        "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nSubject: cut\r\n\r\nhalf",
    );
    assert_exit(&out, 74, &env, "-bs cut off");
    assert!(!stdout(&out).contains("queued as"), "{}", stdout(&out));
    assert!(stderr(&out).contains("not queued"), "{}", stderr(&out));
    assert!(env.queued().is_empty(), "{}", env.listing());
}

#[test]
fn swaks_over_a_pipe_with_pipelining() {
    if !have("swaks") {
        return;
    }
    let env = Env::new();
    let sendmail = env.cmd("sendmail");
    let program = sendmail.get_program().to_string_lossy().into_owned();
    let args: Vec<String> = sendmail
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let pipe = format!("{program} {} -bs -odq", args.join(" "));
    let mut swaks = std::process::Command::new("swaks");
    swaks
        .args(["--pipe", &pipe, "--pipeline"])
        .args(["--from", "app@example.org", "--to", "ops@example.net"])
        .args(["--header", "Subject: via swaks"])
        .args(["--body", ".dotted line\nsecond"]);
    for (key, value) in sendmail.get_envs() {
        match value {
            Some(v) => swaks.env(key, v),
            None => swaks.env_remove(key),
        };
    }
    let out = swaks.output().unwrap();
    assert!(out.status.success(), "swaks: {}", outcome(&out));
    let q = env.only_message();
    assert_eq!(q.recipients(), vec!["ops@example.net".to_string()]);
    assert!(q.text().contains("Subject: via swaks"));
    // swaks ends its body with blank lines of its own.
    assert!(
        q.body().starts_with(b".dotted line\r\nsecond\r\n"),
        "a leading dot survives stuffing: {:?}",
        String::from_utf8_lossy(&q.body())
    );
}
