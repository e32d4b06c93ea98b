//! Long-polling payloads: every format decodes any body without panicking,
//! yields at most one error and nothing after it, and the packets it
//! decoded encode into a payload that decodes to the same packets.

#![no_main]

use ao_socketio::engine::payload::{encode, Decoder, BINARY_CONTENT_TYPE};
use ao_socketio::engine::{EngineVersion, Packet};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fn decode(version: EngineVersion, body: Bytes, binary: bool) -> (Vec<Packet>, bool) {
    let len = body.len();
    let mut packets = Vec::new();
    let mut decoder = Decoder::new(version, body, binary);
    for item in decoder.by_ref() {
        match item {
            Ok(packet) => packets.push(packet),
            Err(_) => {
                assert!(decoder.next().is_none(), "an item after an error");
                return (packets, true);
            }
        }
        assert!(packets.len() <= len, "more packets than bytes");
    }
    (packets, false)
}

fn roundtrip(version: EngineVersion, b64: bool, packets: &[Packet]) {
    let frames: Vec<_> = packets.iter().map(Packet::encode).collect();
    let encoded = encode(version, b64, &frames);
    let binary = encoded.content_type == BINARY_CONTENT_TYPE;
    let (again, failed) = decode(version, encoded.body, binary);
    assert!(!failed, "encoded {packets:?} does not decode");
    assert_eq!(again, packets);
}

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    for (version, binary) in [
        (EngineVersion::V3, false),
        (EngineVersion::V3, true),
        (EngineVersion::V4, false),
        (EngineVersion::V4, true),
    ] {
        let (packets, _) = decode(version, body.clone(), binary);
        match version {
            EngineVersion::V3 => {
                roundtrip(version, false, &packets);
                roundtrip(version, true, &packets);
            }
            // An engine.io 4 payload has at least one packet.
            EngineVersion::V4 if !packets.is_empty() => roundtrip(version, false, &packets),
            EngineVersion::V4 => {}
        }
    }
});
