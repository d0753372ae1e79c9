//! One contributor's part in a round: download and verify the model, train on local data
//! with the job's hyperparameters, clip, encode, sign, and upload in chunks so an
//! interrupted upload resumes where it stopped. [`contribute`] is the one round step that
//! `flic train` and `flic simulate` both run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candid::Principal;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use flic_protocol::api::{
    BeginSubmissionArgs, ClientHyperparameters, CommitReceipt, Optimizer, RoundInfo,
};
use flic_protocol::encoding::{self, clip_l2};
use flic_protocol::{chunking, merkle, DeltaEncoding, Hash, SubmissionHeader};

use crate::api::{AggregatorApi, ApiError};
use crate::identity::Identity;
use crate::output::Progress;
use crate::retry::Backoff;
use crate::transport::Transport;

/// Local training settings from the job's client hyperparameters; `shuffle_seed` orders
/// this contributor's batches in this round.
pub fn train_params(hp: &ClientHyperparameters, shuffle_seed: u64) -> flic_model_zoo::TrainParams {
    flic_model_zoo::TrainParams {
        lr: hp.learning_rate as f64,
        batch_size: hp.batch_size as usize,
        local_epochs: hp.local_epochs as usize,
        optimizer: match hp.optimizer {
            Optimizer::Sgd => flic_model_zoo::OptimizerKind::Sgd,
            Optimizer::Adam => flic_model_zoo::OptimizerKind::Adam,
        },
        seed: shuffle_seed,
        proximal_mu: hp.proximal_mu() as f64,
    }
}

/// Who contributes and with what: a key, a registered dataset and the data itself.
pub struct Contributor<'a> {
    pub identity: &'a Identity,
    pub dataset_id: u64,
    pub data: &'a flic_model_zoo::dataset::Dataset,
    pub device: &'a flic_model_zoo::Device,
}

/// Trained weights before they are encoded, with the model they were trained from:
/// `(base, trained) -> submitted`. Simulated attackers poison their update here.
pub type Tamper<'a> = &'a dyn Fn(&[f32], &[f32]) -> Vec<f32>;

/// The contributor's own choices for a round step (the rest comes from the job).
#[derive(Default)]
pub struct StepOptions<'a> {
    /// Encoding to upload with [default: [`preferred_encoding`] of the job].
    pub encoding: Option<DeltaEncoding>,
    /// Changes the trained weights before they are encoded (simulated attacks).
    pub tamper: Option<Tamper<'a>>,
    /// Sees the signed submission before its upload starts, e.g. to journal it so that a
    /// restarted client resumes it; an error stops the step before anything is sent.
    pub before_upload: Option<&'a mut dyn FnMut(&PreparedSubmission) -> anyhow::Result<()>>,
    /// Upload at most this many bytes per second (a contributor on a shared or metered link).
    pub max_upload_rate: Option<u64>,
    /// What earlier contributions with an error-feedback encoding (top-k) did not send:
    /// added to this round's delta before it is encoded. The step's
    /// [`PreparedSubmission::residual`] is what to carry to the next round once it commits.
    pub residual: Option<&'a [f32]>,
    /// Secure aggregation: makes the masked input from the clipped delta, its weight and
    /// the job's fractional bits (see [`crate::secagg::Participation::masked_payload`]).
    /// A job with secure aggregation needs it; others refuse it.
    pub masker: Option<Masker<'a>>,
}

/// `(clipped delta, weight, frac_bits) -> masked input bytes`.
pub type Masker<'a> = &'a dyn Fn(&[f32], u64, u32) -> anyhow::Result<Vec<u8>>;

/// What a round step did.
pub struct RoundStep {
    pub train: flic_model_zoo::TrainOutcome,
    pub prepared: PreparedSubmission,
    pub upload: UploadOutcome,
    /// Wall time in calls to the canister (model download, upload, commit).
    pub canister_time: Duration,
    pub train_time: Duration,
    /// Delta, clipping, encoding, chunk hashing and signing.
    pub encode_time: Duration,
}

/// The encoding a client uses when it is free to choose: int8 if the job allows it (close
/// to exact at a quarter of the bytes), else the most compact the job allows. A job that
/// allows only lossier encodings wants them used.
pub fn preferred_encoding(allowed: &[DeltaEncoding]) -> DeltaEncoding {
    if allowed.contains(&DeltaEncoding::Int8Blocks) {
        return DeltaEncoding::Int8Blocks;
    }
    allowed
        .iter()
        .copied()
        .min_by(|a, b| a.bytes_per_param().total_cmp(&b.bytes_per_param()))
        .unwrap_or(DeltaEncoding::F32)
}

/// One contributor's round: downloads the model of the open round `round` (its version
/// hash checked), trains on the contributor's data with the job's hyperparameters and the
/// protocol's [`shuffle_seed`](flic_protocol::seeds::shuffle_seed), clips, encodes, signs
/// and uploads the delta, and commits it. Transient network failures are retried with
/// backoff. `progress` sees a `training` phase (samples) and an `uploading` phase (chunks).
pub fn contribute<T: Transport>(
    api: &mut AggregatorApi<T>,
    contributor: &Contributor,
    round: &RoundInfo,
    options: StepOptions,
    progress: &mut dyn Progress,
) -> anyhow::Result<RoundStep> {
    use anyhow::Context;
    let job = round.config.as_ref().ok_or(PrepareError::NoJob)?;
    let encoding = options
        .encoding
        .unwrap_or_else(|| preferred_encoding(&job.allowed_encodings));
    // Refused before any training, not after it.
    if !job.allowed_encodings.contains(&encoding) {
        return Err(PrepareError::EncodingNotAllowed {
            requested: encoding,
            allowed: job.allowed_encodings.clone(),
        }
        .into());
    }
    let retry = Backoff::default();

    let t = Instant::now();
    let model = retry.run("downloading the model", progress, |_| {
        api.download_model(&mut |_, _| {})
    })?;
    let mut canister_time = t.elapsed();
    if Some(model.info.version) != round.model_version {
        anyhow::bail!(
            "the canister moved on from round {} while the model downloaded; read the round again",
            round.round
        );
    }

    let t = Instant::now();
    let config = flic_model_zoo::config_from_spec(&model.spec)?;
    let seed = flic_protocol::seeds::shuffle_seed(
        job.client.seed,
        round.round,
        &contributor.identity.principal(),
    );
    let params = train_params(&job.client, seed);
    progress.start(
        "training",
        (contributor.data.len() * params.local_epochs) as u64,
    );
    let train = flic_model_zoo::train_local(
        &config,
        &model.weights,
        contributor.data,
        &params,
        contributor.device,
        &mut |p| {
            progress.set(p.samples_done as u64);
            progress.loss(p.samples_done as u64, p.loss);
        },
    )
    .with_context(|| format!("training in round {}", round.round))?;
    progress.finish(&format!(
        "trained {} samples, mean loss {:.4} ({:.0} samples/s)",
        train.samples, train.mean_loss, train.samples_per_sec
    ));
    let train_time = t.elapsed();

    let t = Instant::now();
    let tampered = options.tamper.map(|f| f(&model.weights, &train.weights));
    let trained = tampered.as_deref().unwrap_or(&train.weights);
    let prepared = match (encoding.is_masked(), options.masker) {
        (true, Some(masker)) => prepare_masked_submission(
            contributor.identity,
            api.canister_id(),
            round,
            contributor.dataset_id,
            train.samples as u64,
            &model.weights,
            trained,
            masker,
        )?,
        (true, None) => anyhow::bail!(
            "the job uses secure aggregation: a masked input needs the round's keys (flic train and flic simulate run its phases)"
        ),
        (false, _) => prepare_submission(
            contributor.identity,
            api.canister_id(),
            round,
            contributor.dataset_id,
            train.samples as u64,
            &model.weights,
            trained,
            encoding,
            options.residual,
        )?,
    };
    let encode_time = t.elapsed();
    if let Some(hook) = options.before_upload {
        hook(&prepared)?;
    }

    let t = Instant::now();
    let upload = upload_with_retry(api, &prepared, options.max_upload_rate, progress)?;
    canister_time += t.elapsed();
    Ok(RoundStep {
        train,
        prepared,
        upload,
        canister_time,
        train_time,
        encode_time,
    })
}

/// Uploads and commits `prepared` (resuming whatever the canister already has), retrying
/// transient failures; `progress` sees an `uploading` phase of chunks.
pub fn upload_with_retry<T: Transport>(
    api: &mut AggregatorApi<T>,
    prepared: &PreparedSubmission,
    max_upload_rate: Option<u64>,
    progress: &mut dyn Progress,
) -> anyhow::Result<UploadOutcome> {
    use anyhow::Context;
    progress.start("uploading", prepared.header.chunk_count as u64);
    let started = Instant::now();
    let mut sent = 0u64;
    // Before each chunk, wait until the bytes sent so far fit the rate.
    let mut pace = |index: u32| {
        if let Some(rate) = max_upload_rate.filter(|&r| r > 0) {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        sent += prepared.chunk(index).len() as u64;
        true
    };
    let outcome = Backoff::default()
        .run("uploading", progress, |p| {
            upload(api, prepared, &mut |d, _| p.set(d as u64), &mut pace)
        })?
        .context("upload stopped before commit")?;
    progress.finish("");
    Ok(outcome)
}

/// A delta ready to upload: encoded, chunked, signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreparedSubmission {
    pub header: SubmissionHeader,
    pub public_key: ByteBuf,
    pub signature: ByteBuf,
    pub chunk_hashes: Vec<Hash>,
    pub chunk_size: u32,
    /// The encoded delta (all chunks back to back).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// L2 norm of the delta before clipping.
    pub norm_before_clip: f64,
    /// Error feedback: what this contribution leaves unsent (the clipped delta plus the
    /// residual carried in, minus what the payload decodes to), for the next round. `None`
    /// for encodings without error feedback. Absent in journals of earlier releases.
    #[serde(default)]
    pub residual: Option<Vec<f32>>,
    /// How much the delta was scaled down so that its encoding meets the clip bound
    /// (1: not at all).
    #[serde(default = "one")]
    pub shrink: f64,
    /// Adaptive clipping: whether `norm_before_clip` was at most the round's clip (sent
    /// beside the header, not in it). Absent in journals of earlier releases.
    #[serde(default)]
    pub below_clip: Option<bool>,
}

fn one() -> f64 {
    1.0
}

impl PreparedSubmission {
    pub fn chunk(&self, index: u32) -> &[u8] {
        let start = index as usize * self.chunk_size as usize;
        let end = (start + self.chunk_size as usize).min(self.payload.len());
        &self.payload[start..end]
    }

    pub fn begin_args(&self) -> BeginSubmissionArgs {
        BeginSubmissionArgs {
            header: self.header.clone(),
            public_key: self.public_key.clone(),
            signature: self.signature.clone(),
            chunk_hashes: self.chunk_hashes.clone(),
            below_clip: self.below_clip,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("the canister has no job configured")]
    NoJob,
    #[error("the round has no model version yet")]
    NoModel,
    #[error("local weights have {got} values, the model has {expected}")]
    WrongLength { expected: usize, got: usize },
    #[error(
        "the job allows {}, not {requested}; pick one with --encoding",
        names(allowed)
    )]
    EncodingNotAllowed {
        requested: DeltaEncoding,
        allowed: Vec<DeltaEncoding>,
    },
    #[error("cannot encode the delta: {0}")]
    Encode(#[from] flic_protocol::DeltaError),
}

fn names(encodings: &[DeltaEncoding]) -> String {
    encodings
        .iter()
        .map(|e| e.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Computes `trained - base`, clips it to the job's L2 bound, adds the error-feedback
/// `residual` (top-k encodings), encodes within the clip bound (stochastic rounding seeded
/// by `seeds::quantize_seed`), chunks and signs it.
#[allow(clippy::too_many_arguments)]
pub fn prepare_submission(
    identity: &Identity,
    canister_id: Principal,
    round: &RoundInfo,
    dataset_id: u64,
    sample_count: u64,
    base: &[f32],
    trained: &[f32],
    encoding: DeltaEncoding,
    residual: Option<&[f32]>,
) -> Result<PreparedSubmission, PrepareError> {
    let config = round.config.as_ref().ok_or(PrepareError::NoJob)?;
    round.model_version.ok_or(PrepareError::NoModel)?;
    if base.len() != trained.len() || base.len() as u64 != round.param_count {
        return Err(PrepareError::WrongLength {
            expected: round.param_count as usize,
            got: trained.len(),
        });
    }
    if !config.allowed_encodings.contains(&encoding) {
        return Err(PrepareError::EncodingNotAllowed {
            requested: encoding,
            allowed: config.allowed_encodings.clone(),
        });
    }
    let mut delta: Vec<f32> = trained.iter().zip(base).map(|(t, b)| t - b).collect();
    // The round's clip: the job's, or under adaptive clipping this round's.
    let clip_norm = round.clip_norm().ok_or(PrepareError::NoJob)?;
    let norm_before_clip = clip_l2(&mut delta, clip_norm);
    let feedback = encoding.wants_error_feedback();
    if let (true, Some(r)) = (feedback, residual) {
        if r.len() == delta.len() {
            delta.iter_mut().zip(r).for_each(|(d, r)| *d += r);
        }
    }
    let seed =
        flic_protocol::seeds::quantize_seed(config.client.seed, round.round, &identity.principal());
    let encoded = encoding::encode_within(encoding, &delta, clip_norm, seed)?;
    let residual = feedback.then(|| {
        delta
            .iter()
            .zip(&encoded.decoded)
            .map(|(v, sent)| v - sent)
            .collect()
    });
    Ok(PreparedSubmission {
        norm_before_clip,
        residual,
        shrink: encoded.shrink,
        below_clip: round
            .adaptive_clip()
            .then_some(norm_before_clip <= clip_norm as f64),
        ..sign_payload(
            identity,
            canister_id,
            round,
            dataset_id,
            sample_count,
            encoding,
            encoded.bytes,
        )?
    })
}

/// A secure-aggregation contribution: `trained - base` clipped to the job's bound (nobody
/// can check it afterwards), masked by `masker` at the contribution's weight, chunked and
/// signed.
#[allow(clippy::too_many_arguments)]
pub fn prepare_masked_submission(
    identity: &Identity,
    canister_id: Principal,
    round: &RoundInfo,
    dataset_id: u64,
    sample_count: u64,
    base: &[f32],
    trained: &[f32],
    masker: Masker,
) -> anyhow::Result<PreparedSubmission> {
    let config = round.config.as_ref().ok_or(PrepareError::NoJob)?;
    if base.len() != trained.len() || base.len() as u64 != round.param_count {
        return Err(PrepareError::WrongLength {
            expected: round.param_count as usize,
            got: trained.len(),
        }
        .into());
    }
    let mut delta: Vec<f32> = trained.iter().zip(base).map(|(t, b)| t - b).collect();
    let norm_before_clip = clip_l2(&mut delta, config.clip_norm);
    let frac_bits = config
        .validate()
        .map_err(|e| anyhow::anyhow!("the job's configuration: {e}"))?;
    let weight = flic_protocol::fedavg::capped_weight(sample_count, config.max_weight);
    let payload = masker(&delta, weight, frac_bits)?;
    Ok(PreparedSubmission {
        norm_before_clip,
        ..sign_payload(
            identity,
            canister_id,
            round,
            dataset_id,
            sample_count,
            DeltaEncoding::Masked,
            payload,
        )?
    })
}

/// Chunks, hashes and signs an encoded payload.
fn sign_payload(
    identity: &Identity,
    canister_id: Principal,
    round: &RoundInfo,
    dataset_id: u64,
    sample_count: u64,
    encoding: DeltaEncoding,
    payload: Vec<u8>,
) -> Result<PreparedSubmission, PrepareError> {
    let config = round.config.as_ref().ok_or(PrepareError::NoJob)?;
    let base_version = round.model_version.ok_or(PrepareError::NoModel)?;
    let chunk_size = config.chunk_size();
    let hashes = chunking::chunk_hashes(&payload, chunk_size);
    let header = SubmissionHeader {
        canister_id,
        job_id: round.job_id,
        round: round.round,
        base_model_version: base_version,
        dataset_id,
        sample_count,
        encoding,
        param_count: round.param_count,
        chunk_count: hashes.len() as u32,
        chunk_root: Hash::new(merkle::root(&hashes)),
    };
    let signature = header.sign(identity.signing_key());
    Ok(PreparedSubmission {
        header,
        public_key: ByteBuf::from(identity.verifying_key().to_bytes().to_vec()),
        signature: ByteBuf::from(signature.to_vec()),
        chunk_hashes: hashes.into_iter().map(Hash::new).collect(),
        chunk_size,
        payload,
        norm_before_clip: 0.0,
        residual: None,
        shrink: 1.0,
        below_clip: None,
    })
}

/// What an upload did.
#[derive(Debug, Clone)]
pub struct UploadOutcome {
    pub receipt: CommitReceipt,
    /// Chunks sent in this call (fewer than the total when resuming).
    pub chunks_sent: u32,
    /// Chunks the canister already had.
    pub chunks_resumed: u32,
    pub bytes_sent: u64,
}

/// Begins (or, for the same header, resumes) the submission, sends the chunks the canister
/// does not have yet, and commits. `progress(done, total)` is called per chunk.
/// `before_chunk` may abort the upload (used to simulate a crash); it returns `false` to stop.
pub fn upload<T: Transport>(
    api: &mut AggregatorApi<T>,
    prepared: &PreparedSubmission,
    progress: &mut dyn FnMut(u32, u32),
    before_chunk: &mut dyn FnMut(u32) -> bool,
) -> Result<Option<UploadOutcome>, ApiError> {
    let status = api.begin_submission(&prepared.begin_args())?;
    let total = prepared.header.chunk_count;
    let mut have = vec![false; total as usize];
    for &i in &status.stored_chunks {
        if let Some(slot) = have.get_mut(i as usize) {
            *slot = true;
        }
    }
    let resumed = status.stored_chunks.len() as u32;
    let (mut sent, mut bytes_sent) = (0u32, 0u64);
    let mut done = resumed;
    progress(done, total);
    for index in 0..total {
        if have[index as usize] {
            continue;
        }
        if !before_chunk(index) {
            return Ok(None);
        }
        let chunk = prepared.chunk(index);
        api.put_chunk(status.submission_id, index, chunk.to_vec())?;
        sent += 1;
        bytes_sent += chunk.len() as u64;
        done += 1;
        progress(done, total);
    }
    let receipt = api.commit_submission(status.submission_id)?;
    Ok(Some(UploadOutcome {
        receipt,
        chunks_sent: sent,
        chunks_resumed: resumed,
        bytes_sent,
    }))
}

/// A prepared submission kept on disk until it is committed, so a restarted client
/// resumes the same upload instead of training again.
pub struct UploadJournal {
    path: PathBuf,
}

impl UploadJournal {
    pub fn new(work_dir: &Path) -> Self {
        Self {
            path: work_dir.join("pending-submission.json"),
        }
    }

    pub fn load(&self) -> std::io::Result<Option<PreparedSubmission>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes atomically (temporary file, then rename).
    pub fn save(&self, prepared: &PreparedSubmission) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(prepared).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, &self.path)
    }

    pub fn clear(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
