//! Dataset membership: one sample's inclusion in a registered dataset commitment (the
//! RFC 6962 root over the leaves of every sample, in dataset order; the format is
//! `flic_protocol::sample`).

use flic_protocol::merkle;
use flic_protocol::sample::sample_leaf;
use flic_protocol::Hash;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::ProofError;

pub const SAMPLE_PROOF_FORMAT: &str = "flic/sample-proof/v1";

/// A membership proof (stored as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleProof {
    /// [`SAMPLE_PROOF_FORMAT`].
    pub format: String,
    /// Canonical sample bytes ([`flic_protocol::sample::sample_bytes`]).
    pub sample: ByteBuf,
    pub index: u64,
    pub sample_count: u64,
    /// Audit path from the leaf upwards.
    pub proof: Vec<Hash>,
    /// The Merkle root over the dataset's samples the proof leads to.
    pub root: Hash,
    /// The salt of a salted commitment (`flic_protocol::sample::salted_commitment`):
    /// present when the registered commitment is salted, disclosed by this proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<Hash>,
}

impl SampleProof {
    /// The commitment the dataset registered: the root, or the root salted.
    pub fn commitment(&self) -> [u8; 32] {
        match &self.salt {
            Some(salt) => flic_protocol::sample::salted_commitment(
                &salt.into_array(),
                &self.root.into_array(),
            ),
            None => self.root.into_array(),
        }
    }
}

/// Checks that `sample` sits at `index` under `root`. Returns the root.
pub fn verify_sample(p: &SampleProof) -> Result<[u8; 32], ProofError> {
    if p.format != SAMPLE_PROOF_FORMAT {
        return Err(ProofError::Inconsistent {
            what: "sample proof format".into(),
            detail: format!("`{}`, expected `{SAMPLE_PROOF_FORMAT}`", p.format),
        });
    }
    let proof: Vec<[u8; 32]> = p.proof.iter().map(|h| h.into_array()).collect();
    merkle::verify_inclusion(
        &sample_leaf(&p.sample),
        p.index,
        p.sample_count,
        &proof,
        &p.root.into_array(),
    )
    .map_err(ProofError::Inclusion)?;
    Ok(p.root.into_array())
}

/// Checks a proof and that it leads to `commitment` (a dataset's registered commitment:
/// its root, or the root salted with the proof's salt).
pub fn verify_sample_against(p: &SampleProof, commitment: &[u8; 32]) -> Result<(), ProofError> {
    verify_sample(p)?;
    let committed = p.commitment();
    if &committed != commitment {
        return Err(ProofError::Mismatch {
            what: "dataset commitment".into(),
            certified: commitment.to_vec(),
            reply: committed.to_vec(),
        });
    }
    Ok(())
}

/// Checks a proof against a registered dataset: its commitment and its sample count (a
/// proof over a tree of another size is not about that dataset). Returns the root.
pub fn verify_sample_in_dataset(
    p: &SampleProof,
    commitment: &[u8; 32],
    sample_count: u64,
) -> Result<[u8; 32], ProofError> {
    verify_sample_against(p, commitment)?;
    if p.sample_count != sample_count {
        return Err(ProofError::Inconsistent {
            what: "sample count".into(),
            detail: format!(
                "the dataset registered {sample_count} samples, the proof's tree has {}",
                p.sample_count
            ),
        });
    }
    Ok(p.root.into_array())
}
