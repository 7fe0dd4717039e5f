//! A hostile local user against a system-mode install made as the README
//! says: a setgid `relaymail` binary in a temporary prefix, the system
//! configuration at /etc/relaymail, the spool at /var/spool/relaymail and
//! the JSON log under /var/log/relaymail. Each test works in a private
//! mount namespace (overlays on /etc, /var/spool and /var/log, with this
//! test's own directories bound at the relaymail paths), so it passes on
//! a host where relaymail is installed and leaves nothing behind.
//! Unprivileged users `alice` (the attacker) and `bob` exist only inside
//! the namespace. Needs root and the `relaymail` group.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::system::{Host, ALICE};
use common::{have, outcome, stderr, stdout};

const SECRET: &str = "smarthost-Secret-4711";
const SINK_SECRET: &str = "sink-user-Secret-0815";

/// The installed shape with `smarthost` in the system configuration, a
/// root:relaymail 0640 credentials file holding SECRET, and a
/// `[sink.users]` password (SINK_SECRET) in the configuration.
fn installed(smarthost: &str) -> Option<Host> {
    let config = format!(
        "hostname = \"host.test.example\"\n{smarthost}\n[rewrite]\ndefault_domain = \"test.example\"\naliases_file = \"/etc/relaymail/aliases\"\n\n[log]\nsyslog = false\nfile = \"/var/log/relaymail/relaymail.jsonl\"\n\n[sink]\nauth = \"users\"\n\n[sink.users]\nsinkuser = \"{SINK_SECRET}\"\n"
    );
    let host = Host::new(&config)?;
    host.install(
        "credentials",
        format!("{SECRET}\n").as_bytes(),
        host.gid,
        0o640,
    );
    host.install("aliases", b"postmaster: root\n", 0, 0o644);
    Some(host)
}

fn assert_no_secret(out: &Output, what: &str) {
    for text in [stdout(out), stderr(out)] {
        for secret in [SECRET, SINK_SECRET, "bob-private-text"] {
            assert!(!text.contains(secret), "{what}: {secret} leaked: {text}");
        }
    }
}

/// A sink index line whose message "path" is `target`.
fn forged_index(target: &str) -> String {
    serde_json::json!({
        "id": "0000000000000001",
        "path": target,
        "time": "2026-01-01T00:00:00+00:00",
        "from": "x@example.com",
        "rcpt": ["y@example.com"],
        "client": "127.0.0.1:1",
        "helo": null,
        "tls": null,
        "cipher": null,
        "auth_user": null,
        "size": 0,
        "subject": null,
        "offset": 0,
        "length": 0
    })
    .to_string()
}

/// Item 1: `sink show` through a symlinked index entry must not read the
/// credentials, the system configuration or another user's queued
/// message with the relaymail group.
#[test]
fn sink_show_never_reads_secrets_through_a_forged_index() {
    let Some(host) = installed("") else { return };
    let bob = host.shell(
        "bob",
        "printf 'Subject: mine\\n\\nbob-private-text\\n' | sendmail -odq bob@example.net",
    );
    assert!(bob.status.success(), "{}", stderr(&bob));
    let ids = host.queued_ids();
    assert_eq!(ids.len(), 1);
    let bob_msg = format!("/var/spool/relaymail/queue/{}.msg", ids[0]);
    for target in [
        "/etc/relaymail/credentials",
        "/etc/relaymail/relaymail.toml",
        bob_msg.as_str(),
    ] {
        let script = format!(
            "mkdir -p ~/ev && cd ~/ev && rm -f c.eml && ln -s {target} c.eml && printf '%s\\n' '{}' > sink-index.jsonl && relaymail sink show 0000000000000001 --state-dir ~/ev",
            forged_index(&format!("{}/home/alice/ev/c.eml", host.dir.path().display()))
        );
        let out = host.shell("alice", &script);
        assert_no_secret(&out, target);
        assert_eq!(out.status.code(), Some(74), "{target}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("Permission denied"),
            "{target}: {}",
            stderr(&out)
        );
    }
    // The same reads as the user's own are still served: the face works.
    let own = format!(
        "mkdir -p ~/own && cd ~/own && printf 'Subject: own\\r\\n\\r\\nalice-own-text\\r\\n' > c.eml && printf '%s\\n' '{}' > sink-index.jsonl && relaymail sink show 0000000000000001 --state-dir ~/own",
        forged_index(&format!("{}/home/alice/own/c.eml", host.dir.path().display()))
    );
    let out = host.shell("alice", &own);
    assert!(
        out.status.success() && stdout(&out).contains("alice-own-text"),
        "{}",
        stderr(&out)
    );
    // `config check` shows the paths to secrets, never the secrets.
    let out = host.run("alice", &["relaymail", "config", "check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_secret(&out, "config check");
}

/// One SMTP message to `port`; the reply to the final dot, or the reply
/// that refused it earlier.
fn smtp_send(port: u16, body: &str) -> String {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut reply = || {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return text;
            }
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return text;
            }
        }
    };
    let banner = reply();
    if !banner.starts_with("220") {
        return banner;
    }
    for command in [
        "EHLO attacker\r\n".to_string(),
        "MAIL FROM:<a@example.com>\r\n".into(),
        "RCPT TO:<b@example.com>\r\n".into(),
        "DATA\r\n".into(),
    ] {
        writer.write_all(command.as_bytes()).unwrap();
        let answer = reply();
        if !answer.starts_with('2') && !answer.starts_with('3') {
            return answer;
        }
    }
    writer
        .write_all(format!("Subject: x\r\n\r\n{body}\r\n.\r\n").as_bytes())
        .unwrap();
    let answer = reply();
    let _ = writer.write_all(b"QUIT\r\n");
    answer
}

/// Runs alice's sink with `store`, sends it one message, stops it.
/// Returns the reply to the message (or what the sink said if it exited).
fn alice_sink_stores(host: &Host, store: &str, body: &str) -> String {
    let mut child = host
        .command(
            "alice",
            &[
                "relaymail",
                "sink",
                "--listen",
                "127.0.0.1:0",
                "--auth",
                "none",
                "--store",
                store,
                "--state-dir",
                &format!("{}/home/alice/st", host.dir.path().display()),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = String::new();
    let port = loop {
        let Some(Ok(line)) = lines.next() else {
            // The sink exited: it refused the store at start.
            let status = child.wait().unwrap();
            return format!("sink exited ({status}): {said}");
        };
        said.push_str(&line);
        said.push('\n');
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest.split(' ').next().unwrap();
            break addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        }
    };
    let reply = smtp_send(port, body);
    let _ = child.kill();
    let _ = child.wait();
    reply
}

/// Item 2: a user's sink cannot write into the spool or append to the
/// shared JSON log.
#[test]
fn a_users_sink_cannot_write_the_spool_or_forge_the_log() {
    let Some(host) = installed("") else { return };
    host.create_log();
    let before = host.queue();
    let reply = alice_sink_stores(
        &host,
        "mbox:/var/spool/relaymail/queue/ZZZZZZZZZZZZZZZZ.env",
        "hello",
    );
    assert!(!reply.starts_with("250"), "stored into the spool: {reply}");
    assert_eq!(host.queue(), before, "the spool changed");
    let out = host.run("bob", &["mailq"]);
    assert!(out.status.success(), "bob's mailq: {}", stderr(&out));

    let forged = r#"{"event":"delivery","id":"0000000000000002","status":"sent","user":"root"}"#;
    let reply = alice_sink_stores(&host, "mbox:/var/log/relaymail/relaymail.jsonl", forged);
    assert!(!reply.starts_with("250"), "stored into the log: {reply}");
    assert!(
        !host.log_text().contains("\"status\":\"sent\""),
        "forged line in the log: {}",
        host.log_text()
    );
    assert!(
        std::fs::metadata(host.path("log/relaymail.jsonl"))
            .unwrap()
            .uid()
            == 0
    );
}

/// A CA of alice's own and a server certificate for localhost from it.
fn evil_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca = dir.join("evil-ca.pem");
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", outcome(&out));
    };
    let p = |name: &str| dir.join(name).display().to_string();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=evil CA",
        "-keyout",
        &p("evil-ca.key"),
        "-out",
        &p("evil-ca.pem"),
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
    ]);
    std::fs::write(dir.join("ext"), "subjectAltName=DNS:localhost\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("evil-ca.pem"),
        "-CAkey",
        &p("evil-ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("ext"),
        "-out",
        &p("server.pem"),
    ]);
    (ca, dir.join("server.pem"), dir.join("server.key"))
}

/// Waits (bounded) for a `delivery` event in the shared log.
fn wait_for_delivery_event(host: &Host, deadline: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = host.log_text();
        if let Some(line) = text.lines().find(|l| l.contains("\"event\":\"delivery\"")) {
            return line.to_string();
        }
        assert!(
            start.elapsed() < deadline,
            "no delivery attempt logged within {deadline:?}: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Item 3: with the default system roots, the user's SSL_CERT_FILE does
/// not decide whom the setgid process trusts: -odi, the -odb child,
/// flush and doctor all refuse the user's CA, and no password is sent.
#[test]
fn the_callers_ssl_cert_file_is_not_trusted() {
    if !have("openssl") {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = evil_ca(certs.path());
    let sink = common::sink::Sink::start(&[
        "--listen",
        "127.0.0.1:0",
        "--tls",
        "starttls",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--auth",
        "accept-any",
    ]);
    let smarthost = format!(
        "[smarthost]\nhost = \"localhost\"\nport = {}\ntls = \"starttls\"\nauth = \"plain\"\nusername = \"alerts\"\npassword_file = \"/etc/relaymail/credentials\"\n",
        sink.port(0)
    );
    let Some(host) = installed(&smarthost) else {
        return;
    };
    host.create_log();
    let evil = host.path("home/alice/evil-ca.pem");
    std::fs::copy(&ca, &evil).unwrap();
    nix::unistd::chown(&evil, Some(nix::unistd::Uid::from_raw(ALICE)), None).unwrap();
    let with_evil_ca = format!(
        "SSL_CERT_FILE={e} SSL_CERT_DIR={d} ",
        e = evil.display(),
        d = host.path("home/alice").display()
    );

    let out = host.shell(
        "alice",
        &format!("printf 'Subject: t\\n\\nbody\\n' | {with_evil_ca} sendmail -odi bob@example.net"),
    );
    assert_no_secret(&out, "-odi");
    assert_eq!(out.status.code(), Some(75), "-odi: {}", stderr(&out));
    sink.no_event();
    let line = wait_for_delivery_event(&host, Duration::from_secs(5));
    assert!(line.contains("\"status\":\"deferred\""), "{line}");
    assert!(
        line.to_ascii_lowercase().contains("certificate"),
        "deferred for the certificate: {line}"
    );

    let out = host.shell("alice", &format!("{with_evil_ca} relaymail flush"));
    assert_eq!(out.status.code(), Some(75), "flush: {}", stderr(&out));
    assert_no_secret(&out, "flush");
    sink.no_event();

    let out = host.shell("alice", &format!("{with_evil_ca} relaymail doctor"));
    assert_eq!(out.status.code(), Some(69), "doctor: {}", stdout(&out));
    assert_no_secret(&out, "doctor");
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.contains("FAIL") && l.to_ascii_lowercase().contains("tls")),
        "doctor names the TLS failure: {}",
        stdout(&out)
    );
    sink.no_event();

    // The -odb child: started by the setgid submission, it inherits
    // nothing of the caller's environment.
    std::fs::write(host.path("log/relaymail.jsonl"), "").unwrap();
    let out = host.shell(
        "alice",
        &format!("printf 'Subject: t2\\n\\nbody\\n' | {with_evil_ca} sendmail bob@example.net"),
    );
    assert!(out.status.success(), "-odb: {}", stderr(&out));
    let line = wait_for_delivery_event(&host, Duration::from_secs(30));
    assert!(
        line.contains("\"status\":\"deferred\""),
        "-odb child: {line}"
    );
    sink.no_event();
    assert_eq!(
        host.queued_ids().len(),
        2,
        "both messages wait in the queue"
    );
}

/// Item 5: the shared log is never created (and so owned) by a
/// submitter, and a submitter's umask never decides the spool's modes.
#[test]
fn modes_never_follow_the_submitters_umask_and_no_user_owns_the_log() {
    let Some(host) = installed("") else { return };
    let log = host.path("log/relaymail.jsonl");
    let submit = |user: &str, umask: &str| {
        host.shell(
            user,
            &format!(
                "umask {umask}; printf 'Subject: u\\n\\nb\\n' | sendmail -odq bob@example.net"
            ),
        )
    };
    let out = submit("alice", "000");
    assert!(out.status.success(), "alice: {}", stderr(&out));
    assert!(
        !log.exists(),
        "a submitter created the shared log: {:?}",
        std::fs::metadata(&log).map(|m| (m.uid(), m.mode() & 0o7777))
    );
    assert!(
        stderr(&out).contains(
            "install -m 0660 -o root -g relaymail /dev/null /var/log/relaymail/relaymail.jsonl"
        ),
        "the warning says how to create it: {}",
        stderr(&out)
    );
    // Root's first event creates it as logrotate would.
    let out = submit("root", "022");
    assert!(out.status.success(), "root: {}", stderr(&out));
    let meta = std::fs::metadata(&log).unwrap();
    let gid = nix::unistd::Group::from_name("relaymail")
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (0, gid, 0o660)
    );
    // Now every user's events reach it.
    for user in ["alice", "bob"] {
        let out = submit(user, "077");
        assert!(out.status.success(), "{user}: {}", stderr(&out));
    }
    let users: Vec<String> = host
        .log_text()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["user"].to_string())
        .collect();
    assert_eq!(users, ["\"root\"", "\"alice\"", "\"bob\""]);

    // umask 777: the queue files still get the spool's modes, and other
    // users' mailq reads them.
    let out = submit("alice", "777");
    assert!(out.status.success(), "alice umask 777: {}", stderr(&out));
    for (name, _, mode) in host.queue() {
        assert_eq!(mode, 0o640, "{name}");
    }
    let newest = host.queued_ids().pop().unwrap();
    let out = host.run("bob", &["mailq"]);
    assert!(out.status.success(), "bob's mailq: {}", stderr(&out));
    assert!(stdout(&out).contains(&newest), "{}", stdout(&out));
    let mut buf = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut buf)
        .unwrap();
    assert_eq!(buf.lines().count(), 4, "alice's umask-777 event too");
}

/// A configuration that names a command may come only from files no one
/// else can change: a conf.d fragment a user owns is refused for the
/// setgid binary, and root never runs a command from a user's file.
#[test]
fn commands_come_only_from_configurations_no_one_else_can_change() {
    let Some(host) = installed("") else { return };
    let marker = host.path("home/alice/ran");
    let fragment = format!(
        "[smarthost]\nhost = \"127.0.0.1\"\nport = 9\ntls = \"none\"\nusername = \"u\"\npassword_command = \"touch {}\"\n",
        marker.display()
    );
    // An admin's slip: conf.d handed to alice.
    let conf_d = host.path("etc/conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    std::fs::write(conf_d.join("alice.toml"), &fragment).unwrap();
    for path in [&conf_d, &conf_d.join("alice.toml")] {
        nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(ALICE)), None).unwrap();
    }
    let out = host.shell(
        "alice",
        "printf 'Subject: c\\n\\nb\\n' | sendmail -odi bob@example.net",
    );
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/etc/relaymail/conf.d")
            && stderr(&out).contains("belongs to uid 47101"),
        "{}",
        stderr(&out)
    );
    assert!(host.queued_ids().is_empty());
    std::fs::remove_dir_all(&conf_d).unwrap();

    // Root with -C on alice's file: the command is refused, not run.
    let own = host.path("home/alice/own.toml");
    std::fs::write(&own, &fragment).unwrap();
    nix::unistd::chown(&own, Some(nix::unistd::Uid::from_raw(ALICE)), None).unwrap();
    let out = host.run("root", &["relaymail", "-C", own.to_str().unwrap(), "flush"]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "password_command is honoured only from a configuration no one else can change"
        ),
        "{}",
        stderr(&out)
    );
    assert!(!marker.exists(), "root ran alice's password_command");
    // Alice's own file is hers to use (as alice, without the group).
    let out = host.run(
        "alice",
        &["relaymail", "-C", own.to_str().unwrap(), "config", "check"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The caller's PATH, HOME, TMPDIR and LD_PRELOAD reach nothing the setgid
/// process runs: its `password_command` finds the system's programs, and
/// the delivery (with AUTH) goes through.
#[test]
fn the_callers_path_home_tmpdir_and_ld_preload_have_no_effect() {
    let sink = common::sink::Sink::start(&["--listen", "127.0.0.1:0", "--auth", "accept-any"]);
    let smarthost = format!(
        "[smarthost]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nallow_cleartext_auth = true\nauth = \"plain\"\nusername = \"alerts\"\npassword_command = \"cat /etc/relaymail/credentials\"\n",
        sink.port(0)
    );
    let Some(host) = installed(&smarthost) else {
        return;
    };
    let home = host.path("home/alice");
    // Programs of alice's that would announce being run.
    std::fs::create_dir(home.join("bin")).unwrap();
    for program in ["cat", "sh", "relaymail", "sendmail"] {
        let path = home.join("bin").join(program);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\ntouch {}/ran-{program}\necho fake\n",
                home.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let preload = if have("cc") {
        let source = home.join("evil.c");
        std::fs::write(
            &source,
            format!("#include <stdio.h>\n__attribute__((constructor)) static void evil(void) {{ FILE *f = fopen(\"{}/ran-preload\", \"w\"); if (f) fclose(f); }}\n", home.display()),
        )
        .unwrap();
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(home.join("evil.so"))
            .arg(&source)
            .output()
            .unwrap();
        assert!(out.status.success(), "cc: {}", stderr(&out));
        format!("LD_PRELOAD={}/evil.so", home.display())
    } else {
        String::new()
    };
    for dir in ["tmp", "fakehome"] {
        std::fs::create_dir(home.join(dir)).unwrap();
    }
    walk_chown(&home, ALICE);
    let out = host.shell(
        "alice",
        &format!(
            "printf 'Subject: env\\n\\nbody\\n' | PATH=$HOME/bin:$PATH HOME=$HOME/fakehome TMPDIR=$HOME/tmp {preload} {} -odi bob@example.net",
            host.path("prefix/sendmail").display()
        ),
    );
    assert_no_secret(&out, "hostile environment");
    assert!(out.status.success(), "{}", stderr(&out));
    let event = sink
        .events
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("nothing delivered: {}\n{}", stderr(&out), host.log_text()));
    assert_eq!(event["auth_user"], "alerts", "{event}");
    let ran: Vec<String> = std::fs::read_dir(&home)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ran-"))
        .collect();
    assert!(ran.is_empty(), "the caller's programs ran: {ran:?}");
    for dir in ["tmp", "fakehome"] {
        assert_eq!(
            std::fs::read_dir(home.join(dir)).unwrap().count(),
            0,
            "{dir} was used"
        );
    }
}

fn walk_chown(dir: &Path, uid: u32) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        nix::unistd::chown(
            &entry.path(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(uid)),
        )
        .unwrap();
        if entry.file_type().unwrap().is_dir() {
            walk_chown(&entry.path(), uid);
        }
    }
}

/// A setgid submission blocked on its input: the caller cannot read its
/// environment or open its memory, and SIGSEGV or SIGABRT leave no core
/// file. Each check first runs against an ordinary process of the
/// caller's, where it must succeed, so it can tell the difference.
#[test]
fn a_blocked_setgid_submission_hides_its_memory_and_leaves_no_core() {
    let Some(host) = installed("") else { return };
    let script = r#"
        cd ~ && mkdir -p cores && cd cores && ulimit -c unlimited 2>/dev/null
        probe() { # pid label
            if cat /proc/$1/environ >/dev/null 2>&1; then echo "$2 environ readable"; else echo "$2 environ closed"; fi
            if (exec 4</proc/$1/mem) 2>/dev/null; then echo "$2 mem open"; else echo "$2 mem closed"; fi
        }
        sleep 30 & control=$!
        probe $control control
        kill -SEGV $control; wait $control
        ls | grep -q core && echo "control core written"
        rm -f core*
        for sig in SEGV ABRT; do
            mkfifo ~/in-$sig
            sendmail -odq bob@example.net < ~/in-$sig & pid=$!
            exec 3> ~/in-$sig
            i=0
            until grep -q '(sendmail)' /proc/$pid/stat 2>/dev/null || [ $i -ge 200 ]; do i=$((i+1)); sleep 0.05; done
            probe $pid "sendmail-$sig"
            # Rust's stack-overflow handler absorbs a first SIGSEGV that is
            # no fault (it restores the default and returns): repeat until
            # the process is gone.
            kill -$sig $pid
            i=0
            until grep -q ') Z' /proc/$pid/stat 2>/dev/null || [ ! -e /proc/$pid ] || [ $i -ge 100 ]; do
                i=$((i+1)); sleep 0.05; kill -$sig $pid 2>/dev/null
            done
            wait $pid; echo "sendmail-$sig status $?"
            exec 3>&-
        done
        ls | grep -q core && echo "sendmail core written"
        true
    "#;
    let out = host.shell("alice", script);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(
        text.contains("control environ readable") && text.contains("control mem open"),
        "the probe works on an ordinary process: {text}"
    );
    for sig in ["SEGV", "ABRT"] {
        assert!(
            text.contains(&format!("sendmail-{sig} environ closed"))
                && text.contains(&format!("sendmail-{sig} mem closed")),
            "{sig}: {text}"
        );
        let code = if sig == "SEGV" { 139 } else { 134 };
        assert!(
            text.contains(&format!("sendmail-{sig} status {code}")),
            "the signal ended it: {text}"
        );
    }
    if !text.contains("control core written") {
        eprintln!("note: this host writes no core files for the caller (core_pattern or hard limit), so only the /proc checks are proven");
    }
    assert!(!text.contains("sendmail core written"), "{text}");
    assert!(
        host.queued_ids().is_empty(),
        "a killed submission queued nothing"
    );
}

/// `relaymail doctor` as root names each wrong owner, group or mode of
/// the installed files, and a missing setgid bit, with the command that
/// fixes it; on the installed shape the same checks are OK.
#[test]
fn doctor_names_each_wrong_owner_group_and_mode_with_its_fix() {
    let smarthost = "[smarthost]\nhost = \"127.0.0.1\"\nport = 9\ntls = \"none\"\nusername = \"alerts\"\npassword_file = \"/etc/relaymail/credentials\"\n";
    let Some(host) = installed(smarthost) else {
        return;
    };
    host.create_log();
    let doctor = |user: &str| -> Vec<serde_json::Value> {
        let out = host.run(user, &["relaymail", "doctor", "--json"]);
        assert_no_secret(&out, "doctor");
        let doc: serde_json::Value = serde_json::from_str(&stdout(&out))
            .unwrap_or_else(|e| panic!("{e}: {}", outcome(&out)));
        doc["checks"].as_array().unwrap().clone()
    };
    let of = |checks: &[serde_json::Value], step: &str| -> Vec<(String, String, String)> {
        checks
            .iter()
            .filter(|c| c["step"] == step)
            .map(|c| {
                (
                    c["status"].as_str().unwrap().to_string(),
                    c["detail"].as_str().unwrap().to_string(),
                    c["fix"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let checks = doctor("root");
    for step in ["binary", "permissions", "spool", "log"] {
        let found = of(&checks, step);
        assert!(!found.is_empty(), "{step} checked: {checks:?}");
        assert!(
            found.iter().all(|(status, _, _)| status == "OK"),
            "{step} on the installed shape: {found:?}"
        );
    }

    let mode = |rel: &str, bits: u32| {
        std::fs::set_permissions(host.path(rel), std::fs::Permissions::from_mode(bits)).unwrap()
    };
    mode("etc/credentials", 0o644);
    mode("spool/queue", 0o2775);
    nix::unistd::chown(
        &host.path("log/relaymail.jsonl"),
        Some(nix::unistd::Uid::from_raw(ALICE)),
        None,
    )
    .unwrap();
    mode("prefix/relaymail", 0o755);
    let checks = doctor("root");
    let wanted = [
        ("permissions", "/etc/relaymail/credentials", "mode 0644 (want 0640)", "chown root:relaymail /etc/relaymail/credentials && chmod 640 /etc/relaymail/credentials"),
        ("spool", "/var/spool/relaymail/queue", "mode 2775 (want 2770)", "chmod 2770 /var/spool/relaymail/queue"),
        ("log", "/var/log/relaymail/relaymail.jsonl", "owner uid 47101 (want root)", "chown root:relaymail /var/log/relaymail/relaymail.jsonl && chmod 660"),
        ("binary", "is not setgid relaymail", "only root can queue mail", "chmod 2755"),
    ];
    for (step, path, problem, fix) in wanted {
        let found = of(&checks, step);
        assert!(
            found.iter().any(|(status, detail, f)| status != "OK"
                && detail.contains(path)
                && detail.contains(problem)
                && f.contains(fix)),
            "{step}: wanted {path}: {problem} / {fix}; got {found:?}"
        );
    }
}

/// What a user must not reach through or around the setgid binary: the
/// credentials file, another user's spool files, `queue show` of root's
/// message, and (with -C or RELAYMAIL_CONFIG naming a file of their own
/// that points at the system password and spool) the spool or the
/// system secret sent to a server of their choice.
#[test]
fn a_users_own_configuration_reaches_neither_the_spool_nor_the_system_secret() {
    let Some(host) = installed("") else { return };
    let root = host.shell(
        "root",
        "printf 'Subject: root\\n\\nbob-private-text\\n' | sendmail -odq admin@example.net",
    );
    assert!(root.status.success(), "{}", outcome(&root));
    let id = host.queued_ids().pop().unwrap();

    let out = host.shell(
        "alice",
        &format!("cat /etc/relaymail/credentials; cat /var/spool/relaymail/queue/{id}.msg; ls /var/spool/relaymail/queue"),
    );
    assert_no_secret(&out, "direct reads");
    assert!(
        !stdout(&out).contains(&id),
        "alice listed the queue directory: {}",
        outcome(&out)
    );

    let out = host.run("alice", &["relaymail", "queue", "show", &id]);
    assert_no_secret(&out, "queue show");
    assert_eq!(out.status.code(), Some(77), "{}", outcome(&out));
    assert!(
        stderr(&out).contains("only they or root may show it"),
        "{}",
        outcome(&out)
    );
    // mailq lists it (as sendmail's does) without its text.
    let out = host.run("alice", &["mailq"]);
    assert!(
        out.status.success() && stdout(&out).contains(&id),
        "{}",
        outcome(&out)
    );
    assert_no_secret(&out, "mailq");

    // Alice's configuration: the system spool and password, her server.
    let sink = common::sink::Sink::start(&["--listen", "127.0.0.1:0", "--auth", "accept-any"]);
    let evil = host.path("home/alice/evil.toml");
    std::fs::write(
        &evil,
        format!(
            "spool_dir = \"/var/spool/relaymail\"\n[smarthost]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nallow_cleartext_auth = true\nusername = \"alerts\"\npassword_file = \"/etc/relaymail/credentials\"\n[log]\nsyslog = false\n",
            sink.port(0)
        ),
    )
    .unwrap();
    nix::unistd::chown(&evil, Some(nix::unistd::Uid::from_raw(ALICE)), None).unwrap();
    let before = host.queue();
    for how in [
        format!(
            "printf 'Subject: x\\n\\nb\\n' | sendmail -C {} -odi bob@example.net",
            evil.display()
        ),
        format!(
            "printf 'Subject: x\\n\\nb\\n' | RELAYMAIL_CONFIG={} sendmail -odi bob@example.net",
            evil.display()
        ),
        format!("RELAYMAIL_CONFIG={} relaymail flush", evil.display()),
        format!("RELAYMAIL_CONFIG={} relaymail doctor", evil.display()),
    ] {
        let out = host.shell("alice", &how);
        assert_no_secret(&out, &how);
        assert!(!out.status.success(), "{how}: {}", outcome(&out));
        assert_eq!(host.queue(), before, "{how}: the spool changed");
        sink.no_event();
    }
    // The spool is where the first refusal comes: the group is gone.
    let out = host.shell(
        "alice",
        &format!(
            "printf 'Subject: x\\n\\nb\\n' | sendmail -C {} -odq bob@example.net",
            evil.display()
        ),
    );
    assert!(
        stderr(&out).contains("/var/spool/relaymail") && stderr(&out).contains("Permission denied"),
        "{}",
        outcome(&out)
    );
}

/// /usr/sbin/sendmail is the small submitter, which hands anything but a
/// plain submission to the `relaymail` beside it, and starts that one for
/// background delivery. A user who puts the setgid submitter next to a
/// `relaymail` of their own (a hard link, where the system allows one)
/// must not get the group into that program either way.
#[test]
fn the_submitter_beside_a_users_own_relaymail_gives_it_no_group() {
    if !have("python3") {
        return;
    }
    // A smarthost nobody listens on: the background delivery is started
    // (no runner slot exists yet), and its failure does not matter.
    let Some(host) = installed("[smarthost]\nhost = \"127.0.0.1\"\nport = 9\ntls = \"none\"\n")
    else {
        return;
    };
    let trap = host.path("home/alice/trap");
    std::fs::create_dir(&trap).unwrap();
    common::system::chown(&trap, ALICE, ALICE, 0o755);
    let submitter = trap.join("relaymail-sendmail");
    std::fs::copy(common::SENDMAIL_BIN, &submitter).unwrap();
    common::system::chown(&submitter, 0, host.gid, 0o2755);
    let own = trap.join("relaymail");
    // Not a shell script: dash and bash give up a set-group id themselves.
    std::fs::write(
        &own,
        format!(
            "#!/usr/bin/python3\nimport os, sys\nwhat = 'handover' if '-bp' in sys.argv else 'spawn'\nopen('{}/egid-' + what, 'w').write('%d\\n' % os.getegid())\n",
            trap.display()
        ),
    )
    .unwrap();
    common::system::chown(&own, ALICE, ALICE, 0o755);
    let submitter = submitter.to_str().unwrap();

    // Everything but a plain submission is handed over.
    let out = host.run("alice", &[submitter, "-bp"]);
    assert_eq!(out.status.code(), Some(0), "{}", outcome(&out));
    let handed = std::fs::read_to_string(trap.join("egid-handover")).unwrap();
    assert_eq!(
        handed.trim(),
        ALICE.to_string(),
        "the handed-over program's group"
    );

    // A plain submission queues with the group, then starts the delivery.
    let out = host.shell(
        "alice",
        &format!("printf 'Subject: trap\\n\\nb\\n' | {submitter} root"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", outcome(&out));
    assert_eq!(host.queued_ids().len(), 1, "queued through the group");
    let spawned = trap.join("egid-spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    let gid = loop {
        let text = std::fs::read_to_string(&spawned).unwrap_or_default();
        if text.ends_with('\n') {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the background delivery was not started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(gid.trim(), ALICE.to_string(), "the started program's group");
}
