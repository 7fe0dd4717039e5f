//! `sendmail -bs`: an SMTP dialogue on stdin/stdout, as programs that
//! speak SMTP to a local sendmail expect (RFC 5321 server side, no
//! network). Each message is submitted exactly like `sendmail -i -f FROM
//! RCPT...` with the body read up to the closing "." line; "250 ... queued
//! as ID" is sent only once the message is committed to the spool.

use std::io::{self, BufRead, Read, Write};

use crate::cli::sendmail::Invocation;
use crate::config::Config;
use crate::log::Logger;
use crate::rewrite::Rewriter;
use crate::smtp_syntax::{one_line, path_argument, split_command};
use crate::spool::QueueId;
use crate::sysexits::{Failure, Sysexit};
use crate::system;

/// Longest command line accepted (RFC 5321 says 512 octets with CRLF;
/// extensions such as SIZE= and SMTPUTF8 addresses need some room).
const MAX_COMMAND: u64 = 4096;

/// Runs the dialogue until QUIT or the end of stdin. `queued` is called
/// after each committed message (to start its delivery).
pub fn run(
    inv: &Invocation,
    config: &Config,
    log: &mut Logger,
    input: &mut impl BufRead,
    out: &mut impl Write,
    mut queued: impl FnMut(&QueueId, &mut Logger),
) -> Result<Sysexit, Failure> {
    let rewriter = Rewriter::new(config)?;
    let user = system::calling_user();
    let host = &config.hostname;
    let mut dialogue = Dialogue { out };
    dialogue.reply(&format!("220 {host} ESMTP relaymail (sendmail -bs)"))?;
    let mut sender: Option<String> = None;
    let mut recipients: Vec<String> = Vec::new();
    loop {
        let Some(line) = read_command(input)? else {
            // End of input without QUIT: nothing half-done is queued.
            return Ok(Sysexit::Ok);
        };
        let Some(line) = line else {
            dialogue.reply("500 5.5.2 Error: command line too long")?;
            continue;
        };
        let (verb, args) = split_command(&line);
        let args = args.as_str();
        match verb.as_str() {
            "EHLO" => {
                sender = None;
                recipients.clear();
                let size = config.queue.max_message_size;
                dialogue.reply(&format!(
                    "250-{host}\r\n250-PIPELINING\r\n250-SIZE {size}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 HELP"
                ))?;
            }
            "HELO" => {
                sender = None;
                recipients.clear();
                dialogue.reply(&format!("250 {host}"))?;
            }
            "MAIL" => {
                let reply = match (&sender, path_argument(args, "FROM:")) {
                    (Some(_), _) => "503 5.5.1 Error: nested MAIL command".to_string(),
                    (None, None) => "501 5.5.4 Syntax: MAIL FROM:<address>".to_string(),
                    (None, Some((from, params))) => {
                        match check_mail(&rewriter, &user, &from, &params, config) {
                            Ok(()) => {
                                sender = Some(from);
                                "250 2.1.0 Ok".to_string()
                            }
                            Err(reply) => reply,
                        }
                    }
                };
                dialogue.reply(&reply)?;
            }
            "RCPT" => {
                let reply = match (&sender, path_argument(args, "TO:")) {
                    (None, _) => "503 5.5.1 Error: need MAIL command".to_string(),
                    (Some(_), None) => "501 5.5.4 Syntax: RCPT TO:<address>".to_string(),
                    (Some(_), Some((to, _))) => {
                        match rewriter.recipients(std::slice::from_ref(&to), !inv.no_aliases) {
                            Ok(_) => {
                                recipients.push(to);
                                "250 2.1.5 Ok".to_string()
                            }
                            Err(e) => format!("550 5.1.1 {}", one_line(&e.to_string())),
                        }
                    }
                };
                dialogue.reply(&reply)?;
            }
            "DATA" => {
                if sender.is_none() {
                    dialogue.reply("503 5.5.1 Error: need MAIL command")?;
                    continue;
                }
                if recipients.is_empty() {
                    dialogue.reply("554 5.5.1 Error: no valid recipients")?;
                    continue;
                }
                let from = sender.take().unwrap_or_default();
                dialogue.reply("354 End data with <CR><LF>.<CR><LF>")?;
                let mut tx = inv.clone();
                tx.sender = Some(from);
                tx.recipients = std::mem::take(&mut recipients);
                tx.recipients_from_headers = false;
                // The dot protocol is handled here, not by the intake.
                tx.ignore_dots = true;
                let mut data = DotReader::new(input);
                let result = super::submit::submit(&tx, config, log, &mut data);
                let complete = data.drain();
                match (result, complete) {
                    (_, Err(e)) => {
                        // stdin ended or failed inside DATA: the client is
                        // gone and whatever was read is not a message.
                        return Err(Failure::new(
                            Sysexit::IoErr,
                            format!(
                                "input ended inside DATA, so that message was not queued ({e})"
                            ),
                        ));
                    }
                    (Ok(done), Ok(())) => {
                        // Delivery starts even if the client is gone by now:
                        // the message is committed.
                        queued(&done.id, log);
                        dialogue.reply(&format!("250 2.0.0 Ok: queued as {}", done.id))?;
                    }
                    (Err(failure), Ok(())) => dialogue.reply(&failure_reply(&failure))?,
                }
            }
            "RSET" => {
                sender = None;
                recipients.clear();
                dialogue.reply("250 2.0.0 Ok")?;
            }
            "NOOP" => dialogue.reply("250 2.0.0 Ok")?,
            "VRFY" => {
                dialogue.reply("252 2.5.2 Cannot VRFY; send some mail and it will be tried")?
            }
            "HELP" => dialogue
                .reply("214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT")?,
            "QUIT" => {
                dialogue.reply("221 2.0.0 Bye")?;
                return Ok(Sysexit::Ok);
            }
            "STARTTLS" | "AUTH" => {
                dialogue.reply("502 5.5.1 Error: not needed on a local pipe")?;
            }
            _ => dialogue.reply("500 5.5.2 Error: command not recognized")?,
        }
    }
}

struct Dialogue<'a, W: Write> {
    out: &'a mut W,
}

impl<W: Write> Dialogue<'_, W> {
    fn reply(&mut self, text: &str) -> Result<(), Failure> {
        self.out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.write_all(b"\r\n"))
            .and_then(|()| self.out.flush())
            .map_err(|e| Failure::new(Sysexit::IoErr, format!("writing the SMTP reply: {e}")))
    }
}

/// One command line without its line end. Ok(None) at the end of input;
/// Ok(Some(None)) for a line over MAX_COMMAND (consumed and discarded).
fn read_command(input: &mut impl BufRead) -> Result<Option<Option<String>>, Failure> {
    let read_err =
        |e: io::Error| Failure::new(Sysexit::IoErr, format!("reading SMTP commands: {e}"));
    let mut line = Vec::new();
    let n = input
        .by_ref()
        .take(MAX_COMMAND)
        .read_until(b'\n', &mut line)
        .map_err(read_err)?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\n") && n as u64 == MAX_COMMAND {
        let mut rest = Vec::new();
        loop {
            rest.clear();
            let m = input
                .by_ref()
                .take(MAX_COMMAND)
                .read_until(b'\n', &mut rest)
                .map_err(read_err)?;
            if m == 0 || rest.ends_with(b"\n") {
                return Ok(Some(None));
            }
        }
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(Some(Some(String::from_utf8_lossy(&line).into_owned())))
}

/// MAIL FROM's address and its SIZE= parameter.
fn check_mail(
    rewriter: &Rewriter,
    user: &system::LocalUser,
    from: &str,
    params: &str,
    config: &Config,
) -> Result<(), String> {
    rewriter
        .sender(Some(from), user)
        .map_err(|e| format!("553 5.1.7 {}", one_line(&e.to_string())))?;
    for param in params.split_whitespace() {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        if key.eq_ignore_ascii_case("SIZE") {
            let limit = config.queue.max_message_size;
            if value.parse::<u64>().is_ok_and(|size| size > limit) {
                return Err(format!(
                    "552 5.3.4 Message size exceeds the limit of {limit} bytes ([queue] max_message_size)"
                ));
            }
        }
    }
    Ok(())
}

/// The SMTP reply for a refused submission: permanent for what the
/// message or its addresses got wrong, temporary for local trouble.
fn failure_reply(failure: &Failure) -> String {
    let text = one_line(&failure.message);
    match failure.exit {
        Sysexit::DataErr if text.contains("larger than") || text.contains("limit") => {
            format!("552 5.3.4 {text}")
        }
        Sysexit::DataErr | Sysexit::Usage => format!("554 5.6.0 {text}"),
        Sysexit::NoUser => format!("550 5.1.1 {text}"),
        _ => format!("451 4.3.0 {text}"),
    }
}

/// The message of one DATA command: lines up to the one holding only
/// ".", with the leading dot of dot-stuffed lines removed (RFC 5321
/// 4.5.2). Reads in pieces, so a long line never sits whole in memory.
struct DotReader<'a, R: BufRead> {
    input: &'a mut R,
    piece: Vec<u8>,
    pos: usize,
    at_line_start: bool,
    done: bool,
    /// The input ended before the closing line.
    cut_off: bool,
}

impl<'a, R: BufRead> DotReader<'a, R> {
    fn new(input: &'a mut R) -> Self {
        DotReader {
            input,
            piece: Vec::new(),
            pos: 0,
            at_line_start: true,
            done: false,
            cut_off: false,
        }
    }

    /// Reads what the intake left (after a refusal) up to the closing
    /// line, so the dialogue can go on. Err if the input ended first.
    fn drain(&mut self) -> io::Result<()> {
        let mut sink = [0u8; 8192];
        while self.read(&mut sink)? > 0 {}
        if self.cut_off {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the input ended before the closing \".\" line",
            ));
        }
        Ok(())
    }
}

impl<R: BufRead> Read for DotReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(rest) = self.piece.get(self.pos..).filter(|r| !r.is_empty()) {
                let n = rest.len().min(buf.len());
                buf.iter_mut().zip(rest).for_each(|(to, from)| *to = *from);
                self.pos += n;
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            self.piece.clear();
            self.pos = 0;
            let n = self
                .input
                .by_ref()
                .take(64 << 10)
                .read_until(b'\n', &mut self.piece)?;
            if n == 0 {
                self.done = true;
                self.cut_off = true;
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the input ended before the closing \".\" line",
                ));
            }
            if self.at_line_start {
                if self.piece == b".\r\n" || self.piece == b".\n" {
                    self.done = true;
                    self.piece.clear();
                    return Ok(0);
                }
                if self.piece.first() == Some(&b'.') {
                    self.pos = 1;
                }
            }
            self.at_line_start = self.piece.ends_with(b"\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unstuff(input: &[u8]) -> (io::Result<Vec<u8>>, Vec<u8>) {
        let mut cursor = io::Cursor::new(input.to_vec());
        let mut out = Vec::new();
        let result = DotReader::new(&mut cursor)
            .read_to_end(&mut out)
            .map(|_| out);
        let mut rest = Vec::new();
        cursor.read_to_end(&mut rest).unwrap();
        (result, rest)
    }

    #[test]
    fn dot_stuffing_is_undone_and_the_dot_line_ends_the_data() {
        let (data, rest) = unstuff(b"a\r\n..b\r\n.\r\nQUIT\r\n");
        assert_eq!(data.unwrap(), b"a\r\n.b\r\n");
        assert_eq!(rest, b"QUIT\r\n");
        let (data, _) = unstuff(b"x\n.\n");
        assert_eq!(data.unwrap(), b"x\n");
    }

    #[test]
    fn a_dot_inside_a_line_or_a_long_line_is_data() {
        let long = format!("{}.\r\n", "y".repeat(200_000));
        let input = format!("{long}.\r\n");
        let (data, _) = unstuff(input.as_bytes());
        assert_eq!(data.unwrap(), long.as_bytes());
    }

    #[test]
    fn input_ending_inside_data_is_an_error() {
        let (data, _) = unstuff(b"a\r\nb\r\n");
        assert_eq!(data.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
