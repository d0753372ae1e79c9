//! The canonical bytes of a job's configuration, whose hash the canister certifies under
//! `/job_config` (see [`crate::certified`]): a client trains with a configuration only when
//! it hashes to the certified one.
//!
//! Layout (integers little-endian, `f32` as its IEEE-754 bits little-endian):
//!
//! | # | field | bytes |
//! |---|---|---|
//! | 1 | domain tag `flic/job-config/v1` | 18 |
//! | 2 | spec id of `model_spec` (`sha256(ModelSpec::canonical_bytes())`) | 32 |
//! | 3 | `client.learning_rate` (f32) | 4 |
//! | 4 | `client.batch_size` (u32) | 4 |
//! | 5 | `client.local_epochs` (u32) | 4 |
//! | 6 | `client.optimizer`: `1` = SGD, `2` = Adam | 1 |
//! | 7 | `client.seed` (u64) | 8 |
//! | 8 | `min_clients` (u32) | 4 |
//! | 9 | `max_clients` (u32) | 4 |
//! | 10 | `round_duration_ns` (u64) | 8 |
//! | 11 | number of `allowed_encodings` (u32), then each encoding's descriptor (`DeltaEncoding::descriptor`: its tag, then its parameters), in order | 4 + n or more |
//! | 12 | `clip_norm` (f32) | 4 |
//! | 13 | `max_weight` (u64) | 8 |
//! | 14 | `server_lr` (f32) | 4 |
//! | 15 | `chunk_size`: `0` when unset, else `1` then the u32 | 1 or 5 |
//! | 16 | `retain_contributions`: `0` or `1` | 1 |
//! | 17 | `admission`: `0` when unset, `1` = Open, `2` = AllowList | 1 |
//! | 18 | `upload_stall_ns`: `0` when unset, else `1` then the u64 | 1 or 9 |
//! | 19 | `aggregation`: `0` when unset; `1` FedAvg; `2` median; `3` trimmed mean then `beta` (f32); `4` Krum then `f` (u32); `5` Multi-Krum then `f`, `m` (u32 each); `6` centered clipping then `iters` (u32); `7` Bulyan then `f` (u32) | 1 to 9 |
//! | 20 | `server_optimizer`: `0` when unset; `1` SGD; `2` momentum then `beta`; `3` Nesterov then `beta`; `4` Adagrad then `tau`; `5` Adam then `beta1`, `beta2`, `tau`; `6` Yogi then `beta1`, `beta2`, `tau` (f32 each) | 1 to 13 |
//! | 21 | `client.proximal_mu`: nothing when unset (the bytes of the release before it), else `1` then the f32 | 0 or 5 |
//! | 22 | `dp`: nothing when unset, else `2`, the mode (`1` central, `2` distributed), then `noise_multiplier`, `target_epsilon`, `delta` (f64 each) | 0 or 26 |
//! | 23 | `secure_aggregation`: nothing when unset, else `3`, `max_dropout_fraction` (f64), `phase_duration_ns` (u64) | 0 or 17 |
//! | 24 | `dp.adaptive_clip`: nothing when unset, else `4`, `target_quantile`, `learning_rate`, `count_noise_std` (f64 each) | 0 or 25 |

use crate::api::{Admission, ClientHyperparameters, JobConfig, Optimizer};
use crate::hash::sha256;
use crate::optimizers::ServerOptimizer;
use crate::privacy::DpMode;
use crate::rules::AggregationRule;

/// Domain tag that starts the canonical bytes of a job configuration.
pub const JOB_CONFIG_DOMAIN: &[u8] = b"flic/job-config/v1";

/// Tag of an optimizer in [`job_config_bytes`].
pub fn optimizer_tag(optimizer: Optimizer) -> u8 {
    match optimizer {
        Optimizer::Sgd => 1,
        Optimizer::Adam => 2,
    }
}

/// The canonical bytes of `config` (layout in the module documentation).
pub fn job_config_bytes(config: &JobConfig) -> Vec<u8> {
    // Destructured without `..`: a field added to `JobConfig` does not compile here until
    // someone decides how it is certified (and bumps the domain tag's version).
    let JobConfig {
        model_spec,
        client,
        min_clients,
        max_clients,
        round_duration_ns,
        allowed_encodings,
        clip_norm,
        max_weight,
        server_lr,
        chunk_size,
        retain_contributions,
        admission,
        upload_stall_ns,
        aggregation,
        server_optimizer,
        dp,
        secure_aggregation,
    } = config;
    let ClientHyperparameters {
        learning_rate,
        batch_size,
        local_epochs,
        optimizer,
        seed,
        proximal_mu,
    } = client;
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(JOB_CONFIG_DOMAIN);
    out.extend_from_slice(&model_spec.spec_id());
    out.extend_from_slice(&learning_rate.to_le_bytes());
    out.extend_from_slice(&batch_size.to_le_bytes());
    out.extend_from_slice(&local_epochs.to_le_bytes());
    out.push(optimizer_tag(*optimizer));
    out.extend_from_slice(&seed.to_le_bytes());
    out.extend_from_slice(&min_clients.to_le_bytes());
    out.extend_from_slice(&max_clients.to_le_bytes());
    out.extend_from_slice(&round_duration_ns.to_le_bytes());
    out.extend_from_slice(&(allowed_encodings.len() as u32).to_le_bytes());
    allowed_encodings
        .iter()
        .for_each(|e| out.extend_from_slice(&e.descriptor()));
    out.extend_from_slice(&clip_norm.to_le_bytes());
    out.extend_from_slice(&max_weight.to_le_bytes());
    out.extend_from_slice(&server_lr.to_le_bytes());
    match chunk_size {
        None => out.push(0),
        Some(size) => {
            out.push(1);
            out.extend_from_slice(&size.to_le_bytes());
        }
    }
    out.push(u8::from(*retain_contributions));
    out.push(match admission {
        None => 0,
        Some(Admission::Open) => 1,
        Some(Admission::AllowList) => 2,
    });
    match upload_stall_ns {
        None => out.push(0),
        Some(ns) => {
            out.push(1);
            out.extend_from_slice(&ns.to_le_bytes());
        }
    }
    match aggregation {
        None => out.push(0),
        Some(AggregationRule::FedAvg) => out.push(1),
        Some(AggregationRule::Median) => out.push(2),
        Some(AggregationRule::TrimmedMean { beta }) => {
            out.push(3);
            out.extend_from_slice(&beta.to_le_bytes());
        }
        Some(AggregationRule::Krum { f }) => {
            out.push(4);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Some(AggregationRule::MultiKrum { f, m }) => {
            out.push(5);
            out.extend_from_slice(&f.to_le_bytes());
            out.extend_from_slice(&m.to_le_bytes());
        }
        Some(AggregationRule::CenteredClip { iters }) => {
            out.push(6);
            out.extend_from_slice(&iters.to_le_bytes());
        }
        Some(AggregationRule::Bulyan { f }) => {
            out.push(7);
            out.extend_from_slice(&f.to_le_bytes());
        }
    }
    let (tag, params): (u8, Vec<f32>) = match server_optimizer {
        None => (0, vec![]),
        Some(ServerOptimizer::Sgd) => (1, vec![]),
        Some(ServerOptimizer::Momentum { beta }) => (2, vec![*beta]),
        Some(ServerOptimizer::Nesterov { beta }) => (3, vec![*beta]),
        Some(ServerOptimizer::Adagrad { tau }) => (4, vec![*tau]),
        Some(ServerOptimizer::Adam { beta1, beta2, tau }) => (5, vec![*beta1, *beta2, *tau]),
        Some(ServerOptimizer::Yogi { beta1, beta2, tau }) => (6, vec![*beta1, *beta2, *tau]),
    };
    out.push(tag);
    for p in params {
        out.extend_from_slice(&p.to_le_bytes());
    }
    // Last, and absent when unset: a configuration without it keeps the bytes (and the
    // certified hash) the release before it wrote, which its clients check against.
    if let Some(mu) = proximal_mu {
        out.push(1);
        out.extend_from_slice(&mu.to_le_bytes());
    }
    // Absent when unset too; its marker `2` differs from `proximal_mu`'s `1`.
    if let Some(dp) = dp {
        out.push(2);
        out.push(match dp.mode {
            DpMode::Central => 1,
            DpMode::Distributed => 2,
        });
        for v in [dp.noise_multiplier, dp.target_epsilon, dp.delta] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    // Absent when unset; marker `3`.
    if let Some(sa) = secure_aggregation {
        out.push(3);
        out.extend_from_slice(&sa.max_dropout_fraction.to_le_bytes());
        out.extend_from_slice(&sa.phase_duration_ns.to_le_bytes());
    }
    // Absent when unset; marker `4`. After secure aggregation's, so that the fields before
    // it keep their bytes.
    if let Some(clip) = dp.as_ref().and_then(|dp| dp.adaptive_clip) {
        out.push(4);
        for v in [
            clip.target_quantile,
            clip.learning_rate,
            clip.count_noise_std,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// The leaf under `/job_config`: `sha256(job_config_bytes(config))`.
pub fn job_config_hash(config: &JobConfig) -> [u8; 32] {
    sha256(&job_config_bytes(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ClientHyperparameters;
    use crate::model::{ModelSpec, TensorSpec};

    fn config() -> JobConfig {
        let spec = ModelSpec {
            architecture: "linear".into(),
            config_json: "{}".into(),
            tensors: vec![TensorSpec {
                name: "w".into(),
                shape: vec![2, 3],
                offset: 0,
            }],
        };
        JobConfig::new(
            spec,
            ClientHyperparameters {
                learning_rate: 0.1,
                batch_size: 8,
                local_epochs: 1,
                optimizer: Optimizer::Sgd,
                seed: 7,
                proximal_mu: None,
            },
        )
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = config();
        let h = job_config_hash(&base);
        let mut variants = Vec::new();
        let mut v = base.clone();
        v.model_spec.tensors[0].shape = vec![3, 2];
        variants.push(v);
        let mut v = base.clone();
        v.client.learning_rate = 0.2;
        variants.push(v);
        let mut v = base.clone();
        v.client.batch_size = 9;
        variants.push(v);
        let mut v = base.clone();
        v.client.local_epochs = 2;
        variants.push(v);
        let mut v = base.clone();
        v.client.optimizer = Optimizer::Adam;
        variants.push(v);
        let mut v = base.clone();
        v.client.seed = 8;
        variants.push(v);
        let mut v = base.clone();
        v.min_clients = 3;
        variants.push(v);
        let mut v = base.clone();
        v.max_clients = 11;
        variants.push(v);
        let mut v = base.clone();
        v.round_duration_ns += 1;
        variants.push(v);
        let mut v = base.clone();
        v.allowed_encodings.reverse();
        variants.push(v);
        let mut v = base.clone();
        v.clip_norm = 10.5;
        variants.push(v);
        let mut v = base.clone();
        v.max_weight = 5;
        variants.push(v);
        let mut v = base.clone();
        v.server_lr = 0.5;
        variants.push(v);
        let mut v = base.clone();
        v.chunk_size = Some(crate::chunking::DEFAULT_CHUNK_SIZE);
        variants.push(v);
        let mut v = base.clone();
        v.retain_contributions = true;
        variants.push(v);
        let mut v = base.clone();
        v.admission = Some(Admission::AllowList);
        variants.push(v);
        let mut v = base.clone();
        v.admission = Some(Admission::Open);
        variants.push(v);
        let mut v = base.clone();
        v.upload_stall_ns = Some(5_000_000_000);
        variants.push(v);
        for mu in [0.0f32, 0.01, 0.1] {
            let mut v = base.clone();
            v.client.proximal_mu = Some(mu);
            variants.push(v);
        }
        for rule in [
            AggregationRule::FedAvg,
            AggregationRule::Median,
            AggregationRule::TrimmedMean { beta: 0.1 },
            AggregationRule::TrimmedMean { beta: 0.2 },
            AggregationRule::Krum { f: 1 },
            AggregationRule::MultiKrum { f: 1, m: 2 },
            AggregationRule::CenteredClip { iters: 1 },
            AggregationRule::CenteredClip { iters: 2 },
            AggregationRule::Bulyan { f: 1 },
        ] {
            let mut v = base.clone();
            v.aggregation = Some(rule);
            variants.push(v);
        }
        for opt in [
            "sgd",
            "momentum:0.9",
            "nesterov:0.9",
            "adagrad",
            "adam",
            "yogi",
            "adam:0.8,0.99,0.001",
        ] {
            let mut v = base.clone();
            v.server_optimizer = Some(opt.parse().unwrap());
            variants.push(v);
        }
        let dp = crate::privacy::DpConfig {
            mode: DpMode::Central,
            noise_multiplier: 1.0,
            target_epsilon: 8.0,
            delta: 1e-5,
            adaptive_clip: None,
        };
        for d in [
            dp,
            crate::privacy::DpConfig {
                noise_multiplier: 1.5,
                ..dp
            },
            crate::privacy::DpConfig {
                target_epsilon: 4.0,
                ..dp
            },
            crate::privacy::DpConfig { delta: 1e-6, ..dp },
            crate::privacy::DpConfig {
                mode: DpMode::Distributed,
                ..dp
            },
        ] {
            let mut v = base.clone();
            v.dp = Some(d);
            // DP appends its 26 bytes, after FedProx's when both are set.
            assert_eq!(
                job_config_bytes(&v).len(),
                job_config_bytes(&base).len() + 26
            );
            variants.push(v.clone());
            v.client.proximal_mu = Some(0.1);
            variants.push(v);
        }
        let sa = crate::secagg::SecAggConfig {
            max_dropout_fraction: 0.3,
            phase_duration_ns: 60_000_000_000,
        };
        for s in [
            sa,
            crate::secagg::SecAggConfig {
                max_dropout_fraction: 0.1,
                ..sa
            },
            crate::secagg::SecAggConfig {
                phase_duration_ns: 30_000_000_000,
                ..sa
            },
        ] {
            let mut v = base.clone();
            v.secure_aggregation = Some(s);
            assert_eq!(
                job_config_bytes(&v).len(),
                job_config_bytes(&base).len() + 17
            );
            variants.push(v.clone());
            v.dp = Some(dp);
            variants.push(v);
        }
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(job_config_hash(v), h, "variant {i}");
        }
        assert_eq!(job_config_hash(&base.clone()), h);
        let bytes = job_config_bytes(&base);
        assert!(bytes.starts_with(JOB_CONFIG_DOMAIN));
        // 18 + 32 + 4 + 4 + 4 + 1 + 8 + 4 + 4 + 8 + (4 + 2) + 4 + 8 + 4 + 1 + 1 + 1 + 1 + 1 + 1
        assert_eq!(bytes.len(), 115);
        let distinct: std::collections::HashSet<[u8; 32]> =
            variants.iter().map(job_config_hash).collect();
        assert_eq!(distinct.len(), variants.len(), "variants hash apart");
    }
}
