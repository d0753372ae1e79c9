//! `flic simulate`: runs [`crate::simulate::run`] and prints or writes its report.

use anyhow::Context;

use crate::output::Progress;
use crate::simulate::{run as simulate, summary_table, SimulateArgs};

pub fn run(args: &SimulateArgs, progress: &mut dyn Progress) -> anyhow::Result<()> {
    let report = simulate(args, progress)?;
    println!("{}", summary_table(&report));
    println!(
        "final test accuracy: {:.2}% (initial {:.2}%), {} clients, {} rounds, {:.1} s",
        report.final_accuracy * 100.0,
        report.initial_accuracy * 100.0,
        report.clients,
        report.rounds.len(),
        report.wall_seconds
    );
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
