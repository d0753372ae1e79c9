//! The data certificate a query sees: a slot for a real IC certificate later.
//!
//! On the IC, `ic0.data_certificate_copy` returns a CBOR certificate whose hash tree
//! holds the canister's certified data and the time, signed by the subnet's BLS key
//! chained to the root key. This host has no threshold key, so the certificate comes
//! from a [`CertificateIssuer`]; the default, [`HostCertificateIssuer`], issues an
//! unsigned blob (format below) that binds the same facts, so canister code and
//! client plumbing can be exercised now and a real IC-format issuer plugged in later.

use candid::Principal;
use sha2::{Digest, Sha256};

/// Issues the certificate returned to queries, and the root key it chains to.
pub trait CertificateIssuer: Send + Sync {
    /// The certificate for `canister` with its current `certified_data` at `time_ns`.
    fn certificate(&self, canister: Principal, certified_data: &[u8], time_ns: u64) -> Vec<u8>;
    /// The root public key, returned by `ic0.root_key_copy`.
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
