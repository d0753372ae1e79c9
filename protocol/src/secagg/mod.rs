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
//! Here: the mask stream ([`mask`]), masking ([`mask_into`]), unmasking
//! ([`remove_masks`]), and `t`-of-`n` Shamir sharing of 32-byte seeds over the prime field
//! `GF(2^61 - 1)` ([`share_seed`], [`reconstruct_seed`]); in [`keys`], the participants'
//! signed X25519 keys, the seeds they agree on, and the encrypted envelopes that carry
//! their shares to each other. Not here yet: the phases on the canister's timers, and
//! any canister or client code that uses them.

use crate::hash::sha256_concat;

pub mod keys;

/// Domain tag of the mask stream.
pub const MASK_TAG: &[u8] = b"flic/secagg-mask/v1";

/// The mask stream of `seed`: element `k` is the `u64` LE at bytes `8 (k mod 4)` of
/// `sha256(MASK_TAG || seed || floor(k / 4) as u64 LE)`.
pub fn mask(seed: &[u8; 32], len: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(len);
    let mut block = 0u64;
    while out.len() < len {
        let d = sha256_concat(&[MASK_TAG, seed, &block.to_le_bytes()]);
        for c in d.chunks_exact(8) {
            if out.len() < len {
                out.push(u64::from_le_bytes(c.try_into().expect("8 bytes")));
            }
        }
        block += 1;
    }
    out
}

/// Adds (`sign = 1`) or subtracts (`sign = -1`) the mask of `seed` into `values`, mod 2^64.
pub fn mask_into(values: &mut [i64], seed: &[u8; 32], sign: i8) {
    let stream = mask(seed, values.len());
    for (v, m) in values.iter_mut().zip(stream) {
        *v = if sign >= 0 {
            v.wrapping_add(m as i64)
        } else {
            v.wrapping_sub(m as i64)
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
const SEED_LIMBS: usize = 5;

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
    let mut padded = [0u8; 7 * SEED_LIMBS];
    for l in 0..SEED_LIMBS {
        let mut secret = 0u64;
        for (k, s) in used.iter().enumerate() {
            // The Lagrange basis at 0: prod_{m != k} x_m / (x_m - x_k).
            let (num, den) = used
                .iter()
                .enumerate()
                .filter(|(m, _)| *m != k)
                .fold((1u64, 1u64), |(n, d), (_, o)| {
                    (mul(n, o.x), mul(d, sub(o.x, s.x)))
                });
            secret = add(secret, mul(s.y[l] % FIELD_PRIME, mul(num, inv(den))));
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
