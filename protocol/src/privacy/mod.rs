//! Differential-privacy accounting: the Rényi DP (RDP) of the sampled Gaussian mechanism
//! (Mironov, Talwar and Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian
//! Mechanism"), composed over rounds, and its conversion to `(epsilon, delta)`.
//!
//! One round of client-level DP-FedAvg with Poisson sampling of clients at rate `q` and
//! Gaussian noise of `noise_multiplier * clip_norm` on the sum is one step of the sampled
//! Gaussian mechanism. At integer order `a >= 2` its RDP is `log(A_a) / (a - 1)` with
//!
//! ```text
//! A_a = sum_{i=0}^{a} C(a, i) (1 - q)^(a - i) q^i exp((i^2 - i) / (2 sigma^2))
//! ```
//!
//! (exact, summed in log space). RDP composes by addition over steps; `epsilon` is the
//! smallest over the orders of `rdp_total(a) + log(1/delta) / (a - 1)` (Mironov 2017,
//! Proposition 3), or with [`Conversion::Improved`] of Canonne, Kamath and Steinke 2020
//! (`rdp + log((a-1)/a) - (log delta + log a) / (a - 1)`), which is never larger.
//! Only integer orders are used, so `epsilon` is at least what an accountant with
//! fractional orders reports for the same run: an upper bound, never an underestimate.
//!
//! The arithmetic is `f64` through the `libm` crate (not the platform's maths library),
//! so the canister's wasm and a native verifier compute the same bits: the epsilon a
//! canister certifies after a round is recomputed exactly by `flic verify privacy`.
//!
//! Jobs with DP ([`DpConfig`]) use it: central DP's noise ([`add_gaussian_noise`]), its
//! scale ([`noise_std_fixed`]), distributed DP's share of it per client
//! ([`distributed_variance`], sampled by [`discrete_gaussian`]), and the budget
//! ([`DpConfig::epsilon_after`]).

pub mod adaptive_clip;
pub mod discrete_gaussian;

pub use adaptive_clip::AdaptiveClip;

use candid::CandidType;
use serde::{Deserialize, Serialize};

/// The orders an accountant tracks by default: 2 to 256.
pub const DEFAULT_ORDERS: std::ops::RangeInclusive<u32> = 2..=256;

/// Why an accounting question has no answer.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AccountantError {
    #[error("the sampling rate must be in [0, 1], got {0}")]
    SamplingRate(f64),
    #[error("the noise multiplier must be positive and finite, got {0}")]
    NoiseMultiplier(f64),
    #[error("delta must be in (0, 1), got {0}")]
    Delta(f64),
    #[error("orders must be integers of at least 2")]
    Orders,
}

/// One step of the sampled Gaussian mechanism.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampledGaussian {
    /// Probability that a given contributor takes part in a step (Poisson sampling).
    pub sampling_rate: f64,
    /// Noise standard deviation over the L2 sensitivity (the clip norm).
    pub noise_multiplier: f64,
}

impl SampledGaussian {
    fn check(&self) -> Result<(), AccountantError> {
        if !(0.0..=1.0).contains(&self.sampling_rate) {
            return Err(AccountantError::SamplingRate(self.sampling_rate));
        }
        if !(self.noise_multiplier.is_finite() && self.noise_multiplier > 0.0) {
            return Err(AccountantError::NoiseMultiplier(self.noise_multiplier));
        }
        Ok(())
    }

    /// The RDP of one step at integer order `a >= 2`.
    pub fn rdp(&self, a: u32) -> Result<f64, AccountantError> {
        self.check()?;
        if a < 2 {
            return Err(AccountantError::Orders);
        }
        let (q, s2) = (
            self.sampling_rate,
            self.noise_multiplier * self.noise_multiplier,
        );
        if q == 0.0 {
            return Ok(0.0);
        }
        let af = a as f64;
        if q == 1.0 {
            // The Gaussian mechanism: a / (2 sigma^2).
            return Ok(af / (2.0 * s2));
        }
        let (lq, l1q) = (libm::log(q), libm::log1p(-q));
        let terms: Vec<f64> = (0..=a)
            .map(|i| {
                let i = i as f64;
                ln_binomial(af, i) + i * lq + (af - i) * l1q + (i * i - i) / (2.0 * s2)
            })
            .collect();
        Ok(log_sum_exp(&terms) / (af - 1.0))
    }
}

fn ln_binomial(n: f64, k: f64) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

/// `ln(n!)` for whole `n` (at most the largest order), summed exactly enough in `f64`.
fn ln_factorial(n: f64) -> f64 {
    (2..=n as u64).map(|k| libm::log(k as f64)).sum()
}

fn log_sum_exp(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + libm::log(xs.iter().map(|x| libm::exp(x - m)).sum::<f64>())
}

/// How RDP becomes `(epsilon, delta)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversion {
    /// `rdp + log(1/delta) / (a - 1)` (Mironov 2017), what TensorFlow Privacy and Opacus
    /// reported for years.
    Classic,
    /// Canonne, Kamath and Steinke 2020: tighter, and what current accountants use.
    Improved,
}

/// RDP composed over the steps taken so far, at each tracked order.
#[derive(Clone, Debug, PartialEq)]
pub struct RdpAccountant {
    orders: Vec<u32>,
    rdp: Vec<f64>,
}

impl Default for RdpAccountant {
    fn default() -> Self {
        Self::new(DEFAULT_ORDERS.collect()).expect("the default orders are valid")
    }
}

impl RdpAccountant {
    pub fn new(orders: Vec<u32>) -> Result<Self, AccountantError> {
        if orders.is_empty() || orders.iter().any(|&a| a < 2) {
            return Err(AccountantError::Orders);
        }
        let rdp = vec![0.0; orders.len()];
        Ok(Self { orders, rdp })
    }

    /// Adds `steps` steps of `mechanism`.
    pub fn compose(
        &mut self,
        mechanism: SampledGaussian,
        steps: u64,
    ) -> Result<(), AccountantError> {
        for (r, &a) in self.rdp.iter_mut().zip(&self.orders) {
            *r += steps as f64 * mechanism.rdp(a)?;
        }
        Ok(())
    }

    /// The smallest `epsilon` over the orders for `delta`, and the order that gives it.
    pub fn epsilon(
        &self,
        delta: f64,
        conversion: Conversion,
    ) -> Result<(f64, u32), AccountantError> {
        if !(delta > 0.0 && delta < 1.0) {
            return Err(AccountantError::Delta(delta));
        }
        let ld = libm::log(delta);
        Ok(self
            .orders
            .iter()
            .zip(&self.rdp)
            .map(|(&a, &r)| {
                let af = a as f64;
                let e = match conversion {
                    Conversion::Classic => r - ld / (af - 1.0),
                    Conversion::Improved => {
                        r + libm::log1p(-1.0 / af) - (ld + libm::log(af)) / (af - 1.0)
                    }
                };
                (e.max(0.0), a)
            })
            .fold(
                (f64::INFINITY, 0),
                |best, x| if x.0 < best.0 { x } else { best },
            ))
    }
}

// ---------------------------------------------------------------- jobs with DP

/// Where the noise of a DP job comes from.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DpMode {
    /// The canister adds Gaussian noise to the round's sum when it closes, from randomness
    /// it asks the IC for (`raw_rand`) and erases after use: private against anyone who
    /// reads the models, not against the nodes that run the canister.
    Central,
    /// Each client adds discrete Gaussian noise to its masked input, so that the securely
    /// aggregated sum of the survivors carries the round's noise (Kairouz, Liu and Steinke
    /// 2021): private against the nodes as well. Needs secure aggregation.
    Distributed,
}

impl DpMode {
    /// `central` or `distributed`, as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            DpMode::Central => "central",
            DpMode::Distributed => "distributed",
        }
    }
}

/// Client-level differential privacy of a job (DP-FedAvg, McMahan et al. 2018): every
/// contribution is clipped to the job's `clip_norm` (the canister checks it), and each
/// round's weighted sum gets Gaussian noise of `noise_multiplier` times its sensitivity.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct DpConfig {
    pub mode: DpMode,
    /// Noise standard deviation over the L2 sensitivity of one round's sum.
    pub noise_multiplier: f64,
    /// The budget: no round starts that would take the spent epsilon above it.
    pub target_epsilon: f64,
    pub delta: f64,
    /// Adaptive clipping to a quantile of the update norms (`None`: the clip is the job's
    /// `clip_norm` in every round). Central DP only. See [`adaptive_clip`].
    pub adaptive_clip: Option<AdaptiveClip>,
}

/// The most a noise multiplier may be: beyond it a model learns nothing anyway.
pub const MAX_NOISE_MULTIPLIER: f64 = 1e4;

/// Why a DP configuration is refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DpError {
    #[error("distributed DP needs secure aggregation: its noise comes from the clients and is only private inside a masked sum (add secure aggregation, or use central DP)")]
    DistributedNeedsSecureAggregation,
    #[error("distributed DP's noise of {sigma:.3e} fixed-point units does not fit the i64 sum at any fractional bits from {min_frac_bits}: lower max_clients, max_weight, clip_norm or the noise")]
    DistributedRange { sigma: f64, min_frac_bits: u32 },
    #[error("distributed DP's noise per client is {client_std:.2} fixed-point units, below {MIN_CLIENT_STD}: the sum of discrete Gaussians would drift from the Gaussian the accountant counts; raise the noise, max_weight or clip_norm")]
    DistributedTooFine { client_std: f64 },
    #[error("adaptive clipping needs central DP: each client's bit would have to be summed inside the masks with its own noise, which is not built (use --dp central, or a fixed clip)")]
    AdaptiveClipNeedsCentral,
    #[error("adaptive clipping does not work with secure aggregation yet: the canister would see each client's bit in the clear (drop one of them)")]
    AdaptiveClipWithSecureAggregation,
    #[error("the clip's target quantile must be in (0, 1), got {0}")]
    ClipQuantile(f64),
    #[error("the clip's learning rate must be in (0, 10], got {0}")]
    ClipLearningRate(f64),
    #[error("the clip count's noise {count_noise_std} must be above half the noise multiplier {noise_multiplier}: at or below it the count spends the whole round's privacy")]
    ClipCountNoise {
        count_noise_std: f64,
        noise_multiplier: f64,
    },
    #[error("the noise multiplier must be in (0, {MAX_NOISE_MULTIPLIER}], got {0}")]
    NoiseMultiplier(f64),
    #[error("the target epsilon must be positive and finite, got {0}")]
    Epsilon(f64),
    #[error("delta must be in (0, 1), got {0}")]
    Delta(f64),
    #[error("one round with noise multiplier {noise_multiplier} already spends epsilon {one_round:.4}, above the target {target_epsilon}: raise the noise or the target")]
    NoRoundFits {
        noise_multiplier: f64,
        one_round: f64,
        target_epsilon: f64,
    },
    #[error("no noise multiplier up to {MAX_NOISE_MULTIPLIER} keeps {rounds} rounds within epsilon {target_epsilon} at delta {delta}")]
    Unreachable {
        rounds: u64,
        target_epsilon: f64,
        delta: f64,
    },
}

impl DpConfig {
    /// The mechanism of one round. Every contributor may take part in every round (the
    /// canister does not sample them), so there is no amplification by sampling: `q = 1`.
    pub fn mechanism(&self) -> SampledGaussian {
        SampledGaussian {
            sampling_rate: 1.0,
            noise_multiplier: self.noise_multiplier,
        }
    }

    /// Checks every field, and that at least one round fits the budget.
    pub fn check(&self) -> Result<(), DpError> {
        if !(self.noise_multiplier > 0.0 && self.noise_multiplier <= MAX_NOISE_MULTIPLIER) {
            return Err(DpError::NoiseMultiplier(self.noise_multiplier));
        }
        if !(self.target_epsilon.is_finite() && self.target_epsilon > 0.0) {
            return Err(DpError::Epsilon(self.target_epsilon));
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(DpError::Delta(self.delta));
        }
        if let Some(clip) = &self.adaptive_clip {
            if self.mode != DpMode::Central {
                return Err(DpError::AdaptiveClipNeedsCentral);
            }
            clip.check(self.noise_multiplier)?;
        }
        let one_round = self.epsilon_after(1);
        if one_round > self.target_epsilon {
            return Err(DpError::NoRoundFits {
                noise_multiplier: self.noise_multiplier,
                one_round,
                target_epsilon: self.target_epsilon,
            });
        }
        Ok(())
    }

    /// The noise multiplier of the round's update: the job's, or with adaptive clipping
    /// the larger one that leaves room for the count's noise
    /// ([`AdaptiveClip::update_noise_multiplier`]).
    pub fn update_noise_multiplier(&self) -> f64 {
        match &self.adaptive_clip {
            Some(clip) => clip.update_noise_multiplier(self.noise_multiplier),
            None => self.noise_multiplier,
        }
    }

    /// The epsilon spent by `rounds` rounds at this job's delta (RDP over orders 2 to
    /// 256, the improved conversion). 0 for no rounds. A checked configuration only.
    pub fn epsilon_after(&self, rounds: u64) -> f64 {
        epsilon_of_rounds(self.noise_multiplier, self.delta, rounds)
    }

    /// How many rounds fit the budget in all.
    pub fn rounds_within_budget(&self) -> u64 {
        // epsilon grows with the rounds: the largest n with epsilon_after(n) <= target.
        let (mut lo, mut hi) = (0u64, 1u64);
        while hi < 1 << 40 && self.epsilon_after(hi) <= self.target_epsilon {
            lo = hi;
            hi *= 2;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.epsilon_after(mid) <= self.target_epsilon {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Whether one more round after `rounds_done` stays within the budget.
    pub fn allows_round(&self, rounds_done: u64) -> bool {
        self.epsilon_after(rounds_done + 1) <= self.target_epsilon
    }
}

fn epsilon_of_rounds(noise_multiplier: f64, delta: f64, rounds: u64) -> f64 {
    if rounds == 0 {
        return 0.0;
    }
    let mut acc = RdpAccountant::default();
    let mechanism = SampledGaussian {
        sampling_rate: 1.0,
        noise_multiplier,
    };
    match acc
        .compose(mechanism, rounds)
        .and_then(|()| acc.epsilon(delta, Conversion::Improved))
    {
        Ok((eps, _)) => eps,
        Err(_) => f64::INFINITY,
    }
}

/// The smallest noise multiplier (to 1e-6 relative) with which `rounds` rounds spend at
/// most `target_epsilon` at `delta`: what `--dp-epsilon` sets when no noise is given.
pub fn noise_for_budget(target_epsilon: f64, delta: f64, rounds: u64) -> Result<f64, DpError> {
    if !(target_epsilon.is_finite() && target_epsilon > 0.0) {
        return Err(DpError::Epsilon(target_epsilon));
    }
    if !(delta > 0.0 && delta < 1.0) {
        return Err(DpError::Delta(delta));
    }
    let fits = |z: f64| epsilon_of_rounds(z, delta, rounds.max(1)) <= target_epsilon;
    if !fits(MAX_NOISE_MULTIPLIER) {
        return Err(DpError::Unreachable {
            rounds,
            target_epsilon,
            delta,
        });
    }
    let (mut lo, mut hi) = (1e-3, MAX_NOISE_MULTIPLIER);
    if fits(lo) {
        return Ok(lo);
    }
    while hi / lo > 1.0 + 1e-6 {
        let mid = libm::sqrt(lo * hi);
        if fits(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// Bound on the L2 norm, in fixed-point units of `2^-frac_bits`, of one validated
/// contribution's addition to the accumulator: `max_weight` times the clip bound (with the
/// validator's tolerance) plus the rounding of each of `param_count` elements (at most
/// [`crate::fedavg::ROUNDING_HEADROOM`] units each). The sum's sensitivity to adding or
/// removing one contribution.
pub fn sensitivity_fixed(clip_norm: f32, max_weight: u64, frac_bits: u32, param_count: u64) -> f64 {
    let clip = clip_norm as f64 * (1.0 + crate::encoding::CLIP_TOLERANCE);
    let rounding = crate::fedavg::ROUNDING_HEADROOM as f64 * libm::sqrt(param_count as f64);
    max_weight as f64 * (clip * libm::exp2(frac_bits as f64) + rounding)
}

/// The update noise's standard deviation in fixed-point units for `dp` on a job's limits
/// (`clip_norm` is the round's clip).
pub fn noise_std_fixed(
    dp: &DpConfig,
    clip_norm: f32,
    max_weight: u64,
    frac_bits: u32,
    param_count: u64,
) -> f64 {
    dp.update_noise_multiplier() * sensitivity_fixed(clip_norm, max_weight, frac_bits, param_count)
}

// ---------------------------------------------------------------- distributed DP

/// The least standard deviation, in fixed-point units, of one client's discrete Gaussian
/// in distributed DP. The sum of `n` discrete Gaussians of variance `s^2` is not one
/// discrete Gaussian; Kairouz, Liu and Steinke 2021 (Proposition 14) bound its RDP at order
/// `a` by `a D^2 / (2 n s^2) + tau d` ([`distributed_tau`]). At `s >= 9` every term of
/// `tau` is below `e^-799`, under the smallest positive `f64`: the correction is exactly 0
/// in the accountant's arithmetic and adding it could not change one bit of an epsilon, so
/// distributed rounds are accounted as the Gaussian mechanism's, like central ones.
pub const MIN_CLIENT_STD: f64 = 9.0;

/// Standard deviations of the round's noise that a distributed job's accumulator keeps
/// room for beyond its worst-case sum: the chance that a sum of discrete Gaussians passes
/// 64 of them is below `2 exp(-64^2 / 4)`, about 2^-1476 (the sum's variance is at most
/// twice the round's; see [`distributed_variance`]).
pub const NOISE_TAIL_SIGMAS: f64 = 64.0;

/// Kairouz et al.'s `tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s^2 k / (k + 1))` for `n`
/// summands of variance `s^2` (fixed-point units squared).
pub fn distributed_tau(client_variance: f64, clients: u32) -> f64 {
    let c = 2.0 * core::f64::consts::PI * core::f64::consts::PI * client_variance;
    10.0 * (1..clients.max(1))
        .map(|k| libm::exp(-c * k as f64 / (k as f64 + 1.0)))
        .sum::<f64>()
}

/// The variance, in fixed-point units squared, of the discrete Gaussian each client adds
/// to its masked input in a secure round of threshold `threshold`: the round's noise
/// variance over `t`, rounded up. A secure sum has at least `t` masked inputs (a round
/// with fewer starts over), so the sum's noise variance is at least the round's, whoever
/// drops out; it is below twice the round's, since `t > n / 2`.
pub fn distributed_variance(
    dp: &DpConfig,
    clip_norm: f32,
    max_weight: u64,
    frac_bits: u32,
    param_count: u64,
    threshold: u32,
) -> Result<discrete_gaussian::Variance, DpError> {
    let round = noise_std_fixed(dp, clip_norm, max_weight, frac_bits, param_count);
    let per_client = (round * round / threshold.max(1) as f64).ceil();
    if !(per_client.is_finite() && per_client >= MIN_CLIENT_STD * MIN_CLIENT_STD) {
        return Err(DpError::DistributedTooFine {
            client_std: libm::sqrt(per_client),
        });
    }
    discrete_gaussian::Variance::integer(per_client as u128).map_err(|_| {
        DpError::DistributedRange {
            sigma: round,
            min_frac_bits: frac_bits,
        }
    })
}

/// The fractional bits of a distributed-DP job: the largest at most `safe` (the limits'
/// own, [`crate::fedavg::AggregationLimits::safe_frac_bits`]) at which the worst-case sum
/// plus [`NOISE_TAIL_SIGMAS`] of its noise stays inside `i64`, and each client's noise is
/// at least [`MIN_CLIENT_STD`] units at `max_clients` participants.
pub fn distributed_frac_bits(
    dp: &DpConfig,
    limits: &crate::fedavg::AggregationLimits,
    param_count: u64,
    safe: u32,
) -> Result<u32, DpError> {
    let fits = |f: u32| {
        let sigma = noise_std_fixed(dp, limits.clip_norm, limits.max_weight, f, param_count);
        let room =
            limits.worst_case(f) as f64 + NOISE_TAIL_SIGMAS * core::f64::consts::SQRT_2 * sigma;
        // 2^62: half the i64 range, a margin for the f64 arithmetic of the bound itself.
        room < libm::exp2(62.0)
    };
    let f = (crate::fedavg::MIN_FRAC_BITS..=safe)
        .rev()
        .find(|&f| fits(f))
        .ok_or(DpError::DistributedRange {
            sigma: noise_std_fixed(
                dp,
                limits.clip_norm,
                limits.max_weight,
                crate::fedavg::MIN_FRAC_BITS,
                param_count,
            ),
            min_frac_bits: crate::fedavg::MIN_FRAC_BITS,
        })?;
    // The finest noise is that of the most participants (the threshold grows with them).
    let most = limits.max_clients.min(u32::MAX as u64) as u32;
    distributed_variance(
        dp,
        limits.clip_norm,
        limits.max_weight,
        f,
        param_count,
        most,
    )?;
    Ok(f)
}

/// Domain tag of the noise stream's key.
pub const NOISE_TAG: &[u8] = b"flic/dp-noise/v1";

/// 2^63 as an `f64`: the first magnitude outside the `i64` range.
const TWO_63: f64 = 9_223_372_036_854_775_808.0;

/// Adds Gaussian noise of standard deviation `std_fixed` to every element of `acc`,
/// saturating at the `i64` range (a clamp of the noised value: post-processing, which
/// costs no privacy). The normals come from ChaCha12 keyed by
/// `sha256(NOISE_TAG || seed || round)`, so the same secret seed gives
/// the same noise on every replica; without the seed nobody can predict or remove it.
/// The normals are drawn by Marsaglia's polar method.
pub fn add_gaussian_noise(acc: &mut [i64], seed: &[u8; 32], round: u64, std_fixed: f64) {
    let mut normals = Normals::new(crate::hash::sha256_concat(&[
        NOISE_TAG,
        seed,
        &round.to_le_bytes(),
    ]));
    for a in acc.iter_mut() {
        let n = crate::fedavg::round_half_away(normals.next_normal() * std_fixed);
        *a = if n.abs() < TWO_63 {
            // Both in the i64 range: saturating addition is the exact clamp of the sum.
            a.saturating_add(n as i64)
        } else {
            // Noise beyond the i64 range (an absurd scale): the sum's sign is the noise's.
            if n > 0.0 {
                i64::MAX
            } else {
                i64::MIN
            }
        };
    }
}

/// Standard normals from ChaCha12 keyed by `key`, by Marsaglia's polar method.
pub(crate) struct Normals {
    rng: rand_chacha::ChaCha12Rng,
    spare: Option<f64>,
}

impl Normals {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        use rand_chacha::rand_core::SeedableRng;
        // ChaCha12: the rounds `rand`'s `StdRng` uses, cryptographically strong and 40%
        // cheaper than ChaCha20 in the canister, where the noise is most of a DP close.
        Self {
            rng: rand_chacha::ChaCha12Rng::from_seed(key),
            spare: None,
        }
    }

    pub(crate) fn next_normal(&mut self) -> f64 {
        use rand_chacha::rand_core::RngCore;
        if let Some(z) = self.spare.take() {
            return z;
        }
        // A point uniform in the unit disc (53-bit coordinates in [-1, 1)), then two
        // normals from one log and one square root (IEEE square roots are exact to the bit
        // everywhere; `libm` gives the log). About 1.27 points per pair.
        let unit = |x: u64| (x >> 11) as f64 * (1.0 / (1u64 << 52) as f64) - 1.0;
        loop {
            let (u, v) = (unit(self.rng.next_u64()), unit(self.rng.next_u64()));
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let f = (-2.0 * libm::log(s) / s).sqrt();
                self.spare = Some(v * f);
                return u * f;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mnist(noise: f64, batch: f64, steps: u64) -> RdpAccountant {
        let mut acc = RdpAccountant::default();
        acc.compose(
            SampledGaussian {
                sampling_rate: batch / 60_000.0,
                noise_multiplier: noise,
            },
            steps,
        )
        .unwrap();
        acc
    }

    /// TensorFlow Privacy's MNIST tutorial: 60,000 examples, batches of 250, noise 1.3,
    /// 15 epochs (3,600 steps), delta 1e-5 "satisfies differential privacy with eps = 1.18".
    #[test]
    fn the_published_dp_sgd_tutorial_value() {
        let (eps, order) = mnist(1.3, 250.0, 3600)
            .epsilon(1e-5, Conversion::Classic)
            .unwrap();
        assert!((eps - 1.18).abs() < 0.005, "epsilon {eps} at order {order}");
        // The improved conversion is tighter, never looser.
        let (better, _) = mnist(1.3, 250.0, 3600)
            .epsilon(1e-5, Conversion::Improved)
            .unwrap();
        assert!(better < eps && better > 0.5, "{better}");
    }

    #[test]
    fn the_gaussian_mechanism_is_a_over_two_sigma_squared() {
        let g = SampledGaussian {
            sampling_rate: 1.0,
            noise_multiplier: 2.0,
        };
        for a in [2u32, 3, 10, 256] {
            assert_eq!(g.rdp(a).unwrap(), a as f64 / 8.0);
        }
        // The binomial sum at q just below 1 meets the closed form.
        let near = SampledGaussian {
            sampling_rate: 1.0 - 1e-12,
            ..g
        };
        assert!((near.rdp(10).unwrap() - 10.0 / 8.0).abs() < 1e-6);
        // Nobody sampled: no privacy spent.
        let none = SampledGaussian {
            sampling_rate: 0.0,
            ..g
        };
        assert_eq!(none.rdp(5).unwrap(), 0.0);
    }

    #[test]
    fn more_steps_rate_or_less_noise_spend_more() {
        let (base, _) = mnist(1.1, 256.0, 1000)
            .epsilon(1e-5, Conversion::Improved)
            .unwrap();
        for (noise, batch, steps) in [(1.1, 256.0, 2000), (1.1, 512.0, 1000), (0.9, 256.0, 1000)] {
            let (e, _) = mnist(noise, batch, steps)
                .epsilon(1e-5, Conversion::Improved)
                .unwrap();
            assert!(e > base, "{noise} {batch} {steps}: {e} <= {base}");
        }
        let (looser, _) = mnist(1.1, 256.0, 1000)
            .epsilon(1e-3, Conversion::Improved)
            .unwrap();
        assert!(looser < base);
    }

    #[test]
    fn bad_questions_are_typed_errors() {
        let g = |q, s| SampledGaussian {
            sampling_rate: q,
            noise_multiplier: s,
        };
        assert_eq!(g(1.5, 1.0).rdp(2), Err(AccountantError::SamplingRate(1.5)));
        assert_eq!(
            g(0.1, 0.0).rdp(2),
            Err(AccountantError::NoiseMultiplier(0.0))
        );
        assert!(matches!(
            g(0.1, f64::NAN).rdp(2),
            Err(AccountantError::NoiseMultiplier(_))
        ));
        assert_eq!(g(0.1, 1.0).rdp(1), Err(AccountantError::Orders));
        assert_eq!(RdpAccountant::new(vec![]), Err(AccountantError::Orders));
        let acc = RdpAccountant::default();
        for d in [0.0, 1.0, -1.0, f64::NAN] {
            assert!(matches!(
                acc.epsilon(d, Conversion::Classic),
                Err(AccountantError::Delta(_))
            ));
        }
    }

    fn central(noise_multiplier: f64, target_epsilon: f64) -> DpConfig {
        DpConfig {
            mode: DpMode::Central,
            noise_multiplier,
            target_epsilon,
            delta: 1e-5,
            adaptive_clip: None,
        }
    }

    /// Without sampling a round is the Gaussian mechanism: `T a / (2 sigma^2)` at order
    /// `a`, so the classic conversion is a minimum computed here by hand.
    #[test]
    fn rounds_without_sampling_compose_as_gaussian_mechanisms() {
        for (sigma, rounds) in [(1.0f64, 1u64), (2.0, 10), (0.8, 3)] {
            let mut acc = RdpAccountant::default();
            acc.compose(central(sigma, 1.0).mechanism(), rounds)
                .unwrap();
            let (eps, _) = acc.epsilon(1e-5, Conversion::Classic).unwrap();
            let by_hand = (2..=256u32)
                .map(|a| {
                    let a = a as f64;
                    rounds as f64 * a / (2.0 * sigma * sigma) + (1e5f64).ln() / (a - 1.0)
                })
                .fold(f64::INFINITY, f64::min);
            assert!(
                (eps - by_hand).abs() < 1e-9,
                "{sigma} {rounds}: {eps} vs {by_hand}"
            );
        }
        // sigma 1, one round, delta 1e-5: 5.30 by the classic conversion (order 6).
        let mut acc = RdpAccountant::default();
        acc.compose(central(1.0, 1.0).mechanism(), 1).unwrap();
        let (eps, order) = acc.epsilon(1e-5, Conversion::Classic).unwrap();
        assert_eq!(order, 6);
        assert!((eps - (3.0 + (1e5f64).ln() / 5.0)).abs() < 1e-12);
    }

    #[test]
    fn the_budget_counts_rounds() {
        let dp = central(1.5, 8.0);
        dp.check().unwrap();
        assert_eq!(dp.epsilon_after(0), 0.0);
        let mut last = 0.0;
        for r in 1..30 {
            let e = dp.epsilon_after(r);
            assert!(e > last, "round {r}");
            last = e;
        }
        let n = dp.rounds_within_budget();
        assert!(n >= 1);
        assert!(dp.epsilon_after(n) <= 8.0 && dp.epsilon_after(n + 1) > 8.0);
        assert!(dp.allows_round(n - 1) && !dp.allows_round(n));
    }

    #[test]
    fn calibration_finds_the_least_noise_that_fits() {
        for (eps, rounds) in [(1.0, 10u64), (8.0, 30), (50.0, 100), (3.0, 1)] {
            let z = noise_for_budget(eps, 1e-5, rounds).unwrap();
            let dp = central(z, eps);
            assert!(dp.epsilon_after(rounds) <= eps, "{eps} {rounds}");
            let less = central(z * (1.0 - 1e-4), eps);
            assert!(
                less.epsilon_after(rounds) > eps,
                "{eps} {rounds}: {z} is not the least"
            );
            assert!(dp.rounds_within_budget() >= rounds);
        }
        assert!(matches!(
            noise_for_budget(1e-9, 1e-5, 1_000_000),
            Err(DpError::Unreachable { .. })
        ));
        assert_eq!(noise_for_budget(0.0, 1e-5, 1), Err(DpError::Epsilon(0.0)));
        assert_eq!(noise_for_budget(1.0, 1.0, 1), Err(DpError::Delta(1.0)));
    }

    #[test]
    fn distributed_noise_splits_the_rounds_variance_over_the_threshold() {
        let dp = DpConfig {
            mode: DpMode::Distributed,
            ..central(1.0, 10.0)
        };
        let round = noise_std_fixed(&dp, 1.0, 1, 24, 10_000);
        for t in [2, 6, 101] {
            let v = distributed_variance(&dp, 1.0, 1, 24, 10_000, t).unwrap();
            assert_eq!(v.den, 1);
            // Rounded up: t clients' noise is never below the round's.
            assert!(t as f64 * v.num as f64 >= round * round);
            assert!((t as f64 * (v.num - 1) as f64) < round * round * (1.0 + 1e-12));
        }
        // Noise finer than MIN_CLIENT_STD units per client is refused.
        assert!(matches!(
            distributed_variance(&dp, 1e-30, 1, 16, 1, 200),
            Err(DpError::DistributedTooFine { .. })
        ));
    }

    #[test]
    fn the_discrete_sums_correction_vanishes_above_the_floor() {
        // Kairouz et al.'s tau: positive for small per-client noise, and exactly 0 in
        // f64 from MIN_CLIENT_STD on, for any number of clients.
        assert!(distributed_tau(0.25, 10) > 1e-3);
        assert!(distributed_tau(1.0, 200) > 0.0);
        assert_eq!(
            distributed_tau(MIN_CLIENT_STD * MIN_CLIENT_STD, 1_000_000),
            0.0
        );
        assert_eq!(
            distributed_tau(1.0, 1),
            0.0,
            "one summand is one discrete Gaussian"
        );
    }

    #[test]
    fn distributed_jobs_lower_their_fractional_bits_to_fit_the_noise() {
        use crate::fedavg::AggregationLimits;
        let dp = DpConfig {
            mode: DpMode::Distributed,
            ..central(1.0, 10.0)
        };
        let limits = AggregationLimits {
            max_clients: 10,
            max_weight: 1,
            clip_norm: 1.0,
        };
        let safe = limits.safe_frac_bits().unwrap();
        assert_eq!(distributed_frac_bits(&dp, &limits, 1000, safe), Ok(safe));
        // A weight cap that leaves the sum room but not the noise: fewer bits.
        let heavy = AggregationLimits {
            max_weight: 100_000,
            ..limits
        };
        let safe = heavy.safe_frac_bits().unwrap();
        let loud = DpConfig {
            noise_multiplier: 100.0,
            ..dp
        };
        let f = distributed_frac_bits(&loud, &heavy, 1000, safe).unwrap();
        assert!(f < safe, "{f} < {safe}");
        let sigma = noise_std_fixed(&loud, 1.0, 100_000, f, 1000);
        assert!(
            heavy.worst_case(f) as f64 + NOISE_TAIL_SIGMAS * 2f64.sqrt() * sigma < 2f64.powi(62)
        );
        // Nothing fits at all: a typed error.
        let deafening = DpConfig {
            noise_multiplier: MAX_NOISE_MULTIPLIER,
            ..dp
        };
        let huge = AggregationLimits {
            max_clients: 200,
            max_weight: 100_000_000,
            clip_norm: 1.0,
        };
        let safe = huge.safe_frac_bits().unwrap();
        assert!(matches!(
            distributed_frac_bits(&deafening, &huge, 1000, safe),
            Err(DpError::DistributedRange { .. })
        ));
    }

    #[test]
    fn bad_dp_configurations_are_typed_errors() {
        let ok = central(1.0, 10.0);
        ok.check().unwrap();
        let with = |f: &dyn Fn(&mut DpConfig)| {
            let mut c = ok;
            f(&mut c);
            c.check()
        };
        // Distributed DP checks the same fields (what it needs of the job, its
        // validation checks).
        assert_eq!(with(&|c| c.mode = DpMode::Distributed), Ok(()));
        for z in [0.0, -1.0, f64::NAN, f64::INFINITY, 2e4] {
            assert!(matches!(
                with(&|c| c.noise_multiplier = z),
                Err(DpError::NoiseMultiplier(_))
            ));
        }
        for e in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                with(&|c| c.target_epsilon = e),
                Err(DpError::Epsilon(_))
            ));
        }
        for d in [0.0, 1.0, f64::NAN] {
            assert!(matches!(with(&|c| c.delta = d), Err(DpError::Delta(_))));
        }
        assert!(matches!(
            with(&|c| c.target_epsilon = 0.5),
            Err(DpError::NoRoundFits { .. })
        ));
    }

    #[test]
    fn the_noise_is_gaussian_seeded_and_saturating() {
        let n = 200_000;
        let std = 1000.0;
        let mut acc = vec![0i64; n];
        add_gaussian_noise(&mut acc, &[7; 32], 3, std);
        let mean = acc.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        let var = acc.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 5.0 * std / (n as f64).sqrt(), "mean {mean}");
        assert!((var.sqrt() / std - 1.0).abs() < 0.01, "std {}", var.sqrt());
        // Tails as a normal's: about 4.55% beyond two standard deviations.
        let beyond = acc
            .iter()
            .filter(|&&x| (x as f64).abs() > 2.0 * std)
            .count();
        assert!(
            (beyond as f64 / n as f64 - 0.0455).abs() < 0.003,
            "{beyond}"
        );
        // The same seed and round give the same noise; another seed or round does not.
        let mut again = vec![0i64; n];
        add_gaussian_noise(&mut again, &[7; 32], 3, std);
        assert_eq!(acc, again);
        for (seed, round) in [([8u8; 32], 3u64), ([7; 32], 4)] {
            let mut other = vec![0i64; 64];
            add_gaussian_noise(&mut other, &seed, round, std);
            assert_ne!(other, acc[..64]);
        }
        // It adds to what is there, and saturates instead of wrapping.
        let mut edge = vec![i64::MAX, i64::MIN, 5];
        add_gaussian_noise(&mut edge, &[1; 32], 0, 1e30);
        assert!(
            edge.iter().all(|&x| x == i64::MAX || x == i64::MIN),
            "{edge:?}"
        );
    }

    #[test]
    fn the_sensitivity_bounds_a_contribution_in_fixed_point() {
        // One element at the clip, weight 1: clip * 2^f, plus the rounding of each element.
        let s = sensitivity_fixed(2.0, 1, 20, 100);
        let expected =
            2.0 * (1.0 + crate::encoding::CLIP_TOLERANCE) * (1u64 << 20) as f64 + 64.0 * 10.0;
        assert!((s - expected).abs() < 1e-6);
        assert_eq!(sensitivity_fixed(2.0, 3, 20, 100), 3.0 * s);
        let dp = central(1.5, 10.0);
        assert_eq!(noise_std_fixed(&dp, 2.0, 1, 20, 100), 1.5 * s);
    }
}
