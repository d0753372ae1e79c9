//! Client training throughput: samples per second of `train_local` for each zoo model on
//! burn's backends (CPU, and the GPU backends on a GPU machine: `bench/gpu/run.sh`), side by
//! side with PyTorch (on the CPU, or CUDA) on the same model, data, initial weights, batch
//! size and thread count, run from this process (`bench/pytorch/train_throughput.py`).
//!
//! Both sides run one warm-up epoch, then time `epochs` epochs of shuffle, forward,
//! cross-entropy read back to the host, backward and an SGD step. The initial weights'
//! mean loss over the data must agree between the two (to 1e-3 relative): the check that
//! PyTorch's model is the zoo's model.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use flic_model_zoo::dataset::{SyntheticClusters, SyntheticImages};
use flic_model_zoo::{
    evaluate, init_weights, model_spec, train_local, Backend, BackendRequest, Dataset, ModelConfig,
    OptimizerKind, TrainParams,
};
use serde::{Deserialize, Serialize};

use crate::bench::doc::{table, thousands};
use crate::output::Progress;

/// What one model is trained on: MNIST-sized inputs for the dense models and LeNet,
/// CIFAR-sized for the CNN (values are synthetic; speed does not depend on them).
pub struct Workload {
    pub model: &'static str,
    pub config: ModelConfig,
    pub data: Dataset,
}

/// The default workloads: `samples` per model, scaled by how heavy a sample is.
pub fn workloads(
    models: &[&'static str],
    samples_scale: f64,
    seed: u64,
) -> anyhow::Result<Vec<Workload>> {
    let scaled = |n: f64| ((n * samples_scale).round() as usize).max(64);
    models
        .iter()
        .map(|&model| {
            let data = match model {
                "linear" | "mlp" => SyntheticClusters {
                    samples: scaled(20_000.0),
                    dims: 784,
                    seed,
                    ..Default::default()
                }
                .generate(),
                "lenet" => SyntheticImages {
                    samples: scaled(4_000.0),
                    height: 28,
                    width: 28,
                    seed,
                    ..Default::default()
                }
                .generate(),
                "cifar-cnn" => {
                    let mut d = SyntheticClusters {
                        samples: scaled(2_000.0),
                        dims: 3 * 32 * 32,
                        seed,
                        ..Default::default()
                    }
                    .generate();
                    d.feature_shape = vec![3, 32, 32];
                    d
                }
                other => bail!("no training workload for model `{other}`"),
            };
            let hidden: &[usize] = if model == "mlp" { &[128] } else { &[] };
            let config = ModelConfig::for_data(model, &data.feature_shape, 10, hidden)?;
            Ok(Workload {
                model,
                config,
                data,
            })
        })
        .collect()
}

/// One framework's figure for one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Throughput {
    /// `burn/ndarray`, `burn/flex`, `burn/wgpu`, `burn/cuda`, `pytorch` (CPU) or
    /// `pytorch/cuda`.
    pub framework: String,
    /// The GPU adapter it ran on, for GPU backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Whether that adapter is a software rasterizer (lavapipe): its figures say the
    /// kernels run correctly, not how fast a GPU is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub software: bool,
    pub samples_per_sec: f64,
    pub seconds: f64,
    /// Mean cross-entropy of the initial weights over the data.
    pub initial_loss: f64,
    pub last_epoch_loss: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelThroughput {
    pub model: String,
    pub param_count: u64,
    pub samples: usize,
    pub feature_shape: Vec<usize>,
    pub results: Vec<Throughput>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainingReport {
    pub batch_size: usize,
    pub threads: usize,
    pub epochs: usize,
    pub lr: f64,
    /// `torch x.y.z` when PyTorch ran.
    pub pytorch_version: Option<String>,
    /// Where PyTorch ran: `cpu` or `cuda` (with the GPU's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pytorch_device: Option<String>,
    pub models: Vec<ModelThroughput>,
}

pub struct Settings<'a> {
    pub backends: &'a [Backend],
    pub batch_size: usize,
    pub threads: usize,
    pub epochs: usize,
    pub lr: f64,
    pub seed: u64,
    /// A Python with torch and numpy (see `bench/pytorch/setup.sh`).
    pub pytorch: Option<&'a Path>,
    /// PyTorch's device: `cpu` or `cuda`.
    pub pytorch_device: &'a str,
    pub script: PathBuf,
}

pub fn measure(
    workloads: &[Workload],
    s: &Settings,
    progress: &mut dyn Progress,
) -> anyhow::Result<TrainingReport> {
    let mut pytorch_version = None;
    let mut pytorch_device = None;
    let mut models = Vec::new();
    // Each backend is started once, as `--backend` starts it, but a fallback to the CPU is
    // an error here: its figure would be the CPU's under the GPU's name. (The model only
    // picks the CPU backend of a fallback, so any model will do.)
    let mut started = Vec::new();
    for &backend in s.backends {
        let run = crate::compute::start(BackendRequest::Named(backend), false, &mut |_| {})?;
        if run.plan.backend != backend {
            bail!(
                "backend {backend} did not start: {}",
                run.plan.fallback.as_deref().unwrap_or("no reason given")
            );
        }
        started.push((backend, run));
    }
    for w in workloads {
        let weights = init_weights(&w.config, s.seed)?;
        let params = TrainParams {
            lr: s.lr,
            batch_size: s.batch_size,
            local_epochs: 1,
            optimizer: OptimizerKind::Sgd,
            seed: s.seed,
            proximal_mu: 0.0,
        };
        let mut results = Vec::new();
        for (backend, started) in &started {
            let (backend, device) = (*backend, &started.device);
            let initial = evaluate(&w.config, &weights, &w.data, device)?;
            let timed = TrainParams {
                local_epochs: s.epochs,
                ..params.clone()
            };
            progress.start(
                &format!("{} on burn/{backend}", w.model),
                (w.data.len() * (1 + s.epochs)) as u64,
            );
            let warm = train_local(&w.config, &weights, &w.data, &params, device, &mut |p| {
                progress.set(p.samples_done as u64)
            })?;
            let out = train_local(&w.config, &weights, &w.data, &timed, device, &mut |p| {
                progress.set((warm.samples + p.samples_done) as u64)
            })?;
            progress.finish(&format!("{:.0} samples/s", out.samples_per_sec));
            results.push(Throughput {
                framework: format!("burn/{backend}"),
                device: started.plan.adapter.clone(),
                software: matches!(
                    started.plan.device,
                    flic_model_zoo::backend::DeviceChoice::Wgpu {
                        kind: Some(flic_model_zoo::hardware::AdapterKind::Cpu),
                        ..
                    }
                ),
                samples_per_sec: out.samples_per_sec,
                seconds: out.elapsed.as_secs_f64(),
                initial_loss: initial.loss,
                last_epoch_loss: out.last_epoch_loss as f64,
            });
        }
        if let Some(python) = s.pytorch {
            progress.note(&format!("{} on PyTorch ...", w.model));
            let (t, version, device) = run_pytorch(python, &s.script, w, &weights, s)?;
            pytorch_device = Some(device);
            if let Some(burn) = results.first() {
                let rel = (t.initial_loss - burn.initial_loss).abs() / burn.initial_loss.max(1e-9);
                if rel > 1e-3 {
                    bail!(
                        "{}: PyTorch's initial loss {:.6} differs from burn's {:.6}: the two \
                         models are not the same (check bench/pytorch/train_throughput.py \
                         against model-zoo/src/model)",
                        w.model,
                        t.initial_loss,
                        burn.initial_loss
                    );
                }
            }
            pytorch_version = Some(version);
            results.push(t);
        }
        models.push(ModelThroughput {
            model: w.model.into(),
            param_count: weights.len() as u64,
            samples: w.data.len(),
            feature_shape: w.data.feature_shape.clone(),
            results,
        });
    }
    Ok(TrainingReport {
        batch_size: s.batch_size,
        threads: s.threads,
        epochs: s.epochs,
        lr: s.lr,
        pytorch_version,
        pytorch_device,
        models,
    })
}

#[derive(Deserialize)]
struct PytorchOutput {
    version: String,
    threads: usize,
    initial_loss: f64,
    last_epoch_loss: f64,
    seconds: f64,
    samples_per_sec: f64,
    /// `cpu`, or `cuda: <GPU name>`.
    #[serde(default)]
    device: Option<String>,
}

/// Writes the workload as raw little-endian files plus a manifest and runs the script on it.
fn run_pytorch(
    python: &Path,
    script: &Path,
    w: &Workload,
    weights: &[f32],
    s: &Settings,
) -> anyhow::Result<(Throughput, String, String)> {
    let dir = tempfile::tempdir()?;
    let le = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(dir.path().join("features.f32"), le(&w.data.features))?;
    std::fs::write(dir.path().join("weights.f32"), le(weights))?;
    let labels: Vec<u8> = w.data.labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    std::fs::write(dir.path().join("labels.u32"), labels)?;
    let spec = model_spec(&w.config)?;
    let manifest = serde_json::json!({
        "config": serde_json::to_value(&w.config)?,
        "tensors": spec.tensors.iter().map(|t| serde_json::json!({"name": t.name, "shape": t.shape})).collect::<Vec<_>>(),
        "samples": w.data.len(),
        "feature_len": w.data.feature_len(),
        "batch_size": s.batch_size,
        "threads": s.threads,
        "lr": s.lr,
        "optimizer": "sgd",
        "warmup_epochs": 1,
        "epochs": s.epochs,
        "seed": s.seed,
        "device": s.pytorch_device,
    });
    std::fs::write(
        dir.path().join("manifest.json"),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    let out = Command::new(python)
        .arg(script)
        .arg(dir.path())
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !out.status.success() {
        bail!(
            "the PyTorch benchmark failed ({}):\n{}\n(install PyTorch with bench/pytorch/setup.sh \
             and pass the python it prints as --pytorch)",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let o: PytorchOutput = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "the PyTorch benchmark printed no result: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    if o.threads != s.threads {
        bail!(
            "PyTorch ran on {} threads, asked for {}",
            o.threads,
            s.threads
        );
    }
    let framework = if s.pytorch_device == "cpu" {
        "pytorch".to_string()
    } else {
        format!("pytorch/{}", s.pytorch_device)
    };
    Ok((
        Throughput {
            framework,
            device: o.device.clone().filter(|d| d != "cpu"),
            software: false,
            samples_per_sec: o.samples_per_sec,
            seconds: o.seconds,
            initial_loss: o.initial_loss,
            last_epoch_loss: o.last_epoch_loss,
        },
        format!("torch {}", o.version),
        o.device.unwrap_or_else(|| s.pytorch_device.to_string()),
    ))
}

/// `2.68x`, or `0.026x (1/38.7)` well below one, where two decimals would hide the size of
/// the gap.
fn ratio(x: f64) -> String {
    if x >= 0.5 {
        format!("{x:.2}x")
    } else {
        format!("{x:.3}x (1/{:.1})", 1.0 / x)
    }
}

pub fn render(r: &TrainingReport) -> String {
    let frameworks: Vec<String> = {
        let mut f: Vec<String> = Vec::new();
        for m in &r.models {
            for t in &m.results {
                if !f.contains(&t.framework) {
                    f.push(t.framework.clone());
                }
            }
        }
        f
    };
    let is_torch = |f: &str| f.starts_with("pytorch");
    let has_pytorch = frameworks.iter().any(|f| is_torch(f));
    let mut headers: Vec<String> = vec![
        "model".into(),
        "params".into(),
        "input".into(),
        "samples".into(),
    ];
    headers.extend(frameworks.iter().map(|f| format!("{f} samples/s")));
    if has_pytorch {
        headers.extend(
            frameworks
                .iter()
                .filter(|f| !is_torch(f))
                .map(|f| format!("{f} / PyTorch")),
        );
        headers.push("initial loss (burn = PyTorch)".into());
    }
    // Without PyTorch, the check that every backend trains the same model.
    let each_burn = !has_pytorch && frameworks.len() > 1;
    if each_burn {
        headers.push(format!("initial loss ({})", frameworks.join(" = ")));
    }
    let body: Vec<Vec<String>> = r
        .models
        .iter()
        .map(|m| {
            let get = |f: &str| m.results.iter().find(|t| t.framework == f);
            let mut row = vec![
                m.model.clone(),
                thousands(m.param_count),
                m.feature_shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("×"),
                thousands(m.samples as u64),
            ];
            for f in &frameworks {
                row.push(
                    get(f).map_or("-".into(), |t| thousands(t.samples_per_sec.round() as u64)),
                );
            }
            if has_pytorch {
                let torch = m.results.iter().find(|t| is_torch(&t.framework));
                for f in frameworks.iter().filter(|f| !is_torch(f)) {
                    row.push(match (get(f), torch) {
                        (Some(b), Some(p)) => ratio(b.samples_per_sec / p.samples_per_sec),
                        _ => "-".into(),
                    });
                }
                row.push(match (m.results.first(), torch) {
                    (Some(b), Some(p)) => format!("{:.4} = {:.4}", b.initial_loss, p.initial_loss),
                    _ => "-".into(),
                });
            }
            if each_burn {
                let losses: Vec<String> = frameworks
                    .iter()
                    .map(|f| get(f).map_or("-".into(), |t| format!("{:.4}", t.initial_loss)))
                    .collect();
                row.push(losses.join(" = "));
            }
            row
        })
        .collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    // Where each GPU framework ran, once per framework.
    let mut devices: Vec<String> = Vec::new();
    for f in &frameworks {
        let t = r
            .models
            .iter()
            .flat_map(|m| m.results.iter())
            .find(|t| &t.framework == f && t.device.is_some());
        if let Some(t) = t {
            devices.push(format!(
                "`{f}` ran on {}{}.",
                t.device.as_deref().unwrap_or_default(),
                if t.software {
                    ", a software driver on the CPU: its figures show that the GPU kernels run \
                     and train the same model, not how fast a GPU is"
                } else {
                    ""
                }
            ));
        }
    }
    let where_ = r.pytorch_device.as_deref().unwrap_or("cpu");
    let devices = if devices.is_empty() {
        String::new()
    } else {
        format!(" {}", devices.join(" "))
    };
    format!(
        "Training samples per second of one client (`train_local`: shuffle, forward, \
         cross-entropy read back every step, backward, SGD step with lr {lr}), batch {batch}, \
         {threads} threads on each side, {epochs} timed epoch(s) after one warm-up epoch, on \
         synthetic data of the model's input shape (`linear` and `mlp` (hidden [128]) on \
         784-feature samples, `lenet` on 28×28 images, `cifar-cnn` on 3×32×32).{devices} {torch}\n\n{}",
        table(&headers, &body),
        lr = r.lr,
        batch = r.batch_size,
        threads = r.threads,
        epochs = r.epochs,
        torch = match &r.pytorch_version {
            Some(v) => format!(
                "PyTorch ({v}, {where_}) ran `bench/pytorch/train_throughput.py` in the same session on \
                 the same data and initial weights (the initial-loss column is the check that \
                 both train the same model); a ratio above 1 means burn is faster."
            ),
            None => "PyTorch was not run (pass `--pytorch PYTHON`).".into(),
        },
    )
}
