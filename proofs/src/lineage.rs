//! Lineage: recompute a model version bit for bit from the version before it and the
//! round's retained contributions, with the protocol's integer FedAvg.

use flic_protocol::api::{Contribution, RoundRecord};
use flic_protocol::chunking::chunk_root;
use flic_protocol::fedavg::{Accumulator, AggregationLimits};
use flic_protocol::merkle::{self, leaf_hash};
use flic_protocol::model_version;
use flic_protocol::submission::verify_signature;

use crate::ProofError;

/// One retained contribution: its record and its encoded delta (all chunks).
#[derive(Debug, Clone)]
pub struct RetainedContribution {
    pub contribution: Contribution,
    pub payload: Vec<u8>,
}

/// The inputs of one round, as fetched from the canister (none of them trusted: the
/// record must be checked against a certificate before, and the result is checked
/// against the record's `new_version`).
pub struct RoundInputs<'a> {
    pub record: &'a RoundRecord,
    pub spec_id: [u8; 32],
    pub base_weights: &'a [f32],
    pub limits: AggregationLimits,
    pub chunk_size: u32,
    pub contributions: &'a [RetainedContribution],
}

/// Who shaped a round, with which weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shaper {
    pub contribution_index: u64,
    pub contributor: candid::Principal,
    pub dataset_id: u64,
    pub sample_count: u64,
    pub weight: u64,
}

fn inconsistent(what: &str, detail: String) -> ProofError {
    ProofError::Inconsistent {
        what: what.into(),
        detail,
    }
}

/// Recomputes `w_{r+1}` and checks it hashes to `record.new_version`. Also checks that the
/// base weights are `record.base_version`, that the contributions are exactly the round's
/// (their header hashes rebuild `contributions_root`), each signed by its contributor,
/// each payload matching its signed chunk root. Returns the new weights and the shapers.
pub fn recompute_round(inputs: &RoundInputs) -> Result<(Vec<f32>, Vec<Shaper>), ProofError> {
    let rec = inputs.record;
    let base = model_version(&inputs.spec_id, inputs.base_weights);
    if base != *rec.base_version {
        return Err(ProofError::Mismatch {
            what: format!("base version of round {}", rec.round),
            certified: rec.base_version.to_vec(),
            reply: base.to_vec(),
        });
    }
    if inputs.contributions.len() != rec.contribution_count as usize {
        return Err(inconsistent(
            "contributions",
            format!(
                "{} given, round {} has {}",
                inputs.contributions.len(),
                rec.round,
                rec.contribution_count
            ),
        ));
    }
    let mut leaves = Vec::with_capacity(inputs.contributions.len());
    let mut acc = Accumulator::new(inputs.base_weights.len(), inputs.limits, rec.frac_bits)
        .map_err(|e| ProofError::Recompute(format!("accumulator limits: {e}")))?;
    let mut shapers = Vec::new();
    for (i, rc) in inputs.contributions.iter().enumerate() {
        let c = &rc.contribution;
        let expected_index = rec.first_contribution + i as u64;
        if c.index != expected_index || c.round != rec.round {
            return Err(inconsistent(
                "contribution order",
                format!(
                    "position {i} holds contribution {} of round {}, expected {expected_index} of round {}",
                    c.index, c.round, rec.round
                ),
            ));
        }
        verify_signature(&c.public_key, &c.header.signing_bytes(), &c.signature)
            .map_err(ProofError::HeaderSignature)?;
        if c.header.header_hash() != *c.header_hash {
            return Err(ProofError::Mismatch {
                what: format!("header hash of contribution {}", c.index),
                certified: c.header.header_hash().to_vec(),
                reply: c.header_hash.to_vec(),
            });
        }
        let root = chunk_root(&rc.payload, inputs.chunk_size);
        if root != *c.header.chunk_root {
            return Err(ProofError::Mismatch {
                what: format!("chunk root of contribution {}'s delta", c.index),
                certified: c.header.chunk_root.to_vec(),
                reply: root.to_vec(),
            });
        }
        leaves.push(leaf_hash(c.header_hash.as_slice()));
        let weight = acc
            .add(c.header.encoding, &rc.payload, c.header.sample_count)
            .map_err(|e| ProofError::Recompute(format!("contribution {}: {e}", c.index)))?;
        if weight != c.weight {
            return Err(inconsistent(
                "weight",
                format!(
                    "contribution {} has weight {}, the job's cap gives {weight}",
                    c.index, c.weight
                ),
            ));
        }
        shapers.push(Shaper {
            contribution_index: c.index,
            contributor: c.contributor,
            dataset_id: c.dataset_id,
            sample_count: c.header.sample_count,
            weight,
        });
    }
    let root = merkle::root(&leaves);
    if root != *rec.contributions_root {
        return Err(ProofError::Mismatch {
            what: format!("contributions root of round {}", rec.round),
            certified: rec.contributions_root.to_vec(),
            reply: root.to_vec(),
        });
    }
    if acc.total_weight() != rec.total_weight {
        return Err(inconsistent(
            "total weight",
            format!(
                "contributions sum to {}, the record says {}",
                acc.total_weight(),
                rec.total_weight
            ),
        ));
    }
    let next = acc
        .apply(inputs.base_weights, rec.server_lr)
        .ok_or_else(|| ProofError::Recompute("the round has no contributions".into()))?;
    let version = model_version(&inputs.spec_id, &next);
    if version != *rec.new_version {
        return Err(ProofError::VersionMismatch {
            recomputed: version.to_vec(),
            certified: rec.new_version.to_vec(),
        });
    }
    Ok((next, shapers))
}
