//! A running `relaymail sink` for tests: ephemeral loopback ports, its own
//! state and Maildir, the JSON event lines read from its stdout.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::BufRead;
use std::io::BufReader;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::BIN;

/// A running `relaymail sink` on ephemeral loopback ports.
pub struct Sink {
    pub child: Child,
    pub dir: std::sync::Arc<tempfile::TempDir>,
    pub args: Vec<String>,
    /// Bound addresses, in the order given.
    pub addrs: Vec<String>,
    pub events: mpsc::Receiver<serde_json::Value>,
}

impl Sink {
    pub fn start(args: &[&str]) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("relaymail.toml"),
            "hostname = \"sink.test.example\"\n[log]\nsyslog = false\n",
        )
        .unwrap();
        let args = args.iter().map(|a| a.to_string()).collect();
        Sink::start_in(std::sync::Arc::new(dir), args, &[])
    }

    /// Starts the sink on `dir`, optionally under a wrapper such as strace.
    pub fn start_in(
        dir: std::sync::Arc<tempfile::TempDir>,
        args: Vec<String>,
        wrapper: &[&str],
    ) -> Sink {
        let config = dir.path().join("relaymail.toml");
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args(["sink", "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("--store")
            .arg(format!("maildir:{}", dir.path().join("mail").display()));
        cmd.args(&args)
            .env("RELAYMAIL_CONFIG", &config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let wanted = args
            .iter()
            .filter(|a| **a == "--listen" || **a == "--listener")
            .count()
            .max(1);
        let mut addrs = Vec::new();
        let mut lines = stderr.lines();
        while addrs.len() < wanted {
            let line = lines.next().expect("sink exited before listening").unwrap();
            let addr = line
                .split("listening on ")
                .nth(1)
                .unwrap_or_else(|| panic!("unexpected: {line}"));
            addrs.push(addr.split(' ').next().unwrap().to_string());
        }
        std::thread::spawn(move || for _ in lines {});
        let (tx, events) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ =
                    tx.send(serde_json::from_str(&line).expect("stdout carries JSON lines only"));
            }
        });
        Sink {
            child,
            dir,
            args,
            addrs,
            events,
        }
    }

    /// Kills the sink with SIGKILL and starts it again on the same store.
    pub fn restart(mut self) -> Sink {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Sink::start_in(self.dir.clone(), self.args.clone(), &[])
    }

    pub fn port(&self, i: usize) -> u16 {
        self.addrs[i].rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn event(&self) -> serde_json::Value {
        self.events
            .recv_timeout(Duration::from_secs(10))
            .expect("an event line for the stored message")
    }

    pub fn no_event(&self) {
        assert!(
            self.events
                .recv_timeout(Duration::from_millis(200))
                .is_err(),
            "no message should be stored"
        );
    }

    pub fn stored(&self) -> Vec<std::path::PathBuf> {
        let new = self.dir.path().join("mail/new");
        std::fs::read_dir(new)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    pub fn relaymail(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .env("RELAYMAIL_CONFIG", self.dir.path().join("relaymail.toml"))
            .output()
            .unwrap()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // Under a wrapper (strace), killing the wrapper would leave the
        // traced sink running: kill its children first.
        let pid = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
