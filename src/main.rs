//! Thin entry point: everything worth testing lives in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    // A bug must end in EX_SOFTWARE with one line, never a trace that
    // could carry message data, and never a misleading exit 0.
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        relaymail::log::stderr(&format!("relaymail: internal error{place}; nothing was queued unless mailq shows it. Please report this."));
        std::process::exit(70);
    }));
    let (face, result) = relaymail::run(std::env::args_os().collect());
    match result {
        Ok(status) => ExitCode::from(status.code()),
        Err(failure) => {
            if !failure.message.is_empty() {
                relaymail::log::stderr(&format!("{}: {}", face.name(), failure.message));
            }
            ExitCode::from(failure.exit.code())
        }
    }
}
