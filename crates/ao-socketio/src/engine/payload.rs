//! Long-polling payloads: several engine.io packets in one HTTP body.
//!
//! - engine.io 4: text packets joined by the record separator `\x1e`, a
//!   binary packet as `b` followed by its base64.
//! - engine.io 3, text (`text/plain`): each packet as `<length>:<packet>`,
//!   the length counted in UTF-16 code units as JavaScript counts them; a
//!   binary packet as `b4<base64>` (only when the client asked `b64=1`, or
//!   whenever the body must be text).
//! - engine.io 3, binary (`application/octet-stream`, for clients that did
//!   not ask `b64=1`, when the payload holds a binary packet): each packet as
//!   a byte 0 (text) or 1 (binary), its length in UTF-8 bytes as one byte
//!   per decimal digit, the byte 255, then the packet (a text packet with its
//!   type digit, a binary packet as the byte 4 and its bytes).

use bytes::Bytes;

use std::io::Write as _;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

use super::packet::{DecodeError, EngineVersion, Frame, Packet, MESSAGE_TYPE_BYTE};

/// The content type of a text payload.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=UTF-8";
/// The content type of an engine.io 3 binary payload.
pub const BINARY_CONTENT_TYPE: &str = "application/octet-stream";

/// An encoded payload and its content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The payload's bytes.
    pub body: Bytes,
    /// Its `Content-Type`.
    pub content_type: &'static str,
}

/// Encodes `frames` into one polling response body. `b64` is the client's
/// `b64=1` (engine.io 3 only: binary packets as base64 text).
pub fn encode(version: EngineVersion, b64: bool, frames: &[Frame]) -> Encoded {
    let body = match version {
        EngineVersion::V4 => encode_v4(frames),
        EngineVersion::V3 if !b64 && frames.iter().any(|f| matches!(f, Frame::Binary(_))) => {
            return Encoded {
                body: encode_v3_binary(frames),
                content_type: BINARY_CONTENT_TYPE,
            };
        }
        EngineVersion::V3 => encode_v3_text(frames),
    };
    Encoded {
        body,
        content_type: TEXT_CONTENT_TYPE,
    }
}

/// The engine.io 4 packet separator.
const SEPARATOR: u8 = 0x1e;
/// The byte that ends the length of a packet in an engine.io 3 binary
/// payload.
const LENGTH_END: u8 = 255;
/// The most digits a length may have; a body long enough for more is not
/// a polling request.
const MAX_LENGTH_DIGITS: usize = 20;

/// Standard base64 with padding out; in, padding is optional and stray
/// trailing bits are tolerated, as the reference (Node's `Buffer`) does.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

fn encode_v4(frames: &[Frame]) -> Bytes {
    let size = frames
        .iter()
        .map(|f| match f {
            Frame::Text(t) => t.len() + 1,
            Frame::Binary(b) => 2 + base64_len(b.len()),
        })
        .sum();
    let mut body = Vec::with_capacity(size);
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            body.push(SEPARATOR);
        }
        match frame {
            Frame::Text(text) => body.extend_from_slice(text),
            Frame::Binary(data) => {
                body.push(b'b');
                push_base64(&mut body, data);
            }
        }
    }
    Bytes::from(body)
}

fn encode_v3_text(frames: &[Frame]) -> Bytes {
    if frames.is_empty() {
        // What the reference sends for no packets, and decodes to none.
        return Bytes::from_static(b"0:");
    }
    let size = frames
        .iter()
        .map(|f| match f {
            Frame::Text(t) => t.len() + 21,
            Frame::Binary(b) => 23 + base64_len(b.len()),
        })
        .sum();
    let mut body = Vec::with_capacity(size);
    for frame in frames {
        match frame {
            Frame::Text(text) => {
                push_decimal(&mut body, utf16_len(text));
                body.push(b':');
                body.extend_from_slice(text);
            }
            Frame::Binary(data) => {
                // `b4` and base64: ASCII, so bytes and UTF-16 units agree.
                push_decimal(&mut body, 2 + base64_len(data.len()));
                body.extend_from_slice(b":b4");
                push_base64(&mut body, data);
            }
        }
    }
    Bytes::from(body)
}

fn encode_v3_binary(frames: &[Frame]) -> Bytes {
    let size = frames
        .iter()
        .map(|f| f.len() + 2 + MAX_LENGTH_DIGITS + 1)
        .sum();
    let mut body = Vec::with_capacity(size);
    for frame in frames {
        match frame {
            Frame::Text(text) => {
                body.push(0);
                push_length_digits(&mut body, text.len());
                body.extend_from_slice(text);
            }
            Frame::Binary(data) => {
                body.push(1);
                push_length_digits(&mut body, data.len() + 1);
                body.push(MESSAGE_TYPE_BYTE);
                body.extend_from_slice(data);
            }
        }
    }
    Bytes::from(body)
}

/// The length of `n` bytes in padded base64.
fn base64_len(n: usize) -> usize {
    n.div_ceil(3).saturating_mul(4)
}

fn push_base64(out: &mut Vec<u8>, data: &[u8]) {
    let start = out.len();
    let len = base64_len(data.len());
    out.resize(start + len, 0);
    // The slice is exactly the encoded length, so this cannot fail.
    let written = BASE64.encode_slice(data, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
}

fn push_decimal(out: &mut Vec<u8>, n: usize) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{n}");
}

/// `n` as an engine.io 3 binary payload length: one byte per decimal digit
/// (its value, not its character), then the byte 255.
fn push_length_digits(out: &mut Vec<u8>, n: usize) {
    out.extend(n.to_string().bytes().map(|d| d - b'0'));
    out.push(LENGTH_END);
}

/// The length of UTF-8 `text` in UTF-16 code units, as JavaScript's
/// `String.length` counts it: one per character, two for one outside the
/// Basic Multilingual Plane (a four-byte UTF-8 sequence).
fn utf16_len(text: &[u8]) -> usize {
    text.iter()
        .map(|&b| match b {
            0x80..=0xbf => 0,
            0xf0..=0xff => 2,
            _ => 1,
        })
        .sum()
}

/// The packets of a polling request body, decoded one at a time (so a
/// caller may pause between them). `binary` is whether the request's
/// content type was `application/octet-stream` (engine.io 3 binary
/// payloads). Yields an error once, then `None`, on a malformed body.
pub struct Decoder {
    body: Bytes,
    /// Where the next packet starts.
    pos: usize,
    format: Format,
    /// An error found before the first packet, yielded first.
    pending: Option<DecodeError>,
    /// Set once the body is exhausted or an error was yielded.
    done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    V3Text,
    V3Binary,
    V4,
}

impl Decoder {
    /// A decoder over `body`.
    pub fn new(version: EngineVersion, body: Bytes, binary: bool) -> Decoder {
        let mut pending = None;
        if body.is_empty() {
            // The reference parsers reject an empty body (engine.io 3 text
            // and engine.io 4); a request with no packet is not a client's.
            pending = Some(DecodeError::Empty);
        }
        let format = match (version, binary) {
            (EngineVersion::V3, false) => Format::V3Text,
            (EngineVersion::V3, true) => Format::V3Binary,
            (EngineVersion::V4, binary) => {
                if binary {
                    // engine.io 4 has no binary payload (its reference
                    // server refuses the content type too).
                    pending = Some(DecodeError::Payload("binary payload in engine.io 4"));
                }
                Format::V4
            }
        };
        Decoder {
            body,
            pos: 0,
            format,
            pending,
            done: false,
        }
    }

    fn next_packet(&mut self) -> Option<Result<Packet, DecodeError>> {
        match self.format {
            Format::V4 => self.next_v4(),
            Format::V3Text => self.next_v3_text(),
            Format::V3Binary => self.next_v3_binary(),
        }
    }

    fn next_v4(&mut self) -> Option<Result<Packet, DecodeError>> {
        let rest = &self.body[self.pos..];
        let (end, next) = match rest.iter().position(|&b| b == SEPARATOR) {
            Some(i) => (self.pos + i, self.pos + i + 1),
            None => {
                // The last packet: nothing comes after it.
                self.done = true;
                (self.body.len(), self.body.len())
            }
        };
        let packet = self.body.slice(self.pos..end);
        self.pos = next;
        Some(match packet.first() {
            Some(b'b') => decode_base64(&packet[1..]).map(Packet::Binary),
            _ => Packet::decode_text(packet),
        })
    }

    fn next_v3_text(&mut self) -> Option<Result<Packet, DecodeError>> {
        loop {
            if self.pos == self.body.len() {
                self.done = true;
                return None;
            }
            let body = &self.body[..];
            let digits_end = match body[self.pos..]
                .iter()
                .take(MAX_LENGTH_DIGITS + 1)
                .position(|&b| b == b':')
            {
                Some(i) => self.pos + i,
                None if body.len() - self.pos > MAX_LENGTH_DIGITS => {
                    return Some(Err(DecodeError::Payload("packet length too long")))
                }
                None => return Some(Err(DecodeError::Payload("packet length without ':'"))),
            };
            let units = match parse_decimal(&body[self.pos..digits_end]) {
                Ok(n) => n,
                Err(e) => return Some(Err(e)),
            };
            let start = digits_end + 1;
            let end = match utf16_end(body, start, units) {
                Ok(end) => end,
                Err(e) => return Some(Err(e)),
            };
            self.pos = end;
            if start == end {
                // `0:` is a payload without packets.
                continue;
            }
            return Some(decode_v3_text_packet(self.body.slice(start..end)));
        }
    }

    fn next_v3_binary(&mut self) -> Option<Result<Packet, DecodeError>> {
        let body = &self.body[..];
        let Some(&kind) = body.get(self.pos) else {
            self.done = true;
            return None;
        };
        let is_text = match kind {
            0 => true,
            1 => false,
            _ => return Some(Err(DecodeError::Payload("unknown packet kind"))),
        };
        let digits_start = self.pos + 1;
        let digits_end = match body[digits_start..]
            .iter()
            .take(MAX_LENGTH_DIGITS + 1)
            .position(|&b| b == LENGTH_END)
        {
            Some(i) => digits_start + i,
            None if body.len() - digits_start > MAX_LENGTH_DIGITS => {
                return Some(Err(DecodeError::Payload("packet length too long")))
            }
            None => return Some(Err(DecodeError::Payload("packet length without end"))),
        };
        let digits = &body[digits_start..digits_end];
        if digits.is_empty() {
            return Some(Err(DecodeError::Payload("packet without length")));
        }
        let mut len: usize = 0;
        for &d in digits {
            if d > 9 {
                return Some(Err(DecodeError::Payload("packet length not decimal")));
            }
            len = match len
                .checked_mul(10)
                .and_then(|n| n.checked_add(usize::from(d)))
            {
                Some(n) => n,
                None => return Some(Err(DecodeError::Payload("packet length too long"))),
            };
        }
        let start = digits_end + 1;
        if len > body.len() - start {
            return Some(Err(DecodeError::Payload("packet length past the end")));
        }
        let end = start + len;
        self.pos = end;
        let packet = self.body.slice(start..end);
        Some(if is_text {
            decode_v3_text_packet(packet)
        } else {
            Packet::decode_binary(EngineVersion::V3, packet)
        })
    }
}

impl Iterator for Decoder {
    type Item = Result<Packet, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(e) = self.pending.take() {
            self.done = true;
            return Some(Err(e));
        }
        let item = self.next_packet();
        if matches!(item, Some(Err(_))) {
            self.done = true;
        }
        item
    }
}

/// An engine.io 3 text packet, or `b` and a type digit then base64 (only a
/// message may be binary).
fn decode_v3_text_packet(packet: Bytes) -> Result<Packet, DecodeError> {
    match packet.first() {
        Some(b'b') => match packet.get(1) {
            Some(b'4') => decode_base64(&packet[2..]).map(Packet::Binary),
            Some(&other) => Err(DecodeError::UnknownType(other)),
            None => Err(DecodeError::Empty),
        },
        _ => Packet::decode_text(packet),
    }
}

fn decode_base64(text: &[u8]) -> Result<Bytes, DecodeError> {
    BASE64
        .decode(text)
        .map(Bytes::from)
        .map_err(|_| DecodeError::Payload("invalid base64"))
}

/// ASCII decimal digits (at least one) as a number.
fn parse_decimal(digits: &[u8]) -> Result<usize, DecodeError> {
    if digits.is_empty() {
        return Err(DecodeError::Payload("packet without length"));
    }
    digits.iter().try_fold(0usize, |n, &d| {
        if !d.is_ascii_digit() {
            return Err(DecodeError::Payload("packet length not decimal"));
        }
        n.checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(d - b'0')))
            .ok_or(DecodeError::Payload("packet length too long"))
    })
}

/// Where the text that starts at `start` and is `units` UTF-16 code units
/// long ends. Only lead bytes are read here: the packet decoder validates
/// the whole slice, and a slice that is valid UTF-8 was walked correctly.
fn utf16_end(body: &[u8], start: usize, units: usize) -> Result<usize, DecodeError> {
    // Every UTF-16 unit takes at least one UTF-8 byte.
    if units > body.len() - start {
        return Err(DecodeError::Payload("packet length past the end"));
    }
    let mut pos = start;
    let mut counted = 0;
    while counted < units {
        let Some(&lead) = body.get(pos) else {
            return Err(DecodeError::Payload("packet length past the end"));
        };
        let (width, n) = match lead {
            0x00..=0x7f => (1, 1),
            0xc2..=0xdf => (2, 1),
            0xe0..=0xef => (3, 1),
            0xf0..=0xf4 => (4, 2),
            _ => return Err(DecodeError::NotUtf8),
        };
        if width > body.len() - pos {
            return Err(DecodeError::Payload("packet length past the end"));
        }
        counted += n;
        pos += width;
    }
    if counted > units {
        return Err(DecodeError::Payload("packet length splits a character"));
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::packet::tests::any_packet;
    use proptest::prelude::*;

    fn decode_all(
        version: EngineVersion,
        body: &[u8],
        binary: bool,
    ) -> Vec<Result<Packet, DecodeError>> {
        Decoder::new(version, Bytes::copy_from_slice(body), binary).collect()
    }

    fn v3(body: &str) -> Vec<Result<Packet, DecodeError>> {
        decode_all(EngineVersion::V3, body.as_bytes(), false)
    }

    fn v4(body: &str) -> Vec<Result<Packet, DecodeError>> {
        decode_all(EngineVersion::V4, body.as_bytes(), false)
    }

    fn msg(s: &str) -> Packet {
        Packet::Message(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn bin(b: &[u8]) -> Packet {
        Packet::Binary(Bytes::copy_from_slice(b))
    }

    fn text(s: &str) -> Frame {
        Frame::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn binary(b: &[u8]) -> Frame {
        Frame::Binary(Bytes::copy_from_slice(b))
    }

    fn payload_err(reason: &'static str) -> Result<Packet, DecodeError> {
        Err(DecodeError::Payload(reason))
    }

    #[test]
    fn v3_text_lengths_count_utf16_units() {
        let frames = [text("4€€€"), text("4α")];
        let encoded = encode(EngineVersion::V3, false, &frames);
        assert_eq!(encoded.body, "4:4€€€2:4α".as_bytes());
        assert_eq!(encoded.content_type, TEXT_CONTENT_TYPE);
        assert_eq!(v3("4:4€€€2:4α"), vec![Ok(msg("€€€")), Ok(msg("α"))]);

        // Outside the BMP: a surrogate pair, two units.
        assert_eq!(
            encode(EngineVersion::V3, false, &[text("4😀")]).body,
            "3:4😀".as_bytes()
        );
        assert_eq!(v3("3:4😀"), vec![Ok(msg("😀"))]);
        assert_eq!(v3("5:4é😀é2:4é"), vec![Ok(msg("é😀é")), Ok(msg("é"))]);
        assert_eq!(
            encode(EngineVersion::V3, true, &[text("4hello 亜"), text("2")]).body,
            "8:4hello 亜1:2".as_bytes()
        );
    }

    #[test]
    fn v3_text_payloads() {
        assert_eq!(
            encode(
                EngineVersion::V3,
                false,
                &[Packet::Ping(Bytes::new()).encode(), text("3")]
            )
            .body,
            "1:21:3"
        );
        assert_eq!(
            v3("2:4a1:2"),
            vec![Ok(msg("a")), Ok(Packet::Ping(Bytes::new()))]
        );
        assert_eq!(
            v3("6:2probe"),
            vec![Ok(Packet::Ping(Bytes::from_static(b"probe")))]
        );
        assert_eq!(v3("1:1"), vec![Ok(Packet::Close)]);
        // Digits and colons inside a packet are its data.
        assert_eq!(v3("5:412:32:40"), vec![Ok(msg("12:3")), Ok(msg("0"))]);
        // Leading zeros are a number still, as for the reference.
        assert_eq!(v3("02:4a"), vec![Ok(msg("a"))]);
    }

    #[test]
    fn v3_empty_payloads() {
        let encoded = encode(EngineVersion::V3, false, &[]);
        assert_eq!(encoded.body, "0:");
        assert_eq!(encoded.content_type, TEXT_CONTENT_TYPE);
        assert_eq!(encode(EngineVersion::V3, true, &[]).body, "0:");
        assert_eq!(v3("0:"), vec![]);
        assert_eq!(v3("0:2:4a0:"), vec![Ok(msg("a"))]);
        assert_eq!(v3(""), vec![Err(DecodeError::Empty)]);
        assert_eq!(
            decode_all(EngineVersion::V3, b"", true),
            vec![Err(DecodeError::Empty)]
        );
    }

    #[test]
    fn v3_base64_packets() {
        // The reference's mixed case: a buffer 0..5 and a string.
        let frames = [binary(&[0, 1, 2, 3, 4]), text("4hello 亜")];
        let encoded = encode(EngineVersion::V3, true, &frames);
        assert_eq!(encoded.body, "10:b4AAECAwQ=8:4hello 亜".as_bytes());
        assert_eq!(encoded.content_type, TEXT_CONTENT_TYPE);
        assert_eq!(
            v3("10:b4AAECAwQ=8:4hello 亜"),
            vec![Ok(bin(&[0, 1, 2, 3, 4])), Ok(msg("hello 亜"))]
        );
        assert_eq!(encode(EngineVersion::V3, true, &[binary(&[])]).body, "2:b4");
        assert_eq!(v3("2:b4"), vec![Ok(bin(&[]))]);
        assert_eq!(v3("10:b4AQIDBA=="), vec![Ok(bin(&[1, 2, 3, 4]))]);
        // Padding is optional on the way in.
        assert_eq!(v3("5:b4AQI"), vec![Ok(bin(&[1, 2]))]);
        assert_eq!(v3("6:b4!!!!"), vec![payload_err("invalid base64")]);
        assert_eq!(v3("4:b2AQ"), vec![Err(DecodeError::UnknownType(b'2'))]);
        assert_eq!(v3("1:b"), vec![Err(DecodeError::Empty)]);
    }

    #[test]
    fn v3_binary_payloads() {
        // The reference's case: a 123 byte buffer, a string, a close.
        let buffer: Vec<u8> = (0..123).collect();
        let frames = [binary(&buffer), text("4hello 亜"), Packet::Close.encode()];
        let encoded = encode(EngineVersion::V3, false, &frames);
        assert_eq!(encoded.content_type, BINARY_CONTENT_TYPE);
        let mut expected = vec![1, 1, 2, 4, 255, 4];
        expected.extend_from_slice(&buffer);
        expected.extend_from_slice(&[0, 1, 0, 255]);
        expected.extend_from_slice("4hello 亜".as_bytes());
        expected.extend_from_slice(&[0, 1, 255, b'1']);
        assert_eq!(encoded.body, expected);
        assert_eq!(
            decode_all(EngineVersion::V3, &expected, true),
            vec![Ok(bin(&buffer)), Ok(msg("hello 亜")), Ok(Packet::Close)]
        );

        // Two buffers, as the reference's other case.
        let encoded = encode(
            EngineVersion::V3,
            false,
            &[binary(&[0, 1, 2, 3, 4]), binary(&[5, 6, 7, 8])],
        );
        assert_eq!(
            encoded.body,
            [1, 6, 255, 4, 0, 1, 2, 3, 4, 1, 5, 255, 4, 5, 6, 7, 8][..]
        );
        assert_eq!(
            decode_all(EngineVersion::V3, &encoded.body, true),
            vec![Ok(bin(&[0, 1, 2, 3, 4])), Ok(bin(&[5, 6, 7, 8]))]
        );

        // A string packet is counted in bytes here, not UTF-16 units.
        assert_eq!(
            decode_all(EngineVersion::V3, b"\x00\x05\xff4\xf0\x9f\x98\x80", true),
            vec![Ok(msg("😀"))]
        );
        // A base64 string inside a binary payload is still a message.
        assert_eq!(
            decode_all(EngineVersion::V3, b"\x00\x06\xffb4AQID", true),
            vec![Ok(bin(&[1, 2, 3]))]
        );
        // b64 wins over the binary format.
        assert_eq!(
            encode(EngineVersion::V3, true, &[binary(&[1])]).content_type,
            TEXT_CONTENT_TYPE
        );
    }

    #[test]
    fn v3_binary_payload_errors() {
        let bad = |body: &[u8]| decode_all(EngineVersion::V3, body, true);
        assert_eq!(
            bad(&[2, 1, 255, b'1']),
            vec![payload_err("unknown packet kind")]
        );
        assert_eq!(bad(&[0, 1]), vec![payload_err("packet length without end")]);
        assert_eq!(bad(&[0]), vec![payload_err("packet length without end")]);
        assert_eq!(
            bad(&[0, 255, b'1']),
            vec![payload_err("packet without length")]
        );
        assert_eq!(
            bad(&[0, 12, 255, b'1']),
            vec![payload_err("packet length not decimal")]
        );
        assert_eq!(
            bad(&[0, 5, 255, b'4']),
            vec![payload_err("packet length past the end")]
        );
        assert_eq!(bad(&[0; 40]), vec![payload_err("packet length too long")]);
        let mut huge = vec![0];
        huge.extend([9; 20]);
        huge.push(255);
        assert_eq!(bad(&huge), vec![payload_err("packet length too long")]);
        assert_eq!(
            bad(&[1, 3, 255, 3, 2, 1]),
            vec![Err(DecodeError::UnknownType(3))]
        );
        assert_eq!(bad(&[1, 0, 255]), vec![Err(DecodeError::Empty)]);
        assert_eq!(bad(&[0, 0, 255]), vec![Err(DecodeError::Empty)]);
        assert_eq!(
            bad(&[0, 2, 255, b'4', 0xff]),
            vec![Err(DecodeError::NotUtf8)]
        );
        // A good packet, then a bad one: the good one is yielded.
        assert_eq!(
            bad(&[0, 1, 255, b'2', 7]),
            vec![
                Ok(Packet::Ping(Bytes::new())),
                payload_err("unknown packet kind")
            ]
        );
    }

    #[test]
    fn v3_text_payload_errors() {
        // The reference parser's malformed payloads.
        assert_eq!(v3("1!"), vec![payload_err("packet length without ':'")]);
        assert_eq!(v3("))"), vec![payload_err("packet length without ':'")]);
        assert_eq!(v3("1:"), vec![payload_err("packet length past the end")]);
        assert_eq!(v3("3:99:"), vec![Err(DecodeError::UnknownType(b'9'))]);
        assert_eq!(v3("1:aa"), vec![Err(DecodeError::UnknownType(b'a'))]);
        assert_eq!(v3("1:a2:b"), vec![Err(DecodeError::UnknownType(b'a'))]);
        assert_eq!(
            decode_all(EngineVersion::V3, &[64], false),
            vec![payload_err("packet length without ':'")]
        );
        // Lengths that are not numbers, absurd, or do not end on a
        // character.
        assert_eq!(v3(":4a"), vec![payload_err("packet without length")]);
        assert_eq!(v3("a:4a"), vec![payload_err("packet length not decimal")]);
        assert_eq!(v3("-1:4"), vec![payload_err("packet length not decimal")]);
        assert_eq!(v3(" 1:4"), vec![payload_err("packet length not decimal")]);
        assert_eq!(
            v3("1e1:4abcdefghi"),
            vec![payload_err("packet length not decimal")]
        );
        assert_eq!(
            v3("5:4abc"),
            vec![payload_err("packet length past the end")]
        );
        assert_eq!(
            v3("99999999999:4a"),
            vec![payload_err("packet length past the end")]
        );
        assert_eq!(
            v3("18446744073709551616:4"),
            vec![payload_err("packet length too long")]
        );
        assert_eq!(
            v3("999999999999999999999999:4"),
            vec![payload_err("packet length too long")]
        );
        assert_eq!(
            v3("1:😀"),
            vec![payload_err("packet length splits a character")]
        );
        assert_eq!(
            v3("2:4😀"),
            vec![payload_err("packet length splits a character")]
        );
        // Enough bytes, too few characters: 😀 is 4 bytes, 2 units.
        assert_eq!(v3("4:4😀"), vec![payload_err("packet length past the end")]);
        assert_eq!(
            decode_all(EngineVersion::V3, b"2:4\xff", false),
            vec![Err(DecodeError::NotUtf8)]
        );
        assert_eq!(
            decode_all(EngineVersion::V3, b"2:4\xe2\x28\xa1", false),
            vec![Err(DecodeError::NotUtf8)]
        );
        // A good packet, then trailing garbage.
        assert_eq!(
            v3("2:4a2"),
            vec![Ok(msg("a")), payload_err("packet length without ':'")]
        );
    }

    #[test]
    fn v4_payloads() {
        let frames = [
            Packet::Open(Bytes::new()).encode(),
            Packet::Close.encode(),
            Packet::Ping(Bytes::from_static(b"probe")).encode(),
            Packet::Pong(Bytes::from_static(b"probe")).encode(),
            text("4test"),
        ];
        for b64 in [false, true] {
            let encoded = encode(EngineVersion::V4, b64, &frames);
            assert_eq!(encoded.body, "0\x1e1\x1e2probe\x1e3probe\x1e4test");
            assert_eq!(encoded.content_type, TEXT_CONTENT_TYPE);
        }
        assert_eq!(
            v4("0\x1e1\x1e2probe\x1e3probe\x1e4test"),
            vec![
                Ok(Packet::Open(Bytes::new())),
                Ok(Packet::Close),
                Ok(Packet::Ping(Bytes::from_static(b"probe"))),
                Ok(Packet::Pong(Bytes::from_static(b"probe"))),
                Ok(msg("test")),
            ]
        );

        let encoded = encode(
            EngineVersion::V4,
            false,
            &[text("4test"), binary(&[1, 2, 3, 4])],
        );
        assert_eq!(encoded.body, "4test\x1ebAQIDBA==");
        assert_eq!(encoded.content_type, TEXT_CONTENT_TYPE);
        assert_eq!(
            v4("4test\x1ebAQIDBA=="),
            vec![Ok(msg("test")), Ok(bin(&[1, 2, 3, 4]))]
        );
        assert_eq!(v4("b"), vec![Ok(bin(&[]))]);
        assert_eq!(v4("4€😀\x1e4"), vec![Ok(msg("€😀")), Ok(msg(""))]);
        assert_eq!(
            encode(EngineVersion::V4, false, &[text("4€😀")]).body,
            "4€😀".as_bytes()
        );
    }

    #[test]
    fn v4_payload_errors() {
        // The reference parser's malformed payloads.
        assert_eq!(v4("{"), vec![Err(DecodeError::UnknownType(b'{'))]);
        assert_eq!(v4("{}"), vec![Err(DecodeError::UnknownType(b'{'))]);
        assert_eq!(
            v4(r#"["a123", "a456"]"#),
            vec![Err(DecodeError::UnknownType(b'['))]
        );
        assert_eq!(v4(""), vec![Err(DecodeError::Empty)]);
        assert_eq!(v4("4a\x1e"), vec![Ok(msg("a")), Err(DecodeError::Empty)]);
        assert_eq!(
            v4("4a\x1e\x1e4b"),
            vec![Ok(msg("a")), Err(DecodeError::Empty)]
        );
        assert_eq!(v4("b!!"), vec![payload_err("invalid base64")]);
        assert_eq!(
            decode_all(EngineVersion::V4, b"4\xff", false),
            vec![Err(DecodeError::NotUtf8)]
        );
        assert_eq!(
            decode_all(EngineVersion::V4, b"4a", true),
            vec![payload_err("binary payload in engine.io 4")]
        );
    }

    #[test]
    fn message_data_is_a_slice_of_the_body() {
        let body = Bytes::from_static(b"4a\x1e42[\"x\"]");
        let packets: Vec<_> = Decoder::new(EngineVersion::V4, body.clone(), false).collect();
        let Some(Ok(Packet::Message(data))) = packets.get(1) else {
            panic!("not a message: {packets:?}");
        };
        assert_eq!(data.as_ptr(), body[4..].as_ptr());
    }

    /// Checks the decoder's contract on any body: at most one error, last,
    /// and no more items than bytes.
    fn check_contract(
        version: EngineVersion,
        body: Vec<u8>,
        binary: bool,
    ) -> Result<(), TestCaseError> {
        let len = body.len();
        let items: Vec<_> = Decoder::new(version, Bytes::from(body), binary)
            .take(len + 2)
            .collect();
        prop_assert!(items.len() <= len.max(1));
        if let Some(i) = items.iter().position(Result::is_err) {
            prop_assert_eq!(i, items.len() - 1);
        }
        Ok(())
    }

    fn frames(packets: &[Packet]) -> Vec<Frame> {
        packets.iter().map(Packet::encode).collect()
    }

    fn roundtrip(
        version: EngineVersion,
        b64: bool,
        packets: &[Packet],
    ) -> Vec<Result<Packet, DecodeError>> {
        let encoded = encode(version, b64, &frames(packets));
        let binary = encoded.content_type == BINARY_CONTENT_TYPE;
        Decoder::new(version, encoded.body, binary).collect()
    }

    /// An engine.io 3 payload body: length-prefixed packets and noise.
    fn v3_like_body() -> impl Strategy<Value = Vec<u8>> {
        let part = prop_oneof![
            "[0-9]{1,3}:".prop_map(String::into_bytes),
            "[0-6b][^:]{0,6}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..4),
        ];
        proptest::collection::vec(part, 0..8).prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn utf16_len_is_javascripts(s in any::<String>()) {
            prop_assert_eq!(utf16_len(s.as_bytes()), s.encode_utf16().count());
        }

        #[test]
        fn decoders_keep_their_contract(body in proptest::collection::vec(any::<u8>(), 0..96)) {
            for version in [EngineVersion::V3, EngineVersion::V4] {
                for binary in [false, true] {
                    check_contract(version, body.clone(), binary)?;
                }
            }
        }

        #[test]
        fn v3_decoders_keep_their_contract_on_likely_bodies(body in v3_like_body()) {
            check_contract(EngineVersion::V3, body.clone(), false)?;
            check_contract(EngineVersion::V3, body, true)?;
        }

        #[test]
        fn v3_decodes_what_it_encodes(
            packets in proptest::collection::vec(any_packet(), 0..8),
            b64 in any::<bool>(),
        ) {
            let decoded = roundtrip(EngineVersion::V3, b64, &packets);
            prop_assert_eq!(decoded, packets.into_iter().map(Ok).collect::<Vec<_>>());
        }

        #[test]
        fn v4_decodes_what_it_encodes(
            packets in proptest::collection::vec(
                // The separator cannot be in a packet of a payload.
                any_packet().prop_filter("no separator", |p| !matches!(
                    p.encode(), Frame::Text(t) if t.contains(&SEPARATOR)
                )),
                1..8,
            ),
            b64 in any::<bool>(),
        ) {
            let decoded = roundtrip(EngineVersion::V4, b64, &packets);
            prop_assert_eq!(decoded, packets.into_iter().map(Ok).collect::<Vec<_>>());
        }
    }
}
