//! Dataset commitments: the canonical bytes of one sample and the Merkle root over a
//! dataset's samples.
//!
//! `sample_bytes = "flic/sample/v1" || label (u32 LE) || features (each f32 LE)`. A
//! sample's leaf is the RFC 6962 leaf hash of its bytes, and a dataset's commitment (what
//! `register_dataset` records) is the RFC 6962 root over its samples' leaves in dataset
//! order. A membership proof carries the sample bytes and an inclusion proof to that root.

use crate::merkle::{self, Digest32};

/// Domain tag that starts the canonical bytes of a sample.
pub const SAMPLE_DOMAIN: &[u8] = b"flic/sample/v1";

/// Canonical bytes of one sample: domain tag, label (u32 LE), then features (f32 LE).
pub fn sample_bytes(label: u32, features: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SAMPLE_DOMAIN.len() + 4 + features.len() * 4);
    out.extend_from_slice(SAMPLE_DOMAIN);
    out.extend_from_slice(&label.to_le_bytes());
    for f in features {
        out.extend_from_slice(&f.to_le_bytes());
    }
    out
}

/// The Merkle leaf of a sample, from its canonical bytes: `leaf_hash(sample_bytes)`.
pub fn sample_leaf(sample_bytes: &[u8]) -> Digest32 {
    merkle::leaf_hash(sample_bytes)
}

/// Leaves of `(label, features)` samples, in order.
pub fn sample_leaves<'a>(samples: impl IntoIterator<Item = (u32, &'a [f32])>) -> Vec<Digest32> {
    samples
        .into_iter()
        .map(|(label, features)| sample_leaf(&sample_bytes(label, features)))
        .collect()
}

/// The commitment of a dataset of `(label, features)` samples: the RFC 6962 root over
/// their leaves, in order.
pub fn dataset_commitment<'a>(samples: impl IntoIterator<Item = (u32, &'a [f32])>) -> Digest32 {
    merkle::root(&sample_leaves(samples))
}

/// Domain tag of a salted commitment.
pub const SALTED_COMMITMENT_DOMAIN: &[u8] = b"flic/salted-commitment/v1";

/// A salted commitment: `sha256("flic/salted-commitment/v1" || salt || root)`. The root
/// of a public dataset is known to anyone who has the dataset, so registering it reveals
/// which dataset a contributor holds (and invites copiers to race for it); with a secret
/// 32-byte salt the registered value reveals nothing until the owner discloses the salt,
/// which a sample proof against it carries.
pub fn salted_commitment(salt: &[u8; 32], root: &Digest32) -> Digest32 {
    crate::hash::sha256_concat(&[SALTED_COMMITMENT_DOMAIN, salt, root])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::to_hex;

    /// Pinned bytes and hashes, computed from the format above by an independent script:
    /// changing any of them is a format change (a new domain tag), not a refactor.
    #[test]
    fn sample_bytes_leaf_and_commitment_are_pinned() {
        let a: &[f32] = &[0.5, -1.25, 2.0];
        let b: &[f32] = &[0.0, 1.0, -0.0];
        assert_eq!(
            to_hex(&sample_bytes(3, a)),
            "666c69632f73616d706c652f7631030000000000003f0000a0bf00000040"
        );
        assert_eq!(
            to_hex(&sample_leaf(&sample_bytes(3, a))),
            "0072c006d5359f78e94c18d306d51a94524b1ba73a1a53236f6592f6abeca600"
        );
        assert_eq!(
            to_hex(&dataset_commitment([(3, a), (0, b)])),
            "91025e1f8c75a2541cb5901b30c15c397a59202121733cf4aae8dc269866bdc3"
        );
        assert_eq!(dataset_commitment(std::iter::empty()), merkle::empty_root());
        assert_eq!(
            to_hex(&salted_commitment(&[1; 32], &[2; 32])),
            to_hex(&crate::hash::sha256(
                &[b"flic/salted-commitment/v1".as_slice(), &[1; 32], &[2; 32]].concat()
            ))
        );
    }
}
