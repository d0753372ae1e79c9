//! `f32`: `param_count` little-endian `f32`, 4 bytes each, lossless.
//!
//! Fixed point: `round_half_away(d as f64 * 2^f)` (the product is exact in `f64`: an
//! `f32` times a power of two).

use super::{Codec, DeltaError, NormSums};
use crate::fedavg::{pow2, round_half_away};

pub struct DenseF32;

#[inline]
fn value(c: &[u8]) -> f32 {
    f32::from_le_bytes([c[0], c[1], c[2], c[3]])
}

impl Codec for DenseF32 {
    fn block_len(&self) -> u64 {
        1
    }
    fn block_bytes(&self, len: u64) -> u64 {
        len.saturating_mul(4)
    }

    fn encode(&self, delta: &[f32], _seed: u64, out: &mut Vec<u8>) {
        delta
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    }

    fn decode(&self, first: u64, bytes: &[u8], out: &mut [f32]) -> Result<(), DeltaError> {
        for (i, (c, o)) in bytes.chunks_exact(4).zip(out).enumerate() {
            let x = value(c);
            if !x.is_finite() {
                return Err(DeltaError::NonFiniteValue {
                    index: first + i as u64,
                });
            }
            *o = x;
        }
        Ok(())
    }

    fn check(
        &self,
        first: u64,
        _params: u64,
        bytes: &[u8],
        bound: f64,
        sums: &mut NormSums,
    ) -> Result<(), DeltaError> {
        for (i, c) in bytes.chunks_exact(4).enumerate() {
            let x = value(c);
            let index = first + i as u64;
            if !x.is_finite() {
                return Err(DeltaError::NonFiniteValue { index });
            }
            let v = x as f64;
            if v.abs() > bound {
                return Err(DeltaError::ElementAboveClip {
                    index,
                    value: x,
                    bound,
                });
            }
            sums.sum_sq += v * v;
        }
        Ok(())
    }

    fn accumulate(&self, acc: &mut [i64], bytes: &[u8], weight: u64, frac_bits: u32) {
        let w = weight as i64;
        let scale = pow2(frac_bits);
        for (a, c) in acc.iter_mut().zip(bytes.chunks_exact(4)) {
            let q = round_half_away(value(c) as f64 * scale) as i64;
            *a = a.wrapping_add(w.wrapping_mul(q));
        }
    }

    fn commit_instructions_per_param(&self) -> u64 {
        130
    }
}
