//! `masked`: a secure-aggregation input (see [`crate::secagg`]), `param_count` little-endian
//! `i64` words, each `weight * fixed(x_i)` plus the contributor's masks, mod 2^64.
//!
//! The words are uniformly random to anyone without the masks' seeds, so nothing can be
//! checked of one contribution: no finiteness, no bound, no norm (docs/threat-model.md says
//! what bounds a contributor then). The words are already weighted, so accumulating
//! ignores the weight and adds them with wrapping arithmetic, which is addition in
//! `Z_{2^64}`: the masks cancel in the round's sum, and what is left is the sum of the
//! contributions, bit for bit the integers FedAvg's accumulator holds without masking.
//! A masked input cannot be decoded on its own, and a client does not encode one from a
//! delta alone: [`crate::secagg::masked_input`] builds it from the round's seeds.

use super::{Codec, DeltaEncoding, DeltaError, NormSums};

pub struct Masked;

impl Codec for Masked {
    fn block_len(&self) -> u64 {
        1
    }
    fn block_bytes(&self, len: u64) -> u64 {
        len.saturating_mul(8)
    }

    /// Writes nothing: a masked input needs the round's seeds and the contribution's
    /// weight, which only `secagg::masked_input` has. Callers check
    /// [`DeltaEncoding::is_masked`] first; the empty output fails every length check.
    fn encode(&self, _delta: &[f32], _seed: u64, _out: &mut Vec<u8>) {}

    fn decode(&self, _first: u64, _bytes: &[u8], _out: &mut [f32]) -> Result<(), DeltaError> {
        Err(DeltaError::UnsupportedEncoding {
            encoding: DeltaEncoding::Masked,
            reason: "a masked input decodes only as part of a secure-aggregation round's sum"
                .into(),
        })
    }

    fn check(
        &self,
        _first: u64,
        _params: u64,
        _bytes: &[u8],
        _bound: f64,
        _sums: &mut NormSums,
    ) -> Result<(), DeltaError> {
        // Every word is a valid element of Z_{2^64}; the length was checked by the caller.
        Ok(())
    }

    fn accumulate(&self, acc: &mut [i64], bytes: &[u8], _weight: u64, _frac_bits: u32) {
        for (a, c) in acc.iter_mut().zip(bytes.chunks_exact(8)) {
            let w = i64::from_le_bytes(c.try_into().expect("8-byte chunk"));
            *a = a.wrapping_add(w);
        }
    }

    fn commit_instructions_per_param(&self) -> u64 {
        40
    }
}
