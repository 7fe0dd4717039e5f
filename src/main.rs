//! Thin entry point: everything worth testing lives in the library.

fn main() -> std::process::ExitCode {
    relaymail::main_with(relaymail::run)
}
