//! The layout of the canister's certified state tree (the IC's `HashTree` format).
//!
//! The canister sets its certified data to the root hash of this tree; every certified
//! reply carries a witness (a pruned copy of the tree) and the IC's certificate for the
//! root. Labels, in the sorted order the tree keeps them:
//!
//! | path | leaf |
//! |---|---|
//! | `/history/<round u64 BE>` | `round_record_hash(record)` of each closed round |
//! | `/history_root` | RFC 6962 root over `RoundRecord::history_leaf()` of all closed rounds |
//! | `/job` | job id, u64 LE |
//! | `/job_config` | `job_config_hash(config)` (32 bytes, [`crate::job_config`]), empty before a job is configured |
//! | `/model_version` | current model version (32 bytes), empty before a model exists |
//! | `/round` | open round, u64 LE |
//!
//! Round keys are big-endian so that label order is numeric order (a range of rounds is
//! one contiguous witness, and absence is provable).

use crate::api::RoundRecord;
use crate::hash::sha256;

pub const LABEL_HISTORY: &[u8] = b"history";
pub const LABEL_HISTORY_ROOT: &[u8] = b"history_root";
pub const LABEL_JOB: &[u8] = b"job";
pub const LABEL_JOB_CONFIG: &[u8] = b"job_config";
pub const LABEL_MODEL_VERSION: &[u8] = b"model_version";
pub const LABEL_ROUND: &[u8] = b"round";

/// Key of round `round` under `/history`.
pub fn round_key(round: u64) -> [u8; 8] {
    round.to_be_bytes()
}

/// Leaf encoding of the u64 scalars (`/job`, `/round`).
pub fn u64_leaf(value: u64) -> [u8; 8] {
    value.to_le_bytes()
}

/// Leaf under `/history/<round>`: `sha256(RoundRecord::canonical_bytes())`.
pub fn round_record_hash(record: &RoundRecord) -> [u8; 32] {
    sha256(&record.canonical_bytes())
}

/// Domain separator the IC prefixes to a state tree's root hash before signing it
/// (`0x0D` is the length of `ic-state-root`).
pub const IC_STATE_ROOT_DOMAIN_SEPARATOR: &[u8; 14] = b"\x0Dic-state-root";

/// DER prefix of an IC BLS12-381 public key (the root key as `fetch_root_key` returns it
/// and as `ic0.root_key_copy` gives it): SubjectPublicKeyInfo with the IC's BLS OIDs,
/// followed by the 96-byte compressed G2 point.
pub const BLS_DER_PREFIX: &[u8; 37] = b"\x30\x81\x82\x30\x1d\x06\x0d\x2b\x06\x01\x04\x01\x82\xdc\x7c\x05\x03\x01\x02\x01\x06\x0c\x2b\x06\x01\x04\x01\x82\xdc\x7c\x05\x03\x02\x01\x03\x61\x00";

/// The IC mainnet root key (DER), as built into `ic-agent`.
pub const IC_MAINNET_ROOT_KEY_DER: &[u8; 133] = b"\x30\x81\x82\x30\x1d\x06\x0d\x2b\x06\x01\x04\x01\x82\xdc\x7c\x05\x03\x01\x02\x01\x06\x0c\x2b\x06\x01\x04\x01\x82\xdc\x7c\x05\x03\x02\x01\x03\x61\x00\x81\x4c\x0e\x6e\xc7\x1f\xab\x58\x3b\x08\xbd\x81\x37\x3c\x25\x5c\x3c\x37\x1b\x2e\x84\x86\x3c\x98\xa4\xf1\xe0\x8b\x74\x23\x5d\x14\xfb\x5d\x9c\x0c\xd5\x46\xd9\x68\x5f\x91\x3a\x0c\x0b\x2c\xc5\x34\x15\x83\xbf\x4b\x43\x92\xe4\x67\xdb\x96\xd6\x5b\x9b\xb4\xcb\x71\x71\x12\xf8\x47\x2e\x0d\x5a\x4d\x14\x50\x5f\xfd\x74\x84\xb0\x12\x91\x09\x1c\x5f\x87\xb9\x88\x83\x46\x3f\x98\x09\x1a\x0b\xaa\xae";

/// Wraps a raw 96-byte BLS public key in the IC's DER encoding.
pub fn bls_key_to_der(raw: &[u8; 96]) -> Vec<u8> {
    let mut out = Vec::with_capacity(133);
    out.extend_from_slice(BLS_DER_PREFIX);
    out.extend_from_slice(raw);
    out
}

/// The raw 96-byte key inside an IC BLS DER public key, or `None` for any other bytes.
pub fn bls_key_from_der(der: &[u8]) -> Option<[u8; 96]> {
    der.strip_prefix(BLS_DER_PREFIX.as_slice())?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_round_trip_and_mainnet_key_has_the_prefix() {
        let raw = bls_key_from_der(IC_MAINNET_ROOT_KEY_DER).expect("mainnet key is BLS DER");
        assert_eq!(bls_key_to_der(&raw), IC_MAINNET_ROOT_KEY_DER.to_vec());
        assert_eq!(bls_key_from_der(&IC_MAINNET_ROOT_KEY_DER[1..]), None);
        assert_eq!(bls_key_from_der(&IC_MAINNET_ROOT_KEY_DER[..132]), None);
        assert!(round_key(1) < round_key(256));
    }
}
