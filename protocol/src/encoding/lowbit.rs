//! `LowBitBlocks { bits }` (`int4`, `int2`): dense blocks of [`BLOCK_LEN`] parameters, each
//! its `f32` LE scale followed by one `bits`-bit two's-complement code per parameter,
//! packed little-endian (code `j` at bits `j*bits ..` of the block's code bytes; the last
//! byte's unused bits are zero). Codes lie in `[-L, L]`, `L = 2^(bits-1) - 1` (7 for
//! int4; 1 for int2, a ternary code as in TernGrad); `-2^(bits-1)` is refused. Decoding
//! is `q * scale`.
//!
//! Encoding rounds stochastically and without bias: `scale = max|x| / L`, `y = x / scale`
//! (in `f64`), `q = floor(y) + [u < y - floor(y)]` clamped to `[-L, L]`, so `E[q * scale]
//! = x`; `u` is [`stochastic_uniform`]`(seed, i)` for global parameter index `i`, so one
//! seed gives the same bytes on every machine (clients use `seeds::quantize_seed`).
//! A block whose scale would be subnormal is all zeros with scale 0.
//!
//! Validation is exact on the decoded values: `L * scale <= bound` per block and
//! `||q * scale||_2 <= bound` over the delta, with no allowance for rounding (stochastic
//! rounding can lengthen a delta, so clients encode with `encode_within`, which scales a
//! delta down until it fits). A scale-0 block must hold only zero codes.
//!
//! Fixed point: `q * F`, `F = round_half_away(scale * 2^f)` per block, as int8 (at most
//! `L / 2` units of `2^-f` from `round(q * scale * 2^f)`).

use super::{blocks, read_scale, Codec, DeltaError, NormSums};
use crate::fedavg::int8_block_factor;

/// Parameters per block.
pub const BLOCK_LEN: u64 = 256;
/// The supported widths.
pub const BITS: [u8; 2] = [2, 4];

pub struct LowBit {
    pub bits: u8,
}

/// A uniform number in `[0, 1)` from `(seed, index)`: the SplitMix64 finaliser of
/// `seed + (index + 1) * 0x9E3779B97F4A7C15` (wrapping), top 53 bits over `2^53`.
/// Counter-based, so any parameter's draw is known without the ones before it.
pub fn stochastic_uniform(seed: u64, index: u64) -> f64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

impl LowBit {
    fn levels(&self) -> i32 {
        (1 << (self.bits - 1)) - 1
    }

    /// The block's codes into `out[..len]` as `i8` bytes, so the int8 kernels (explicit
    /// SIMD in the canister) check and add them; `Err(j)` if code `j` is the forbidden
    /// one. One loop per width with constant shifts (the IC charges every instruction);
    /// forbidden codes are collected branch-free and located only when there is one.
    fn unpack(
        &self,
        packed: &[u8],
        len: usize,
        out: &mut [u8; BLOCK_LEN as usize],
    ) -> Result<(), usize> {
        let mut forbidden = 0u8;
        if self.bits == 4 {
            for (pair, &b) in out.chunks_exact_mut(2).zip(packed) {
                pair[0] = (((b << 4) as i8) >> 4) as u8;
                pair[1] = ((b as i8) >> 4) as u8;
                // A nibble of 0b1000 is -8.
                forbidden |= u8::from(b & 0x0F == 0x08) | u8::from(b & 0xF0 == 0x80);
            }
        } else {
            for (quad, &b) in out.chunks_exact_mut(4).zip(packed) {
                quad[0] = (((b << 6) as i8) >> 6) as u8;
                quad[1] = (((b << 4) as i8) >> 6) as u8;
                quad[2] = (((b << 2) as i8) >> 6) as u8;
                quad[3] = ((b as i8) >> 6) as u8;
                // A pair of 0b10 is -2: its high bit set and its low bit clear.
                forbidden |= (b & !(b << 1)) & 0xAA;
            }
        }
        if forbidden == 0 {
            return Ok(());
        }
        let min = -(1i8 << (self.bits - 1));
        match out[..len].iter().position(|&q| q as i8 == min) {
            Some(j) => Err(j),
            // Only in the last byte's padding, which the canonical check refuses.
            None => Ok(()),
        }
    }
}

impl Codec for LowBit {
    fn block_len(&self) -> u64 {
        BLOCK_LEN
    }
    fn block_bytes(&self, len: u64) -> u64 {
        4 + (len * self.bits as u64).div_ceil(8)
    }

    fn encode(&self, delta: &[f32], seed: u64, out: &mut Vec<u8>) {
        let l = self.levels();
        for (b, block) in delta.chunks(BLOCK_LEN as usize).enumerate() {
            let start = b as u64 * BLOCK_LEN;
            let scale = super::scale_for(block.iter().copied(), l as f32);
            out.extend_from_slice(&scale.to_le_bytes());
            let codes = block.iter().enumerate().map(|(j, &x)| {
                if scale == 0.0 {
                    return 0;
                }
                let y = x as f64 / scale as f64;
                let floor = y.floor();
                let up = stochastic_uniform(seed, start + j as u64) < y - floor;
                (floor as i32 + up as i32).clamp(-l, l)
            });
            super::pack_codes(codes, self.bits, out);
        }
    }

    fn decode(&self, first: u64, bytes: &[u8], out: &mut [f32]) -> Result<(), DeltaError> {
        let mut q = [0u8; BLOCK_LEN as usize];
        for (start, len, block) in blocks(self, first, out.len() as u64, bytes) {
            let scale = read_scale(block, start / BLOCK_LEN, 0.0, f64::INFINITY)?;
            self.unpack(&block[4..], len as usize, &mut q)
                .map_err(|j| DeltaError::QuantOutOfRange {
                    index: start + j as u64,
                })?;
            let o = &mut out[(start - first) as usize..][..len as usize];
            for (j, (o, &q)) in o.iter_mut().zip(&q).enumerate() {
                *o = q as i8 as f32 * scale;
                if !o.is_finite() {
                    return Err(DeltaError::NonFiniteValue {
                        index: start + j as u64,
                    });
                }
            }
        }
        Ok(())
    }

    fn check(
        &self,
        first: u64,
        params: u64,
        bytes: &[u8],
        bound: f64,
        sums: &mut NormSums,
    ) -> Result<(), DeltaError> {
        let mut q = [0u8; BLOCK_LEN as usize];
        for (start, len, block) in blocks(self, first, params, bytes) {
            let b = start / BLOCK_LEN;
            let scale = read_scale(block, b, self.levels() as f64, bound)?;
            let packed = &block[4..];
            self.unpack(packed, len as usize, &mut q)
                .map_err(|j| DeltaError::QuantOutOfRange {
                    index: start + j as u64,
                })?;
            // At most 256 * 7^2: exact in i32.
            let sum_q2 = crate::kernels::int8_check(&q[..len as usize]).sum_sq;
            if !super::padding_is_zero(packed, len as usize, self.bits)
                || (scale == 0.0 && sum_q2 != 0)
            {
                return Err(DeltaError::NonCanonicalBlock { block: b });
            }
            let s = scale as f64;
            sums.sum_sq += sum_q2 as f64 * s * s;
        }
        Ok(())
    }

    fn accumulate(&self, acc: &mut [i64], bytes: &[u8], weight: u64, frac_bits: u32) {
        let w = weight as i64;
        let mut q = [0u8; BLOCK_LEN as usize];
        for (start, len, block) in blocks(self, 0, acc.len() as u64, bytes) {
            let scale = f32::from_le_bytes([block[0], block[1], block[2], block[3]]);
            let wf = w.wrapping_mul(int8_block_factor(scale, frac_bits));
            // Validated: no forbidden code.
            let _ = self.unpack(&block[4..], len as usize, &mut q);
            let a = &mut acc[start as usize..][..len as usize];
            crate::kernels::int8_mul_add(a, &q[..len as usize], wf);
        }
    }

    fn commit_instructions_per_param(&self) -> u64 {
        // Measured 19 (unpacked to bytes, then the int8 kernels; docs/benchmarks.md,
        // section 3b); twice that.
        40
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use proptest::prelude::*;

    const INT4: DeltaEncoding = DeltaEncoding::LowBitBlocks { bits: 4 };
    const INT2: DeltaEncoding = DeltaEncoding::LowBitBlocks { bits: 2 };

    #[test]
    fn layout_and_lengths() {
        assert_eq!(INT4.encoded_len(256), 4 + 128);
        assert_eq!(INT4.encoded_len(257), 4 + 128 + 4 + 1);
        assert_eq!(INT2.encoded_len(256), 4 + 64);
        assert_eq!(INT2.encoded_len(3), 4 + 1);
        // Exact values when every element is on a level: no randomness shows.
        let x = [7.0f32, -7.0, 3.0, 0.0, -1.0];
        let bytes = encode(INT4, &x).unwrap();
        assert_eq!(&bytes[..4], &1.0f32.to_le_bytes());
        // Codes 7, -7 (0x9), 3, 0, -1 (0xF), nibbles low first.
        assert_eq!(&bytes[4..], &[0x97, 0x03, 0x0F]);
        assert_eq!(decode(INT4, &bytes, 5).unwrap(), x);
    }

    #[test]
    fn malformed_blocks_are_rejected() {
        let x = [0.5f32, -0.25, 0.125];
        let good = encode(INT4, &x).unwrap();
        assert!(validate(INT4, &good, 3, 1.0).is_ok());
        // Code -8 (0x8) is outside the symmetric range.
        let mut min = good.clone();
        min[4] = 0x80 | (min[4] & 0x0F);
        assert_eq!(
            validate(INT4, &min, 3, 1.0),
            Err(DeltaError::QuantOutOfRange { index: 1 })
        );
        assert_eq!(
            decode(INT4, &min, 3),
            Err(DeltaError::QuantOutOfRange { index: 1 })
        );
        // Bits after the last code must be zero.
        let mut pad = good.clone();
        pad[5] |= 0x10;
        assert_eq!(
            validate(INT4, &pad, 3, 1.0),
            Err(DeltaError::NonCanonicalBlock { block: 0 })
        );
        // Scale 0 with nonzero codes, a negative zero, NaN, a scale above the bound.
        for (scale, err) in [
            (0.0f32, "canonical"),
            (-0.0, "scale"),
            (f32::NAN, "scale"),
            (1.0, "scale"),
        ] {
            let mut b = good.clone();
            b[..4].copy_from_slice(&scale.to_le_bytes());
            let v = validate(INT4, &b, 3, 1.0);
            match err {
                "canonical" => assert_eq!(v, Err(DeltaError::NonCanonicalBlock { block: 0 })),
                _ => assert!(
                    matches!(v, Err(DeltaError::BadScale { block: 0, .. })),
                    "{v:?}"
                ),
            }
        }
        // The norm is checked exactly: every code at 7 with the largest scale allowed.
        let mut loud = vec![0u8; 4];
        loud[..4].copy_from_slice(&(1.0f32 / 7.0).to_le_bytes());
        loud.extend([0x77u8; 128]);
        assert!(matches!(
            validate(INT4, &loud, 256, 1.0),
            Err(DeltaError::NormAboveClip { .. })
        ));
    }

    #[test]
    fn stochastic_rounding_is_seeded_and_unbiased() {
        let x: Vec<f32> = (0..4096)
            .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * 0.01)
            .collect();
        for enc in [INT4, INT2] {
            assert_eq!(
                encode_seeded(enc, &x, 7).unwrap(),
                encode_seeded(enc, &x, 7).unwrap()
            );
            assert_ne!(
                encode_seeded(enc, &x, 7).unwrap(),
                encode_seeded(enc, &x, 8).unwrap()
            );
            // The mean over seeds approaches x: the error of the mean shrinks as 1/sqrt(n).
            let seeds = 400;
            let mut mean = vec![0f64; x.len()];
            for s in 0..seeds {
                let y = decode(enc, &encode_seeded(enc, &x, s).unwrap(), x.len() as u64).unwrap();
                mean.iter_mut()
                    .zip(&y)
                    .for_each(|(m, &v)| *m += v as f64 / seeds as f64);
            }
            let scale = 0.01
                / ((1
                    << (match enc {
                        DeltaEncoding::LowBitBlocks { bits } => bits,
                        _ => 0,
                    } - 1))
                    - 1) as f64;
            let bias =
                mean.iter().zip(&x).map(|(m, &v)| m - v as f64).sum::<f64>() / x.len() as f64;
            let worst = mean
                .iter()
                .zip(&x)
                .map(|(m, &v)| (m - v as f64).abs())
                .fold(0f64, f64::max);
            // Per element the std of the mean is at most scale / 2 / sqrt(400) = scale / 40.
            assert!(worst < scale * 0.25, "{enc}: worst {worst} scale {scale}");
            assert!(bias.abs() < scale * 0.01, "{enc}: bias {bias}");
        }
    }

    proptest! {
        /// Every element lands on one of the two levels around it: error below one scale.
        #[test]
        fn error_below_one_level(x in super::super::tests::deltas(800), seed in any::<u64>(), four in any::<bool>()) {
            let enc = if four { INT4 } else { INT2 };
            let bytes = encode_seeded(enc, &x, seed).unwrap();
            let y = decode(enc, &bytes, x.len() as u64).unwrap();
            let codec = enc.codec();
            for (b, (xb, yb)) in x.chunks(256).zip(y.chunks(256)).enumerate() {
                let at = b * codec.block_bytes(256) as usize;
                let scale = f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as f64;
                let allowed = if scale == 0.0 { 7.0 * f32::MIN_POSITIVE as f64 } else { scale * (1.0 + 1e-6) };
                for (a, b) in xb.iter().zip(yb) {
                    prop_assert!((*a as f64 - *b as f64).abs() <= allowed, "x={} y={} scale={}", a, b, scale);
                }
            }
        }

        /// What `encode_within` makes always passes, and decodes to what it reports.
        #[test]
        fn encode_within_passes(mut x in super::super::tests::deltas(800), clip in 1e-3f32..100f32, seed in any::<u64>(), four in any::<bool>()) {
            let enc = if four { INT4 } else { INT2 };
            clip_l2(&mut x, clip);
            let e = encode_within(enc, &x, clip, seed).unwrap();
            prop_assert!(validate(enc, &e.bytes, x.len() as u64, clip).is_ok());
            prop_assert_eq!(decode(enc, &e.bytes, x.len() as u64).unwrap(), e.decoded);
            prop_assert!(e.shrink <= 1.0 && e.shrink > 0.0);
        }
    }
}
