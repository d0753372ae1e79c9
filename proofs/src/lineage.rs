//! Lineage: recompute a model version bit for bit from the version before it and the
//! round's retained contributions, with the protocol's integer FedAvg
//! ([`recompute_round`]), and a whole model version from the initial model through every
//! certified round ([`replay_lineage`], reading through a [`LineageSource`]).

use flic_protocol::api::{Contribution, JobConfig, RoundRecord};
use flic_protocol::chunking::{chunk_count, chunk_root};
use flic_protocol::fedavg::{finalize_factor, Accumulator, AggregationLimits};
use flic_protocol::merkle::{self, leaf_hash};
use flic_protocol::model::weights_from_le_bytes;
use flic_protocol::model_version;
use flic_protocol::optimizers::ServerOptimizer;
use flic_protocol::rules::{aggregate, AggregationRule, RoundContribution};
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
    /// The job's aggregation rule ([`flic_protocol::rules`]).
    pub rule: AggregationRule,
    /// The job's server optimizer ([`flic_protocol::optimizers`]).
    pub optimizer: ServerOptimizer,
}

/// A server optimizer's state between rounds (zero before the first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptimizerState {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

impl OptimizerState {
    pub fn zero(optimizer: &ServerOptimizer, param_count: usize) -> Self {
        let n = |k: usize| {
            if optimizer.state_vectors() > k {
                param_count
            } else {
                0
            }
        };
        Self {
            m: vec![0.0; n(0)],
            v: vec![0.0; n(1)],
        }
    }
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
///
/// The server optimizer starts from zero state: exact for SGD, and for any optimizer in the
/// job's first round; later rounds of a stateful optimizer need
/// [`recompute_round_with_state`] (which [`replay_lineage`] uses).
pub fn recompute_round(inputs: &RoundInputs) -> Result<(Vec<f32>, Vec<Shaper>), ProofError> {
    let mut state = OptimizerState::zero(&inputs.optimizer, inputs.base_weights.len());
    recompute_round_with_state(inputs, &mut state)
}

/// [`recompute_round`] with the server optimizer's state before the round, updated to the
/// state after it.
pub fn recompute_round_with_state(
    inputs: &RoundInputs,
    state: &mut OptimizerState,
) -> Result<(Vec<f32>, Vec<Shaper>), ProofError> {
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
    if acc.total_weight() == 0 {
        return Err(ProofError::Recompute(
            "the round has no contributions".into(),
        ));
    }
    let (a, d) = if inputs.rule.needs_all_deltas() {
        // Every payload was validated by the accumulator above; the rule reads them again.
        rule_integers(inputs, rec.frac_bits)
    } else {
        (acc.values().to_vec(), acc.total_weight())
    };
    let mut next = inputs.base_weights.to_vec();
    inputs.optimizer.apply(
        &mut next,
        &a,
        finalize_factor(d, rec.frac_bits),
        rec.server_lr,
        &mut state.m,
        &mut state.v,
    );
    let version = model_version(&inputs.spec_id, &next);
    if version != *rec.new_version {
        return Err(ProofError::VersionMismatch {
            recomputed: version.to_vec(),
            certified: rec.new_version.to_vec(),
        });
    }
    Ok((next, shapers))
}

/// The integers and denominator of a rule that needs every delta: the protocol's driver
/// over the payloads.
fn rule_integers(inputs: &RoundInputs, frac_bits: u32) -> (Vec<i64>, u64) {
    let contributions: Vec<RoundContribution> = inputs
        .contributions
        .iter()
        .map(|rc| RoundContribution {
            encoding: rc.contribution.header.encoding,
            weight: rc.contribution.weight,
            key: rc.contribution.header_hash.into_array(),
        })
        .collect();
    // Borrowed, not copied: the round's deltas can be large.
    let payloads: Vec<&[u8]> = inputs
        .contributions
        .iter()
        .map(|rc| rc.payload.as_slice())
        .collect();
    let n = inputs.base_weights.len();
    let mut a = vec![0i64; n];
    let mut source: &[&[u8]] = &payloads;
    let d = aggregate(
        &inputs.rule,
        &contributions,
        n as u64,
        frac_bits,
        &mut source,
        &mut |first, values| {
            a[first as usize..first as usize + values.len()].copy_from_slice(values)
        },
    );
    (a, d)
}

/// Where [`replay_lineage`] reads the public data it recomputes from: a canister through
/// any transport, a saved embedded IC, an archive. Nothing it returns is trusted except
/// the round records, which the source must have checked against the certified history.
pub trait LineageSource {
    /// Round records `0..rounds`, in order, each checked against a certificate.
    fn certified_history(&mut self, rounds: u64) -> Result<Vec<RoundRecord>, ProofError>;
    /// Chunk `index` of the retained initial model (`f32` LE in the job's chunk size).
    fn initial_model_chunk(&mut self, index: u32) -> Result<Vec<u8>, ProofError>;
    /// The retained contribution with this index.
    fn contribution(&mut self, index: u64) -> Result<Contribution, ProofError>;
    /// Chunk `chunk` of contribution `index`'s encoded delta.
    fn contribution_chunk(&mut self, index: u64, chunk: u32) -> Result<Vec<u8>, ProofError>;
}

/// A model version recomputed from the initial model.
#[derive(Debug, Clone)]
pub struct ReplayedLineage {
    /// The recomputed weights (they hash to the version asked for).
    pub weights: Vec<f32>,
    /// The certified rounds replayed (0 for the initial model).
    pub rounds: u64,
    /// Every contribution that shaped the version, with its round.
    pub shapers: Vec<(u64, Shaper)>,
    /// The last replayed round's record.
    pub last_round: Option<RoundRecord>,
}

/// Recomputes `version`, the model after `rounds` certified rounds of `job` (a job that
/// retains its contributions), bit for bit: the initial model must hash to round 0's
/// certified base version, every round is recomputed with [`recompute_round`], and the
/// last must produce `version`.
pub fn replay_lineage(
    source: &mut dyn LineageSource,
    job: &JobConfig,
    version: [u8; 32],
    rounds: u64,
) -> Result<ReplayedLineage, ProofError> {
    let spec_id = job.model_spec.spec_id();
    let history = source.certified_history(rounds)?;
    if history.len() as u64 != rounds {
        return Err(inconsistent(
            "certified history",
            format!("{} rounds read, {rounds} expected", history.len()),
        ));
    }
    let initial_version = history
        .first()
        .map(|r| r.base_version.into_array())
        .unwrap_or(version);
    if let Some(last) = history.last() {
        if *last.new_version != version {
            return Err(ProofError::Mismatch {
                what: format!("model version produced by round {}", last.round),
                certified: last.new_version.to_vec(),
                reply: version.to_vec(),
            });
        }
    }
    // The initial model, checked against round 0's certified base version.
    let byte_len = job.model_spec.param_count() * 4;
    let mut bytes = Vec::with_capacity(byte_len as usize);
    for i in 0..chunk_count(byte_len, job.chunk_size()) as u32 {
        bytes.extend_from_slice(&source.initial_model_chunk(i)?);
    }
    let mut weights = weights_from_le_bytes(&bytes).ok_or_else(|| {
        inconsistent(
            "initial model",
            format!("{} bytes are not whole f32 values", bytes.len()),
        )
    })?;
    let initial = model_version(&spec_id, &weights);
    if initial != initial_version {
        return Err(ProofError::Mismatch {
            what: "initial model version".into(),
            certified: initial_version.to_vec(),
            reply: initial.to_vec(),
        });
    }
    let mut shapers = Vec::new();
    let optimizer = job.server_optimizer();
    let mut state = OptimizerState::zero(&optimizer, weights.len());
    for record in &history {
        let mut contributions = Vec::with_capacity(record.contribution_count as usize);
        for index in
            record.first_contribution..record.first_contribution + record.contribution_count as u64
        {
            let c = source.contribution(index)?;
            let len = c.header.encoding.encoded_len(c.header.param_count);
            let mut payload = Vec::with_capacity(len.min(byte_len.saturating_mul(2)) as usize);
            for chunk in 0..c.header.chunk_count {
                payload.extend_from_slice(&source.contribution_chunk(index, chunk)?);
            }
            contributions.push(RetainedContribution {
                contribution: c,
                payload,
            });
        }
        let (next, round_shapers) = recompute_round_with_state(
            &RoundInputs {
                record,
                spec_id,
                base_weights: &weights,
                limits: job.limits(),
                chunk_size: job.chunk_size(),
                contributions: &contributions,
                rule: job.aggregation(),
                optimizer,
            },
            &mut state,
        )?;
        weights = next;
        shapers.extend(round_shapers.into_iter().map(|s| (record.round, s)));
    }
    Ok(ReplayedLineage {
        weights,
        rounds,
        shapers,
        last_round: history.last().cloned(),
    })
}
