//! Deterministic FedAvg with an exact integer accumulator.
//!
//! Every decoded delta element is turned into a fixed-point integer with one job-wide
//! number of fractional bits `f` and added, times the contribution's weight, into an `i64`
//! per parameter. Integer addition is associative and commutative, so the accumulator is
//! bit-identical whatever order contributions arrive in.
//!
//! Fixed-point value of one element of one contribution:
//! - `f32` delta `d`: `round_half_away(d as f64 * 2^f) as i64` (the product is exact in
//!   `f64`: an `f32` times a power of two);
//! - int8 block with scale `s` and values `q`: `q * F` with `F = round_half_away(s as f64 * 2^f)`
//!   computed once per block. This is *not* `round(q * s * 2^f)`: it differs from it by at
//!   most `|q| * 0.5 <= 63.5` units of `2^-f`. It lets the inner loop be one multiply-add
//!   per parameter: `acc[i] += (w * F) * q[i]`.
//!
//! Overflow is impossible by construction: validation ([`crate::encoding::DeltaCheck`])
//! bounds every decoded element by `E = clip_norm * (1 + CLIP_TOLERANCE)` (for int8,
//! `127 * s <= E`), so one element's fixed-point magnitude is at most
//! `ceil(E * 2^f) + 64`; with weights `w <= max_weight` and at most `max_clients`
//! contributions per round, every partial sum is bounded by
//! `max_clients * max_weight * (ceil(E * 2^f) + 64)`, which [`AggregationLimits::check`]
//! requires to be at most `i64::MAX`. [`AggregationLimits::safe_frac_bits`] picks the
//! largest such `f` (at most [`MAX_FRAC_BITS`], at least [`MIN_FRAC_BITS`]).
//!
//! Finalisation (the exact IEEE-754 sequence, round-to-nearest-even, no fused operations):
//! ```text
//! inv      = 1.0f64 / ((total_weight as f64) * 2^f)       // once per round
//! w_next_i = ((w_i as f64) + (server_lr as f64) * ((acc_i as f64) * inv)) as f32
//! ```

use crate::encoding::{DeltaEncoding, DeltaError, CLIP_TOLERANCE};

/// Upper cap on the fractional bits (2^-40 ~ 1e-12 resolution is plenty for f32 models).
pub const MAX_FRAC_BITS: u32 = 40;
/// Lower limit: a job whose limits leave less precision than 2^-16 is rejected.
pub const MIN_FRAC_BITS: u32 = 16;
/// Smallest `clip_norm` a job may use. Below it, the `f32` rounding of a clipped delta
/// (absolute `2^-150` per subnormal element, `sqrt(MAX_PARAMS) * 2^-150 ~ 7e-42` in norm)
/// can exceed the relative [`CLIP_TOLERANCE`], and honestly clipped deltas fail validation
/// (found by the `delta_decoders` fuzz target). `1e-30` leaves a margin of about 10^6.
pub const MIN_CLIP_NORM: f32 = 1e-30;
/// Rounding headroom per element, in units of 2^-f: 0.5 for f32 rounding, 127 * 0.5 for
/// the int8 block factor, rounded up.
pub const ROUNDING_HEADROOM: u128 = 64;

/// The job limits that bound the accumulator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AggregationLimits {
    pub max_clients: u64,
    pub max_weight: u64,
    pub clip_norm: f32,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LimitsError {
    #[error("max_clients must be at least 1")]
    ZeroClients,
    #[error("max_weight must be at least 1")]
    ZeroWeight,
    #[error("clip_norm must be finite and at least {MIN_CLIP_NORM}, got {0}")]
    BadClipNorm(f32),
    #[error("with {frac_bits} fractional bits, max_clients {max_clients} x max_weight {max_weight} x clip_norm {clip_norm} could overflow the i64 accumulator (worst case {worst_case})")]
    Overflow {
        frac_bits: u32,
        max_clients: u64,
        max_weight: u64,
        clip_norm: f32,
        worst_case: u128,
    },
    #[error("no fractional bits in [{MIN_FRAC_BITS}, {MAX_FRAC_BITS}] keep the accumulator from overflowing: lower max_clients, max_weight or clip_norm")]
    NoSafeFracBits,
}

pub(crate) fn pow2(f: u32) -> f64 {
    (f as f64).exp2()
}

impl AggregationLimits {
    /// Largest magnitude a validated decoded element can have.
    pub fn element_bound(&self) -> f64 {
        self.clip_norm as f64 * (1.0 + CLIP_TOLERANCE)
    }

    /// Largest fixed-point magnitude of one element of one contribution at `frac_bits`.
    pub fn element_fixed_bound(&self, frac_bits: u32) -> u128 {
        // `as u128` saturates for clip norms above ~5e33 / 2^(f-16); the addition must too,
        // or it wraps to a tiny bound and the overflow check passes (found by fuzzing).
        ((self.element_bound() * pow2(frac_bits)).ceil() as u128).saturating_add(ROUNDING_HEADROOM)
    }

    /// Bound on any partial sum of the accumulator: `max_clients * max_weight * element_fixed_bound`.
    pub fn worst_case(&self, frac_bits: u32) -> u128 {
        (self.max_clients as u128)
            .saturating_mul(self.max_weight as u128)
            .saturating_mul(self.element_fixed_bound(frac_bits))
    }

    /// Checks the limits themselves and that `frac_bits` cannot overflow.
    pub fn check(&self, frac_bits: u32) -> Result<(), LimitsError> {
        if self.max_clients == 0 {
            return Err(LimitsError::ZeroClients);
        }
        if self.max_weight == 0 {
            return Err(LimitsError::ZeroWeight);
        }
        if !(self.clip_norm.is_finite() && self.clip_norm >= MIN_CLIP_NORM) {
            return Err(LimitsError::BadClipNorm(self.clip_norm));
        }
        let worst_case = self.worst_case(frac_bits);
        if worst_case > i64::MAX as u128 {
            return Err(LimitsError::Overflow {
                frac_bits,
                max_clients: self.max_clients,
                max_weight: self.max_weight,
                clip_norm: self.clip_norm,
                worst_case,
            });
        }
        Ok(())
    }

    /// The largest safe number of fractional bits in `[MIN_FRAC_BITS, MAX_FRAC_BITS]`.
    pub fn safe_frac_bits(&self) -> Result<u32, LimitsError> {
        self.check(MIN_FRAC_BITS).map_err(|e| match e {
            LimitsError::Overflow { .. } => LimitsError::NoSafeFracBits,
            other => other,
        })?;
        Ok((MIN_FRAC_BITS..=MAX_FRAC_BITS)
            .rev()
            .find(|&f| self.check(f).is_ok())
            .unwrap_or(MIN_FRAC_BITS))
    }
}

/// Weight of a contribution: its sample count capped by the job's `max_weight`.
pub fn capped_weight(sample_count: u64, max_weight: u64) -> u64 {
    sample_count.min(max_weight)
}

/// `x.round()` (half away from zero) from operators wasm has natively (`f64.trunc`,
/// `f64.sub`, `f64.abs`, compare, select): `f64::round` is a libm call in wasm32, several
/// times the instructions. `x - x.trunc()` is exact, so the result is bit-identical to
/// `f64::round` for every input (tested), NaN and infinities included.
#[inline(always)]
pub fn round_half_away(x: f64) -> f64 {
    let t = x.trunc();
    if (x - t).abs() >= 0.5 {
        t + 1f64.copysign(x)
    } else {
        t
    }
}

/// Fixed-point value of an `f32` delta element.
#[inline]
pub fn fixed_from_f32(d: f32, frac_bits: u32) -> i64 {
    round_half_away(d as f64 * pow2(frac_bits)) as i64
}

/// Fixed-point factor `F` of an int8 block scale.
#[inline]
pub fn int8_block_factor(scale: f32, frac_bits: u32) -> i64 {
    round_half_away(scale as f64 * pow2(frac_bits)) as i64
}

pub use crate::encoding::accumulate_window;

/// `1 / (total_weight * 2^f)`, computed once per round. `total_weight` must be non-zero.
pub fn finalize_factor(total_weight: u64, frac_bits: u32) -> f64 {
    assert!(
        total_weight > 0,
        "a round closes with at least one contribution"
    );
    1.0 / (total_weight as f64 * pow2(frac_bits))
}

/// Applies the averaged update in place: `w_i = (w_i + lr * (acc_i * inv)) as f32`.
pub fn apply_update(weights: &mut [f32], acc: &[i64], inv: f64, server_lr: f32) {
    assert_eq!(weights.len(), acc.len());
    let lr = server_lr as f64;
    for (w, &a) in weights.iter_mut().zip(acc) {
        *w = (*w as f64 + lr * (a as f64 * inv)) as f32;
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ContributionError {
    #[error(transparent)]
    Delta(#[from] DeltaError),
    #[error("contribution weight is zero (sample count 0)")]
    ZeroWeight,
    #[error("already {max} contributions: max_clients reached")]
    TooManyContributions { max: u64 },
}

/// In-memory accumulator for one round: what a verifier (or a test) uses to recompute a
/// round. Memory is O(parameters): each contribution is streamed window by window.
#[derive(Clone, Debug)]
pub struct Accumulator {
    limits: AggregationLimits,
    frac_bits: u32,
    acc: Vec<i64>,
    total_weight: u64,
    contributions: u64,
}

impl Accumulator {
    pub fn new(
        param_count: usize,
        limits: AggregationLimits,
        frac_bits: u32,
    ) -> Result<Self, LimitsError> {
        limits.check(frac_bits)?;
        Ok(Self {
            limits,
            frac_bits,
            acc: vec![0; param_count],
            total_weight: 0,
            contributions: 0,
        })
    }

    /// Validates an encoded delta and adds it with weight `min(sample_count, max_weight)`.
    /// Leaves the accumulator unchanged on error. Returns the weight used.
    pub fn add(
        &mut self,
        encoding: DeltaEncoding,
        bytes: &[u8],
        sample_count: u64,
    ) -> Result<u64, ContributionError> {
        if self.contributions >= self.limits.max_clients {
            return Err(ContributionError::TooManyContributions {
                max: self.limits.max_clients,
            });
        }
        let weight = capped_weight(sample_count, self.limits.max_weight);
        if weight == 0 {
            return Err(ContributionError::ZeroWeight);
        }
        let n = self.acc.len() as u64;
        crate::encoding::validate(encoding, bytes, n, self.limits.clip_norm)?;
        for w in encoding.windows(n, 1 << 14) {
            accumulate_window(
                &mut self.acc[w.params()],
                encoding,
                &bytes[w.bytes()],
                weight,
                self.frac_bits,
            );
        }
        self.total_weight += weight;
        self.contributions += 1;
        Ok(weight)
    }

    pub fn frac_bits(&self) -> u32 {
        self.frac_bits
    }
    pub fn total_weight(&self) -> u64 {
        self.total_weight
    }
    pub fn contributions(&self) -> u64 {
        self.contributions
    }
    pub fn values(&self) -> &[i64] {
        &self.acc
    }

    /// `w_{r+1}` from `w_r`; `None` when nothing was accumulated.
    pub fn apply(&self, weights: &[f32], server_lr: f32) -> Option<Vec<f32>> {
        if self.total_weight == 0 {
            return None;
        }
        let mut next = weights.to_vec();
        apply_update(
            &mut next,
            &self.acc,
            finalize_factor(self.total_weight, self.frac_bits),
            server_lr,
        );
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{clip_l2, encode};
    use proptest::prelude::*;

    fn limits() -> AggregationLimits {
        AggregationLimits {
            max_clients: 16,
            max_weight: 1000,
            clip_norm: 5.0,
        }
    }

    #[derive(Clone, Debug)]
    struct Contribution {
        encoding: DeltaEncoding,
        bytes: Vec<u8>,
        samples: u64,
    }

    fn contributions(params: usize) -> impl Strategy<Value = Vec<Contribution>> {
        let one = (
            prop::collection::vec(-10f32..10f32, params),
            prop::sample::select(crate::encoding::tests::every_encoding()),
            1u64..2000,
            any::<u64>(),
        )
            .prop_map(|(mut d, encoding, samples, seed)| {
                clip_l2(&mut d, 5.0);
                Contribution {
                    encoding,
                    bytes: crate::encoding::encode_within(encoding, &d, 5.0, seed)
                        .unwrap()
                        .bytes,
                    samples,
                }
            });
        prop::collection::vec(one, 1..5)
    }

    fn run(order: &[Contribution], params: usize, weights: &[f32]) -> (Vec<i64>, Vec<u8>) {
        let l = limits();
        let mut acc = Accumulator::new(params, l, l.safe_frac_bits().unwrap()).unwrap();
        for c in order {
            acc.add(c.encoding, &c.bytes, c.samples).unwrap();
        }
        let next = acc.apply(weights, 0.7).unwrap();
        (
            acc.values().to_vec(),
            crate::model::weights_to_le_bytes(&next),
        )
    }

    /// Heap's algorithm: every permutation of `items`.
    fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
        fn go<T: Clone>(k: usize, a: &mut Vec<T>, out: &mut Vec<Vec<T>>) {
            if k <= 1 {
                out.push(a.clone());
                return;
            }
            for i in 0..k - 1 {
                go(k - 1, a, out);
                if k.is_multiple_of(2) {
                    a.swap(i, k - 1)
                } else {
                    a.swap(0, k - 1)
                }
            }
            go(k - 1, a, out);
        }
        let mut out = Vec::new();
        go(items.len(), &mut items.to_vec(), &mut out);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Every permutation of the same contributions gives identical accumulator and model bytes.
        #[test]
        fn every_permutation_gives_identical_bytes(
            (params, cs) in (1usize..700).prop_flat_map(|p| (Just(p), contributions(p))),
            seed in prop::collection::vec(-1f32..1f32, 700),
        ) {
            let weights = &seed[..params];
            let perms = permutations(&cs);
            let (acc0, model0) = run(&perms[0], params, weights);
            for p in &perms[1..] {
                let (acc, model) = run(p, params, weights);
                prop_assert_eq!(&acc, &acc0);
                prop_assert_eq!(&model, &model0);
            }
        }

        /// Streaming with any window size gives the same accumulator.
        #[test]
        fn window_size_does_not_matter(
            (params, cs) in (1usize..1500).prop_flat_map(|p| (Just(p), contributions(p))),
            window in 1u64..2000,
        ) {
            let l = limits();
            let f = l.safe_frac_bits().unwrap();
            let mut whole = Accumulator::new(params, l, f).unwrap();
            let mut streamed = vec![0i64; params];
            for c in &cs {
                let w = whole.add(c.encoding, &c.bytes, c.samples).unwrap();
                for win in c.encoding.windows(params as u64, window) {
                    accumulate_window(&mut streamed[win.params()], c.encoding, &c.bytes[win.bytes()], w, f);
                }
            }
            prop_assert_eq!(whole.values(), &streamed[..]);
        }
    }

    #[test]
    fn average_is_close_to_float_fedavg() {
        let l = limits();
        let f = l.safe_frac_bits().unwrap();
        let a = [1.0f32, -2.0, 0.5];
        let b = [0.5f32, 1.0, -0.25];
        let mut acc = Accumulator::new(3, l, f).unwrap();
        acc.add(
            DeltaEncoding::F32,
            &encode(DeltaEncoding::F32, &a).unwrap(),
            100,
        )
        .unwrap();
        acc.add(
            DeltaEncoding::F32,
            &encode(DeltaEncoding::F32, &b).unwrap(),
            300,
        )
        .unwrap();
        let w = [0.1f32, 0.2, 0.3];
        let next = acc.apply(&w, 1.0).unwrap();
        for i in 0..3 {
            let reference = w[i] as f64 + (a[i] as f64 * 100.0 + b[i] as f64 * 300.0) / 400.0;
            assert!(
                (next[i] as f64 - reference).abs() < 1e-6,
                "{i}: {} vs {reference}",
                next[i]
            );
        }
        // The documented IEEE sequence, written out, gives the same bits.
        let inv = 1.0f64 / (400f64 * 2f64.powi(f as i32));
        for i in 0..3 {
            let expected = (w[i] as f64 + 1.0f64 * (acc.values()[i] as f64 * inv)) as f32;
            assert_eq!(next[i].to_bits(), expected.to_bits());
        }
        // Weights are capped.
        let mut capped = Accumulator::new(3, l, f).unwrap();
        assert_eq!(
            capped
                .add(
                    DeltaEncoding::F32,
                    &encode(DeltaEncoding::F32, &a).unwrap(),
                    5000
                )
                .unwrap(),
            1000
        );
        assert_eq!(
            capped.add(
                DeltaEncoding::F32,
                &encode(DeltaEncoding::F32, &a).unwrap(),
                0
            ),
            Err(ContributionError::ZeroWeight)
        );
    }

    #[test]
    fn rejected_contribution_leaves_accumulator_unchanged() {
        let l = AggregationLimits {
            max_clients: 2,
            ..limits()
        };
        let mut acc = Accumulator::new(2, l, 20).unwrap();
        let good = encode(DeltaEncoding::F32, &[1.0, 1.0]).unwrap();
        acc.add(DeltaEncoding::F32, &good, 10).unwrap();
        let before = acc.values().to_vec();
        let too_big = encode(DeltaEncoding::F32, &[5.0, 5.0]).unwrap();
        assert!(matches!(
            acc.add(DeltaEncoding::F32, &too_big, 10),
            Err(ContributionError::Delta(DeltaError::NormAboveClip { .. }))
        ));
        assert_eq!(acc.values(), &before[..]);
        assert_eq!(acc.total_weight(), 10);
        acc.add(DeltaEncoding::F32, &good, 10).unwrap();
        assert_eq!(
            acc.add(DeltaEncoding::F32, &good, 10),
            Err(ContributionError::TooManyContributions { max: 2 })
        );
    }

    /// Largest f32 not above `x`.
    fn f32_at_most(x: f64) -> f32 {
        let mut v = x as f32;
        while v as f64 > x {
            v = f32::from_bits(v.to_bits() - 1);
        }
        v
    }

    /// The overflow bound is tight: `max_weight` is chosen as the largest value the check
    /// accepts at 30 fractional bits, then `max_clients` worst-case contributions (every
    /// element at the clip bound, all the same sign, both encodings, full weight) are
    /// accumulated. The result must equal the exact i128 sum, which lies within 1% of
    /// i64::MAX; one more unit of weight is rejected.
    #[test]
    fn accumulator_at_the_overflow_bound() {
        let (max_clients, clip_norm, f) = (500u64, 3.0f32, 30u32);
        let probe = AggregationLimits {
            max_clients,
            max_weight: 1,
            clip_norm,
        };
        let max_weight =
            (i64::MAX as u128 / (max_clients as u128 * probe.element_fixed_bound(f))) as u64;
        let limits = AggregationLimits {
            max_clients,
            max_weight,
            clip_norm,
        };
        limits.check(f).unwrap();
        assert_eq!(
            limits.safe_frac_bits().unwrap(),
            f,
            "30 must be the largest safe value"
        );
        let beyond = AggregationLimits {
            max_weight: max_weight + 1,
            ..limits
        };
        assert!(matches!(beyond.check(f), Err(LimitsError::Overflow { .. })));
        assert_eq!(beyond.safe_frac_bits().unwrap(), f - 1);
        let more_clients = AggregationLimits {
            max_clients: max_clients + 1,
            ..limits
        };
        assert!(matches!(
            more_clients.check(f),
            Err(LimitsError::Overflow { .. })
        ));

        let e = limits.element_bound();
        let d = f32_at_most(e);
        let scale = f32_at_most(e / 127.0);
        for sign in [1.0f32, -1.0] {
            let f32_bytes = encode(DeltaEncoding::F32, &[sign * d, sign * d * 0.0]).unwrap();
            let mut int8_bytes = scale.to_le_bytes().to_vec();
            int8_bytes.extend([(sign as i8 * 127) as u8, 0]);
            let mut acc = Accumulator::new(2, limits, f).unwrap();
            let mut exact: i128 = 0;
            for i in 0..max_clients {
                if i % 2 == 0 {
                    acc.add(DeltaEncoding::F32, &f32_bytes, u64::MAX).unwrap();
                    exact += max_weight as i128 * fixed_from_f32(sign * d, f) as i128;
                } else {
                    acc.add(DeltaEncoding::Int8Blocks, &int8_bytes, u64::MAX)
                        .unwrap();
                    exact += max_weight as i128
                        * (sign as i128 * 127)
                        * int8_block_factor(scale, f) as i128;
                }
            }
            assert_eq!(acc.values()[0] as i128, exact);
            assert!(exact.unsigned_abs() <= i64::MAX as u128);
            assert!(
                exact.unsigned_abs() as f64 > 0.99 * i64::MAX as f64,
                "worst case {exact} is not at the bound"
            );
            assert_eq!(acc.total_weight(), max_clients * max_weight);
            // Finalisation stays finite and near the clip bound.
            let next = acc.apply(&[0.0, 0.0], 1.0).unwrap();
            assert!((next[0] as f64 - sign as f64 * e).abs() < 1e-3 * e);
        }
    }

    #[test]
    fn round_half_away_is_f64_round() {
        let edge = [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            0.49999999999999994,
            -0.49999999999999994,
            4503599627370495.5,
            4503599627370496.0,
            9007199254740993.0,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        for x in edge {
            assert_eq!(round_half_away(x).to_bits(), x.round().to_bits(), "{x}");
        }
        assert!(round_half_away(f64::NAN).is_nan());
        let mut s = 0x1234_5678_9abc_def0u64;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let x = f64::from_bits(s);
            if !x.is_nan() {
                assert_eq!(round_half_away(x).to_bits(), x.round().to_bits(), "{x:e}");
            }
            // Values near half-integers at fixed-point scales.
            let y = (s >> 11) as f64 / (1u64 << 20) as f64 - 4096.0;
            assert_eq!(round_half_away(y).to_bits(), y.round().to_bits(), "{y}");
        }
    }

    #[test]
    fn limits_reject_bad_configs() {
        assert_eq!(
            AggregationLimits {
                max_clients: 0,
                ..limits()
            }
            .safe_frac_bits(),
            Err(LimitsError::ZeroClients)
        );
        assert_eq!(
            AggregationLimits {
                max_weight: 0,
                ..limits()
            }
            .safe_frac_bits(),
            Err(LimitsError::ZeroWeight)
        );
        assert!(matches!(
            AggregationLimits {
                clip_norm: f32::NAN,
                ..limits()
            }
            .safe_frac_bits(),
            Err(LimitsError::BadClipNorm(_))
        ));
        assert!(matches!(
            AggregationLimits {
                clip_norm: -1.0,
                ..limits()
            }
            .safe_frac_bits(),
            Err(LimitsError::BadClipNorm(_))
        ));
        // Below the smallest clip norm, honestly clipped deltas can fail validation.
        for clip_norm in [0.0, 1e-31, f32::MIN_POSITIVE, 1e-44] {
            assert!(matches!(
                AggregationLimits {
                    clip_norm,
                    ..limits()
                }
                .safe_frac_bits(),
                Err(LimitsError::BadClipNorm(_))
            ));
        }
        assert!(AggregationLimits {
            clip_norm: MIN_CLIP_NORM,
            ..limits()
        }
        .safe_frac_bits()
        .is_ok());
        // Regression (fuzzing): a clip norm whose fixed-point bound exceeds u128 wrapped the
        // bound to 63, so the job was accepted with 40 fractional bits and could overflow.
        for clip_norm in [1e34f32, 3e38, f32::MAX] {
            let one = AggregationLimits {
                max_clients: 1,
                max_weight: 1,
                clip_norm,
            };
            assert_eq!(one.element_fixed_bound(MAX_FRAC_BITS), u128::MAX);
            assert_eq!(one.safe_frac_bits(), Err(LimitsError::NoSafeFracBits));
        }
        let huge = AggregationLimits {
            max_clients: 1 << 20,
            max_weight: 1 << 20,
            clip_norm: 1e6,
        };
        assert_eq!(huge.safe_frac_bits(), Err(LimitsError::NoSafeFracBits));
        assert_eq!(limits().safe_frac_bits(), Ok(MAX_FRAC_BITS));
    }
}
