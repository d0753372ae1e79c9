use flic_protocol::merkle::MerkleError;
use flic_protocol::submission::SignatureError;

fn hx(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        "(empty)".into()
    } else {
        flic_protocol::hash::to_hex(bytes)
    }
}

/// Why a proof did not verify. Each variant names the thing that did not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the reply carries no certificate (was the query run as an update?)")]
    NoCertificate,
    #[error("the certificate is not valid CBOR: {0}")]
    CertificateDecode(String),
    #[error("the witness tree is not valid CBOR: {0}")]
    TreeDecode(String),
    #[error("the root key is not a DER-encoded IC BLS12-381 key ({len} bytes)")]
    RootKey { len: usize },
    #[error("the {what} public key is not a valid BLS12-381 G2 point")]
    InvalidBlsKey { what: &'static str },
    #[error("the certificate's BLS signature does not verify against the {key}")]
    CertificateSignature { key: &'static str },
    #[error("the certificate's delegation itself has a delegation (at most one is allowed)")]
    NestedDelegation,
    #[error("the delegation's subnet is not authorised for canister {canister}")]
    CanisterNotInDelegation { canister: String },
    #[error("the certificate has no value at {path}")]
    MissingPath { path: String },
    #[error("the certificate's value at {path} is malformed: {reason}")]
    MalformedValue { path: String, reason: String },
    #[error(
        "the certificate is stale: issued at {time_ns} ns, {age_s} s before now, the limit is {max_age_s} s"
    )]
    StaleCertificate {
        time_ns: u64,
        age_s: u64,
        max_age_s: u64,
    },
    #[error(
        "the witness tree hashes to {}, the certificate certifies {} for canister {canister}",
        hx(tree),
        hx(certified)
    )]
    TreeMismatch {
        canister: String,
        tree: Vec<u8>,
        certified: Vec<u8>,
    },
    #[error(
        "the certified {what} is {}, the reply says {}",
        hx(certified),
        hx(reply)
    )]
    Mismatch {
        what: String,
        certified: Vec<u8>,
        reply: Vec<u8>,
    },
    #[error("{what} does not match: {detail}")]
    Inconsistent { what: String, detail: String },
    #[error("the contribution's header signature does not verify: {0}")]
    HeaderSignature(SignatureError),
    #[error("inclusion proof: {0}")]
    Inclusion(MerkleError),
    #[error(
        "recomputed model version {}, the certified round produced {}",
        hx(recomputed),
        hx(certified)
    )]
    VersionMismatch {
        recomputed: Vec<u8>,
        certified: Vec<u8>,
    },
    #[error("{0}")]
    Recompute(String),
    /// A [`LineageSource`](crate::lineage::LineageSource) could not read something.
    #[error("cannot read {what}: {reason}")]
    Fetch { what: String, reason: String },
}
