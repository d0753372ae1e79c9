//! Local training (a manual burn autodiff loop, no `Learner`) and evaluation.
//!
//! Everything a federated client needs to reproduce a step is explicit: the initial weights,
//! the hyperparameters and the shuffling seed. On the ndarray backend the same inputs give
//! bit-identical weights.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::flat::{flatten, unflatten};
use crate::model::{Model, ModelConfig, ModelError};

/// The optimizer of a local training run. Its state starts fresh every run (every round).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Plain stochastic gradient descent (no momentum, no weight decay).
    #[default]
    Sgd,
    /// Adam with burn's defaults (β₁ 0.9, β₂ 0.999, ε 1e-5).
    Adam,
}

impl OptimizerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
        }
    }

    fn build(self) -> ModuleOptimizer {
        match self {
            OptimizerKind::Sgd => SgdConfig::new().init(),
            OptimizerKind::Adam => AdamConfig::new().init(),
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OptimizerKind {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sgd" => Ok(OptimizerKind::Sgd),
            "adam" => Ok(OptimizerKind::Adam),
            _ => Err(TrainError::BadParams(format!(
                "unknown optimizer `{s}` (expected sgd or adam)"
            ))),
        }
    }
}

/// Hyperparameters of one local training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainParams {
    /// Learning rate.
    pub lr: f64,
    /// Samples per step; the last batch of an epoch may be smaller.
    pub batch_size: usize,
    /// Passes over the local data.
    pub local_epochs: usize,
    pub optimizer: OptimizerKind,
    /// Seeds the per-epoch shuffling of the local data.
    pub seed: u64,
    /// FedProx's `mu`: the loss gains `mu / 2 * ||w - w_initial||^2`, which keeps a
    /// client's model near the global one on heterogeneous data (0 = plain training).
    #[serde(default)]
    pub proximal_mu: f64,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            lr: 0.05,
            batch_size: 32,
            local_epochs: 1,
            optimizer: OptimizerKind::Sgd,
            seed: 0,
            proximal_mu: 0.0,
        }
    }
}

impl TrainParams {
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(TrainError::BadParams(format!(
                "learning rate {} must be a positive number",
                self.lr
            )));
        }
        if self.batch_size == 0 {
            return Err(TrainError::BadParams(
                "batch size must be at least 1".into(),
            ));
        }
        if self.local_epochs == 0 {
            return Err(TrainError::BadParams(
                "local epochs must be at least 1".into(),
            ));
        }
        if !(self.proximal_mu.is_finite() && self.proximal_mu >= 0.0) {
            return Err(TrainError::BadParams(format!(
                "proximal mu {} must be a finite number >= 0",
                self.proximal_mu
            )));
        }
        Ok(())
    }
}

/// Reported after every step.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainProgress {
    /// 0-based epoch.
    pub epoch: usize,
    pub epochs: usize,
    /// 0-based batch within the epoch.
    pub batch: usize,
    pub batches_per_epoch: usize,
    /// Samples processed so far, over all epochs.
    pub samples_done: usize,
    /// `epochs × samples`.
    pub samples_total: usize,
    /// Mean cross-entropy of this batch.
    pub loss: f32,
}

/// Result of [`train_local`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    /// Trained weights in the flat layout.
    pub weights: Vec<f32>,
    /// Number of local samples (the FedAvg weight of this contribution).
    pub samples: usize,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Mean training loss over all steps, weighted by batch size.
    pub mean_loss: f32,
    /// Mean training loss over the last epoch.
    pub last_epoch_loss: f32,
    pub elapsed: Duration,
    /// Training samples processed per second (all epochs).
    pub samples_per_sec: f64,
}

/// Accuracy and mean cross-entropy of a model on a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Eval {
    /// Fraction of samples whose arg-max logit is the label, in `[0, 1]`.
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    pub samples: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("the dataset is empty")]
    EmptyData,
    #[error("invalid training parameters: {0}")]
    BadParams(String),
    #[error("training diverged: loss became {loss} at epoch {epoch}, batch {batch} (lower the learning rate)")]
    Diverged {
        epoch: usize,
        batch: usize,
        loss: f32,
    },
}

/// Mean cross-entropy of `logits` `[batch, classes]` against `targets` `[batch]`.
fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [batch, _] = logits.dims();
    log_softmax(logits, 1)
        .gather(1, targets.reshape([batch, 1]))
        .mean()
        .neg()
}

/// The samples at `indices` as a feature tensor `[batch, input_len]` and a label tensor `[batch]`.
fn batch(data: &Dataset, indices: &[usize], device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let d = data.feature_len();
    let mut features = Vec::with_capacity(indices.len() * d);
    let mut labels = Vec::with_capacity(indices.len());
    for &i in indices {
        features.extend_from_slice(data.sample(i));
        labels.push(data.labels[i] as i64);
    }
    let x = Tensor::<2>::from_data(TensorData::new(features, [indices.len(), d]), device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [indices.len()]), device);
    (x, y)
}

/// FedProx's `||w - w_initial||^2` over every float parameter. The visitor walks the
/// module in the flat layout's order, so the `i`th parameter it meets is `anchor[i]`.
struct ProximalTerm<'a> {
    anchor: &'a [Tensor<1>],
    next: usize,
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for ProximalTerm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let w = param.val();
        let a = self.anchor[self.next].clone().reshape(w.shape());
        self.next += 1;
        let d = w - a;
        let s = (d.clone() * d).sum();
        self.sum = Some(match self.sum.take() {
            Some(t) => t + s,
            None => s,
        });
    }
}

/// The initial weights, one constant (gradient-free) tensor per parameter tensor.
fn anchor_tensors(
    config: &ModelConfig,
    weights: &[f32],
    device: &Device,
) -> Result<Vec<Tensor<1>>, TrainError> {
    let spec = crate::flat::model_spec(config)?;
    Ok(spec
        .tensors
        .iter()
        .map(|t| {
            let n: u64 = t.shape.iter().product();
            let slice = &weights[t.offset as usize..(t.offset + n) as usize];
            Tensor::<1>::from_data(TensorData::new(slice.to_vec(), [n as usize]), device)
        })
        .collect())
}

/// Trains the model of `config`, starting from `initial_weights`, on `data` for
/// `params.local_epochs` epochs of seeded shuffled mini-batches, on `device` (made autodiff
/// here). `progress` is called after every step.
pub fn train_local(
    config: &ModelConfig,
    initial_weights: &[f32],
    data: &Dataset,
    params: &TrainParams,
    device: &Device,
    progress: &mut dyn FnMut(&TrainProgress),
) -> Result<TrainOutcome, TrainError> {
    params.validate()?;
    if data.is_empty() {
        return Err(TrainError::EmptyData);
    }
    config.check_data(&data.feature_shape, data.num_classes)?;
    let started = Instant::now();
    let device = device.clone().autodiff();
    let mut model: Model = unflatten(config, initial_weights, &device)?;
    let anchor = if params.proximal_mu > 0.0 {
        anchor_tensors(config, initial_weights, &device)?
    } else {
        Vec::new()
    };
    let mut optim = params.optimizer.build();
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut order: Vec<usize> = (0..data.len()).collect();
    let batches_per_epoch = data.len().div_ceil(params.batch_size);
    let samples_total = data.len() * params.local_epochs;
    let (mut steps, mut samples_done) = (0usize, 0usize);
    let (mut loss_sum, mut epoch_loss_sum) = (0f64, 0f64);
    for epoch in 0..params.local_epochs {
        order.shuffle(&mut rng);
        epoch_loss_sum = 0.0;
        for (b, indices) in order.chunks(params.batch_size).enumerate() {
            let (x, y) = batch(data, indices, &device);
            let mut loss = cross_entropy(model.forward(x), y);
            // Progress and divergence report the data loss, without the proximal term.
            let loss_value: f32 = loss.clone().into_scalar();
            if params.proximal_mu > 0.0 {
                let mut term = ProximalTerm {
                    anchor: &anchor,
                    next: 0,
                    sum: None,
                };
                model.visit(&mut term);
                if let Some(t) = term.sum {
                    loss = loss + t.mul_scalar(params.proximal_mu / 2.0);
                }
            }
            if !loss_value.is_finite() {
                return Err(TrainError::Diverged {
                    epoch,
                    batch: b,
                    loss: loss_value,
                });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(params.lr, model, grads);
            steps += 1;
            samples_done += indices.len();
            loss_sum += loss_value as f64 * indices.len() as f64;
            epoch_loss_sum += loss_value as f64 * indices.len() as f64;
            progress(&TrainProgress {
                epoch,
                epochs: params.local_epochs,
                batch: b,
                batches_per_epoch,
                samples_done,
                samples_total,
                loss: loss_value,
            });
        }
    }
    let weights = flatten(&model);
    if let Some(i) = weights.iter().position(|w| !w.is_finite()) {
        return Err(TrainError::Diverged {
            epoch: params.local_epochs - 1,
            batch: batches_per_epoch - 1,
            loss: weights[i],
        });
    }
    let elapsed = started.elapsed();
    Ok(TrainOutcome {
        weights,
        samples: data.len(),
        steps,
        mean_loss: (loss_sum / samples_done as f64) as f32,
        last_epoch_loss: (epoch_loss_sum / data.len() as f64) as f32,
        elapsed,
        samples_per_sec: samples_done as f64 / elapsed.as_secs_f64().max(1e-9),
    })
}

/// Samples per forward pass during evaluation.
const EVAL_BATCH: usize = 512;

/// Accuracy and mean cross-entropy of the model `config` + `weights` on `data`.
pub fn evaluate(
    config: &ModelConfig,
    weights: &[f32],
    data: &Dataset,
    device: &Device,
) -> Result<Eval, TrainError> {
    if data.is_empty() {
        return Err(TrainError::EmptyData);
    }
    config.check_data(&data.feature_shape, data.num_classes)?;
    let device = device.clone().without_autodiff();
    let model = unflatten(config, weights, &device)?;
    Ok(evaluate_model(&model, data, &device))
}

/// Evaluates a built model (on a device without autodiff). The data must fit the model.
pub fn evaluate_model(model: &Model, data: &Dataset, device: &Device) -> Eval {
    let indices: Vec<usize> = (0..data.len()).collect();
    let (mut correct, mut loss_sum) = (0i64, 0f64);
    for chunk in indices.chunks(EVAL_BATCH) {
        let (x, y) = batch(data, chunk, device);
        let logits = model.forward(x);
        let n = chunk.len();
        let loss: f32 = log_softmax(logits.clone(), 1)
            .gather(1, y.clone().reshape([n, 1]))
            .sum()
            .neg()
            .into_scalar();
        loss_sum += loss as f64;
        let predicted = logits.argmax(1).reshape([n]);
        correct += predicted.equal(y).int().sum().into_scalar::<i64>();
    }
    Eval {
        accuracy: correct as f64 / data.len() as f64,
        loss: loss_sum / data.len() as f64,
        samples: data.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{synthetic_images, SyntheticClusters};
    use crate::flat::init_weights;
    use crate::model::{LeNetConfig, LinearModelConfig, MlpConfig};

    #[allow(deprecated)]
    fn cpu() -> Device {
        Device::ndarray()
    }

    fn clusters() -> (Dataset, Dataset) {
        SyntheticClusters {
            samples: 2500,
            seed: 11,
            ..Default::default()
        }
        .generate()
        .train_test_split(0.2, 1)
        .unwrap()
    }

    fn train_and_check(config: ModelConfig, params: TrainParams, min_accuracy: f64) {
        let (train, test) = clusters();
        let w0 = init_weights(&config, 2).unwrap();
        let before = evaluate(&config, &w0, &test, &cpu()).unwrap();
        let mut calls = 0;
        let mut last = None;
        let out = train_local(&config, &w0, &train, &params, &cpu(), &mut |p| {
            calls += 1;
            last = Some(p.clone());
        })
        .unwrap();
        let after = evaluate(&config, &out.weights, &test, &cpu()).unwrap();
        let batches = train.len().div_ceil(params.batch_size);
        assert_eq!(calls, batches * params.local_epochs);
        assert_eq!(out.steps, calls);
        let last = last.unwrap();
        assert_eq!(last.samples_done, last.samples_total);
        assert_eq!(out.samples, train.len());
        assert!(
            after.loss < before.loss * 0.6,
            "{}: loss {} -> {}",
            config.architecture(),
            before.loss,
            after.loss
        );
        assert!(out.last_epoch_loss < out.mean_loss || params.local_epochs == 1);
        assert!(
            before.accuracy < 0.3,
            "untrained accuracy {}",
            before.accuracy
        );
        assert!(
            after.accuracy > min_accuracy,
            "{}: accuracy {}",
            config.architecture(),
            after.accuracy
        );
        eprintln!(
            "{} {:?}: loss {:.3} -> {:.3}, accuracy {:.3} -> {:.3}, {:.0} samples/s",
            config.architecture(),
            params.optimizer,
            before.loss,
            after.loss,
            before.accuracy,
            after.accuracy,
            out.samples_per_sec
        );
    }

    #[test]
    fn linear_sgd_learns_the_clusters() {
        let config = ModelConfig::Linear(LinearModelConfig::new(32));
        let params = TrainParams {
            lr: 0.1,
            batch_size: 32,
            local_epochs: 3,
            optimizer: OptimizerKind::Sgd,
            seed: 1,
            proximal_mu: 0.0,
        };
        train_and_check(config, params, 0.75);
    }

    #[test]
    fn mlp_adam_learns_the_clusters() {
        let config = ModelConfig::Mlp(MlpConfig::new(32).with_hidden(vec![64]));
        let params = TrainParams {
            lr: 0.003,
            batch_size: 32,
            local_epochs: 3,
            optimizer: OptimizerKind::Adam,
            seed: 1,
            proximal_mu: 0.0,
        };
        train_and_check(config, params, 0.75);
    }

    /// FedProx's term pulls the trained weights towards the initial ones: the larger `mu`,
    /// the closer, and `mu = 0` is plain training bit for bit.
    #[test]
    fn the_proximal_term_keeps_weights_near_the_start() {
        let (train, _) = clusters();
        let config = ModelConfig::Mlp(MlpConfig::new(32).with_hidden(vec![16]));
        let w0 = init_weights(&config, 3).unwrap();
        let run = |mu: f64| {
            let p = TrainParams {
                lr: 0.05,
                batch_size: 32,
                local_epochs: 2,
                optimizer: OptimizerKind::Sgd,
                seed: 5,
                proximal_mu: mu,
            };
            let w = train_local(&config, &w0, &train, &p, &cpu(), &mut |_| {})
                .unwrap()
                .weights;
            let d2: f64 = w
                .iter()
                .zip(&w0)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum();
            (w, d2.sqrt())
        };
        let (plain, d_plain) = run(0.0);
        let (_, d_small) = run(0.1);
        let (_, d_large) = run(5.0);
        assert!(
            d_small < d_plain && d_large < 0.5 * d_small,
            "{d_plain} {d_small} {d_large}"
        );
        let default = train_local(
            &config,
            &w0,
            &train,
            &TrainParams {
                lr: 0.05,
                batch_size: 32,
                local_epochs: 2,
                optimizer: OptimizerKind::Sgd,
                seed: 5,
                ..TrainParams::default()
            },
            &cpu(),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(default.weights, plain);
        let bad = TrainParams {
            proximal_mu: -1.0,
            ..TrainParams::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn same_seed_same_weights_bit_for_bit() {
        let (train, _) = clusters();
        let config = ModelConfig::Mlp(MlpConfig::new(32).with_hidden(vec![16]));
        let w0 = init_weights(&config, 0).unwrap();
        let run = |seed, optimizer| {
            let p = TrainParams {
                lr: 0.01,
                batch_size: 50,
                local_epochs: 2,
                optimizer,
                seed,
                proximal_mu: 0.0,
            };
            train_local(&config, &w0, &train, &p, &cpu(), &mut |_| {}).unwrap()
        };
        for optimizer in [OptimizerKind::Sgd, OptimizerKind::Adam] {
            let (a, b, c) = (run(7, optimizer), run(7, optimizer), run(8, optimizer));
            assert!(a
                .weights
                .iter()
                .zip(&b.weights)
                .all(|(x, y)| x.to_bits() == y.to_bits()));
            assert_eq!(a.mean_loss.to_bits(), b.mean_loss.to_bits());
            assert_ne!(a.weights, c.weights, "the seed drives the shuffling");
            assert_ne!(a.weights, w0);
        }
    }

    #[test]
    fn lenet_takes_a_step_on_small_images() {
        let data = synthetic_images(48, 12, 10, 10, 3);
        let config = ModelConfig::for_data("lenet", &data.feature_shape, 10, &[]).unwrap();
        assert!(matches!(
            &config,
            ModelConfig::LeNet(LeNetConfig {
                height: 12,
                width: 10,
                ..
            })
        ));
        let w0 = init_weights(&config, 1).unwrap();
        let p = TrainParams {
            lr: 0.01,
            batch_size: 16,
            local_epochs: 1,
            optimizer: OptimizerKind::Adam,
            seed: 0,
            proximal_mu: 0.0,
        };
        let out = train_local(&config, &w0, &data, &p, &cpu(), &mut |_| {}).unwrap();
        assert_eq!(out.steps, 3);
        assert_eq!(out.weights.len(), w0.len());
        assert_ne!(out.weights, w0);
        assert!(out.weights.iter().all(|w| w.is_finite()));
        let e = evaluate(&config, &out.weights, &data, &cpu()).unwrap();
        assert!(e.loss.is_finite() && (0.0..=1.0).contains(&e.accuracy));
    }

    /// The flex backend trains the same models as ndarray: same data, weights, batches and
    /// SGD steps give the same losses and weights up to float reassociation.
    #[cfg(feature = "flex")]
    #[test]
    fn flex_computes_what_ndarray_computes() {
        let flex = Device::flex();
        let images = synthetic_images(64, 12, 12, 10, 5);
        let (clusters, _) = clusters();
        for (arch, data) in [("mlp", &clusters), ("lenet", &images)] {
            let config = ModelConfig::for_data(arch, &data.feature_shape, 10, &[]).unwrap();
            let w0 = init_weights(&config, 4).unwrap();
            let p = TrainParams {
                lr: 0.05,
                batch_size: 16,
                local_epochs: 1,
                optimizer: OptimizerKind::Sgd,
                seed: 9,
                proximal_mu: 0.0,
            };
            let a = train_local(&config, &w0, data, &p, &cpu(), &mut |_| {}).unwrap();
            let b = train_local(&config, &w0, data, &p, &flex, &mut |_| {}).unwrap();
            assert!(
                (a.mean_loss - b.mean_loss).abs() < 1e-4,
                "{arch}: ndarray loss {} vs flex {}",
                a.mean_loss,
                b.mean_loss
            );
            let moved: f32 = a.weights.iter().zip(&w0).map(|(x, y)| (x - y).abs()).sum();
            let apart: f32 = a
                .weights
                .iter()
                .zip(&b.weights)
                .map(|(x, y)| (x - y).abs())
                .sum();
            assert!(
                moved > 0.0 && apart < 1e-3 * moved,
                "{arch}: moved {moved}, apart {apart}"
            );
            let ea = evaluate(&config, &a.weights, data, &cpu()).unwrap();
            let eb = evaluate(&config, &a.weights, data, &flex).unwrap();
            assert!((ea.loss - eb.loss).abs() < 1e-4 && ea.accuracy == eb.accuracy);
        }
    }

    #[test]
    fn rejects_bad_inputs() {
        let (train, _) = clusters();
        let config = ModelConfig::Linear(LinearModelConfig::new(32));
        let w0 = init_weights(&config, 0).unwrap();
        let p = TrainParams::default();
        let other = ModelConfig::Linear(LinearModelConfig::new(31));
        assert!(matches!(
            train_local(&other, &w0[..31 * 10 + 10], &train, &p, &cpu(), &mut |_| {}),
            Err(TrainError::Model(ModelError::InputMismatch { .. }))
        ));
        assert!(matches!(
            train_local(&config, &w0[1..], &train, &p, &cpu(), &mut |_| {}),
            Err(TrainError::Model(ModelError::WrongLength { .. }))
        ));
        for bad in [
            TrainParams {
                lr: 0.0,
                ..p.clone()
            },
            TrainParams {
                batch_size: 0,
                ..p.clone()
            },
            TrainParams {
                local_epochs: 0,
                ..p.clone()
            },
        ] {
            assert!(matches!(
                train_local(&config, &w0, &train, &bad, &cpu(), &mut |_| {}),
                Err(TrainError::BadParams(_))
            ));
        }
        let empty = train.subset(&[]);
        assert!(matches!(
            evaluate(&config, &w0, &empty, &cpu()),
            Err(TrainError::EmptyData)
        ));
        let huge = TrainParams {
            lr: 1e300,
            ..p.clone()
        };
        assert!(matches!(
            train_local(&config, &w0, &train, &huge, &cpu(), &mut |_| {}),
            Err(TrainError::Diverged { .. })
        ));
        assert_eq!(
            "ADAM".parse::<OptimizerKind>().unwrap(),
            OptimizerKind::Adam
        );
        assert!("rmsprop".parse::<OptimizerKind>().is_err());
    }
}
