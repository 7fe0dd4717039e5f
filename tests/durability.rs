//! Nothing lost, nothing half-visible: SIGKILL at random moments while a
//! large message streams in, and many concurrent submitters.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

/// A small deterministic generator (xorshift), seeded from the clock and
/// printed so that a failing run can be repeated with RELAYMAIL_TEST_SEED.
struct Rng(u64);
impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("RELAYMAIL_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("seed: RELAYMAIL_TEST_SEED={seed}");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A 4 MB message with LF endings, and its body as it must be stored.
fn large_message() -> (Vec<u8>, Vec<u8>) {
    let mut body = Vec::new();
    let mut n: u64 = 0x9e37_79b9_7f4a_7c15;
    for line in 0..50_000 {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        body.extend_from_slice(
            format!("{line:06} {n:020} grüße {:x}\n", n.rotate_left(17)).as_bytes(),
        );
    }
    let mut message = b"Subject: crash test\nTo: x@example.net\n\n".to_vec();
    message.extend_from_slice(&body);
    let stored = String::from_utf8(body)
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes();
    (message, stored)
}

#[test]
fn sigkill_at_random_moments_never_leaves_a_broken_message() {
    let env = Env::new();
    let (message, expected_body) = large_message();
    let rounds: usize = std::env::var("RELAYMAIL_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut rng = Rng::new();

    // How long one whole submission takes here, to spread kills over it.
    let started = Instant::now();
    let out = env.run("sendmail", &["-odq", "-i", "x@example.net"], &message);
    assert_exit(&out, 0, &env, "reference submission");
    let full = started.elapsed().max(Duration::from_millis(5));

    let (mut killed, mut finished) = (0, 0);
    for _ in 0..rounds {
        let mut child = env
            .cmd("sendmail")
            .args(["-odq", "-i", "x@example.net"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = message.clone();
        let writer = std::thread::spawn(move || {
            for chunk in data.chunks(64 << 10) {
                if stdin.write_all(chunk).is_err() {
                    return;
                }
            }
        });
        let delay = full.as_micros() as u64 * (rng.next() % 130) / 100;
        std::thread::sleep(Duration::from_micros(delay));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let _ = writer.join();
        if status.success() {
            finished += 1
        } else {
            killed += 1
        }
    }
    eprintln!("{rounds} rounds: {killed} killed, {finished} finished first");
    assert!(
        killed > 0,
        "no round was interrupted; the test did not test anything"
    );

    // Every visible message is complete and intact, byte for byte.
    let queued = env.queued();
    assert!(
        queued.len() > finished,
        "finished submissions are all queued (+1 reference)"
    );
    for q in &queued {
        let size = q.env_value("size").unwrap().as_integer().unwrap() as usize;
        assert_eq!(
            q.msg.len(),
            size,
            "{}: size recorded in .env matches the file",
            q.id
        );
        assert!(
            q.body() == expected_body,
            "{}: body differs from what was sent",
            q.id
        );
        assert!(q.header().contains("Subject: crash test"), "{}", q.id);
    }

    // The next submission removes leftovers in tmp/; `queue clean` those in queue/.
    let out = env.sendmail(&["x@example.net"], "\nafter the crashes\n");
    assert_exit(&out, 0, &env, "next run");
    let files = env.spool_files();
    assert!(
        !files.iter().any(|f| f.starts_with("tmp/")),
        "tmp/ not cleaned: {files:?}"
    );
    let clean = env.run("relaymail", &["queue", "clean"], b"");
    assert_exit(&clean, 0, &env, "queue clean");
    // What is left in queue/ is exactly the committed messages (a .msg
    // each, with or without a .env of a changed state).
    let files = env.spool_files();
    let committed: BTreeSet<String> = env
        .queued()
        .iter()
        .map(|q| format!("queue/{}.msg", q.id))
        .collect();
    for f in &files {
        let msg = f.replace(".env", ".msg");
        assert!(
            committed.contains(&msg),
            "orphan {f} left after clean: {files:?}"
        );
    }
    let logged = env
        .log_lines()
        .iter()
        .filter(|l| l.contains("event=orphan_removed"))
        .count();
    let listing_after = env.queued().len();
    assert_eq!(
        listing_after,
        queued.len() + 1,
        "cleaning removed no committed message"
    );
    eprintln!("{logged} orphan removals logged");
}

#[test]
fn fifty_concurrent_submissions_are_fifty_intact_messages() {
    let env = std::sync::Arc::new(Env::new());
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let env = env.clone();
            std::thread::spawn(move || {
                let body = format!(
                    "Subject: concurrent {i}\n\nthis is message number {i}\n{}\n",
                    "filler ".repeat(200 + i * 7)
                );
                let out = env.sendmail(&["-odq", "x@example.net"], &body);
                (i, out)
            })
        })
        .collect();
    for h in handles {
        let (i, out) = h.join().unwrap();
        assert_exit(&out, 0, &env, &format!("submission {i}"));
    }
    let queued = env.queued();
    assert_eq!(queued.len(), 50, "{}", env.listing());
    let ids: BTreeSet<&str> = queued.iter().map(|q| q.id.as_str()).collect();
    assert_eq!(ids.len(), 50, "IDs are distinct");
    let mut seen = BTreeSet::new();
    for q in &queued {
        let text = q.text();
        let i: usize = text
            .split("this is message number ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let want = format!(
            "\r\n\r\nthis is message number {i}\r\n{}\r\n",
            "filler ".repeat(200 + i * 7)
        );
        assert!(text.ends_with(&want), "message {i} intact");
        assert!(text.contains(&format!("Subject: concurrent {i}\r\n")));
        seen.insert(i);
    }
    assert_eq!(seen, (0..50).collect::<BTreeSet<_>>());
}
