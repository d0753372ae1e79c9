//! A contributor's standing state between rounds, shared by `flic train` and the desktop
//! app: the registered dataset checked against the local data, and the work directory
//! that survives restarts (the upload journal, the error-feedback residual, receipts), and
//! a round of a job with secure aggregation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use candid::Principal;
use flic_protocol::api::{Dataset, RoundInfo};
use flic_protocol::DeltaEncoding;

use crate::api::{AggregatorApi, ApiError};
use crate::commands::Session;
use crate::output::Progress;
use crate::participant::{
    contribute, preferred_encoding, upload_with_retry, Contributor, PreparedSubmission, RoundStep,
    StepOptions, UploadJournal, UploadOutcome,
};
use crate::receipts::{ReceiptOrigin, ReceiptStore};
use crate::residual::{ResidualStore, Unused};
use crate::retry::Backoff;
use crate::transport::Transport;

/// Retries transient failures with exponential backoff, saying so.
pub fn with_retry<T>(
    what: &str,
    progress: &mut dyn Progress,
    f: impl FnMut(&mut dyn Progress) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    Backoff::default().run(what, progress, f)
}

/// Dataset `dataset_id` as registered, if it is `me`'s and `data` (with `salt`) matches
/// its commitment: a contributor never trains on data other than what it registered.
pub fn check_dataset<T: Transport>(
    api: &mut AggregatorApi<T>,
    me: Principal,
    dataset_id: u64,
    data: &flic_model_zoo::dataset::Dataset,
    salt: Option<&[u8; 32]>,
    data_path: &Path,
    progress: &mut dyn Progress,
) -> anyhow::Result<Dataset> {
    let dataset = with_retry("reading the dataset", progress, |_| {
        api.get_dataset(dataset_id)
    })?
    .with_context(|| {
        format!("dataset {dataset_id} is not registered; use `flic dataset register`")
    })?;
    if dataset.owner != me {
        bail!(
            "dataset {} belongs to {}, not to you ({me})",
            dataset.id,
            dataset.owner
        );
    }
    if dataset.revoked_at_ns.is_some() {
        bail!(
            "dataset {} is revoked: register the data again to contribute with it",
            dataset.id
        );
    }
    let commitment = crate::data::registered_commitment(data, salt);
    if commitment != *dataset.commitment {
        bail!(
            "{} does not match dataset {}'s registered commitment ({} here, {} registered)",
            data_path.display(),
            dataset.id,
            hex::encode(commitment),
            hex::encode(dataset.commitment.as_slice())
        );
    }
    Ok(dataset)
}

/// Whether the job trains a convolutional model (it decides the CPU backend `auto` picks).
pub fn is_convolutional(info: &RoundInfo) -> bool {
    info.config
        .as_ref()
        .is_some_and(|job| flic_model_zoo::model::is_convolutional(&job.model_spec.architecture))
}

/// The work directory `flic train` and the app keep by default: beside the identity.
pub fn default_work_dir() -> PathBuf {
    crate::identity::default_identity_path()
        .parent()
        .map(|p| p.join("work"))
        .unwrap_or_else(|| PathBuf::from(".flic"))
}

/// What a contributor keeps on disk between rounds and across restarts.
pub struct WorkDir {
    pub dir: PathBuf,
    pub journal: UploadJournal,
    pub residuals: ResidualStore,
    pub receipts: ReceiptStore,
}

/// A commit, as the canister acknowledged it.
pub struct Committed {
    pub prepared: PreparedSubmission,
    pub outcome: UploadOutcome,
    /// Instructions the submission cost, where the host counts them (the embedded IC).
    pub instructions: Option<u64>,
    /// Receipts of earlier commits written since (their rounds closed).
    pub receipts_written: Vec<PathBuf>,
}

impl WorkDir {
    /// `dir` for a contributor of the canister `origin` describes (receipts remember it).
    pub fn new(dir: &Path, origin: ReceiptOrigin) -> Self {
        Self {
            dir: dir.to_path_buf(),
            journal: UploadJournal::new(dir),
            residuals: ResidualStore::new(dir),
            receipts: ReceiptStore::new(&dir.join("receipts"), Some(origin)),
        }
    }

    /// Finishes an upload a crash or a closed window left journaled, if its round is still
    /// open on the same model; a journaled upload of a round that is over is dropped.
    pub fn resume(
        &self,
        session: &mut Session,
        max_upload_rate: Option<u64>,
        progress: &mut dyn Progress,
    ) -> anyhow::Result<Option<Committed>> {
        let Some(pending) = self.journal.load()? else {
            return Ok(None);
        };
        let info = with_retry("reading the round", progress, |_| session.api.round_info())?;
        if info.round == pending.header.round
            && info.model_version == Some(pending.header.base_model_version)
        {
            progress.note(&format!(
                "resuming the upload for round {} from {}",
                info.round,
                self.dir.display()
            ));
            let outcome = upload_with_retry(&mut session.api, &pending, max_upload_rate, progress)?;
            return self.record(session, pending, outcome, progress).map(Some);
        }
        progress.note(&format!(
            "discarding a pending upload for round {}: that round is over",
            pending.header.round
        ));
        self.journal.clear()?;
        Ok(None)
    }

    /// What earlier uploads with an error-feedback `encoding` left unsent, if it fits this
    /// job (a damaged file is reported and ignored).
    pub fn residual(
        &self,
        info: &RoundInfo,
        encoding: DeltaEncoding,
        progress: &mut dyn Progress,
    ) -> anyhow::Result<Option<Vec<f32>>> {
        if !encoding.wants_error_feedback() {
            return Ok(None);
        }
        Ok(
            match self
                .residuals
                .load(info.job_id, encoding, info.param_count)?
            {
                Ok(r) => {
                    progress.note(&format!(
                        "adding what earlier {encoding} uploads left unsent (from {})",
                        self.residuals.path().display()
                    ));
                    Some(r)
                }
                Err(Unused::Damaged) => {
                    progress.note(&format!(
                        "ignoring {}: it is damaged; starting error feedback afresh",
                        self.residuals.path().display()
                    ));
                    None
                }
                Err(_) => None,
            },
        )
    }

    /// Journals a signed submission before its upload starts.
    pub fn journal(&self, prepared: &PreparedSubmission) -> anyhow::Result<()> {
        self.journal
            .save(prepared)
            .with_context(|| format!("journaling the upload in {}", self.dir.display()))
    }

    /// After a commit: saves the state, saves the residual the commit leaves, clears the
    /// journal, remembers the receipt to collect once its round closes, and collects those
    /// that can be. The residual is saved before the journal is cleared: a crash in between
    /// resumes the journaled upload and saves it then.
    pub fn record(
        &self,
        session: &mut Session,
        prepared: PreparedSubmission,
        outcome: UploadOutcome,
        progress: &mut dyn Progress,
    ) -> anyhow::Result<Committed> {
        session.save()?;
        // Where the host counts instructions (the embedded IC does, a network does not);
        // the commit that closes a round includes the close.
        let instructions = Some(session.api.stats.submissions().instructions).filter(|&n| n > 0);
        session.api.stats = Default::default();
        if let Some(r) = &prepared.residual {
            self.residuals
                .save(prepared.header.job_id, prepared.header.encoding, r)
                .with_context(|| format!("saving {}", self.residuals.path().display()))?;
        }
        self.journal.clear()?;
        self.receipts
            .add_pending(outcome.receipt.contribution_index)?;
        let receipts_written = self.collect_receipts(&mut session.api, progress)?;
        Ok(Committed {
            prepared,
            outcome,
            instructions,
            receipts_written,
        })
    }

    /// Writes the receipts of earlier commits whose rounds have closed since.
    pub fn collect_receipts<T: Transport>(
        &self,
        api: &mut AggregatorApi<T>,
        progress: &mut dyn Progress,
    ) -> anyhow::Result<Vec<PathBuf>> {
        let written = self.receipts.collect(api)?;
        for path in &written {
            progress.note(&format!(
                "receipt verified and written to {}",
                path.display()
            ));
        }
        Ok(written)
    }
}

/// What a contributor chooses for its rounds, as `flic train`'s flags say.
pub struct RoundChoices<'a> {
    /// `None`: the job's preferred encoding (a secure round is always masked).
    pub encoding: Option<DeltaEncoding>,
    pub max_upload_rate: Option<u64>,
    /// Heeded while a secure round waits for the others' keys ([`contribute_securely`]).
    pub stop: &'a dyn Fn() -> bool,
}

impl WorkDir {
    /// One round's step for `contributor`: the phases of secure aggregation where the job
    /// has it; otherwise training and the upload, journaled here first, in the chosen
    /// encoding with what earlier uploads of it left unsent.
    pub fn contribute_round(
        &self,
        session: &mut Session,
        contributor: &Contributor,
        info: &RoundInfo,
        choices: &RoundChoices,
        progress: &mut dyn Progress,
    ) -> anyhow::Result<RoundStep> {
        let job = info
            .config
            .as_ref()
            .context("the canister has no job configured")?;
        if let Some(sa) = job.secure_aggregation {
            if session.embedded_state().is_some() {
                bail!("this job uses secure aggregation, whose phases need every participant online at once: contribute over a network (`flic devnet`, or the IC), not to a saved embedded state, or run the whole federation with `flic simulate --secure-aggregation`");
            }
            return contribute_securely(
                &mut session.api,
                contributor,
                info,
                sa.phase_duration_ns,
                choices.max_upload_rate,
                choices.stop,
                progress,
            );
        }
        let encoding = choices
            .encoding
            .unwrap_or_else(|| preferred_encoding(&job.allowed_encodings));
        let residual = self.residual(info, encoding, progress)?;
        let mut journal = |prepared: &PreparedSubmission| self.journal(prepared);
        contribute(
            &mut session.api,
            contributor,
            info,
            StepOptions {
                encoding: Some(encoding),
                before_upload: Some(&mut journal),
                max_upload_rate: choices.max_upload_rate,
                residual: residual.as_deref(),
                ..StepOptions::default()
            },
            progress,
        )
    }
}

/// One round of a job with secure aggregation: keys advertised and shares posted as its
/// first phases end, then training and the masked upload, then this contributor's shares
/// for the unmasking. Not journaled: the round's secrets live in memory only, so a client
/// that stops mid-round drops out of it (the round survives the job's dropout fraction).
pub fn contribute_securely<T: Transport>(
    api: &mut AggregatorApi<T>,
    contributor: &Contributor,
    info: &flic_protocol::api::RoundInfo,
    phase_ns: u64,
    max_upload_rate: Option<u64>,
    stop: &dyn Fn() -> bool,
    progress: &mut dyn Progress,
) -> anyhow::Result<RoundStep> {
    use crate::secagg as sa;
    use flic_protocol::api::SecAggPhase;
    let (round, poll) = (info.round, Duration::from_secs(1));
    // `stop` is heeded while waiting for the others' keys, before this contributor has
    // sealed shares to anyone; after that, leaving would make it a dropout of the round.
    let mut until_stopped = |_: &flic_protocol::api::SecAggRound| {
        if stop() {
            bail!("stopped while waiting for round {round}'s other participants");
        }
        Ok(())
    };
    let mut waiting = |_: &flic_protocol::api::SecAggRound| Ok(());
    // The advertise phase waits for min_clients beyond its deadline.
    let limit = Duration::from_nanos(phase_ns.saturating_mul(10)) + Duration::from_secs(60);
    let mut part = sa::advertise(
        api,
        contributor.identity,
        info.job_id,
        round,
        sa::fresh_randomness(),
    )?;
    progress.note(&format!(
        "round {round}: secure aggregation, participant {}; waiting for the others' keys",
        part.index
    ));
    sa::wait_for_phase(
        api,
        round,
        SecAggPhase::AdvertiseKeys,
        limit,
        poll,
        &mut until_stopped,
    )?;
    sa::post_shares(api, &mut part)?;
    progress.note(&format!(
        "round {round}: shares sealed to every participant; waiting for theirs"
    ));
    let v = sa::wait_for_phase(
        api,
        round,
        SecAggPhase::ShareKeys,
        limit,
        poll,
        &mut waiting,
    )?;
    if v.round != round || v.phase != SecAggPhase::MaskedInput {
        bail!("round {round} started over or moved on before the masked inputs ({} phase): try the next round", v.phase.name());
    }
    let config = info
        .config
        .as_ref()
        .context("the job has no configuration")?;
    let masker = |d: &[f32], w: u64, f: u32| part.masked_payload(&v, config, d, w, f);
    let step = contribute(
        api,
        contributor,
        info,
        StepOptions {
            encoding: Some(flic_protocol::DeltaEncoding::Masked),
            max_upload_rate,
            masker: Some(&masker),
            ..StepOptions::default()
        },
        progress,
    )?;
    progress.note(&format!(
        "round {round}: masked input committed; waiting for the others'"
    ));
    sa::wait_for_phase(
        api,
        round,
        SecAggPhase::MaskedInput,
        limit,
        poll,
        &mut waiting,
    )?;
    sa::reveal(api, &part)?;
    progress.note(&format!("round {round}: shares revealed for the unmasking"));
    Ok(step)
}
