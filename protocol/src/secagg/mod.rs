//! Secure-aggregation arithmetic over the integer accumulator (groundwork for issue 18):
//! masks that cancel exactly in `Z_{2^64}`, and Shamir sharing of mask seeds.
//!
//! The accumulator adds `i64` values with wrapping arithmetic, which is addition in
//! `Z_{2^64}`. In the scheme of Bonawitz et al. 2017 (and SecAgg+, Bell et al. 2020, over
//! a sparse graph) contributor `i` uploads
//!
//! ```text
//! y_i = x_i + PRG(b_i) + sum_{j > i} PRG(s_ij) - sum_{j < i} PRG(s_ij)   (mod 2^64)
//! ```
//!
//! where `x_i` is its fixed-point delta times its weight, `b_i` a self-mask seed and `s_ij`
//! the seed it agrees with `j`. The pairwise masks cancel in the sum of every survivor's
//! `y_i`; what is left is removed with seeds revealed after the uploads: each survivor's
//! `b_i`, and, for each contributor that dropped out, its pairwise seeds with the
//! survivors (reconstructed from Shamir shares its peers hold). The sum is then the
//! unmasked sum bit for bit, whatever the order.
//!
//! Here: the job option ([`SecAggConfig`]) and its threshold, the mask stream ([`mask`]),
//! a client's masked input ([`masked_input`]), masking ([`mask_into`]), unmasking
//! ([`remove_masks`]), and `t`-of-`n` Shamir sharing of 32-byte seeds over the prime field
//! `GF(2^61 - 1)` ([`share_seed`], [`reconstruct_seed`]); in [`keys`], the participants'
//! signed X25519 keys, the seeds they agree on, and the encrypted envelopes that carry
//! their shares to each other; in [`unmask`], what the canister does with the shares the
//! survivors reveal. The phases on the canister's timers are in the aggregator canister
//! (`rounds/secagg.rs`), a client's side in the `flic` client (`secagg.rs`).
//!
//! The graph is complete (every pair of participants masks, as in Bonawitz et al.), and
//! the server is honest but curious, which is what the IC's replicated execution gives
//! against node providers who read memory but cannot change what the canister computes.

use candid::CandidType;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::fedavg::{pow2, round_half_away};
use crate::hash::sha256_concat;

pub mod keys;
pub mod participant;
pub mod unmask;

/// A job's secure aggregation: every round runs the four phases (advertise keys, share
/// keys, masked input, unmask), each until all its participants have acted or until its
/// deadline, and survives up to `max_dropout_fraction` of the participants dropping out.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct SecAggConfig {
    /// The fraction of a round's participants that may drop out, in `[0, 0.5)`: the
    /// Shamir threshold is `n - floor(n * fraction)`, and never below a majority.
    pub max_dropout_fraction: f64,
    /// How long each phase waits for its participants (the advertise phase waits for
    /// `min_clients` beyond it, like a round without secure aggregation).
    pub phase_duration_ns: u64,
}

/// Why a secure-aggregation configuration is refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SecAggError {
    #[error("the dropout fraction must be in [0, 0.5), got {0}: at half or more, a minority of the participants could unmask")]
    DropoutFraction(f64),
    #[error("a phase lasts at least one second, got {0} ns")]
    PhaseDuration(u64),
    #[error("secure aggregation needs at least 3 participants per round (min_clients {0}): with 2, each learns the other's delta from the sum")]
    TooFewClients(u32),
    #[error("secure aggregation takes at most {MAX_PARTICIPANTS} participants per round, got max_clients {0}")]
    TooManyClients(u32),
    #[error("{dropouts} dropouts of {participants} participants: secure aggregation survives fewer than half dropping out")]
    TooManyDropouts { dropouts: u32, participants: u32 },
}

/// The most participants a round with secure aggregation takes: the envelopes grow as
/// `n^2` and the unmasking's seeds as `n` times the dropped.
pub const MAX_PARTICIPANTS: u32 = 200;

impl SecAggConfig {
    /// The configuration that survives `dropouts` of `max_clients` participants dropping
    /// out: the fraction is `(K + 1/2) / n`, so that `floor(n * fraction)` is exactly K.
    pub fn tolerating(
        dropouts: u32,
        max_clients: u32,
        phase_duration_ns: u64,
    ) -> Result<Self, SecAggError> {
        let n = max_clients.max(1) as f64;
        let max_dropout_fraction = if dropouts == 0 {
            0.0
        } else {
            (dropouts as f64 + 0.5) / n
        };
        if max_dropout_fraction >= 0.5 {
            return Err(SecAggError::TooManyDropouts {
                dropouts,
                participants: max_clients,
            });
        }
        Ok(Self {
            max_dropout_fraction,
            phase_duration_ns,
        })
    }

    pub fn check(&self, min_clients: u32, max_clients: u32) -> Result<(), SecAggError> {
        let f = self.max_dropout_fraction;
        if !(0.0..0.5).contains(&f) {
            return Err(SecAggError::DropoutFraction(f));
        }
        if self.phase_duration_ns < 1_000_000_000 {
            return Err(SecAggError::PhaseDuration(self.phase_duration_ns));
        }
        if min_clients < 3 {
            return Err(SecAggError::TooFewClients(min_clients));
        }
        if max_clients > MAX_PARTICIPANTS {
            return Err(SecAggError::TooManyClients(max_clients));
        }
        Ok(())
    }

    /// The Shamir threshold of a round with `n` participants.
    pub fn threshold(&self, n: u32) -> u32 {
        threshold(n, self.max_dropout_fraction)
    }

    /// The most seeds an unmasking expands, at `n` participants: every survivor's self
    /// mask and, for every dropped participant, its pairwise mask with every survivor.
    pub fn worst_case_seeds(&self, n: u32) -> u64 {
        let t = self.threshold(n) as u64;
        let dropped = n as u64 - t;
        // Survivors s >= t, dropped d = n - s <= n - t: s + s d is largest at s = t when
        // d >= 1 (or at s = n with none dropped).
        (n as u64).max(t + t * dropped)
    }
}

/// `max(floor(n / 2) + 1, n - floor(n * fraction))`, at most `n`: the shares needed to
/// rebuild a seed. A majority at least, so that the canister cannot get both of one
/// participant's secrets from two disjoint sets of participants.
pub fn threshold(n: u32, fraction: f64) -> u32 {
    let tolerated = libm::floor(n as f64 * fraction.clamp(0.0, 1.0)) as u32;
    (n / 2 + 1).max(n.saturating_sub(tolerated)).min(n)
}

/// Domain tag of the commitment to a self-mask seed.
pub const SELF_SEED_TAG: &[u8] = b"flic/secagg-self-seed/v1";

/// `sha256(SELF_SEED_TAG || b)`: what a participant publishes of its self-mask seed, so
/// that the seed the canister rebuilds from shares can be checked (32 random bytes: the
/// hash tells nothing of them).
pub fn commit_self_seed(seed: &[u8; 32]) -> [u8; 32] {
    sha256_concat(&[SELF_SEED_TAG, seed])
}

/// A participant's masked input: `weight * fixed(delta_k)` (exactly as the canister
/// accumulates an `f32` delta), plus its masks (see [`masked`]). `delta` must already be
/// clipped: nobody can check it afterwards.
pub fn masked_input(
    delta: &[f32],
    weight: u64,
    frac_bits: u32,
    index: u32,
    self_seed: &[u8; 32],
    pairwise: &[(u32, [u8; 32])],
) -> Vec<i64> {
    masked(
        &weighted_fixed(delta, weight, frac_bits),
        index,
        self_seed,
        pairwise,
    )
}

/// The integers a masked input hides: `weight * fixed(delta)`, what a plain upload adds to
/// the accumulator.
pub fn weighted_fixed(delta: &[f32], weight: u64, frac_bits: u32) -> Vec<i64> {
    let (w, scale) = (weight as i64, pow2(frac_bits));
    delta
        .iter()
        .map(|&d| w.wrapping_mul(round_half_away(d as f64 * scale) as i64))
        .collect()
}

/// The bytes of a masked input as it is uploaded (`DeltaEncoding::Masked`): `i64` LE.
pub fn masked_bytes(words: &[i64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Domain tag of the mask stream.
pub const MASK_TAG: &[u8] = b"flic/secagg-mask/v1";

/// The mask stream of `seed`: the `u64`s of ChaCha12 keyed by
/// `sha256(MASK_TAG || seed)` (`rand_chacha`'s stream, whose output is fixed by its
/// version: pinned in the workspace). ChaCha12 rather than a hash per block, since the
/// canister expands one stream per survivor and per dropped pair over every parameter.
pub fn mask(seed: &[u8; 32], len: usize) -> Vec<u64> {
    let mut rng = rand_chacha::ChaCha12Rng::from_seed(sha256_concat(&[MASK_TAG, seed]));
    (0..len).map(|_| rng.next_u64()).collect()
}

/// Adds (`sign = 1`) or subtracts (`sign = -1`) the mask of `seed` into `values`, mod 2^64.
pub fn mask_into(values: &mut [i64], seed: &[u8; 32], sign: i8) {
    // Streamed: no vector of the mask is made (the canister's unmasking runs over every
    // parameter once per seed).
    let mut rng = rand_chacha::ChaCha12Rng::from_seed(sha256_concat(&[MASK_TAG, seed]));
    for v in values.iter_mut() {
        let m = rng.next_u64() as i64;
        *v = if sign >= 0 {
            v.wrapping_add(m)
        } else {
            v.wrapping_sub(m)
        };
    }
}

/// Contributor `i`'s masked vector: `x + PRG(self_seed) + sum_{j > i} PRG(s_ij) -
/// sum_{j < i} PRG(s_ij)`; `pairwise` lists `(j, s_ij)`.
pub fn masked(x: &[i64], i: u32, self_seed: &[u8; 32], pairwise: &[(u32, [u8; 32])]) -> Vec<i64> {
    let mut y = x.to_vec();
    mask_into(&mut y, self_seed, 1);
    for (j, s) in pairwise {
        mask_into(&mut y, s, if *j > i { 1 } else { -1 });
    }
    y
}

/// Removes from the sum of the survivors' masked vectors what does not cancel: every
/// survivor's self mask, and each dropped contributor's pairwise masks with survivors,
/// given as `(survivor i, dropped d, s_id)`.
pub fn remove_masks(
    sum: &mut [i64],
    survivor_self_seeds: &[[u8; 32]],
    dropped_pairs: &[(u32, u32, [u8; 32])],
) {
    for s in survivor_self_seeds {
        mask_into(sum, s, -1);
    }
    for (i, d, s) in dropped_pairs {
        // Survivor i added PRG(s) if d > i and subtracted it if d < i: undo that.
        mask_into(sum, s, if d > i { -1 } else { 1 });
    }
}

/// The Mersenne prime `2^61 - 1`.
pub const FIELD_PRIME: u64 = (1 << 61) - 1;
/// A seed is shared as this many field elements of 7 bytes each (35 >= 32).
pub const SEED_LIMBS: usize = 5;

fn reduce(x: u128) -> u64 {
    let p = FIELD_PRIME as u128;
    let r = (x & p) + (x >> 61);
    let r = (r & p) + (r >> 61);
    (if r >= p { r - p } else { r }) as u64
}

fn mul(a: u64, b: u64) -> u64 {
    reduce(a as u128 * b as u128)
}

fn add(a: u64, b: u64) -> u64 {
    reduce(a as u128 + b as u128)
}

fn sub(a: u64, b: u64) -> u64 {
    add(a, FIELD_PRIME - b % FIELD_PRIME)
}

fn pow(mut a: u64, mut e: u64) -> u64 {
    let mut r = 1u64;
    while e > 0 {
        if e & 1 == 1 {
            r = mul(r, a);
        }
        a = mul(a, a);
        e >>= 1;
    }
    r
}

fn inv(a: u64) -> u64 {
    pow(a, FIELD_PRIME - 2)
}

/// One Shamir share of a seed: the evaluation point `x` (1 to `n`) and one field element
/// per limb.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedShare {
    pub x: u64,
    pub y: [u64; SEED_LIMBS],
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    #[error("a threshold of {t} of {n} shares is not 1 <= t <= n")]
    Threshold { t: usize, n: usize },
    #[error("{got} shares given, the threshold is {t}")]
    TooFew { got: usize, t: usize },
    #[error("two shares have the same point {0}, or a point is 0")]
    BadPoint(u64),
    #[error("the shares do not reconstruct a seed (a limb is above 7 bytes): they are from different seeds or altered")]
    Inconsistent,
}

/// Splits `seed` into `n` shares, any `t` of which reconstruct it; `randomness` (the
/// dealer's secret, 32 bytes) draws the polynomials' other coefficients.
pub fn share_seed(
    seed: &[u8; 32],
    t: usize,
    n: usize,
    randomness: &[u8; 32],
) -> Result<Vec<SeedShare>, ShareError> {
    if t == 0 || t > n || n as u64 >= FIELD_PRIME {
        return Err(ShareError::Threshold { t, n });
    }
    let mut padded = [0u8; 7 * SEED_LIMBS];
    padded[..32].copy_from_slice(seed);
    let secrets: Vec<u64> = padded
        .chunks_exact(7)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..7].copy_from_slice(c);
            u64::from_le_bytes(b)
        })
        .collect();
    // Coefficient c of limb l: a field element from the dealer's randomness.
    let coeffs: Vec<Vec<u64>> = secrets
        .iter()
        .enumerate()
        .map(|(l, &s)| {
            std::iter::once(s)
                .chain((1..t).map(|c| {
                    let d = sha256_concat(&[
                        b"flic/secagg-share/v1",
                        randomness,
                        &[l as u8],
                        &(c as u64).to_le_bytes(),
                    ]);
                    reduce(u64::from_le_bytes(d[..8].try_into().expect("8 bytes")) as u128)
                }))
                .collect()
        })
        .collect();
    Ok((1..=n as u64)
        .map(|x| {
            let mut y = [0u64; SEED_LIMBS];
            for (l, cs) in coeffs.iter().enumerate() {
                // Horner: c_0 + x (c_1 + x (...)).
                y[l] = cs.iter().rev().fold(0, |acc, &c| add(mul(acc, x), c));
            }
            SeedShare { x, y }
        })
        .collect())
}

/// The seed from at least `t` shares (Lagrange interpolation at 0; the first `t` are
/// used).
pub fn reconstruct_seed(shares: &[SeedShare], t: usize) -> Result<[u8; 32], ShareError> {
    if shares.len() < t || t == 0 {
        return Err(ShareError::TooFew {
            got: shares.len(),
            t,
        });
    }
    let used = &shares[..t];
    for (k, s) in used.iter().enumerate() {
        if s.x == 0 || s.x >= FIELD_PRIME || used[..k].iter().any(|o| o.x == s.x) {
            return Err(ShareError::BadPoint(s.x));
        }
    }
    // The Lagrange basis at 0, once for every limb: prod_{m != k} x_m / (x_m - x_k).
    let basis: Vec<u64> = used
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let (num, den) = used
                .iter()
                .enumerate()
                .filter(|(m, _)| *m != k)
                .fold((1u64, 1u64), |(n, d), (_, o)| {
                    (mul(n, o.x), mul(d, sub(o.x, s.x)))
                });
            mul(num, inv(den))
        })
        .collect();
    let mut padded = [0u8; 7 * SEED_LIMBS];
    for l in 0..SEED_LIMBS {
        let mut secret = 0u64;
        for (s, &b) in used.iter().zip(&basis) {
            secret = add(secret, mul(s.y[l] % FIELD_PRIME, b));
        }
        if secret >= 1 << 56 {
            return Err(ShareError::Inconsistent);
        }
        padded[7 * l..7 * l + 7].copy_from_slice(&secret.to_le_bytes()[..7]);
    }
    if padded[32..].iter().any(|&b| b != 0) {
        return Err(ShareError::Inconsistent);
    }
    Ok(padded[..32].try_into().expect("32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seed(tag: u64) -> [u8; 32] {
        sha256_concat(&[b"test", &tag.to_le_bytes()])
    }

    /// `n` contributors with pairwise seeds `s_ij = seed(i, j)`; `dropped` do not upload.
    fn run(xs: &[Vec<i64>], dropped: &[u32]) -> Vec<i64> {
        let n = xs.len() as u32;
        let pair = |i: u32, j: u32| seed(1000 + (i.min(j) as u64) * 64 + i.max(j) as u64);
        let uploads: Vec<(u32, Vec<i64>)> = (0..n)
            .filter(|i| !dropped.contains(i))
            .map(|i| {
                let pairwise: Vec<(u32, [u8; 32])> = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| (j, pair(i, j)))
                    .collect();
                (i, masked(&xs[i as usize], i, &seed(i as u64), &pairwise))
            })
            .collect();
        // Any order: wrapping addition commutes.
        let mut sum = vec![0i64; xs[0].len()];
        for (_, y) in uploads.iter().rev() {
            sum.iter_mut()
                .zip(y)
                .for_each(|(s, v)| *s = s.wrapping_add(*v));
        }
        let survivors: Vec<u32> = uploads.iter().map(|u| u.0).collect();
        let selfs: Vec<[u8; 32]> = survivors.iter().map(|&i| seed(i as u64)).collect();
        let pairs: Vec<(u32, u32, [u8; 32])> = survivors
            .iter()
            .flat_map(|&i| dropped.iter().map(move |&d| (i, d, pair(i, d))))
            .collect();
        remove_masks(&mut sum, &selfs, &pairs);
        sum
    }

    proptest! {
        /// The unmasked sum equals the plain wrapping sum of the survivors' vectors, bit
        /// for bit, at 0, 10 and 30 % dropped (and any other fraction).
        #[test]
        fn masks_cancel_exactly(
            xs in prop::collection::vec(prop::collection::vec(any::<i64>(), 7), 2..12),
            drop_mask in any::<u16>(),
        ) {
            let n = xs.len() as u32;
            let dropped: Vec<u32> = (0..n).filter(|i| drop_mask >> i & 1 == 1).take(n as usize - 1).collect();
            let got = run(&xs, &dropped);
            let mut want = vec![0i64; 7];
            for (i, x) in xs.iter().enumerate() {
                if !dropped.contains(&(i as u32)) {
                    want.iter_mut().zip(x).for_each(|(w, v)| *w = w.wrapping_add(*v));
                }
            }
            prop_assert_eq!(got, want);
        }

        /// Any `t` of `n` shares give the seed back; `t - 1` do not.
        #[test]
        fn any_t_shares_reconstruct(secret in any::<[u8; 32]>(), dealer in any::<[u8; 32]>(), n in 1usize..12, pick in any::<u64>()) {
            let t = 1 + (pick as usize % n);
            let shares = share_seed(&secret, t, n, &dealer).unwrap();
            // A pseudo-random subset of t shares, in some order.
            let mut idx: Vec<usize> = (0..n).collect();
            idx.sort_by_key(|&k| sha256_concat(&[&pick.to_le_bytes(), &[k as u8]]));
            let chosen: Vec<SeedShare> = idx[..t].iter().map(|&k| shares[k].clone()).collect();
            prop_assert_eq!(reconstruct_seed(&chosen, t).unwrap(), secret);
            if t >= 2 {
                let few = reconstruct_seed(&chosen[..t - 1], t - 1);
                prop_assert!(few != Ok(secret), "t - 1 shares gave the secret");
            }
        }
    }

    #[test]
    fn masked_uploads_hide_the_delta_and_bad_shares_are_errors() {
        let x = vec![5i64; 64];
        let y = masked(&x, 0, &seed(1), &[(1, seed(2))]);
        assert!(
            y.iter().zip(&x).all(|(a, b)| a != b),
            "every element is masked"
        );
        assert_eq!(
            share_seed(&seed(1), 0, 3, &seed(9)),
            Err(ShareError::Threshold { t: 0, n: 3 })
        );
        assert_eq!(
            share_seed(&seed(1), 4, 3, &seed(9)),
            Err(ShareError::Threshold { t: 4, n: 3 })
        );
        let shares = share_seed(&seed(1), 2, 3, &seed(9)).unwrap();
        assert_eq!(
            reconstruct_seed(&shares[..1], 2),
            Err(ShareError::TooFew { got: 1, t: 2 })
        );
        let twice = vec![shares[0].clone(), shares[0].clone()];
        assert_eq!(reconstruct_seed(&twice, 2), Err(ShareError::BadPoint(1)));
        let mut altered = shares.clone();
        altered[1].y[0] ^= 1 << 40;
        assert!(reconstruct_seed(&altered, 2) != Ok(seed(1)));
    }
}
