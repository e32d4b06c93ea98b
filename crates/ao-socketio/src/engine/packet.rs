//! engine.io packets: the frames of a websocket and the packets inside a
//! long-polling payload ([`super::payload`]).
//!
//! A text packet is its type digit followed by its data (`4hello`); a
//! binary message is its raw bytes over a websocket in engine.io 4 and the
//! byte `4` followed by its bytes in engine.io 3.

use bytes::Bytes;

/// The engine.io protocol revision a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineVersion {
    /// engine.io 3 (socket.io-client 2.x): the client pings.
    V3,
    /// engine.io 4 (socket.io-client 3.x and 4.x): the server pings.
    V4,
}

/// One engine.io packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0`: the handshake, a JSON object.
    Open(Bytes),
    /// `1`
    Close,
    /// `2`, with its data (empty, or `probe` during an upgrade).
    Ping(Bytes),
    /// `3`, with its data.
    Pong(Bytes),
    /// `4`: a text message (valid UTF-8).
    Message(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// `5`
    Upgrade,
    /// `6`
    Noop,
}

/// Why bytes are not an engine.io packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No bytes at all.
    #[error("empty packet")]
    Empty,
    /// A type byte engine.io does not have.
    #[error("unknown packet type {0:?}")]
    UnknownType(u8),
    /// A text packet that is not UTF-8.
    #[error("packet text is not UTF-8")]
    NotUtf8,
    /// A long-polling payload that does not frame its packets.
    #[error("malformed payload: {0}")]
    Payload(&'static str),
}

/// An outbound engine.io packet encoded once and shared, by reference
/// count, by every connection it is sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text packet: its type digit and data (`42["msg",{}]`), UTF-8.
    Text(Bytes),
    /// A binary message's bytes (no type byte).
    Binary(Bytes),
}

impl Frame {
    /// The bytes this frame counts against a connection's outbound queue.
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(b) | Frame::Binary(b) => b.len(),
        }
    }

    /// Whether the frame carries no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Packet {
    /// Decodes a websocket text frame, or one text packet of a payload.
    pub fn decode_text(text: Bytes) -> Result<Packet, DecodeError> {
        let &first = text.first().ok_or(DecodeError::Empty)?;
        // Checked even where the data is dropped: bytes that are not text
        // are not a text packet (a websocket frame is already UTF-8, but a
        // packet of an engine.io 3 binary payload is not checked before).
        if std::str::from_utf8(&text[1..]).is_err() {
            return Err(DecodeError::NotUtf8);
        }
        let data = text.slice(1..);
        Ok(match first {
            b'0' => Packet::Open(data),
            b'1' => Packet::Close,
            b'2' => Packet::Ping(data),
            b'3' => Packet::Pong(data),
            b'4' => Packet::Message(data),
            b'5' => Packet::Upgrade,
            b'6' => Packet::Noop,
            other => return Err(DecodeError::UnknownType(other)),
        })
    }

    /// Decodes a websocket binary frame (or a binary packet of an
    /// engine.io 3 binary payload). The message's bytes are kept in a
    /// buffer of their own ([`detach`]): an attachment waits for the rest
    /// of its packet and goes to the application, and must not keep alive
    /// the read buffer or request body it arrived in.
    pub fn decode_binary(version: EngineVersion, data: Bytes) -> Result<Packet, DecodeError> {
        match version {
            EngineVersion::V4 => Ok(Packet::Binary(detach(data))),
            EngineVersion::V3 => match data.first() {
                None => Err(DecodeError::Empty),
                Some(&MESSAGE_TYPE_BYTE) => Ok(Packet::Binary(detach(data.slice(1..)))),
                Some(&other) => Err(DecodeError::UnknownType(other)),
            },
        }
    }

    /// The packet as it goes out.
    pub fn encode(&self) -> Frame {
        let (digit, data) = match self {
            Packet::Binary(data) => return Frame::Binary(data.clone()),
            Packet::Open(data) => (b'0', data),
            Packet::Close => return Frame::Text(Bytes::from_static(b"1")),
            Packet::Ping(data) => (b'2', data),
            Packet::Pong(data) => (b'3', data),
            Packet::Message(data) => (b'4', data),
            Packet::Upgrade => return Frame::Text(Bytes::from_static(b"5")),
            Packet::Noop => return Frame::Text(Bytes::from_static(b"6")),
        };
        let mut text = Vec::with_capacity(1 + data.len());
        text.push(digit);
        text.extend_from_slice(data);
        Frame::Text(Bytes::from(text))
    }
}

/// `data` in a buffer of its own: kept as it is when it is the only view of
/// a buffer at most twice its size, copied out otherwise (a slice of a
/// larger body, a frame split off a websocket's read buffer). A one-byte
/// slice would otherwise keep its whole buffer alive, up to the largest
/// request body, for as long as it is held.
pub(crate) fn detach(data: Bytes) -> Bytes {
    match data.try_into_mut() {
        Ok(own) if own.capacity() <= own.len().saturating_mul(2) => own.freeze(),
        Ok(own) => Bytes::copy_from_slice(&own),
        Err(shared) => Bytes::copy_from_slice(&shared),
    }
}

/// The type of a message as a byte value: what precedes an engine.io 3
/// binary message.
pub(crate) const MESSAGE_TYPE_BYTE: u8 = 4;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(s: &str) -> Result<Packet, DecodeError> {
        Packet::decode_text(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn decodes_every_text_type() {
        assert_eq!(
            text(r#"0{"sid":"abc"}"#),
            Ok(Packet::Open(Bytes::from_static(br#"{"sid":"abc"}"#)))
        );
        assert_eq!(text("1"), Ok(Packet::Close));
        assert_eq!(text("2"), Ok(Packet::Ping(Bytes::new())));
        assert_eq!(
            text("2probe"),
            Ok(Packet::Ping(Bytes::from_static(b"probe")))
        );
        assert_eq!(
            text("3probe"),
            Ok(Packet::Pong(Bytes::from_static(b"probe")))
        );
        assert_eq!(
            text("4test"),
            Ok(Packet::Message(Bytes::from_static(b"test")))
        );
        assert_eq!(text("4"), Ok(Packet::Message(Bytes::new())));
        assert_eq!(text("5"), Ok(Packet::Upgrade));
        assert_eq!(text("6"), Ok(Packet::Noop));
        assert_eq!(
            text("4utf8 — string"),
            Ok(Packet::Message(Bytes::from("utf8 — string".as_bytes())))
        );
        assert_eq!(
            text("4€€€"),
            Ok(Packet::Message(Bytes::from("€€€".as_bytes())))
        );
    }

    #[test]
    fn message_data_is_a_slice_of_the_input() {
        let input = Bytes::from_static(b"42[\"msg\",{}]");
        let Ok(Packet::Message(data)) = Packet::decode_text(input.clone()) else {
            panic!("not a message");
        };
        assert_eq!(data.as_ptr(), input[1..].as_ptr());
    }

    #[test]
    fn rejects_malformed_text() {
        assert_eq!(text(""), Err(DecodeError::Empty));
        // The reference parser's cases: no type, unknown types.
        assert_eq!(text("a123"), Err(DecodeError::UnknownType(b'a')));
        assert_eq!(text("94103"), Err(DecodeError::UnknownType(b'9')));
        assert_eq!(text(":::"), Err(DecodeError::UnknownType(b':')));
        assert_eq!(text("7"), Err(DecodeError::UnknownType(b'7')));
        assert_eq!(text("b4AQID"), Err(DecodeError::UnknownType(b'b')));
        assert_eq!(
            Packet::decode_text(Bytes::from_static(b"4\xff")),
            Err(DecodeError::NotUtf8)
        );
        assert_eq!(
            Packet::decode_text(Bytes::from_static(b"4\xe2\x82")),
            Err(DecodeError::NotUtf8)
        );
    }

    #[test]
    fn decodes_binary_frames() {
        let data = Bytes::from_static(&[1, 2, 3, 4]);
        assert_eq!(
            Packet::decode_binary(EngineVersion::V4, data.clone()),
            Ok(Packet::Binary(data.clone()))
        );
        assert_eq!(
            Packet::decode_binary(EngineVersion::V4, Bytes::new()),
            Ok(Packet::Binary(Bytes::new()))
        );
        // engine.io 3: the type byte 4 first.
        assert_eq!(
            Packet::decode_binary(EngineVersion::V3, Bytes::from_static(&[4, 1, 2, 3, 4])),
            Ok(Packet::Binary(data))
        );
        assert_eq!(
            Packet::decode_binary(EngineVersion::V3, Bytes::from_static(&[4])),
            Ok(Packet::Binary(Bytes::new()))
        );
        assert_eq!(
            Packet::decode_binary(EngineVersion::V3, Bytes::from_static(&[3, 2, 1])),
            Err(DecodeError::UnknownType(3))
        );
        assert_eq!(
            Packet::decode_binary(EngineVersion::V3, Bytes::from_static(b"4a")),
            Err(DecodeError::UnknownType(b'4'))
        );
        assert_eq!(
            Packet::decode_binary(EngineVersion::V3, Bytes::new()),
            Err(DecodeError::Empty)
        );
    }

    #[test]
    fn binary_data_does_not_keep_its_buffer_alive() {
        let body = Bytes::from(vec![4u8; 1 << 20]);
        let Ok(Packet::Binary(one)) = Packet::decode_binary(EngineVersion::V3, body.slice(..2))
        else {
            panic!("not binary");
        };
        assert_eq!(&one[..], &[4]);
        drop(body);
        let Ok(own) = one.try_into_mut() else {
            panic!("the attachment shares a buffer");
        };
        assert!(own.capacity() <= 2, "kept a buffer of {}", own.capacity());
        // A frame that is its whole buffer is kept as it is.
        let frame = Bytes::from(vec![7u8; 100]);
        let at = frame.as_ptr();
        let Ok(Packet::Binary(kept)) = Packet::decode_binary(EngineVersion::V4, frame) else {
            panic!("not binary");
        };
        assert_eq!(kept.as_ptr(), at);
    }

    #[test]
    fn encodes() {
        let frame = |s: &'static str| Frame::Text(Bytes::from_static(s.as_bytes()));
        assert_eq!(
            Packet::Open(Bytes::from_static(b"{}")).encode(),
            frame("0{}")
        );
        assert_eq!(Packet::Close.encode(), frame("1"));
        assert_eq!(Packet::Ping(Bytes::new()).encode(), frame("2"));
        assert_eq!(
            Packet::Ping(Bytes::from_static(b"probe")).encode(),
            frame("2probe")
        );
        assert_eq!(
            Packet::Pong(Bytes::from_static(b"probe")).encode(),
            frame("3probe")
        );
        assert_eq!(
            Packet::Message(Bytes::from_static(b"test")).encode(),
            frame("4test")
        );
        assert_eq!(Packet::Upgrade.encode(), frame("5"));
        assert_eq!(Packet::Noop.encode(), frame("6"));
        assert_eq!(
            Packet::Binary(Bytes::from_static(&[0, 1, 2])).encode(),
            Frame::Binary(Bytes::from_static(&[0, 1, 2]))
        );
        assert_eq!(frame("4€").len(), 4);
        assert!(Frame::Binary(Bytes::new()).is_empty());
    }

    /// Any packet with valid data (text for text packets; none for those
    /// that carry none).
    pub(crate) fn any_packet() -> impl Strategy<Value = Packet> {
        let text = || any::<String>().prop_map(Bytes::from);
        prop_oneof![
            text().prop_map(Packet::Open),
            Just(Packet::Close),
            text().prop_map(Packet::Ping),
            text().prop_map(Packet::Pong),
            text().prop_map(Packet::Message),
            proptest::collection::vec(any::<u8>(), 0..64)
                .prop_map(|v| Packet::Binary(Bytes::from(v))),
            Just(Packet::Upgrade),
            Just(Packet::Noop),
        ]
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Packet::decode_text(Bytes::from(bytes.clone()));
            let _ = Packet::decode_binary(EngineVersion::V3, Bytes::from(bytes.clone()));
            let _ = Packet::decode_binary(EngineVersion::V4, Bytes::from(bytes));
        }

        #[test]
        fn decodes_what_it_encodes(packet in any_packet()) {
            let decoded = match packet.encode() {
                Frame::Text(t) => Packet::decode_text(t),
                Frame::Binary(b) => {
                    let mut v3 = vec![MESSAGE_TYPE_BYTE];
                    v3.extend_from_slice(&b);
                    prop_assert_eq!(
                        Packet::decode_binary(EngineVersion::V3, Bytes::from(v3)),
                        Ok(packet.clone())
                    );
                    Packet::decode_binary(EngineVersion::V4, b)
                }
            };
            prop_assert_eq!(decoded, Ok(packet));
        }
    }
}
