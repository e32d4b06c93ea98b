//! Long-polling payloads: several engine.io packets in one HTTP body.
//!
//! - engine.io 4: packets separated by `\x1e`, a binary one as `b<base64>`.
//! - engine.io 3, text: `<length>:<packet>` each, the length in UTF-16 code
//!   units, a binary packet as `b4<base64>` (clients asking `b64=1`).
//! - engine.io 3, binary (`application/octet-stream`): per packet a kind
//!   byte (0 text, 1 binary), the length's decimal digits as byte values,
//!   255, then the packet (a binary one as the byte 4 and its bytes).

use base64::Engine as _;

use crate::Eio;

/// One packet of a polling payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A text packet, type digit included (`2`, `42[...]`).
    Text(String),
    /// A binary packet's bytes (its type marker removed).
    Binary(Vec<u8>),
}

impl Item {
    /// The text of a text packet.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Item::Text(t) => Some(t),
            Item::Binary(_) => None,
        }
    }

    /// The text of a text packet, for tests.
    ///
    /// # Panics
    /// When the packet is binary.
    #[track_caller]
    pub fn text(&self) -> &str {
        match self {
            Item::Text(t) => t,
            Item::Binary(b) => panic!("expected a text packet, got binary {b:?}"),
        }
    }
}

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// A text payload that is not UTF-8.
    #[error("a text payload that is not UTF-8")]
    NotUtf8,
    /// A binary packet's base64 does not decode.
    #[error("a binary packet whose base64 does not decode")]
    Base64,
    /// An engine.io 3 length missing, not decimal or past the end.
    #[error("a bad packet length: {0}")]
    Length(&'static str),
    /// An engine.io 3 binary payload's kind byte is neither 0 nor 1, or a
    /// binary packet does not start with 4.
    #[error("a bad packet kind")]
    Kind,
    /// engine.io 4 has no binary payload.
    #[error("engine.io 4 answered with a binary payload")]
    BinaryV4,
}

/// The packets of a polling body of generation `eio`; `binary` when the
/// answer's content type was `application/octet-stream`.
pub fn decode(eio: Eio, binary: bool, body: &[u8]) -> Result<Vec<Item>, PayloadError> {
    match (eio, binary) {
        (Eio::V4, false) => decode_v4(body),
        (Eio::V3, false) => decode_v3_text(body),
        (Eio::V3, true) => decode_v3_binary(body),
        (Eio::V4, true) => Err(PayloadError::BinaryV4),
    }
}

fn base64(b64: &str) -> Result<Vec<u8>, PayloadError> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| PayloadError::Base64)
}

/// An engine.io 4 payload: `\x1e`-separated packets, binary ones as
/// `b<base64>`. An empty body is one empty packet.
pub fn decode_v4(body: &[u8]) -> Result<Vec<Item>, PayloadError> {
    let text = std::str::from_utf8(body).map_err(|_| PayloadError::NotUtf8)?;
    text.split('\x1e')
        .map(|p| match p.strip_prefix('b') {
            Some(b64) => base64(b64).map(Item::Binary),
            None => Ok(Item::Text(p.to_owned())),
        })
        .collect()
}

/// An engine.io 3 text payload: `<length>:<packet>`, lengths in UTF-16 code
/// units, binary packets as `b4<base64>`; empty packets are skipped.
pub fn decode_v3_text(body: &[u8]) -> Result<Vec<Item>, PayloadError> {
    let mut rest = std::str::from_utf8(body).map_err(|_| PayloadError::NotUtf8)?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let colon = rest
            .find(':')
            .ok_or(PayloadError::Length("no ':' after it"))?;
        let units: usize = rest[..colon]
            .parse()
            .map_err(|_| PayloadError::Length("not decimal"))?;
        rest = &rest[colon + 1..];
        let mut seen = 0;
        let mut end = 0;
        for c in rest.chars() {
            if seen == units {
                break;
            }
            seen += c.len_utf16();
            end += c.len_utf8();
        }
        if seen != units {
            return Err(PayloadError::Length("past the end"));
        }
        let packet = &rest[..end];
        rest = &rest[end..];
        if packet.is_empty() {
            continue;
        }
        out.push(match packet.strip_prefix("b4") {
            Some(b64) => Item::Binary(base64(b64)?),
            None => Item::Text(packet.to_owned()),
        });
    }
    Ok(out)
}

/// An engine.io 3 binary payload (see the module docs).
pub fn decode_v3_binary(body: &[u8]) -> Result<Vec<Item>, PayloadError> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&kind) = body.get(i) {
        i += 1;
        let mut len = 0usize;
        loop {
            match body.get(i) {
                Some(255) => break,
                Some(&d) if d <= 9 => {
                    len = len
                        .checked_mul(10)
                        .and_then(|l| l.checked_add(usize::from(d)))
                        .ok_or(PayloadError::Length("too large"))?;
                }
                Some(_) => return Err(PayloadError::Length("a digit above 9")),
                None => return Err(PayloadError::Length("no 255 after it")),
            }
            i += 1;
        }
        i += 1;
        let packet = i
            .checked_add(len)
            .and_then(|end| body.get(i..end))
            .ok_or(PayloadError::Length("past the end"))?;
        i += len;
        out.push(match kind {
            0 => Item::Text(String::from_utf8(packet.to_vec()).map_err(|_| PayloadError::NotUtf8)?),
            1 => match packet.split_first() {
                Some((4, bytes)) => Item::Binary(bytes.to_vec()),
                _ => return Err(PayloadError::Kind),
            },
            _ => return Err(PayloadError::Kind),
        });
    }
    Ok(out)
}

/// A text payload of `packets` (as a client POSTs them).
pub fn encode_text(eio: Eio, packets: &[&str]) -> Vec<u8> {
    match eio {
        Eio::V4 => packets.join("\x1e").into_bytes(),
        Eio::V3 => packets
            .iter()
            .map(|p| format!("{}:{}", p.encode_utf16().count(), p))
            .collect::<String>()
            .into_bytes(),
    }
}

/// Appends one packet to an engine.io 3 binary payload: `kind` (0 text,
/// 1 binary), the length's digits as byte values, 255, `packet` as given
/// (a binary packet starts with the byte 4).
pub fn push_v3_binary_packet(out: &mut Vec<u8>, kind: u8, packet: &[u8]) {
    out.push(kind);
    out.extend(packet.len().to_string().bytes().map(|d| d - b'0'));
    out.push(255);
    out.extend_from_slice(packet);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_payloads_round_trip() {
        let body = encode_text(Eio::V4, &["2", r#"42["a",1]"#]);
        assert_eq!(body, b"2\x1e42[\"a\",1]");
        assert_eq!(
            decode_v4(&body),
            Ok(vec![
                Item::Text("2".into()),
                Item::Text(r#"42["a",1]"#.into())
            ])
        );
        assert_eq!(decode_v4(b"bAQI="), Ok(vec![Item::Binary(vec![1, 2])]));
        assert_eq!(decode_v4(b""), Ok(vec![Item::Text(String::new())]));
        assert_eq!(decode_v4(b"b!!"), Err(PayloadError::Base64));
    }

    #[test]
    fn v3_text_payloads_count_utf16_units() {
        let body = encode_text(Eio::V3, &["4é😀", "2"]);
        assert_eq!(body, "4:4é😀1:2".as_bytes());
        assert_eq!(
            decode_v3_text(&body),
            Ok(vec![Item::Text("4é😀".into()), Item::Text("2".into())])
        );
        assert_eq!(
            decode_v3_text(b"0:6:b4AQI="),
            Ok(vec![Item::Binary(vec![1, 2])])
        );
        assert!(decode_v3_text(b"9:42").is_err());
        assert!(decode_v3_text(b"x:4").is_err());
        assert!(decode_v3_text(b"42").is_err());
    }

    #[test]
    fn v3_binary_payloads_round_trip() {
        let mut body = Vec::new();
        push_v3_binary_packet(&mut body, 0, b"40");
        push_v3_binary_packet(&mut body, 1, &[4, 9, 8]);
        assert_eq!(body, [0, 2, 255, b'4', b'0', 1, 3, 255, 4, 9, 8]);
        assert_eq!(
            decode(Eio::V3, true, &body),
            Ok(vec![Item::Text("40".into()), Item::Binary(vec![9, 8])])
        );
        assert!(decode_v3_binary(&[0, 5, 255, b'4']).is_err());
        assert!(decode_v3_binary(&[0, 12]).is_err());
        assert!(decode_v3_binary(&[2, 1, 255, b'4']).is_err());
        assert!(decode_v3_binary(&[1, 1, 255, 3]).is_err());
        assert_eq!(decode(Eio::V4, true, b"x"), Err(PayloadError::BinaryV4));
    }

    #[test]
    fn item_text() {
        assert_eq!(Item::Text("2".into()).as_text(), Some("2"));
        assert_eq!(Item::Binary(vec![1]).as_text(), None);
    }
}
