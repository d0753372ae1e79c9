//! Privacy: what differential privacy costs in accuracy and in instructions.
//!
//! The same federation (same data, partition, clients, seeds) runs on the embedded
//! canister without DP at the base clip norm, without DP at the DP runs' clip norm, and
//! with DP at each target epsilon, central and distributed (over secure aggregation), the
//! noise calibrated so that the run's rounds spend exactly the budget. The close's
//! instructions with and without noise give the canister's cost per parameter; the
//! client's cost of distributed DP (its discrete Gaussian samples) is timed against the
//! mask stream it expands anyway, in the same process. With an adaptive-clip quantile,
//! central DP also runs at each epsilon with the clip starting at the base clip norm and
//! moving to that quantile of the update norms (Andrew et al. 2021), privately.

use serde::Serialize;

use crate::bench::doc::table;
use crate::bench::plot::{from_round_zero, line_panels, Panel, Series};
use crate::output::Progress;
use crate::simulate::{run as simulate, SimulationConfig, SimulationReport};
use flic_protocol::privacy::{noise_for_budget, AdaptiveClip, DpConfig, DpMode};

#[derive(Debug, Clone, Serialize)]
pub struct PrivacyRun {
    /// `None`: no DP.
    pub target_epsilon: Option<f64>,
    /// `central` or `distributed`; `None` without DP.
    pub mode: Option<&'static str>,
    pub noise_multiplier: Option<f64>,
    /// The clip (with adaptive clipping: the last round's, as its record certifies).
    pub clip_norm: f32,
    /// Adaptive clipping's target quantile, if the run clips adaptively.
    pub adaptive_quantile: Option<f64>,
    /// The noise multiplier of the update (above the job's with adaptive clipping, whose
    /// count takes a share of each round's privacy).
    pub update_noise_multiplier: Option<f64>,
    pub accuracy: Vec<f64>,
    /// The epsilon each round's record certifies.
    pub epsilon_spent: Vec<f64>,
    /// Instructions of the largest message of the last round: the commit that closes it.
    pub close_instructions: u64,
    pub model_version: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrivacyReport {
    pub base: SimulationConfig,
    pub param_count: u64,
    pub clients: usize,
    pub delta: f64,
    pub initial_accuracy: f64,
    /// How the DP runs' clip norm was chosen.
    pub clip_rule: String,
    pub runs: Vec<PrivacyRun>,
    /// Distributed DP on the client: nanoseconds per parameter to draw its discrete
    /// Gaussian, and to expand one ChaCha12 mask stream (the baseline), at the first
    /// distributed run's variance.
    pub client_noise_ns_per_param: Option<f64>,
    pub mask_ns_per_param: Option<f64>,
}

fn summarize(r: &SimulationReport, dp: Option<&DpConfig>, clip_norm: f32) -> PrivacyRun {
    let last_clip = r.rounds.last().and_then(|x| x.adaptive_clip);
    PrivacyRun {
        target_epsilon: dp.map(|d| d.target_epsilon),
        mode: dp.map(|d| d.mode.name()),
        noise_multiplier: dp.map(|d| d.noise_multiplier),
        clip_norm: last_clip.map_or(clip_norm, |c| c.clip_norm),
        adaptive_quantile: dp.and_then(|d| d.adaptive_clip).map(|c| c.target_quantile),
        update_noise_multiplier: dp.map(|d| d.update_noise_multiplier()),
        accuracy: r.rounds.iter().map(|x| x.test_accuracy).collect(),
        epsilon_spent: r.rounds.iter().filter_map(|x| x.epsilon_spent).collect(),
        close_instructions: r.rounds.last().map_or(0, |x| x.max_message_instructions),
        model_version: r
            .rounds
            .last()
            .map(|x| x.model_version.clone())
            .unwrap_or_default(),
    }
}

/// Runs `base` without DP, then with DP in each of `modes` at each of `epsilons` (at
/// `delta`). The DP runs clip at `clip` or, without it, at the mean norm of the no-DP
/// run's first-round deltas before clipping (that choice reads the deltas, so it is not
/// itself private: the runs with `adaptive` = `Some(quantile)` are the private way, their
/// clip starting at the base clip norm).
pub fn run(
    base: &SimulationConfig,
    epsilons: &[f64],
    modes: &[DpMode],
    delta: f64,
    clip: Option<f32>,
    adaptive: Option<f64>,
    progress: &mut dyn Progress,
) -> anyhow::Result<PrivacyReport> {
    let mut base = base.clone();
    base.state = None;
    base.dp = None;
    progress.note("privacy: no DP");
    let reference = simulate(&base, progress)?;
    let (clip_norm, clip_rule) = match clip {
        Some(c) => (c, format!("{c} (given)")),
        None => {
            let mean = reference
                .rounds
                .first()
                .map_or(base.clip_norm as f64, |r| r.mean_delta_norm) as f32;
            (
                mean,
                format!(
                    "{mean:.4}, the mean norm of the no-DP run's round-1 deltas before clipping"
                ),
            )
        }
    };
    let mut runs = vec![summarize(&reference, None, base.clip_norm)];
    let clipped = SimulationConfig {
        clip_norm,
        ..base.clone()
    };
    progress.note(&format!("privacy: no DP, clip {clip_norm:.4}"));
    runs.push(summarize(&simulate(&clipped, progress)?, None, clip_norm));
    let mut timing = None;
    for &epsilon in epsilons {
        let z = noise_for_budget(epsilon, delta, base.rounds)?;
        for &mode in modes {
            let dp = DpConfig {
                mode,
                noise_multiplier: z,
                target_epsilon: epsilon,
                delta,
                adaptive_clip: None,
            };
            progress.note(&format!(
                "privacy: epsilon {epsilon}, {} (noise multiplier {:.3})",
                mode.name(),
                dp.noise_multiplier
            ));
            let args = SimulationConfig {
                dp: Some(dp),
                ..distributed_over_secagg(&clipped, mode)
            };
            let report = simulate(&args, progress)?;
            if mode == DpMode::Distributed && timing.is_none() {
                timing = Some(time_client_noise(&dp, clip_norm, &report)?);
            }
            runs.push(summarize(&report, Some(&dp), clip_norm));
        }
        if let Some(quantile) = adaptive {
            let dp = DpConfig {
                mode: DpMode::Central,
                noise_multiplier: z,
                target_epsilon: epsilon,
                delta,
                adaptive_clip: Some(AdaptiveClip::new(quantile, z)),
            };
            progress.note(&format!(
                "privacy: epsilon {epsilon}, central, adaptive clip to the {quantile} quantile from {}",
                base.clip_norm
            ));
            let args = SimulationConfig {
                dp: Some(dp),
                ..base.clone()
            };
            runs.push(summarize(
                &simulate(&args, progress)?,
                Some(&dp),
                base.clip_norm,
            ));
        }
    }
    Ok(PrivacyReport {
        param_count: reference.param_count,
        clients: reference.clients,
        delta,
        initial_accuracy: reference.initial_accuracy,
        base,
        clip_rule,
        runs,
        client_noise_ns_per_param: timing.map(|t| t.0),
        mask_ns_per_param: timing.map(|t| t.1),
    })
}

/// Distributed DP runs over secure aggregation with no dropouts (so every round's
/// threshold is its participant count and the noise is exactly the central runs').
fn distributed_over_secagg(base: &SimulationConfig, mode: DpMode) -> SimulationConfig {
    match mode {
        DpMode::Central => base.clone(),
        DpMode::Distributed => SimulationConfig {
            secure_aggregation: Some(flic_protocol::secagg::SecAggConfig {
                max_dropout_fraction: 0.0,
                phase_duration_ns: 60_000_000_000,
            }),
            dropouts: 0,
            retain_contributions: false,
            ..base.clone()
        },
    }
}

/// Nanoseconds per parameter of one client's discrete Gaussian at `dp`'s variance (the
/// job's fractional bits, every client in the threshold), and of one mask stream.
fn time_client_noise(
    dp: &DpConfig,
    clip_norm: f32,
    report: &SimulationReport,
) -> anyhow::Result<(f64, f64)> {
    use flic_protocol::privacy::{discrete_gaussian, distributed_variance};
    use rand_chacha::rand_core::SeedableRng;
    let n = report.param_count.clamp(1, 200_000) as usize;
    // The simulation's jobs: weight 1, as many participants as clients.
    let limits = flic_protocol::fedavg::AggregationLimits {
        max_clients: report.clients as u64,
        max_weight: 1,
        clip_norm,
    };
    let frac_bits = flic_protocol::privacy::distributed_frac_bits(
        dp,
        &limits,
        report.param_count,
        limits.safe_frac_bits()?,
    )?;
    let var = distributed_variance(
        dp,
        clip_norm,
        1,
        frac_bits,
        report.param_count,
        report.clients as u32,
    )?;
    let mut values = vec![0i64; n];
    let started = std::time::Instant::now();
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(1);
    discrete_gaussian::add_noise(&mut values, var, &mut rng);
    let noise = started.elapsed().as_nanos() as f64 / n as f64;
    let started = std::time::Instant::now();
    flic_protocol::secagg::mask_into(&mut values, &[7; 32], 1);
    let mask = started.elapsed().as_nanos() as f64 / n as f64;
    std::hint::black_box(&values);
    Ok((noise, mask))
}

impl PrivacyRun {
    pub fn label(&self) -> String {
        match self.target_epsilon {
            Some(e) => match self.adaptive_quantile {
                Some(q) => format!("epsilon {e}, central, adaptive clip q={q}"),
                None => format!("epsilon {e}, {}", self.mode.unwrap_or("central")),
            },
            None => format!("no DP, clip {:.3}", self.clip_norm),
        }
    }
}

impl PrivacyReport {
    /// The no-DP run at the DP runs' clip norm.
    fn clipped(&self) -> Option<&PrivacyRun> {
        self.runs.get(1)
    }

    /// Instructions per parameter the noise adds to the closing commit, per DP run.
    pub fn noise_instructions_per_param(&self, run: &PrivacyRun) -> Option<f64> {
        let plain = self.clipped()?.close_instructions as f64;
        run.target_epsilon?;
        Some((run.close_instructions as f64 - plain) / self.param_count.max(1) as f64)
    }
}

/// Accuracy per round of every run (SVG).
pub fn svg(report: &PrivacyReport) -> String {
    let panel = Panel {
        title: format!("{} clients, central and distributed DP", report.clients),
        series: report
            .runs
            .iter()
            .map(|r| Series {
                label: r.label(),
                points: from_round_zero(report.initial_accuracy, &r.accuracy),
                dashed: r.target_epsilon.is_some(),
            })
            .collect(),
    };
    line_panels(&[panel], "round", "test accuracy", 0.0, 1.0)
}

pub fn render(report: &PrivacyReport, svg_path: &str) -> String {
    let b = &report.base;
    let mut out = format!(
        "`{}` model ({} parameters), {} clients (every one in every round, weight 1 each with \
         DP), {} rounds, {} local epochs (lr {}, batch {}), partition {}, synthetic clusters \
         ({} samples), seed {}. DP runs clip at {}; their noise is calibrated so that {} \
         rounds spend exactly the target epsilon at delta {} (no amplification by sampling: \
         every contributor may take part in every round). Runs with an adaptive clip start \
         at the base clip norm {} and move it each round to the target quantile of the \
         update norms from a noised count (Andrew et al. 2021), inside the same budget; \
         their table row shows the last round's clip, and their noise per coordinate is \
         that of the update's multiplier at that clip.\n\n![test accuracy per round, with \
         and without DP]({svg_path})\n\n",
        b.model,
        report.param_count,
        report.clients,
        b.rounds,
        b.local_epochs,
        b.lr,
        b.batch_size,
        b.partition,
        b.samples,
        b.seed,
        report.clip_rule,
        b.rounds,
        report.delta,
        b.clip_norm,
    );
    let clipped = report.clipped().and_then(|r| r.accuracy.last().copied());
    let rows: Vec<Vec<String>> = report
        .runs
        .iter()
        .map(|r| {
            let last = r.accuracy.last().copied().unwrap_or(0.0);
            let k = report.clients.max(1) as f64;
            vec![
                r.target_epsilon.map_or("none".into(), |e| format!("{e}")),
                match r.adaptive_quantile {
                    Some(q) => format!("{}, adaptive clip q={q}", r.mode.unwrap_or("central")),
                    None => r.mode.unwrap_or("-").into(),
                },
                r.epsilon_spent
                    .last()
                    .map_or("-".into(), |e| format!("{e:.3}")),
                r.noise_multiplier.map_or("-".into(), |z| format!("{z:.3}")),
                format!("{:.4}", r.clip_norm),
                r.update_noise_multiplier
                    .map_or("-".into(), |z| format!("{:.4}", z * r.clip_norm as f64 / k)),
                format!("{:.2}%", last * 100.0),
                match (r.target_epsilon, clipped) {
                    (Some(_), Some(c)) => format!("{:+.2} pt", (last - c) * 100.0),
                    _ => "-".into(),
                },
                report
                    .noise_instructions_per_param(r)
                    .map_or("-".into(), |x| format!("{x:.0}")),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "target epsilon",
            "DP",
            "epsilon spent (certified)",
            "noise multiplier",
            "clip norm (adaptive: last round's)",
            "noise std per coordinate of the mean update",
            &format!("accuracy, round {}", b.rounds),
            "vs no DP at the same clip",
            "extra instructions / parameter at the close (central: noise; distributed: unmasking)",
        ],
        &rows,
    ));
    if let (Some(noise), Some(mask)) = (report.client_noise_ns_per_param, report.mask_ns_per_param)
    {
        out.push_str(&format!(
            "\nDistributed DP on the client: drawing its exact discrete Gaussian takes \
             {noise:.0} ns per parameter, {:.1}x the {mask:.1} ns of expanding one ChaCha12 \
             mask stream (timed in the same process on this machine; a client expands one \
             stream per peer, plus its own). The canister pays nothing for the noise: its \
             extra instructions are secure aggregation's unmasking.\n",
            noise / mask.max(1e-9)
        ));
    }
    out
}
