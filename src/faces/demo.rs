//! `relaymail demo`: the main job on an embedded default. It builds a
//! throw-away user-mode setup in a temporary directory (config, spool, a
//! syslog socket of its own), submits a message through the real
//! `sendmail` face exactly as cron does, shows `mailq` and the log lines,
//! and removes everything it made.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::spool::QueueId;
use crate::sysexits::{Failure, Sysexit};

use super::queue::output;

const MESSAGE: &str = "Subject: relaymail demo: backup finished\nTo: root\n\nThe nightly backup finished without errors.\n";

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

fn run_in(dir: &Path, out: &mut impl Write) -> Result<Sysexit, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| fail("find the relaymail binary", Path::new("."), e))?;
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).map_err(|e| fail("create", &bin, e))?;
    for face in ["sendmail", "mailq"] {
        std::os::unix::fs::symlink(&exe, bin.join(face)).map_err(|e| fail("link", &bin, e))?;
    }
    let socket_path = dir.join("log.sock");
    let socket = UnixDatagram::bind(&socket_path).map_err(|e| fail("bind", &socket_path, e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| fail("configure", &socket_path, e))?;
    let config = dir.join("relaymail.toml");
    let text = format!(
        "# A throw-away user-mode setup made by `relaymail demo`.\nhostname = \"demo.example.com\"\nspool_dir = {spool:?}\n\n[rewrite]\naliases_file = \"\"\n\n[aliases]\nroot = [\"admin@example.com\", \"ops@example.com\"]\n\n[log]\nsyslog_socket = {sock:?}\n",
        spool = dir.join("spool").display().to_string(),
        sock = socket_path.display().to_string(),
    );
    std::fs::write(&config, &text).map_err(|e| fail("write", &config, e))?;
    section(out, "Configuration", &text)?;

    let argv = "sendmail -FCronDaemon -i -B8BITMIME -oem -odq root";
    section(out, &format!("Submitting as cron does: {argv}"), MESSAGE)?;
    let mut child = Command::new(bin.join("sendmail"))
        .args(argv.split(' ').skip(1))
        .env("RELAYMAIL_CONFIG", &config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail("run", &bin.join("sendmail"), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(MESSAGE.as_bytes())
            .map_err(|e| fail("write to", &bin.join("sendmail"), e))?;
    }
    let done = child
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
    section(out, "mailq", &String::from_utf8_lossy(&mailq.stdout))?;

    let queued = first_message(&dir.join("spool/queue"));
    if let Some(path) = queued {
        let text = std::fs::read(&path).map_err(|e| fail("read", &path, e))?;
        section(
            out,
            "The queued message as stored (CRLF shown as line ends)",
            &String::from_utf8_lossy(&text).replace("\r\n", "\n"),
        )?;
    }
    writeln!(
        out,
        "Delivery to a smarthost is configured in [smarthost]; this demo removes {} now.",
        dir.display()
    )
    .map_err(output)?;
    Ok(if code == 0 {
        Sysexit::Ok
    } else {
        Sysexit::Software
    })
}

fn first_message(queue: &Path) -> Option<PathBuf> {
    std::fs::read_dir(queue)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "msg"))
}

fn section(out: &mut impl Write, title: &str, body: &str) -> Result<(), Failure> {
    writeln!(out, "==> {title}").map_err(output)?;
    for line in body.lines() {
        writeln!(out, "    {line}").map_err(output)?;
    }
    writeln!(out).map_err(output)
}
