//! Queue management as an admin uses it: mailq, queue list --json, show,
//! hold, release, delete, clean.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;

fn queue_two(env: &Env) -> (String, String) {
    assert_exit(
        &env.sendmail(&["-f", "a@example.com", "root"], "Subject: first\n\none\n"),
        0,
        env,
        "first",
    );
    assert_exit(
        &env.sendmail(
            &["-f", "b@example.com", "x@example.net"],
            "Subject: second\n\ntwo\n",
        ),
        0,
        env,
        "second",
    );
    let q = env.queued();
    (q[0].id.clone(), q[1].id.clone())
}

#[test]
fn list_json_describes_every_message() {
    let env = Env::new();
    let (first, second) = queue_two(&env);
    let out = env.run("relaymail", &["queue", "list", "--json"], b"");
    assert_exit(&out, 0, &env, "list --json");
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], first.as_str());
    assert_eq!(list[1]["id"], second.as_str());
    assert_eq!(list[0]["sender"], "a@example.com");
    assert_eq!(list[0]["recipients"][0]["address"], "admin@example.com");
    assert_eq!(list[0]["recipients"][0]["original"], "root");
    assert_eq!(list[0]["recipients"][0]["status"], "pending");
    assert_eq!(list[0]["held"], false);
}

#[test]
fn show_prints_state_and_headers() {
    let env = Env::new();
    let (first, _) = queue_two(&env);
    let out = env.run("relaymail", &["queue", "show", &first.to_lowercase()], b"");
    assert_exit(&out, 0, &env, "show");
    let text = stdout(&out);
    assert!(text.contains(&format!("Queue ID:  {first}")), "{text}");
    assert!(text.contains("Sender:    <a@example.com>"), "{text}");
    assert!(
        text.contains("pending  <admin@example.com> (from root)"),
        "{text}"
    );
    assert!(text.contains("\nSubject: first\n"), "{text}");
    assert!(!text.contains("one"), "body is not shown: {text}");
}

#[test]
fn hold_release_and_delete() {
    let env = Env::new();
    let (first, second) = queue_two(&env);
    let out = env.run("relaymail", &["queue", "hold", &first], b"");
    assert_exit(&out, 0, &env, "hold");
    let mailq = stdout(&env.run("mailq", &[], b""));
    assert!(mailq.contains(&format!("{first}!")), "{mailq}");
    assert!(mailq.contains("on hold"), "{mailq}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&env.run(
        "relaymail",
        &["queue", "list", "--json"],
        b"",
    )))
    .unwrap();
    assert_eq!(json[0]["held"], true);

    assert_exit(
        &env.run("relaymail", &["queue", "release", &first], b""),
        0,
        &env,
        "release",
    );
    assert!(!stdout(&env.run("mailq", &[], b"")).contains("on hold"));

    let out = env.run("relaymail", &["queue", "delete", &first], b"");
    assert_exit(&out, 0, &env, "delete");
    assert_eq!(stdout(&out), format!("{first}: deleted\n"));
    let left: Vec<String> = env.queued().into_iter().map(|q| q.id).collect();
    assert_eq!(left, std::slice::from_ref(&second));
    assert!(
        !env.spool_files().iter().any(|f| f.contains(&first)),
        "no file of {first} left"
    );
    let lines = env.log_lines();
    for event in ["event=held", "event=released", "event=deleted"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("{first}: {event}"))),
            "{event} logged: {lines:?}"
        );
    }
}

#[test]
fn bad_or_unknown_ids_are_usage_errors() {
    let env = Env::new();
    queue_two(&env);
    let out = env.run("relaymail", &["queue", "delete", "../../etc/passwd"], b"");
    assert_exit(&out, 64, &env, "bad id");
    assert!(
        stderr(&out).contains("is not a queue ID"),
        "{}",
        stderr(&out)
    );
    let out = env.run("relaymail", &["queue", "show", "0000000000000000"], b"");
    assert_exit(&out, 64, &env, "unknown id");
    assert!(stderr(&out).contains("no message 0000000000000000 in the queue"));
    assert_eq!(env.queued().len(), 2);
}

#[test]
fn a_message_locked_by_another_process_is_busy() {
    let env = Env::new();
    let (first, _) = queue_two(&env);
    let file = std::fs::File::open(env.spool.join("queue").join(format!("{first}.msg"))).unwrap();
    let _lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    for action in ["delete", "hold"] {
        let out = env.run("relaymail", &["queue", action, &first], b"");
        assert_exit(&out, 75, &env, action);
        assert!(stderr(&out).contains("being delivered or changed by another process"));
    }
    assert_eq!(env.queued().len(), 2);
}

#[test]
fn config_check_prints_effective_settings() {
    let env = Env::new();
    let out = env.run("relaymail", &["config", "check"], b"");
    assert_exit(&out, 0, &env, "config check");
    let text = stdout(&out);
    assert!(text.starts_with("# configuration OK:"), "{text}");
    assert!(text.contains("hostname = \"host.test.example\""), "{text}");
    assert!(text.contains("mode = \"user\""), "{text}");
    assert!(text.contains("max_message_size = 67108864"), "{text}");
    // Under the names the file uses, computed defaults filled in.
    assert!(text.contains("[[sink.listener]]"), "{text}");
    assert!(!text.contains("sink.listeners"), "{text}");
    assert!(text.contains("max_connections_per_client = 25"), "{text}");
}

#[test]
fn mailq_shows_why_a_message_is_stuck() {
    let env = Env::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(&format!(
        "\n[smarthost]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n"
    ));
    std::fs::write(&env.config, config).unwrap();
    let out = env.sendmail(&["-odi", "x@example.net"], "\nb\n");
    assert_exit(&out, 75, &env, "relay down");
    let out = env.run("mailq", &[], b"");
    let listing = stdout(&out);
    assert!(
        listing.contains("Connection refused") && listing.contains("(connect failed)"),
        "the last error is shown under the sender:\n{listing}"
    );
}
