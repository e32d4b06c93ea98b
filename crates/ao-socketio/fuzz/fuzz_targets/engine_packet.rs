//! engine.io packets: text and binary frames of both revisions decode
//! without panicking, and what decoded encodes back to the same packet.

#![no_main]

use ao_socketio::engine::{EngineVersion, Frame, Packet};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);

    if let Ok(packet) = Packet::decode_text(input.clone()) {
        let Frame::Text(text) = packet.encode() else {
            panic!("text packet {packet:?} encoded as binary");
        };
        assert_eq!(Packet::decode_text(text), Ok(packet));
    }

    for version in [EngineVersion::V3, EngineVersion::V4] {
        if let Ok(packet) = Packet::decode_binary(version, input.clone()) {
            let Frame::Binary(bytes) = packet.encode() else {
                panic!("binary frame decoded as {packet:?}");
            };
            let frame = match version {
                EngineVersion::V3 => [&[4u8][..], &bytes].concat().into(),
                EngineVersion::V4 => bytes,
            };
            assert_eq!(Packet::decode_binary(version, frame), Ok(packet));
        }
    }
});
