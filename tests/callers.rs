//! The real programs that call sendmail, run against a system-mode
//! install (tests/common/system.rs) as root and as the unprivileged user
//! `alice`: bsd-mailx, s-nail, mutt, cron, atd, sudo, PHP's mail(),
//! Python's `email` package, git send-email, smartd's warning script and
//! logwatch. Inside the private mount namespace an overlay on /usr/sbin
//! makes /usr/sbin/sendmail the test's submitter, so the paths these
//! programs have compiled in reach it; cron's and at's spools, the
//! sudoers file and logwatch's configuration are the test's own there
//! too, and nothing on the host changes. Each test checks what a user
//! would: the caller exits 0, one message is queued for the right
//! recipients, with the caller's Subject, a From of the caller's user, a
//! Date and a Message-ID, the body and attachments intact (parsed by
//! Python's `email` package, not by relaymail), no Bcc left in it, CRLF
//! line ends without a doubled CR, and relaymail's log line for it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::system::{chown, Host, ALICE};
use common::{have, have_file, outcome, split_queue_file, stderr, stdout, Queued};

const CONFIG: &str = "hostname = \"host.test.example\"\n\n[rewrite]\ndefault_domain = \"test.example\"\naliases_file = \"/etc/relaymail/aliases\"\n\n[log]\nsyslog = false\nfile = \"/var/log/relaymail/relaymail.jsonl\"\n";

/// Run as root inside the Host's namespace (after its own setup): `$1`
/// the test directory, `$2` the user, `$3` a shell snippet of the test's
/// own setup (as root), the rest the caller's command line. /usr/sbin
/// gets an overlay whose `sendmail` is the test's submitter (a symlink,
/// so that it finds `relaymail` beside it); `alice` gets a shadow entry,
/// which PAM's account check (sudo, atd) wants; /dev/log leads nowhere
/// (the callers' own syslog lines stay off the host's log); root's HOME
/// is the test's. Exit 99: setup failed.
const CALLER: &str = r#"
d=$1 user=$2 setup=$3; shift 3
fail() { echo "caller setup failed: $*" >&2; exit 99; }
mkdir -p "$d/ns/up_usr_sbin" "$d/ns/work_usr_sbin" || fail mkdir
mount -t overlay overlay -o "lowerdir=/usr/sbin,upperdir=$d/ns/up_usr_sbin,workdir=$d/ns/work_usr_sbin" /usr/sbin || fail "overlay on /usr/sbin"
ln -sfn "$d/prefix/relaymail-sendmail" /usr/sbin/sendmail || fail "sendmail link"
grep -q '^alice:' /etc/shadow || echo 'alice:*:19000:0:99999:7:::' >> /etc/shadow || fail shadow
if [ -e /dev/log ]; then mount --bind /dev/null /dev/log || fail "hiding /dev/log"; fi
mkdir -p "$d/home/root" && chmod 700 "$d/home/root" || fail "root's home"
eval "$setup" || fail "the test's setup"
cd "$d/work" || fail cd
if [ "$user" = root ]; then
    exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$d/home/root" USER=root LOGNAME=root "$@"
fi
exec setpriv --reuid="$user" --regid="$user" --init-groups env -i PATH=/usr/bin:/bin HOME="$d/home/$user" USER="$user" LOGNAME="$user" "$@"
"#;

/// Prints the message Python's `email` package reads from stdin as JSON:
/// its header fields in order, and each leaf part's type, file name and
/// decoded bytes (hex).
const PARSE: &str = r#"
import email, email.policy, json, sys
msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.compat32)
parts = []
for part in msg.walk():
    if part.is_multipart():
        continue
    parts.append({"type": part.get_content_type(), "filename": part.get_filename(),
                  "data": (part.get_payload(decode=True) or b"").hex()})
print(json.dumps({"headers": [[k, str(v)] for k, v in msg.items()], "parts": parts}))
"#;

/// The installed shape with a work directory (`work/`, readable by all)
/// for the callers' input files. None (skipped, with a note) where the
/// namespace cannot be made or python3 is missing.
fn installed() -> Option<Host> {
    installed_with("")
}

/// `installed` with `extra` appended to the configuration.
fn installed_with(extra: &str) -> Option<Host> {
    if !have("python3") {
        return None;
    }
    let host = Host::new(&format!("{CONFIG}{extra}"))?;
    host.install("aliases", b"postmaster: root\n", 0, 0o644);
    host.create_log();
    let work = host.path("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some(host)
}

/// A file in `work/` the callers can read.
fn input(host: &Host, name: &str, contents: &[u8]) -> String {
    let path = host.path("work").join(name);
    std::fs::write(&path, contents).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path.display().to_string()
}

/// `script` (sh) as `user`, in `work/`, after `setup` as root.
fn run_as(host: &Host, user: &str, setup: &str, script: &str) -> Output {
    let out = caller(host, user, setup, script).output().unwrap();
    assert_ne!(out.status.code(), Some(99), "{}", outcome(&out));
    out
}

fn caller(host: &Host, user: &str, setup: &str, script: &str) -> std::process::Command {
    let d = host.dir.path().to_str().unwrap();
    host.command(
        "root",
        &["sh", "-c", CALLER, "sh", d, user, setup, "sh", "-c", script],
    )
}

/// The caller exited 0, and relaymail, whose stderr the callers pass on,
/// had nothing to warn about.
fn assert_ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", outcome(out));
    let said = format!("{}{}", stdout(out), stderr(out));
    assert!(
        !said
            .lines()
            .any(|l| l.starts_with("sendmail:") || l.starts_with("relaymail")),
        "{what}: {}",
        outcome(out)
    );
}

/// A path of Debian's packaging (cron's and at's spools): on Debian as
/// `have_file`; elsewhere the test skips with a note.
fn debian_file(path: &str) -> bool {
    if !Path::new("/etc/debian_version").exists() {
        eprintln!("skipped: the test drives Debian's {path}");
        return false;
    }
    have_file(path)
}

/// Committed messages, oldest first (no smarthost is configured: nothing
/// takes them away).
fn queued(host: &Host) -> Vec<Queued> {
    let queue = host.path("spool/queue");
    host.queued_ids()
        .into_iter()
        .map(|id| {
            let file = std::fs::read(queue.join(format!("{id}.msg"))).unwrap();
            let (msg, first) = split_queue_file(&file);
            let env = std::fs::read_to_string(queue.join(format!("{id}.env")))
                .ok()
                .or(first)
                .expect("an envelope");
            Queued { id, env, msg }
        })
        .collect()
}

/// Waits (bounded) until the log has `n` queued lines and `done` holds:
/// for callers that leave the mail to a process of their own and do not
/// wait for it (atd's job runner, sudo's mailer).
fn wait_for(host: &Host, n: usize, done: impl Fn() -> bool, what: &str) {
    let deadline = Duration::from_secs(10);
    let start = Instant::now();
    loop {
        let logged = host.log_text().matches("\"event\":\"queued\"").count();
        if logged >= n && done() {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "{what}: {logged} of {n} messages queued within {deadline:?}; queue {:?}, log {}",
            host.queue(),
            host.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn only_message(host: &Host, what: &str) -> Queued {
    let mut all = queued(host);
    assert_eq!(
        all.len(),
        1,
        "{what}: one message queued, have {:?}\nlog: {}",
        host.queue(),
        host.log_text()
    );
    all.remove(0)
}

/// The message as Python's `email` package sees it.
struct Parsed {
    headers: Vec<(String, String)>,
    parts: Vec<Part>,
}

struct Part {
    kind: String,
    filename: Option<String>,
    data: Vec<u8>,
}

impl Parsed {
    fn of(msg: &[u8]) -> Parsed {
        let out = common::run_with_stdin(
            std::process::Command::new("python3").args(["-c", PARSE]),
            msg,
        );
        assert!(out.status.success(), "python3 parse: {}", outcome(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let headers = json["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_string(),
                    h[1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let parts = json["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| Part {
                kind: p["type"].as_str().unwrap().to_string(),
                filename: p["filename"].as_str().map(String::from),
                data: hex(p["data"].as_str().unwrap()),
            })
            .collect();
        Parsed { headers, parts }
    }

    /// Every value of the field `name` (any case), unfolded.
    fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| words(v))
            .collect()
    }

    /// The one value of `name`; a message with none or two fails.
    fn one(&self, name: &str) -> String {
        let values = self.all(name);
        assert_eq!(values.len(), 1, "one {name}: field: {:?}", self.headers);
        values.into_iter().next().unwrap()
    }

    /// The first text/plain part, decoded, with LF line ends.
    fn text(&self) -> String {
        let part = self
            .parts
            .iter()
            .find(|p| p.kind == "text/plain")
            .expect("a text/plain part");
        String::from_utf8_lossy(&part.data).replace("\r\n", "\n")
    }

    fn attachment(&self, filename: &str) -> &[u8] {
        &self
            .parts
            .iter()
            .find(|p| p.filename.as_deref() == Some(filename))
            .unwrap_or_else(|| panic!("no attachment {filename}"))
            .data
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Runs of whitespace (folding included) as one space.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The address in a From: value (`Name <a@b>`, `a@b (Name)` or `a@b`).
fn address(from: &str) -> String {
    match (from.rfind('<'), from.rfind('>')) {
        (Some(open), Some(close)) if open < close => from[open + 1..close].to_string(),
        _ => from.split(" (").next().unwrap().trim().to_string(),
    }
}

/// What a user checks in the one message a caller queued.
struct Expect<'a> {
    what: &'a str,
    /// Who ran the caller: the envelope sender is user@host.test.example.
    user: &'a str,
    recipients: &'a [&'a str],
    subject: &'a str,
    /// The From address: the caller's own, or the one relaymail adds.
    from: &'a str,
    /// Text the decoded text/plain body contains (LF line ends).
    body: &'a [&'a str],
    /// Bcc recipients: in the envelope, nowhere in the message.
    hidden: &'a [&'a str],
}

/// Checks `q` against `e` and returns its parse for further checks.
fn check(host: &Host, q: &Queued, e: &Expect) -> Parsed {
    let what = e.what;
    let raw = &q.msg;
    let text = q.text();
    let mut want: Vec<String> = e.recipients.iter().map(|r| r.to_string()).collect();
    let mut got = q.recipients();
    want.sort();
    got.sort();
    assert_eq!(got, want, "{what}: recipients");
    let sender = format!("{}@host.test.example", e.user);
    assert_eq!(q.sender(), sender, "{what}: envelope sender");
    let uid = if e.user == "root" { 0 } else { ALICE };
    assert!(
        text.starts_with(&format!(
            "Received: by host.test.example (relaymail, from userid {uid})\r\n"
        )),
        "{what}: {text}"
    );
    // CRLF line ends, each with one CR: no bare LF, no CR CR LF.
    let around = |i: usize| {
        String::from_utf8_lossy(&raw[i.saturating_sub(60)..raw.len().min(i + 20)]).into_owned()
    };
    if let Some(i) = raw.windows(2).position(|w| w == b"\r\r") {
        panic!("{what}: a doubled CR at byte {i}: {:?}", around(i));
    }
    if let Some(i) = (0..raw.len()).find(|&i| raw[i] == b'\n' && (i == 0 || raw[i - 1] != b'\r')) {
        panic!("{what}: a bare LF at byte {i}: {:?}", around(i));
    }

    let parsed = Parsed::of(raw);
    assert_eq!(
        words(&parsed.one("Subject")),
        words(e.subject),
        "{what}: Subject"
    );
    assert_eq!(address(&parsed.one("From")), e.from, "{what}: From");
    let date = parsed.one("Date");
    let when = chrono::DateTime::parse_from_rfc2822(&date)
        .unwrap_or_else(|err| panic!("{what}: Date {date:?}: {err}"));
    let age = chrono::Utc::now().signed_duration_since(when);
    assert!(
        age.num_seconds().abs() < 3600,
        "{what}: Date {date} is not now"
    );
    let message_id = parsed.one("Message-ID");
    assert!(
        message_id.starts_with('<') && message_id.ends_with('>') && message_id.contains('@'),
        "{what}: Message-ID {message_id}"
    );
    for bcc in ["Bcc", "Resent-Bcc"] {
        assert!(parsed.all(bcc).is_empty(), "{what}: {bcc} kept: {text}");
    }
    for hidden in e.hidden {
        assert!(
            q.recipients().iter().any(|r| r == hidden),
            "{what}: {hidden} is a recipient"
        );
        assert!(
            !text.contains(hidden),
            "{what}: the Bcc {hidden} shows: {text}"
        );
    }
    let body = parsed.text();
    for want in e.body {
        assert!(body.contains(want), "{what}: body lacks {want:?}:\n{body}");
    }

    let log = host.log_text();
    let line: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "queued" && v["id"] == q.id.as_str())
        .unwrap_or_else(|| panic!("{what}: no queued line for {} in the log:\n{log}", q.id));
    assert_eq!(line["from"], format!("<{sender}>"), "{what}: {line}");
    assert_eq!(line["user"], e.user, "{what}: {line}");
    assert_eq!(line["uid"], uid.to_string(), "{what}: {line}");
    assert_eq!(
        line["nrcpt"],
        e.recipients.len().to_string(),
        "{what}: {line}"
    );
    assert_eq!(line["msgid"], message_id, "{what}: {line}");
    parsed
}

/// What most cases do: `script` run as `user` exits 0 with no warning,
/// and the one message it queued is as `e` says.
fn mails_as_expected(host: &Host, user: &str, script: &str, e: &Expect) -> Parsed {
    let out = run_as(host, user, "", script);
    assert_ok(&out, e.what);
    let q = only_message(host, e.what);
    check(host, &q, e)
}

/// The From relaymail adds for a caller that writes none: the user's
/// address at the configured hostname.
fn added_from(user: &str) -> String {
    format!("{user}@host.test.example")
}

const BODY: &str = "Hello,\n.\nFrom the start of a line.\n..two dots\nlast line\n";
const BODY_LINES: &[&str] = &[BODY];

#[test]
fn bsd_mailx() {
    if !have("bsd-mailx") {
        return;
    }
    for user in ["root", "alice"] {
        let Some(host) = installed() else { return };
        let body = input(&host, "body", BODY.as_bytes());
        mails_as_expected(&host, user, &format!("bsd-mailx -s 'mailx report' -c cc@example.org -b hidden@example.net bob@example.net < {body}"),
            &Expect {
                what: &format!("bsd-mailx as {user}"),
                user,
                recipients: &["bob@example.net", "cc@example.org", "hidden@example.net"],
                subject: "mailx report",
                from: &added_from(user),
                body: BODY_LINES,
                hidden: &["hidden@example.net"],
            },
        );
    }
}

#[test]
fn s_nail() {
    if !have("s-nail") {
        return;
    }
    for user in ["root", "alice"] {
        let Some(host) = installed() else { return };
        let body = input(&host, "body", BODY.as_bytes());
        // -: (no configuration files) as a script would; s-nail encodes
        // the "." and "From " lines quoted-printable, Python decodes them.
        mails_as_expected(
            &host,
            user,
            &format!("s-nail -:/ -s 'nail report' -b hidden@example.net bob@example.net < {body}"),
            &Expect {
                what: &format!("s-nail as {user}"),
                user,
                recipients: &["bob@example.net", "hidden@example.net"],
                subject: "nail report",
                from: &added_from(user),
                body: BODY_LINES,
                hidden: &["hidden@example.net"],
            },
        );
    }
}

/// Bytes no text handling may touch: every byte value, CR LF, lone CRs
/// and LFs, CR CR LF, a "From " and a "." line.
fn binary_attachment() -> Vec<u8> {
    let mut data: Vec<u8> = (0..=255u8).collect();
    data.extend_from_slice(b"\r\n.\r\nFrom x\n\r\r\n\r\n.\n");
    let mut state: u32 = 0x1234_5678;
    for _ in 0..4000 {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        data.push((state >> 24) as u8);
    }
    data
}

#[test]
fn mutt_with_an_attachment() {
    if !have("mutt") {
        return;
    }
    for user in ["root", "alice"] {
        let Some(host) = installed() else { return };
        let body = input(&host, "body", BODY.as_bytes());
        let attachment = binary_attachment();
        input(&host, "data.bin", &attachment);
        // mutt writes its own From: user@ its idea of the host's name.
        let out = run_as(&host, user, "", "mutt -n -F /dev/null -Q hostname");
        assert_ok(&out, "mutt -Q hostname");
        let hostname = stdout(&out)
            .trim()
            .strip_prefix("hostname=")
            .unwrap()
            .trim_matches('"')
            .to_string();
        let out = run_as(
            &host,
            user,
            "",
            &format!("mutt -n -F /dev/null -s 'mutt report' -b hidden@example.net -a data.bin -- bob@example.net < {body}"),
        );
        assert_ok(&out, "mutt");
        let q = only_message(&host, "mutt");
        let parsed = check(
            &host,
            &q,
            &Expect {
                what: &format!("mutt as {user}"),
                user,
                recipients: &["bob@example.net", "hidden@example.net"],
                subject: "mutt report",
                from: &format!("{user}@{hostname}"),
                body: BODY_LINES,
                hidden: &["hidden@example.net"],
            },
        );
        assert!(
            parsed.attachment("data.bin") == attachment.as_slice(),
            "mutt as {user}: the attachment's bytes changed"
        );
    }
}

/// at's own spool directories, as the package makes them (daemon:daemon
/// 1770), bound over the host's so that `atd -s` runs only this test's
/// job and the test sees when it is done.
fn at_spool(host: &Host) -> String {
    let daemon = nix::unistd::User::from_name("daemon").unwrap().unwrap();
    let mut setup = String::new();
    for dir in ["atjobs", "atspool"] {
        let path = host.path(dir);
        std::fs::create_dir(&path).unwrap();
        chown(&path, daemon.uid.as_raw(), daemon.gid.as_raw(), 0o1770);
        if dir == "atjobs" {
            let seq = path.join(".SEQ");
            std::fs::write(&seq, "0\n").unwrap();
            chown(&seq, daemon.uid.as_raw(), daemon.gid.as_raw(), 0o600);
        }
        setup.push_str(&format!(
            "mount --bind {} /var/spool/cron/{dir} && ",
            path.display()
        ));
    }
    setup.push_str("true");
    setup
}

#[test]
fn at_job_output_through_atd() {
    if !have("at") || !have_file("/usr/sbin/atd") || !debian_file("/var/spool/cron/atjobs") {
        return;
    }
    for user in ["root", "alice"] {
        let Some(host) = installed() else { return };
        let job = input(
            &host,
            "job",
            format!("printf '{}'\n", BODY.replace('\n', "\\n")).as_bytes(),
        );
        // `at` queues the job; `atd -s` (root) runs the queue once: it
        // starts the job, which mails its output to its owner when it ends.
        let spool = at_spool(&host);
        let out = run_as(&host, user, &spool, &format!("at -f {job} now"));
        assert_ok(&out, "at");
        let atd = run_as(&host, "root", &spool, "/usr/sbin/atd -s");
        assert_ok(&atd, "atd -s");
        let number = stderr(&out)
            .lines()
            .find_map(|l| l.strip_prefix("job "))
            .and_then(|l| l.split(' ').next().map(String::from))
            .unwrap_or_else(|| panic!("at names the job: {}", outcome(&out)));
        // atd runs the job in a child of its own: wait until the job is
        // gone from at's spool and its mail is logged.
        let at_done = || {
            !["atjobs", "atspool"].iter().any(|dir| {
                std::fs::read_dir(host.path(dir))
                    .unwrap()
                    .flatten()
                    .any(|e| e.file_name() != ".SEQ")
            })
        };
        wait_for(&host, 1, at_done, &format!("at job {number} as {user}"));
        let q = only_message(&host, "atd");
        check(
            &host,
            &q,
            &Expect {
                what: &format!("at job as {user}"),
                user,
                recipients: &[&format!("{user}@test.example")],
                subject: &format!("Output from your job {number}"),
                from: &added_from(user),
                body: BODY_LINES,
                hidden: &[],
            },
        );
    }
}

/// A daemon the test started (cron -f), killed when the test is done
/// with it, or fails.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cron_mails_a_jobs_output() {
    if !debian_file("/usr/sbin/cron") || !debian_file("/var/spool/cron/crontabs") {
        return;
    }
    let crontab = nix::unistd::Group::from_name("crontab")
        .unwrap()
        .expect("the crontab group")
        .gid
        .as_raw();
    let hostname = nix::unistd::gethostname().unwrap();
    let hostname = hostname.to_str().unwrap();
    for (user, mailto, recipients) in [
        ("alice", "", vec!["alice@test.example".to_string()]),
        (
            "root",
            "MAILTO=\"ops@example.org,admin@example.com\"\n",
            vec!["ops@example.org".into(), "admin@example.com".into()],
        ),
    ] {
        let Some(host) = installed() else { return };
        let job = input(
            &host,
            "job",
            format!("printf '{}'\n", BODY.replace('\n', "\\n")).as_bytes(),
        );
        // The user's crontab, as crontab(1) leaves it, and nothing else:
        // an @reboot job, which cron runs when it starts (a tmpfs on /run
        // hides the host's crond.reboot), so no minute is waited for.
        let tabs = host.path("crontabs");
        std::fs::create_dir(&tabs).unwrap();
        chown(&tabs, 0, crontab, 0o1730);
        let tab = tabs.join(user);
        std::fs::write(&tab, format!("{mailto}@reboot sh {job}\n")).unwrap();
        let uid = if user == "root" { 0 } else { ALICE };
        chown(&tab, uid, crontab, 0o600);
        let setup = format!(
            "mount -t tmpfs tmpfs /run && printf 'SHELL=/bin/sh\\nPATH=/usr/bin:/bin\\n' > /etc/crontab && \
             rm -rf /etc/cron.d && mount --bind {} /var/spool/cron/crontabs",
            tabs.display()
        );
        let mut cron = Daemon(
            caller(&host, "root", &setup, "exec cron -f")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for(&host, 1, || true, &format!("cron as {user}"));
        assert!(cron.0.try_wait().unwrap().is_none(), "cron as {user} ended");
        drop(cron);
        let q = only_message(&host, "cron");
        let wanted: Vec<&str> = recipients.iter().map(String::as_str).collect();
        check(
            &host,
            &q,
            &Expect {
                what: &format!("cron as {user}"),
                user,
                recipients: &wanted,
                subject: &format!("Cron <{user}@{hostname}> sh {job}"),
                // Debian's cron: "From: root (Cron Daemon)" for every user.
                from: &added_from("root"),
                body: BODY_LINES,
                hidden: &[],
            },
        );
    }
}

#[test]
fn sudo_mails_each_use() {
    if !have("sudo") {
        return;
    }
    // The whole sudoers of the namespace: mail every use of sudo to
    // security@example.org through /usr/sbin/sendmail (also sudo's
    // compiled-in mailer).
    let sudoers = "Defaults env_reset\nDefaults mail_always, mailerpath=/usr/sbin/sendmail, mailto=security@example.org\nroot ALL=(ALL:ALL) ALL\nalice ALL=(nobody) NOPASSWD: /usr/bin/true\n";
    for user in ["root", "alice"] {
        let Some(host) = installed() else { return };
        let file = input(&host, "sudoers", sudoers.as_bytes());
        // sudo's timestamp and lecture files stay in the namespace too.
        let setup = format!(
            "cp {file} /etc/sudoers && chmod 0440 /etc/sudoers && rm -rf /etc/sudoers.d && \
             for s in /run/sudo /var/lib/sudo; do [ ! -d $s ] || mount -t tmpfs tmpfs $s || exit 1; done"
        );
        let out = run_as(&host, user, &setup, "sudo -n -u nobody /usr/bin/true");
        assert_ok(&out, "sudo");
        // sudo mails when it runs the command and again when it ends,
        // each time from a process it does not wait for (so in either
        // order).
        wait_for(&host, 2, || true, &format!("sudo as {user}"));
        let mut all = queued(&host);
        assert_eq!(all.len(), 2, "sudo as {user}: {:?}", host.queue());
        all.sort_by_key(|q| q.text().contains("EXIT="));
        for (q, tail) in all.iter().zip(["COMMAND=/usr/bin/true", "EXIT=0"]) {
            let parsed = Parsed::of(&q.msg);
            let subject = parsed.one("Subject");
            assert!(
                subject.starts_with("*** SECURITY information for ") && subject.ends_with(" ***"),
                "sudo as {user}: {subject}"
            );
            let line = format!(" : {user} : ");
            let wanted = [line.as_str(), tail];
            check(
                &host,
                q,
                &Expect {
                    what: &format!("sudo as {user}"),
                    user,
                    recipients: &["security@example.org"],
                    subject: &subject,
                    from: &added_from(user),
                    body: &wanted,
                    hidden: &[],
                },
            );
            assert!(
                parsed.text().trim_end().ends_with(tail),
                "sudo as {user}: {}",
                parsed.text()
            );
        }
    }
}

#[test]
fn php_mail() {
    if !have("php") {
        return;
    }
    // -n: no php.ini, so mail() runs the compiled-in sendmail_path
    // ("/usr/sbin/sendmail -t -i"). Extra headers are CRLF-separated as
    // PHP's manual says; the body has LF line ends.
    let script = r#"<?php
$body = "Hello,\n.\nFrom the start of a line.\n..two dots\nlast line\n";
$ok = mail("bob@example.net", "php report", $body,
    "From: Web App <webapp@example.com>\r\nCc: cc@example.org\r\nBcc: hidden@example.net");
exit($ok ? 0 : 1);
"#;
    for user in ["root", "alice"] {
        let Some(host) = installed() else { return };
        let file = input(&host, "mail.php", script.as_bytes());
        mails_as_expected(
            &host,
            user,
            &format!("php -n {file}"),
            &Expect {
                what: &format!("PHP mail() as {user}"),
                user,
                recipients: &["bob@example.net", "cc@example.org", "hidden@example.net"],
                subject: "php report",
                from: "webapp@example.com",
                body: BODY_LINES,
                hidden: &["hidden@example.net"],
            },
        );
    }
}

/// A script's message: `email.message.EmailMessage` with `policy`, an
/// attachment, a Bcc, handed to `sendmail -t -oi` with subprocess.
const PYTHON: &str = r#"
import email.message, email.policy, email.utils, subprocess, sys
policy = getattr(email.policy, sys.argv[1])
msg = email.message.EmailMessage(policy=policy)
msg["From"] = "Report Script <reports@example.com>"
msg["To"] = "bob@example.net"
msg["Bcc"] = "hidden@example.net"
msg["Subject"] = "python report (" + sys.argv[1] + ")"
msg["Date"] = email.utils.formatdate(localtime=True)
msg["Message-ID"] = email.utils.make_msgid(domain="example.com")
msg.set_content("Hello,\n.\nFrom the start of a line.\n..two dots\nlast line\n")
with open("data.bin", "rb") as f:
    msg.add_attachment(f.read(), maintype="application", subtype="octet-stream", filename="data.bin")
data = msg.as_bytes()
assert (b"\r\n" in data) == (sys.argv[1] == "SMTP"), "the policy's line ends"
sys.exit(subprocess.run(["/usr/sbin/sendmail", "-t", "-oi"], input=data).returncode)
"#;

#[test]
fn python_email_scripts_lf_and_crlf() {
    if !have("python3") {
        return;
    }
    for user in ["root", "alice"] {
        for policy in ["SMTP", "default"] {
            let Some(host) = installed() else { return };
            let attachment = binary_attachment();
            input(&host, "data.bin", &attachment);
            let file = input(&host, "report.py", PYTHON.as_bytes());
            let out = run_as(&host, user, "", &format!("python3 {file} {policy}"));
            assert_ok(&out, "python");
            let q = only_message(&host, "python");
            let parsed = check(
                &host,
                &q,
                &Expect {
                    what: &format!("python ({policy} policy) as {user}"),
                    user,
                    recipients: &["bob@example.net", "hidden@example.net"],
                    subject: &format!("python report ({policy})"),
                    from: "reports@example.com",
                    body: BODY_LINES,
                    hidden: &["hidden@example.net"],
                },
            );
            assert!(
                parsed.attachment("data.bin") == attachment.as_slice(),
                "python ({policy}) as {user}: the attachment's bytes changed"
            );
            assert!(
                parsed.one("Message-ID").ends_with("@example.com>"),
                "the script's own Message-ID is kept"
            );
        }
    }
}

const PATCH: &str = "From 1234567890abcdef1234567890abcdef12345678 Mon Sep 17 00:00:00 2001
From: Alice <alice@host.test.example>
Date: Fri, 4 Dec 2026 10:00:00 +0000
Subject: [PATCH] frob: keep the dots

Hello,
.
From the start of a line.
..two dots
last line
---
 a.txt | 1 +
 1 file changed, 1 insertion(+)

diff --git a/a.txt b/a.txt
--- a/a.txt
+++ b/a.txt
@@ -1 +1,2 @@
 one
+.
-- 
2.39.5

";

#[test]
fn git_send_email() {
    if !have("git") {
        return;
    }
    let Some(host) = installed() else { return };
    let patch = input(&host, "0001-frob.patch", PATCH.as_bytes());
    // Without --smtp-server, git send-email runs /usr/sbin/sendmail.
    let out = run_as(
        &host,
        "alice",
        "",
        &format!("git -c user.name=Alice -c user.email=alice@host.test.example send-email --confirm=never --suppress-cc=all --to=list@example.org --cc=reviewer@example.net --bcc=hidden@example.net {patch}"),
    );
    assert_ok(&out, "git send-email");
    let q = only_message(&host, "git send-email");
    let parsed = check(
        &host,
        &q,
        &Expect {
            what: "git send-email as alice",
            user: "alice",
            recipients: &[
                "list@example.org",
                "reviewer@example.net",
                "hidden@example.net",
            ],
            subject: "[PATCH] frob: keep the dots",
            from: "alice@host.test.example",
            body: &[BODY_LINES[0], "\n+.\n-- \n2.39.5\n"],
            hidden: &["hidden@example.net"],
        },
    );
    // git's own Message-Id, not a second one.
    let id = parsed.one("Message-ID");
    assert!(
        id.ends_with("-alice@host.test.example>"),
        "git's Message-Id is kept: {id}"
    );
}

#[test]
fn smartd_warning_script() {
    let script = [
        "/usr/share/smartmontools/smartd_warning.sh",
        "/usr/libexec/smartmontools/smartd_warning.sh",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists());
    let Some(script) = script else {
        // Fails in CI, skips with a note elsewhere.
        have_file("/usr/share/smartmontools/smartd_warning.sh");
        return;
    };
    let Some(host) = installed() else { return };
    // What smartd sets for its mail (-m, no -M exec): the script mails
    // with `mail -s` on its own PATH, which runs /usr/sbin/sendmail.
    let out = run_as(
        &host,
        "root",
        "",
        &format!(
            "env SMARTD_ADDRESS='disks@example.org root' SMARTD_MAILER= SMARTD_FAILTYPE=CurrentPendingSector \
             SMARTD_MESSAGE='Device: /dev/sda [SAT], 8 Currently unreadable (pending) sectors' \
             SMARTD_DEVICEINFO='WDC WD40EFRX, S/N:WD-1234' SMARTD_DEVICE=/dev/sda SMARTD_DEVICESTRING=/dev/sda \
             SMARTD_DEVICETYPE=sat SMARTD_TFIRST='Fri Dec  4 10:00:00 2026 UTC' SMARTD_TFIRSTEPOCH=1796378400 \
             SMARTD_PREVCNT=0 SMARTD_NEXTDAYS=1 {script}"
        ),
    );
    assert_ok(&out, "smartd_warning.sh");
    let q = only_message(&host, "smartd_warning.sh");
    let parsed = Parsed::of(&q.msg);
    let subject = parsed.one("Subject");
    assert!(
        subject.starts_with("SMART error (CurrentPendingSector) detected on host: "),
        "{subject}"
    );
    check(
        &host,
        &q,
        &Expect {
            what: "smartd_warning.sh as root",
            user: "root",
            recipients: &["disks@example.org", "root@test.example"],
            subject: &subject,
            from: &added_from("root"),
            body: &[
                "This message was generated by the smartd daemon running on:\n",
                "\nDevice: /dev/sda [SAT], 8 Currently unreadable (pending) sectors\n\nDevice info:\nWDC WD40EFRX, S/N:WD-1234\n",
                "Another message will be sent in 24 hours if the problem persists.",
            ],
            hidden: &[],
        },
    );
}

#[test]
fn logwatch_mails_its_report() {
    if !have("logwatch") {
        return;
    }
    let Some(host) = installed() else { return };
    // The distribution's defaults only (its mailer, "/usr/sbin/sendmail
    // -t", and MailFrom): a host's own logwatch.conf is hidden.
    let out = run_as(
        &host,
        "root",
        "rm -f /etc/logwatch/conf/logwatch.conf && \
         { [ ! -d /var/cache/logwatch ] || mount -t tmpfs tmpfs /var/cache/logwatch; }",
        "logwatch --output mail --mailto 'ops@example.org' --service zz-disk_space --range today --detail high",
    );
    assert_ok(&out, "logwatch");
    let q = only_message(&host, "logwatch");
    let parsed = Parsed::of(&q.msg);
    let subject = parsed.one("Subject");
    assert!(subject.starts_with("Logwatch for "), "{subject}");
    // Debian's MailFrom is root, upstream's "Logwatch" (qualified).
    let from = address(&parsed.one("From"));
    assert!(
        from == "root@host.test.example" || from == "Logwatch@host.test.example",
        "{from}"
    );
    check(
        &host,
        &q,
        &Expect {
            what: "logwatch as root",
            user: "root",
            recipients: &["ops@example.org"],
            subject: &subject,
            from: &from,
            body: &["Disk Space Begin", "Filesystem"],
            hidden: &[],
        },
    );
}

/// A cron script's lock idiom (`exec 9>lock; flock 9`, mail the result,
/// let go): once the script lets go and `mail` has returned, the lock is
/// free, although the background delivery `mail` started is still
/// talking to the smarthost. That delivery keeps none of the caller's
/// descriptors: it outlives the caller, for up to command_timeout when
/// the smarthost stalls, and would hold the script's lock (or a pipe its
/// parent reads to the end) all that time.
#[test]
fn the_background_delivery_keeps_none_of_the_callers_descriptors() {
    if !have("bsd-mailx") || !have("flock") {
        return;
    }
    // A smarthost that accepts the connection and never greets.
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = stalled.local_addr().unwrap().port();
    let Some(host) = installed_with(&format!(
        "\n[smarthost]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\ncommand_timeout = \"120s\"\n"
    )) else {
        return;
    };
    let (tx, connected) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = stalled.accept() {
            let _ = tx.send(());
            // Held open, silent, until the test ends.
            std::thread::sleep(Duration::from_secs(60));
            drop(stream);
        }
    });
    let lock = host.path("home/alice/backup.lock");
    let out = run_as(
        &host,
        "alice",
        "",
        &format!(
            "exec 9>{lock}; flock 9 || exit 2; echo 'backup done' | bsd-mailx -s 'nightly backup' bob@example.net || exit 3; \
             exec 9>&-; flock -w 10 {lock} true || {{ echo 'the lock is still held' >&2; exit 4; }}",
            lock = lock.display()
        ),
    );
    assert_ok(&out, "the lock after mail returned");
    connected
        .recv_timeout(Duration::from_secs(10))
        .expect("the background delivery connects to the smarthost");
    let q = only_message(&host, "the locked script's mail");
    assert_eq!(q.recipients(), ["bob@example.net"]);
}

/// End to end: mutt's message with its binary attachment, sent by alice
/// and delivered in the background to the project's sink, arrives as it
/// was queued: the body's "." and "From " lines and the attachment's
/// bytes, for the one recipient, from alice.
#[test]
fn mutt_mail_arrives_intact_at_the_smarthost() {
    if !have("mutt") {
        return;
    }
    let sink = common::sink::Sink::start(&["--listen", "127.0.0.1:0"]);
    let Some(host) = installed_with(&format!(
        "\n[smarthost]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        sink.port(0)
    )) else {
        return;
    };
    let body = input(&host, "body", BODY.as_bytes());
    let attachment = binary_attachment();
    input(&host, "data.bin", &attachment);
    let out = run_as(
        &host,
        "alice",
        "",
        &format!("mutt -n -F /dev/null -s 'mutt delivered' -b hidden@example.net -a data.bin -- bob@example.net < {body}"),
    );
    assert_ok(&out, "mutt");
    let mut rcpt = Vec::new();
    let mut stored = Vec::new();
    // One SMTP transaction for both recipients, or one each.
    while rcpt.len() < 2 {
        let event = sink.event();
        assert_eq!(event["from"], "alice@host.test.example", "{event}");
        for r in event["rcpt"].as_array().unwrap() {
            rcpt.push(r.as_str().unwrap().to_string());
        }
        stored.push(std::fs::read(event["path"].as_str().unwrap()).unwrap());
    }
    rcpt.sort();
    assert_eq!(rcpt, ["bob@example.net", "hidden@example.net"]);
    for message in &stored {
        let parsed = Parsed::of(message);
        assert_eq!(parsed.one("Subject"), "mutt delivered");
        assert!(parsed.all("Bcc").is_empty(), "no Bcc at the smarthost");
        // What relaymail sent: from its Received line on (the sink's own
        // trace line above it names the envelope's recipients).
        let text = String::from_utf8_lossy(message);
        let sent = text
            .find("Received: by host.test.example (relaymail")
            .map(|at| &text[at..])
            .expect("relaymail's Received line");
        assert!(
            !sent.contains("hidden@"),
            "the Bcc recipient shows at the smarthost: {sent}"
        );
        assert_eq!(parsed.text(), BODY, "the body as mutt wrote it");
        assert!(
            parsed.attachment("data.bin") == attachment.as_slice(),
            "the attachment's bytes changed on the way"
        );
    }
    // Delivered and gone from the queue (the log says so first).
    wait_for(
        &host,
        1,
        || host.log_text().contains("\"status\":\"sent\"") && host.queued_ids().is_empty(),
        "the delivery",
    );
}
