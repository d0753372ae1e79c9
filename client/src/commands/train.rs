//! `flic train`: take part in rounds as one contributor.
//!
//! Per round: read the round, download the model and check its version hash, train on
//! the local data with the job's hyperparameters, clip, encode, sign, and upload in
//! chunks. The prepared submission is journaled in the work directory before upload, so
//! a client restarted after a crash resumes the same upload instead of training again.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use flic_model_zoo::{config_from_spec, train_local, Backend};
use flic_protocol::api::JobState;
use flic_protocol::DeltaEncoding;

use crate::api::ApiError;
use crate::cli::TrainArgs;
use crate::output::Progress;
use crate::participant::{prepare_submission, train_params, upload, UploadJournal};
use crate::receipts::ReceiptStore;
use crate::retry::Backoff;

/// Retries transient failures with exponential backoff, saying so.
fn with_retry<T>(
    what: &str,
    progress: &mut dyn Progress,
    f: impl FnMut(&mut dyn Progress) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    Backoff::default().run(what, progress, f)
}

pub fn run(args: &TrainArgs, progress: &mut dyn Progress) -> anyhow::Result<()> {
    let data = crate::data::load(&args.data.data, args.data.format)?;
    let device = args.backend.parse::<Backend>()?.device()?;
    let mut session = super::connect(&args.target)?;
    let me = session.identity.principal();

    let dataset = with_retry("reading the dataset", progress, |_| {
        session.api.get_dataset(args.dataset_id)
    })?
    .with_context(|| {
        format!(
            "dataset {} is not registered; use `flic dataset register`",
            args.dataset_id
        )
    })?;
    if dataset.owner != me {
        bail!(
            "dataset {} belongs to {}, not to you ({me})",
            dataset.id,
            dataset.owner
        );
    }
    let commitment = crate::data::dataset_commitment(&data);
    if commitment != *dataset.commitment {
        bail!(
            "{} does not match dataset {}'s registered commitment ({} here, {} registered)",
            args.data.data.display(),
            dataset.id,
            hex::encode(commitment),
            hex::encode(dataset.commitment.as_slice())
        );
    }

    let work_dir = args.work_dir.clone().unwrap_or_else(default_work_dir);
    let journal = UploadJournal::new(&work_dir);
    let receipts = ReceiptStore::new(&work_dir.join("receipts"));
    collect_receipts(&receipts, &mut session.api, progress)?;
    let mut done_rounds = 0u64;
    let mut last_round = None;

    if let Some(pending) = journal.load()? {
        let info = with_retry("reading the round", progress, |_| session.api.round_info())?;
        if info.round == pending.header.round
            && info.model_version == Some(pending.header.base_model_version)
        {
            progress.note(&format!(
                "resuming the upload for round {} from {}",
                info.round,
                work_dir.display()
            ));
            upload_and_record(
                &mut session,
                &journal,
                &receipts,
                &pending,
                args.output.json,
                progress,
            )?;
            done_rounds += 1;
            last_round = Some(info.round);
        } else {
            progress.note(&format!(
                "discarding a pending upload for round {}: that round is over",
                pending.header.round
            ));
            journal.clear()?;
        }
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
        let job = info
            .config
            .clone()
            .context("the canister reports no job configuration")?;
        let model = with_retry("downloading the model", progress, |_| {
            session.api.download_model(&mut |_, _| {})
        })?;
        progress.note(&format!(
            "round {}: model {} verified ({} parameters)",
            info.round,
            hex::encode(model.info.version.as_slice()),
            model.weights.len()
        ));
        let config = config_from_spec(&model.spec)?;
        let params = train_params(&job.client, job.client.seed ^ info.round);
        progress.start("training", (data.len() * params.local_epochs) as u64);
        let outcome = train_local(&config, &model.weights, &data, &params, &device, &mut |p| {
            progress.set(p.samples_done as u64)
        })?;
        progress.finish(&format!(
            "trained {} samples, mean loss {:.4} ({:.0} samples/s)",
            outcome.samples, outcome.mean_loss, outcome.samples_per_sec
        ));
        let encoding = if job.allowed_encodings.contains(&DeltaEncoding::Int8Blocks) {
            DeltaEncoding::Int8Blocks
        } else {
            DeltaEncoding::F32
        };
        let prepared = prepare_submission(
            &session.identity,
            session.api.canister_id(),
            &info,
            dataset.id,
            outcome.samples as u64,
            &model.weights,
            &outcome.weights,
            encoding,
        )?;
        journal
            .save(&prepared)
            .with_context(|| format!("journaling the upload in {}", work_dir.display()))?;
        upload_and_record(
            &mut session,
            &journal,
            &receipts,
            &prepared,
            args.output.json,
            progress,
        )?;
        done_rounds += 1;
        last_round = Some(info.round);
    }
    Ok(())
}

/// Writes the receipts of earlier commits whose rounds have closed since.
/// Uploads a journaled submission, then saves the state, clears the journal, remembers the
/// receipt to collect once its round closes, and reports the commit.
fn upload_and_record(
    session: &mut super::Session,
    journal: &UploadJournal,
    receipts: &ReceiptStore,
    prepared: &crate::participant::PreparedSubmission,
    json: bool,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    let outcome = upload_with_bar(&mut session.api, prepared, progress)?;
    session.save()?;
    journal.clear()?;
    receipts.add_pending(outcome.receipt.contribution_index)?;
    collect_receipts(receipts, &mut session.api, progress)?;
    report(&outcome, json)
}

fn collect_receipts<T: crate::transport::Transport>(
    store: &ReceiptStore,
    api: &mut crate::api::AggregatorApi<T>,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    for path in store.collect(api)? {
        progress.note(&format!(
            "receipt verified and written to {}",
            path.display()
        ));
    }
    Ok(())
}

fn upload_with_bar<T: crate::transport::Transport>(
    api: &mut crate::api::AggregatorApi<T>,
    prepared: &crate::participant::PreparedSubmission,
    progress: &mut dyn Progress,
) -> anyhow::Result<crate::participant::UploadOutcome> {
    progress.start("uploading", prepared.header.chunk_count as u64);
    let outcome = with_retry("uploading", progress, |p| {
        upload(api, prepared, &mut |d, _| p.set(d as u64), &mut |_| true)
    })?
    .context("upload stopped before commit")?;
    progress.finish("");
    Ok(outcome)
}

fn report(outcome: &crate::participant::UploadOutcome, json: bool) -> anyhow::Result<()> {
    let r = &outcome.receipt;
    if json {
        super::print_json(&serde_json::json!({
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
        }))
    } else {
        println!(
            "committed contribution {} to round {} (weight {}, {} chunks sent, {} resumed){}",
            r.contribution_index,
            r.round,
            r.weight,
            outcome.chunks_sent,
            outcome.chunks_resumed,
            if r.round_closed {
                "; the round closed"
            } else {
                ""
            }
        );
        Ok(())
    }
}

fn default_work_dir() -> PathBuf {
    crate::identity::default_identity_path()
        .parent()
        .map(|p| p.join("work"))
        .unwrap_or_else(|| PathBuf::from(".flic"))
}
