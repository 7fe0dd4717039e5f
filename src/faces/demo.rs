//! `relaymail demo`: the main job end to end on a built-in setup. In a
//! temporary directory it starts relaymail's own sink as the smarthost
//! (STARTTLS with a generated certificate, AUTH accept-any, on an
//! ephemeral loopback port), submits a message through the real
//! `sendmail` face exactly as cron does, delivers it, and shows the log
//! lines, the queue and the message as the relay received it. Nothing is
//! left running or written outside the temporary directory.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::spool::QueueId;
use crate::sysexits::{Failure, Sysexit};

use super::queue::output;

const MESSAGE: &str = "Subject: relaymail demo: backup finished\nTo: root\n\nThe nightly backup finished without errors.\n";

/// Kills the demo's sink however the demo ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(out: &mut impl Write) -> Result<Sysexit, Failure> {
    let dir = std::env::temp_dir().join(format!("relaymail-demo-{}", QueueId::generate()));
    std::fs::create_dir(&dir).map_err(|e| fail("create the demo directory", &dir, e))?;
    let result = run_in(&dir, out);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn fail(what: &str, path: &Path, e: std::io::Error) -> Failure {
    Failure::new(
        Sysexit::CantCreate,
        format!("demo: cannot {what} {}: {e}", path.display()),
    )
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text).map_err(|e| fail("write", path, e))
}

fn run_in(dir: &Path, out: &mut impl Write) -> Result<Sysexit, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| fail("find the relaymail binary", Path::new("."), e))?;
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).map_err(|e| fail("create", &bin, e))?;
    for face in ["sendmail", "mailq"] {
        std::os::unix::fs::symlink(&exe, bin.join(face)).map_err(|e| fail("link", &bin, e))?;
    }

    // The smarthost: relaymail's own sink, STARTTLS + AUTH accept-any.
    let sink_dir = dir.join("smarthost");
    let sink_config = dir.join("smarthost.toml");
    write(
        &sink_config,
        "hostname = \"localhost\"\n[log]\nsyslog = false\n",
    )?;
    let mut child = Command::new(&exe)
        .args([
            "sink",
            "--listener",
            "127.0.0.1:0=starttls",
            "--auth",
            "accept-any",
            "--state-dir",
        ])
        .arg(&sink_dir)
        .arg("--store")
        .arg(format!("maildir:{}", sink_dir.join("mail").display()))
        .env("RELAYMAIL_CONFIG", &sink_config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail("start the sink", &exe, e))?;
    let stderr = child.stderr.take();
    let stdout = child.stdout.take();
    let _sink = Running(child);
    let mut ready = String::new();
    if let Some(stderr) = stderr {
        let _ = BufReader::new(stderr).read_line(&mut ready);
    }
    let port = ready
        .split("listening on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| {
            Failure::new(
                Sysexit::Software,
                format!("demo: the sink did not start: {ready}"),
            )
        })?;
    section(out, "Smarthost", &format!("relaymail sink on 127.0.0.1:{port}: STARTTLS with a generated certificate, AUTH accept-any\n"))?;

    let socket_path = dir.join("log.sock");
    let socket = UnixDatagram::bind(&socket_path).map_err(|e| fail("bind", &socket_path, e))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| fail("configure", &socket_path, e))?;
    let password = dir.join("password");
    write(&password, "demo-password\n")?;
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| fail("protect", &password, e))?;
    let config = dir.join("relaymail.toml");
    let text = format!(
        "# A throw-away user-mode setup made by `relaymail demo`.\nhostname = \"demo.example.com\"\nspool_dir = {spool:?}\n\n[smarthost]\nhost = \"localhost\"\nport = {port}\ntls = \"starttls\"\nca_file = {ca:?}\nusername = \"demo\"\npassword_file = {password:?}\n\n[rewrite]\naliases_file = \"\"\n\n[aliases]\nroot = [\"admin@example.com\", \"ops@example.com\"]\n\n[log]\nsyslog_socket = {sock:?}\n",
        spool = dir.join("spool").display().to_string(),
        ca = sink_dir.join("sink-cert.pem").display().to_string(),
        password = password.display().to_string(),
        sock = socket_path.display().to_string(),
    );
    write(&config, &text)?;
    section(out, "Configuration", &text)?;

    let argv = "sendmail -FCronDaemon -i -B8BITMIME -oem -odi root";
    section(
        out,
        &format!("Submitting as cron does, delivering in the foreground: {argv}"),
        MESSAGE,
    )?;
    let mut submit = Command::new(bin.join("sendmail"))
        .args(argv.split(' ').skip(1))
        .env("RELAYMAIL_CONFIG", &config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail("run", &bin.join("sendmail"), e))?;
    if let Some(mut stdin) = submit.stdin.take() {
        stdin
            .write_all(MESSAGE.as_bytes())
            .map_err(|e| fail("write to", &bin.join("sendmail"), e))?;
    }
    let done = submit
        .wait_with_output()
        .map_err(|e| fail("run", &bin.join("sendmail"), e))?;
    let code = done.status.code().unwrap_or(-1);
    section(
        out,
        &format!("sendmail exited {code}"),
        &String::from_utf8_lossy(&done.stderr),
    )?;

    let mut lines = String::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = socket.recv(&mut buf) {
        lines.push_str(&String::from_utf8_lossy(buf.get(..n).unwrap_or(&[])));
        lines.push('\n');
    }
    section(out, "Log lines (syslog, facility mail)", &lines)?;

    let mailq = Command::new(bin.join("mailq"))
        .env("RELAYMAIL_CONFIG", &config)
        .output()
        .map_err(|e| fail("run", &bin.join("mailq"), e))?;
    section(
        out,
        "mailq after delivery",
        &String::from_utf8_lossy(&mailq.stdout),
    )?;

    // The sink prints an event only for a message it stored: after a
    // failed submission there is none to wait for.
    if let Some(stdout) = stdout.filter(|_| code == 0) {
        let mut event = String::new();
        let _ = BufReader::new(stdout).read_line(&mut event);
        section(out, "The sink's event line", &event)?;
    }
    if let Some(path) = first_file(&sink_dir.join("mail/new")) {
        let text = std::fs::read(&path).map_err(|e| fail("read", &path, e))?;
        section(
            out,
            "The message as the smarthost stored it",
            &String::from_utf8_lossy(&text),
        )?;
    }
    writeln!(
        out,
        "The demo stops its sink and removes {} now.",
        dir.display()
    )
    .map_err(output)?;
    Ok(if code == 0 {
        Sysexit::Ok
    } else {
        Sysexit::Software
    })
}

fn first_file(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .next()
}

fn section(out: &mut impl Write, title: &str, body: &str) -> Result<(), Failure> {
    writeln!(out, "==> {title}").map_err(output)?;
    for line in body.lines() {
        writeln!(out, "    {line}").map_err(output)?;
    }
    writeln!(out).map_err(output)
}
