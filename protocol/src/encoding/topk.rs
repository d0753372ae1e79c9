//! `TopK { k, bits }` (`topk:FRAC,BITS`): sparse blocks. In every block of
//! [`TOPK_BLOCK_LEN`] parameters (the last may be shorter, `n` long) the client sends the
//! `k_b = min(k, n)` largest in magnitude; the rest it keeps for its next contribution
//! (error feedback: `DeltaEncoding::wants_error_feedback`). A block is
//!
//! | field | bytes |
//! |---|---|
//! | scale, `f32` LE | 4 |
//! | offsets in the block, `u8`, strictly increasing, each below `n` | `k_b` |
//! | codes, `bits`-bit two's complement packed little-endian, in `[-L, L]` | `ceil(k_b * bits / 8)` |
//!
//! with `L = 2^(bits-1) - 1` (1, 7 or 127); the last byte's unused bits are zero, and a
//! block with scale 0 holds only zero codes. Parameter `start + offset_j` decodes to
//! `code_j * scale`, every other parameter of the block to 0. A fixed `k` per block keeps
//! every block the same length, so windows are as for the dense encodings, and bounds
//! what one block can cost the canister. Offsets are one byte each (a block of 256
//! needs 8 bits per index, the cost of delta-coded gaps at these densities, without
//! their variable length). Bytes per parameter: `(4 + k + ceil(k * bits / 8)) / 256`,
//! for example 0.031 at `k = 3` (1.2%), 2 bits, and 0.109 at `k = 16` (6.3%), 4 bits.
//!
//! Encoding is deterministic. The `k_b` largest `|x|` (ties to the lower offset) are
//! kept; with 2 bits the codes are their signs and the scale the mean of their
//! magnitudes (the scaled sign of EF-signSGD, Karimireddy et al. 2019); with 4 or 8 bits
//! the scale is `max / L` and codes round half away from zero.
//!
//! Validation is exact on the decoded values (no rounding allowance): `L * scale <=
//! bound` per block, offsets sorted, unique and in range, codes in range, and
//! `||decoded||_2 <= bound` over the delta. Accumulation scatter-adds `code * F`,
//! `F = round_half_away(scale * 2^f)` per block, to the offsets' parameters: each
//! parameter gets at most one value per contribution, so the accumulator bound of
//! `crate::fedavg` holds as for dense deltas.

use super::{blocks, read_scale, Codec, DeltaEncoding, DeltaError, EncodingParseError, NormSums};
use crate::fedavg::{int8_block_factor, round_half_away};

/// Parameters per top-k block.
pub const TOPK_BLOCK_LEN: u64 = 256;
/// The supported value widths.
pub const BITS: [u8; 3] = [2, 4, 8];

pub struct TopK {
    pub k: u16,
    pub bits: u8,
}

/// `FRAC[,BITS]`: `FRAC` a fraction in (0, 1] (`k = round(FRAC * 256)`, at least 1) or
/// `K/256`; `BITS` 2 (default), 4 or 8.
pub(super) fn parse(spec: &str) -> Result<DeltaEncoding, EncodingParseError> {
    let err = |m: String| EncodingParseError(format!("topk:{spec}: {m}"));
    let (frac, bits) = match spec.split_once(',') {
        Some((f, b)) => (
            f,
            b.trim()
                .parse::<u8>()
                .map_err(|_| err(format!("bits `{b}` is not 2, 4 or 8")))?,
        ),
        None => (spec, 2),
    };
    let k = match frac.split_once('/') {
        Some((k, n)) => {
            if n.trim() != TOPK_BLOCK_LEN.to_string() {
                return Err(err(format!(
                    "blocks are {TOPK_BLOCK_LEN} long: write K/{TOPK_BLOCK_LEN}"
                )));
            }
            k.trim()
                .parse::<u16>()
                .map_err(|_| err(format!("`{k}` is not a count")))?
        }
        None => {
            let f: f64 = frac
                .trim()
                .parse()
                .map_err(|_| err(format!("`{frac}` is not a fraction")))?;
            if !(f > 0.0 && f <= 1.0) {
                return Err(err(format!("the fraction must be in (0, 1], got {f}")));
            }
            (f * TOPK_BLOCK_LEN as f64).round().max(1.0) as u16
        }
    };
    Ok(DeltaEncoding::TopK { k, bits })
}

impl TopK {
    fn levels(&self) -> i32 {
        (1 << (self.bits - 1)) - 1
    }
    fn kept(&self, len: u64) -> usize {
        (self.k as u64).min(len) as usize
    }
    fn codes_bytes(&self, kept: usize) -> usize {
        (kept * self.bits as usize).div_ceil(8)
    }

    /// Parses one block: `(scale, offsets, codes)` with every check but the bound's.
    fn parse_block<'a>(
        &self,
        start: u64,
        len: u64,
        block: &'a [u8],
        bound: f64,
        codes: &mut [i32; TOPK_BLOCK_LEN as usize],
    ) -> Result<(f32, &'a [u8]), DeltaError> {
        let b = start / TOPK_BLOCK_LEN;
        let kept = self.kept(len);
        let scale = read_scale(block, b, self.levels() as f64, bound)?;
        let offsets = &block[4..4 + kept];
        let packed = &block[4 + kept..];
        let mut prev: Option<u8> = None;
        for (position, &o) in offsets.iter().enumerate() {
            if o as u64 >= len {
                return Err(DeltaError::IndexOutOfRange {
                    block: b,
                    offset: o as u64,
                    block_len: len,
                });
            }
            if prev.is_some_and(|p| o <= p) {
                return Err(DeltaError::UnsortedIndices {
                    block: b,
                    position: position as u64,
                    offset: o as u64,
                });
            }
            prev = Some(o);
        }
        let min = -(1i32 << (self.bits - 1));
        let mut any = false;
        for (j, c) in codes[..kept].iter_mut().enumerate() {
            *c = super::code_at(packed, j, self.bits);
            if *c == min {
                return Err(DeltaError::QuantOutOfRange {
                    index: start + offsets[j] as u64,
                });
            }
            any |= *c != 0;
        }
        if !super::padding_is_zero(packed, kept, self.bits) || (scale == 0.0 && any) {
            return Err(DeltaError::NonCanonicalBlock { block: b });
        }
        Ok((scale, offsets))
    }
}

impl Codec for TopK {
    fn block_len(&self) -> u64 {
        TOPK_BLOCK_LEN
    }
    fn block_bytes(&self, len: u64) -> u64 {
        let kept = self.kept(len);
        (4 + kept + self.codes_bytes(kept)) as u64
    }

    fn encode(&self, delta: &[f32], _seed: u64, out: &mut Vec<u8>) {
        let l = self.levels();
        for block in delta.chunks(TOPK_BLOCK_LEN as usize) {
            let kept = self.kept(block.len() as u64);
            let mut order: Vec<u8> = (0..block.len() as u16).map(|o| o as u8).collect();
            // Largest magnitude first, ties to the lower offset: one answer per block.
            order.sort_by(|&a, &b| {
                let (x, y) = (block[a as usize].abs(), block[b as usize].abs());
                y.total_cmp(&x).then(a.cmp(&b))
            });
            let mut offsets = order[..kept].to_vec();
            offsets.sort_unstable();
            let values: Vec<f32> = offsets.iter().map(|&o| block[o as usize]).collect();
            let (scale, codes): (f32, Vec<i32>) = if l == 1 {
                let nonzero: Vec<f64> = values
                    .iter()
                    .filter(|v| **v != 0.0)
                    .map(|v| v.abs() as f64)
                    .collect();
                let mean = if nonzero.is_empty() {
                    0.0
                } else {
                    nonzero.iter().sum::<f64>() / nonzero.len() as f64
                };
                let s = mean as f32;
                if s < f32::MIN_POSITIVE {
                    (0.0, vec![0; kept])
                } else {
                    (
                        s,
                        values
                            .iter()
                            .map(|&v| (v > 0.0) as i32 - (v < 0.0) as i32)
                            .collect(),
                    )
                }
            } else {
                let s = super::scale_for(values.iter().copied(), l as f32);
                let codes = values
                    .iter()
                    .map(|&v| {
                        if s == 0.0 {
                            0
                        } else {
                            (round_half_away(v as f64 / s as f64) as i32).clamp(-l, l)
                        }
                    })
                    .collect();
                (s, codes)
            };
            out.extend_from_slice(&scale.to_le_bytes());
            out.extend_from_slice(&offsets);
            super::pack_codes(codes.into_iter(), self.bits, out);
        }
    }

    fn decode(&self, first: u64, bytes: &[u8], out: &mut [f32]) -> Result<(), DeltaError> {
        let mut codes = [0i32; TOPK_BLOCK_LEN as usize];
        for (start, len, block) in blocks(self, first, out.len() as u64, bytes) {
            let (scale, offsets) =
                self.parse_block(start, len, block, f64::INFINITY, &mut codes)?;
            let o = &mut out[(start - first) as usize..][..len as usize];
            for (&off, &c) in offsets.iter().zip(&codes) {
                let x = c as f32 * scale;
                if !x.is_finite() {
                    return Err(DeltaError::NonFiniteValue {
                        index: start + off as u64,
                    });
                }
                o[off as usize] = x;
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
        let mut codes = [0i32; TOPK_BLOCK_LEN as usize];
        for (start, len, block) in blocks(self, first, params, bytes) {
            let (scale, _) = self.parse_block(start, len, block, bound, &mut codes)?;
            let kept = self.kept(len);
            // At most 256 * 127^2: exact in i64 and in f64.
            let sum_q2: i64 = codes[..kept].iter().map(|&c| c as i64 * c as i64).sum();
            let s = scale as f64;
            sums.sum_sq += sum_q2 as f64 * s * s;
        }
        Ok(())
    }

    fn accumulate(&self, acc: &mut [i64], bytes: &[u8], weight: u64, frac_bits: u32) {
        let w = weight as i64;
        for (start, len, block) in blocks(self, 0, acc.len() as u64, bytes) {
            let kept = self.kept(len);
            let scale = f32::from_le_bytes([block[0], block[1], block[2], block[3]]);
            let wf = w.wrapping_mul(int8_block_factor(scale, frac_bits));
            let (offsets, packed) = block[4..].split_at(kept);
            let a = &mut acc[start as usize..][..len as usize];
            for (j, &off) in offsets.iter().enumerate() {
                let c = super::code_at(packed, j, self.bits) as i64;
                let slot = &mut a[off as usize];
                *slot = slot.wrapping_add(wf.wrapping_mul(c));
            }
        }
    }

    fn commit_instructions_per_param(&self) -> u64 {
        // A fixed cost per block (scale, lengths) and one per kept value (offset and code
        // checks, a scatter-add): measured about 6 + 0.6 k per parameter at k = 3 to 26
        // (docs/benchmarks.md, section 3b); this bound has room on both terms.
        10 + self.k as u64
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use proptest::prelude::*;

    fn topk(k: u16, bits: u8) -> DeltaEncoding {
        DeltaEncoding::TopK { k, bits }
    }

    #[test]
    fn parses_what_users_type() {
        assert_eq!("topk:0.02".parse::<DeltaEncoding>().unwrap(), topk(5, 2));
        assert_eq!(
            "topk:0.0625,4".parse::<DeltaEncoding>().unwrap(),
            topk(16, 4)
        );
        assert_eq!("topk:3/256,8".parse::<DeltaEncoding>().unwrap(), topk(3, 8));
        assert_eq!("topk:0.0001".parse::<DeltaEncoding>().unwrap(), topk(1, 2));
        for bad in [
            "topk:0",
            "topk:1.5",
            "topk:0.1,3",
            "topk:x",
            "topk:3/100",
            "topk:300/256",
            "int3",
        ] {
            assert!(bad.parse::<DeltaEncoding>().is_err(), "{bad}");
        }
        for e in [
            topk(3, 2),
            topk(256, 8),
            DeltaEncoding::LowBitBlocks { bits: 4 },
            DeltaEncoding::F32,
        ] {
            let text = e.to_string();
            let text = if e == DeltaEncoding::Int8Blocks {
                "int8".into()
            } else {
                text
            };
            assert_eq!(text.parse::<DeltaEncoding>().unwrap(), e);
            let d = e.descriptor();
            assert_eq!(DeltaEncoding::from_descriptor(&d), Some((e, d.len())));
        }
    }

    #[test]
    fn layout_is_the_documented_one() {
        // One block of 5: keep 2 (the largest magnitudes are -4 at 3 and 3 at 1).
        let x = [1.0f32, 3.0, 0.5, -4.0, 0.0];
        let bytes = encode(topk(2, 4), &x).unwrap();
        let scale = 4.0f32 / 7.0;
        let mut expected = scale.to_le_bytes().to_vec();
        expected.extend([1u8, 3]);
        // 3 / (4/7) = 5.25 -> 5; -4 / (4/7) = -7 (0x9): nibbles low first.
        expected.push(0x95);
        assert_eq!(bytes, expected);
        let y = decode(topk(2, 4), &bytes, 5).unwrap();
        assert_eq!(y, [0.0, 5.0 * scale, 0.0, -7.0 * scale, 0.0]);
        assert_eq!(topk(3, 2).encoded_len(256), 4 + 3 + 1);
        assert_eq!(topk(16, 4).encoded_len(512), 2 * (4 + 16 + 8));
        // A last block shorter than k keeps all of its parameters.
        assert_eq!(topk(16, 4).encoded_len(256 + 5), 28 + 4 + 5 + 3);
        // 2 bits: signs and the mean magnitude.
        let bytes = encode(topk(2, 2), &x).unwrap();
        assert_eq!(&bytes[..4], &3.5f32.to_le_bytes());
        assert_eq!(
            decode(topk(2, 2), &bytes, 5).unwrap(),
            [0.0, 3.5, 0.0, -3.5, 0.0]
        );
    }

    /// Malformed sparse payloads: each is a typed error from both the decoder and the
    /// validator (the canister runs the validator on staged bytes).
    #[test]
    fn malformed_payloads_are_rejected() {
        let enc = topk(3, 4);
        let x: Vec<f32> = (0..300)
            .map(|i| ((i * 7919) % 263) as f32 / 263.0 - 0.5)
            .collect();
        let mut x = x;
        clip_l2(&mut x, 1.0);
        let good = encode(enc, &x).unwrap();
        let n = x.len() as u64;
        assert!(validate(enc, &good, n, 1.0).is_ok());
        let check = |bytes: &[u8], want: &dyn Fn(&DeltaError) -> bool| {
            let v = validate(enc, bytes, n, 1.0).unwrap_err();
            assert!(want(&v), "validate: {v:?}");
            if !matches!(
                v,
                DeltaError::NormAboveClip { .. }
                    | DeltaError::BadScale { .. }
                    | DeltaError::WrongLength { .. }
            ) {
                let d = decode(enc, bytes, n).unwrap_err();
                assert_eq!(d, v, "decode and validate disagree");
            }
        };
        let offsets = 4..7; // block 0's offsets
                            // Unsorted, duplicate.
        let mut b = good.clone();
        b.swap(offsets.start, offsets.start + 1);
        check(&b, &|e| {
            matches!(
                e,
                DeltaError::UnsortedIndices {
                    block: 0,
                    position: 1,
                    ..
                }
            )
        });
        let mut b = good.clone();
        b[offsets.start + 1] = b[offsets.start];
        check(&b, &|e| {
            matches!(
                e,
                DeltaError::UnsortedIndices {
                    block: 0,
                    position: 1,
                    ..
                }
            )
        });
        // Out of range in the short last block (44 parameters).
        let last = 9; // block 0 is 4 + 3 + 2 bytes
        let mut b = good.clone();
        b[last + 4 + 2] = 44;
        check(&b, &|e| {
            matches!(
                e,
                DeltaError::IndexOutOfRange {
                    block: 1,
                    offset: 44,
                    block_len: 44
                }
            )
        });
        // Wrong lengths.
        check(&good[..good.len() - 1], &|e| {
            matches!(e, DeltaError::WrongLength { .. })
        });
        let mut long = good.clone();
        long.push(0);
        check(&long, &|e| matches!(e, DeltaError::WrongLength { .. }));
        // NaN and negative scales, a scale whose largest code exceeds the bound.
        for s in [f32::NAN, f32::INFINITY, -1.0, -0.0, 1.0] {
            let mut b = good.clone();
            b[..4].copy_from_slice(&s.to_le_bytes());
            check(&b, &|e| matches!(e, DeltaError::BadScale { block: 0, .. }));
        }
        // The forbidden code -8, and nonzero padding (3 codes of 4 bits leave 4 bits).
        let mut b = good.clone();
        b[7] = 0x08 | (b[7] & 0xF0);
        check(&b, &|e| matches!(e, DeltaError::QuantOutOfRange { .. }));
        let mut b = good.clone();
        b[8] |= 0xF0;
        check(&b, &|e| {
            matches!(e, DeltaError::NonCanonicalBlock { block: 0 })
        });
        // Every value at the largest code and scale: each element within the bound, the
        // delta's norm far above it.
        let loud: Vec<f32> = vec![1.0; 300];
        let bytes = encode(enc, &loud).unwrap();
        check(&bytes, &|e| matches!(e, DeltaError::NormAboveClip { .. }));
        // Unsupported parameters are refused before any byte is read.
        for e in [topk(0, 2), topk(257, 2), topk(3, 3)] {
            assert!(matches!(
                validate(e, &[], 0, 1.0),
                Err(DeltaError::UnsupportedEncoding { .. })
            ));
            assert!(matches!(
                decode(e, &good, n),
                Err(DeltaError::UnsupportedEncoding { .. })
            ));
            assert_eq!(e.encoded_len(1000), u64::MAX);
        }
    }

    fn encoding() -> impl Strategy<Value = DeltaEncoding> {
        (1u16..=256, prop::sample::select(vec![2u8, 4, 8])).prop_map(|(k, bits)| topk(k, bits))
    }

    proptest! {
        /// The kept coordinates are the largest of their block, sorted; every other
        /// coordinate decodes to zero; values err by at most half a level (4, 8 bits).
        #[test]
        fn keeps_the_largest(x in super::super::tests::deltas(900), enc in encoding()) {
            let DeltaEncoding::TopK { k, bits } = enc else { unreachable!() };
            let bytes = encode(enc, &x).unwrap();
            let y = decode(enc, &bytes, x.len() as u64).unwrap();
            for (xb, yb) in x.chunks(256).zip(y.chunks(256)) {
                let kept = (k as usize).min(xb.len());
                let nonzero = yb.iter().filter(|v| **v != 0.0).count();
                prop_assert!(nonzero <= kept);
                let mut mags: Vec<f32> = xb.iter().map(|v| v.abs()).collect();
                mags.sort_by(|a, b| b.total_cmp(a));
                let threshold = mags[kept - 1];
                for (a, b) in xb.iter().zip(yb) {
                    if *b != 0.0 {
                        prop_assert!(a.abs() >= threshold);
                        prop_assert_eq!(a.signum(), b.signum());
                        if bits > 2 {
                            let max = mags[0] as f64;
                            let level = max / ((1 << (bits - 1)) - 1) as f64;
                            prop_assert!((*a as f64 - *b as f64).abs() <= level * 0.5 * (1.0 + 1e-5) + 1e-37);
                        }
                    }
                }
            }
        }

        /// Error feedback conserves the delta: what is sent plus what is kept is what
        /// there was, to within the rounding of one `f32` subtraction.
        #[test]
        fn sent_plus_kept_is_the_whole(mut x in super::super::tests::deltas(900), enc in encoding(), clip in 1e-2f32..100f32) {
            clip_l2(&mut x, clip);
            let e = encode_within(enc, &x, clip, 0).unwrap();
            prop_assert!(validate(enc, &e.bytes, x.len() as u64, clip).is_ok());
            let kept: Vec<f32> = x.iter().zip(&e.decoded).map(|(a, b)| a - b).collect();
            for ((a, b), r) in x.iter().zip(&e.decoded).zip(&kept) {
                let err = (*a as f64 - (*b as f64 + *r as f64)).abs();
                prop_assert!(err <= (a.abs().max(b.abs()) as f64) * f32::EPSILON as f64, "{} {} {}", a, b, r);
            }
        }

        /// Accumulating a window gives the fixed point of the decoded values, parameter by
        /// parameter, to within the documented rounding.
        #[test]
        fn accumulation_matches_decoding(mut x in super::super::tests::deltas(900), enc in encoding()) {
            clip_l2(&mut x, 5.0);
            let bytes = encode(enc, &x).unwrap();
            let y = decode(enc, &bytes, x.len() as u64).unwrap();
            let mut acc = vec![0i64; x.len()];
            accumulate_window(&mut acc, enc, &bytes, 3, 30);
            for (a, v) in acc.iter().zip(&y) {
                let exact = 3.0 * *v as f64 * (1u64 << 30) as f64;
                // Half a unit per code level, and the f32 rounding of the decoded value.
                let allowed = 3.0 * (64.0 + v.abs() as f64 * 64.0 + 1.0);
                prop_assert!((*a as f64 - exact).abs() <= allowed, "{} {}", a, exact);
            }
        }
    }
}
