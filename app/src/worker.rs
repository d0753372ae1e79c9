//! Everything the app does that takes time or touches the network, files or the model
//! runs here, on one thread off the UI: the UI sends [`Request`]s and draws the
//! [`Event`]s that come back, so the window never freezes. The worker only calls the
//! client library (`flic-client`), the same code the `flic` CLI runs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flic_client::cli::{IdentityArgs, TargetArgs};
use flic_client::commands::{self, Session};
use flic_client::data::DataFormat;
use flic_client::identity::Identity;
use flic_client::output::{short_hex, Progress};
use flic_client::participant::Contributor;
use flic_client::receipts::ReceiptOrigin;
use flic_client::training::{self, WorkDir};
use flic_model_zoo::backend::BackendRequest;
use flic_protocol::api::{
    Contribution, Dataset, JobState, RegisterDatasetArgs, RoundInfo, RoundRecord,
};
use flic_protocol::{DeltaEncoding, Hash};

use crate::failure::Failure;

/// Where the contributor's files live and which canister to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `embedded`, `local`, `ic` or a URL.
    pub network: String,
    pub canister: Option<String>,
    /// A saved embedded IC (`flic simulate --state DIR`), for `embedded`.
    pub state: Option<PathBuf>,
}

/// A local data file or folder, as the CLI's `--data`, `--format` and `--salt-file` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSource {
    pub path: PathBuf,
    pub format: DataFormat,
    pub salt_file: Option<PathBuf>,
}

impl DataSource {
    /// The data, and the salt of its commitment if a salt file is named.
    fn load(&self) -> anyhow::Result<(flic_model_zoo::dataset::Dataset, Option<[u8; 32]>)> {
        let data = flic_client::data::load(&self.path, self.format)?;
        let salt = self
            .salt_file
            .as_deref()
            .map(flic_client::data::read_salt)
            .transpose()?;
        Ok((data, salt))
    }
}

#[derive(Debug, Clone)]
pub enum Request {
    /// Loads the identity file, if it exists.
    LoadIdentity,
    /// Creates a new identity file (mode 0600), as `flic keygen` does.
    CreateIdentity,
    /// Copies a PEM identity into the identity file after checking it loads.
    ImportIdentity(PathBuf),
    Connect(Target),
    /// Reads the job, my datasets, contributions and receipts again.
    Refresh,
    Preview(DataSource),
    Register {
        source: DataSource,
        name: String,
        license: String,
        description: String,
        /// Writes a fresh salt beside the data and commits to the salted root.
        salted: bool,
    },
    Revoke(u64),
    /// Trains the open round (and every later one with `every_round`, until stopped).
    Train {
        source: DataSource,
        dataset_id: u64,
        options: TrainOptions,
    },
    /// Writes the current, verified model as safetensors.
    Export(PathBuf),
    /// Writes a membership proof of one sample (`flic dataset prove`).
    ProveSample {
        source: DataSource,
        index: u64,
        out: PathBuf,
    },
    /// Checks a sample proof file against the datasets registered here
    /// (`flic verify sample`).
    CheckSampleProof(PathBuf),
    /// Recomputes a model version from its certified history (`flic verify lineage`).
    Recompute([u8; 32]),
}

/// The identity the app signs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityView {
    pub path: PathBuf,
    pub principal: String,
}

/// The contributor's own choices for training, as `flic train`'s flags make them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainOptions {
    pub backend: BackendRequest,
    /// Keep contributing to every round until stopped.
    pub every_round: bool,
    /// `--encoding` [default: the job's preferred, int8 where allowed].
    pub encoding: Option<DeltaEncoding>,
    /// `--max-upload-rate`, bytes per second.
    pub max_upload_rate: Option<u64>,
}

/// What a local dataset looks like, before it is registered.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPreview {
    pub source: DataSource,
    pub samples: usize,
    pub feature_shape: Vec<usize>,
    pub num_classes: usize,
    /// Samples per label, `0..num_classes`.
    pub label_counts: Vec<usize>,
    /// The first few samples: label and features scaled to 0..=255 (drawn as images
    /// where the shape is one).
    pub first: Vec<(u32, Vec<u8>)>,
    /// The unsalted commitment (what registering without a salt commits to).
    pub commitment: [u8; 32],
}

/// One receipt in the work directory, checked against the canister's root key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptView {
    pub path: PathBuf,
    pub round: u64,
    pub contribution_index: u64,
    /// `Ok` when its certificate and proofs verify; why not otherwise.
    pub verified: Result<(), String>,
}

/// What the app shows about the federation and my part in it; every field of the job
/// and the history comes from certificate-checked reads.
#[derive(Debug, Clone)]
pub struct Overview {
    pub canister: String,
    pub network: String,
    pub me: String,
    pub info: RoundInfo,
    /// The verifier's clock when read (for deadlines).
    pub now_ns: u64,
    pub datasets: Vec<Dataset>,
    pub contributions: Vec<Contribution>,
    /// The certified history of closed rounds.
    pub rounds: Vec<RoundRecord>,
    pub receipts: Vec<ReceiptView>,
    /// What `--backend auto` picks for this job's model, and why.
    pub auto_backend: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommitView {
    pub round: u64,
    pub contribution_index: u64,
    pub weight: u64,
    pub round_closed: bool,
    pub chunks_sent: u32,
    pub chunks_resumed: u32,
    pub mean_loss: Option<f32>,
}

#[derive(Debug, Clone)]
pub enum Event {
    /// `None`: no identity file yet.
    Identity(Result<Option<IdentityView>, String>),
    Connected(Result<Box<Overview>, Failure>),
    Overview(Result<Box<Overview>, Failure>),
    Preview(Result<DataPreview, String>),
    Registered(Result<u64, Failure>),
    Revoked(Result<u64, Failure>),
    /// A phase of long work starts (`training` in samples, `uploading` in chunks, ...).
    Phase {
        label: String,
        total: u64,
    },
    PhaseDone(u64),
    PhaseFinished(String),
    Loss {
        samples: u64,
        loss: f32,
    },
    Note(String),
    /// The backend training runs on, as the library started it.
    Backend(String),
    Committed(CommitView),
    /// Training stopped: `Ok` with why it stopped by itself, or the failure.
    TrainingEnded(Result<String, Failure>),
    Exported(Result<String, Failure>),
    /// What a written sample proof proves, in a sentence.
    Proved(Result<String, Failure>),
    /// Which dataset a checked sample proof is about, in a sentence.
    SampleProofChecked(Result<String, Failure>),
    /// What recomputing a version showed, in a sentence.
    Recomputed(Result<String, Failure>),
    /// The request is finished (after its answer, and the fresh overview some send).
    Done,
}

/// The UI's handle on the worker thread.
pub struct Worker {
    requests: Sender<Request>,
    pub events: Receiver<Event>,
    /// Set to stop training after the current round step.
    pub stop: Arc<AtomicBool>,
}

impl Worker {
    /// Starts the worker; `wake` is called after every event (the UI repaints).
    pub fn spawn(
        identity_path: PathBuf,
        work_dir: PathBuf,
        wake: impl Fn() + Send + 'static,
    ) -> Self {
        let (requests, inbox) = channel();
        let (outbox, events) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let worker_stop = stop.clone();
        std::thread::Builder::new()
            .name("flic-app-worker".into())
            .spawn(move || {
                // Built on this thread: a session's transport stays on the thread that made it.
                let mut state = WorkerState {
                    identity_path,
                    work_dir,
                    session: None,
                    target: None,
                    auto_backend: None,
                    out: Outbox {
                        tx: outbox,
                        wake: Box::new(wake),
                    },
                    stop: worker_stop,
                };
                while let Ok(request) = inbox.recv() {
                    state.handle(request);
                    state.out.send(Event::Done);
                }
            })
            .expect("spawning the worker thread");
        Self {
            requests,
            events,
            stop,
        }
    }

    pub fn send(&self, request: Request) {
        // The worker lives as long as the app; a send after it ended has no one to do it.
        let _ = self.requests.send(request);
    }
}

struct Outbox {
    tx: Sender<Event>,
    wake: Box<dyn Fn() + Send>,
}

impl Outbox {
    fn send(&self, event: Event) {
        let _ = self.tx.send(event);
        (self.wake)();
    }
}

/// The library's progress, as events.
impl Progress for Outbox {
    fn start(&mut self, label: &str, total: u64) {
        self.send(Event::Phase {
            label: label.into(),
            total,
        });
    }
    fn set(&mut self, done: u64) {
        self.send(Event::PhaseDone(done));
    }
    fn finish(&mut self, summary: &str) {
        self.send(Event::PhaseFinished(summary.into()));
    }
    fn note(&mut self, line: &str) {
        self.send(Event::Note(line.into()));
    }
    fn loss(&mut self, samples: u64, loss: f32) {
        self.send(Event::Loss { samples, loss });
    }
}

struct WorkerState {
    identity_path: PathBuf,
    work_dir: PathBuf,
    session: Option<Session>,
    target: Option<Target>,
    /// What `auto` picks for this connection's job (discovery loads drivers: once).
    auto_backend: Option<String>,
    out: Outbox,
    stop: Arc<AtomicBool>,
}

impl WorkerState {
    fn handle(&mut self, request: Request) {
        match request {
            Request::LoadIdentity => {
                let r = if self.identity_path.exists() {
                    self.identity().map(Some)
                } else {
                    Ok(None)
                };
                self.out
                    .send(Event::Identity(r.map_err(|e| format!("{e:#}"))));
            }
            Request::CreateIdentity => {
                let r = Identity::generate()
                    .write_new(&self.identity_path)
                    .map_err(anyhow::Error::from)
                    .and_then(|()| self.identity());
                self.out
                    .send(Event::Identity(r.map(Some).map_err(|e| format!("{e:#}"))));
            }
            Request::ImportIdentity(from) => {
                let r = Identity::load(&from)
                    .with_context(|| format!("{} is not an identity file", from.display()))
                    .and_then(|id| Ok(id.write_new(&self.identity_path)?))
                    .and_then(|()| self.identity());
                self.out
                    .send(Event::Identity(r.map(Some).map_err(|e| format!("{e:#}"))));
            }
            Request::Connect(target) => {
                let r = self.connect(&target).map(Box::new).map_err(Failure::from);
                self.out.send(Event::Connected(r));
            }
            Request::Refresh => {
                let r = self.overview().map(Box::new).map_err(Failure::from);
                self.out.send(Event::Overview(r));
            }
            Request::Preview(source) => {
                let r = preview(&source).map_err(|e| format!("{e:#}"));
                self.out.send(Event::Preview(r));
            }
            Request::Register {
                source,
                name,
                license,
                description,
                salted,
            } => {
                let r = self
                    .register(&source, name, license, description, salted)
                    .map_err(Failure::from);
                self.out.send(Event::Registered(r));
                self.refresh();
            }
            Request::Revoke(id) => {
                let r = self.revoke(id).map(|()| id).map_err(Failure::from);
                self.out.send(Event::Revoked(r));
                self.refresh();
            }
            Request::Train {
                source,
                dataset_id,
                options,
            } => {
                self.stop.store(false, Ordering::SeqCst);
                let r = self
                    .train(&source, dataset_id, options)
                    .map_err(Failure::from);
                self.out.send(Event::TrainingEnded(r));
                self.refresh();
            }
            Request::Export(path) => {
                let r = self.export(&path).map_err(Failure::from);
                self.out.send(Event::Exported(r));
            }
            Request::ProveSample { source, index, out } => {
                let r = self.prove(&source, index, &out).map_err(Failure::from);
                self.out.send(Event::Proved(r));
            }
            Request::CheckSampleProof(file) => {
                let r = self.check_sample_proof(&file).map_err(Failure::from);
                self.out.send(Event::SampleProofChecked(r));
            }
            Request::Recompute(version) => {
                let r = self.recompute(version).map_err(Failure::from);
                self.out.send(Event::Recomputed(r));
            }
        }
    }

    fn identity(&self) -> anyhow::Result<IdentityView> {
        let id = Identity::load(&self.identity_path)?;
        Ok(IdentityView {
            path: self.identity_path.clone(),
            principal: id.principal().to_text(),
        })
    }

    fn target_args(&self, target: &Target) -> TargetArgs {
        TargetArgs {
            identity: IdentityArgs {
                identity: Some(self.identity_path.clone()),
            },
            network: target.network.clone(),
            canister: target.canister.clone(),
            state: target.state.clone(),
        }
    }

    fn connect(&mut self, target: &Target) -> anyhow::Result<Overview> {
        self.session = None;
        self.auto_backend = None;
        let session = commands::connect(&self.target_args(target))?;
        self.session = Some(session);
        self.target = Some(target.clone());
        self.overview()
    }

    fn session(&mut self) -> anyhow::Result<&mut Session> {
        self.session
            .as_mut()
            .context("not connected: connect to a federation first")
    }

    fn refresh(&mut self) {
        if self.session.is_some() {
            let r = self.overview().map(Box::new).map_err(Failure::from);
            self.out.send(Event::Overview(r));
        }
    }

    fn origin(&self) -> ReceiptOrigin {
        let target = self.target.clone().unwrap_or(Target {
            network: "local".into(),
            canister: None,
            state: None,
        });
        ReceiptOrigin {
            network: target.network,
            state: target
                .state
                .as_deref()
                .and_then(|p| std::path::absolute(p).ok()),
        }
    }

    fn work(&self) -> WorkDir {
        WorkDir::new(&self.work_dir, self.origin())
    }

    fn overview(&mut self) -> anyhow::Result<Overview> {
        let work = self.work();
        let network = self
            .target
            .as_ref()
            .map(|t| t.network.clone())
            .unwrap_or_default();
        let session = self
            .session
            .as_mut()
            .context("not connected: connect to a federation first")?;
        let me = session.identity()?.principal();
        let info = session.api.round_info()?;
        let now_ns = flic_client::transport::Transport::now_ns(session.api.transport());
        let datasets = session.api.all_datasets_of(me)?;
        let contributions = session.api.all_contributions_by_contributor(me)?;
        let rounds = session.api.all_round_history()?;
        // Receipts of rounds that closed since the last look.
        let mut quiet = flic_client::output::Silent;
        work.collect_receipts(&mut session.api, &mut quiet)?;
        let receipts = receipts(&work.dir.join("receipts"), session);
        let canister = session.api.canister_id().to_text();
        let auto_backend = self
            .auto_backend
            .get_or_insert_with(|| auto_backend(&info))
            .clone();
        Ok(Overview {
            canister,
            network,
            me: me.to_text(),
            info,
            now_ns,
            datasets,
            contributions,
            rounds,
            receipts,
            auto_backend,
        })
    }

    fn register(
        &mut self,
        source: &DataSource,
        name: String,
        license: String,
        description: String,
        salted: bool,
    ) -> anyhow::Result<u64> {
        self.out.send(Event::Phase {
            label: "loading the data".into(),
            total: 0,
        });
        let data = flic_client::data::load(&source.path, source.format)?;
        let (salt, written) = flic_client::data::registration_salt(
            &source.path,
            source.salt_file.as_deref(),
            salted,
        )?;
        if let Some(path) = written {
            self.out.send(Event::Note(format!(
                "wrote the commitment's salt to {} (keep it: training needs it)",
                path.display()
            )));
        }
        let commitment = flic_client::data::registered_commitment_with_progress(
            &data,
            salt.as_ref(),
            &mut self.out,
        );
        let session = self.session()?;
        let id = session
            .api
            .register_dataset(&RegisterDatasetArgs {
                name,
                commitment: Hash::new(commitment),
                sample_count: data.len() as u64,
                license,
                description,
            })
            .context("registering the dataset")?;
        session.save()?;
        Ok(id)
    }

    fn revoke(&mut self, id: u64) -> anyhow::Result<()> {
        let session = self.session()?;
        session
            .api
            .revoke_dataset(id)
            .with_context(|| format!("revoking dataset {id}"))?;
        session.save()
    }

    fn train(
        &mut self,
        source: &DataSource,
        dataset_id: u64,
        options: TrainOptions,
    ) -> anyhow::Result<String> {
        let TrainOptions {
            backend,
            every_round,
            encoding,
            max_upload_rate,
        } = options;
        let work = self.work();
        let stop = self.stop.clone();
        let identity = Identity::load(&self.identity_path)?;
        let out = &mut self.out;
        let session = self
            .session
            .as_mut()
            .context("not connected: connect to a federation first")?;
        let (data, salt) = source.load()?;
        let dataset = training::check_dataset(
            &mut session.api,
            identity.principal(),
            dataset_id,
            &data,
            salt.as_ref(),
            &source.path,
            out,
        )?;
        let first = training::with_retry("reading the round", out, |_| session.api.round_info())?;
        let started =
            flic_client::compute::start(backend, training::is_convolutional(&first), &mut |n| {
                out.note(n)
            })?;
        out.send(Event::Backend(format!(
            "{} ({})",
            started.plan.backend, started.plan.reason
        )));
        let device = started.device;
        let stopped = || stop.load(Ordering::SeqCst);
        let choices = training::RoundChoices {
            encoding,
            max_upload_rate,
            stop: &stopped,
        };
        let mut last_round = None;
        if let Some(c) = work.resume(session, max_upload_rate, out)? {
            last_round = Some(c.prepared.header.round);
            out.send(Event::Committed(commit_view(&c, None)));
            if !every_round {
                return Ok("resumed and committed the interrupted upload".into());
            }
        }
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok("stopped".into());
            }
            let info =
                training::with_retry("reading the round", out, |_| session.api.round_info())?;
            if info.state != JobState::Running {
                anyhow::bail!(
                    "the job is {}, not running; try again when the controller starts it",
                    info.state
                );
            }
            if last_round == Some(info.round) {
                if !every_round {
                    break;
                }
                if session.embedded_state().is_some() {
                    return Ok(format!(
                        "round {} is still open, waiting for other contributors: train again once it closes",
                        info.round
                    ));
                }
                // Poll in short sleeps so that Stop is prompt.
                for _ in 0..25 {
                    if stop.load(Ordering::SeqCst) {
                        return Ok("stopped".into());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                continue;
            }
            let contributor = Contributor {
                identity: &identity,
                dataset_id: dataset.id,
                data: &data,
                device: &device,
            };
            out.note(&format!("round {}: training", info.round));
            let step = work.contribute_round(session, &contributor, &info, &choices, out)?;
            let mean_loss = Some(step.train.mean_loss);
            let committed = work.record(session, step.prepared, step.upload, out)?;
            out.send(Event::Committed(commit_view(&committed, mean_loss)));
            last_round = Some(info.round);
            if !every_round {
                break;
            }
        }
        Ok("committed".into())
    }

    fn prove(&mut self, source: &DataSource, index: u64, out: &Path) -> anyhow::Result<String> {
        let (data, salt) = source.load()?;
        let proof = flic_client::data::write_sample_proof(&data, index, salt, out)?;
        let commitment = proof.commitment();
        let session = self.session()?;
        let me = session.identity()?.principal();
        let mine = session
            .api
            .all_datasets_of(me)
            .context("reading your registered datasets")?
            .into_iter()
            .find(|d| *d.commitment == commitment);
        let disclosed = if proof.salt.is_some() {
            "; it discloses the salt"
        } else {
            ""
        };
        Ok(match mine {
            Some(d) => {
                flic_proofs::sample::verify_sample_in_dataset(&proof, &commitment, d.sample_count)?;
                format!(
                    "wrote {}: sample {index} of {} is in your dataset {} (`{}`){disclosed}",
                    out.display(),
                    proof.sample_count,
                    d.id,
                    d.name
                )
            }
            None => format!(
                "wrote {}: sample {index} of {} under commitment {}, which none of your registered datasets has (register this data, with the same salt file, for the proof to point at one){disclosed}",
                out.display(),
                proof.sample_count,
                hex::encode(commitment)
            ),
        })
    }

    fn check_sample_proof(&mut self, file: &Path) -> anyhow::Result<String> {
        let proof = flic_client::data::read_sample_proof(file)?;
        let root = flic_proofs::sample::verify_sample(&proof)
            .with_context(|| format!("{} does not verify", file.display()))?;
        let commitment = proof.commitment();
        let datasets = self
            .session()?
            .api
            .all_datasets()
            .context("reading the registered datasets")?;
        let d = datasets
            .iter()
            .find(|d| *d.commitment == commitment)
            .with_context(|| {
                format!(
                "the proof holds for commitment {}, but no dataset on this canister registered it",
                hex::encode(commitment)
            )
            })?;
        flic_proofs::sample::verify_sample_in_dataset(&proof, &commitment, d.sample_count)
            .with_context(|| format!("the proof is not for dataset {}", d.id))?;
        Ok(format!(
            "sample proof OK: sample {} is in dataset {} (`{}`, owner {}{}), root {}",
            proof.index,
            d.id,
            d.name,
            d.owner,
            if d.revoked_at_ns.is_some() {
                ", revoked"
            } else {
                ""
            },
            hex::encode(root)
        ))
    }

    fn recompute(&mut self, version: [u8; 32]) -> anyhow::Result<String> {
        self.out.send(Event::Phase {
            label: "recomputing the lineage".into(),
            total: 0,
        });
        let session = self.session()?;
        let me = session.identity()?.principal();
        let api = &mut session.api;
        let replayed = flic_client::lineage::recompute(api, version).and_then(|r| {
            r.with_context(|| {
                format!(
                    "model {} does not recompute from its certified history",
                    hex::encode(version)
                )
            })
        });
        self.out.send(Event::PhaseFinished(String::new()));
        let replayed = replayed?;
        let shares = flic_client::lineage::by_dataset(&replayed.shapers);
        let total: u64 = shares.values().map(|d| d.weight).sum();
        let (mine, contributions) = shares
            .values()
            .filter(|d| d.owner == me)
            .fold((0, 0), |(w, n), d| (w + d.weight, n + d.contributions));
        Ok(format!(
            "recomputed model {} bit for bit through {} certified round(s); your data weighs {mine} of {total} ({:.1} %) in {contributions} contribution(s)",
            short_hex(&version),
            replayed.rounds,
            mine as f64 * 100.0 / total.max(1) as f64
        ))
    }

    fn export(&mut self, path: &Path) -> anyhow::Result<String> {
        let out = &mut self.out;
        let session = self
            .session
            .as_mut()
            .context("not connected: connect to a federation first")?;
        let exported = flic_client::model_file::export_current_model(&mut session.api, path, out)?;
        Ok(exported.to_string())
    }
}

/// What `--backend auto` picks for the job's model here, and why.
fn auto_backend(info: &RoundInfo) -> String {
    let found = flic_model_zoo::hardware::discover();
    match flic_model_zoo::backend::plan(
        BackendRequest::Auto,
        training::is_convolutional(info),
        &found,
    ) {
        Ok(plan) => format!("{} ({})", plan.backend, plan.reason),
        Err(e) => format!("none: {e}"),
    }
}

fn commit_view(c: &training::Committed, mean_loss: Option<f32>) -> CommitView {
    let r = &c.outcome.receipt;
    CommitView {
        round: r.round,
        contribution_index: r.contribution_index,
        weight: r.weight,
        round_closed: r.round_closed,
        chunks_sent: c.outcome.chunks_sent,
        chunks_resumed: c.outcome.chunks_resumed,
        mean_loss,
    }
}

/// How many samples a preview shows.
pub const PREVIEW_SAMPLES: usize = 8;

fn preview(source: &DataSource) -> anyhow::Result<DataPreview> {
    let data = flic_client::data::load(&source.path, source.format)?;
    let mut label_counts = vec![0usize; data.num_classes];
    for &l in &data.labels {
        if let Some(c) = label_counts.get_mut(l as usize) {
            *c += 1;
        }
    }
    let dim: usize = data.feature_shape.iter().product();
    let first = (0..data.len().min(PREVIEW_SAMPLES))
        .map(|i| {
            let x = &data.features[i * dim..(i + 1) * dim];
            let (lo, hi) = x
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            let span = (hi - lo).max(f32::EPSILON);
            let bytes = x
                .iter()
                .map(|&v| (((v - lo) / span) * 255.0).round().clamp(0.0, 255.0) as u8)
                .collect();
            (data.labels[i], bytes)
        })
        .collect();
    Ok(DataPreview {
        source: source.clone(),
        samples: data.len(),
        feature_shape: data.feature_shape.clone(),
        num_classes: data.num_classes,
        label_counts,
        first,
        commitment: flic_client::data::dataset_commitment(&data),
    })
}

/// The receipts in `dir`, each verified against the connection's root key.
fn receipts(dir: &Path, session: &Session) -> Vec<ReceiptView> {
    use flic_proofs::certificate::Freshness;
    use flic_proofs::certified::Trust;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("receipt-") && n.ends_with(".json"))
        })
        .collect();
    paths.sort();
    let root_key_der = flic_client::transport::Transport::root_key(session.api.transport());
    paths
        .into_iter()
        .filter_map(|path| {
            let file = flic_client::receipts::read_receipt(&path).ok()?;
            let r = file.receipt;
            let trust = Trust {
                root_key_der: root_key_der.clone(),
                canister: r.canister_id,
                // A receipt's certificate is as old as its round: the history is append-only.
                freshness: Freshness::AnyTime,
            };
            let verified = flic_proofs::receipt::verify_receipt(&r, &trust)
                .map(|_| ())
                .map_err(|e| e.to_string());
            Some(ReceiptView {
                path,
                round: r.round,
                contribution_index: r.contribution_index,
                verified,
            })
        })
        .collect()
}
