//! Bad input: each case gets the documented sysexits code, a message that
//! names the problem, and leaves no message (visible or half-written) in
//! the queue.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use common::*;

fn assert_refused(env: &Env, out: &Output, code: i32, message: &str, what: &str) {
    assert_exit(out, code, env, what);
    let err = stderr(out);
    assert!(
        err.contains(message),
        "{what}: stderr lacks {message:?}: {err}"
    );
    assert!(
        err.starts_with("sendmail: "),
        "{what}: message prefixed with the face: {err}"
    );
    let left: Vec<String> = env.spool_files();
    assert!(left.is_empty(), "{what}: spool not empty: {left:?}");
}

struct Case {
    name: &'static str,
    args: &'static [&'static str],
    stdin: &'static [u8],
    code: i32,
    message: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "no recipients",
        args: &[],
        stdin: b"\nb\n",
        code: 64,
        message: "no recipients given",
    },
    Case {
        name: "-t without recipient headers",
        args: &["-t"],
        stdin: b"Subject: x\n\nb\n",
        code: 64,
        message: "found no address",
    },
    Case {
        name: "malformed recipient",
        args: &["bad address@example.com"],
        stdin: b"\nb\n",
        code: 64,
        message: "invalid address \"bad address@example.com\"",
    },
    Case {
        name: "malformed recipient domain",
        args: &["a@exa_mple..com"],
        stdin: b"\nb\n",
        code: 64,
        message: "not a valid host name",
    },
    Case {
        name: "malformed -t recipient",
        args: &["-t"],
        stdin: b"To: a@@example.com\n\nb\n",
        code: 64,
        message: "invalid address",
    },
    Case {
        name: "malformed sender",
        args: &["-f", "a b@c", "x@example.net"],
        stdin: b"\nb\n",
        code: 64,
        message: "sender (-f)",
    },
    Case {
        name: "header injection through -f",
        args: &[
            "-f",
            "a@example.com\r\nBcc: victim@example.net",
            "x@example.net",
        ],
        stdin: b"\nb\n",
        code: 64,
        message: "-f: the sender address contains a line break",
    },
    Case {
        name: "recipient injection through an argument",
        args: &["-odq", "bob@test.example\r\nBcc: victim@x.y"],
        stdin: b"\nb\n",
        code: 64,
        message:
            "recipient argument \"bob@test.example\\r\\nBcc: victim@x.y\" contains a line break",
    },
    Case {
        name: "control character in a recipient after --",
        args: &["-odq", "--", "bob@test.example\u{1b}[2J"],
        stdin: b"\nb\n",
        code: 64,
        message: "contains a line break or control character",
    },
    Case {
        name: "header injection through -F",
        args: &["-F", "Name\nBcc: victim@example.net", "x@example.net"],
        stdin: b"\nb\n",
        code: 64,
        message: "-F: the full name contains a line break",
    },
    Case {
        name: "missing option value",
        args: &["x@example.net", "-f"],
        stdin: b"",
        code: 64,
        message: "option -f needs a value",
    },
    Case {
        name: "bad -N",
        args: &["-N", "sometimes", "x@example.net"],
        stdin: b"",
        code: 64,
        message: "-N: invalid value",
    },
    Case {
        name: "NUL byte",
        args: &["x@example.net"],
        stdin: b"Subject: x\n\nline 1\nline\x002\n",
        code: 65,
        message: "NUL byte at line 4",
    },
];

#[test]
fn refused_inputs() {
    for case in CASES {
        let env = Env::new();
        let out = env.run("sendmail", case.args, case.stdin);
        assert_refused(&env, &out, case.code, case.message, case.name);
    }
}

#[test]
fn oversize_message_is_refused_while_streaming() {
    let env = Env::with("[queue]\nmax_message_size = \"10KB\"\n");
    let big = format!("Subject: big\n\n{}", "0123456789abcdef\n".repeat(2000));
    let out = env.sendmail(&["x@example.net"], &big);
    assert_refused(
        &env,
        &out,
        65,
        "larger than the limit of 10000 bytes",
        "oversize",
    );
    let small = env.sendmail(&["x@example.net"], "Subject: small\n\nok\n");
    assert_exit(&small, 0, &env, "a small message still passes");
}

#[test]
fn alias_loop_is_a_config_error() {
    let env = Env::new();
    std::fs::write(env.path("aliases"), "root: ops\nops: team\nteam: root\n").unwrap();
    let out = env.sendmail(&["root"], "\nb\n");
    assert_refused(
        &env,
        &out,
        78,
        "alias loop root -> ops -> team -> root",
        "alias loop",
    );
}

#[test]
fn invalid_config_names_file_line_and_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "hostname = \"h.example\"\n[smarthost]\nhost = \"relay\"\nusr = \"me\"\n",
            ":4:1: unknown field `usr`",
            "did you mean \"username\"",
        ),
        (
            "[smarthost]\nhost = \"relay\"\nport = \"submission\"\n",
            ":3:8:",
            "invalid type",
        ),
        (
            "[smarthost]\nhost = \"relay\"\ntls = \"startls\"\n",
            ":3:7: unknown variant `startls`",
            "`starttls`",
        ),
        (
            "[queue]\nmax_lifetime = \"5 days\"\n",
            ":2:16: invalid duration",
            "\"5d\"",
        ),
        (
            "[smarthost]\nhost = \"relay\"\ntls_min_version = \"1.1\"\n",
            ":3:19:",
            "only TLS 1.2 and 1.3",
        ),
        (
            "hostname = \"not a host\"\n",
            "hostname",
            "not a valid domain name",
        ),
        ("this is not toml\n", ":1:", "relaymail.toml"),
    ];
    for (text, position, hint) in cases {
        let env = Env::new();
        std::fs::write(&env.config, text).unwrap();
        let out = env.sendmail(&["x@example.net"], "\nb\n");
        assert_refused(&env, &out, 78, position, text);
        assert!(stderr(&out).contains(hint), "{text}: {}", stderr(&out));
        if position.starts_with(':') {
            // The pointer names a page that is installed.
            assert!(
                stderr(&out).contains("relaymail.toml(5) describes every key"),
                "{text}: {}",
                stderr(&out)
            );
        }
        let check = env.run("relaymail", &["config", "check"], b"");
        assert_eq!(
            check.status.code(),
            Some(78),
            "config check agrees for {text}"
        );
    }
}

#[test]
fn unreadable_or_missing_config() {
    let env = Env::new();
    let out = env.sendmail(
        &[
            "-C",
            env.path("missing.toml").to_str().unwrap(),
            "x@example.net",
        ],
        "\nb\n",
    );
    assert_refused(
        &env,
        &out,
        78,
        "missing.toml: No such file",
        "missing config",
    );
    assert!(
        stderr(&out).contains("relaymail.toml(5) describes every key"),
        "{}",
        stderr(&out)
    );
    let out = env.sendmail(
        &["-C", env.path("bin").to_str().unwrap(), "x@example.net"],
        "\nb\n",
    );
    assert_refused(
        &env,
        &out,
        78,
        "cannot read config",
        "config is a directory",
    );
}

#[test]
fn spool_that_cannot_be_created() {
    let env = Env::new();
    std::fs::write(&env.spool, "a file where the spool should be").unwrap();
    let out = env.sendmail(&["x@example.net"], "\nb\n");
    assert_exit(&out, 73, &env, "spool under a file");
    assert!(
        stderr(&out).contains("cannot create spool directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn spool_without_permission_is_77() {
    if !is_root() {
        eprintln!("skipped: needs root to run the binary as another user");
        return;
    }
    let env = Env::new();
    for sub in ["", "tmp", "queue"] {
        std::fs::create_dir_all(env.spool.join(sub)).unwrap();
    }
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(env.path("aliases"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        BIN,
        "sendmail",
        "x@example.net",
    ])
    .env("RELAYMAIL_CONFIG", &env.config)
    .env("HOME", "/nonexistent");
    let out = run_with_stdin(&mut cmd, b"\nb\n");
    assert_refused(&env, &out, 77, "Permission denied", "spool not writable");
    assert!(
        stderr(&out).contains("check the spool's owner and mode"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn full_disk_is_a_temporary_failure() {
    let env = Env::new();
    // RLIMIT_FSIZE makes every write past 16 blocks fail with EFBIG, as a
    // full filesystem would fail with ENOSPC; SIGXFSZ is ignored so the
    // error reaches the program.
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "trap '' XFSZ; ulimit -f 16; exec \"$0\" \"$@\"",
        env.path("bin/sendmail").to_str().unwrap(),
        "x@example.net",
    ])
    .env("RELAYMAIL_CONFIG", &env.config)
    .env("HOME", env.path("home"));
    let message = format!(
        "Subject: big\n\n{}",
        "x".repeat(100)
            .repeat(5000)
            .replace("xxxxxxxxxx", "xxxxxxxxx\n")
    );
    let out = run_with_stdin(&mut cmd, message.as_bytes());
    assert_refused(&env, &out, 75, "spool filesystem is full", "RLIMIT_FSIZE");
}

#[test]
fn low_free_space_refuses_before_writing() {
    let env = Env::with("[queue]\nmin_free_space = \"1000000GiB\"\n");
    let out = env.sendmail(&["x@example.net"], "\nb\n");
    assert_refused(
        &env,
        &out,
        75,
        "less than [queue] min_free_space",
        "min_free_space",
    );
}

#[test]
fn a_rewrite_sender_without_a_domain_is_a_config_error() {
    let env = Env::with_sections("sender = \"alerts\"", "", "");
    let out = env.sendmail(&["x@example.net"], "\nb\n");
    assert_exit(&out, 78, &env, "[rewrite] sender = alerts");
    assert!(
        stderr(&out).contains("[rewrite] sender") && stderr(&out).contains("has no domain"),
        "{}",
        stderr(&out)
    );
    assert!(env.spool_files().is_empty());
}
