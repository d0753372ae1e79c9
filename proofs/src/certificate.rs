//! IC certificates: the BLS12-381 signature over the state tree's root hash, an optional
//! subnet delegation, the time, and a canister's certified data.
//!
//! This follows the IC interface specification ("Certification") and matches what
//! `ic-agent` checks: signature over `"\x0Dic-state-root" || root_hash` with the root key
//! (or, with a delegation, with the subnet key that a root-signed delegation certificate
//! states for a subnet whose canister ranges contain the canister).

use candid::Principal;
use flic_protocol::certified::{bls_key_from_der, IC_STATE_ROOT_DOMAIN_SEPARATOR};
use ic_certification::{Certificate, HashTree, LookupResult};

use crate::ProofError;

/// How old a certificate may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Reject certificates older than `max_age_ns` before `now_ns` (replies to queries:
    /// the state must be current). Certificates from the future are accepted, as `ic-agent`
    /// does (clock skew).
    Within { now_ns: u64, max_age_ns: u64 },
    /// Accept any time (historical evidence, such as a stored receipt: the history it
    /// certifies is append-only, so an old certificate stays true).
    AnyTime,
}

/// Five minutes, `ic-agent`'s default ingress expiry.
pub const DEFAULT_MAX_AGE_NS: u64 = 5 * 60 * 1_000_000_000;

/// What a valid certificate says about one canister.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCertificate {
    pub time_ns: u64,
    pub certified_data: Vec<u8>,
}

/// Decodes and checks an IC certificate for `canister` against the DER root key.
pub fn verify_certificate(
    certificate: &[u8],
    root_key_der: &[u8],
    canister: Principal,
    freshness: Freshness,
) -> Result<VerifiedCertificate, ProofError> {
    if certificate.is_empty() {
        return Err(ProofError::NoCertificate);
    }
    let cert: Certificate = serde_cbor::from_slice(certificate)
        .map_err(|e| ProofError::CertificateDecode(e.to_string()))?;
    let root = bls_key_from_der(root_key_der).ok_or(ProofError::RootKey {
        len: root_key_der.len(),
    })?;
    let signing_key = match &cert.delegation {
        None => root,
        Some(delegation) => delegated_key(delegation, &root, canister)?,
    };
    check_signature(&cert, &signing_key, key_name(cert.delegation.is_some()))?;
    let time_ns = time_of(&cert.tree)?;
    if let Freshness::Within { now_ns, max_age_ns } = freshness {
        let age = now_ns.saturating_sub(time_ns);
        if age > max_age_ns {
            return Err(ProofError::StaleCertificate {
                time_ns,
                age_s: age / 1_000_000_000,
                max_age_s: max_age_ns / 1_000_000_000,
            });
        }
    }
    let path = [
        b"canister".as_slice(),
        canister.as_slice(),
        b"certified_data".as_slice(),
    ];
    let certified_data = lookup(&cert.tree, &path, || {
        format!("/canister/{canister}/certified_data")
    })?
    .to_vec();
    Ok(VerifiedCertificate {
        time_ns,
        certified_data,
    })
}

fn key_name(delegated: bool) -> &'static str {
    if delegated {
        "subnet key of the delegation"
    } else {
        "root key"
    }
}

fn check_signature(
    cert: &Certificate,
    key: &[u8; 96],
    name: &'static str,
) -> Result<(), ProofError> {
    let mut msg = Vec::with_capacity(IC_STATE_ROOT_DOMAIN_SEPARATOR.len() + 32);
    msg.extend_from_slice(IC_STATE_ROOT_DOMAIN_SEPARATOR);
    msg.extend_from_slice(&cert.tree.digest());
    let pk = ic_verify_bls_signature::PublicKey::deserialize(key)
        .map_err(|_| ProofError::InvalidBlsKey { what: name })?;
    let sig = ic_verify_bls_signature::Signature::deserialize(&cert.signature)
        .map_err(|_| ProofError::CertificateSignature { key: name })?;
    pk.verify(&msg, &sig)
        .map_err(|_| ProofError::CertificateSignature { key: name })
}

/// The subnet key a delegation vouches for, after checking the delegation certificate
/// against the root key and that the subnet's canister ranges contain `canister`.
fn delegated_key(
    delegation: &ic_certification::Delegation,
    root: &[u8; 96],
    canister: Principal,
) -> Result<[u8; 96], ProofError> {
    let inner: Certificate = serde_cbor::from_slice(&delegation.certificate)
        .map_err(|e| ProofError::CertificateDecode(format!("delegation certificate: {e}")))?;
    if inner.delegation.is_some() {
        return Err(ProofError::NestedDelegation);
    }
    check_signature(&inner, root, "root key")?;
    let subnet = delegation.subnet_id.as_slice();
    let subnet_text = Principal::try_from_slice(subnet)
        .map(|p| p.to_text())
        .unwrap_or_else(|_| flic_protocol::hash::to_hex(subnet));
    let ranges_bytes =
        match inner
            .tree
            .lookup_path([b"subnet".as_slice(), subnet, b"canister_ranges".as_slice()])
        {
            LookupResult::Found(v) => v.to_vec(),
            _ => sharded_ranges(&inner.tree, subnet, canister)?,
        };
    let ranges: Vec<(Principal, Principal)> =
        serde_cbor::from_slice(&ranges_bytes).map_err(|e| ProofError::MalformedValue {
            path: format!("/subnet/{subnet_text}/canister_ranges"),
            reason: e.to_string(),
        })?;
    if !ranges.iter().any(|(lo, hi)| {
        lo.as_slice() <= canister.as_slice() && canister.as_slice() <= hi.as_slice()
    }) {
        return Err(ProofError::CanisterNotInDelegation {
            canister: canister.to_text(),
        });
    }
    let der = lookup(
        &inner.tree,
        &[b"subnet".as_slice(), subnet, b"public_key".as_slice()],
        || format!("/subnet/{subnet_text}/public_key"),
    )?;
    bls_key_from_der(der).ok_or(ProofError::RootKey { len: der.len() })
}

/// `/canister_ranges/<subnet>/<shard>`: the shard whose first canister is the largest one
/// at or below `canister` (newer replicas shard the ranges this way).
fn sharded_ranges(
    tree: &HashTree,
    subnet: &[u8],
    canister: Principal,
) -> Result<Vec<u8>, ProofError> {
    let missing = || ProofError::CanisterNotInDelegation {
        canister: canister.to_text(),
    };
    let shards = match tree.lookup_subtree([b"canister_ranges".as_slice(), subnet]) {
        ic_certification::SubtreeLookupResult::Found(t) => t,
        _ => return Err(missing()),
    };
    let mut labels: Vec<Vec<u8>> = shards
        .list_paths()
        .into_iter()
        .filter_map(|mut p| p.pop().map(|l| l.as_bytes().to_vec()))
        .collect();
    labels.sort();
    let shard = labels
        .iter()
        .rev()
        .find(|l| l.as_slice() <= canister.as_slice())
        .ok_or_else(missing)?;
    match shards.lookup_path([shard.as_slice()]) {
        LookupResult::Found(v) => Ok(v.to_vec()),
        _ => Err(missing()),
    }
}

fn time_of(tree: &HashTree) -> Result<u64, ProofError> {
    let bytes = lookup(tree, &[b"time".as_slice()], || "/time".into())?;
    read_leb128(bytes).ok_or_else(|| ProofError::MalformedValue {
        path: "/time".into(),
        reason: "not an unsigned LEB128 u64".into(),
    })
}

/// The value at `path`, or `MissingPath` (absent, pruned, or not a leaf).
pub(crate) fn lookup<'t>(
    tree: &'t HashTree,
    path: &[&[u8]],
    name: impl FnOnce() -> String,
) -> Result<&'t [u8], ProofError> {
    match tree.lookup_path(path.iter()) {
        LookupResult::Found(v) => Ok(v),
        _ => Err(ProofError::MissingPath { path: name() }),
    }
}

/// Unsigned LEB128, at most 10 bytes, nothing after it.
pub fn read_leb128(bytes: &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if i >= 10 {
            return None;
        }
        let part = (b & 0x7f) as u64;
        if i == 9 && part > 1 {
            return None;
        }
        value |= part << (7 * i);
        if b & 0x80 == 0 {
            return (i + 1 == bytes.len()).then_some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_reads_u64_and_rejects_garbage() {
        assert_eq!(read_leb128(&[0]), Some(0));
        assert_eq!(read_leb128(&[0xe5, 0x8e, 0x26]), Some(624_485));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(read_leb128(&max), Some(u64::MAX));
        assert_eq!(read_leb128(&[]), None);
        assert_eq!(read_leb128(&[0x80]), None);
        assert_eq!(read_leb128(&[0x01, 0x00]), None);
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(read_leb128(&over), None);
    }
}
