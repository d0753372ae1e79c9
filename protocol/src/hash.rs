//! SHA-256, the one digest of every hashed format (see the table in the crate
//! documentation), and hex, the one way digests are written as text.

use sha2::{Digest, Sha256};

/// `sha256(bytes)`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `sha256(parts[0] || parts[1] || ...)`, without concatenating the parts first.
pub fn sha256_concat(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part);
    }
    h.finalize().into()
}

/// Lowercase hex of `bytes`, as digests are shown, logged and stored as text.
pub fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Why text is not the hex of a 32-byte digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("`{text}` is not hex: {reason}")]
    NotHex { text: String, reason: String },
    #[error("`{text}` is {len} bytes of hex; a digest is 32 bytes (64 hex characters)")]
    WrongLength { text: String, len: usize },
}

/// Parses the hex of a 32-byte digest (either case, no prefix, no whitespace).
pub fn parse_hex32(text: &str) -> Result<[u8; 32], HexError> {
    let bytes = hex::decode(text).map_err(|e| HexError::NotHex {
        text: text.to_string(),
        reason: e.to_string(),
    })?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| HexError::WrongLength {
        text: text.to_string(),
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_fips_180_vector_whole_and_in_parts() {
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(to_hex(&sha256(b"abc")), abc);
        assert_eq!(to_hex(&sha256_concat(&[b"a", b"", b"bc"])), abc);
        assert_eq!(sha256_concat(&[]), sha256(b""));
    }

    #[test]
    fn hex_round_trips_and_rejects_what_is_not_a_digest() {
        let digest = sha256(b"flic");
        assert_eq!(parse_hex32(&to_hex(&digest)), Ok(digest));
        assert_eq!(parse_hex32(&to_hex(&digest).to_uppercase()), Ok(digest));
        assert!(matches!(parse_hex32("zz"), Err(HexError::NotHex { .. })));
        assert!(matches!(parse_hex32("abc"), Err(HexError::NotHex { .. })));
        assert_eq!(
            parse_hex32("abcd"),
            Err(HexError::WrongLength {
                text: "abcd".into(),
                len: 2
            })
        );
    }
}
