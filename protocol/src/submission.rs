//! The signed submission header, its canonical bytes, and Ed25519 identities.
//!
//! Canonical signing bytes (all integers little-endian, fixed width):
//!
//! | field | bytes |
//! |---|---|
//! | domain tag `flic/submission/v1` | 18 |
//! | canister id length `L` | 1 (u8, at most 29) |
//! | canister id | `L` |
//! | job id | 8 (u64) |
//! | round | 8 (u64) |
//! | base model version | 32 |
//! | dataset id | 8 (u64) |
//! | sample count | 8 (u64) |
//! | encoding descriptor (`DeltaEncoding::descriptor`: tag 1 = f32, 2 = int8 blocks; 3 = low-bit blocks, then bits; 4 = top-k, then bits and k (u16)) | 1, 2 or 4 |
//! | param count | 8 (u64) |
//! | chunk count | 4 (u32) |
//! | chunk Merkle root | 32 |
//!
//! The signature is Ed25519 (RFC 8032, verified strictly) over these bytes; the header hash
//! is `sha256` of them. The caller must be the self-authenticating principal of the key,
//! `Principal::self_authenticating(ED25519_SPKI_PREFIX || public_key)`, the principal
//! `ic-agent`'s `BasicIdentity` sends for that key.

use candid::{CandidType, Principal};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::encoding::DeltaEncoding;
use crate::hash::sha256;
use crate::Hash;

/// Domain tag that starts the signing bytes of a submission header.
pub const SUBMISSION_DOMAIN: &[u8] = b"flic/submission/v1";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the raw 32-byte key follows.
pub const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// What a contributor signs for one contribution.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SubmissionHeader {
    pub canister_id: Principal,
    pub job_id: u64,
    pub round: u64,
    pub base_model_version: Hash,
    pub dataset_id: u64,
    pub sample_count: u64,
    pub encoding: DeltaEncoding,
    pub param_count: u64,
    pub chunk_count: u32,
    pub chunk_root: Hash,
}

impl SubmissionHeader {
    /// The canonical bytes that are signed (see the module documentation).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let id = self.canister_id.as_slice();
        let mut out =
            Vec::with_capacity(SUBMISSION_DOMAIN.len() + 1 + id.len() + 8 * 5 + 32 * 2 + 1 + 4);
        out.extend_from_slice(SUBMISSION_DOMAIN);
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(&self.job_id.to_le_bytes());
        out.extend_from_slice(&self.round.to_le_bytes());
        out.extend_from_slice(self.base_model_version.as_slice());
        out.extend_from_slice(&self.dataset_id.to_le_bytes());
        out.extend_from_slice(&self.sample_count.to_le_bytes());
        out.extend_from_slice(&self.encoding.descriptor());
        out.extend_from_slice(&self.param_count.to_le_bytes());
        out.extend_from_slice(&self.chunk_count.to_le_bytes());
        out.extend_from_slice(self.chunk_root.as_slice());
        out
    }

    /// `sha256(signing_bytes)`: the identity of a contribution in round records and receipts.
    pub fn header_hash(&self) -> [u8; 32] {
        sha256(&self.signing_bytes())
    }

    /// Signs the header with a contributor key.
    pub fn sign(&self, key: &SigningKey) -> [u8; 64] {
        key.sign(&self.signing_bytes()).to_bytes()
    }
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("public key is {len} bytes; an Ed25519 public key is 32 bytes")]
    PublicKeyLength { len: u64 },
    #[error("public key is not a valid Ed25519 point")]
    InvalidPublicKey,
    #[error("signature is {len} bytes; an Ed25519 signature is 64 bytes")]
    SignatureLength { len: u64 },
    #[error("signature does not verify for this header and public key")]
    BadSignature,
}

/// Parses a raw 32-byte Ed25519 public key.
pub fn parse_public_key(bytes: &[u8]) -> Result<VerifyingKey, SignatureError> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| SignatureError::PublicKeyLength {
            len: bytes.len() as u64,
        })?;
    VerifyingKey::from_bytes(&arr).map_err(|_| SignatureError::InvalidPublicKey)
}

/// Strict Ed25519 verification of `signature` over `message` (rejects small-order keys and
/// non-canonical encodings, so one message has one valid signature per key).
pub fn verify_signature(
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let key = parse_public_key(public_key)?;
    let sig: [u8; 64] = signature
        .try_into()
        .map_err(|_| SignatureError::SignatureLength {
            len: signature.len() as u64,
        })?;
    let sig = ed25519_dalek::Signature::from_bytes(&sig);
    key.verify_strict(message, &sig)
        .map_err(|_| SignatureError::BadSignature)
}

/// DER SubjectPublicKeyInfo of a raw Ed25519 public key.
pub fn ed25519_der(public_key: &[u8; 32]) -> [u8; 44] {
    let mut der = [0u8; 44];
    der[..12].copy_from_slice(&ED25519_SPKI_PREFIX);
    der[12..].copy_from_slice(public_key);
    der
}

/// The self-authenticating principal of an Ed25519 public key: the caller `ic-agent` uses
/// for that key.
pub fn principal_of_ed25519(public_key: &[u8; 32]) -> Principal {
    Principal::self_authenticating(ed25519_der(public_key))
}

/// Deterministic signing key from a 32-byte seed (tests, simulations, and PEM-less tools).
pub fn signing_key_from_seed(seed: [u8; 32]) -> SigningKey {
    SigningKey::from_bytes(&seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SubmissionHeader {
        SubmissionHeader {
            canister_id: Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 1, 1]),
            job_id: 1,
            round: 2,
            base_model_version: Hash::new([3; 32]),
            dataset_id: 4,
            sample_count: 5,
            encoding: DeltaEncoding::Int8Blocks,
            param_count: 6,
            chunk_count: 7,
            chunk_root: Hash::new([8; 32]),
        }
    }

    #[test]
    fn every_field_changes_the_signing_bytes() {
        let h = header();
        let base = h.signing_bytes();
        assert_eq!(
            base.len(),
            18 + 1 + 10 + 8 + 8 + 32 + 8 + 8 + 1 + 8 + 4 + 32
        );
        let variants: Vec<SubmissionHeader> = vec![
            SubmissionHeader {
                canister_id: Principal::from_slice(&[9]),
                ..h.clone()
            },
            SubmissionHeader {
                job_id: 9,
                ..h.clone()
            },
            SubmissionHeader {
                round: 9,
                ..h.clone()
            },
            SubmissionHeader {
                base_model_version: Hash::new([9; 32]),
                ..h.clone()
            },
            SubmissionHeader {
                dataset_id: 9,
                ..h.clone()
            },
            SubmissionHeader {
                sample_count: 9,
                ..h.clone()
            },
            SubmissionHeader {
                encoding: DeltaEncoding::F32,
                ..h.clone()
            },
            SubmissionHeader {
                param_count: 9,
                ..h.clone()
            },
            SubmissionHeader {
                chunk_count: 9,
                ..h.clone()
            },
            SubmissionHeader {
                chunk_root: Hash::new([9; 32]),
                ..h.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.signing_bytes(), base, "{v:?}");
            assert_ne!(v.header_hash(), h.header_hash());
        }
    }

    #[test]
    fn sign_and_verify_strictly() {
        let key = signing_key_from_seed([42; 32]);
        let pk = key.verifying_key().to_bytes();
        let h = header();
        let sig = h.sign(&key);
        verify_signature(&pk, &h.signing_bytes(), &sig).unwrap();
        let mut other = h.clone();
        other.round += 1;
        assert_eq!(
            verify_signature(&pk, &other.signing_bytes(), &sig),
            Err(SignatureError::BadSignature)
        );
        let mut bad = sig;
        bad[0] ^= 1;
        assert_eq!(
            verify_signature(&pk, &h.signing_bytes(), &bad),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            verify_signature(&pk[..31], &h.signing_bytes(), &sig),
            Err(SignatureError::PublicKeyLength { len: 31 })
        );
        assert_eq!(
            verify_signature(&pk, &h.signing_bytes(), &sig[..63]),
            Err(SignatureError::SignatureLength { len: 63 })
        );
        // Identity point (small order) is rejected by strict verification.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(verify_signature(&identity, &h.signing_bytes(), &sig).is_err());
        // The principal is self-authenticating (29 bytes, tag 0x02) and key-specific.
        let p = principal_of_ed25519(&pk);
        assert_eq!(p.as_slice().len(), 29);
        assert_eq!(p.as_slice()[28], 0x02);
        assert_ne!(
            p,
            principal_of_ed25519(&signing_key_from_seed([43; 32]).verifying_key().to_bytes())
        );
    }
}
