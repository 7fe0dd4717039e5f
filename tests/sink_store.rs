//! The sink's stores read by independent programs: Python's `mailbox`
//! module, bsd-mailx and mutt must each count exactly the messages written,
//! concurrent writers (our own processes, and foreign writers that take
//! only the fcntl lock or only the dotlock) must never interleave, and a
//! failed append must leave the mbox as it was.
//!
//! A check whose reader is not installed is skipped with a printed reason;
//! the Debian packages are python3, bsd-mailx and mutt (and bsdutils, for
//! `script`, which gives mutt a terminal).
//!
//! Child processes are this test binary run again on `child_writer` or
//! `child_disk_full`, which do nothing unless their environment variable
//! is set.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use std::{env, fs, thread};

use relaymail::id::QueueId;
use relaymail::sink::store::{self, Envelope, Spec, Store, Stored};

const CHILD_WRITER: &str = "RELAYMAIL_TEST_STORE_WRITER";
const CHILD_DISK_FULL: &str = "RELAYMAIL_TEST_STORE_DISK_FULL";

fn envelope(sender: &str) -> Envelope {
    Envelope {
        id: QueueId::generate().to_string(),
        sender: sender.to_string(),
        recipients: vec!["root@lab".to_string()],
        received_at: chrono::Local::now(),
    }
}

/// The lines of message `seq` from `writer` (one letter): headers the
/// Python check identifies it by, `From` lines to escape, a long line.
fn message_lines(writer: &str, seq: usize) -> Vec<Vec<u8>> {
    vec![
        format!("Subject: writer {writer} message {seq}").into_bytes(),
        format!("X-Writer: {writer}").into_bytes(),
        format!("X-Seq: {seq}").into_bytes(),
        Vec::new(),
        format!("first line {writer} {seq} caf\u{e9}").into_bytes(),
        b"From me".to_vec(),
        b">From you".to_vec(),
        writer.repeat(2000 + (seq % 7) * 1000).into_bytes(),
        format!("end {writer} {seq}").into_bytes(),
    ]
}

fn lf_text(lines: &[Vec<u8>]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| l.iter().copied().chain([b'\n']))
        .collect()
}

fn write_message(store: &dyn Store, writer: &str, seq: usize) -> Stored {
    let lines = message_lines(writer, seq);
    let mut incoming = store.begin(&envelope("sender@lab")).expect("begin");
    for line in &lines {
        incoming.line(line).expect("line");
    }
    let stored = incoming.commit().expect("commit");
    let back = store::read(&stored).expect("read back");
    assert!(
        back == lf_text(&lines),
        "message {writer} {seq} reads back wrong from {stored:?}: starts {:?}",
        text(back.get(..200).unwrap_or(&back))
    );
    stored
}

fn write_messages(spec: &Spec, scratch: &Path, writer: &str, count: usize) {
    let store = store::open(spec, scratch).expect("open the store");
    for seq in 0..count {
        write_message(store.as_ref(), writer, seq);
    }
}

/// `From ` lines at the start of a line: the message count as any mbox
/// reader sees it, since content `From ` lines are escaped.
fn from_lines(mbox: &Path) -> usize {
    let text = fs::read(mbox).expect("read the mbox");
    text.split(|b| *b == b'\n')
        .filter(|l| l.starts_with(b"From "))
        .count()
}

fn installed(program: &str) -> bool {
    env::var_os("PATH")
        .is_some_and(|path| env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Says why a check is skipped, on the real stderr (the test harness
/// captures `eprintln!` and shows it only on failure).
fn skip(check: &str, program: &str, package: &str) {
    // In CI scripts/test installs every reader: missing there is a failure.
    assert!(
        env::var_os("CI").is_none(),
        "{check}: {program} is not installed (Debian package {package})"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {check}: {program} is not installed (Debian package {package})"
    );
}

/// Runs `cmd` with `stdin`, killing it after `limit`.
fn run(cmd: &mut Command, stdin: &[u8], limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    let feeder = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = wait_with_limit(child, limit, &format!("{cmd:?}"));
    let _ = feeder.join();
    out
}

fn wait_with_limit(mut child: Child, limit: Duration, what: &str) -> Output {
    // Drained as the child runs, so that a chatty child (a long panic
    // message) cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut out);
            }
            out
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + limit;
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            killed = true;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let out = Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    assert!(
        !killed,
        "{what} ran for more than {limit:?}; killed.\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An outside reader's exit status, stdout and stderr, for an assertion
/// message.
fn outcome(out: &Output) -> String {
    format!(
        "{}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Checks with Python's `mailbox` that the mbox holds exactly `want`
/// (writer, count) messages, each intact; returns false if skipped.
const PYTHON_CHECK: &str = r#"
import mailbox, sys
path = sys.argv[1]
want = {}
for arg in sys.argv[2:]:
    w, n = arg.split(":")
    want[w] = int(n)
seen = set()
count = 0
box = mailbox.mbox(path, create=False)
for key in box.iterkeys():
    raw = box.get_bytes(key)
    count += 1
    head, _, body = raw.partition(b"\n\n")
    headers = dict(l.split(b": ", 1) for l in head.split(b"\n") if b": " in l)
    w = headers.get(b"X-Writer", b"?").decode()
    i = int(headers.get(b"X-Seq", b"-1"))
    if (w, i) in seen:
        sys.exit("message %s %d appears twice" % (w, i))
    seen.add((w, i))
    if w == "py":
        expected = b"body py %d\n" % i
    else:
        b = w.encode()
        expected = (b"first line %s %d caf\xc3\xa9\n>From me\n>>From you\n" % (b, i)
                    + b * (2000 + (i % 7) * 1000) + b"\nend %s %d\n" % (b, i))
    if body != expected:
        sys.exit("message %d (writer %s seq %d) is damaged: %d bytes of body, %d expected; starts %r"
                 % (count, w, i, len(body), len(expected), body[:120]))
every = {(w, i) for w, n in want.items() for i in range(n)}
if seen != every or count != len(every):
    sys.exit("%d messages, %d expected; missing %r, extra %r"
             % (count, len(every), sorted(every - seen)[:5], sorted(seen - every)[:5]))
print("ok", count)
"#;

fn python_check(mbox: &Path, want: &[(&str, usize)]) -> bool {
    if !installed("python3") {
        skip("Python mailbox check", "python3", "python3");
        return false;
    }
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(PYTHON_CHECK).arg(mbox);
    for (writer, count) in want {
        cmd.arg(format!("{writer}:{count}"));
    }
    let out = run(&mut cmd, b"", Duration::from_secs(120));
    assert!(
        out.status.success(),
        "python mailbox check failed: {}",
        outcome(&out)
    );
    true
}

/// bsd-mailx's own count (its `"FILE": N messages` banner), or None if it
/// is not installed. `x` leaves without touching the mailbox.
fn mailx_count(mbox: &Path, home: &Path) -> Option<usize> {
    if !installed("bsd-mailx") {
        skip("bsd-mailx count", "bsd-mailx", "bsd-mailx");
        return None;
    }
    let out = run(
        Command::new("bsd-mailx")
            .arg("-N")
            .arg("-f")
            .arg(mbox)
            .env("HOME", home)
            .env("MAILRC", "/dev/null"),
        b"x\n",
        Duration::from_secs(60),
    );
    let stdout = text(&out.stdout);
    let banner = format!("\"{}\": ", mbox.display());
    let count = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&banner))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    match count {
        Some(n) => Some(n),
        None => panic!("no message count from bsd-mailx: {}", outcome(&out)),
    }
}

/// Message 1 as bsd-mailx prints it.
fn mailx_print_first(mbox: &Path, home: &Path) -> Option<String> {
    if !installed("bsd-mailx") {
        skip("bsd-mailx print", "bsd-mailx", "bsd-mailx");
        return None;
    }
    let out = run(
        Command::new("bsd-mailx")
            .arg("-N")
            .arg("-f")
            .arg(mbox)
            .env("HOME", home)
            .env("MAILRC", "/dev/null"),
        b"p 1\nx\n",
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "bsd-mailx: {}", outcome(&out));
    Some(text(&out.stdout))
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// mutt's own count of a mailbox (mbox or Maildir), read-only, from its
/// status line (`%m`). mutt needs a terminal: `script` gives it one.
fn mutt_count(mailbox: &Path) -> Option<usize> {
    for (program, package) in [("mutt", "mutt"), ("script", "bsdutils")] {
        if !installed(program) {
            skip("mutt count", program, package);
            return None;
        }
    }
    // A home of its own, with the ~/Mail mutt would otherwise offer to
    // create (and wait for an answer).
    let home = tempfile::tempdir().expect("tempdir");
    fs::create_dir(home.path().join("Mail")).expect("~/Mail");
    let mutt = format!(
        "mutt -n -R -F /dev/null -f {} -e 'set status_format=\"relaymail-count=%m\"' -e 'push <exit>'",
        shell_quote(mailbox)
    );
    let out = run(
        Command::new("script")
            .args(["-q", "-e", "-c", &mutt, "/dev/null"])
            .env("TERM", "vt100")
            .env("HOME", home.path())
            .env_remove("MAIL"),
        b"",
        Duration::from_secs(60),
    );
    let screen = text(&out.stdout);
    let count = screen
        .rsplit("relaymail-count=")
        .next()
        .filter(|_| screen.contains("relaymail-count="))
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|n| n.parse().ok());
    match count {
        Some(n) => Some(n),
        None => panic!(
            "no count on mutt's status line (exit {}):\n{screen:?}\n--- stderr:\n{}",
            out.status,
            text(&out.stderr)
        ),
    }
}

/// Every independent reader counts `n` messages in the mbox.
fn assert_mbox_count(mbox: &Path, home: &Path, n: usize) {
    assert_eq!(from_lines(mbox), n, "From lines in {}", mbox.display());
    if let Some(count) = mailx_count(mbox, home) {
        assert_eq!(count, n, "bsd-mailx's count");
    }
    if let Some(count) = mutt_count(mbox) {
        assert_eq!(count, n, "mutt's count");
    }
}

#[test]
fn readers_count_every_message_in_an_mbox_and_keep_from_lines_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mbox = dir.path().join("root");
    let spec = Spec::Mbox(mbox.clone());
    write_messages(&spec, &dir.path().join("state"), "a", 20);

    assert!(fs::read_to_string(&mbox)
        .expect("mbox")
        .contains("\n>From me\n>>From you\n"));
    python_check(&mbox, &[("a", 20)]);
    assert_mbox_count(&mbox, dir.path(), 20);
    if let Some(first) = mailx_print_first(&mbox, dir.path()) {
        // mailx shows the mboxrd escape as is (so do mutt and every mbox
        // reader); the message must not end at the `From me` line.
        assert!(
            first.contains("\nfirst line a 0 caf\u{e9}\n>From me\n>>From you\naaaa"),
            "bsd-mailx printed:\n{}",
            first.chars().take(2000).collect::<String>()
        );
        assert!(first.contains("\nend a 0\n"), "message 1 is cut short");
        assert!(!first.contains("end a 1"), "message 1 runs into message 2");
    }
    // The mailbox was not changed by the readers.
    assert_mbox_count(&mbox, dir.path(), 20);
}

#[test]
fn readers_count_every_message_in_a_maildir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = dir.path().join("Maildir");
    let spec = Spec::Maildir(maildir.clone());
    write_messages(&spec, &dir.path().join("state"), "m", 20);
    assert_eq!(fs::read_dir(maildir.join("new")).expect("new/").count(), 20);
    assert_eq!(fs::read_dir(maildir.join("tmp")).expect("tmp/").count(), 0);

    if installed("python3") {
        let out = run(
            Command::new("python3")
                .arg("-c")
                .arg("import mailbox, sys; print(len(mailbox.Maildir(sys.argv[1], factory=None, create=False)))")
                .arg(&maildir),
            b"",
            Duration::from_secs(60),
        );
        assert_eq!(text(&out.stdout).trim(), "20", "python: {}", outcome(&out));
    } else {
        skip("Python Maildir count", "python3", "python3");
    }
    if let Some(count) = mutt_count(&maildir) {
        assert_eq!(count, 20, "mutt's count");
    }
}

/// Not a test on its own: writes messages when run as a child process by
/// `two_processes_writing_one_mbox_never_interleave`.
#[test]
fn child_writer() {
    let Ok(job) = env::var(CHILD_WRITER) else {
        return;
    };
    let mut parts = job.splitn(4, '\n');
    let (Some(writer), Some(count), Some(scratch), Some(mbox)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("bad {CHILD_WRITER}: {job:?}");
    };
    let count = count.parse().expect("count");
    write_messages(&Spec::Mbox(mbox.into()), Path::new(scratch), writer, count);
}

fn spawn_writer(writer: &str, count: usize, scratch: &Path, mbox: &Path) -> Child {
    let job = format!(
        "{writer}\n{count}\n{}\n{}",
        scratch.display(),
        mbox.display()
    );
    Command::new(env::current_exe().expect("test binary"))
        .args(["--exact", "child_writer", "--test-threads=1", "--nocapture"])
        .env(CHILD_WRITER, job)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a writer process")
}

#[test]
fn two_processes_writing_one_mbox_never_interleave() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mbox = dir.path().join("root");
    let scratch = dir.path().join("state");
    let writers = [
        spawn_writer("a", 500, &scratch, &mbox),
        spawn_writer("b", 500, &scratch, &mbox),
    ];
    for child in writers {
        let out = wait_with_limit(child, Duration::from_secs(300), "writer process");
        assert!(
            out.status.success(),
            "writer failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    assert!(
        !dir.path().join("root.lock").exists(),
        "dotlock left behind"
    );
    assert_eq!(
        fs::read_dir(&scratch).expect("scratch").count(),
        0,
        "temporary files left behind"
    );
    python_check(&mbox, &[("a", 500), ("b", 500)]);
    assert_mbox_count(&mbox, dir.path(), 1000);
}

/// A foreign writer (Python) that appends in several small writes while
/// holding only the fcntl lock (as a program that never dotlocks), or only
/// the dotlock: our writes must exclude both.
const PYTHON_WRITER: &str = r#"
import fcntl, os, sys, time
path, n, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lock = path + ".lock"
for i in range(n):
    if how == "dotlock":
        while True:
            try:
                os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                break
            except FileExistsError:
                time.sleep(0.001)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    if how == "fcntl":
        fcntl.lockf(fd, fcntl.LOCK_EX)
    os.write(fd, b"From py@lab Mon Nov 23 19:02:58 2026\n")
    time.sleep(0.0005)
    os.write(fd, b"X-Writer: py\nX-Seq: %d\n\n" % i)
    time.sleep(0.0005)
    os.write(fd, b"body py %d\n\n" % i)
    if how == "fcntl":
        fcntl.lockf(fd, fcntl.LOCK_UN)
    os.close(fd)
    if how == "dotlock":
        os.unlink(lock)
"#;

fn against_a_foreign_writer(how: &str) {
    if !installed("python3") {
        skip(&format!("foreign {how} writer"), "python3", "python3");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mbox = dir.path().join("root");
    let foreign = Command::new("python3")
        .arg("-c")
        .arg(PYTHON_WRITER)
        .arg(&mbox)
        .arg("200")
        .arg(how)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    write_messages(
        &Spec::Mbox(mbox.clone()),
        &dir.path().join("state"),
        "r",
        200,
    );
    let out = wait_with_limit(foreign, Duration::from_secs(120), "python writer");
    assert!(out.status.success(), "python writer: {}", outcome(&out));
    python_check(&mbox, &[("r", 200), ("py", 200)]);
    assert_eq!(from_lines(&mbox), 400);
}

#[test]
fn a_writer_holding_only_the_fcntl_lock_is_respected() {
    against_a_foreign_writer("fcntl");
}

#[test]
fn a_writer_holding_only_the_dotlock_is_respected() {
    against_a_foreign_writer("dotlock");
}

/// Not a test on its own: run as a child by
/// `a_failed_append_leaves_the_mbox_as_it_was`, with a file size limit
/// (RLIMIT_FSIZE) that the next append crosses.
#[test]
fn child_disk_full() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    use nix::sys::signal::{SigSet, Signal};

    let Ok(job) = env::var(CHILD_DISK_FULL) else {
        return;
    };
    let Some((limit, rest)) = job.split_once('\n') else {
        panic!("bad {CHILD_DISK_FULL}: {job:?}");
    };
    let Some((scratch, mbox)) = rest.split_once('\n') else {
        panic!("bad {CHILD_DISK_FULL}: {job:?}");
    };
    let store = store::open(&Spec::Mbox(mbox.into()), Path::new(scratch)).expect("open");
    // A write past the limit raises SIGXFSZ, which would kill the process;
    // blocked, the write fails with EFBIG instead, like a full disk.
    let mut blocked = SigSet::empty();
    blocked.add(Signal::SIGXFSZ);
    blocked.thread_block().expect("block SIGXFSZ");
    let (_, hard) = getrlimit(Resource::RLIMIT_FSIZE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_FSIZE, limit.parse().expect("limit"), hard).expect("setrlimit");

    let mut incoming = store.begin(&envelope("big@lab")).expect("begin");
    for i in 0..300 {
        incoming
            .line(format!("line {i} {}", "x".repeat(1000)).as_bytes())
            .expect("line");
    }
    let err = incoming
        .commit()
        .expect_err("the append crosses the size limit");
    println!("commit failed as it should: {err}");
    assert!(err.to_string().contains("back to its previous"), "{err}");
}

#[test]
fn a_failed_append_leaves_the_mbox_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mbox = dir.path().join("root");
    let scratch = dir.path().join("state");
    // About 500 kB already there; the 300 kB message gets 150 kB of room.
    write_messages(&Spec::Mbox(mbox.clone()), &scratch, "o", 100);
    let before = fs::read(&mbox).expect("mbox");
    let limit = before.len() + 150_000;
    let out = Command::new(env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_disk_full",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(
            CHILD_DISK_FULL,
            format!("{limit}\n{}\n{}", scratch.display(), mbox.display()),
        )
        .output()
        .expect("run the child");
    assert!(
        out.status.success(),
        "child failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("commit failed as it should"),
        "{}",
        text(&out.stdout)
    );
    assert!(fs::read(&mbox).expect("mbox") == before, "the mbox changed");
    assert!(
        !dir.path().join("root.lock").exists(),
        "dotlock left behind"
    );
    assert_eq!(
        fs::read_dir(&scratch).expect("scratch").count(),
        0,
        "temporary file left behind"
    );
    python_check(&mbox, &[("o", 100)]);
}

/// The whole path a lab admin uses: devices deliver over SMTP to
/// `relaymail sink --store mbox:FILE`, then `mail -f` and `mutt -f` read it.
#[test]
fn mail_and_mutt_read_an_mbox_filled_over_smtp() {
    use std::io::{BufRead, BufReader, Read};
    let dir = tempfile::tempdir().expect("tempdir");
    let mbox = dir.path().join("root");
    let config = dir.path().join("relaymail.toml");
    fs::write(
        &config,
        "hostname = \"sink.test.example\"\n[log]\nsyslog = false\n",
    )
    .expect("config");
    let mut sink = Command::new(env!("CARGO_BIN_EXE_relaymail"))
        .args(["sink", "--listen", "127.0.0.1:0", "--store"])
        .arg(format!("mbox:{}", mbox.display()))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("RELAYMAIL_CONFIG", &config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sink");
    let mut first = String::new();
    BufReader::new(sink.stderr.take().expect("stderr"))
        .read_line(&mut first)
        .expect("listening line");
    let addr = first
        .split("listening on ")
        .nth(1)
        .and_then(|a| a.split(' ').next())
        .expect("address")
        .to_string();
    let n = 10;
    for i in 0..n {
        let mut c = std::net::TcpStream::connect(&addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let body = format!("HELO switch{i}\r\nMAIL FROM:<switch{i}@lab>\r\nRCPT TO:<root@lab>\r\nDATA\r\nSubject: port {i} down\r\n\r\nFrom me: link lost\r\n.\r\nQUIT\r\n");
        c.write_all(body.as_bytes()).expect("send");
        let mut replies = String::new();
        c.read_to_string(&mut replies).expect("replies");
        assert!(replies.contains("250 2.0.0 Ok: queued as"), "{replies}");
    }
    let _ = sink.kill();
    let _ = sink.wait();
    let home = dir.path().join("home");
    fs::create_dir(&home).expect("home");
    assert_mbox_count(&mbox, &home, n);
    if let Some(first) = mailx_print_first(&mbox, &home) {
        assert!(first.contains("Subject: port 0 down"), "{first}");
        assert!(
            first.contains("From me: link lost"),
            "the body line survives as one message: {first}"
        );
    }
}
