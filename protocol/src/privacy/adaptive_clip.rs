//! Adaptive clipping (Andrew, Thakkar, McMahan and Ramaswamy 2021, "Differentially Private
//! Learning with Adaptive Clipping"): the clip follows a quantile of the contributors'
//! update norms instead of a guess made before training.
//!
//! Each round `r` clips to `C_r`. Every contributor also reports one bit, whether its
//! update's norm before clipping was at most `C_r`; the round's count of those bits gets
//! Gaussian noise of standard deviation `sigma_b`, and the clip moves geometrically
//! towards the target quantile `gamma`:
//!
//! ```text
//! C_{r+1} = clamp(C_r exp(-eta (b_r / m_r - gamma)),  C_max / 2^20,  C_max)
//! ```
//!
//! with `b_r` the noised count and `m_r` the round's contributions. The count is a second
//! Gaussian query: centred (`b - 1/2`), its sensitivity is `1/2`, so the round is one
//! Gaussian mechanism of multiplier `z` when the update's noise has multiplier
//! `z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2)` (the paper's Theorem 1): the accountant is
//! unchanged, and the noise on the update grows a little. `C_max` is the job's `clip_norm`,
//! the start and the ceiling of the clip (the accumulator's fixed-point range is sized for
//! it); the floor only keeps the clip a positive `f32`.
//!
//! Everything is `f32`/`f64` through `libm`, so a verifier recomputes every round's clip
//! from the certified records bit for bit ([`AdaptiveClip::next_clip`]).

use candid::CandidType;
use serde::{Deserialize, Serialize};

use super::DpError;

/// Andrew et al.'s learning rate for the geometric update (their experiments' choice).
pub const DEFAULT_LEARNING_RATE: f64 = 0.2;

/// The share of each round's RDP the default count noise takes: `(2 sigma_b)^-2 =
/// COUNT_SHARE z^-2`, so the update's noise multiplier grows by `1/sqrt(1 - 0.1)`, 5.4%.
pub const COUNT_SHARE: f64 = 0.1;

/// How far below the job's clip the adaptive clip may go (`2^-20` of it).
pub const FLOOR: f64 = 1.0 / (1u64 << 20) as f64;

/// Domain tag of the count noise's key, beside [`super::NOISE_TAG`].
pub const COUNT_NOISE_TAG: &[u8] = b"flic/dp-clip-count/v1";

/// A job's adaptive clipping.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveClip {
    /// The quantile of the contributors' update norms the clip tracks, in (0, 1).
    pub target_quantile: f64,
    /// `eta` of the geometric update, in (0, 10].
    pub learning_rate: f64,
    /// Standard deviation of the Gaussian noise on each round's count of contributions at
    /// or below the clip.
    pub count_noise_std: f64,
}

impl AdaptiveClip {
    /// Tracks `target_quantile` with the default learning rate, the count's noise taking
    /// [`COUNT_SHARE`] of a round's privacy at total noise multiplier `noise_multiplier`.
    pub fn new(target_quantile: f64, noise_multiplier: f64) -> Self {
        Self {
            target_quantile,
            learning_rate: DEFAULT_LEARNING_RATE,
            count_noise_std: noise_multiplier / (2.0 * libm::sqrt(COUNT_SHARE)),
        }
    }

    /// Checks the fields, and that the count leaves the update some of the round's privacy.
    pub fn check(&self, noise_multiplier: f64) -> Result<(), DpError> {
        if !(self.target_quantile > 0.0 && self.target_quantile < 1.0) {
            return Err(DpError::ClipQuantile(self.target_quantile));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 10.0) {
            return Err(DpError::ClipLearningRate(self.learning_rate));
        }
        let sigma_b = self.count_noise_std;
        if !(sigma_b.is_finite() && 2.0 * sigma_b > noise_multiplier) {
            return Err(DpError::ClipCountNoise {
                count_noise_std: sigma_b,
                noise_multiplier,
            });
        }
        Ok(())
    }

    /// The update's noise multiplier for a round of total multiplier `z`:
    /// `(z^-2 - (2 sigma_b)^-2)^(-1/2)`. A checked configuration only.
    pub fn update_noise_multiplier(&self, z: f64) -> f64 {
        let b = 2.0 * self.count_noise_std;
        1.0 / libm::sqrt(1.0 / (z * z) - 1.0 / (b * b))
    }

    /// The clip of the round after one that clipped to `clip`, had `contributions`
    /// contributions and a noised count `noised_count` of those at or below the clip.
    /// `max_clip` is the job's `clip_norm`.
    pub fn next_clip(
        &self,
        clip: f32,
        noised_count: f64,
        contributions: u32,
        max_clip: f32,
    ) -> f32 {
        let fraction = noised_count / contributions.max(1) as f64;
        let next = clip as f64 * libm::exp(-self.learning_rate * (fraction - self.target_quantile));
        let max = max_clip as f64;
        // NaN-proof: a NaN (impossible from checked inputs) stays at the ceiling.
        let clamped = if next.is_nan() {
            max
        } else {
            next.clamp(max * FLOOR, max)
        };
        clamped as f32
    }
}

/// The clips of a job's rounds recomputed from their records, in order: round 0 clips to
/// the job's `clip_norm`, and each record's clip and noised count give the next clip.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipChain {
    clip: AdaptiveClip,
    max_clip: f32,
    next: f32,
}

impl ClipChain {
    pub fn new(clip: AdaptiveClip, max_clip: f32) -> Self {
        Self {
            clip,
            max_clip,
            next: max_clip,
        }
    }

    /// The clip the next round must use.
    pub fn expected(&self) -> f32 {
        self.next
    }

    /// Checks one round's published clip against the chain, then moves the chain on by the
    /// round's noised count. `Err(expected)` when the record's clip is another.
    pub fn step(
        &mut self,
        clip_norm: f32,
        noised_count: f64,
        contributions: u32,
    ) -> Result<(), f32> {
        if clip_norm.to_bits() != self.next.to_bits() {
            return Err(self.next);
        }
        self.next = self
            .clip
            .next_clip(clip_norm, noised_count, contributions, self.max_clip);
        Ok(())
    }
}

/// The noise on a round's count: one normal of standard deviation `std` from ChaCha12
/// keyed by `sha256(COUNT_NOISE_TAG || seed || round)`, apart from the update's stream.
pub fn count_noise(seed: &[u8; 32], round: u64, std: f64) -> f64 {
    let key = crate::hash::sha256_concat(&[COUNT_NOISE_TAG, seed, &round.to_le_bytes()]);
    super::Normals::new(key).next_normal() * std
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(q: f64) -> AdaptiveClip {
        AdaptiveClip::new(q, 1.0)
    }

    /// The paper's Theorem 1: the two queries together are one Gaussian mechanism of the
    /// job's multiplier.
    #[test]
    fn the_count_and_the_update_compose_to_the_jobs_multiplier() {
        for z in [0.5, 1.0, 3.7, 100.0] {
            let a = AdaptiveClip::new(0.5, z);
            a.check(z).unwrap();
            let zd = a.update_noise_multiplier(z);
            let composed = 1.0 / (1.0 / (zd * zd) + 1.0 / (4.0 * a.count_noise_std.powi(2)));
            assert!(
                (composed.sqrt() - z).abs() < 1e-9 * z,
                "{z}: {}",
                composed.sqrt()
            );
            // The default share: the update's noise grows by 1/sqrt(0.9).
            assert!((zd / z - 1.0 / 0.9f64.sqrt()).abs() < 1e-12);
        }
    }

    #[test]
    fn the_clip_moves_towards_the_quantile_and_stays_in_range() {
        let a = clip(0.5);
        // Everyone below: the clip shrinks by exp(-0.2 * 0.5); everyone above: it grows.
        let down = a.next_clip(1.0, 10.0, 10, 4.0);
        assert_eq!(down, libm::exp(-0.1) as f32);
        let up = a.next_clip(1.0, 0.0, 10, 4.0);
        assert_eq!(up, libm::exp(0.1) as f32);
        // At the quantile it stays.
        assert_eq!(a.next_clip(1.5, 5.0, 10, 4.0), 1.5);
        // The ceiling and the floor.
        assert_eq!(a.next_clip(4.0, 0.0, 10, 4.0), 4.0);
        let tiny = 4.0 * FLOOR as f32;
        assert_eq!(a.next_clip(tiny, 10.0, 10, 4.0), tiny);
        // A noised count outside [0, m] is still a number; so is an empty round.
        assert!(a.next_clip(1.0, -1e9, 10, 4.0) == 4.0);
        assert!(a.next_clip(1.0, 1e9, 0, 4.0) == tiny);
    }

    /// Over many rounds of noised counts the clip settles near the target quantile of the
    /// norms it sees, from above and from below, for any spread of norms.
    #[test]
    fn the_clip_converges_to_the_quantile_of_the_norms() {
        use rand_chacha::rand_core::{RngCore, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        // Uniform in (0, 1).
        let mut uniform = move || ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        for (q, scale) in [(0.5, 1.0f64), (0.2, 0.01), (0.8, 30.0)] {
            let a = clip(q);
            // Log-normal norms: their q-quantile is scale * exp(z_q).
            let norms: Vec<f64> = (0..20_000)
                .map(|_| {
                    let (u, v) = (uniform(), uniform());
                    let normal =
                        libm::sqrt(-2.0 * libm::log(u)) * libm::cos(std::f64::consts::TAU * v);
                    scale * normal.exp()
                })
                .collect();
            let mut sorted = norms.clone();
            sorted.sort_by(f64::total_cmp);
            let quantile = sorted[(q * sorted.len() as f64) as usize];
            for start in [quantile * 50.0, quantile / 50.0] {
                let max = (quantile * 100.0) as f32;
                let mut c = start as f32;
                for r in 0..400u64 {
                    let round: Vec<f64> = (0..50)
                        .map(|i| norms[((r * 50 + i) % norms.len() as u64) as usize])
                        .collect();
                    let below = round.iter().filter(|&&n| n <= c as f64).count() as f64;
                    let noised = below + count_noise(&[9; 32], r, a.count_noise_std);
                    c = a.next_clip(c, noised, 50, max);
                }
                let ratio = c as f64 / quantile;
                assert!(
                    (0.7..1.4).contains(&ratio),
                    "q {q} scale {scale} from {start}: clip {c} vs quantile {quantile}"
                );
            }
        }
    }

    #[test]
    fn bad_configurations_are_typed_errors() {
        for q in [0.0, 1.0, -0.5, f64::NAN] {
            assert!(
                matches!(clip(q).check(1.0), Err(DpError::ClipQuantile(_))),
                "{q}"
            );
        }
        let a = AdaptiveClip {
            learning_rate: 0.0,
            ..clip(0.5)
        };
        assert_eq!(a.check(1.0), Err(DpError::ClipLearningRate(0.0)));
        // A count noise of at most z / 2 leaves the update nothing.
        let a = AdaptiveClip {
            count_noise_std: 0.5,
            ..clip(0.5)
        };
        assert!(matches!(a.check(1.0), Err(DpError::ClipCountNoise { .. })));
        assert!(a.check(0.9).is_ok());
    }

    #[test]
    fn the_chain_recomputes_every_clip_and_catches_a_wrong_one() {
        let a = clip(0.5);
        let mut chain = ClipChain::new(a, 2.0);
        assert_eq!(chain.expected(), 2.0);
        chain.step(2.0, 9.3, 10).unwrap();
        let second = a.next_clip(2.0, 9.3, 10, 2.0);
        assert!(second < 2.0);
        assert_eq!(chain.expected(), second);
        // A record naming another clip (one ulp off) is caught, and the chain stays put.
        let off = f32::from_bits(second.to_bits() + 1);
        assert_eq!(chain.step(off, 1.0, 10), Err(second));
        chain.step(second, 1.0, 10).unwrap();
        assert!(chain.expected() > second);
    }

    #[test]
    fn the_count_noise_is_seeded_by_round() {
        let a = count_noise(&[1; 32], 3, 2.0);
        assert_eq!(a, count_noise(&[1; 32], 3, 2.0));
        assert_ne!(a, count_noise(&[1; 32], 4, 2.0));
        assert_ne!(a, count_noise(&[2; 32], 3, 2.0));
        // Apart from the update's stream of the same seed and round.
        let mut acc = [0i64; 1];
        super::super::add_gaussian_noise(&mut acc, &[1; 32], 3, 2.0 * (1u64 << 30) as f64);
        assert_ne!((a * (1u64 << 30) as f64).round() as i64, acc[0]);
    }
}
