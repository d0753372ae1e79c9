//! `flic train`: take part in rounds as one contributor.
//!
//! Per round: read the round, download the model and check its version hash, train on
//! the local data with the job's hyperparameters, clip, encode, sign, and upload in
//! chunks. The prepared submission is journaled in the work directory before upload, so
//! a client restarted after a crash resumes the same upload instead of training again.
//! With a top-k encoding, what each upload leaves unsent is kept in the work directory
//! (`residual.bin`) and added to the next round's delta (error feedback).

use std::time::Duration;

use anyhow::bail;
use flic_protocol::api::JobState;

use crate::cli::TrainArgs;
use crate::output::{Printer, Progress};
use crate::participant::Contributor;
use crate::receipts::ReceiptOrigin;
use crate::training::{
    check_dataset, default_work_dir, is_convolutional, with_retry, Committed, RoundChoices, WorkDir,
};

pub fn run(printer: &Printer, args: &TrainArgs, progress: &mut dyn Progress) -> anyhow::Result<()> {
    let data = crate::data::load(&args.data.data, args.data.format.into())?;
    let mut session = super::connect(&args.target)?;
    let identity = session.identity.take().expect("connect loads the identity");
    let dataset = check_dataset(
        &mut session.api,
        identity.principal(),
        args.dataset_id,
        &data,
        args.data.salt()?.as_ref(),
        &args.data.data,
        progress,
    )?;

    // The job's architecture decides the CPU backend `auto` falls back to.
    let first = with_retry("reading the round", progress, |_| session.api.round_info())?;
    let device = crate::compute::start(args.backend, is_convolutional(&first), &mut |n| {
        progress.note(n)
    })?
    .device;

    let origin = ReceiptOrigin {
        network: args.target.network.clone(),
        state: args
            .target
            .state
            .as_deref()
            .map(std::path::absolute)
            .transpose()?,
    };
    let work = WorkDir::new(
        &args.work_dir.clone().unwrap_or_else(default_work_dir),
        origin,
    );
    work.collect_receipts(&mut session.api, progress)?;
    let mut done_rounds = 0u64;
    let mut last_round = None;

    if let Some(committed) = work.resume(&mut session, args.max_upload_rate, progress)? {
        last_round = Some(committed.prepared.header.round);
        report(printer, &committed, args.output.json)?;
        done_rounds += 1;
    }

    while done_rounds < args.rounds {
        let info = with_retry("reading the round", progress, |_| session.api.round_info())?;
        if info.state != JobState::Running {
            bail!(
                "the job is {}, not running; try again when the controller starts it",
                info.state
            );
        }
        if last_round == Some(info.round) {
            if session.embedded_state().is_some() {
                progress.note("the round is still open, waiting for other contributors; run `flic train` again later");
                break;
            }
            std::thread::sleep(Duration::from_secs(5));
            continue;
        }
        let contributor = Contributor {
            identity: &identity,
            dataset_id: dataset.id,
            data: &data,
            device: &device,
        };
        progress.note(&format!(
            "round {}: training on model {}",
            info.round,
            info.model_version
                .map(|v| hex::encode(v.as_slice()))
                .unwrap_or_default()
        ));
        if let Some((dp, job)) = info.config.as_ref().and_then(|c| c.dp.map(|d| (d, c))) {
            progress.note(&format!(
                "this job has {} differential privacy: your delta is clipped to {}{} and weighs at most {}; the models so far spent epsilon {:.3} of {} (delta {})",
                dp.mode.name(),
                info.clip_norm().unwrap_or(job.clip_norm),
                if dp.adaptive_clip.is_some() { " (this round's adaptive clip)" } else { "" },
                job.max_weight,
                dp.epsilon_after(info.round),
                dp.target_epsilon,
                dp.delta
            ));
        }
        let choices = RoundChoices {
            encoding: args.encoding,
            max_upload_rate: args.max_upload_rate,
            stop: &|| false,
        };
        let step = work.contribute_round(&mut session, &contributor, &info, &choices, progress)?;
        let committed = work.record(&mut session, step.prepared, step.upload, progress)?;
        report(printer, &committed, args.output.json)?;
        done_rounds += 1;
        last_round = Some(info.round);
    }
    Ok(())
}

fn report(printer: &Printer, committed: &Committed, json: bool) -> anyhow::Result<()> {
    let (prepared, outcome, instructions) = (
        &committed.prepared,
        &committed.outcome,
        committed.instructions,
    );
    let r = &outcome.receipt;
    let encoding = prepared.header.encoding;
    let payload = prepared.payload.len() as u64;
    let per_param = payload as f64 / prepared.header.param_count.max(1) as f64;
    // Ingress is most of what an upload costs the canister (docs/benchmarks.md); execution
    // is known where the host counts instructions.
    let messages = prepared.header.chunk_count as u64 + 2;
    let cycles = crate::bench::fees::RoundCycles::new(
        messages,
        instructions.unwrap_or(0),
        messages,
        payload,
    );
    let ingress_cycles = cycles.ingress;
    let execution_cycles = instructions.map(|_| cycles.execution);
    if json {
        Ok(printer.json(&serde_json::json!({
            "round": r.round,
            "submission_id": r.submission_id,
            "contribution_index": r.contribution_index,
            "index_in_round": r.index_in_round,
            "header_hash": hex::encode(r.header_hash.as_slice()),
            "weight": r.weight,
            "round_closed": r.round_closed,
            "chunks_sent": outcome.chunks_sent,
            "chunks_resumed": outcome.chunks_resumed,
            "bytes_sent": outcome.bytes_sent,
            "encoding": encoding.name(),
            "payload_bytes": payload,
            "bytes_per_param": per_param,
            "ingress_cycles": ingress_cycles,
            "instructions": instructions,
            "execution_cycles": execution_cycles,
            "shrink": prepared.shrink,
            "residual_norm": prepared.residual.as_ref().map(|r| r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt()),
        }))?)
    } else {
        printer.out(format!(
            "committed contribution {} to round {} (weight {}, {} chunks sent, {} resumed; {} {}, {:.3} bytes/param, about {:.1} M cycles of ingress){}",
            r.contribution_index,
            r.round,
            r.weight,
            outcome.chunks_sent,
            outcome.chunks_resumed,
            encoding.name(),
            crate::output::human_bytes(payload),
            per_param,
            ingress_cycles as f64 / 1e6,
            if r.round_closed {
                "; the round closed"
            } else {
                ""
            }
        ))?;
        Ok(())
    }
}
