//! Test harness: each test gets its own temporary root with a config, a
//! spool, a syslog socket of its own and `sendmail`/`mailq`/`newaliases`
//! symlinks to the real binary. On failure, helpers print the command, the
//! spool listing and the log.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

pub mod sink;
pub mod system;

pub const BIN: &str = env!("CARGO_BIN_EXE_relaymail");
/// What /usr/sbin/sendmail is: the small submitter, which hands anything
/// but a plain submission to `BIN` beside it.
pub const SENDMAIL_BIN: &str = env!("CARGO_BIN_EXE_relaymail-sendmail");

pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub spool: PathBuf,
    pub log: SyslogListener,
    pub log_path: PathBuf,
}

/// A syslog socket of the test's own, drained by a thread (the kernel
/// queues only 10 datagrams) into a list. `lines` syncs with a sentinel
/// datagram: every line sent before the call is returned.
pub struct SyslogListener {
    path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    seen: Arc<(Mutex<u64>, Condvar)>,
    sentinels: AtomicU64,
}

const SENTINEL: &str = "\u{0}sentinel ";

impl SyslogListener {
    fn bind(path: &Path) -> SyslogListener {
        let socket = UnixDatagram::bind(path).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new((Mutex::new(0u64), Condvar::new()));
        let (s, l, n) = (socket, lines.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(len) = s.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                if let Some(k) = text.strip_prefix(SENTINEL) {
                    let (lock, cv) = &*n;
                    *lock.lock().unwrap() = k.parse().unwrap();
                    cv.notify_all();
                } else {
                    l.lock().unwrap().push(text);
                }
            }
        });
        SyslogListener {
            path: path.to_path_buf(),
            lines,
            seen,
            sentinels: AtomicU64::new(0),
        }
    }

    pub fn lines(&self) -> Vec<String> {
        let k = self.sentinels.fetch_add(1, Ordering::SeqCst) + 1;
        let sender = UnixDatagram::unbound().unwrap();
        sender
            .send_to(format!("{SENTINEL}{k}").as_bytes(), &self.path)
            .unwrap();
        let (lock, cv) = &*self.seen;
        let mut got = lock.lock().unwrap();
        while *got < k {
            got = cv.wait(got).unwrap();
        }
        self.lines.lock().unwrap().clone()
    }
}

impl Env {
    pub fn new() -> Env {
        Env::with("")
    }

    /// `extra` is appended to the base config (which sets [rewrite] and [log]
    /// tables, so extra keys for those go through `with_sections`).
    pub fn with(extra: &str) -> Env {
        Env::with_sections("", "", extra)
    }

    pub fn with_sections(rewrite: &str, log_keys: &str, extra: &str) -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(SENDMAIL_BIN, bin.join("sendmail")).unwrap();
        for face in ["mailq", "newaliases", "relaymail"] {
            std::os::unix::fs::symlink(BIN, bin.join(face)).unwrap();
        }
        fs::create_dir(dir.path().join("home")).unwrap();
        let spool = dir.path().join("spool");
        let log_path = dir.path().join("log.sock");
        let log = SyslogListener::bind(&log_path);
        let aliases = dir.path().join("aliases");
        fs::write(
            &aliases,
            "postmaster: root\nroot: admin@example.com, ops\nops: ops@example.org\n",
        )
        .unwrap();
        let config = dir.path().join("relaymail.toml");
        let text = format!(
            "hostname = \"host.test.example\"\nspool_dir = {spool:?}\n\n[rewrite]\ndefault_domain = \"test.example\"\naliases_file = {aliases:?}\n{rewrite}\n[log]\nsyslog_socket = {log_path:?}\n{log_keys}\n{extra}\n",
            spool = spool.display().to_string(),
            aliases = aliases.display().to_string(),
            log_path = log_path.display().to_string(),
        );
        fs::write(&config, text).unwrap();
        Env {
            dir,
            config,
            spool,
            log,
            log_path,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A command for one face, with this test's config and a private HOME.
    pub fn cmd(&self, face: &str) -> Command {
        let mut cmd = Command::new(self.dir.path().join("bin").join(face));
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.dir.path().join("home"))
            .env("RELAYMAIL_CONFIG", &self.config);
        cmd
    }

    /// `face ARGS` under `strace -f -qq -e trace=SYSCALLS -o TRACE`, with
    /// this test's environment. strace ends with the last process it
    /// follows (a background delivery the submission starts, say).
    pub fn traced(&self, face: &str, syscalls: &str, trace: &Path, args: &[&str]) -> Command {
        let direct = self.cmd(face);
        let mut traced = Command::new("strace");
        traced
            .args(["-f", "-qq", "-e", &format!("trace={syscalls}"), "-o"])
            .arg(trace)
            .arg(direct.get_program())
            .args(args)
            .env_clear()
            .envs(direct.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))));
        traced
    }

    pub fn run(&self, face: &str, args: &[&str], stdin: &[u8]) -> Output {
        run_with_stdin(self.cmd(face).args(args), stdin)
    }

    pub fn sendmail(&self, args: &[&str], stdin: &str) -> Output {
        self.run("sendmail", args, stdin.as_bytes())
    }

    /// Committed messages, oldest first: each `.msg` in queue/ that is a
    /// complete queue file (format 2), or a format-1 `.msg` with its
    /// `.env`. `env` is the current envelope (`.env` if present, else the
    /// one inside the file), `msg` the message alone.
    pub fn queued(&self) -> Vec<Queued> {
        let queue = self.spool.join("queue");
        let Ok(entries) = fs::read_dir(&queue) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".msg"))
                    .map(String::from)
            })
            .collect();
        ids.sort();
        // A background delivery may remove a message between the listing
        // and the read: it is then no longer queued.
        ids.into_iter()
            .filter_map(|id| {
                let file = match fs::read(queue.join(format!("{id}.msg"))) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                    Err(e) => panic!("reading {id}.msg: {e}"),
                };
                let state = match fs::read_to_string(queue.join(format!("{id}.env"))) {
                    Ok(text) => Some(text),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => panic!("reading {id}.env: {e}"),
                };
                let (msg, first) = split_queue_file(&file);
                let env = state.or(first)?;
                Some(Queued { env, msg, id })
            })
            .collect()
    }

    pub fn only_message(&self) -> Queued {
        let mut all = self.queued();
        assert_eq!(
            all.len(),
            1,
            "expected one queued message\n{}",
            self.listing()
        );
        all.remove(0)
    }

    /// Every file under the spool, for failure messages.
    pub fn listing(&self) -> String {
        let mut out = String::new();
        for sub in ["tmp", "queue"] {
            if let Ok(entries) = fs::read_dir(self.spool.join(sub)) {
                for e in entries.flatten() {
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    out.push_str(&format!(
                        "  {sub}/{} ({len} bytes)\n",
                        e.file_name().to_string_lossy()
                    ));
                }
            }
        }
        if out.is_empty() {
            "  (spool empty)\n".into()
        } else {
            out
        }
    }

    /// Files in tmp/ and queue/ (visible or not).
    pub fn spool_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["tmp", "queue"] {
            if let Ok(entries) = fs::read_dir(self.spool.join(sub)) {
                out.extend(
                    entries
                        .flatten()
                        .map(|e| format!("{sub}/{}", e.file_name().to_string_lossy())),
                );
            }
        }
        out.sort();
        out
    }

    /// Syslog datagrams received so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lines()
    }
}

/// A queue file's message and first envelope (format 2: a fixed-width
/// first line giving the envelope's position), or the whole file and no
/// envelope (format 1).
pub fn split_queue_file(file: &[u8]) -> (Vec<u8>, Option<String>) {
    const HEADER_LEN: usize = 90;
    if !file.starts_with(b"relaymail-queue-file 2 ") {
        return (file.to_vec(), None);
    }
    let line = String::from_utf8_lossy(&file[..HEADER_LEN]).into_owned();
    let number = |key: &str| -> usize { line.split(key).nth(1).unwrap()[..20].parse().unwrap() };
    let (at, len) = (number("envelope-at="), number("envelope-len="));
    (
        file[HEADER_LEN..at].to_vec(),
        Some(String::from_utf8(file[at..at + len].to_vec()).unwrap()),
    )
}

pub struct Queued {
    pub id: String,
    pub env: String,
    pub msg: Vec<u8>,
}

impl Queued {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.msg).into_owned()
    }

    pub fn header(&self) -> String {
        let text = self.text();
        text.split("\r\n\r\n").next().unwrap_or("").to_string()
    }

    pub fn body(&self) -> Vec<u8> {
        let pos = self
            .msg
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end");
        self.msg[pos + 4..].to_vec()
    }

    pub fn env_value(&self, key: &str) -> Option<toml::Value> {
        let table: toml::Table = toml::from_str(&self.env).expect("env is TOML");
        table.get(key).cloned()
    }

    pub fn recipients(&self) -> Vec<String> {
        let table: toml::Table = toml::from_str(&self.env).expect("env is TOML");
        table["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["address"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn sender(&self) -> String {
        self.env_value("sender")
            .and_then(|v| v.as_str().map(String::from))
            .unwrap()
    }
}

pub fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut pipe = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    // A writer thread: the child may stop reading early (lone dot, error).
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    out
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An outside program's exit status, stdout and stderr, for the message of
/// an assertion about it: when an independent client (swaks, Python,
/// openssl, Postfix, ...) fails, what it said explains why.
pub fn outcome(out: &Output) -> String {
    format!(
        "{}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    )
}

/// Asserts the exit code, printing everything useful when it differs.
pub fn assert_exit(out: &Output, code: i32, env: &Env, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: exit {:?}, wanted {code}\nstdout: {}\nstderr: {}\nspool:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out),
        env.listing()
    );
}

pub fn is_root() -> bool {
    nix::unistd::getuid().is_root()
}

pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

/// Whether an outside program the test drives is installed. Outside CI a
/// missing one skips the test with a note; in CI (where scripts/test
/// installs them) it is a failure, so nothing is silently left untested.
pub fn have(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    installed_or_skip(found, program)
}

/// `have` for a program (or a file of its package) known by its path.
pub fn have_file(path: &str) -> bool {
    installed_or_skip(Path::new(path).exists(), path)
}

/// A missing tool: a failure in CI, a skip with a note elsewhere.
fn installed_or_skip(found: bool, what: &str) -> bool {
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{what} is not installed; scripts/test installs it"
        );
        eprintln!("skipped: {what} is not installed (scripts/test installs it)");
    }
    found
}

fn crash_setting(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Queues `n` messages ("Subject: kill I" and a 1 KB body) with -odq,
/// then starts `relaymail flush` up to `rounds` times, each SIGKILLed
/// after a random 0 to `window_ms` ms, until the queue is empty. Returns how many
/// flushes were killed while running.
pub fn queue_and_kill_flushes(env: &Env, n: usize, rounds: usize, window_ms: u64) -> usize {
    // Longer soaks by hand: RELAYMAIL_CRASH_ROUNDS=300 (and, for the
    // delivery test, RELAYMAIL_CRASH_MESSAGES=300).
    let rounds = crash_setting("RELAYMAIL_CRASH_ROUNDS").unwrap_or(rounds);
    for i in 0..n {
        assert_exit(
            &env.sendmail(
                &["-odq", "ok@example.net"],
                &format!("Subject: kill {i}\n\n{}\n", "line\n".repeat(200)),
            ),
            0,
            env,
            "queue",
        );
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    let mut state = seed | 1;
    let mut kills = 0;
    for _ in 0..rounds {
        if env.queued().is_empty() {
            break;
        }
        let mut child = env
            .cmd("relaymail")
            .arg("flush")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        std::thread::sleep(std::time::Duration::from_micros(state % (window_ms * 1000)));
        if child.try_wait().unwrap().is_none() {
            kills += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    kills
}
