//! sendmail's message intake: any stdin, with and without -i, is either
//! refused with an error or normalised to CRLF lines, header then body;
//! never a panic, never a bare CR or LF in what would be queued.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relaymail::message::Reader;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let mut reader = Reader::new(input, flags & 1 == 1);
    let Ok(header) = reader.read_header() else {
        return;
    };
    let mut out = Vec::new();
    header.write_to(&mut out);
    if reader.copy_body(&mut out, 1 << 20, 1 << 20).is_err() {
        return;
    }
    for (i, b) in out.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            b'\n' => assert!(i > 0 && out[i - 1] == b'\r', "bare LF at {i}"),
            _ => {}
        }
    }
});
