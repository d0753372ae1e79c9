//! Byzantine contributors for `flic simulate --malicious K --attack ...`.
//!
//! An attacker trains like everyone else (so its upload looks ordinary), then replaces its
//! delta before signing. It still has to pass the canister's checks, so the delta is
//! clipped to the job's L2 bound like any other: what the job's clipping allows is exactly
//! the damage an attacker can do.
//!
//! `scale`, `signflip` and `noise` act alone. The two attacks from the robust-aggregation
//! literature collude: every attacker sends the same vector, built from what the coalition
//! knows of the benign deltas ([`Knowledge`]):
//!
//! - **ALIE**, "a little is enough" (Baruch et al., NeurIPS 2019): `mu - z * sigma`,
//!   coordinate-wise, with `mu` and `sigma` the benign deltas' mean and standard deviation.
//!   It stays inside the benign spread, so median, trimmed mean and Krum keep it, and it
//!   pulls every coordinate the same way. The default `z` is the paper's
//!   `z_max = Phi^-1((n - s) / n)`, `s = floor(n / 2 + 1) - f`.
//! - **IPM**, inner-product manipulation (Xie et al., UAI 2020): `-eps * mu`, which makes
//!   the aggregate's inner product with the true gradient negative once it is chosen.
//!
//! An adaptive coalition ([`Adaptive`]) also reads the chain: after each round it compares
//! the new public model with what the benign mean alone would have given, and doubles its
//! deviation (`z` or `eps`) when the model moved its way, halving it when the rule filtered
//! it out: a search for the largest deviation the job's rule lets through, with nothing
//! but public model versions as feedback.

use std::fmt;
use std::str::FromStr;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Attack {
    /// `delta × F` (a large F amplifies the attacker; a negative one also reverses it).
    Scale(f32),
    /// `-delta`: pushes the model away from what the attacker's data teaches.
    SignFlip,
    /// `delta + N(0, σ²)` on every coordinate.
    Noise(f32),
    /// A little is enough: `mu - z * sigma` of the benign deltas (`None`: the paper's
    /// `z_max` for the federation's size).
    Alie { z: Option<f32> },
    /// Inner-product manipulation: `-eps * mu`.
    Ipm { eps: f32 },
}

/// IPM's `eps` when the name gives none (Xie et al.'s setting against median and Krum).
pub const DEFAULT_IPM_EPS: f32 = 0.1;

/// What a colluding coalition knows of the benign deltas of the round it attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Knowledge {
    /// Every honest delta of the round: the worst case the literature evaluates against.
    #[default]
    Omniscient,
    /// Only the coalition's own deltas, trained honestly on the attackers' own data.
    Coalition,
}

impl FromStr for Knowledge {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "omniscient" => Ok(Knowledge::Omniscient),
            "coalition" => Ok(Knowledge::Coalition),
            _ => Err(format!(
                "unknown attack knowledge `{s}`: use omniscient or coalition"
            )),
        }
    }
}

impl fmt::Display for Knowledge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Knowledge::Omniscient => "omniscient",
            Knowledge::Coalition => "coalition",
        })
    }
}

impl fmt::Display for Attack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attack::Scale(s) => write!(f, "scale:{s}"),
            Attack::SignFlip => f.write_str("signflip"),
            Attack::Noise(s) => write!(f, "noise:{s}"),
            Attack::Alie { z: None } => f.write_str("alie"),
            Attack::Alie { z: Some(z) } => write!(f, "alie:{z}"),
            Attack::Ipm { eps } => write!(f, "ipm:{eps}"),
        }
    }
}

impl FromStr for Attack {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let number = |v: &str, what: &str| -> Result<f32, String> {
            v.parse::<f32>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("`{v}` is not a finite number for {what}"))
        };
        match s.split_once(':') {
            Some(("scale", v)) => Ok(Attack::Scale(number(v, "scale:F")?)),
            Some(("noise", v)) => {
                let sigma = number(v, "noise:SIGMA")?;
                if sigma < 0.0 {
                    return Err(format!("noise:SIGMA needs SIGMA >= 0, got {sigma}"));
                }
                Ok(Attack::Noise(sigma))
            }
            None if s == "signflip" => Ok(Attack::SignFlip),
            None if s == "alie" => Ok(Attack::Alie { z: None }),
            Some(("alie", v)) => Ok(Attack::Alie {
                z: Some(number(v, "alie:Z")?),
            }),
            None if s == "ipm" => Ok(Attack::Ipm {
                eps: DEFAULT_IPM_EPS,
            }),
            Some(("ipm", v)) => Ok(Attack::Ipm {
                eps: number(v, "ipm:EPS")?,
            }),
            _ => Err(format!(
                "unknown attack `{s}`: use scale:F, signflip, noise:SIGMA, alie[:Z] or ipm[:EPS]"
            )),
        }
    }
}

impl Attack {
    /// Whether the attackers collude: one vector for all, from the benign deltas.
    pub fn colludes(&self) -> bool {
        matches!(self, Attack::Alie { .. } | Attack::Ipm { .. })
    }

    /// The colluding attackers' delta, from the benign deltas they know, with the
    /// deviation (`z` or `eps`) multiplied by `gain` (1 unless adaptive). `clients` and
    /// `attackers` size ALIE's default `z`.
    pub fn collude(
        &self,
        benign: &[Vec<f32>],
        clients: usize,
        attackers: usize,
        gain: f32,
    ) -> Vec<f32> {
        let (mean, std) = mean_and_std(benign);
        match *self {
            Attack::Alie { z } => {
                let z = z.unwrap_or_else(|| alie_z(clients, attackers)) * gain;
                mean.iter().zip(&std).map(|(&m, &s)| m - z * s).collect()
            }
            Attack::Ipm { eps } => mean.iter().map(|&m| -eps * gain * m).collect(),
            _ => panic!("{self} does not collude"),
        }
    }

    /// The weights an attacker submits instead of `trained`, starting from `base`.
    pub fn poison(&self, base: &[f32], trained: &[f32], seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let noise = match self {
            Attack::Noise(sigma) => {
                Some(Normal::new(0.0f32, *sigma).expect("sigma checked at parse"))
            }
            _ => None,
        };
        base.iter()
            .zip(trained)
            .map(|(&b, &t)| {
                let d = t - b;
                let poisoned = match self {
                    Attack::Scale(f) => d * f,
                    Attack::SignFlip => -d,
                    Attack::Noise(_) => d + noise.as_ref().map_or(0.0, |n| n.sample(&mut rng)),
                    Attack::Alie { .. } | Attack::Ipm { .. } => {
                        panic!("colluding attacks are built by Attack::collude")
                    }
                };
                b + poisoned
            })
            .collect()
    }
}

/// The adaptive coalition's gain on its deviation, steered by the public models.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adaptive {
    pub gain: f32,
}

/// The gain stays within `[1 / MAX_GAIN, MAX_GAIN]`.
pub const MAX_GAIN: f32 = 64.0;

impl Default for Adaptive {
    fn default() -> Self {
        Self { gain: 1.0 }
    }
}

impl Adaptive {
    /// Learns from one round: `step` is the public model's change (new minus old), `mean`
    /// the benign mean the coalition estimated, `sent` what it sent, `server_lr` the job's.
    /// Whether the model moved the coalition's way beyond the benign mean decides.
    pub fn observe(&mut self, step: &[f32], mean: &[f32], sent: &[f32], server_lr: f32) -> bool {
        let pull: f64 = step
            .iter()
            .zip(mean)
            .zip(sent)
            .map(|((&s, &m), &x)| (s as f64 - server_lr as f64 * m as f64) * (x as f64 - m as f64))
            .sum();
        let accepted = pull > 0.0;
        self.gain = if accepted {
            (self.gain * 2.0).min(MAX_GAIN)
        } else {
            (self.gain / 2.0).max(1.0 / MAX_GAIN)
        };
        accepted
    }
}

/// Coordinate-wise mean and population standard deviation (0 for one delta).
pub fn mean_and_std(deltas: &[Vec<f32>]) -> (Vec<f32>, Vec<f32>) {
    let n = deltas.first().map_or(0, Vec::len);
    let k = deltas.len().max(1) as f64;
    let mut mean = vec![0f64; n];
    for d in deltas {
        for (m, &x) in mean.iter_mut().zip(d) {
            *m += x as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= k);
    let mut var = vec![0f64; n];
    for d in deltas {
        for ((v, &m), &x) in var.iter_mut().zip(&mean).zip(d) {
            *v += (x as f64 - m).powi(2);
        }
    }
    (
        mean.iter().map(|&m| m as f32).collect(),
        var.iter().map(|&v| (v / k).sqrt() as f32).collect(),
    )
}

/// ALIE's `z_max` (Baruch et al., section 3): the largest `z` for which the attackers'
/// value still has `s = floor(n / 2 + 1) - f` benign values farther from the mean.
pub fn alie_z(clients: usize, attackers: usize) -> f32 {
    let n = clients.max(1) as f64;
    let s = (clients / 2 + 1).saturating_sub(attackers) as f64;
    inverse_normal_cdf(((n - s) / n).clamp(1e-6, 1.0 - 1e-6)) as f32
}

/// `Phi^-1(p)` by Acklam's rational approximation (relative error below 1.2e-9).
#[allow(clippy::excessive_precision)] // Acklam's published coefficients, as printed
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383577518672690e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for s in [
            "scale:10",
            "scale:-2.5",
            "signflip",
            "noise:0.1",
            "alie",
            "alie:1.5",
            "ipm:0.5",
        ] {
            assert_eq!(s.parse::<Attack>().unwrap().to_string(), s);
        }
        assert_eq!(
            "ipm".parse::<Attack>().unwrap(),
            Attack::Ipm {
                eps: DEFAULT_IPM_EPS
            }
        );
        for bad in [
            "scale",
            "scale:x",
            "noise:-1",
            "noise:inf",
            "flip",
            "",
            "alie:x",
            "ipm:",
        ] {
            assert!(bad.parse::<Attack>().is_err(), "{bad}");
        }
    }

    #[test]
    fn poison_changes_the_delta_as_named() {
        let base = [1.0f32, 2.0, 3.0];
        let trained = [1.5f32, 1.0, 3.0];
        assert_eq!(
            Attack::SignFlip.poison(&base, &trained, 0),
            vec![0.5, 3.0, 3.0]
        );
        assert_eq!(
            Attack::Scale(3.0).poison(&base, &trained, 0),
            vec![2.5, -1.0, 3.0]
        );
        let a = Attack::Noise(0.5).poison(&base, &trained, 7);
        assert_eq!(a, Attack::Noise(0.5).poison(&base, &trained, 7), "seeded");
        assert_ne!(a, trained.to_vec());
        assert_eq!(
            Attack::Noise(0.0).poison(&base, &trained, 7),
            trained.to_vec()
        );
    }

    #[test]
    fn colluding_attacks_follow_their_papers() {
        let benign = vec![vec![1.0f32, -2.0], vec![3.0, -2.0]];
        // mean (2, -2), std (1, 0).
        assert_eq!(
            Attack::Alie { z: Some(1.5) }.collude(&benign, 10, 2, 1.0),
            vec![0.5, -2.0]
        );
        assert_eq!(
            Attack::Alie { z: Some(1.5) }.collude(&benign, 10, 2, 2.0),
            vec![-1.0, -2.0]
        );
        assert_eq!(
            Attack::Ipm { eps: 0.5 }.collude(&benign, 10, 2, 1.0),
            vec![-1.0, 1.0]
        );
        // Baruch et al.'s z_max: n = 50, f = 12 gives s = 14 and Phi^-1(36/50) = 0.5828.
        assert!((alie_z(50, 12) - 0.5828).abs() < 1e-3, "{}", alie_z(50, 12));
        // n = 10, f = 2: s = 4, Phi^-1(0.6) = 0.2533.
        assert!((alie_z(10, 2) - 0.2533).abs() < 1e-3);
        assert!((inverse_normal_cdf(0.975) - 1.959964).abs() < 1e-6);
        assert!((inverse_normal_cdf(0.001) + 3.090232).abs() < 1e-6);
    }

    #[test]
    fn the_adaptive_coalition_doubles_when_let_through() {
        let mean = [1.0f32, 0.0];
        let sent = [-1.0f32, 0.0];
        let mut a = Adaptive::default();
        // The model moved less than the benign mean alone: the attack got through.
        assert!(a.observe(&[0.5, 0.0], &mean, &sent, 1.0));
        assert_eq!(a.gain, 2.0);
        // It moved as the benign mean: filtered out.
        assert!(!a.observe(&[1.0, 0.0], &mean, &sent, 1.0));
        assert_eq!(a.gain, 1.0);
        for _ in 0..20 {
            a.observe(&[0.0, 0.0], &mean, &sent, 1.0);
        }
        assert_eq!(a.gain, MAX_GAIN);
    }
}
