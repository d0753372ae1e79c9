//! `flic simulate`: a whole federation in one process.
//!
//! The aggregator canister's release wasm runs in `flic-embedded-ic`; N contributors, each
//! with its own Ed25519 key and registered dataset, train real burn models on their shard,
//! and upload signed deltas through the same code path `flic train` uses against a replica.
//! The canister's own round logic closes every round (the Nth commit reaches `max_clients`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use candid::Principal;
use serde::{Deserialize, Serialize};

use flic_embedded_ic::{EmbeddedIc, InstallMode};
use flic_model_zoo::dataset::{Dataset, SyntheticClusters, SyntheticImages};
use flic_model_zoo::{
    evaluate, init_weights, model_spec, train_local, Backend, BackendRequest, ModelConfig,
    Partitioner,
};
use flic_protocol::api::SecAggPhase;
use flic_protocol::api::{
    ClientHyperparameters, InitArg, InitArgs, JobConfig, JobState, Optimizer, PageArgs,
    RegisterDatasetArgs, ReportEvaluationArgs,
};
use flic_protocol::optimizers::ServerOptimizer;
use flic_protocol::privacy::DpConfig;
use flic_protocol::rules::AggregationRule;
use flic_protocol::secagg::SecAggConfig;
use flic_protocol::{DeltaEncoding, Hash};

use crate::api::{AggregatorApi, CallStats};
use crate::attack::{mean_and_std, Adaptive, Attack, Knowledge};
use crate::data::{self, DataFormat};
use crate::identity::Identity;
use crate::output::Progress;
use crate::participant::{contribute, train_params, Contributor, StepOptions, Tamper};
use crate::receipts::{ReceiptFile, ReceiptOrigin};
use crate::secagg::{self as sa, Participation};
use crate::transport::agent::{AgentTransport, Management, Network};
use crate::transport::embedded::{self, EmbeddedTransport, SharedIc};
use crate::transport::Transport;

/// What `flic simulate` runs: plain configuration, built by the CLI from its flags or by
/// tests and benchmarks directly. Every field has the CLI's default ([`Default`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimulationConfig {
    /// Number of contributors [default: 4, or the number of client files with `partitions`].
    pub clients: Option<usize>,
    pub rounds: u64,
    /// Zoo architecture id: `linear`, `mlp`, `lenet` or `cifar-cnn`.
    pub model: String,
    /// Hidden layer widths of the MLP (ignored by the other models).
    pub hidden: Vec<usize>,
    /// Client learning rate.
    pub lr: f64,
    pub batch_size: usize,
    pub local_epochs: usize,
    pub optimizer: Optimizer,
    /// Delta encoding on the wire.
    pub encoding: DeltaEncoding,
    /// Seed for data, partition, initial weights, keys and the job's client seed.
    pub seed: u64,
    /// How the data is split over clients: `iid`, `dirichlet:ALPHA` or `shards:K`.
    pub partition: String,
    /// Synthetic samples in all (train and test together) when neither `data` nor
    /// `partitions` is given.
    pub samples: usize,
    /// One data file, split over the clients by `partition`.
    pub data: Option<PathBuf>,
    /// A folder of per-client files: `client_<n>.csv`, or `client_<n>-images-idx3-ubyte`
    /// with `client_<n>-labels-idx1-ubyte`.
    pub partitions: Option<PathBuf>,
    /// Format of `data`, `partitions` and `test`.
    pub format: Option<DataFormat>,
    /// Test data evaluated after every round [default: a held-out 20% split].
    pub test: Option<PathBuf>,
    /// L2 bound each delta is clipped to.
    pub clip_norm: f32,
    /// Server learning rate applied to the averaged delta.
    pub server_lr: f32,
    /// Save the embedded IC's state here at the end.
    pub state: Option<PathBuf>,
    /// Run against this network (`flic devnet`, a local replica) instead of the embedded IC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Write every contributor's verified receipt of every round here
    /// (`round-<r>/client-<i>.json`).
    pub receipts: Option<PathBuf>,
    /// Keep every contribution's delta (and the initial model) in the canister.
    pub retain_contributions: bool,
    /// Training backend asked for (`ndarray`, `flex`, `wgpu`, `cuda` or `auto`).
    pub backend: String,
    /// How many clients attack (the last K).
    pub malicious: usize,
    /// What attackers do to their delta: `scale:F`, `signflip` or `noise:SIGMA`.
    pub attack: String,
    /// The canister's aggregation rule.
    #[serde(default)]
    pub aggregation: AggregationRule,
    /// The canister's server optimizer.
    #[serde(default)]
    pub server_optimizer: ServerOptimizer,
    /// What colluding attackers (`alie`, `ipm`) know of the benign deltas.
    #[serde(default)]
    pub attack_knowledge: Knowledge,
    /// Colluding attackers steer their deviation by the public models of past rounds.
    #[serde(default)]
    pub attack_adaptive: bool,
    /// FedProx's proximal coefficient the job sets for every client.
    #[serde(default)]
    pub proximal_mu: Option<f32>,
    /// Client-level differential privacy of the job (every contribution then weighs 1).
    #[serde(default)]
    pub dp: Option<DpConfig>,
    /// Secure aggregation (its dropout fraction is set from `dropouts` and the number of
    /// clients).
    #[serde(default)]
    pub secure_aggregation: Option<SecAggConfig>,
    /// With secure aggregation: how many clients drop out of each round, spread over its
    /// phases (the job survives this many).
    #[serde(default)]
    pub dropouts: usize,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        Self {
            clients: None,
            rounds: 10,
            model: "mlp".into(),
            hidden: vec![32],
            lr: 0.1,
            batch_size: 32,
            local_epochs: 2,
            optimizer: Optimizer::Sgd,
            encoding: DeltaEncoding::F32,
            seed: 42,
            partition: "iid".into(),
            samples: 6000,
            data: None,
            partitions: None,
            format: None,
            test: None,
            clip_norm: 10.0,
            server_lr: 1.0,
            state: None,
            network: None,
            receipts: None,
            retain_contributions: false,
            backend: "ndarray".into(),
            malicious: 0,
            attack: "signflip".into(),
            aggregation: AggregationRule::FedAvg,
            server_optimizer: ServerOptimizer::Sgd,
            attack_knowledge: Knowledge::Omniscient,
            attack_adaptive: false,
            proximal_mu: None,
            dp: None,
            secure_aggregation: None,
            dropouts: 0,
        }
    }
}

/// A secure-aggregation round's participants: those that advertised keys, and of them
/// those that posted their shares (the contributors are those that also committed).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SecAggCounts {
    pub participants: usize,
    pub sharers: usize,
}

/// One round's results.
#[derive(Debug, Clone, Serialize)]
pub struct RoundReport {
    pub round: u64,
    pub test_accuracy: f64,
    pub test_loss: f64,
    pub contributors: usize,
    /// Delta bytes uploaded in the round (all chunks of all contributors).
    pub upload_bytes: u64,
    /// The same per contribution, and per parameter of one contribution.
    pub bytes_per_contribution: u64,
    pub bytes_per_param: f64,
    /// Cycles the submissions cost the canister (execution and ingress, at the fees of
    /// `bench::fees`), per contribution, and the round's in USD.
    pub cycles_per_contribution: u64,
    pub usd: f64,
    /// Contributions scaled down so that their encoding met the clip bound.
    pub shrunk: usize,
    /// Instructions of the round's `commit_submission` calls (validation and
    /// accumulation of every delta).
    pub commit_instructions: u64,
    /// Version hash (hex) of the model this round produced.
    pub model_version: String,
    /// Wasm instructions the canister executed for the round's update calls.
    pub instructions: u64,
    /// Largest single-message instruction count in the round.
    pub max_message_instructions: u64,
    /// Mean L2 norm of the deltas before clipping, and how many were clipped.
    pub mean_delta_norm: f64,
    pub clipped: usize,
    pub train_seconds: f64,
    pub encode_seconds: f64,
    pub canister_seconds: f64,
    /// The adaptive coalition's gain on its deviation in this round.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attack_gain: Option<f32>,
    /// With DP: the epsilon spent by the rounds so far, as the round's record certifies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epsilon_spent: Option<f64>,
    /// With adaptive clipping: the round's clip, and the noised count of deltas at or below
    /// it, as the round's record certifies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adaptive_clip: Option<flic_protocol::api::RoundClip>,
    /// How long the round was open on the canister's clock (its record's open to close;
    /// on the embedded IC only deadlines move the clock).
    pub open_seconds: f64,
    /// Secure aggregation: who took part in the round's phases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secagg: Option<SecAggCounts>,
    /// Every contributor's calls this round, by method (instructions on the embedded IC).
    pub calls: std::collections::BTreeMap<String, crate::api::MethodStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimulationReport {
    pub config: SimulationConfig,
    /// The backend that trained (`config.backend` asks; `auto` or a fallback decides).
    pub backend: Backend,
    pub canister_id: String,
    pub wasm_sha256: String,
    pub clients: usize,
    pub samples_per_client: Vec<usize>,
    pub param_count: u64,
    pub initial_accuracy: f64,
    pub rounds: Vec<RoundReport>,
    pub final_accuracy: f64,
    pub wall_seconds: f64,
}

struct SimClient {
    identity: Identity,
    api: AggregatorApi<Box<dyn Transport>>,
    data: Dataset,
    dataset_id: u64,
    /// Error feedback: what this client's top-k uploads left unsent so far.
    residual: Option<Vec<f32>>,
}

/// Shows a contributor step's training progress on the round's one bar (samples of all
/// clients), offset by the samples trained before it; hides its other phases and notes.
struct TrainingOnly<'a> {
    inner: &'a mut dyn Progress,
    offset: u64,
    training: bool,
}

impl<'a> TrainingOnly<'a> {
    fn new(inner: &'a mut dyn Progress, offset: u64) -> Self {
        Self {
            inner,
            offset,
            training: false,
        }
    }
}

impl Progress for TrainingOnly<'_> {
    fn start(&mut self, label: &str, _total: u64) {
        self.training = label == "training";
    }
    fn set(&mut self, done: u64) {
        if self.training {
            self.inner.set(self.offset + done);
        }
    }
    fn finish(&mut self, _summary: &str) {
        self.training = false;
    }
    fn note(&mut self, _line: &str) {}
}

/// How long `--network` waits for a round's close to finish in timer messages.
const CLOSE_WAIT: Duration = Duration::from_secs(300);

/// Derives a per-purpose seed so streams never collide.
fn sub_seed(seed: u64, purpose: &str, index: u64) -> [u8; 32] {
    flic_protocol::hash::sha256_concat(&[
        b"flic/simulate/v1",
        &seed.to_le_bytes(),
        purpose.as_bytes(),
        &index.to_le_bytes(),
    ])
}

fn sub_seed_u64(seed: u64, purpose: &str, index: u64) -> u64 {
    let s = sub_seed(seed, purpose, index);
    u64::from_le_bytes(s[..8].try_into().expect("8 bytes"))
}

/// The federation's data: per-client training sets and one test set.
struct Federation {
    clients: Vec<Dataset>,
    test: Dataset,
}

fn load_partitions(dir: &Path, format: DataFormat) -> anyhow::Result<Vec<Dataset>> {
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("cannot read --partitions {}", dir.display()))?
    {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let index = match format {
            DataFormat::Csv => name
                .strip_prefix("client_")
                .and_then(|r| r.strip_suffix(".csv")),
            DataFormat::MnistIdx => name
                .strip_prefix("client_")
                .and_then(|r| r.strip_suffix("-images-idx3-ubyte")),
            other => bail!("--partitions supports csv and mnist-idx, not {other:?}"),
        };
        if let Some(n) = index.and_then(|n| n.parse::<u64>().ok()) {
            found.push((n, path));
        }
    }
    if found.is_empty() {
        bail!(
            "{} has no client files (expected client_<n>.csv, or client_<n>-images-idx3-ubyte with \
             client_<n>-labels-idx1-ubyte)",
            dir.display()
        );
    }
    found.sort();
    found
        .iter()
        .map(|(_, p)| data::load(p, format).with_context(|| format!("loading {}", p.display())))
        .collect()
}

fn synthetic(args: &SimulationConfig) -> Dataset {
    let seed = sub_seed_u64(args.seed, "data", 0);
    match args.model.as_str() {
        "lenet" => SyntheticImages {
            samples: args.samples,
            seed,
            ..Default::default()
        }
        .generate(),
        "cifar-cnn" => {
            let mut d = SyntheticClusters {
                samples: args.samples,
                dims: 3 * 32 * 32,
                seed,
                ..Default::default()
            }
            .generate();
            d.feature_shape = vec![3, 32, 32];
            d
        }
        _ => SyntheticClusters {
            samples: args.samples,
            seed,
            ..Default::default()
        }
        .generate(),
    }
}

/// Loaders size `num_classes` by the largest label they saw; a client's file (or the test
/// file) may lack the highest classes, so every part is sized to the whole federation.
fn unify_classes(fed: Federation) -> anyhow::Result<Federation> {
    let classes = fed
        .clients
        .iter()
        .chain([&fed.test])
        .map(|d| d.num_classes)
        .max()
        .unwrap_or(0);
    Ok(Federation {
        clients: fed
            .clients
            .into_iter()
            .map(|d| d.with_num_classes(classes))
            .collect::<Result<_, _>>()?,
        test: fed.test.with_num_classes(classes)?,
    })
}

fn build_federation(args: &SimulationConfig) -> anyhow::Result<Federation> {
    let split_seed = sub_seed_u64(args.seed, "split", 0);
    let load_test = |format| -> anyhow::Result<Option<Dataset>> {
        args.test
            .as_deref()
            .map(|p| {
                data::load(p, format).with_context(|| format!("loading --test {}", p.display()))
            })
            .transpose()
    };
    if let Some(dir) = &args.partitions {
        let format = args.format.context("--partitions needs --format")?;
        let mut clients = load_partitions(dir, format)?;
        if let Some(n) = args.clients {
            if n > clients.len() {
                bail!(
                    "--clients {n} but {} has only {} client files",
                    dir.display(),
                    clients.len()
                );
            }
            clients.truncate(n);
        }
        let test = match load_test(format)? {
            Some(t) => t,
            None => {
                // Hold out 20% of every client's data.
                let mut train = Vec::new();
                let mut tests = Vec::new();
                for (i, c) in clients.iter().enumerate() {
                    let (tr, te) = c.train_test_split(0.2, split_seed ^ i as u64)?;
                    train.push(tr);
                    tests.push(te);
                }
                clients = train;
                Dataset::concat(&tests)?
            }
        };
        return Ok(Federation { clients, test });
    }
    let (all, format) = match &args.data {
        Some(path) => {
            let format = args.format.context("--data needs --format")?;
            (
                data::load(path, format)
                    .with_context(|| format!("loading --data {}", path.display()))?,
                Some(format),
            )
        }
        None => (synthetic(args), None),
    };
    let (train, test) = match format.map(load_test).transpose()?.flatten() {
        Some(test) => (all, test),
        None => all.train_test_split(0.2, split_seed)?,
    };
    let n = args.clients.unwrap_or(4);
    if n == 0 {
        bail!("--clients must be at least 1");
    }
    let partitioner: Partitioner = args.partition.parse()?;
    let clients = partitioner.partition(&train, n, sub_seed_u64(args.seed, "partition", 0))?;
    Ok(Federation { clients, test })
}

/// The simulation's controller (installs and configures the canister).
fn controller_identity(seed: u64) -> Identity {
    Identity::from_seed(sub_seed(seed, "controller", 0))
}

/// Simulated contributor `i`'s key.
fn client_identity(seed: u64, i: usize) -> Identity {
    Identity::from_seed(sub_seed(seed, "client", i as u64))
}

/// The client hyperparameters the simulated job announces.
fn client_hyperparameters(args: &SimulationConfig) -> ClientHyperparameters {
    ClientHyperparameters {
        learning_rate: args.lr as f32,
        batch_size: args.batch_size as u32,
        local_epochs: args.local_epochs as u32,
        optimizer: args.optimizer,
        seed: args.seed,
        proximal_mu: args.proximal_mu,
    }
}

/// Where the simulated federation's canister runs.
enum Host {
    Embedded(SharedIc),
    Network(Network),
}

impl Host {
    /// A connection to `canister` as `identity`.
    fn connect(
        &self,
        canister: Principal,
        identity: &Identity,
    ) -> anyhow::Result<Box<dyn Transport>> {
        Ok(match self {
            Host::Embedded(ic) => Box::new(EmbeddedTransport::new(
                ic.clone(),
                canister,
                identity.principal(),
            )),
            Host::Network(network) => {
                Box::new(AgentTransport::connect(network, canister, Some(identity))?)
            }
        })
    }

    fn name(&self) -> String {
        match self {
            Host::Embedded(_) => "embedded".into(),
            Host::Network(n) => n.url().to_string(),
        }
    }
}

/// The job's secure aggregation for `clients` contributors, surviving `args.dropouts`.
fn secure_aggregation(
    args: &SimulationConfig,
    clients: usize,
) -> anyhow::Result<Option<SecAggConfig>> {
    let Some(sa) = args.secure_aggregation else {
        if args.dropouts > 0 {
            bail!("--dropouts needs --secure-aggregation");
        }
        return Ok(None);
    };
    if args.retain_contributions {
        bail!("--secure-aggregation with --retain-contributions: a masked input cannot be re-checked by anyone, so it is not retained");
    }
    if args.malicious > 0 {
        bail!("--secure-aggregation with --malicious: the canister cannot see a masked input, so no rule can filter an attack (docs/threat-model.md)");
    }
    Ok(Some(SecAggConfig::tolerating(
        args.dropouts as u32,
        clients as u32,
        sa.phase_duration_ns,
    )?))
}

/// Where a client drops out of a secure-aggregation round: it skips this phase and the
/// ones after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum DropAt {
    Advertise,
    Share,
    Input,
    Reveal,
}

/// Which clients drop out of round `r`, and where: `k` of `n`, drawn from the seed, the
/// first at the masked input, then the shares, the unmasking and the keys in turn.
fn dropout_plan(seed: u64, r: u64, n: usize, k: usize) -> Vec<Option<DropAt>> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| sub_seed(seed, "dropout", r * 1_000_003 + i as u64));
    let phases = [
        DropAt::Input,
        DropAt::Share,
        DropAt::Reveal,
        DropAt::Advertise,
    ];
    let mut plan = vec![None; n];
    for (j, &i) in order.iter().take(k).enumerate() {
        plan[i] = Some(phases[j % phases.len()]);
    }
    plan
}

/// Waits out a secure-aggregation phase whose participants did not all act: on the
/// embedded IC by moving its clock to the phase's deadline, on a network by waiting.
fn end_phase(
    host: &Host,
    api: &mut AggregatorApi<Box<dyn Transport>>,
    round: u64,
    phase: SecAggPhase,
) -> anyhow::Result<flic_protocol::api::SecAggRound> {
    let v = sa::view(api)?;
    let limit = Duration::from_nanos(v.phase_deadline_ns.saturating_sub(api.transport().now_ns()))
        + CLOSE_WAIT;
    let (poll, embedded) = match host {
        Host::Embedded(ic) => (Duration::ZERO, Some(ic.clone())),
        Host::Network(_) => (Duration::from_millis(500), None),
    };
    let after = sa::wait_for_phase(api, round, phase, limit, poll, &mut |v| {
        if let Some(ic) = &embedded {
            embedded::lock(ic).set_time(v.phase_deadline_ns);
        }
        Ok(())
    })?;
    if after.round == round && after.restarts > v.restarts {
        bail!("round {round}'s secure aggregation started over in its {} phase: too few participants were left", phase.name());
    }
    Ok(after)
}

/// Installs the aggregator (in the embedded IC, or through the management canister of
/// `--network`) and configures, uploads and starts the job.
fn deploy(
    args: &SimulationConfig,
    spec: flic_protocol::ModelSpec,
    weights: &[f32],
    clients: usize,
    max_samples: u64,
) -> anyhow::Result<(Host, Principal)> {
    let admin = controller_identity(args.seed);
    let init = candid::encode_one(InitArg::Init(InitArgs::default()))?;
    let (host, canister) = match &args.network {
        None => {
            // raw_rand (central DP's noise) seeded by the simulation's seed: the same
            // seed ends on the same models. A simulation is private against nobody.
            let mut ic = EmbeddedIc::with_config(flic_embedded_ic::Config {
                randomness_seed: Some(flic_protocol::hash::sha256_concat(&[
                    b"flic/simulate/raw_rand",
                    &args.seed.to_le_bytes(),
                ])),
                ..Default::default()
            });
            let canister = ic.create_canister(vec![admin.principal()]);
            ic.install_code(
                canister,
                flic_aggregator_wasm::AGGREGATOR_WASM,
                init,
                InstallMode::Install,
                admin.principal(),
            )
            .context("installing the aggregator wasm")?;
            (Host::Embedded(embedded::share(ic)), canister)
        }
        Some(url) => {
            let network = Network::parse(url).map_err(anyhow::Error::msg)?;
            let mut management = Management::connect(&network, &admin)?;
            let canister = management
                .create_canister(100_000_000_000_000)
                .with_context(|| format!("creating the canister on {url}"))?;
            management
                .install_code(
                    canister,
                    ic_management_canister_types::CanisterInstallMode::Install,
                    flic_aggregator_wasm::AGGREGATOR_WASM,
                    init,
                )
                .with_context(|| format!("installing the aggregator wasm on {url}"))?;
            (Host::Network(network), canister)
        }
    };
    let mut api = AggregatorApi::new(host.connect(canister, &admin)?);
    let job = JobConfig {
        min_clients: clients as u32,
        max_clients: clients as u32,
        clip_norm: args.clip_norm,
        // With DP every contribution weighs the same: the noise scales with the cap.
        max_weight: if args.dp.is_some() {
            1
        } else {
            max_samples.max(1)
        },
        server_lr: args.server_lr,
        retain_contributions: args.retain_contributions,
        aggregation: Some(args.aggregation),
        server_optimizer: Some(args.server_optimizer),
        dp: args.dp,
        secure_aggregation: secure_aggregation(args, clients)?,
        ..JobConfig::new(spec, client_hyperparameters(args))
    };
    // The default allows f32 and int8; a simulation of another encoding allows it too.
    let mut job = job;
    if job.secure_aggregation.is_some() {
        job.allowed_encodings = vec![DeltaEncoding::Masked];
        // Those who drop out before advertising leave fewer participants.
        job.min_clients = (clients - args.dropouts).max(3) as u32;
    } else if !job.allowed_encodings.contains(&args.encoding) {
        job.allowed_encodings.push(args.encoding);
    }
    api.launch_job(&job, weights)
        .context("configuring and starting the job")?;
    Ok((host, canister))
}

/// What the canister simulation and the float reference both start from: the same
/// data, model and initial weights for the same arguments.
struct Setup {
    backend: Backend,
    device: flic_model_zoo::Device,
    /// What started the backend said (its pick, a fallback).
    backend_notes: Vec<String>,
    fed: Federation,
    config: ModelConfig,
    initial: Vec<f32>,
}

fn setup(args: &SimulationConfig) -> anyhow::Result<Setup> {
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let request: BackendRequest = args.backend.parse()?;
    let convolutional = flic_model_zoo::model::is_convolutional(&args.model);
    let mut backend_notes = Vec::new();
    let started = crate::compute::start(request, convolutional, &mut |n| {
        backend_notes.push(n.into())
    })?;
    let (backend, device) = (started.plan.backend, started.device);
    let fed = unify_classes(build_federation(args)?)?;
    let first = &fed.clients[0];
    let hidden: Vec<usize> = if args.model == "mlp" {
        args.hidden.clone()
    } else {
        Vec::new()
    };
    let config = ModelConfig::for_data(
        &args.model,
        &first.feature_shape,
        first.num_classes,
        &hidden,
    )?;
    let initial = init_weights(&config, sub_seed_u64(args.seed, "init", 0))?;
    Ok(Setup {
        backend,
        device,
        backend_notes,
        fed,
        config,
        initial,
    })
}

/// Runs the whole simulation; `progress` sees every phase.
pub fn run(
    args: &SimulationConfig,
    progress: &mut dyn Progress,
) -> anyhow::Result<SimulationReport> {
    let started = Instant::now();
    let attack: Attack = args.attack.parse().map_err(anyhow::Error::msg)?;
    let Setup {
        backend,
        device,
        backend_notes,
        fed,
        config,
        initial,
    } = setup(args)?;
    for line in &backend_notes {
        progress.note(line);
    }
    let n = fed.clients.len();
    let spec = model_spec(&config)?;
    let max_samples = fed
        .clients
        .iter()
        .map(|c| c.len() as u64)
        .max()
        .unwrap_or(1);
    progress.note(&format!(
        "flic simulate: {n} clients, {} rounds, model {} ({} parameters), {} encoding, partition {}, backend {}",
        args.rounds,
        &args.model,
        spec.param_count(),
        args.encoding,
        if args.partitions.is_some() { "pre-partitioned".to_string() } else { args.partition.clone() },
        backend.as_str(),
    ));
    if args.malicious > n {
        bail!(
            "--malicious {} but there are only {n} clients",
            args.malicious
        );
    }
    if args.malicious > 0 {
        let how = if attack.colludes() {
            format!(
                ", colluding with {} knowledge{}",
                args.attack_knowledge,
                if args.attack_adaptive {
                    ", adaptive"
                } else {
                    ""
                }
            )
        } else {
            String::new()
        };
        progress.note(&format!(
            "{} of {n} clients attack with {attack}{how}, clipped to the job's L2 bound {}",
            args.malicious, args.clip_norm
        ));
    }
    let (host, canister) = deploy(args, spec.clone(), &initial, n, max_samples)?;
    // The controller reports each round's test accuracy, so the dashboard can chart it.
    let mut reporter = AggregatorApi::new(host.connect(canister, &controller_identity(args.seed))?);

    // Contributors: a key each, a registered dataset each.
    let mut clients = Vec::with_capacity(n);
    for (i, data) in fed.clients.into_iter().enumerate() {
        if data.is_empty() {
            bail!("client {i} has no data; use fewer clients or another partition");
        }
        let identity = client_identity(args.seed, i);
        let mut api = AggregatorApi::new(host.connect(canister, &identity)?);
        let dataset_id = api
            .register_dataset(&RegisterDatasetArgs {
                name: format!("client-{i}"),
                commitment: Hash::new(data::dataset_commitment(&data)),
                sample_count: data.len() as u64,
                license: "CC-BY-4.0".into(),
                description: format!("simulated contributor {i}"),
            })
            .with_context(|| format!("registering client {i}'s dataset"))?;
        clients.push(SimClient {
            identity,
            api,
            data,
            dataset_id,
            residual: None,
        });
    }
    let samples_per_client: Vec<usize> = clients.iter().map(|c| c.data.len()).collect();
    let initial_eval = evaluate(&config, &initial, &fed.test, &device)?;
    progress.note(&format!(
        "round 0: test accuracy {:.2}% (initial model)",
        initial_eval.accuracy * 100.0
    ));

    let encoding = args.encoding;
    let colluding = attack.colludes() && args.malicious > 0;
    let first_attacker = n - args.malicious;
    let mut adaptive = Adaptive::default();
    let mut current = initial.clone();
    // Receipts name the saved state they can be checked against.
    let state_dir = args.state.as_deref().map(std::path::absolute).transpose()?;
    let mut rounds = Vec::new();
    for r in 0..args.rounds {
        if args.dp.is_some() && clients[0].api.round_info()?.state == JobState::Paused {
            progress.note(&format!(
                "the privacy budget is spent after {r} round(s): the job paused (`flic verify privacy` recomputes it)"
            ));
            break;
        }
        let total_samples: u64 = clients
            .iter()
            .map(|c| (c.data.len() * args.local_epochs) as u64)
            .sum();
        progress.start(&format!("round {}/{}", r + 1, args.rounds), total_samples);
        let mut stats = CallStats::default();
        let (mut upload_bytes, mut norm_sum, mut clipped, mut shrunk) =
            (0u64, 0f64, 0usize, 0usize);
        let (mut train_t, mut encode_t, mut canister_t) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut done_before = 0u64;
        let mut commits = Vec::with_capacity(clients.len());
        // What a colluding coalition knows of this round's benign deltas, and what it sends.
        let benign: std::cell::RefCell<Vec<Vec<f32>>> = Default::default();
        let crafted: std::cell::OnceCell<Vec<f32>> = Default::default();
        let gain = args.attack_adaptive.then_some(adaptive.gain);
        if colluding && args.attack_knowledge == Knowledge::Coalition {
            // The attackers first train honestly on their own data, as their estimate.
            let hp = client_hyperparameters(args);
            for (i, c) in clients.iter().enumerate().skip(first_attacker) {
                let seed = sub_seed_u64(args.seed, "coalition", r * 1_000_003 + i as u64);
                let out = train_local(
                    &config,
                    &current,
                    &c.data,
                    &train_params(&hp, seed),
                    &device,
                    &mut |_| {},
                )
                .with_context(|| format!("attacker {i}'s honest training in round {r}"))?;
                benign.borrow_mut().push(
                    out.weights
                        .iter()
                        .zip(&current)
                        .map(|(w, b)| w - b)
                        .collect(),
                );
            }
        }
        for c in clients.iter_mut() {
            c.api.stats = CallStats::default();
        }
        // Secure aggregation's first two phases, before anyone trains.
        let plan = dropout_plan(args.seed, r, n, args.dropouts);
        let acts = |i: usize, phase: DropAt| plan[i].is_none_or(|d| d > phase);
        let mut parts: Vec<Option<Participation>> = (0..n).map(|_| None).collect();
        let mut masked_view = None;
        if args.secure_aggregation.is_some() {
            let job_id = clients[0].api.round_info()?.job_id;
            for (i, c) in clients.iter_mut().enumerate() {
                if acts(i, DropAt::Advertise) {
                    // Seeded like everything else in a simulation, so distributed DP's
                    // noise (drawn from the session) repeats with the seed. A simulated
                    // round advertises once: a round that starts over fails the run.
                    let randomness = flic_protocol::hash::sha256_concat(&[
                        b"flic/simulate/secagg-session",
                        &args.seed.to_le_bytes(),
                        &(i as u64).to_le_bytes(),
                        &r.to_le_bytes(),
                    ]);
                    parts[i] = Some(sa::advertise(
                        &mut c.api,
                        &c.identity,
                        job_id,
                        r,
                        randomness,
                    )?);
                }
            }
            if sa::view(&mut clients[0].api)?.phase == SecAggPhase::AdvertiseKeys {
                end_phase(&host, &mut clients[0].api, r, SecAggPhase::AdvertiseKeys)?;
            }
            for (i, c) in clients.iter_mut().enumerate() {
                if let (true, Some(p)) = (acts(i, DropAt::Share), parts[i].as_mut()) {
                    sa::post_shares(&mut c.api, p)?;
                }
            }
            let mut v = sa::view(&mut clients[0].api)?;
            if v.phase == SecAggPhase::ShareKeys {
                v = end_phase(&host, &mut clients[0].api, r, SecAggPhase::ShareKeys)?;
            }
            masked_view = Some(v);
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let part = match (&masked_view, parts[i].as_ref()) {
                (None, _) => None,
                (Some(v), Some(p))
                    if acts(i, DropAt::Input) && v.participants[p.index as usize].shared =>
                {
                    Some(p)
                }
                _ => continue, // dropped out
            };
            let t = Instant::now();
            let info = c.api.round_info()?;
            if info.round != r {
                bail!(
                    "expected round {r} to be open, the canister is at round {}",
                    info.round
                );
            }
            canister_t += t.elapsed();
            let job = info.config.as_ref().context("job config missing")?;
            let poison = |base: &[f32], trained: &[f32]| {
                if colluding {
                    let d = crafted.get_or_init(|| {
                        attack.collude(&benign.borrow(), n, args.malicious, gain.unwrap_or(1.0))
                    });
                    return base.iter().zip(d).map(|(b, d)| b + d).collect();
                }
                attack.poison(
                    base,
                    trained,
                    sub_seed_u64(args.seed, "attack", r * 1_000_003 + i as u64),
                )
            };
            // An omniscient coalition sees every honest delta (honest clients go first).
            let record = |base: &[f32], trained: &[f32]| {
                benign
                    .borrow_mut()
                    .push(trained.iter().zip(base).map(|(t, b)| t - b).collect());
                trained.to_vec()
            };
            let tamper: Option<Tamper> = if i >= first_attacker {
                Some(&poison)
            } else if colluding && args.attack_knowledge == Knowledge::Omniscient {
                Some(&record)
            } else {
                None
            };
            let contributor = Contributor {
                identity: &c.identity,
                dataset_id: c.dataset_id,
                data: &c.data,
                device: &device,
            };
            let masker = |d: &[f32], w: u64, f: u32| {
                let (Some(p), Some(v), Some(config)) =
                    (part, masked_view.as_ref(), info.config.as_ref())
                else {
                    bail!("no secure-aggregation round to mask for");
                };
                p.masked_payload(v, config, d, w, f)
            };
            let step = contribute(
                &mut c.api,
                &contributor,
                &info,
                StepOptions {
                    encoding: Some(if part.is_some() {
                        DeltaEncoding::Masked
                    } else {
                        encoding
                    }),
                    tamper,
                    residual: c.residual.as_deref(),
                    masker: part.is_some().then_some(&masker as _),
                    ..StepOptions::default()
                },
                &mut TrainingOnly::new(progress, done_before),
            )
            .with_context(|| format!("client {i} in round {r}"))?;
            done_before += (c.data.len() * job.client.local_epochs as usize) as u64;
            train_t += step.train_time;
            encode_t += step.encode_time;
            canister_t += step.canister_time;
            norm_sum += step.prepared.norm_before_clip;
            let round_clip = info.clip_norm().unwrap_or(job.clip_norm) as f64;
            clipped += usize::from(step.prepared.norm_before_clip > round_clip);
            if step.prepared.residual.is_some() {
                c.residual = step.prepared.residual;
            }
            shrunk += usize::from(step.prepared.shrink < 1.0);
            let up = step.upload;
            upload_bytes += up.bytes_sent;
            commits.push((i, up.receipt.contribution_index));
        }
        if masked_view.is_some() {
            // The last two phases: the masked inputs' end, then the survivors' shares (the
            // reveal that reaches the threshold unmasks and closes the round).
            if sa::view(&mut clients[0].api)?.phase == SecAggPhase::MaskedInput {
                end_phase(&host, &mut clients[0].api, r, SecAggPhase::MaskedInput)?;
            }
            let committed: Vec<usize> = commits.iter().map(|(i, _)| *i).collect();
            for i in committed {
                if let (true, Some(p)) = (acts(i, DropAt::Reveal), parts[i].as_ref()) {
                    sa::reveal(&mut clients[i].api, p)?;
                }
            }
        }
        let contributed = commits.len();
        for c in &clients {
            stats.merge(&c.api.stats);
        }
        // The last commit reached max_clients and closed the round inside the canister
        // (a close sliced across messages goes on in timer messages: a network's timers
        // run on their own, so wait for them there).
        let observer = &mut clients[0].api;
        let mut info = observer.round_info()?;
        let waiting = Instant::now();
        while info.round == r && matches!(host, Host::Network(_)) && waiting.elapsed() < CLOSE_WAIT
        {
            std::thread::sleep(Duration::from_millis(200));
            info = observer.round_info()?;
        }
        if info.round != r + 1 {
            bail!(
                "round {r} did not close after {n} commits (the canister is at round {})",
                info.round
            );
        }
        let record = observer
            .round_history(PageArgs { start: r, limit: 1 })?
            .items
            .into_iter()
            .next()
            .with_context(|| format!("round {r}'s record"))?;
        let (epsilon_spent, adaptive_clip) = (record.epsilon_spent, record.adaptive_clip);
        let canister_seconds_open =
            record.closed_at_ns.saturating_sub(record.opened_at_ns) as f64 / 1e9;
        let model = observer.download_model(&mut |_, _| {})?;
        let global = model.weights;
        if let (true, Some(sent)) = (args.attack_adaptive, crafted.get()) {
            let step: Vec<f32> = global.iter().zip(&current).map(|(g, c)| g - c).collect();
            let (mean, _) = mean_and_std(&benign.borrow());
            let through = adaptive.observe(&step, &mean, sent, args.server_lr);
            progress.note(&format!(
                "round {}: the coalition's deviation {} (gain now {})",
                r + 1,
                if through {
                    "got through"
                } else {
                    "was filtered"
                },
                adaptive.gain
            ));
        }
        current.clone_from(&global);
        if let Some(dir) = &args.receipts {
            let round_dir = dir.join(format!("round-{r}"));
            for &(i, index) in &commits {
                let receipt = clients[i]
                    .api
                    .receipt(index)
                    .with_context(|| format!("receipt of client {i} in round {r}"))?;
                let path = round_dir.join(format!("client-{i}.json"));
                let file = ReceiptFile {
                    receipt,
                    origin: Some(ReceiptOrigin {
                        network: host.name(),
                        state: state_dir.clone(),
                    }),
                };
                crate::receipts::write_receipt(&path, &file)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        let eval = evaluate(&config, &global, &fed.test, &device)?;
        if eval.loss.is_finite() {
            reporter
                .report_evaluation(&ReportEvaluationArgs {
                    round: r,
                    model_version: model.info.version,
                    accuracy: eval.accuracy,
                    loss: eval.loss,
                    samples: fed.test.len() as u64,
                })
                .with_context(|| format!("reporting round {r}'s evaluation"))?;
        } else {
            progress.note(&format!(
                "round {}: test loss is {}, not reported to the canister",
                r + 1,
                eval.loss
            ));
        }
        let uploads = stats.submissions();
        let instructions = uploads.instructions;
        let cycles = crate::bench::fees::RoundCycles::new(
            uploads.calls,
            instructions,
            uploads.calls,
            uploads.arg_bytes,
        );
        let report = RoundReport {
            round: r + 1,
            bytes_per_contribution: upload_bytes / contributed.max(1) as u64,
            bytes_per_param: upload_bytes as f64
                / (contributed.max(1) as f64 * spec.param_count() as f64),
            cycles_per_contribution: cycles.total() / contributed.max(1) as u64,
            usd: cycles.usd(),
            shrunk,
            commit_instructions: stats
                .per_method
                .get("commit_submission")
                .map_or(0, |s| s.instructions),
            test_accuracy: eval.accuracy,
            test_loss: eval.loss,
            contributors: contributed,
            upload_bytes,
            model_version: hex::encode(model.info.version.as_slice()),
            instructions,
            max_message_instructions: stats.max_instructions(),
            mean_delta_norm: norm_sum / contributed.max(1) as f64,
            clipped,
            train_seconds: train_t.as_secs_f64(),
            encode_seconds: encode_t.as_secs_f64(),
            canister_seconds: canister_t.as_secs_f64(),
            attack_gain: gain,
            epsilon_spent,
            adaptive_clip,
            open_seconds: canister_seconds_open,
            secagg: masked_view.as_ref().map(|v| SecAggCounts {
                participants: v.participants.len(),
                sharers: v.participants.iter().filter(|p| p.shared).count(),
            }),
            calls: stats.per_method.clone(),
        };
        progress.finish("");
        let mut privacy = report
            .epsilon_spent
            .map(|e| format!("  epsilon {e:.3}"))
            .unwrap_or_default();
        if let Some(c) = report.adaptive_clip {
            privacy += &format!(
                "  clip {:.4} ({:.1} of {} below)",
                c.clip_norm, c.noised_count, report.contributors
            );
        }
        progress.note(&format!(
            "round {}: test accuracy {:.2}%  loss {:.4}  {} contributors  {} uploaded ({:.3} B/param)  {:.1} M instructions{privacy}  model {}",
            report.round,
            report.test_accuracy * 100.0,
            report.test_loss,
            report.contributors,
            crate::output::human_bytes(report.upload_bytes),
            report.bytes_per_param,
            report.instructions as f64 / 1e6,
            &report.model_version[..12],
        ));
        rounds.push(report);
    }
    if let (Some(dir), Host::Embedded(ic)) = (&args.state, &host) {
        embedded::lock(ic)
            .save(dir)
            .with_context(|| format!("saving the embedded IC state to {}", dir.display()))?;
        // The controller's key, so the saved federation can be administered
        // (`flic job pause --identity DIR/controller.pem ...`).
        let pem = dir.join("controller.pem");
        if pem.exists() {
            std::fs::remove_file(&pem).with_context(|| format!("replacing {}", pem.display()))?;
        }
        controller_identity(args.seed).write_new(&pem)?;
        progress.note(&format!(
            "saved the canister state and its controller key to {}",
            dir.display()
        ));
    }
    let final_accuracy = rounds
        .last()
        .map(|r| r.test_accuracy)
        .unwrap_or(initial_eval.accuracy);
    let wasm_sha256 = flic_aggregator_wasm::module_hash_hex();
    Ok(SimulationReport {
        config: args.clone(),
        backend,
        canister_id: canister.to_text(),
        wasm_sha256,
        clients: n,
        samples_per_client,
        param_count: spec.param_count(),
        initial_accuracy: initial_eval.accuracy,
        rounds,
        final_accuracy,
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The summary table printed at the end.
pub fn summary_table(report: &SimulationReport) -> String {
    let rows = report.rounds.iter().map(|r| {
        vec![
            r.round.to_string(),
            format!("{:.2}%", r.test_accuracy * 100.0),
            format!("{:.4}", r.test_loss),
            r.contributors.to_string(),
            crate::output::human_bytes(r.upload_bytes),
            format!("{:.1} M", r.instructions as f64 / 1e6),
            format!(
                "{:.2} / {:.3} / {:.3}",
                r.train_seconds, r.encode_seconds, r.canister_seconds
            ),
            r.model_version[..12].to_string(),
        ]
    });
    crate::output::table(
        &[
            "round",
            "accuracy",
            "loss",
            "clients",
            "uploaded",
            "instructions",
            "train/encode/canister s",
            "model version",
        ],
        rows,
    )
}

/// Accuracy per round of the same federation as [`run`] (same data, partition, initial
/// weights, per-client shuffling seeds and hyperparameters) aggregated **without the
/// canister**: plain float32 FedAvg of the clients' clipped deltas,
/// `w + server_lr * (sum_i n_i * delta_i) / (sum_i n_i)` with every operation in `f32`.
/// The reference `flic bench learning` compares the canister's integer path against.
/// Returns the initial accuracy and one accuracy per round.
pub fn run_float_reference(
    args: &SimulationConfig,
    progress: &mut dyn Progress,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let Setup {
        device,
        fed,
        config,
        initial: mut global,
        ..
    } = setup(args)?;
    let hp = client_hyperparameters(args);
    let initial = evaluate(&config, &global, &fed.test, &device)?.accuracy;
    let mut accuracies = Vec::new();
    for r in 0..args.rounds {
        progress.note(&format!("float reference: round {}/{}", r + 1, args.rounds));
        let mut sum = vec![0f32; global.len()];
        let mut total = 0f32;
        for (i, data) in fed.clients.iter().enumerate() {
            // The same settings and seeds `run` gives client i in round r through the job.
            let params = train_params(
                &hp,
                flic_protocol::seeds::shuffle_seed(
                    hp.seed,
                    r,
                    &client_identity(args.seed, i).principal(),
                ),
            );
            let outcome = train_local(&config, &global, data, &params, &device, &mut |_| {})
                .with_context(|| format!("client {i} training in round {r}"))?;
            let mut delta: Vec<f32> = outcome
                .weights
                .iter()
                .zip(&global)
                .map(|(t, b)| t - b)
                .collect();
            flic_protocol::encoding::clip_l2(&mut delta, args.clip_norm);
            let n = outcome.samples as f32;
            for (s, d) in sum.iter_mut().zip(&delta) {
                *s += n * d;
            }
            total += n;
        }
        for (w, s) in global.iter_mut().zip(&sum) {
            *w += args.server_lr * (s / total);
        }
        accuracies.push(evaluate(&config, &global, &fed.test, &device)?.accuracy);
    }
    Ok((initial, accuracies))
}
