//! Learning: test accuracy per round of the canister's integer FedAvg with `f32` and `int8`
//! deltas, against a float32 FedAvg of the same clients computed in-process without the
//! canister ([`crate::simulate::run_float_reference`]), for several partitions.

use serde::Serialize;

use crate::bench::doc::table;
use crate::bench::plot::{from_round_zero, line_panels, Panel, Series};
use crate::output::Progress;
use flic_protocol::api::Optimizer;
use flic_protocol::DeltaEncoding;

use crate::simulate::{run as simulate, run_float_reference, SimulationConfig};

#[derive(Debug, Clone, Serialize)]
pub struct PartitionResult {
    pub partition: String,
    pub initial_accuracy: f64,
    pub canister_f32: Vec<f64>,
    pub canister_int8: Vec<f64>,
    pub float_reference: Vec<f64>,
    /// Deltas clipped over the run (the reference clips the same way).
    pub clipped_f32: usize,
    pub clipped_int8: usize,
    pub upload_bytes_f32: u64,
    pub upload_bytes_int8: u64,
}

impl PartitionResult {
    pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LearningReport {
    pub base: SimulationConfig,
    pub test_samples: usize,
    pub results: Vec<PartitionResult>,
}

/// Runs `base` (model, clients, rounds, seed...) for every partition three ways.
pub fn run(
    base: &SimulationConfig,
    partitions: &[String],
    progress: &mut dyn Progress,
) -> anyhow::Result<LearningReport> {
    let mut results = Vec::new();
    for p in partitions {
        let mut args = base.clone();
        args.partition = p.clone();
        args.state = None;
        args.encoding = DeltaEncoding::F32;
        let f32_run = simulate(&args, progress)?;
        args.encoding = DeltaEncoding::Int8Blocks;
        let int8_run = simulate(&args, progress)?;
        let (initial, reference) = run_float_reference(&args, progress)?;
        anyhow::ensure!(
            (initial - f32_run.initial_accuracy).abs() < 1e-12,
            "the reference did not start from the simulation's initial model"
        );
        let acc = |r: &crate::simulate::SimulationReport| -> Vec<f64> {
            r.rounds.iter().map(|x| x.test_accuracy).collect()
        };
        results.push(PartitionResult {
            partition: p.clone(),
            initial_accuracy: initial,
            canister_f32: acc(&f32_run),
            canister_int8: acc(&int8_run),
            float_reference: reference,
            clipped_f32: f32_run.rounds.iter().map(|r| r.clipped).sum(),
            clipped_int8: int8_run.rounds.iter().map(|r| r.clipped).sum(),
            upload_bytes_f32: f32_run.rounds.iter().map(|r| r.upload_bytes).sum(),
            upload_bytes_int8: int8_run.rounds.iter().map(|r| r.upload_bytes).sum(),
        });
    }
    Ok(LearningReport {
        base: base.clone(),
        test_samples: base.samples / 5,
        results,
    })
}

/// The accuracy chart (SVG).
pub fn svg(report: &LearningReport) -> String {
    let panels: Vec<Panel> = report
        .results
        .iter()
        .map(|r| {
            let pts = |v: &[f64]| from_round_zero(r.initial_accuracy, v);
            Panel {
                title: r.partition.clone(),
                series: vec![
                    Series {
                        label: "float32 FedAvg (no canister)".into(),
                        points: pts(&r.float_reference),
                        dashed: false,
                    },
                    Series {
                        label: "canister, f32 deltas".into(),
                        points: pts(&r.canister_f32),
                        dashed: true,
                    },
                    Series {
                        label: "canister, int8 deltas".into(),
                        points: pts(&r.canister_int8),
                        dashed: true,
                    },
                ],
            }
        })
        .collect();
    line_panels(&panels, "round", "test accuracy", 0.0, 1.0)
}

pub fn render(report: &LearningReport, svg_path: &str) -> String {
    let b = &report.base;
    let mut out = format!(
        "`{}` model (hidden {:?}), {} clients, {} rounds, {} local epochs of {} (lr {}, batch \
         {}), clip norm {}, synthetic clusters ({} samples, 20% held out for test), seed {}. The \
         float32 reference trains the same clients with the same seeds and averages their \
         clipped deltas in `f32` without the canister.\n\n![test accuracy per round]({svg_path})\n\n",
        b.model,
        b.hidden,
        b.clients.unwrap_or(4),
        b.rounds,
        b.local_epochs,
        match b.optimizer { Optimizer::Sgd => "SGD", Optimizer::Adam => "Adam" },
        b.lr,
        b.batch_size,
        b.clip_norm,
        b.samples,
        b.seed,
    );
    let mut rows = Vec::new();
    for r in &report.results {
        let n = r.float_reference.len();
        for i in 0..n {
            rows.push(vec![
                r.partition.clone(),
                (i + 1).to_string(),
                format!("{:.2}%", r.float_reference[i] * 100.0),
                format!("{:.2}%", r.canister_f32[i] * 100.0),
                format!("{:.2}%", r.canister_int8[i] * 100.0),
            ]);
        }
    }
    out.push_str(&table(
        &[
            "partition",
            "round",
            "float32 reference",
            "canister f32",
            "canister int8",
        ],
        &rows,
    ));
    out.push('\n');
    let summary: Vec<Vec<String>> = report
        .results
        .iter()
        .map(|r| {
            vec![
                r.partition.clone(),
                format!("{:.2}%", r.initial_accuracy * 100.0),
                format!(
                    "{:.2} pt",
                    PartitionResult::max_abs_diff(&r.canister_f32, &r.float_reference) * 100.0
                ),
                format!(
                    "{:.2} pt",
                    PartitionResult::max_abs_diff(&r.canister_int8, &r.float_reference) * 100.0
                ),
                format!("{} / {}", r.clipped_f32, r.clipped_int8),
                format!(
                    "{:.3}",
                    r.upload_bytes_int8 as f64 / r.upload_bytes_f32 as f64
                ),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "partition",
            "initial accuracy",
            "max |canister f32 - reference|",
            "max |canister int8 - reference|",
            "deltas clipped (f32 / int8)",
            "int8 / f32 upload bytes",
        ],
        &summary,
    ));
    out
}
