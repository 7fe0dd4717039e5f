//! The queue file format: a submission commits with two flushes (the
//! queue file, then the directory), and a spool written by the previous
//! release's code path (format 1, `tests/fixtures/spool-format-1`) is still
//! listed, shown and delivered as before.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::sink::Sink;
use common::*;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/spool-format-1/queue"
);
const OLD_PLAIN: &str = "1K1Q17J097J0056V";
const OLD_TRIED: &str = "1K1Q17J0E45ADSBR";

/// A spool holding the format-1 fixture, with a relay on `port`; the
/// fixture is old, so nothing may expire while the test runs.
fn upgraded(port: u16) -> Env {
    let env = Env::with(&format!(
        "[smarthost]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\n[queue]\nmax_lifetime = \"3650d\"\n"
    ));
    // Queue once so that the spool directories exist, then drop it.
    assert_exit(
        &env.sendmail(&["-odq", "x@example.net"], "\nb\n"),
        0,
        &env,
        "prepare",
    );
    let fresh = env.only_message();
    let queue = env.spool.join("queue");
    std::fs::remove_file(queue.join(format!("{}.msg", fresh.id))).unwrap();
    for entry in std::fs::read_dir(FIXTURE).unwrap().flatten() {
        std::fs::copy(entry.path(), queue.join(entry.file_name())).unwrap();
    }
    env
}

#[test]
fn a_format_1_spool_is_listed_shown_and_delivered_after_the_upgrade() {
    let sink = Sink::start(&["--listen", "127.0.0.1:0"]);
    let env = upgraded(sink.port(0));
    let queued = env.queued();
    let ids: Vec<&str> = queued.iter().map(|q| q.id.as_str()).collect();
    assert_eq!(ids, [OLD_PLAIN, OLD_TRIED]);

    let out = env.run("mailq", &[], b"");
    assert_exit(&out, 0, &env, "mailq");
    let listing = stdout(&out);
    for want in [
        OLD_PLAIN,
        OLD_TRIED,
        "a@example.net",
        "b@example.net",
        "c@example.net",
        "Connection refused",
    ] {
        assert!(listing.contains(want), "mailq lacks {want}:\n{listing}");
    }
    let out = env.run("relaymail", &["queue", "show", OLD_TRIED, "--json"], b"");
    assert_exit(&out, 0, &env, "queue show");
    let shown: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["attempts"], 1, "{shown}");
    assert!(shown["header"]
        .as_str()
        .unwrap()
        .contains("Subject: tried once by the previous release"));

    let out = env.run("relaymail", &["flush"], b"");
    assert_exit(&out, 0, &env, "flush of the old spool");
    let mut subjects = vec![sink.event()["subject"].as_str().unwrap().to_string()];
    subjects.push(sink.event()["subject"].as_str().unwrap().to_string());
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "queued by the previous release",
            "tried once by the previous release"
        ]
    );
    let stored = sink.stored();
    let plain = stored
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .find(|t| t.contains("queued by the previous release"))
        .unwrap();
    assert!(
        plain
            .replace("\r\n", "\n")
            .ends_with("\n\nfirst line\n.dot line\nlast line\n"),
        "the old message arrives byte for byte: {plain}"
    );
    assert!(env.queued().is_empty());
    assert!(env.spool_files().is_empty(), "{:?}", env.spool_files());
}

/// `queue show` says the same of a format-1 entry and of the same message
/// queued now, apart from what differs by nature (ID, times).
#[test]
fn queue_show_says_the_same_for_both_formats() {
    let env = upgraded(9);
    let old = std::fs::read(format!("{FIXTURE}/{OLD_PLAIN}.msg")).unwrap();
    // The same message, resubmitted through today's code path.
    let text = String::from_utf8(old).unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.replace("\r\n", "\n");
    let out = env.sendmail(
        &[
            "-odq",
            "-f",
            "old@test.example",
            "a@example.net",
            "b@example.net",
        ],
        &format!("Subject: queued by the previous release\nFrom: Old <old@test.example>\n\n{body}"),
    );
    assert_exit(&out, 0, &env, "resubmit");
    let new_id = env
        .queued()
        .into_iter()
        .map(|q| q.id)
        .find(|id| id != OLD_PLAIN && id != OLD_TRIED)
        .unwrap();
    let show = |id: &str| -> serde_json::Value {
        let out = env.run("relaymail", &["queue", "show", id, "--json"], b"");
        assert_exit(&out, 0, &env, "queue show");
        let mut v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let map = v.as_object_mut().unwrap();
        for varying in ["id", "created", "header", "message_id", "size", "arrived"] {
            map.remove(varying);
        }
        v
    };
    assert_eq!(show(OLD_PLAIN), show(&new_id));
}

/// Two durable flushes per submission: the queue file, then the queue
/// directory after the link that commits it; no state file is written.
#[test]
fn a_submission_commits_with_two_flushes() {
    if !have("strace") {
        return;
    }
    let env = Env::new();
    assert_exit(
        &env.sendmail(&["-odq", "x@example.net"], "\nwarm\n"),
        0,
        &env,
        "first",
    );
    let trace = env.path("trace");
    let mut cmd = env.traced(
        "sendmail",
        "fsync,fdatasync,sync_file_range,link,linkat,rename,renameat,renameat2",
        &trace,
        &["-odq", "y@example.net"],
    );
    let out = run_with_stdin(&mut cmd, b"Subject: two flushes\n\nbody\n");
    assert_exit(&out, 0, &env, "traced submission");
    let text = std::fs::read_to_string(&trace).unwrap();
    let calls: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("resumed") && !l.contains("+++"))
        .collect();
    let flushes: Vec<&&str> = calls
        .iter()
        .filter(|l| l.contains("fsync(") || l.contains("fdatasync("))
        .collect();
    assert_eq!(flushes.len(), 2, "{text}");
    let link = calls
        .iter()
        .position(|l| l.contains("link") && l.contains("/queue/"))
        .unwrap();
    let file = calls.iter().position(|l| l.contains("fdatasync(")).unwrap();
    let dir = calls.iter().position(|l| l.contains("fsync(")).unwrap();
    assert!(
        file < link && link < dir,
        "file flush, link, directory flush:\n{text}"
    );
    assert!(
        !text.contains(".env"),
        "no state file at submission:\n{text}"
    );
    eprintln!("{} flushes: {flushes:?}", flushes.len());
}
