//! `flic bench`: runs a benchmark, prints it, and with `--doc` rewrites its sections of
//! the benchmarks document.

use anyhow::Context;

use crate::bench::{
    aggregate, compression, doc, invocation, learning, privacy, robust, scale, secagg, simulation,
    training, Machine,
};
use crate::cli::{
    BenchAggregateArgs, BenchCommand, BenchCompressionArgs, BenchLearningArgs, BenchPrivacyArgs,
    BenchRobustArgs, BenchScaleArgs, BenchSecAggArgs, BenchSimulateArgs, BenchTrainArgs,
};
use crate::output::{Printer, Progress};
use flic_protocol::optimizers::ServerOptimizer;
use flic_protocol::DeltaEncoding;

pub fn run(
    printer: &Printer,
    cmd: BenchCommand,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Aggregate(args) => run_aggregate(printer, &args, progress),
        BenchCommand::Learning(args) => run_learning(printer, &args, progress),
        BenchCommand::Simulate(args) => run_simulate(printer, &args, progress),
        BenchCommand::Scale(args) => run_scale(printer, &args, progress),
        BenchCommand::Train(args) => run_train(printer, &args, progress),
        BenchCommand::Robust(args) => run_robust(printer, &args, progress),
        BenchCommand::Compression(args) => run_compression(printer, &args, progress),
        BenchCommand::Privacy(args) => run_privacy(printer, &args, progress),
        BenchCommand::Secagg(args) => run_secagg(printer, &args, progress),
    }
}

fn run_secagg(
    printer: &Printer,
    args: &BenchSecAggArgs,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    let mut base = args.simulate.config()?;
    base.clients = base.clients.or(Some(10));
    let report = secagg::run(
        &base,
        &args.dropouts_list,
        args.simulate.secagg.secagg_phase_secs,
        progress,
    )?;
    for r in &report.runs {
        printer.out(format!(
            "{}: {} contributions, {:.1} messages and {} per client, closing message {:.1} M instructions, round open {:.0} s",
            r.label(),
            r.contributors,
            r.messages_per_client,
            crate::output::human_bytes(r.bytes_per_client as u64),
            r.close_instructions as f64 / 1e6,
            r.open_seconds
        ))?;
    }
    if let Some(path) = &args.doc {
        doc::write_section(
            path,
            "secagg",
            &doc::section_body(&secagg::render(&report), &Machine::detect(), &invocation()),
        )?;
        printer.info(format!("wrote the secagg section of {}", path.display()));
    }
    Ok(())
}

/// Writes `svg` next to the document `path` (at `svg_rel` from it), then the section
/// `name` rendered by `body` (which is given `svg_rel` to link the plot).
fn write_section_with_svg(
    printer: &Printer,
    path: &std::path::Path,
    name: &str,
    svg_rel: &str,
    svg: &str,
    body: &str,
) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let svg_path = dir.join(svg_rel);
    std::fs::create_dir_all(svg_path.parent().expect("has a parent"))?;
    std::fs::write(&svg_path, svg).with_context(|| format!("writing {}", svg_path.display()))?;
    doc::write_section(
        path,
        name,
        &doc::section_body(body, &Machine::detect(), &invocation()),
    )?;
    printer.info(format!(
        "wrote the {name} section of {} and {}",
        path.display(),
        svg_path.display()
    ));
    Ok(())
}

fn run_privacy(
    printer: &Printer,
    args: &BenchPrivacyArgs,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    let report = privacy::run(
        &args.simulate.config()?,
        &args.epsilons,
        &args
            .dp_modes
            .iter()
            .map(|m| (*m).into())
            .collect::<Vec<_>>(),
        args.simulate.privacy.dp_delta,
        args.dp_clip,
        args.adaptive_clip,
        progress,
    )?;
    for r in &report.runs {
        printer.out(format!(
            "{}: accuracy {:.2}% at round {}{}",
            r.label(),
            r.accuracy.last().copied().unwrap_or(0.0) * 100.0,
            r.accuracy.len(),
            r.epsilon_spent
                .last()
                .map(|e| format!(", epsilon spent {e:.3}"))
                .unwrap_or_default()
        ))?;
    }
    if let (Some(noise), Some(mask)) = (report.client_noise_ns_per_param, report.mask_ns_per_param)
    {
        printer.out(format!(
            "distributed DP on the client: {noise:.0} ns per parameter of discrete Gaussian, {mask:.1} ns of one mask stream"
        ))?;
    }
    if let Some(path) = &args.doc {
        let svg_rel = "benchmarks/privacy.svg";
        write_section_with_svg(
            printer,
            path,
            "privacy",
            svg_rel,
            &privacy::svg(&report),
            &privacy::render(&report, svg_rel),
        )?;
    }
    Ok(())
}

fn run_compression(
    printer: &Printer,
    args: &BenchCompressionArgs,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    let wasm = load_wasm(args.wasm.as_deref())?;
    let report = compression::run(
        &args.simulate.config()?,
        &args.encodings.0,
        &args.partitions_list,
        &compression::CostSetup {
            wasm: &wasm,
            build: &args.build,
            params: args.cost_params,
            contributions: args.cost_contributions,
        },
        progress,
    )?;
    {
        for r in &report.runs {
            printer.out(format!(
                "{} {}: {:.4} bytes/param, accuracy {:.2}% at round {}",
                r.partition,
                r.encoding,
                r.bytes_per_param,
                r.accuracy.last().copied().unwrap_or(0.0) * 100.0,
                r.accuracy.len()
            ))?;
        }
        for c in &report.costs {
            printer.out(format!(
                "{}: commit {:.1} instr/param/contribution, {:.1} M cycles and {:.5} USD per contribution at N={}",
                c.encoding,
                c.commit_per_param_contribution,
                c.cycles_per_contribution as f64 / 1e6,
                c.usd_per_contribution,
                c.params
            ))?;
        }
    }
    if let Some(path) = &args.doc {
        let svg_rel = "benchmarks/compression.svg";
        write_section_with_svg(
            printer,
            path,
            "compression",
            svg_rel,
            &compression::svg(&report),
            &compression::render(&report, svg_rel),
        )?;
    }
    Ok(())
}

/// `NAME[@SERVER_LR]`.
fn optimizer_with_lr(s: &str, default_lr: f32) -> anyhow::Result<(ServerOptimizer, f32)> {
    let (name, lr) = match s.split_once('@') {
        Some((n, lr)) => (
            n,
            lr.parse::<f32>()
                .ok()
                .filter(|x| x.is_finite() && *x > 0.0)
                .with_context(|| {
                    format!("`{lr}` in `{s}` is not a positive server learning rate")
                })?,
        ),
        None => (s, default_lr),
    };
    let opt = name
        .parse::<ServerOptimizer>()
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("--optimizers `{s}`"))?;
    Ok((opt, lr))
}

fn run_robust(
    printer: &Printer,
    args: &BenchRobustArgs,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    let mut base = args.simulate.config()?;
    if base.partitions.is_none() {
        base.clients = base.clients.or(Some(10));
    }
    for a in &args.attacks {
        a.parse::<crate::attack::Attack>()
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("--attacks `{a}`"))?;
    }
    if let Some(t) = args.target {
        anyhow::ensure!(
            (0.0..=1.0).contains(&t),
            "--target must be in [0, 1], got {t}"
        );
    }
    let optimizers = args
        .optimizers
        .iter()
        .map(|s| optimizer_with_lr(s, base.server_lr))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Clients already split into files are one partition, whatever the list says.
    let (partitions, optimizer_partition) = if base.partitions.is_some() {
        (
            vec!["pre-partitioned".to_string()],
            "pre-partitioned".to_string(),
        )
    } else {
        (
            args.partitions_list.clone(),
            args.optimizer_partition.clone(),
        )
    };
    let plan = robust::RobustPlan {
        base,
        rules: args.rules.clone(),
        attacks: args.attacks.clone(),
        attackers: args.attackers.clone(),
        partitions,
        optimizers,
        proximal_mus: args.proximal_mus.clone(),
        optimizer_partition,
        target: args.target,
        cost_params: args.cost_params,
        cost_contributions: args.cost_contributions,
    };
    let report = robust::run(&plan, progress)?;
    let text = robust::render(&report);
    printer.out(text.clone())?;
    if let Some(path) = &args.simulate.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.doc {
        doc::write_section(
            path,
            "robust",
            &doc::section_body(&text, &Machine::detect(), &invocation()),
        )?;
        printer.info(format!(
            "wrote the robustness section of {}",
            path.display()
        ));
    }
    Ok(())
}

/// The command line for the document, with the local Python replaced by the setup script
/// that makes one anywhere.
fn train_invocation(args: &BenchTrainArgs) -> String {
    let command = invocation();
    match &args.pytorch {
        Some(python) => command.replace(
            python.to_string_lossy().as_ref(),
            "\"$(bench/pytorch/setup.sh)\"",
        ),
        None => command,
    }
}

fn run_train(
    printer: &Printer,
    args: &BenchTrainArgs,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    anyhow::ensure!(threads > 0, "--threads must be at least 1");
    // burn's CPU backends parallelise through rayon's global pool, sized on first use,
    // which is after this point in this process.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    let backends: Vec<flic_model_zoo::Backend> = if args.backends.is_empty() {
        flic_model_zoo::Backend::compiled()
            .into_iter()
            .filter(|b| b.is_cpu())
            .collect()
    } else {
        args.backends.clone()
    };
    for b in &backends {
        anyhow::ensure!(
            b.is_compiled(),
            "backend `{b}` is not compiled in: rebuild with `--features {b}`"
        );
    }
    let script = args.script.clone().unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../bench/pytorch/train_throughput.py")
    });
    let models: Vec<&str> = args.models.iter().map(|m| m.id()).collect();
    let workloads = training::workloads(&models, args.samples_scale, args.seed)?;
    let settings = training::Settings {
        backends: &backends,
        batch_size: args.batch_size,
        threads,
        epochs: args.epochs.max(1),
        lr: args.lr,
        seed: args.seed,
        pytorch: args.pytorch.as_deref(),
        pytorch_device: &args.pytorch_device,
        script,
    };
    let report = training::measure(&workloads, &settings, progress)?;
    let text = training::render(&report);
    if args.json {
        printer.json(&report)?;
    } else {
        printer.out(format!("{text}"))?;
    }
    if let Some(path) = &args.doc {
        doc::write_section(
            path,
            &args.section,
            &doc::section_body(&text, &Machine::detect(), &train_invocation(args)),
        )?;
        printer.info(format!(
            "wrote the {} section of {}",
            args.section,
            path.display()
        ));
    }
    Ok(())
}

fn run_scale(
    printer: &Printer,
    args: &BenchScaleArgs,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    let wasm = load_wasm(args.wasm.as_deref())?;
    let mut reports = Vec::new();
    for &params in &args.params {
        let case = aggregate::AggregateCase {
            params,
            contributions: args.contributions,
            encoding: args.encoding.into(),
            chunk_size: flic_protocol::chunking::DEFAULT_CHUNK_SIZE,
            download: true,
            rule: Default::default(),
        };
        match aggregate::run(&wasm, &args.build, &case, progress) {
            Ok(r) => {
                printer.out(format!("{}", aggregate::one_line(&r)))?;
                reports.push(r);
            }
            Err(e) => {
                // The first size that fails is the finding: report it and stop.
                printer.out(format!("N={params}: failed: {e:#}"))?;
                break;
            }
        }
    }
    if let Some(path) = &args.doc {
        doc::write_section(
            path,
            "scale",
            &doc::section_body(&scale::render(&reports), &Machine::detect(), &invocation()),
        )?;
        printer.info(format!("wrote the scale section of {}", path.display()));
    }
    Ok(())
}

fn run_learning(
    printer: &Printer,
    args: &BenchLearningArgs,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    let report = learning::run(&args.simulate.config()?, &args.partitions_list, progress)?;
    for r in &report.results {
        printer.out(format!(
            "{}: final accuracy reference {:.2}%, canister f32 {:.2}%, canister int8 {:.2}% (max |f32 - ref| {:.2} pt, max |int8 - ref| {:.2} pt)",
            r.partition,
            r.float_reference.last().copied().unwrap_or(0.0) * 100.0,
            r.canister_f32.last().copied().unwrap_or(0.0) * 100.0,
            r.canister_int8.last().copied().unwrap_or(0.0) * 100.0,
            learning::PartitionResult::max_abs_diff(&r.canister_f32, &r.float_reference) * 100.0,
            learning::PartitionResult::max_abs_diff(&r.canister_int8, &r.float_reference) * 100.0,
        ))?;
    }
    if let Some(path) = &args.doc {
        let svg_rel = "benchmarks/learning.svg";
        write_section_with_svg(
            printer,
            path,
            "learning",
            svg_rel,
            &learning::svg(&report),
            &learning::render(&report, svg_rel),
        )?;
    }
    Ok(())
}

fn run_simulate(
    printer: &Printer,
    args: &BenchSimulateArgs,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for &model in &args.models {
        for encoding in [DeltaEncoding::F32, DeltaEncoding::Int8Blocks] {
            let mut a = args.simulate.config()?;
            a.model = model.id().into();
            a.encoding = encoding;
            a.clients = Some(a.clients.unwrap_or(10));
            let s = simulation::measure(&a, progress)?;
            printer.out(format!(
                "{} {}: {:.3} s/round wall; training {:.3} s, canister {:.3} s, encoding {:.3} s",
                s.model,
                s.encoding,
                s.wall_seconds_per_round,
                s.train_seconds_per_round,
                s.canister_seconds_per_round,
                s.encode_seconds_per_round
            ))?;
            rows.push(s);
        }
    }
    if let Some(path) = &args.doc {
        doc::write_section(
            path,
            "simulation",
            &doc::section_body(
                &simulation::render(&rows),
                &Machine::detect(),
                &invocation(),
            ),
        )?;
        printer.info(format!(
            "wrote the simulation section of {}",
            path.display()
        ));
    }
    Ok(())
}

fn load_wasm(path: Option<&std::path::Path>) -> anyhow::Result<Vec<u8>> {
    match path {
        Some(p) => std::fs::read(p).with_context(|| format!("reading --wasm {}", p.display())),
        None => Ok(flic_aggregator_wasm::AGGREGATOR_WASM.to_vec()),
    }
}

fn run_aggregate(
    printer: &Printer,
    args: &BenchAggregateArgs,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
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
            rule: args.aggregation,
        };
        let mut out = Vec::new();
        for (label, wasm) in &builds {
            out.push(aggregate::run(wasm, label, &case, progress)?);
        }
        out
    };
    if args.output.json {
        printer.json(&reports)?;
    } else {
        for r in &reports {
            printer.out(format!("{}", aggregate::one_line(r)))?;
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
        printer.info(format!(
            "wrote the aggregate, bytes and cost sections of {}",
            path.display()
        ));
    }
    Ok(())
}
