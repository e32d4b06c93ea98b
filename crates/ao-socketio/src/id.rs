//! Random identifiers: engine.io session ids and socket ids.

use std::fmt;

use base64::Engine as _;

/// A random 20-character base64url identifier, kept inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Id([u8; 20]);

impl Id {
    /// A fresh random id (120 random bits).
    pub(crate) fn random() -> Id {
        let raw: [u8; 15] = rand::random();
        let mut out = [0u8; 20];
        // 15 bytes are exactly 20 base64 characters, without padding.
        let _ = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_slice(raw, &mut out);
        Id(out)
    }

    /// Parses an id as a client sends it back.
    pub(crate) fn parse(s: &str) -> Option<Id> {
        let bytes: [u8; 20] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .then_some(Id(bytes))
    }

    /// The id's text.
    pub(crate) fn as_str(&self) -> &str {
        // Only ever base64url characters (see `random` and `parse`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_parse_back() {
        let a = Id::random();
        assert_ne!(a, Id::random());
        assert_eq!(a.as_str().len(), 20);
        assert_eq!(Id::parse(a.as_str()), Some(a));
        assert_eq!(Id::parse("short"), None);
        assert_eq!(Id::parse("aaaaaaaaaaaaaaaaaaa!"), None);
    }
}
