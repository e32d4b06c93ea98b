//! Token generation, hashing and constant-time comparison.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A new random token: 32 bytes from the OS generator, hex encoded.
pub(crate) fn generate() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The stored form of a token: hex SHA-256. Tokens are random with 256 bits
/// of entropy, so a fast hash is enough to make a stolen table useless.
pub(crate) fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` hashes to `stored`, compared in constant time.
pub(crate) fn matches(token: &str, stored: &str) -> bool {
    hash(token).as_bytes().ct_eq(stored.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_only_their_token() {
        let t = generate();
        assert_eq!(t.len(), 64);
        let h = hash(&t);
        assert!(matches(&t, &h));
        assert!(!matches("other", &h));
        assert_ne!(generate(), t);
    }
}
