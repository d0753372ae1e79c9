//! The data certificate a query sees.
//!
//! On the IC, `ic0.data_certificate_copy` returns a CBOR certificate whose hash tree
//! holds the canister's certified data and the time, signed by the subnet's BLS key
//! chained to the root key. This host has no threshold key, so the certificate comes
//! from a [`CertificateIssuer`]. The default, [`BlsCertificateIssuer`], issues
//! certificates in the IC's format signed with a BLS12-381 host test root key, so a
//! client verifies them with the same code it uses against a replica.
//! [`HostCertificateIssuer`] issues a cheaper unsigned blob that binds the same facts.

use std::sync::Mutex;

use candid::Principal;
use ic_certification::{fork, labeled, leaf, HashTree};
use sha2::{Digest, Sha256};

/// `"\x0Dic-state-root"`: the IC's domain separator for signed state-tree roots.
pub const IC_STATE_ROOT_DOMAIN_SEPARATOR: &[u8; 14] = b"\x0Dic-state-root";

/// DER prefix of an IC BLS12-381 public key (followed by the 96-byte G2 point).
pub const BLS_DER_PREFIX: &[u8; 37] = b"\x30\x81\x82\x30\x1d\x06\x0d\x2b\x06\x01\x04\x01\x82\xdc\x7c\x05\x03\x01\x02\x01\x06\x0c\x2b\x06\x01\x04\x01\x82\xdc\x7c\x05\x03\x02\x01\x03\x61\x00";

/// Seed of the host's default test root key. The key is public by design: it stands for
/// the IC root key in tests and simulations, and proves nothing outside them.
pub const TEST_ROOT_KEY_SEED: &[u8] = b"flic-embedded-ic/test-root-key/v1";

/// IC-format certificates signed by a BLS12-381 key held by the host (no delegation:
/// the key plays the root key, as on a local replica).
pub struct BlsCertificateIssuer {
    secret: ic_verify_bls_signature::PrivateKey,
    public_der: Vec<u8>,
    /// The last certificate issued: queries between updates see the same state.
    cache: Mutex<Option<IssuedCertificate>>,
}

/// A certificate with the canister, certified data and time it was issued for.
struct IssuedCertificate {
    canister: Principal,
    certified_data: Vec<u8>,
    time_ns: u64,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for BlsCertificateIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlsCertificateIssuer({})", hex::encode(&self.public_der))
    }
}

impl Default for BlsCertificateIssuer {
    fn default() -> Self {
        Self::test_root()
    }
}

impl BlsCertificateIssuer {
    /// A key derived from `seed` (SHA-256, reduced into the scalar field).
    pub fn from_seed(seed: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"flic-embedded-ic/bls-key/v1");
        h.update(seed);
        let mut bytes: [u8; 32] = h.finalize().into();
        // Big-endian scalar: clearing the top two bits keeps it below the group order.
        bytes[0] &= 0x3f;
        if bytes.iter().all(|&b| b == 0) {
            bytes[31] = 1;
        }
        let secret = ic_verify_bls_signature::PrivateKey::deserialize(&bytes)
            .expect("a 254-bit scalar is below the BLS12-381 group order");
        let mut public_der = BLS_DER_PREFIX.to_vec();
        public_der.extend_from_slice(&secret.public_key().serialize());
        Self {
            secret,
            public_der,
            cache: Mutex::new(None),
        }
    }

    /// The host's default key ([`TEST_ROOT_KEY_SEED`]).
    pub fn test_root() -> Self {
        Self::from_seed(TEST_ROOT_KEY_SEED)
    }

    /// The public key, DER-encoded as `fetch_root_key` returns the IC's.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.public_der.clone()
    }

    /// Signs `tree` as the IC signs a state tree and returns the CBOR certificate
    /// (self-describing tag, `tree`, `signature`, no delegation). Tests use it to build
    /// certificates for trees of their choice.
    pub fn sign_tree(&self, tree: HashTree) -> Vec<u8> {
        let mut msg = IC_STATE_ROOT_DOMAIN_SEPARATOR.to_vec();
        msg.extend_from_slice(&tree.digest());
        let signature = self.secret.sign(&msg).serialize().to_vec();
        let cert = ic_certification::Certificate {
            tree,
            signature,
            delegation: None,
        };
        let mut out = Vec::new();
        let mut ser = serde_cbor::Serializer::new(&mut out);
        ser.self_describe().expect("writing to a Vec");
        serde::Serialize::serialize(&cert, &mut ser).expect("CBOR encoding of a certificate");
        out
    }
}

/// The state tree a certificate for `canister` holds:
/// `/canister/<id>/certified_data` and `/time` (unsigned LEB128 nanoseconds).
pub fn certificate_tree(canister: Principal, certified_data: &[u8], time_ns: u64) -> HashTree {
    fork(
        labeled(
            "canister",
            labeled(
                canister.as_slice(),
                labeled("certified_data", leaf(certified_data.to_vec())),
            ),
        ),
        labeled("time", leaf(leb128(time_ns))),
    )
}

fn leb128(mut v: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
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

impl CertificateIssuer for BlsCertificateIssuer {
    fn certificate(&self, canister: Principal, certified_data: &[u8], time_ns: u64) -> Vec<u8> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.as_ref() {
            if c.canister == canister && c.certified_data == certified_data && c.time_ns == time_ns
            {
                return c.bytes.clone();
            }
        }
        let bytes = self.sign_tree(certificate_tree(canister, certified_data, time_ns));
        *cache = Some(IssuedCertificate {
            canister,
            certified_data: certified_data.to_vec(),
            time_ns,
            bytes: bytes.clone(),
        });
        bytes
    }

    fn root_key(&self) -> Vec<u8> {
        self.public_key_der()
    }
}

/// Issues the certificate returned to queries, and the root key it chains to.
pub trait CertificateIssuer: Send + Sync {
    /// The certificate for `canister` with its current `certified_data` at `time_ns`.
    fn certificate(&self, canister: Principal, certified_data: &[u8], time_ns: u64) -> Vec<u8>;
    /// The root public key (DER), returned by `ic0.root_key_copy` and by
    /// `EmbeddedIc::root_key` (the embedded counterpart of `fetch_root_key`).
    fn root_key(&self) -> Vec<u8>;
}

/// Unsigned host certificate, format version 1 (all integers little-endian):
///
/// | bytes | content |
/// |---|---|
/// | 8 | magic `FLICCERT` |
/// | 1 | version, `1` |
/// | 8 | time in nanoseconds since the Unix epoch |
/// | 1 + n | canister id: length, then the principal's bytes |
/// | 1 + m | certified data: length (at most 32), then the bytes |
/// | 32 | SHA-256 of everything before it |
///
/// The trailing hash detects corruption; it is **not** a signature: anyone can make
/// such a certificate, so it proves nothing to a verifier outside this process.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostCertificateIssuer;

/// Magic prefix of a [`HostCertificateIssuer`] certificate.
pub const HOST_CERTIFICATE_MAGIC: &[u8; 8] = b"FLICCERT";

impl CertificateIssuer for HostCertificateIssuer {
    fn certificate(&self, canister: Principal, certified_data: &[u8], time_ns: u64) -> Vec<u8> {
        let id = canister.as_slice();
        let mut out = Vec::with_capacity(8 + 1 + 8 + 2 + id.len() + certified_data.len() + 32);
        out.extend_from_slice(HOST_CERTIFICATE_MAGIC);
        out.push(1);
        out.extend_from_slice(&time_ns.to_le_bytes());
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.push(certified_data.len() as u8);
        out.extend_from_slice(certified_data);
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    fn root_key(&self) -> Vec<u8> {
        b"flic-embedded-ic unsigned root".to_vec()
    }
}

/// The facts a [`HostCertificateIssuer`] certificate states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCertificate {
    pub time_ns: u64,
    pub canister: Principal,
    pub certified_data: Vec<u8>,
}

impl HostCertificate {
    /// Parses a host certificate, checking its length fields and trailing hash.
    pub fn parse(bytes: &[u8]) -> Option<HostCertificate> {
        let (body, digest) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
        if Sha256::digest(body).as_slice() != digest {
            return None;
        }
        let rest = body
            .strip_prefix(HOST_CERTIFICATE_MAGIC)?
            .strip_prefix(&[1])?;
        let (time, rest) = rest.split_at_checked(8)?;
        let (&id_len, rest) = rest.split_first()?;
        let (id, rest) = rest.split_at_checked(id_len as usize)?;
        let (&data_len, rest) = rest.split_first()?;
        let (data, rest) = rest.split_at_checked(data_len as usize)?;
        if !rest.is_empty() {
            return None;
        }
        Some(HostCertificate {
            time_ns: u64::from_le_bytes(time.try_into().ok()?),
            canister: Principal::try_from_slice(id).ok()?,
            certified_data: data.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bls_certificates_verify_with_the_ic_verifier_and_bind_the_tree() {
        let issuer = BlsCertificateIssuer::test_root();
        let id = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 1, 1]);
        let bytes = issuer.certificate(id, b"root", 1_000);
        assert_eq!(&bytes[..3], &[0xd9, 0xd9, 0xf7], "self-describing CBOR tag");
        let cert: ic_certification::Certificate = serde_cbor::from_slice(&bytes).unwrap();
        assert!(cert.delegation.is_none());
        let key = &issuer.root_key()[BLS_DER_PREFIX.len()..];
        let mut msg = IC_STATE_ROOT_DOMAIN_SEPARATOR.to_vec();
        msg.extend_from_slice(&cert.tree.digest());
        ic_verify_bls_signature::verify_bls_signature(&cert.signature, &msg, key).unwrap();
        assert_eq!(
            cert.tree
                .lookup_path([b"canister".as_slice(), id.as_slice(), b"certified_data"]),
            ic_certification::LookupResult::Found(b"root")
        );
        assert_eq!(
            cert.tree.lookup_path([b"time".as_slice()]),
            ic_certification::LookupResult::Found(&[0xe8, 0x07][..])
        );
        // Another tree does not verify under this signature; another key does not either.
        let mut other = IC_STATE_ROOT_DOMAIN_SEPARATOR.to_vec();
        other.extend_from_slice(&certificate_tree(id, b"toor", 1_000).digest());
        assert!(
            ic_verify_bls_signature::verify_bls_signature(&cert.signature, &other, key).is_err()
        );
        let stranger = BlsCertificateIssuer::from_seed(b"someone else");
        let other_key = &stranger.root_key()[BLS_DER_PREFIX.len()..];
        assert!(
            ic_verify_bls_signature::verify_bls_signature(&cert.signature, &msg, other_key)
                .is_err()
        );
        assert_eq!(issuer.root_key().len(), 133);
    }

    #[test]
    fn host_certificate_round_trips_and_detects_corruption() {
        let id = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 1, 1]);
        let mut cert = HostCertificateIssuer.certificate(id, b"root", 42);
        let parsed = HostCertificate::parse(&cert).unwrap();
        assert_eq!(
            parsed,
            HostCertificate {
                time_ns: 42,
                canister: id,
                certified_data: b"root".to_vec()
            }
        );
        cert[12] ^= 1;
        assert_eq!(HostCertificate::parse(&cert), None);
    }
}
