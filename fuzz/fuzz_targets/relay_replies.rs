//! What a relay sends is untrusted: any bytes as its replies must parse
//! or fail cleanly, and capabilities must come from any reply. Any body,
//! split anywhere, must be dot-stuffed so that the only "." line is the
//! final one (a message can never end early or smuggle a second one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use relaymail::relay::smtp::{read_reply, Capabilities, DotStuffer};

fuzz_target!(|data: &[u8]| {
    let mut cursor = std::io::Cursor::new(data);
    for _ in 0..32 {
        match read_reply(&mut cursor) {
            Ok(reply) => {
                assert!((200..600).contains(&reply.code));
                let _ = Capabilities::parse(&reply);
                let _ = reply.text();
            }
            Err(_) => break,
        }
    }

    let split = data.first().map(|b| *b as usize).unwrap_or(0) % (data.len() + 1);
    let (a, b) = data.split_at(split);
    let mut stuffer = DotStuffer::default();
    let mut out = Vec::new();
    stuffer.push(a, &mut out);
    stuffer.push(b, &mut out);
    stuffer.finish(&mut out);
    assert!(out.ends_with(b".\r\n"));
    let body = &out[..out.len() - 3];
    assert!(body.is_empty() || body.ends_with(b"\n"), "the dot starts a line");
    let mut at_line_start = true;
    let mut i = 0;
    while i < body.len() {
        if at_line_start && body[i] == b'.' {
            // Every line that starts with a dot was stuffed.
            assert_eq!(body.get(i + 1), Some(&b'.'));
            i += 1;
        }
        at_line_start = body[i] == b'\n';
        i += 1;
    }
});
