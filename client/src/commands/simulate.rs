//! `flic simulate`: runs [`crate::simulate::run`] and prints or writes its report.

use anyhow::Context;

use crate::cli::SimulateArgs;
use crate::output::{Printer, Progress};
use crate::simulate::{run as simulate, summary_table};

pub fn run(
    printer: &Printer,
    args: &SimulateArgs,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    let report = simulate(&args.config()?, progress)?;
    printer.out(format!("{}", summary_table(&report)))?;
    printer.out(format!(
        "final test accuracy: {:.2}% (initial {:.2}%), {} clients, {} rounds, {:.1} s",
        report.final_accuracy * 100.0,
        report.initial_accuracy * 100.0,
        report.clients,
        report.rounds.len(),
        report.wall_seconds
    ))?;
    if let (Some(dp), Some(spent)) = (
        &report.config.dp,
        report.rounds.last().and_then(|r| r.epsilon_spent),
    ) {
        printer.out(format!(
            "privacy: epsilon {spent:.3} of {} spent at delta {} (noise multiplier {:.3}), certified in every round record",
            dp.target_epsilon, dp.delta, dp.noise_multiplier
        ))?;
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        printer.info(format!("wrote {}", path.display()));
    }
    Ok(())
}
