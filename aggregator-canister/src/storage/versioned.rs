//! How a record is written to stable memory: one version byte, then the Candid encoding of
//! that version's shape.
//!
//! The release before versioned records wrote bare Candid, which starts with the magic
//! `DIDL`; such bytes decode as version 0. Version bytes stay below `b'D'` so the two can
//! never be confused.
//!
//! **The rule: a stored record that gains a field must still decode what the previous
//! release wrote.** Either the field is an `Option` (Candid decodes bytes without it as
//! `None`), or the record's [`StoredRecord::VERSION`] goes up and its
//! [`StoredRecord::decode`] converts the older shape. A field or enum variant is never
//! renamed, retyped or removed in place. Every such change extends
//! `tests::stable_image`, which upgrades from images written by earlier releases.

use std::borrow::Cow;

use candid::{CandidType, Decode};
use ic_stable_structures::storable::Bound;
use ic_stable_structures::Storable;
use serde::de::DeserializeOwned;

/// What the release before versioned records wrote: bare Candid.
const CANDID_MAGIC: &[u8; 4] = b"DIDL";

/// A record kept in stable memory.
pub trait StoredRecord: CandidType + DeserializeOwned {
    /// The version this release writes (1 to 67).
    const VERSION: u8;

    /// Decodes the Candid `body` of a record written as `version` (0: bare Candid of the
    /// release before versioned records). The default reads every version up to
    /// [`Self::VERSION`] as this shape: right while the record has only gained `Option`
    /// fields.
    fn decode(version: u8, body: &[u8]) -> Result<Self, String> {
        if version > Self::VERSION {
            return Err(format!(
                "version {version} was written by a newer release (this one reads up to {})",
                Self::VERSION
            ));
        }
        Decode!(body, Self).map_err(|e| e.to_string())
    }
}

/// Splits stored bytes into their version and Candid body.
pub fn version_and_body(bytes: &[u8]) -> (u8, &[u8]) {
    if bytes.starts_with(CANDID_MAGIC) {
        (0, bytes)
    } else {
        match bytes.split_first() {
            Some((&version, body)) => (version, body),
            None => (0, bytes),
        }
    }
}

/// `[version] ++ Candid(value)`.
pub fn encode<T: StoredRecord>(value: &T) -> Vec<u8> {
    const { assert!(T::VERSION >= 1 && T::VERSION < b'D') };
    let mut out = vec![T::VERSION];
    candid::ser::IDLBuilder::new()
        .arg(value)
        .and_then(|idl| idl.serialize(&mut out))
        .expect("Candid encoding of a stored record");
    out
}

/// Decodes what [`encode`] (or the release before versioned records) wrote.
pub fn decode<T: StoredRecord>(bytes: &[u8]) -> Result<T, String> {
    let (version, body) = version_and_body(bytes);
    T::decode(version, body).map_err(|e| {
        format!(
            "stored {} (version {version}): {e}",
            std::any::type_name::<T>()
        )
    })
}

/// A record in a stable structure. Stored data was written by this canister or an earlier
/// release, so a decoding failure is a bug or memory corruption, and traps.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored<T>(pub T);

impl<T: StoredRecord> Storable for Stored<T> {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(encode(&self.0))
    }
    fn into_bytes(self) -> Vec<u8> {
        encode(&self.0)
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        Stored(decode(bytes.as_ref()).unwrap_or_else(|e| panic!("{e}")))
    }
    const BOUND: Bound = Bound::Unbounded;
}

#[cfg(test)]
mod tests {
    use candid::{Deserialize, Encode};

    use super::*;

    #[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
    struct Before {
        a: u64,
        name: String,
    }
    impl StoredRecord for Before {
        const VERSION: u8 = 1;
    }

    /// `Before` after a release added an optional field.
    #[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
    struct Added {
        a: u64,
        name: String,
        added: Option<u32>,
    }
    impl StoredRecord for Added {
        const VERSION: u8 = 1;
    }

    /// `Before` after a release replaced `a` by a wider field: version 2 converts version 1.
    #[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
    struct Widened {
        a: u128,
        name: String,
    }
    impl StoredRecord for Widened {
        const VERSION: u8 = 2;
        fn decode(version: u8, body: &[u8]) -> Result<Self, String> {
            match version {
                0 | 1 => Decode!(body, Before)
                    .map(|b| Widened {
                        a: b.a.into(),
                        name: b.name,
                    })
                    .map_err(|e| e.to_string()),
                2 => Decode!(body, Widened).map_err(|e| e.to_string()),
                v => Err(format!("unknown version {v}")),
            }
        }
    }

    fn before() -> Before {
        Before {
            a: 7,
            name: "x".into(),
        }
    }

    #[test]
    fn records_carry_their_version_and_round_trip() {
        let bytes = encode(&before());
        assert_eq!(bytes[0], 1);
        assert_eq!(&bytes[1..5], CANDID_MAGIC);
        assert_eq!(decode::<Before>(&bytes).unwrap(), before());
        let Stored(back) = Stored::<Before>::from_bytes(Stored(before()).to_bytes());
        assert_eq!(back, before());
    }

    #[test]
    fn bare_candid_of_the_previous_release_decodes_as_version_0() {
        let legacy = Encode!(&before()).unwrap();
        assert_eq!(version_and_body(&legacy), (0, &legacy[..]));
        assert_eq!(decode::<Before>(&legacy).unwrap(), before());
        let widened = decode::<Widened>(&legacy).unwrap();
        assert_eq!((widened.a, widened.name.as_str()), (7, "x"));
    }

    #[test]
    fn older_versions_decode_after_a_field_is_added_or_changed() {
        let v1 = encode(&before());
        assert_eq!(
            decode::<Added>(&v1).unwrap(),
            Added {
                a: 7,
                name: "x".into(),
                added: None
            }
        );
        assert_eq!(decode::<Widened>(&v1).unwrap().a, 7);
        let v2 = encode(&Widened {
            a: u128::MAX,
            name: "y".into(),
        });
        assert_eq!(v2[0], 2);
        assert_eq!(decode::<Widened>(&v2).unwrap().a, u128::MAX);
        // An older release refuses what a newer one wrote, saying why.
        let err = decode::<Before>(&v2).unwrap_err();
        assert!(err.contains("newer release"), "{err}");
    }
}
