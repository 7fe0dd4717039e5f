//! The small submitter installed as /usr/sbin/sendmail (`relaymail::run_submitter`).

fn main() -> std::process::ExitCode {
    relaymail::main_with(relaymail::run_submitter)
}
