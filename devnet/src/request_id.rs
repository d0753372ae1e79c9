//! The representation-independent hash of the IC interface specification: the request id
//! of an envelope's `content`, and what every sender signature and node signature covers.
//!
//! It is computed over the CBOR value as received, not over a typed copy, so that a field
//! this devnet does not know still counts: a signature must cover everything the sender sent.

use serde_cbor::Value;
use sha2::{Digest, Sha256};

/// Why a value has no request id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("a map key is not a text string")]
    NonTextKey,
    #[error("floats, booleans, null and tags have no representation-independent hash")]
    Unsupported,
    #[error("the value is nested more than {MAX_DEPTH} levels deep")]
    TooDeep,
}

/// Deeper values are refused rather than recursed into (untrusted input).
pub const MAX_DEPTH: usize = 32;

/// SHA-256 of the value's representation-independent encoding.
pub fn hash_of(value: &Value) -> Result<[u8; 32], HashError> {
    hash_at(value, 0)
}

fn hash_at(value: &Value, depth: usize) -> Result<[u8; 32], HashError> {
    if depth > MAX_DEPTH {
        return Err(HashError::TooDeep);
    }
    Ok(match value {
        Value::Bytes(b) => Sha256::digest(b).into(),
        Value::Text(t) => Sha256::digest(t.as_bytes()).into(),
        Value::Integer(i) => Sha256::digest(leb128(*i)).into(),
        Value::Array(items) => {
            let mut h = Sha256::new();
            for item in items {
                h.update(hash_at(item, depth + 1)?);
            }
            h.finalize().into()
        }
        Value::Map(map) => {
            let mut pairs = Vec::with_capacity(map.len());
            for (k, v) in map {
                let Value::Text(key) = k else {
                    return Err(HashError::NonTextKey);
                };
                let mut pair = [0u8; 64];
                pair[..32].copy_from_slice(&Sha256::digest(key.as_bytes()));
                pair[32..].copy_from_slice(&hash_at(v, depth + 1)?);
                pairs.push(pair);
            }
            pairs.sort_unstable();
            let mut h = Sha256::new();
            for pair in pairs {
                h.update(pair);
            }
            h.finalize().into()
        }
        _ => return Err(HashError::Unsupported),
    })
}

/// Unsigned LEB128 for naturals, signed LEB128 for negative integers (as the spec says;
/// also the encoding of numbers in the state tree).
pub(crate) fn leb128(i: i128) -> Vec<u8> {
    let mut out = Vec::new();
    if i >= 0 {
        let mut v = i as u128;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }
    let mut v = i;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        let done = v == -1 && byte & 0x40 != 0;
        out.push(if done { byte } else { byte | 0x80 });
        if done {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candid::Principal;
    use ic_transport_types::EnvelopeContent;

    /// The spec's worked example: a call to `hello` with argument `DIDL\0\xFD*`.
    #[test]
    fn the_specifications_example() {
        let content = EnvelopeContent::Call {
            nonce: None,
            ingress_expiry: 1_685_570_400_000_000_000,
            sender: Principal::anonymous(),
            canister_id: Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0x04, 0xd2]),
            method_name: "hello".into(),
            arg: b"DIDL\x00\xfd*".to_vec(),
            sender_info: None,
        };
        let value = serde_cbor::value::to_value(&content).unwrap();
        let id = hash_of(&value).unwrap();
        assert_eq!(
            hex::encode(id),
            "1d1091364d6bb8a6c16b203ee75467d59ead468f523eb058880ae8ec80e2b101"
        );
        assert_eq!(id, *content.to_request_id());
    }

    #[test]
    fn every_field_counts_and_order_does_not() {
        let a: Value = serde_cbor::from_slice(
            &serde_cbor::to_vec(&serde_json::json!({
                "a": 1, "b": "x"
            }))
            .unwrap(),
        )
        .unwrap();
        let b: Value = serde_cbor::from_slice(
            &serde_cbor::to_vec(&serde_json::json!({
                "b": "x", "a": 1
            }))
            .unwrap(),
        )
        .unwrap();
        let c: Value = serde_cbor::from_slice(
            &serde_cbor::to_vec(&serde_json::json!({
                "b": "x", "a": 1, "extra": 2
            }))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(hash_of(&a), hash_of(&b));
        assert_ne!(hash_of(&a), hash_of(&c));
        assert_eq!(hash_of(&Value::Float(1.0)), Err(HashError::Unsupported));
        let mut deep = Value::Integer(0);
        for _ in 0..40 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(hash_of(&deep), Err(HashError::TooDeep));
    }

    #[test]
    fn leb128_encodings() {
        assert_eq!(leb128(0), [0]);
        assert_eq!(leb128(624_485), [0xe5, 0x8e, 0x26]);
        assert_eq!(leb128(-123_456), [0xc0, 0xbb, 0x78]);
        assert_eq!(leb128(-1), [0x7f]);
    }
}
