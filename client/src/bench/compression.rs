//! Compression: what each delta encoding sends, costs and loses.
//!
//! - Learning: every encoding runs the same federation (same data, partition, clients,
//!   seeds) on the embedded canister, for each partition: test accuracy per round, and at
//!   the last round against the f32 run's.
//! - Cost: one round of `flic bench aggregate` per encoding at `N` parameters and `K`
//!   contributions (synthetic deltas): bytes per parameter, `commit_submission`
//!   instructions per parameter-contribution (validation and accumulation), cycles and USD
//!   per contribution and per round.

use serde::Serialize;

use crate::bench::doc::table;
use crate::bench::plot::{from_round_zero, line_panels, Panel, Series};
use crate::output::Progress;
use crate::simulate::{run as simulate, SimulationConfig, SimulationReport};
use flic_protocol::DeltaEncoding;

#[derive(Debug, Clone, Serialize)]
pub struct EncodingRun {
    pub encoding: String,
    pub partition: String,
    pub accuracy: Vec<f64>,
    /// Uploaded bytes per parameter of a contribution in the simulation.
    pub bytes_per_param: f64,
    /// Contributions scaled down so that their encoding met the clip bound.
    pub shrunk: usize,
    pub model_version: String,
}

/// One encoding's round at scale, from `flic bench aggregate`.
#[derive(Debug, Clone, Serialize)]
pub struct EncodingCost {
    pub encoding: String,
    pub params: u64,
    pub contributions: u32,
    pub bytes_per_param: f64,
    pub commit_per_param_contribution: f64,
    pub cycles_per_contribution: u64,
    pub usd_per_contribution: f64,
    pub usd_per_round: f64,
    /// The round's model equals the native recomputation.
    pub verified: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompressionReport {
    pub base: SimulationConfig,
    pub param_count: u64,
    pub initial_accuracy: Vec<(String, f64)>,
    pub runs: Vec<EncodingRun>,
    pub costs: Vec<EncodingCost>,
}

fn summarize(encoding: DeltaEncoding, partition: &str, r: &SimulationReport) -> EncodingRun {
    let rounds = r.rounds.len().max(1) as f64;
    EncodingRun {
        encoding: encoding.name(),
        partition: partition.into(),
        accuracy: r.rounds.iter().map(|x| x.test_accuracy).collect(),
        bytes_per_param: r.rounds.iter().map(|x| x.bytes_per_param).sum::<f64>() / rounds,
        shrunk: r.rounds.iter().map(|x| x.shrunk).sum(),
        model_version: r
            .rounds
            .last()
            .map(|x| x.model_version.clone())
            .unwrap_or_default(),
    }
}

/// Where the cost rounds run.
pub struct CostSetup<'a> {
    pub wasm: &'a [u8],
    pub build: &'a str,
    pub params: u64,
    pub contributions: u32,
}

/// Runs `base` with every encoding for every partition, and one cost round per encoding.
pub fn run(
    base: &SimulationConfig,
    encodings: &[DeltaEncoding],
    partitions: &[String],
    cost: &CostSetup,
    progress: &mut dyn Progress,
) -> anyhow::Result<CompressionReport> {
    let mut costs = Vec::new();
    for &e in encodings {
        let case = crate::bench::aggregate::AggregateCase {
            params: cost.params,
            contributions: cost.contributions,
            encoding: e,
            chunk_size: flic_protocol::chunking::DEFAULT_CHUNK_SIZE,
            download: false,
            rule: Default::default(),
        };
        let r = crate::bench::aggregate::run(cost.wasm, cost.build, &case, progress)?;
        let k = cost.contributions.max(1) as u64;
        costs.push(EncodingCost {
            encoding: e.name(),
            params: cost.params,
            contributions: cost.contributions,
            bytes_per_param: r.payload_bytes as f64 / cost.params as f64,
            commit_per_param_contribution: r.commit_per_param_contribution,
            cycles_per_contribution: r.cycles.total() / k,
            usd_per_contribution: r.usd / k as f64,
            usd_per_round: r.usd,
            verified: r.verified,
        });
    }
    let (mut runs, mut initial, mut param_count) = (Vec::new(), Vec::new(), 0);
    for p in partitions {
        for &e in encodings {
            let mut args = base.clone();
            args.partition = p.clone();
            args.state = None;
            args.encoding = e;
            progress.note(&format!("compression: {} on {p}", e.name()));
            let report = simulate(&args, progress)?;
            if !initial.iter().any(|(q, _): &(String, f64)| q == p) {
                initial.push((p.clone(), report.initial_accuracy));
            }
            param_count = report.param_count;
            runs.push(summarize(e, p, &report));
        }
    }
    Ok(CompressionReport {
        base: base.clone(),
        param_count,
        initial_accuracy: initial,
        runs,
        costs,
    })
}

impl CompressionReport {
    fn f32_run(&self, partition: &str) -> Option<&EncodingRun> {
        self.runs
            .iter()
            .find(|r| r.partition == partition && r.encoding == "f32")
    }

    /// The encoding with the fewest bytes per parameter among those at most `points`
    /// below f32 at the last round on `partition`, and at most `max_bytes` per parameter.
    pub fn best(&self, partition: &str, points: f64, max_bytes: f64) -> Option<&EncodingRun> {
        let f32_last = *self.f32_run(partition)?.accuracy.last()?;
        self.runs
            .iter()
            .filter(|r| r.partition == partition && r.bytes_per_param <= max_bytes)
            .filter(|r| {
                r.accuracy
                    .last()
                    .is_some_and(|&a| a >= f32_last - points / 100.0)
            })
            .min_by(|a, b| a.bytes_per_param.total_cmp(&b.bytes_per_param))
    }
}

/// Accuracy per round, one panel per partition (SVG).
pub fn svg(report: &CompressionReport) -> String {
    let panels: Vec<Panel> = report
        .initial_accuracy
        .iter()
        .map(|(p, init)| Panel {
            title: p.clone(),
            series: report
                .runs
                .iter()
                .filter(|r| &r.partition == p)
                .map(|r| Series {
                    label: format!("{} ({:.3} B/param)", r.encoding, r.bytes_per_param),
                    points: from_round_zero(*init, &r.accuracy),
                    dashed: r.encoding != "f32",
                })
                .collect(),
        })
        .collect();
    line_panels(&panels, "round", "test accuracy", 0.0, 1.0)
}

pub fn render(report: &CompressionReport, svg_path: &str) -> String {
    let b = &report.base;
    let mut out = format!(
        "`{}` model ({} parameters), {} clients, {} rounds, {} local epochs (lr {}, batch {}), \
         clip norm {}, synthetic clusters ({} samples), seed {}; every encoding runs the same \
         federation on the embedded canister. Top-k clients keep what they do not send and \
         add it to their next delta (error feedback).\n\n![test accuracy per round and \
         encoding]({svg_path})\n\n",
        b.model,
        report.param_count,
        b.clients.unwrap_or(4),
        b.rounds,
        b.local_epochs,
        b.lr,
        b.batch_size,
        b.clip_norm,
        b.samples,
        b.seed,
    );
    let rows: Vec<Vec<String>> = report
        .runs
        .iter()
        .map(|r| {
            let last = r.accuracy.last().copied().unwrap_or(0.0);
            let vs = report
                .f32_run(&r.partition)
                .and_then(|f| f.accuracy.last())
                .map(|&f| format!("{:+.2} pt", (last - f) * 100.0))
                .unwrap_or_default();
            vec![
                r.partition.clone(),
                format!("`{}`", r.encoding),
                format!("{:.4}", r.bytes_per_param),
                format!("{:.0}x", 4.0 / r.bytes_per_param),
                format!("{:.2}%", last * 100.0),
                vs,
                r.shrunk.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "partition",
            "encoding",
            "bytes / param",
            "smaller than f32",
            &format!("accuracy, round {}", b.rounds),
            "vs f32",
            "deltas scaled to the clip",
        ],
        &rows,
    ));
    if let Some(c) = report.costs.first() {
        out.push_str(&format!(
            "\nCost of one round at N = {} parameters and K = {} contributions (synthetic deltas, `flic bench aggregate`; fees as in section 2):\n\n",
            crate::bench::doc::short_count(c.params),
            c.contributions
        ));
    }
    let cost_rows: Vec<Vec<String>> = report
        .costs
        .iter()
        .map(|c| {
            vec![
                format!("`{}`", c.encoding),
                format!("{:.4}", c.bytes_per_param),
                format!("{:.1}", c.commit_per_param_contribution),
                format!("{:.1} M", c.cycles_per_contribution as f64 / 1e6),
                format!("{:.5}", c.usd_per_contribution),
                format!("{:.4}", c.usd_per_round),
                if c.verified {
                    "yes".into()
                } else {
                    "NO".into()
                },
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "encoding",
            "bytes / param",
            "commit instr / param-contribution",
            "cycles / contribution",
            "USD / contribution",
            "USD / round",
            "model = native recomputation",
        ],
        &cost_rows,
    ));
    out.push('\n');
    for (p, _) in &report.initial_accuracy {
        match report.best(p, 0.5, 0.2) {
            Some(r) => out.push_str(&format!(
                "- {p}: the most compact encoding within 0.5 points of f32 at round {} and at most 0.2 bytes per parameter is `{}` ({:.4} bytes per parameter, {:.0}x smaller than f32).\n",
                b.rounds,
                r.encoding,
                r.bytes_per_param,
                4.0 / r.bytes_per_param
            )),
            None => out.push_str(&format!(
                "- {p}: no encoding of at most 0.2 bytes per parameter is within 0.5 points of f32 at round {}.\n",
                b.rounds
            )),
        }
    }
    out
}
