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
//! Not wired into jobs yet (issue 18): no noise is added anywhere, and nothing records a
//! budget. The arithmetic is `f64` with `ln`/`exp`; a canister and its verifiers that must
//! agree to the bit will need one `libm` for both.

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
        let (lq, l1q) = (q.ln(), (-q).ln_1p());
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
    (2..=n as u64).map(|k| (k as f64).ln()).sum()
}

fn log_sum_exp(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
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
        let ld = delta.ln();
        Ok(self
            .orders
            .iter()
            .zip(&self.rdp)
            .map(|(&a, &r)| {
                let af = a as f64;
                let e = match conversion {
                    Conversion::Classic => r - ld / (af - 1.0),
                    Conversion::Improved => r + (-1.0 / af).ln_1p() - (ld + af.ln()) / (af - 1.0),
                };
                (e.max(0.0), a)
            })
            .fold(
                (f64::INFINITY, 0),
                |best, x| if x.0 < best.0 { x } else { best },
            ))
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
}
