//! Streaming FedAvg over stable memory: validation, accumulation and finalisation read and
//! write windows of [`WINDOW_PARAMS`] parameters, so heap use is bounded whatever the model
//! size. The arithmetic is `flic_protocol::fedavg`'s, so any verifier gets the same bits.

use flic_protocol::api::AdminError;
use flic_protocol::encoding::{DeltaCheck, DeltaEncoding, DeltaError, DeltaStats, Window};
use flic_protocol::fedavg::{accumulate_window, finalize_factor};
use flic_protocol::optimizers::ServerOptimizer;
use flic_protocol::rules::{
    aggregate_slice, AggregationRule, DeltaSource, RoundContribution, RuleProgress,
};
use flic_protocol::ModelVersionHasher;

use crate::storage::{
    f32s_as_le_bytes, read_bytes, read_bytes_into, read_f32s_into, write_f32s, Mem,
};

/// Parameters per window (a multiple of the int8 block length).
pub const WINDOW_PARAMS: u64 = 1 << 16;

/// Checks every initial weight is finite and returns the model version.
pub fn check_and_hash_weights(
    weights: &Mem,
    param_count: u64,
    spec_id: &[u8; 32],
) -> Result<[u8; 32], AdminError> {
    let mut hasher = ModelVersionHasher::new(spec_id);
    for w in DeltaEncoding::F32.windows(param_count, WINDOW_PARAMS) {
        let bytes = read_bytes(weights, w.byte_offset, w.byte_len);
        for (i, c) in bytes.chunks_exact(4).enumerate() {
            if !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite() {
                return Err(AdminError::NonFiniteWeight {
                    index: w.first_param + i as u64,
                });
            }
        }
        hasher.update(&bytes);
    }
    Ok(hasher.finish())
}

/// Validates a staged delta (lengths were fixed at `begin_submission`).
pub fn validate_staged(
    staging: &Mem,
    offset: u64,
    encoding: DeltaEncoding,
    param_count: u64,
    clip_norm: f32,
) -> Result<DeltaStats, DeltaError> {
    let mut check = DeltaCheck::new(encoding, param_count, clip_norm);
    let mut bytes = Vec::new();
    for w in encoding.windows(param_count, WINDOW_PARAMS) {
        read_bytes_into(
            staging,
            offset + w.byte_offset,
            w.byte_len as usize,
            &mut bytes,
        );
        check.feed(&w, &bytes)?;
    }
    check.finish()
}

/// Adds a validated staged delta, times `weight`, into the round's accumulator `acc` (on the
/// heap: see `State::acc`).
pub fn accumulate_staged(
    staging: &Mem,
    acc: &mut [i64],
    offset: u64,
    encoding: DeltaEncoding,
    weight: u64,
    frac_bits: u32,
) {
    // One buffer for the whole delta: nothing is zeroed before it is read.
    let mut bytes = Vec::new();
    for w in encoding.windows(acc.len() as u64, WINDOW_PARAMS) {
        read_bytes_into(
            staging,
            offset + w.byte_offset,
            w.byte_len as usize,
            &mut bytes,
        );
        accumulate_window(&mut acc[w.params()], encoding, &bytes, weight, frac_bits);
    }
}

/// The server step of a close: the job's optimizer, its learning rate, and where its state
/// vectors live.
pub struct ServerStep<'a> {
    pub optimizer: ServerOptimizer,
    pub server_lr: f32,
    pub m: &'a Mem,
    pub v: &'a Mem,
}

/// Moves the model by the round's update `acc / (total_weight * 2^f)` with the server
/// optimizer (`flic_protocol::optimizers`), updating its state; zeroes the accumulator, and
/// returns the new model version.
pub fn finalize(
    weights: &Mem,
    acc: &mut [i64],
    total_weight: u64,
    frac_bits: u32,
    step: &ServerStep,
    spec_id: &[u8; 32],
) -> [u8; 32] {
    let inv = finalize_factor(total_weight, frac_bits);
    let mut hasher = ModelVersionHasher::new(spec_id);
    let (mut ws, mut ms, mut vs) = (Vec::new(), Vec::new(), Vec::new());
    let vectors = step.optimizer.state_vectors();
    for w in DeltaEncoding::F32.windows(acc.len() as u64, WINDOW_PARAMS) {
        let range = w.params();
        read_f32s_into(weights, w.first_param, range.len(), &mut ws);
        ms.clear();
        vs.clear();
        if vectors >= 1 {
            read_f32s_into(step.m, w.first_param, range.len(), &mut ms);
        }
        if vectors >= 2 {
            read_f32s_into(step.v, w.first_param, range.len(), &mut vs);
        }
        step.optimizer.apply(
            &mut ws,
            &acc[range.clone()],
            inv,
            step.server_lr,
            &mut ms,
            &mut vs,
        );
        if vectors >= 1 {
            write_f32s(step.m, w.first_param, &ms);
        }
        if vectors >= 2 {
            write_f32s(step.v, w.first_param, &vs);
        }
        // Unreachable by the job limits (`MAX_SERVER_LR`, `MAX_CLIP_NORM`, finite initial
        // weights): a non-finite weight traps, rolling the close back, rather than being
        // published as a model.
        if let Some(i) = ws.iter().position(|w| !w.is_finite()) {
            panic!(
                "the update makes weight {} non-finite: the close is refused",
                w.first_param + i as u64
            );
        }
        acc[range].fill(0);
        write_f32s(weights, w.first_param, &ws);
        hasher.update(f32s_as_le_bytes(&ws));
    }
    hasher.finish()
}

/// Staged deltas read in place: `(memory, offset)` per contribution, in the order given
/// to the rule.
struct StagedSource<'a> {
    at: Vec<(&'a Mem, u64)>,
}

impl DeltaSource for StagedSource<'_> {
    fn read(&mut self, k: usize, window: &Window, buf: &mut Vec<u8>) {
        let (mem, offset) = self.at[k];
        read_bytes_into(
            mem,
            offset + window.byte_offset,
            window.byte_len as usize,
            buf,
        );
    }
}

/// One message's share of a robust close ([`flic_protocol::rules::aggregate_slice`]) over
/// the round's staged deltas: `staged` is `(contribution, the memory its delta is staged
/// in, offset)`, in any order; the integers go to `integers`. `Some(denominator)` once
/// every pass is done.
#[allow(clippy::too_many_arguments)]
pub fn rule_slice(
    rule: &AggregationRule,
    staged: &[(RoundContribution, &Mem, u64)],
    param_count: u64,
    frac_bits: u32,
    integers: &mut [i64],
    progress: &mut RuleProgress,
    window_params: u64,
    keep_going: &mut dyn FnMut() -> bool,
) -> Option<u64> {
    let contributions: Vec<RoundContribution> = staged.iter().map(|s| s.0).collect();
    let mut source = StagedSource {
        at: staged.iter().map(|s| (s.1, s.2)).collect(),
    };
    aggregate_slice(
        rule,
        &contributions,
        param_count,
        frac_bits,
        &mut source,
        &mut &mut *integers,
        progress,
        window_params,
        keep_going,
    )
}
