//! socket.io packets: any text decodes without panicking, and re-encoding
//! what decoded decodes the same.

#![no_main]

use ao_socketio::socket::packet::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = decode(text) {
        let again = encode(p.kind, p.attachments, p.nsp, p.id, p.data);
        assert_eq!(decode(&again), Ok(p), "re-encoded as {again:?}");
    }
});
