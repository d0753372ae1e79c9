//! `flic job start|pause|resume|allow|evict`: the controller's side of a real deployment.

use crate::output::Printer;
use anyhow::Context;
use flic_model_zoo::{init_weights, model_spec, ModelConfig};
use flic_protocol::api::{Admission, AllowListChange, ClientHyperparameters, JobConfig};

use crate::cli::ModelArg;
use crate::cli::{JobStartArgs, TargetArgs};

/// Rounds the budget lasts when `--dp` calibrates the noise without `--dp-rounds`.
const DEFAULT_DP_ROUNDS: u64 = 100;

pub fn start(printer: &Printer, args: &JobStartArgs) -> anyhow::Result<()> {
    let hidden: Vec<usize> = if args.model == ModelArg::Mlp {
        args.hidden.clone()
    } else {
        Vec::new()
    };
    let config = ModelConfig::for_data(args.model.id(), &args.input_shape, args.classes, &hidden)?;
    let spec = model_spec(&config)?;
    let weights = init_weights(&config, args.seed)?;
    let client = ClientHyperparameters {
        learning_rate: args.lr,
        batch_size: args.batch_size,
        local_epochs: args.local_epochs,
        optimizer: args.optimizer.into(),
        seed: args.seed,
        proximal_mu: args.strategy.proximal_mu,
    };
    let dp = args
        .privacy
        .config(DEFAULT_DP_ROUNDS, args.secagg.secure_aggregation)?;
    let secure_aggregation = args.secagg.config(args.max_clients)?;
    if secure_aggregation.is_some() && args.retain_contributions {
        anyhow::bail!("--secure-aggregation with --retain-contributions: a masked input cannot be re-checked by anyone, so it is not retained");
    }
    let job = JobConfig {
        min_clients: args.min_clients,
        max_clients: args.max_clients,
        round_duration_ns: match args.round_seconds {
            Some(secs) => secs.saturating_mul(1_000_000_000),
            None => args.round_minutes.saturating_mul(60_000_000_000),
        },
        // Secure aggregation takes masked inputs only.
        allowed_encodings: if secure_aggregation.is_some() {
            vec![flic_protocol::DeltaEncoding::Masked]
        } else {
            args.encodings.0.clone()
        },
        clip_norm: args.clip_norm,
        max_weight: args
            .max_weight
            .unwrap_or(if dp.is_some() { 1 } else { 100_000 }),
        server_lr: args.server_lr,
        retain_contributions: args.retain_contributions,
        admission: args.allow_list.then_some(Admission::AllowList),
        aggregation: Some(args.strategy.aggregation),
        server_optimizer: Some(args.strategy.server_optimizer),
        upload_stall_ns: args
            .upload_stall_secs
            .map(|s| s.saturating_mul(1_000_000_000)),
        chunk_size: args.chunk_size,
        dp,
        secure_aggregation,
        ..JobConfig::new(spec, client)
    };
    let mut session = super::connect(&args.target)?;
    let id = session
        .api
        .launch_job(&job, &weights)
        .context("starting the job")?;
    session.save()?;
    let info = session.api.round_info()?;
    printer.out(format!(
        "job {id} running: {} ({} parameters), round {} on model {}",
        job.model_spec.architecture,
        info.param_count,
        info.round,
        info.model_version
            .map(|v| hex::encode(v.as_slice()))
            .unwrap_or_default()
    ))?;
    Ok(())
}

pub fn pause(printer: &Printer, target: &TargetArgs) -> anyhow::Result<()> {
    let mut session = super::connect(target)?;
    session.api.pause_job()?;
    session.save()?;
    printer.out(format!("job paused"))?;
    Ok(())
}

pub fn resume(printer: &Printer, target: &TargetArgs) -> anyhow::Result<()> {
    let mut session = super::connect(target)?;
    session.api.resume_job()?;
    session.save()?;
    printer.out(format!("job resumed"))?;
    Ok(())
}

pub fn allow(
    printer: &Printer,
    target: &TargetArgs,
    add: &[String],
    remove: &[String],
) -> anyhow::Result<()> {
    let parse = |texts: &[String]| -> anyhow::Result<Vec<candid::Principal>> {
        texts
            .iter()
            .map(|t| {
                candid::Principal::from_text(t).with_context(|| format!("`{t}` is not a principal"))
            })
            .collect()
    };
    let change = AllowListChange {
        add: parse(add)?,
        remove: parse(remove)?,
    };
    let mut session = super::connect(target)?;
    let len = session.api.update_allow_list(&change)?;
    session.save()?;
    printer.out(format!(
        "allow-list: {} added, {} removed, {len} principals listed",
        change.add.len(),
        change.remove.len()
    ))?;
    Ok(())
}

pub fn evict(printer: &Printer, target: &TargetArgs, submission_id: u64) -> anyhow::Result<()> {
    let mut session = super::connect(target)?;
    session.api.evict_submission(submission_id)?;
    session.save()?;
    printer.out(format!("upload {submission_id} evicted"))?;
    Ok(())
}
