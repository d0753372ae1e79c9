//! The exact discrete Gaussian `N_Z(0, sigma^2)`: `P(x) ∝ exp(-x^2 / (2 sigma^2))` on the
//! integers, sampled with integer and rational arithmetic only (Canonne, Kamath and Steinke
//! 2020, "The Discrete Gaussian for Differential Privacy", Algorithms 1 to 3).
//!
//! No floating point touches a sample: rounding a continuous Gaussian leaks through its
//! low bits (Mironov 2012), and the distributed DP guarantee (Kairouz, Liu and Steinke
//! 2021) is stated for exactly this distribution. `sigma^2` is a rational `num / den`; the
//! one comparison whose terms outgrow `u128` (`(|y| - sigma^2 / t)^2 / (2 sigma^2)` at
//! fixed-point scales) is done in arbitrary precision.

use num_bigint::BigUint;
use rand_chacha::rand_core::RngCore;

/// `sigma^2 = num / den`, both positive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variance {
    pub num: u128,
    pub den: u128,
}

/// Why a variance cannot be sampled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VarianceError {
    #[error("a discrete Gaussian's variance must be a positive fraction, got {num}/{den}")]
    NotPositive { num: u128, den: u128 },
    #[error("a discrete Gaussian's standard deviation must be below 2^60, got sqrt({num}/{den})")]
    TooLarge { num: u128, den: u128 },
}

impl Variance {
    /// The whole number `sigma^2`.
    pub fn integer(num: u128) -> Result<Self, VarianceError> {
        Self::new(num, 1)
    }

    pub fn new(num: u128, den: u128) -> Result<Self, VarianceError> {
        if num == 0 || den == 0 {
            return Err(VarianceError::NotPositive { num, den });
        }
        // sigma < 2^60 keeps `t`, `U + t V` and `t * K` within u128 in the sampler.
        if num / den >= 1 << 120 {
            return Err(VarianceError::TooLarge { num, den });
        }
        Ok(Self { num, den })
    }

    /// `floor(sigma) + 1`, the discrete Laplace scale the rejection sampler proposes from.
    fn laplace_scale(&self) -> u128 {
        // floor(sqrt(x)) == floor(sqrt(floor(x))).
        let floor = BigUint::from(self.num / self.den).sqrt();
        u128::try_from(floor).expect("sigma < 2^60") + 1
    }
}

/// One sample of `N_Z(0, sigma^2)` (Algorithm 3: discrete Laplace proposals of scale
/// `t = floor(sigma) + 1`, each kept with probability
/// `exp(-(|y| - sigma^2 / t)^2 / (2 sigma^2))`).
pub fn sample<R: RngCore>(rng: &mut R, var: Variance) -> i128 {
    let t = var.laplace_scale();
    let (sn, sd) = (BigUint::from(var.num), BigUint::from(var.den));
    let bt = BigUint::from(t);
    // gamma = (|y| t sd - sn)^2 / (2 sn sd t^2).
    let den = BigUint::from(2u8) * &sn * &sd * &bt * &bt;
    loop {
        let y = discrete_laplace(rng, t);
        let a = BigUint::from(y.unsigned_abs()) * &bt * &sd;
        let diff = if a >= sn { a - &sn } else { &sn - a };
        if bernoulli_exp_big(rng, &(&diff * &diff), &den) {
            return y;
        }
    }
}

/// Adds one independent `N_Z(0, sigma^2)` sample to every element, modulo 2^64 (the
/// secure sum's arithmetic; a caller keeps `sigma` far enough below 2^63 that no sum
/// wraps with any meaningful probability).
pub fn add_noise<R: RngCore>(values: &mut [i64], var: Variance, rng: &mut R) {
    for v in values.iter_mut() {
        *v = v.wrapping_add(sample(rng, var) as i64);
    }
}

/// Algorithm 2: the discrete Laplace of integer scale `t >= 1`,
/// `P(x) ∝ exp(-|x| / t)`.
fn discrete_laplace<R: RngCore>(rng: &mut R, t: u128) -> i128 {
    loop {
        let u = uniform_below(rng, t);
        if !bernoulli_exp_le1(rng, u, t) {
            continue;
        }
        let mut v: u128 = 0;
        while bernoulli_exp_le1(rng, 1, 1) {
            v += 1;
        }
        let x = u + t * v;
        let negative = rng.next_u32() & 1 == 1;
        if negative && x == 0 {
            continue;
        }
        let x = x as i128;
        return if negative { -x } else { x };
    }
}

/// Algorithm 1 for `gamma = n / d` in `[0, 1]`: `Bernoulli(exp(-gamma))`.
fn bernoulli_exp_le1<R: RngCore>(rng: &mut R, n: u128, d: u128) -> bool {
    let mut k: u128 = 1;
    // Bernoulli(gamma / k) until one fails; the count's parity decides.
    while uniform_below(rng, d * k) < n {
        k += 1;
    }
    k % 2 == 1
}

/// `Bernoulli(exp(-n / d))` for any `n / d >= 0`, in arbitrary precision.
fn bernoulli_exp_big<R: RngCore>(rng: &mut R, n: &BigUint, d: &BigUint) -> bool {
    let whole = n / d;
    let mut k = BigUint::ZERO;
    while k < whole {
        if !bernoulli_exp_le1(rng, 1, 1) {
            return false;
        }
        k += 1u8;
    }
    let rest = n % d;
    let mut k = BigUint::from(1u8);
    while uniform_below_big(rng, &(d * &k)) < rest {
        k += 1u8;
    }
    k.bit(0)
}

/// Uniform in `[0, n)`, `n >= 1`, by rejection from the smallest power of two above it.
fn uniform_below<R: RngCore>(rng: &mut R, n: u128) -> u128 {
    let bits = 128 - (n - 1).leading_zeros();
    let mask = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    loop {
        let x = (((rng.next_u64() as u128) << 64) | rng.next_u64() as u128) & mask;
        if x < n {
            return x;
        }
    }
}

fn uniform_below_big<R: RngCore>(rng: &mut R, n: &BigUint) -> BigUint {
    let bits = (n - 1u8).bits();
    let words = bits.div_ceil(32) as usize;
    let top = bits % 32;
    loop {
        let mut digits: Vec<u32> = (0..words).map(|_| rng.next_u32()).collect();
        if let (Some(last), true) = (digits.last_mut(), top != 0) {
            *last &= (1u32 << top) - 1;
        }
        let x = BigUint::new(digits);
        if &x < n {
            return x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha12Rng;

    /// The exact probabilities of `N_Z(0, sigma2)` on `[-m, m]` (the mass beyond is
    /// negligible for the `m` used).
    fn pmf(sigma2: f64, m: i64) -> Vec<f64> {
        let w: Vec<f64> = (-m..=m)
            .map(|x| (-(x * x) as f64 / (2.0 * sigma2)).exp())
            .collect();
        let z: f64 = w.iter().sum();
        w.iter().map(|p| p / z).collect()
    }

    /// Pearson's chi-square of `n` samples against the exact probabilities, over the
    /// cells expected to hold at least 20 (the rest pooled into one).
    fn chi_square(var: Variance, n: usize, seed: u64) -> (f64, usize) {
        let sigma2 = var.num as f64 / var.den as f64;
        let m = (12.0 * sigma2.sqrt()).ceil() as i64 + 2;
        let p = pmf(sigma2, m);
        let mut counts = vec![0usize; p.len()];
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        for _ in 0..n {
            let x = sample(&mut rng, var) as i64;
            assert!(x.abs() <= m, "{x} beyond 12 sigma");
            counts[(x + m) as usize] += 1;
        }
        let (mut chi, mut cells, mut pooled_e, mut pooled_o) = (0.0, 0, 0.0, 0.0);
        for (c, q) in counts.iter().zip(&p) {
            let e = q * n as f64;
            if e >= 20.0 {
                chi += (*c as f64 - e).powi(2) / e;
                cells += 1;
            } else {
                pooled_e += e;
                pooled_o += *c as f64;
            }
        }
        if pooled_e > 0.0 {
            chi += (pooled_o - pooled_e).powi(2) / pooled_e;
            cells += 1;
        }
        (chi, cells - 1)
    }

    #[test]
    fn samples_follow_the_exact_probabilities() {
        // Small variances, where the discrete Gaussian differs most from a rounded
        // continuous one, and a fraction that is no whole number. The 0.999 quantile of
        // chi-square with k degrees of freedom is below k + 4.5 sqrt(2k) + 11 for these k.
        for (var, seed) in [
            (Variance::new(1, 2).unwrap(), 1),
            (Variance::integer(2).unwrap(), 2),
            (Variance::new(37, 3).unwrap(), 3),
            (Variance::integer(400).unwrap(), 4),
        ] {
            let (chi, dof) = chi_square(var, 200_000, seed);
            let bound = dof as f64 + 4.5 * (2.0 * dof as f64).sqrt() + 11.0;
            assert!(chi < bound, "{var:?}: chi-square {chi:.1} over {dof} dof");
        }
    }

    #[test]
    fn a_wrong_variance_fails_the_same_check() {
        // The check above can fail: samples of variance 2.5 are not those of variance 2.
        let sigma2 = 2.0;
        let m = 20;
        let p = pmf(sigma2, m);
        let mut counts = vec![0usize; p.len()];
        let mut rng = ChaCha12Rng::seed_from_u64(9);
        let n = 200_000;
        for _ in 0..n {
            counts[(sample(&mut rng, Variance::new(5, 2).unwrap()) as i64 + m) as usize] += 1;
        }
        let chi: f64 = counts
            .iter()
            .zip(&p)
            .filter(|(_, q)| **q * n as f64 >= 20.0)
            .map(|(c, q)| (*c as f64 - q * n as f64).powi(2) / (q * n as f64))
            .sum();
        assert!(chi > 200.0, "chi-square {chi}");
    }

    #[test]
    fn large_variances_have_their_moments() {
        // Fixed-point scales: sigma = 10^7 units (variance 10^14), past u64 in the
        // acceptance test's terms.
        let var = Variance::integer(100_000_000_000_000).unwrap();
        let mut rng = ChaCha12Rng::seed_from_u64(5);
        let n = 40_000;
        let xs: Vec<f64> = (0..n).map(|_| sample(&mut rng, var) as f64).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let variance = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        // The sample variance's standard error is sigma^2 sqrt(2 / n), 0.7% here.
        assert!(
            (variance / 1e14 - 1.0).abs() < 0.035,
            "variance {variance:e}"
        );
        assert!(mean.abs() < 5.0 * 1e7 / (n as f64).sqrt(), "mean {mean}");
        let odd = xs.iter().filter(|x| **x as i64 % 2 != 0).count() as f64 / n as f64;
        assert!(
            (odd - 0.5).abs() < 0.02,
            "odd fraction {odd}: not on the integers"
        );
    }

    #[test]
    fn the_noise_is_seeded_and_wraps() {
        let var = Variance::integer(1_000_000).unwrap();
        let noised = |seed| {
            let mut v = vec![i64::MAX, 0, i64::MIN, 5];
            add_noise(&mut v, var, &mut ChaCha12Rng::seed_from_u64(seed));
            v
        };
        assert_eq!(noised(1), noised(1));
        assert_ne!(noised(1), noised(2));
        // Modular: subtracting the same noise restores the input exactly.
        let mut v = noised(1);
        let mut rng = ChaCha12Rng::seed_from_u64(1);
        for x in v.iter_mut() {
            *x = x.wrapping_sub(sample(&mut rng, var) as i64);
        }
        assert_eq!(v, vec![i64::MAX, 0, i64::MIN, 5]);
    }

    #[test]
    fn bad_variances_are_typed_errors() {
        assert!(matches!(
            Variance::new(0, 1),
            Err(VarianceError::NotPositive { .. })
        ));
        assert!(matches!(
            Variance::new(1, 0),
            Err(VarianceError::NotPositive { .. })
        ));
        assert!(matches!(
            Variance::integer(u128::MAX),
            Err(VarianceError::TooLarge { .. })
        ));
        // Just below the bound samples.
        let var = Variance::integer((1 << 120) - 1).unwrap();
        let x = sample(&mut ChaCha12Rng::seed_from_u64(0), var);
        assert!(x.unsigned_abs() < 1 << 70);
    }
}
