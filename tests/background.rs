//! Background delivery (`sendmail` with the default -odb) shares sessions:
//! a child that finds every runner slot taken leaves its message to the
//! runner at work, which takes newly queued mail over its open session.
//! Nothing waits for the timer, not even mail queued while a runner is
//! finishing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::sink::Sink;
use common::*;

fn relay_env(sink: &Sink, linger: &str) -> Env {
    Env::with(&format!(
        "[smarthost]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nsession_linger = \"{linger}\"\n",
        sink.port(0)
    ))
}

/// One runner slot: every submission made while a runner works is left
/// to that runner.
fn one_slot_env(sink: &Sink, linger: &str) -> Env {
    Env::with(&format!(
        "[smarthost]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nconnections = 1\nsession_linger = \"{linger}\"\n",
        sink.port(0)
    ))
}

/// Returns once the runner has ended: it holds runner.0 until then.
fn wait_for_the_runner_to_end(env: &Env) {
    let slot = std::fs::File::open(env.spool.join("runner.0")).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(nix::fcntl::Flock::lock(slot, nix::fcntl::FlockArg::LockExclusive).is_ok());
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(30)),
        Ok(true),
        "the runner ends"
    );
}

/// Submits `n` messages with -odb, one process each, with `pause` between
/// them; then waits (bounded) until the sink has stored all of them, and
/// returns, per subject, the client addresses (sessions) it came over.
fn submit_and_collect(
    env: &Env,
    sink: &Sink,
    n: usize,
    pause: impl Fn(usize) -> Duration,
) -> BTreeMap<String, Vec<String>> {
    for i in 0..n {
        let out = env.sendmail(
            &["x@example.net"],
            &format!("Subject: burst {i}\n\nbody {i}\n"),
        );
        assert_exit(&out, 0, env, "submission");
        std::thread::sleep(pause(i));
    }
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.values().map(Vec::len).sum::<usize>() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match sink.events.recv_timeout(left) {
            Ok(e) => got
                .entry(e["subject"].as_str().unwrap().to_string())
                .or_default()
                .push(e["client"].as_str().unwrap().to_string()),
            Err(_) => panic!(
                "only {} of {n} delivered without a timer or flush; still queued:\n{}",
                got.len(),
                env.listing()
            ),
        }
    }
    got
}

#[test]
fn a_burst_of_background_submissions_shares_a_handful_of_sessions() {
    let sink = Sink::start(&["--listen", "127.0.0.1:0"]);
    let env = relay_env(&sink, "2s");
    let n = 100;
    let got = submit_and_collect(&env, &sink, n, |_| Duration::ZERO);
    assert_eq!(got.len(), n, "every message once");
    assert!(
        got.values().all(|c| c.len() == 1),
        "no message twice: {got:?}"
    );
    let sessions: BTreeSet<&String> = got.values().flatten().collect();
    eprintln!("{n} messages over {} sessions", sessions.len());
    assert!(
        sessions.len() <= 12,
        "{n} background submissions used {} sessions",
        sessions.len()
    );
    sink.no_event();
}

/// With no linger a runner ends the moment the queue looks empty, so
/// submissions keep landing while runners finish: each one must still be
/// delivered by a runner, never left for the timer.
#[test]
fn mail_queued_while_a_runner_finishes_is_not_left_for_the_timer() {
    let sink = Sink::start(&["--listen", "127.0.0.1:0"]);
    let env = relay_env(&sink, "0");
    let n = 200;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let pauses: Vec<Duration> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            Duration::from_micros(state % 8000)
        })
        .collect();
    let got = submit_and_collect(&env, &sink, n, |i| pauses[i]);
    assert_eq!(got.len(), n, "every message once");
    assert!(got.values().all(|c| c.len() == 1), "no message twice");
    // Nothing is left behind in the queue.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env.queued().is_empty() {
        assert!(Instant::now() < deadline, "left queued:\n{}", env.listing());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `-odq` means "queue only": a runner at work leaves such a message to
/// the queue run (flush, the timer) instead of taking it.
#[test]
fn a_runner_leaves_queue_only_mail_to_the_queue_run() {
    let sink = Sink::start(&["--listen", "127.0.0.1:0"]);
    let env = relay_env(&sink, "3s");
    let out = env.sendmail(&["x@example.net"], "Subject: background\n\nb\n");
    assert_exit(&out, 0, &env, "-odb");
    // Delivered: the runner is past its first look at the queue (which
    // takes -odq mail too) and lingers.
    assert_eq!(sink.event()["subject"], "background");
    let out = env.sendmail(&["-odq", "y@example.net"], "Subject: queue only\n\nq\n");
    assert_exit(&out, 0, &env, "-odq");
    wait_for_the_runner_to_end(&env);
    let left = env.only_message();
    assert!(left.text().contains("Subject: queue only"));
    assert_eq!(
        left.env_value("attempts").unwrap().as_integer(),
        Some(0),
        "untried"
    );
    sink.no_event();
    let out = env.run("relaymail", &["flush", "--due"], b"");
    assert_exit(&out, 0, &env, "the queue run");
    assert_eq!(sink.event()["subject"], "queue only");
}

/// `-odi` delivers in the foreground and reports the outcome, so a runner
/// lingering at the same moment must not take the message from under it
/// (the submitter would then report 75 for mail that was sent). Made
/// deterministic by an -odi submission whose own delivery cannot start
/// (its configuration names a missing password file): the message stays
/// untried, and the lingering runner must leave it.
#[test]
fn a_lingering_runner_leaves_an_interactive_submission_to_its_submitter() {
    let sink = Sink::start(&["--listen", "127.0.0.1:0"]);
    let env = relay_env(&sink, "3s");
    let broken = env.path("broken.toml");
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "tls = \"none\"\n",
        &format!(
            "tls = \"none\"\nallow_cleartext_auth = true\nusername = \"u\"\npassword_file = {:?}\n",
            env.path("missing").display().to_string()
        ),
    );
    std::fs::write(&broken, text).unwrap();
    let out = env.sendmail(&["x@example.net"], "Subject: starts a runner\n\nb\n");
    assert_exit(&out, 0, &env, "-odb");
    assert_eq!(sink.event()["subject"], "starts a runner");
    let out = run_with_stdin(
        env.cmd("sendmail")
            .env("RELAYMAIL_CONFIG", &broken)
            .args(["-odi", "y@example.net"]),
        b"Subject: interactive\n\nb\n",
    );
    assert_ne!(out.status.code(), Some(0), "{}", outcome(&out));
    wait_for_the_runner_to_end(&env);
    sink.no_event();
    let left = env.only_message();
    assert!(left.text().contains("Subject: interactive"));
    assert_eq!(
        left.env_value("attempts").unwrap().as_integer(),
        Some(0),
        "untried"
    );
}

/// A lingering runner looks at the queue again whenever it changes. A
/// backlog it has already judged (here held messages) is not read again
/// each time: with a large queue, every new submission would otherwise
/// cost the runner a read of every envelope.
#[test]
fn a_lingering_runner_reads_a_held_backlog_once_not_at_every_submission() {
    if !have("strace") {
        return;
    }
    let sink = Sink::start(&["--listen", "127.0.0.1:0"]);
    let env = one_slot_env(&sink, "3s");
    for i in 0..20 {
        let out = env.sendmail(
            &["-odq", "h@example.net"],
            &format!("Subject: held {i}\n\nh\n"),
        );
        assert_exit(&out, 0, &env, "-odq");
    }
    let held: Vec<String> = env.queued().into_iter().map(|q| q.id).collect();
    let mut hold = vec!["queue", "hold"];
    hold.extend(held.iter().map(String::as_str));
    assert_exit(&env.run("relaymail", &hold, b""), 0, &env, "hold");

    let trace = env.path("trace");
    let mut traced = env.traced("sendmail", "openat", &trace, &["x@example.net"]);
    let runner = std::thread::spawn(move || run_with_stdin(&mut traced, b"Subject: new 0\n\nb\n"));
    assert_eq!(sink.event()["subject"], "new 0");
    let later = 10;
    for i in 1..=later {
        let out = env.sendmail(&["x@example.net"], &format!("Subject: new {i}\n\nb\n"));
        assert_exit(&out, 0, &env, "a later submission");
        assert_eq!(sink.event()["subject"], format!("new {i}"));
    }
    let out = runner.join().unwrap();
    assert_exit(&out, 0, &env, "the traced submission and its runner");
    let text = std::fs::read_to_string(&trace).unwrap();
    for id in &held {
        // One look reads the state file (or the queue file when there is
        // none): two looks, start and end, are the most expected.
        let opens = text.lines().filter(|l| l.contains(id.as_str())).count();
        assert!(
            (1..=4).contains(&opens),
            "held message {id} opened {opens} times by a runner that took {later} new messages:\n{text}"
        );
    }
    assert_eq!(env.queued().len(), held.len(), "the held messages stay");
    sink.no_event();
}

/// While a runner is at work, an -odb submission leaves its message to it
/// without starting a background process of its own (a burst would
/// otherwise cost a process per message), and the runner delivers it.
#[test]
fn a_submission_starts_no_process_while_a_runner_is_at_work() {
    if !have("strace") {
        return;
    }
    let sink = Sink::start(&["--listen", "127.0.0.1:0"]);
    let env = one_slot_env(&sink, "5s");
    let out = env.sendmail(&["x@example.net"], "Subject: starts a runner\n\nb\n");
    assert_exit(&out, 0, &env, "first");
    assert_eq!(sink.event()["subject"], "starts a runner");
    let trace = env.path("trace");
    let mut traced = env.traced(
        "sendmail",
        "execve,clone,clone3,fork,vfork",
        &trace,
        &["y@example.net"],
    );
    let out = run_with_stdin(&mut traced, b"Subject: left to the runner\n\nb\n");
    assert_exit(&out, 0, &env, "a submission while the runner lingers");
    assert_eq!(sink.event()["subject"], "left to the runner");
    let text = std::fs::read_to_string(&trace).unwrap();
    let started: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("resumed") && !l.contains("+++"))
        .filter(|l| l.contains("execve(") || l.contains("clone") || l.contains("fork("))
        .collect();
    assert_eq!(started.len(), 1, "only the submission itself:\n{text}");
    sink.no_event();
}
