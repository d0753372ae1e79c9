//! `flic bench`: runs a benchmark, prints it, and with `--doc` rewrites its sections of
//! the benchmarks document.

use anyhow::Context;

use crate::bench::{aggregate, doc, invocation, Machine};
use crate::cli::{BenchAggregateArgs, BenchCommand};
use crate::output::Progress;

pub fn run(cmd: BenchCommand, progress: &mut dyn Progress) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Aggregate(args) => run_aggregate(&args, progress),
    }
}

fn load_wasm(path: Option<&std::path::Path>) -> anyhow::Result<Vec<u8>> {
    match path {
        Some(p) => std::fs::read(p).with_context(|| format!("reading --wasm {}", p.display())),
        None => Ok(flic_aggregator_wasm::AGGREGATOR_WASM.to_vec()),
    }
}

fn run_aggregate(args: &BenchAggregateArgs, progress: &mut dyn Progress) -> anyhow::Result<()> {
    let mut builds = vec![(args.build.clone(), load_wasm(args.wasm.as_deref())?)];
    if let Some(p) = &args.compare_wasm {
        builds.push((args.compare_build.clone(), load_wasm(Some(p))?));
    }
    let reports = if args.sweep {
        aggregate::sweep(
            &builds,
            &args.sweep_params,
            &args.sweep_contributions,
            args.sweep_max_work,
            args.chunk_size,
            progress,
        )?
    } else {
        let case = aggregate::AggregateCase {
            params: args.params,
            contributions: args.contributions,
            encoding: args.encoding.into(),
            chunk_size: args.chunk_size,
            download: false,
        };
        let mut out = Vec::new();
        for (label, wasm) in &builds {
            out.push(aggregate::run(wasm, label, &case, progress)?);
        }
        out
    };
    if args.output.json {
        super::print_json(&reports)?;
    } else {
        for r in &reports {
            println!("{}", aggregate::one_line(r));
        }
    }
    if let Some(path) = &args.doc {
        let machine = Machine::detect();
        let command = invocation();
        doc::write_section(
            path,
            "aggregate",
            &doc::section_body(&aggregate::render_aggregate(&reports), &machine, &command),
        )?;
        doc::write_section(
            path,
            "bytes",
            &doc::section_body(&aggregate::render_bytes(&reports), &machine, &command),
        )?;
        doc::write_section(
            path,
            "cost",
            &doc::section_body(
                &aggregate::render_cost(&reports, &args.build),
                &machine,
                &command,
            ),
        )?;
        eprintln!(
            "wrote the aggregate, bytes and cost sections of {}",
            path.display()
        );
    }
    Ok(())
}
