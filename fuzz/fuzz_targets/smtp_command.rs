//! The sink's command parsing: any bytes as a command line must give a
//! verb and arguments, and path parsing must never panic; a parsed path
//! never holds a control character (it ends up in a Received: header).
#![no_main]

use libfuzzer_sys::fuzz_target;
use relaymail::sink::session::{clean, path_argument, split_command};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (_verb, args) = split_command(&text);
    for keyword in ["FROM:", "TO:"] {
        if let Some((address, _params)) = path_argument(&args, keyword) {
            assert!(!address.chars().any(|c| c.is_control()));
        }
    }
    assert!(!clean(&text)
        .chars()
        .any(|c| c.is_control() || c == '(' || c == ')'));
});
