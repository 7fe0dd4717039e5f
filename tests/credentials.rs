//! `relaymail credentials` and `password = "keyring"` in user mode,
//! through the kernel keyutils store (the one every Linux host has): the
//! secret is stored, found by delivery, reported by store, removed, and
//! never printed. Each test uses an account name of its own, and clears it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;

use common::sink::Sink;
use common::*;

/// A user-mode setup whose smarthost password lives in the keyring under
/// an account no other test (or run) uses.
fn keyring_env(port: u16, account: &str) -> Env {
    Env::with(&format!(
        "[smarthost]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nallow_cleartext_auth = true\nauth = \"plain\"\nusername = {account:?}\npassword = \"keyring\"\n"
    ))
}

/// A sink that accepts AUTH only for `account` with `secret`, and a
/// keyring setup that relays to it.
fn checked_by_sink(account: &str, secret: &str) -> (Sink, Env) {
    let sink = Sink::start(&[
        "--listen",
        "127.0.0.1:0",
        "--auth",
        "users",
        "--auth-user",
        &format!("{account}={secret}"),
    ]);
    let env = keyring_env(sink.port(0), account);
    (sink, env)
}

fn unique_account(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}-{}-{nanos}@test.example", std::process::id())
}

/// Removes the test's entry however the test ends.
struct Cleanup<'a>(&'a Env);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.run("relaymail", &["credentials", "clear"], b"");
    }
}

fn assert_hidden(out: &std::process::Output, secret: &str) {
    assert!(
        !stdout(out).contains(secret) && !stderr(out).contains(secret),
        "the secret was printed: {}",
        outcome(out)
    );
}

#[test]
fn set_check_and_clear_through_the_kernel_keyring() {
    let account = unique_account("cycle");
    let env = keyring_env(9, &account);
    let _cleanup = Cleanup(&env);
    let secret = "kr-Secret-3141";
    let out = env.run(
        "relaymail",
        &["credentials", "set", "--stdin"],
        format!("{secret}\n").as_bytes(),
    );
    assert_hidden(&out, secret);
    assert!(out.status.success(), "{}", outcome(&out));
    assert!(
        stdout(&out).contains("kernel keyutils store"),
        "{}",
        outcome(&out)
    );

    let out = env.run("relaymail", &["credentials", "check"], b"");
    assert_hidden(&out, secret);
    assert!(out.status.success(), "{}", outcome(&out));
    assert!(
        stdout(&out).contains(&format!("relaymail/{account}: held by keyutils")),
        "check names the store: {}",
        outcome(&out)
    );
    // Another account is not there: exit 69 and how to store it.
    let out = env.run(
        "relaymail",
        &[
            "credentials",
            "check",
            "--account",
            "nobody-else@test.example",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(69), "{}", outcome(&out));
    assert!(stderr(&out).contains("relaymail credentials set --account nobody-else@test.example"));

    let out = env.run("relaymail", &["credentials", "clear"], b"");
    assert!(out.status.success(), "{}", outcome(&out));
    assert!(
        stdout(&out).contains("removed from keyutils"),
        "{}",
        outcome(&out)
    );
    let out = env.run("relaymail", &["credentials", "check"], b"");
    assert_eq!(
        out.status.code(),
        Some(69),
        "gone after clear: {}",
        outcome(&out)
    );

    // Nothing to store: refused, nothing stored.
    let out = env.run("relaymail", &["credentials", "set", "--stdin"], b"\n");
    assert_eq!(out.status.code(), Some(65), "{}", outcome(&out));
}

/// Delivery authenticates with the password the keyring holds (the sink
/// checks it against its user list), and defers with the fix once it is
/// gone. The password appears nowhere.
#[test]
fn delivery_authenticates_with_the_keyring_password() {
    let account = unique_account("deliver");
    let secret = "kr-Secret-2718";
    let (sink, env) = checked_by_sink(&account, secret);
    let _cleanup = Cleanup(&env);
    let out = env.run(
        "relaymail",
        &["credentials", "set", "--stdin"],
        format!("{secret}\n").as_bytes(),
    );
    assert!(out.status.success(), "{}", outcome(&out));

    let out = env.sendmail(&["-odi", "x@example.net"], "Subject: kr\n\nbody\n");
    assert_hidden(&out, secret);
    assert_exit(&out, 0, &env, "delivery with the keyring password");
    assert_eq!(sink.event()["auth_user"], account.as_str());

    let out = env.run("relaymail", &["credentials", "clear"], b"");
    assert!(out.status.success(), "{}", outcome(&out));
    let out = env.sendmail(&["-odi", "y@example.net"], "Subject: kr2\n\nbody\n");
    assert_exit(&out, 75, &env, "no password left");
    assert!(
        stderr(&out).contains("in the OS keyring")
            && stderr(&out).contains("relaymail credentials set"),
        "{}",
        outcome(&out)
    );
    sink.no_event();
    for line in env.log_lines() {
        assert!(!line.contains(secret), "{line}");
    }
    let left = env.queued();
    assert_eq!(left.len(), 1, "the message waits for the password");
}

/// Asked on a terminal: no echo, asked twice, never shown.
#[test]
fn the_prompt_does_not_echo_the_password() {
    if !have("python3") {
        return;
    }
    let account = unique_account("prompt");
    let env = keyring_env(9, &account);
    let _cleanup = Cleanup(&env);
    let secret = "kr-Secret-1618";
    // A pty drives `credentials set` as a person would; the secret goes
    // through the environment, never relaymail's arguments.
    let script = r#"
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
seen = b""
def until(marker):
    global seen
    deadline = time.time() + 20
    while marker not in seen:
        left = deadline - time.time()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            os.kill(pid, 9)
            sys.exit("timed out waiting for %r; saw %r" % (marker, seen))
        seen += os.read(fd, 1024)
until(b"Password for")
os.write(fd, os.environ["SECRET"].encode() + b"\n")
until(b"Again:")
os.write(fd, os.environ["SECRET"].encode() + b"\n")
deadline = time.time() + 20
while time.time() < deadline and select.select([fd], [], [], deadline - time.time())[0]:
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let relaymail = env.cmd("relaymail");
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(script)
        .arg(relaymail.get_program())
        .args(["credentials", "set"])
        .env_clear()
        .envs(relaymail.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .env("SECRET", secret);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", outcome(&out));
    let screen = stdout(&out);
    assert!(screen.contains("Again:"), "{screen}");
    assert!(!screen.contains(secret), "echoed: {screen}");
    assert!(screen.contains("stored the password"), "{screen}");
    let out = env.run("relaymail", &["credentials", "check"], b"");
    assert!(out.status.success(), "{}", outcome(&out));
}

/// With a session bus and a keyring daemon (GNOME Keyring, started here
/// on a private bus and HOME), `set` stores in the Secret Service too,
/// `check` finds it there by a real D-Bus lookup, delivery in that session
/// authenticates, and `clear` removes it there.
#[test]
fn the_secret_service_holds_it_too_when_a_session_bus_exists() {
    if !have("dbus-run-session") || !have("gnome-keyring-daemon") {
        return;
    }
    let account = unique_account("secret-service");
    let secret = "kr-Secret-1414";
    let (sink, env) = checked_by_sink(&account, secret);
    let _cleanup = Cleanup(&env);
    let home = env.path("home");
    let script = r#"
        set -e
        export XDG_RUNTIME_DIR="$HOME/run" XDG_DATA_HOME="$HOME/data"
        mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
        printf 'unlock' | gnome-keyring-daemon --unlock --components=secrets --daemonize >/dev/null
        daemon=$(pgrep -n -x gnome-keyring-d)
        trap 'kill "$daemon"' EXIT
        printf '%s\n' "$SECRET" | relaymail credentials set --stdin
        relaymail credentials check
        printf 'Subject: ss\n\nbody\n' | sendmail -odi x@example.net
        relaymail credentials clear
        relaymail credentials check || echo "after clear: $?"
    "#;
    let relaymail = env.cmd("relaymail");
    let path = format!(
        "{}:/usr/bin:/bin",
        std::path::Path::new(relaymail.get_program())
            .parent()
            .unwrap()
            .display()
    );
    let out = Command::new("dbus-run-session")
        .args(["--", "sh", "-c", script])
        .env_clear()
        .envs(relaymail.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .env("PATH", path)
        .env("HOME", &home)
        .env("SECRET", secret)
        .output()
        .unwrap();
    assert_hidden(&out, secret);
    assert!(out.status.success(), "{}", outcome(&out));
    let text = stdout(&out);
    for wanted in [
        "in the Secret Service of your desktop session",
        &format!("relaymail/{account}: held by secret-service"),
        &format!("relaymail/{account}: removed from secret-service"),
        &format!("relaymail/{account}: not in secret-service"),
        "after clear: 69",
    ] {
        assert!(text.contains(wanted), "{wanted:?} in: {}", outcome(&out));
    }
    assert_eq!(sink.event()["auth_user"], account.as_str());
}
