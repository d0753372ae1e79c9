//! Simulation speed: wall time per round of `flic simulate`, split into local training,
//! canister execution (embedded IC: downloads, uploads, commits, the close) and encoding.

use serde::Serialize;

use crate::bench::doc::table;
use crate::output::Progress;
use crate::simulate::{run as simulate, SimulationConfig, SimulationReport};

#[derive(Debug, Clone, Serialize)]
pub struct SimulationSpeed {
    pub model: String,
    pub encoding: String,
    pub param_count: u64,
    pub clients: usize,
    pub rounds: usize,
    pub train_seconds_per_round: f64,
    pub encode_seconds_per_round: f64,
    pub canister_seconds_per_round: f64,
    /// Wall time of the whole run divided by the rounds (includes evaluation and setup).
    pub wall_seconds_per_round: f64,
    pub instructions_per_round: f64,
    pub final_accuracy: f64,
}

pub fn measure(
    args: &SimulationConfig,
    progress: &mut dyn Progress,
) -> anyhow::Result<SimulationSpeed> {
    let mut args = args.clone();
    args.state = None;
    let r: SimulationReport = simulate(&args, progress)?;
    let n = r.rounds.len() as f64;
    let sum = |f: fn(&crate::simulate::RoundReport) -> f64| r.rounds.iter().map(f).sum::<f64>() / n;
    Ok(SimulationSpeed {
        model: args.model.clone(),
        encoding: args.encoding.name(),
        param_count: r.param_count,
        clients: r.clients,
        rounds: r.rounds.len(),
        train_seconds_per_round: sum(|x| x.train_seconds),
        encode_seconds_per_round: sum(|x| x.encode_seconds),
        canister_seconds_per_round: sum(|x| x.canister_seconds),
        wall_seconds_per_round: r.wall_seconds / n,
        instructions_per_round: sum(|x| x.instructions as f64),
        final_accuracy: r.final_accuracy,
    })
}

pub fn render(rows: &[SimulationSpeed]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|s| {
            let parts = s.train_seconds_per_round
                + s.encode_seconds_per_round
                + s.canister_seconds_per_round;
            let pct = |x: f64| format!("{:.3} s ({:.0}%)", x, x / parts * 100.0);
            vec![
                s.model.clone(),
                crate::bench::doc::thousands(s.param_count),
                s.encoding.clone(),
                s.clients.to_string(),
                format!("{:.3} s", s.wall_seconds_per_round),
                pct(s.train_seconds_per_round),
                pct(s.canister_seconds_per_round),
                pct(s.encode_seconds_per_round),
                format!("{:.1} M", s.instructions_per_round / 1e6),
                format!("{:.2}%", s.final_accuracy * 100.0),
            ]
        })
        .collect();
    format!(
        "Wall time per round of `flic simulate` (all clients train one after another in this \
         process, on ndarray). `training` is `train_local` of every client; `canister` is every \
         call into the embedded IC (round info, model download with hash check, begin, chunks, \
         commit, and the close inside the last commit), wasm compiled once per process; \
         `encoding` is delta, clipping, encoding, chunk hashing and signing. The shares are of \
         these three; the wall time also includes the test-set evaluation after each round and, once per run, compiling the canister wasm (about 1.6 s, spread over the rounds).\n\n{}",
        table(
            &[
                "model",
                "params",
                "encoding",
                "clients",
                "wall / round",
                "training",
                "canister",
                "encoding",
                "canister instructions / round",
                "final accuracy",
            ],
            &body,
        )
    )
}
