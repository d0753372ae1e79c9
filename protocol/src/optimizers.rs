//! Server optimizers: how the round's averaged update moves the model (Reddi et al.,
//! "Adaptive Federated Optimization", 2021; the outer Nesterov step of DiLoCo).
//!
//! The round's update is `u_i = a_i * inv` with `inv = 1 / (d * 2^f)` (see
//! [`crate::rules`]): the rule's mean delta, in binary64. Each optimizer keeps up to two
//! `f32` state vectors `m` and `v` (zero when the job starts), and computes, per
//! parameter, in binary64 with round-to-nearest-even, no fused operations, in this order
//! (`lr` is `server_lr`, every `f32` widened exactly, results rounded to `f32` once):
//!
//! | optimizer | state update | weight update |
//! |---|---|---|
//! | SGD | — | `w + lr * u` |
//! | momentum `b` (FedAvgM) | `m = b * m + u` | `w + lr * m` |
//! | Nesterov `b` | `m = b * m + u` | `w + lr * (b * m + u)` (with the new `m`) |
//! | Adagrad `tau` | `v = v + u * u` | `w + lr * u / (sqrt(v) + tau)` |
//! | Adam `b1, b2, tau` | `m = b1 * m + (1 - b1) * u`; `v = b2 * v + (1 - b2) * u * u` | `w + lr * m / (sqrt(v) + tau)` |
//! | Yogi `b1, b2, tau` | `m` as Adam; `v = v - (1 - b2) * u * u * sign(v - u * u)` | as Adam |
//!
//! The weight update uses the new state as stored (rounded to `f32`). `sqrt` is correctly
//! rounded in IEEE-754 (and in wasm's `f64.sqrt`), so every step is bit-identical on every
//! machine; lineage replays the state from the first round on.

use candid::CandidType;
use serde::{Deserialize, Serialize};

/// How the server applies a round's update.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
pub enum ServerOptimizer {
    /// `w + server_lr * u` (FedAvg's own step).
    #[default]
    Sgd,
    /// FedAvgM: server momentum `beta`.
    Momentum {
        beta: f32,
    },
    /// Nesterov momentum `beta` (DiLoCo's outer step).
    Nesterov {
        beta: f32,
    },
    Adagrad {
        tau: f32,
    },
    Adam {
        beta1: f32,
        beta2: f32,
        tau: f32,
    },
    Yogi {
        beta1: f32,
        beta2: f32,
        tau: f32,
    },
}

/// Reddi et al.'s defaults for the adaptive optimizers.
pub const DEFAULT_BETA1: f32 = 0.9;
pub const DEFAULT_BETA2: f32 = 0.99;
pub const DEFAULT_TAU: f32 = 1e-3;

impl ServerOptimizer {
    /// State vectors it keeps: 0, 1 (`m` or `v`) or 2.
    pub fn state_vectors(&self) -> usize {
        match self {
            ServerOptimizer::Sgd => 0,
            ServerOptimizer::Momentum { .. }
            | ServerOptimizer::Nesterov { .. }
            | ServerOptimizer::Adagrad { .. } => 1,
            ServerOptimizer::Adam { .. } | ServerOptimizer::Yogi { .. } => 2,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let beta = |name: &str, b: f32| {
            if b.is_finite() && (0.0..1.0).contains(&b) {
                Ok(())
            } else {
                Err(format!("{name} must be in [0, 1), got {b}"))
            }
        };
        let tau = |t: f32| {
            if t.is_finite() && t >= 1e-9 {
                Ok(())
            } else {
                Err(format!("tau must be finite and at least 1e-9, got {t}"))
            }
        };
        match *self {
            ServerOptimizer::Sgd => Ok(()),
            ServerOptimizer::Momentum { beta: b } | ServerOptimizer::Nesterov { beta: b } => {
                beta("beta", b)
            }
            ServerOptimizer::Adagrad { tau: t } => tau(t),
            ServerOptimizer::Adam {
                beta1,
                beta2,
                tau: t,
            }
            | ServerOptimizer::Yogi {
                beta1,
                beta2,
                tau: t,
            } => {
                beta("beta1", beta1)?;
                beta("beta2", beta2)?;
                tau(t)
            }
        }
    }

    /// Applies the round's update to a window: `a` are the rule's integers, `inv` the
    /// round's factor, `m` and `v` the state of the same parameters (empty when the
    /// optimizer keeps none; `m` holds the only vector of Adagrad).
    pub fn apply(
        &self,
        weights: &mut [f32],
        a: &[i64],
        inv: f64,
        server_lr: f32,
        m: &mut [f32],
        v: &mut [f32],
    ) {
        assert_eq!(weights.len(), a.len());
        let lr = server_lr as f64;
        let u = |i: usize| a[i] as f64 * inv;
        match *self {
            ServerOptimizer::Sgd => {
                for i in 0..weights.len() {
                    weights[i] = (weights[i] as f64 + lr * u(i)) as f32;
                }
            }
            ServerOptimizer::Momentum { beta } | ServerOptimizer::Nesterov { beta } => {
                let b = beta as f64;
                let nesterov = matches!(self, ServerOptimizer::Nesterov { .. });
                for i in 0..weights.len() {
                    let ui = u(i);
                    m[i] = (b * m[i] as f64 + ui) as f32;
                    let step = if nesterov {
                        b * m[i] as f64 + ui
                    } else {
                        m[i] as f64
                    };
                    weights[i] = (weights[i] as f64 + lr * step) as f32;
                }
            }
            ServerOptimizer::Adagrad { tau } => {
                for i in 0..weights.len() {
                    let ui = u(i);
                    m[i] = (m[i] as f64 + ui * ui) as f32;
                    weights[i] =
                        (weights[i] as f64 + lr * ui / ((m[i] as f64).sqrt() + tau as f64)) as f32;
                }
            }
            ServerOptimizer::Adam { beta1, beta2, tau }
            | ServerOptimizer::Yogi { beta1, beta2, tau } => {
                let (b1, b2) = (beta1 as f64, beta2 as f64);
                let yogi = matches!(self, ServerOptimizer::Yogi { .. });
                for i in 0..weights.len() {
                    let ui = u(i);
                    m[i] = (b1 * m[i] as f64 + (1.0 - b1) * ui) as f32;
                    let sq = ui * ui;
                    let vi = v[i] as f64;
                    v[i] = if yogi {
                        let sign = if vi - sq > 0.0 {
                            1.0
                        } else if vi - sq < 0.0 {
                            -1.0
                        } else {
                            0.0
                        };
                        (vi - (1.0 - b2) * sq * sign) as f32
                    } else {
                        (b2 * vi + (1.0 - b2) * sq) as f32
                    };
                    weights[i] = (weights[i] as f64
                        + lr * m[i] as f64 / ((v[i] as f64).sqrt() + tau as f64))
                        as f32;
                }
            }
        }
    }
}

/// `sgd`, `momentum:B`, `nesterov:B`, `adagrad[:TAU]`, `adam[:B1,B2,TAU]`,
/// `yogi[:B1,B2,TAU]` (the command line's names; [`std::fmt::Display`] writes them back).
impl std::str::FromStr for ServerOptimizer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, arg) = s.split_once(':').unwrap_or((s, ""));
        let nums = |arg: &str| -> Result<Vec<f32>, String> {
            if arg.is_empty() {
                return Ok(Vec::new());
            }
            arg.split(',')
                .map(|x| {
                    x.trim()
                        .parse()
                        .map_err(|_| format!("`{x}` is not a number in `{s}`"))
                })
                .collect()
        };
        let v = nums(arg)?;
        let opt = match (name, v.as_slice()) {
            ("sgd", []) => ServerOptimizer::Sgd,
            ("momentum", [b]) => ServerOptimizer::Momentum { beta: *b },
            ("nesterov", [b]) => ServerOptimizer::Nesterov { beta: *b },
            ("adagrad", []) => ServerOptimizer::Adagrad { tau: DEFAULT_TAU },
            ("adagrad", [t]) => ServerOptimizer::Adagrad { tau: *t },
            ("adam", []) => ServerOptimizer::Adam {
                beta1: DEFAULT_BETA1,
                beta2: DEFAULT_BETA2,
                tau: DEFAULT_TAU,
            },
            ("adam", [b1, b2, t]) => ServerOptimizer::Adam {
                beta1: *b1,
                beta2: *b2,
                tau: *t,
            },
            ("yogi", []) => ServerOptimizer::Yogi {
                beta1: DEFAULT_BETA1,
                beta2: DEFAULT_BETA2,
                tau: DEFAULT_TAU,
            },
            ("yogi", [b1, b2, t]) => ServerOptimizer::Yogi {
                beta1: *b1,
                beta2: *b2,
                tau: *t,
            },
            _ => {
                return Err(format!(
                    "unknown server optimizer `{s}`: use sgd, momentum:B, nesterov:B, adagrad[:TAU], adam[:B1,B2,TAU] or yogi[:B1,B2,TAU]"
                ))
            }
        };
        opt.validate()?;
        Ok(opt)
    }
}

impl std::fmt::Display for ServerOptimizer {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerOptimizer::Sgd => write!(out, "sgd"),
            ServerOptimizer::Momentum { beta } => write!(out, "momentum:{beta}"),
            ServerOptimizer::Nesterov { beta } => write!(out, "nesterov:{beta}"),
            ServerOptimizer::Adagrad { tau } => write!(out, "adagrad:{tau}"),
            ServerOptimizer::Adam { beta1, beta2, tau } => {
                write!(out, "adam:{beta1},{beta2},{tau}")
            }
            ServerOptimizer::Yogi { beta1, beta2, tau } => {
                write!(out, "yogi:{beta1},{beta2},{tau}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SGD is FedAvg's finalisation, bit for bit.
    #[test]
    fn sgd_is_the_fedavg_step() {
        let a: Vec<i64> = (0..50).map(|i| (i * 7919 % 1000) as i64 - 500).collect();
        let inv = 1.0 / (3.0 * (1u64 << 20) as f64);
        let mut w1: Vec<f32> = (0..50).map(|i| i as f32 / 50.0).collect();
        let mut w2 = w1.clone();
        crate::fedavg::apply_update(&mut w1, &a, inv, 0.7);
        ServerOptimizer::Sgd.apply(&mut w2, &a, inv, 0.7, &mut [], &mut []);
        assert_eq!(w1, w2);
    }

    /// Two rounds of each optimizer against the formulas written out by hand.
    #[test]
    fn optimizers_follow_their_formulas() {
        let us = [0.5f64, -0.25];
        let lr = 0.1f64;
        let scale = (1u64 << 20) as f64;
        let a_of = |u: f64| (u * scale) as i64;
        let inv = 1.0 / scale;
        let cases: [(ServerOptimizer, fn(&[f64]) -> f64); 3] = [
            (ServerOptimizer::Momentum { beta: 0.5 }, |us| {
                let m1 = us[0];
                let m2 = 0.5 * m1 + us[1];
                0.1 * m1 + 0.1 * m2
            }),
            (ServerOptimizer::Nesterov { beta: 0.5 }, |us| {
                let m1 = us[0];
                let m2 = 0.5 * m1 + us[1];
                0.1 * (0.5 * m1 + us[0]) + 0.1 * (0.5 * m2 + us[1])
            }),
            (ServerOptimizer::Adagrad { tau: 0.5 }, |us| {
                let v1 = us[0] * us[0];
                let v2 = v1 + us[1] * us[1];
                0.1 * us[0] / (v1.sqrt() + 0.5) + 0.1 * us[1] / (v2.sqrt() + 0.5)
            }),
        ];
        for (opt, moved) in cases {
            let (mut w, mut m, mut v) = (vec![0f32], vec![0f32], vec![0f32]);
            for &u in &us {
                opt.apply(&mut w, &[a_of(u)], inv, lr as f32, &mut m, &mut v);
            }
            assert!(((w[0] as f64) - moved(&us)).abs() < 1e-6, "{opt}: {}", w[0]);
        }
        // Adam and Yogi agree on the first round from zero state (Yogi's v grows by the
        // same (1 - b2) u^2), then differ.
        let adam = ServerOptimizer::Adam {
            beta1: 0.9,
            beta2: 0.99,
            tau: 1e-3,
        };
        let yogi = ServerOptimizer::Yogi {
            beta1: 0.9,
            beta2: 0.99,
            tau: 1e-3,
        };
        let run = |opt: ServerOptimizer, rounds: usize| {
            let (mut w, mut m, mut v) = (vec![0f32], vec![0f32], vec![0f32]);
            for &u in us.iter().cycle().take(rounds) {
                opt.apply(&mut w, &[a_of(u)], inv, 0.1, &mut m, &mut v);
            }
            (w[0], m[0], v[0])
        };
        assert_eq!(run(adam, 1), run(yogi, 1));
        assert_ne!(run(adam, 3), run(yogi, 3));
        let (w, m, v) = run(adam, 1);
        let m1 = (1.0 - 0.9f32 as f64) * 0.5;
        let v1 = (1.0 - 0.99f32 as f64) * 0.25;
        assert_eq!(m, m1 as f32);
        assert_eq!(v, v1 as f32);
        let lr = 0.1f32 as f64;
        let expect = lr * (m1 as f32) as f64 / ((v1 as f32 as f64).sqrt() + 1e-3f32 as f64);
        assert_eq!(w, expect as f32);
    }

    #[test]
    fn names_parse_print_and_validate() {
        for s in [
            "sgd",
            "momentum:0.9",
            "nesterov:0.7",
            "adagrad:0.001",
            "adam:0.9,0.99,0.001",
            "yogi:0.9,0.99,0.001",
        ] {
            let o: ServerOptimizer = s.parse().unwrap();
            assert_eq!(o.to_string(), s);
        }
        assert_eq!(
            "adam".parse::<ServerOptimizer>().unwrap().state_vectors(),
            2
        );
        for bad in [
            "momentum",
            "momentum:1.0",
            "adam:0.9",
            "yogi:0.9,0.99,0",
            "rmsprop",
        ] {
            assert!(bad.parse::<ServerOptimizer>().is_err(), "{bad}");
        }
    }
}
