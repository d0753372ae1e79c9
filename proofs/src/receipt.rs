//! Contribution receipts: what a contributor keeps to prove, later and to anyone, that its
//! signed contribution is part of a certified round.

use candid::Principal;
use flic_protocol::api::{Certification, ContributionProof, RoundRecord};
use flic_protocol::merkle::{self, leaf_hash};
use flic_protocol::submission::{principal_of_ed25519, verify_signature};
use flic_protocol::{Hash, SubmissionHeader};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::certified::{CertifiedView, Trust};
use crate::ProofError;

pub const RECEIPT_FORMAT: &str = "flic/receipt/v1";

/// A contribution receipt (stored as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// [`RECEIPT_FORMAT`].
    pub format: String,
    pub canister_id: Principal,
    pub round: u64,
    /// Global contribution index.
    pub contribution_index: u64,
    /// Leaf index in the round's contributions root.
    pub index_in_round: u32,
    pub contributor: Principal,
    pub header: SubmissionHeader,
    pub header_hash: Hash,
    pub public_key: ByteBuf,
    pub signature: ByteBuf,
    pub weight: u64,
    /// Audit path of `leaf_hash(header_hash)`, from the leaf upwards.
    pub inclusion_proof: Vec<Hash>,
    /// The certified record of the round.
    pub round_record: RoundRecord,
    /// Certificate and witness for `/history/<round>`.
    pub certification: Certification,
}

impl Receipt {
    pub fn from_proof(canister_id: Principal, proof: ContributionProof) -> Self {
        let c = proof.contribution;
        Receipt {
            format: RECEIPT_FORMAT.into(),
            canister_id,
            round: c.round,
            contribution_index: c.index,
            index_in_round: c.index_in_round,
            contributor: c.contributor,
            header: c.header,
            header_hash: c.header_hash,
            public_key: c.public_key,
            signature: c.signature,
            weight: c.weight,
            inclusion_proof: proof.inclusion_proof,
            round_record: proof.record,
            certification: proof.certification,
        }
    }
}

/// What a verified receipt establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReceipt {
    pub round: u64,
    pub contribution_index: u64,
    pub contributor: Principal,
    pub dataset_id: u64,
    pub new_version: [u8; 32],
    pub certified_at_ns: u64,
}

fn inconsistent(what: &str, detail: String) -> ProofError {
    ProofError::Inconsistent {
        what: what.into(),
        detail,
    }
}

/// Checks everything offline except the certificate (see [`verify_receipt`]): the header's
/// signature and hash, the contributor, and the inclusion proof against the record.
pub fn check_receipt_contents(r: &Receipt) -> Result<(), ProofError> {
    if r.format != RECEIPT_FORMAT {
        return Err(inconsistent(
            "receipt format",
            format!("`{}`, expected `{RECEIPT_FORMAT}`", r.format),
        ));
    }
    let signing_bytes = r.header.signing_bytes();
    verify_signature(&r.public_key, &signing_bytes, &r.signature)
        .map_err(ProofError::HeaderSignature)?;
    let pk: [u8; 32] = r
        .public_key
        .as_slice()
        .try_into()
        .expect("length checked by verify_signature");
    let key_principal = principal_of_ed25519(&pk);
    if key_principal != r.contributor {
        return Err(inconsistent(
            "contributor",
            format!(
                "the receipt names {}, the signing key is {key_principal}",
                r.contributor
            ),
        ));
    }
    let header_hash = r.header.header_hash();
    if header_hash != *r.header_hash {
        return Err(ProofError::Mismatch {
            what: "header hash".into(),
            certified: header_hash.to_vec(),
            reply: r.header_hash.to_vec(),
        });
    }
    if r.header.canister_id != r.canister_id {
        return Err(inconsistent(
            "canister",
            format!(
                "the header is for {}, the receipt for {}",
                r.header.canister_id, r.canister_id
            ),
        ));
    }
    let rec = &r.round_record;
    if r.header.round != r.round || rec.round != r.round {
        return Err(inconsistent(
            "round",
            format!(
                "receipt round {}, header round {}, record round {}",
                r.round, r.header.round, rec.round
            ),
        ));
    }
    if rec.base_version != r.header.base_model_version {
        return Err(ProofError::Mismatch {
            what: "base model version".into(),
            certified: rec.base_version.to_vec(),
            reply: r.header.base_model_version.to_vec(),
        });
    }
    if rec.first_contribution + r.index_in_round as u64 != r.contribution_index {
        return Err(inconsistent(
            "contribution index",
            format!(
                "index {} is not position {} of a round starting at {}",
                r.contribution_index, r.index_in_round, rec.first_contribution
            ),
        ));
    }
    let proof: Vec<[u8; 32]> = r.inclusion_proof.iter().map(|h| h.into_array()).collect();
    merkle::verify_inclusion(
        &leaf_hash(r.header_hash.as_slice()),
        r.index_in_round as u64,
        rec.contribution_count as u64,
        &proof,
        &rec.contributions_root.into_array(),
    )
    .map_err(ProofError::Inclusion)?;
    Ok(())
}

/// Verifies a receipt: [`check_receipt_contents`], then the certificate and that the
/// round record is the one certified under `/history/<round>`.
pub fn verify_receipt(r: &Receipt, trust: &Trust) -> Result<VerifiedReceipt, ProofError> {
    check_receipt_contents(r)?;
    if trust.canister != r.canister_id {
        return Err(inconsistent(
            "canister",
            format!(
                "the receipt is for {}, the verifier asked about {}",
                r.canister_id, trust.canister
            ),
        ));
    }
    let view = CertifiedView::verify(&r.certification, trust)?;
    view.check_round_record(&r.round_record)?;
    Ok(VerifiedReceipt {
        round: r.round,
        contribution_index: r.contribution_index,
        contributor: r.contributor,
        dataset_id: r.header.dataset_id,
        new_version: r.round_record.new_version.into_array(),
        certified_at_ns: view.time_ns,
    })
}
