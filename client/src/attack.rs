//! Byzantine contributors for `flic simulate --malicious K --attack ...`.
//!
//! An attacker trains like everyone else (so its upload looks ordinary), then replaces its
//! delta before signing. It still has to pass the canister's checks, so the delta is
//! clipped to the job's L2 bound like any other: what the job's clipping allows is exactly
//! the damage an attacker can do.

use std::fmt;
use std::str::FromStr;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Attack {
    /// `delta × F` (a large F amplifies the attacker; a negative one also reverses it).
    Scale(f32),
    /// `-delta`: pushes the model away from what the attacker's data teaches.
    SignFlip,
    /// `delta + N(0, σ²)` on every coordinate.
    Noise(f32),
}

impl fmt::Display for Attack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attack::Scale(s) => write!(f, "scale:{s}"),
            Attack::SignFlip => f.write_str("signflip"),
            Attack::Noise(s) => write!(f, "noise:{s}"),
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
            _ => Err(format!(
                "unknown attack `{s}`: use scale:F, signflip or noise:SIGMA"
            )),
        }
    }
}

impl Attack {
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
                };
                b + poisoned
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for s in ["scale:10", "scale:-2.5", "signflip", "noise:0.1"] {
            assert_eq!(s.parse::<Attack>().unwrap().to_string(), s);
        }
        for bad in ["scale", "scale:x", "noise:-1", "noise:inf", "flip", ""] {
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
}
