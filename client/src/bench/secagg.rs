//! Secure aggregation: what masking costs each contributor and the canister, against the
//! number of participants that drop out.
//!
//! The same federation (same data, partition, clients, seeds) runs on the embedded
//! canister without secure aggregation (f32 uploads, the baseline), then with it at each
//! number of dropouts K (the simulation drops K clients per round, spread over the phases
//! as `flic simulate --dropouts` does). Every figure is of the last round, from the
//! embedded IC's counts: messages and argument bytes per contributor, instructions per
//! contributor, the closing message (the commit that reaches `max_clients` without
//! masking, the reveal that reaches the threshold with it, which unmasks and closes), and
//! how long the round stayed open on the canister's clock (phases that lose a participant
//! end at their deadline).

use serde::Serialize;

use crate::api::MethodStats;
use crate::bench::doc::table;
use crate::output::Progress;
use crate::simulate::{run as simulate, RoundReport, SimulationConfig};
use flic_protocol::secagg::SecAggConfig;

#[derive(Debug, Clone, Serialize)]
pub struct SecAggRun {
    /// `None`: without secure aggregation.
    pub dropouts: Option<usize>,
    pub contributors: usize,
    /// Calls (updates and queries) per client that took part.
    pub messages_per_client: f64,
    /// Argument bytes sent per client (uploads, keys, envelopes, shares).
    pub bytes_per_client: f64,
    /// Of which secure aggregation's own calls.
    pub secagg_bytes_per_client: f64,
    pub instructions_per_client: f64,
    /// The message that closes the round.
    pub close_instructions: u64,
    /// Mask streams the unmasking expanded (survivors + survivors x dropped after sharing).
    pub seeds: u64,
    pub open_seconds: f64,
    /// Host time per round (the first run also compiles the wasm: not comparable).
    pub wall_seconds_per_round: f64,
    pub model_version: String,
    pub accuracy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecAggReport {
    pub base: SimulationConfig,
    pub clients: usize,
    pub param_count: u64,
    pub phase_seconds: f64,
    pub runs: Vec<SecAggRun>,
}

const SECAGG_METHODS: [&str; 5] = [
    "secagg_advertise",
    "secagg_post_shares",
    "secagg_reveal",
    "secagg_round",
    "secagg_inbox",
];

fn sum(calls: &std::collections::BTreeMap<String, MethodStats>, only_secagg: bool) -> MethodStats {
    calls
        .iter()
        .filter(|(m, _)| !only_secagg || SECAGG_METHODS.contains(&m.as_str()))
        .fold(MethodStats::default(), |a, (_, s)| a.plus(*s))
}

fn summarize(
    r: &RoundReport,
    dropouts: Option<usize>,
    clients: usize,
    wall: f64,
    rounds: usize,
) -> SecAggRun {
    // Those that took part in some phase: every client but those that never advertised.
    let took_part = r.secagg.map_or(clients, |c| c.participants);
    let all = sum(&r.calls, false);
    let secagg = sum(&r.calls, true);
    let close = match dropouts {
        None => r.calls.get("commit_submission"),
        Some(_) => r.calls.get("secagg_reveal"),
    }
    .map_or(0, |s| s.max_instructions);
    let survivors = r.contributors as u64;
    let dropped_after_sharing = r
        .secagg
        .map_or(0, |c| (c.sharers as u64).saturating_sub(survivors));
    SecAggRun {
        dropouts,
        contributors: r.contributors,
        messages_per_client: all.calls as f64 / took_part as f64,
        bytes_per_client: all.arg_bytes as f64 / took_part as f64,
        secagg_bytes_per_client: secagg.arg_bytes as f64 / took_part as f64,
        instructions_per_client: all.instructions as f64 / took_part as f64,
        close_instructions: close,
        seeds: if dropouts.is_some() {
            survivors + survivors * dropped_after_sharing
        } else {
            0
        },
        open_seconds: r.open_seconds,
        wall_seconds_per_round: wall / rounds.max(1) as f64,
        model_version: r.model_version.clone(),
        accuracy: r.test_accuracy,
    }
}

/// Runs `base` without secure aggregation, then with it at each of `dropouts`.
pub fn run(
    base: &SimulationConfig,
    dropouts: &[usize],
    phase_seconds: u64,
    progress: &mut dyn Progress,
) -> anyhow::Result<SecAggReport> {
    let mut base = base.clone();
    base.state = None;
    base.secure_aggregation = None;
    base.dropouts = 0;
    progress.note("secure aggregation: baseline without it (f32 uploads)");
    let plain = simulate(&base, progress)?;
    let clients = plain.clients;
    let last = |r: &crate::simulate::SimulationReport| {
        r.rounds
            .last()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no round ran"))
    };
    let mut runs = vec![summarize(
        &last(&plain)?,
        None,
        clients,
        plain.wall_seconds,
        plain.rounds.len(),
    )];
    for &k in dropouts {
        progress.note(&format!(
            "secure aggregation: {k} of {clients} dropping out"
        ));
        let args = SimulationConfig {
            secure_aggregation: Some(SecAggConfig {
                max_dropout_fraction: 0.0,
                phase_duration_ns: phase_seconds.saturating_mul(1_000_000_000),
            }),
            dropouts: k,
            ..base.clone()
        };
        let report = simulate(&args, progress)?;
        runs.push(summarize(
            &last(&report)?,
            Some(k),
            clients,
            report.wall_seconds,
            report.rounds.len(),
        ));
    }
    Ok(SecAggReport {
        param_count: plain.param_count,
        base,
        clients,
        phase_seconds: phase_seconds as f64,
        runs,
    })
}

impl SecAggRun {
    pub fn label(&self) -> String {
        match self.dropouts {
            None => "no secure aggregation".into(),
            Some(k) => format!("secure aggregation, {k} dropped"),
        }
    }
}

/// The Markdown section for `docs/benchmarks.md`.
pub fn render(report: &SecAggReport) -> String {
    let b = &report.base;
    let base_close = report.runs[0].close_instructions as f64;
    let mut out = format!(
        "## 10. Secure aggregation: cost against dropouts\n\n\
         `flic bench secagg`: the same federation ({} clients, model `{}` with {} parameters, \
         {} rounds, partition `{}`, seed {}) on the embedded canister without secure \
         aggregation (f32 uploads), then with it while K clients drop out of each round, \
         spread over the phases (the first before its masked input, the next before its \
         shares, then before the unmasking, then before advertising). Phases last {} s; one \
         that loses a participant ends at its deadline. Figures are of the last round, from \
         the embedded IC's instruction counts; per client means per client that took part.\n\n",
        report.clients,
        b.model,
        report.param_count,
        b.rounds,
        b.partition,
        b.seed,
        report.phase_seconds,
    );
    let rows: Vec<Vec<String>> = report
        .runs
        .iter()
        .map(|r| {
            let mask_per_param = if r.seeds > 0 {
                format!(
                    "{:.0}",
                    (r.close_instructions as f64 - base_close).max(0.0)
                        / (r.seeds as f64 * report.param_count as f64)
                )
            } else {
                "-".into()
            };
            vec![
                r.label(),
                r.contributors.to_string(),
                format!("{:.1}", r.messages_per_client),
                crate::output::human_bytes(r.bytes_per_client as u64),
                crate::output::human_bytes(r.secagg_bytes_per_client as u64),
                format!("{:.1} M", r.instructions_per_client / 1e6),
                format!("{:.1} M", r.close_instructions as f64 / 1e6),
                if r.seeds > 0 {
                    r.seeds.to_string()
                } else {
                    "-".into()
                },
                mask_per_param,
                format!("{:.0} s", r.open_seconds),
                format!("{:.2}%", r.accuracy * 100.0),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "run",
            "contributions",
            "messages / client",
            "bytes sent / client",
            "of which secure aggregation",
            "instructions / client",
            "closing message",
            "mask streams",
            "extra close instructions / (stream x parameter)",
            "round open (canister clock)",
            "accuracy",
        ],
        &rows,
    ));
    out.push_str(&format!(
        "\nThe closing message's extra instructions over the baseline's close, per mask stream and \
         parameter, include the X25519 agreements and the reconstruction of every seed; \
         `ic_limits::MASK_PER_PARAM` ({}) counts the streams in the job's admission check. \
         With no dropouts the model versions equal the baseline's: masking changes nothing in \
         the sum. A round stays open for as many phase lengths as it has phases that lost a \
         participant: every phase whose participants all act ends at once.\n",
        flic_protocol::ic_limits::MASK_PER_PARAM,
    ));
    out
}
