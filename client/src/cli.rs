//! Command-line interface definitions (clap). One subcommand per module in `commands/`.
//! This module and `commands/` are the only ones that know clap: every argument type
//! converts into the library's plain configuration ([`SimulationConfig`], [`DataFormat`],
//! [`DeltaEncoding`], ...), which tests and other programs build directly.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use flic_protocol::api::Optimizer;
use flic_protocol::optimizers::ServerOptimizer;
use flic_protocol::privacy::{AdaptiveClip, DpConfig, DpMode};
use flic_protocol::rules::AggregationRule;
use flic_protocol::secagg::SecAggConfig;
use flic_protocol::DeltaEncoding;

use crate::attack::Knowledge;

use crate::data::DataFormat;
use crate::simulate::SimulationConfig;
use flic_model_zoo::BackendRequest;

#[derive(Parser, Debug)]
#[command(
    name = "flic",
    version,
    about = "Federated learning with on-chain aggregation on the Internet Computer",
    long_about = "flic trains a shared model on private data: each contributor trains locally, \
                  signs a weight delta and uploads it to an aggregator canister, which verifies \
                  and averages the deltas deterministically.\n\n\
                  Start with `flic simulate` to run a whole federation on this machine, with the \
                  canister's real wasm embedded in-process.",
    after_help = "Exit status: 0 success (a proof verified); 1 a proof, receipt or lineage \
                  does not verify; 2 an error (bad input or usage, an unreadable file, an \
                  unreachable network)."
)]
pub struct Cli {
    /// Print nothing but errors and the JSON asked for with --json; the exit status says
    /// how it went.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// No progress bars (informational lines still go to stderr).
    #[arg(long, global = true, env = "FLIC_NO_PROGRESS")]
    pub no_progress: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new Ed25519 identity (PEM, mode 0600). Refuses to overwrite.
    Keygen {
        #[command(flatten)]
        identity: IdentityArgs,
    },
    /// Print the principal of your identity.
    Whoami {
        #[command(flatten)]
        identity: IdentityArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Register or list datasets in the canister's ownership registry.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Join rounds: download the model, train on local data, upload a signed delta.
    Train(TrainArgs),
    /// Show the current round.
    Status {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List closed rounds (newest last).
    Rounds {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[arg(long, default_value_t = 20)]
        limit: u64,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Download the current model.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Configure and start a training job, or pause and resume it (controllers only).
    #[command(subcommand)]
    Job(JobCommand),
    /// Run a whole federation in this process on the embedded IC.
    Simulate(SimulateArgs),
    /// Check proofs: receipts, lineage of a model version, dataset samples.
    #[command(subcommand)]
    Verify(VerifyCommand),
    /// Run a local IC network on this machine (the embedded IC behind the IC's HTTP interface).
    ///
    /// For `ic-agent`, the `icp` CLI and `flic --network http://ADDR`: serves
    /// `/api/v2/status`, `/api/v4/canister/<id>/call`, `/api/v3/.../query` and
    /// `read_state`, the management canister, and an HTTP gateway at
    /// `http://<canister-id>.localhost:<port>/`. See docs/devnet.md.
    Devnet(DevnetArgs),
    /// Deploy the aggregator canister to a network (create and install, or upgrade).
    ///
    /// Creates a canister and installs the wasm built into this `flic` (or --wasm), or
    /// reinstalls or upgrades an existing one (--canister).
    Deploy(DeployArgs),
    /// Serve the canister's dashboard (its own `http_request`) from a saved embedded IC
    /// over HTTP on this machine. For a deployed canister, open it through the IC's HTTP
    /// gateway instead (see docs/dashboard.md).
    Dashboard {
        /// State directory written by `flic simulate --state DIR`.
        #[arg(long, env = "FLIC_STATE")]
        state: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Canister to serve [default: the first in the state].
        #[arg(long)]
        canister: Option<String>,
    },
    /// Benchmarks: on-chain aggregation cost, cost per round, learning, speed, scale;
    /// `--doc docs/benchmarks.md` writes the figures into the benchmarks document.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// List the compiled training backends, every GPU adapter found, and what
    /// `--backend auto` picks.
    ///
    /// Adapters are wgpu's (Vulkan, Metal, DX12, GL) and, in a build with `--features
    /// cuda`, CUDA devices: name, driver, type and memory. `auto` prefers CUDA, then a
    /// discrete or integrated GPU through wgpu, then flex for convolutional models and
    /// ndarray otherwise; a software adapter (lavapipe) is used only when named with
    /// `--backend wgpu`.
    Backends {
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Args, Debug, Clone)]
pub struct DevnetArgs {
    /// Address to listen on (port 0 picks a free port; the URL is printed).
    #[arg(long, default_value = "127.0.0.1:4943")]
    pub listen: String,
    /// State directory: loaded if it holds a saved state (from `flic simulate --state DIR`
    /// or an earlier devnet), and written after every committed message, so a devnet
    /// killed and restarted with the same directory loses nothing.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Do not log each request on stderr.
    #[arg(long)]
    pub no_request_log: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// How `flic deploy` installs.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployMode {
    Install,
    Reinstall,
    Upgrade,
}

#[derive(Args, Debug, Clone)]
pub struct DeployArgs {
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// `local`, `ic`, or an http(s) URL (a devnet or a replica).
    #[arg(long, env = "FLIC_NETWORK", default_value = "local")]
    pub network: String,
    /// An existing canister to install into [default: create one, with you as its
    /// controller].
    #[arg(long, env = "FLIC_CANISTER")]
    pub canister: Option<String>,
    /// install, reinstall (wipes the state), or upgrade (keeps it) [default: install,
    /// or upgrade with --canister].
    #[arg(long, value_enum)]
    pub mode: Option<DeployMode>,
    /// The wasm module to install [default: the aggregator built into this flic].
    #[arg(long)]
    pub wasm: Option<PathBuf>,
    /// Cycles for a new canister (`provisional_create_canister_with_cycles`; local
    /// networks only).
    #[arg(long, default_value_t = 100_000_000_000_000)]
    pub cycles: u128,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Subcommand, Debug)]
pub enum VerifyCommand {
    /// Check a contribution receipt: the header's signature, the inclusion proof against
    /// the round's contributions root, the round record against the receipt's certificate
    /// and (unless --offline) against the canister's current certified history.
    /// Exits 0 when it holds, 1 with the reason when it does not.
    Receipt {
        /// Receipt file (JSON), as written by `flic train` or `flic simulate --receipts`.
        file: PathBuf,
        #[command(flatten)]
        target: VerifierArgs,
        /// Check only against the certificate stored in the receipt (root key: built in
        /// for `ic` and `embedded`; a local replica's must be fetched, so not offline).
        #[arg(long)]
        offline: bool,
    },
    /// Recompute a model version bit for bit from the initial model and every round's
    /// retained contributions, and list the datasets (and owners) that shaped it.
    Lineage {
        #[command(flatten)]
        target: VerifierArgs,
        /// The model version (hex).
        #[arg(long)]
        version: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Recompute the privacy a job with differential privacy has spent: every certified
    /// round's epsilon from the certified job configuration, and that no round went
    /// beyond the budget. Exits 0 when it holds, 1 with the reason when it does not.
    Privacy {
        #[command(flatten)]
        target: VerifierArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Check a sample membership proof (from `flic dataset prove`), and optionally that
    /// its root is the registered commitment of a dataset.
    Sample {
        file: PathBuf,
        /// Also compare with this registered dataset's commitment (needs the canister).
        #[arg(long)]
        dataset_id: Option<u64>,
        #[command(flatten)]
        target: VerifierArgs,
    },
}

/// Which canister a verifier asks; no identity is needed (queries only).
#[derive(Args, Debug, Clone)]
pub struct VerifierArgs {
    /// `local`, `ic`, an http(s) URL, or `embedded` (with --state) [default: where the
    /// receipt came from, else `local`].
    #[arg(long, env = "FLIC_NETWORK")]
    pub network: Option<String>,
    /// The aggregator canister id [default: the receipt's, or the embedded state's].
    #[arg(long, env = "FLIC_CANISTER")]
    pub canister: Option<String>,
    /// State directory of an embedded IC (with --network embedded) [default: the
    /// receipt's].
    #[arg(long, env = "FLIC_STATE")]
    pub state: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Instructions per parameter per contribution of `commit_submission` and of closing
    /// the round, on the canister's release wasm in the embedded IC.
    Aggregate(BenchAggregateArgs),
    /// Test accuracy per round: canister f32 and int8 against a float32 FedAvg without the
    /// canister, for several partitions; writes an SVG plot.
    Learning(BenchLearningArgs),
    /// Wall time per round of `flic simulate`, split into training, canister and encoding.
    Simulate(BenchSimulateArgs),
    /// The largest model one canister handles end to end within the IC limits.
    Scale(BenchScaleArgs),
    /// Client training throughput per zoo model on burn's CPU backends, side by side with
    /// PyTorch on the same model, data, weights, batch size and threads.
    Train(BenchTrainArgs),
    /// Every aggregation rule against every attack at 0-3 attackers of 10 on IID and
    /// non-IID federations; each rule's cost at the close; rounds to a target accuracy per
    /// server optimizer and with FedProx.
    Robust(BenchRobustArgs),
    /// Every delta encoding on the same federation (IID and non-IID): bytes per
    /// parameter, accuracy per round against f32, and each encoding's commit instructions,
    /// cycles and USD per contribution at scale; writes an SVG plot.
    Compression(BenchCompressionArgs),
    /// Central differential privacy on the same federation at several target epsilons:
    /// accuracy per round against the same run without DP, the certified epsilon spent,
    /// and the noise's instructions at the close; writes an SVG plot.
    Privacy(BenchPrivacyArgs),
    /// Secure aggregation on the same federation without it and with K clients dropping
    /// out of each round: messages, bytes and instructions per client, the closing
    /// message (the unmasking), and how long each round stays open.
    Secagg(BenchSecAggArgs),
}

#[derive(Args, Debug, Clone)]
pub struct BenchSecAggArgs {
    /// The federation every run shares; --clients defaults to 10 here.
    #[command(flatten)]
    pub simulate: SimulateArgs,
    /// Dropouts per round, each a run.
    #[arg(
        long = "dropouts-list",
        value_delimiter = ',',
        default_value = "0,1,2,3"
    )]
    pub dropouts_list: Vec<usize>,
    /// Rewrite the secure-aggregation section of this Markdown file.
    #[arg(long, value_name = "PATH")]
    pub doc: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct BenchRobustArgs {
    /// The federation every run shares (model, data, rounds, clip norm, seed, attack
    /// knowledge); --clients defaults to 10 here, and the grid sets --aggregation,
    /// --attack, --malicious, --partition, --server-optimizer and --proximal-mu itself.
    #[command(flatten)]
    pub simulate: SimulateArgs,
    /// Aggregation rules to compare (space separated).
    #[arg(
        long,
        num_args = 1..,
        default_values = ["fedavg", "median", "trimmed-mean:0.3", "krum:3", "multi-krum:3,7", "bulyan:1", "centered-clip:1", "centered-clip:3"]
    )]
    pub rules: Vec<AggregationRule>,
    /// Attacks (space separated), as for `flic simulate --attack`.
    #[arg(
        long,
        num_args = 1..,
        default_values = ["signflip", "scale:-10", "noise:1", "alie", "ipm"]
    )]
    pub attacks: Vec<String>,
    /// Attacker counts; 0 is each rule's clean run.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3")]
    pub attackers: Vec<usize>,
    /// Partitions of the grid.
    #[arg(
        long = "partitions-list",
        value_delimiter = ',',
        default_value = "iid,dirichlet:0.5"
    )]
    pub partitions_list: Vec<String>,
    /// Server optimizers timed to the target, each NAME[@SERVER_LR] (space separated). The
    /// rates keep the effective step of FedAvg for momentum (lr / (1 - beta) = 1) and use
    /// Reddi et al.'s most frequent best rate, 10^-1.5, for the adaptive ones.
    #[arg(
        long,
        num_args = 1..,
        default_values = ["sgd@1", "momentum:0.9@0.1", "nesterov:0.9@0.1", "adagrad@0.03", "adam@0.03", "yogi@0.03"]
    )]
    pub optimizers: Vec<String>,
    /// FedProx coefficients run beside the optimizers (with SGD at --server-lr).
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1")]
    pub proximal_mus: Vec<f32>,
    /// The partition of the optimizer comparison.
    #[arg(long, default_value = "dirichlet:0.5")]
    pub optimizer_partition: String,
    /// Target test accuracy in [0, 1] [default: 95% of FedAvg's best].
    #[arg(long)]
    pub target: Option<f64>,
    /// Parameters of the rule-cost round.
    #[arg(long, value_parser = parse_count, default_value = "1e5")]
    pub cost_params: u64,
    /// Contributions of the rule-cost round.
    #[arg(long, default_value_t = 10)]
    pub cost_contributions: u32,
    /// Rewrite the robustness section of this Markdown file.
    #[arg(long, value_name = "PATH")]
    pub doc: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct BenchTrainArgs {
    /// Models to train.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "linear,mlp,lenet,cifar-cnn"
    )]
    pub models: Vec<ModelArg>,
    /// burn backends to time [default: the CPU backends compiled in: ndarray and flex];
    /// wgpu and cuda must start on a GPU adapter (`flic backends`), or the bench fails.
    #[arg(long, value_delimiter = ',')]
    pub backends: Vec<flic_model_zoo::Backend>,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Compute threads for burn (RAYON_NUM_THREADS) and PyTorch (torch.set_num_threads)
    /// [default: all logical CPUs].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed epochs, after one warm-up epoch.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// Multiplies the number of samples per model (20k for linear and mlp, 4k for lenet,
    /// 2k for cifar-cnn).
    #[arg(long, default_value_t = 1.0)]
    pub samples_scale: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A Python with torch and numpy, to run PyTorch side by side (`bench/pytorch/setup.sh`
    /// makes one and prints its path).
    #[arg(long, value_name = "PYTHON")]
    pub pytorch: Option<PathBuf>,
    /// PyTorch's device: cpu, or cuda (a GPU machine; `bench/gpu/run.sh` passes it).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    pub pytorch_device: String,
    /// The PyTorch side [default: bench/pytorch/train_throughput.py of this source tree].
    #[arg(long, value_name = "PATH")]
    pub script: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Rewrite the training section of this Markdown file.
    #[arg(long, value_name = "PATH")]
    pub doc: Option<PathBuf>,
    /// The section of --doc to rewrite (`training`: the CPU table; `training-gpu`: GPU
    /// backends).
    #[arg(long, default_value = "training", requires = "doc")]
    pub section: String,
}

#[derive(Args, Debug, Clone)]
pub struct BenchScaleArgs {
    /// Model sizes to run, largest last.
    #[arg(long, value_delimiter = ',', value_parser = parse_count, default_value = "1e7,1e8")]
    pub params: Vec<u64>,
    #[arg(long, default_value_t = 2)]
    pub contributions: u32,
    #[arg(long, value_parser = parse_encoding, default_value = "int8")]
    pub encoding: DeltaEncoding,
    /// Canister wasm [default: the embedded release build].
    #[arg(long, value_name = "PATH")]
    pub wasm: Option<PathBuf>,
    #[arg(long, default_value = "embedded")]
    pub build: String,
    /// Rewrite the scale section of this Markdown file.
    #[arg(long, value_name = "PATH")]
    pub doc: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct BenchLearningArgs {
    #[command(flatten)]
    pub simulate: SimulateArgs,
    /// Partitions to compare.
    #[arg(
        long = "partitions-list",
        value_delimiter = ',',
        default_value = "iid,dirichlet:0.5,shards:2"
    )]
    pub partitions_list: Vec<String>,
    /// Rewrite the learning section of this Markdown file (the SVG goes next to it).
    #[arg(long, value_name = "PATH")]
    pub doc: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct BenchPrivacyArgs {
    #[command(flatten)]
    pub simulate: SimulateArgs,
    /// Target epsilons, each a run whose noise spends exactly that over --rounds.
    #[arg(long, value_delimiter = ',', default_value = "4,16,64")]
    pub epsilons: Vec<f64>,
    /// DP modes to run at each epsilon: central, distributed (over secure aggregation).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "central,distributed"
    )]
    pub dp_modes: Vec<DpArg>,
    /// Clip norm of the DP runs [default: the mean norm of the no-DP run's first-round
    /// deltas before clipping].
    #[arg(long, value_name = "NORM")]
    pub dp_clip: Option<f32>,
    /// Also run central DP with adaptive clipping to this quantile of the update norms at
    /// each epsilon, the clip starting at --clip-norm.
    #[arg(long, value_name = "Q")]
    pub adaptive_clip: Option<f64>,
    /// Rewrite the privacy section of this Markdown file (the SVG goes next to it).
    #[arg(long, value_name = "PATH")]
    pub doc: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct BenchCompressionArgs {
    #[command(flatten)]
    pub simulate: SimulateArgs,
    /// Encodings to compare (f32 first: the others are measured against it).
    #[arg(
        long = "encodings",
        value_parser = parse_encoding_list,
        default_value = "f32,int8,int4,int2,topk:26/256,4,topk:16/256,4,topk:8/256,4,topk:3/256,2"
    )]
    pub encodings: EncodingList,
    /// Partitions to compare.
    #[arg(
        long = "partitions-list",
        value_delimiter = ',',
        default_value = "iid,dirichlet:0.5"
    )]
    pub partitions_list: Vec<String>,
    /// Parameters of the cost round per encoding.
    #[arg(long, value_parser = parse_count, default_value = "1e6")]
    pub cost_params: u64,
    /// Contributions of the cost round per encoding.
    #[arg(long, default_value_t = 10)]
    pub cost_contributions: u32,
    /// Canister wasm to measure [default: the embedded release build].
    #[arg(long, value_name = "PATH")]
    pub wasm: Option<PathBuf>,
    #[arg(long, default_value = "embedded")]
    pub build: String,
    /// Rewrite the compression section of this Markdown file (the SVG goes next to it).
    #[arg(long, value_name = "PATH")]
    pub doc: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct BenchSimulateArgs {
    #[command(flatten)]
    pub simulate: SimulateArgs,
    /// Models to time (each with f32 and int8 deltas).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "mlp,lenet")]
    pub models: Vec<ModelArg>,
    /// Rewrite the simulation section of this Markdown file.
    #[arg(long, value_name = "PATH")]
    pub doc: Option<PathBuf>,
}

/// Parses `10000`, `1e4` or `1_000`.
pub fn parse_count(text: &str) -> Result<u64, String> {
    let t = text.replace('_', "");
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    match t.parse::<f64>() {
        Ok(x) if x >= 0.0 && x.fract() == 0.0 && x <= 1e15 => Ok(x as u64),
        _ => Err(format!("`{text}` is not a whole count (e.g. 10000 or 1e4)")),
    }
}

#[derive(Args, Debug, Clone)]
pub struct BenchAggregateArgs {
    /// Model parameters N (e.g. 1e6).
    #[arg(long, value_parser = parse_count, default_value = "1e5")]
    pub params: u64,
    /// Contributions K in the round.
    #[arg(long, default_value_t = 10)]
    pub contributions: u32,
    #[arg(long, value_parser = parse_encoding, default_value = "int8")]
    pub encoding: DeltaEncoding,
    /// Upload and download chunk size in bytes.
    #[arg(long, default_value_t = flic_protocol::chunking::DEFAULT_CHUNK_SIZE)]
    pub chunk_size: u32,
    /// Canister wasm to measure [default: the embedded release build].
    #[arg(long, value_name = "PATH")]
    pub wasm: Option<PathBuf>,
    /// Label of the --wasm build in reports.
    #[arg(long, default_value = "embedded")]
    pub build: String,
    /// Sweep N over --sweep-params and K over --sweep-contributions, both encodings,
    /// instead of one case.
    #[arg(long)]
    pub sweep: bool,
    #[arg(long, value_delimiter = ',', value_parser = parse_count, default_value = "1e4,1e5,1e6,1e7")]
    pub sweep_params: Vec<u64>,
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    pub sweep_contributions: Vec<u32>,
    /// Skip sweep cases with more than this many parameter-contributions (N x K), to keep
    /// host memory and time bounded.
    #[arg(long, value_parser = parse_count, default_value = "1e9")]
    pub sweep_max_work: u64,
    /// A second wasm (e.g. the scalar build of bench/build_wasm.sh) measured on the same
    /// cases.
    #[arg(long, value_name = "PATH")]
    pub compare_wasm: Option<PathBuf>,
    #[arg(long, default_value = "compare")]
    pub compare_build: String,
    /// The job's aggregation rule (the single case; the sweep measures FedAvg).
    #[arg(long, default_value = "fedavg")]
    pub aggregation: AggregationRule,
    /// Rewrite the aggregate, cost and bytes sections of this Markdown file.
    #[arg(long, value_name = "PATH")]
    pub doc: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Subcommand, Debug)]
pub enum DatasetCommand {
    /// Commit to a local dataset and register it under your principal.
    Register {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        data: DataArgs,
        /// Human-readable name.
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "unspecified")]
        license: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Register a salted commitment: a fresh random salt is written to the salt file
        /// (`--salt-file`, default: the data path with `.salt` appended), so the
        /// registered value does not reveal which dataset this is. Keep the salt file:
        /// training and sample proofs need it.
        #[arg(long)]
        salted: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Write a proof that sample N belongs to the dataset's commitment.
    Prove {
        #[command(flatten)]
        data: DataArgs,
        /// Index of the sample (in the file's order, from 0).
        #[arg(long)]
        sample: u64,
        /// Output file.
        #[arg(long, default_value = "sample-proof.json")]
        out: PathBuf,
    },
    /// List registered datasets.
    List {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Download and verify the current model; write it as safetensors.
    Pull {
        #[command(flatten)]
        target: TargetArgs,
        /// Output file.
        #[arg(long, default_value = "model.safetensors")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Configure the job, upload seeded initial weights and open round 0.
    Start(JobStartArgs),
    /// Stop accepting submissions.
    Pause {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Accept submissions again.
    Resume {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Add or remove principals on the allow-list of a job started with `--allow-list`.
    Allow {
        #[command(flatten)]
        target: TargetArgs,
        /// Principals to admit (comma-separated or repeated).
        #[arg(long, value_delimiter = ',')]
        add: Vec<String>,
        /// Principals to remove.
        #[arg(long, value_delimiter = ',')]
        remove: Vec<String>,
    },
    /// Drop an upload in progress (it frees its staging slot for another contributor).
    Evict {
        #[command(flatten)]
        target: TargetArgs,
        submission_id: u64,
    },
}

#[derive(Args, Debug)]
pub struct JobStartArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[arg(long, value_enum, default_value = "mlp")]
    pub model: ModelArg,
    /// Shape of one sample, e.g. `784` or `1,28,28` (images are channels,height,width).
    #[arg(long, value_delimiter = ',', required = true)]
    pub input_shape: Vec<usize>,
    #[arg(long)]
    pub classes: usize,
    /// Hidden layer widths of the MLP.
    #[arg(long, value_delimiter = ',', default_value = "32")]
    pub hidden: Vec<usize>,
    /// Seed of the initial weights (and of the clients' shuffling).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 0.1)]
    pub lr: f32,
    #[arg(long, default_value_t = 32)]
    pub batch_size: u32,
    #[arg(long, default_value_t = 1)]
    pub local_epochs: u32,
    #[arg(long, value_enum, default_value = "sgd")]
    pub optimizer: OptimizerArg,
    /// Contributions needed to close a round at its deadline.
    #[arg(long, default_value_t = 2)]
    pub min_clients: u32,
    /// A round closes as soon as this many contributions are committed.
    #[arg(long, default_value_t = 10)]
    pub max_clients: u32,
    /// Round length in minutes (a round short of --min-clients is extended by as much).
    #[arg(long, default_value_t = 60)]
    pub round_minutes: u64,
    /// Round length in seconds, instead of --round-minutes (short rounds for local networks).
    #[arg(long, conflicts_with = "round_minutes")]
    pub round_seconds: Option<u64>,
    /// L2 bound of every delta.
    #[arg(long, default_value_t = 10.0)]
    pub clip_norm: f32,
    /// Cap on a contribution's weight (its sample count) [default: 100000, or 1 with
    /// --dp, where every contribution counts alike and the noise scales with the cap].
    #[arg(long)]
    pub max_weight: Option<u64>,
    #[arg(long, default_value_t = 1.0)]
    pub server_lr: f32,
    /// Encodings clients may use: f32, int8, int4, int2, topk:FRAC[,BITS] (FRAC of every
    /// block of 256 kept, BITS 2, 4 or 8 per value), comma-separated.
    #[arg(long, value_parser = parse_encoding_list, default_value = "f32,int8")]
    pub encodings: EncodingList,
    /// Keep every committed delta so anyone can recompute each round.
    #[arg(long)]
    pub retain_contributions: bool,
    #[command(flatten)]
    pub strategy: StrategyArgs,
    #[command(flatten)]
    pub privacy: PrivacyArgs,
    #[command(flatten)]
    pub secagg: SecAggArgs,
    /// A permissioned federation: only principals added with `flic job allow` may
    /// register datasets and submit.
    #[arg(long)]
    pub allow_list: bool,
    /// Seconds an upload may store no chunk before it gives way to a new one when the
    /// round's uploads are full [default: min(120, a quarter of the round)].
    #[arg(long)]
    pub upload_stall_secs: Option<u64>,
    /// Upload and download chunk size in bytes [default: 1 MiB, the IC's ingress limit
    /// with room for the envelope].
    #[arg(long)]
    pub chunk_size: Option<u32>,
}

#[derive(Args, Debug, Clone, Copy)]
pub struct OutputArgs {
    /// Print machine-readable JSON on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct IdentityArgs {
    /// Identity PEM file [default: $FLIC_HOME/identity.pem or ~/.config/flic/identity.pem].
    #[arg(long, env = "FLIC_IDENTITY")]
    pub identity: Option<PathBuf>,
}

impl IdentityArgs {
    pub fn path(&self) -> PathBuf {
        self.identity
            .clone()
            .unwrap_or_else(crate::identity::default_identity_path)
    }
}

/// Which canister to talk to, and how.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// `local` (a dfx replica), `ic` (mainnet), an http(s) URL, or `embedded`
    /// (the canister wasm in-process, state kept in --state).
    #[arg(long, env = "FLIC_NETWORK", default_value = "local")]
    pub network: String,
    /// The aggregator canister id (not needed with --network embedded).
    #[arg(long, env = "FLIC_CANISTER")]
    pub canister: Option<String>,
    /// State directory of an embedded IC (with --network embedded), as written by
    /// `flic simulate --state DIR`.
    #[arg(long, env = "FLIC_STATE")]
    pub state: Option<PathBuf>,
}

/// A local dataset file.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Data file (CSV, MNIST IDX images, CIFAR-10 batch) or image folder.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, value_enum)]
    pub format: DataFormatArg,
    /// The salt of a salted commitment (written by `flic dataset register --salted`).
    #[arg(long, value_name = "PATH")]
    pub salt_file: Option<PathBuf>,
}

impl DataArgs {
    /// The salt given by `--salt-file`, if any.
    pub fn salt(&self) -> anyhow::Result<Option<[u8; 32]>> {
        self.salt_file
            .as_deref()
            .map(crate::data::read_salt)
            .transpose()
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormatArg {
    /// A header row, `label` first, then the features.
    Csv,
    /// MNIST IDX images (the labels file is found beside it); plain or gzip.
    MnistIdx,
    /// CIFAR-10 binary batches.
    Cifar10,
    /// One folder per class of PGM/PPM images.
    ImageFolder,
}

impl From<DataFormatArg> for DataFormat {
    fn from(f: DataFormatArg) -> Self {
        match f {
            DataFormatArg::Csv => DataFormat::Csv,
            DataFormatArg::MnistIdx => DataFormat::MnistIdx,
            DataFormatArg::Cifar10 => DataFormat::Cifar10,
            DataFormatArg::ImageFolder => DataFormat::ImageFolder,
        }
    }
}

/// `--encoding`: f32, int8, int4, int2 or topk:FRAC[,BITS] (see `DeltaEncoding`'s
/// `FromStr`).
pub fn parse_encoding(s: &str) -> Result<DeltaEncoding, String> {
    s.parse()
        .map_err(|e: flic_protocol::encoding::EncodingParseError| e.0)
}

/// The encodings a job allows, comma-separated. A top-k's own `,BITS` stays with it: a
/// bare number after a `topk:` item is that item's width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodingList(pub Vec<DeltaEncoding>);

pub fn parse_encoding_list(s: &str) -> Result<EncodingList, String> {
    let mut items: Vec<String> = Vec::new();
    for part in s.split(',').map(str::trim) {
        match items.last_mut() {
            Some(last)
                if last.starts_with("topk:")
                    && !last.contains(',')
                    && part.parse::<u8>().is_ok() =>
            {
                last.push(',');
                last.push_str(part);
            }
            _ => items.push(part.to_string()),
        }
    }
    items
        .iter()
        .map(|i| parse_encoding(i))
        .collect::<Result<_, _>>()
        .map(EncodingList)
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerArg {
    Sgd,
    Adam,
}

impl From<OptimizerArg> for Optimizer {
    fn from(o: OptimizerArg) -> Self {
        match o {
            OptimizerArg::Sgd => Optimizer::Sgd,
            OptimizerArg::Adam => Optimizer::Adam,
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelArg {
    Linear,
    Mlp,
    Lenet,
    CifarCnn,
}

impl ModelArg {
    /// The zoo's architecture id.
    pub fn id(self) -> &'static str {
        match self {
            ModelArg::Linear => "linear",
            ModelArg::Mlp => "mlp",
            ModelArg::Lenet => "lenet",
            ModelArg::CifarCnn => "cifar-cnn",
        }
    }
}

/// `flic simulate` options; [`SimulateArgs::config`] turns them into the library's
/// [`SimulationConfig`] (whose defaults these mirror).
#[derive(Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Number of contributors [default: 4, or the number of client files with --partitions].
    #[arg(long)]
    pub clients: Option<usize>,
    /// Rounds to run.
    #[arg(long, default_value_t = 10)]
    pub rounds: u64,
    #[arg(long, value_enum, default_value = "mlp")]
    pub model: ModelArg,
    /// Hidden layer widths of the MLP, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "32")]
    pub hidden: Vec<usize>,
    /// Client learning rate.
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 2)]
    pub local_epochs: usize,
    #[arg(long, value_enum, default_value = "sgd")]
    pub optimizer: OptimizerArg,
    /// Delta encoding on the wire: f32, int8, int4, int2 or topk:FRAC[,BITS] (the FRAC
    /// largest of every block of 256 at BITS 2, 4 or 8 per value; clients keep the rest
    /// for their next round).
    #[arg(long, value_parser = parse_encoding, default_value = "f32")]
    pub encoding: DeltaEncoding,
    /// Seed for data, partition, initial weights, keys and the job's client seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How the data is split over clients: iid, dirichlet:ALPHA or shards:K.
    #[arg(long, default_value = "iid")]
    pub partition: String,
    /// Write the configuration and per-round results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Built-in data when neither --data nor --partitions is given.
    #[arg(long, default_value = "synthetic", value_parser = ["synthetic"])]
    pub dataset: String,
    /// Synthetic samples in all (train and test together).
    #[arg(long, default_value_t = 6000)]
    pub samples: usize,
    /// One data file, split over the clients by --partition.
    #[arg(long, conflicts_with = "partitions", requires = "format")]
    pub data: Option<PathBuf>,
    /// A folder of per-client files: client_<n>.csv, or client_<n>-images-idx3-ubyte with
    /// client_<n>-labels-idx1-ubyte.
    #[arg(long, requires = "format")]
    pub partitions: Option<PathBuf>,
    /// Format of --data, --partitions and --test.
    #[arg(long, value_enum)]
    pub format: Option<DataFormatArg>,
    /// Test data evaluated after every round [default: a held-out 20% split].
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// L2 bound each delta is clipped to.
    #[arg(long, default_value_t = 10.0)]
    pub clip_norm: f32,
    /// Server learning rate applied to the averaged delta.
    #[arg(long, default_value_t = 1.0)]
    pub server_lr: f32,
    /// Save the embedded IC's state here at the end, for `flic status --network embedded
    /// --state DIR` and the other commands.
    #[arg(long, value_name = "DIR", conflicts_with = "network")]
    pub state: Option<PathBuf>,
    /// Run the federation against a network instead of the embedded IC: a `flic devnet`
    /// or a local replica at this URL (`local` for 127.0.0.1:4943). The canister is
    /// deployed there; the same seed ends on the same model versions.
    #[arg(long, value_name = "URL")]
    pub network: Option<String>,
    /// Write every contributor's verified receipt of every round here
    /// (`round-<r>/client-<i>.json`).
    #[arg(long, value_name = "DIR")]
    pub receipts: Option<PathBuf>,
    /// Keep every contribution's delta (and the initial model) in the canister, so that
    /// `flic verify lineage` can recompute every version.
    #[arg(long)]
    pub retain_contributions: bool,
    /// Training backend: ndarray, flex (much faster for lenet and cifar-cnn), wgpu (a GPU,
    /// or lavapipe), cuda (a build with `--features cuda`), or auto (see `flic backends`).
    /// ndarray by default so that a simulation gives the same bytes on every machine.
    #[arg(long, default_value = "ndarray")]
    pub backend: BackendRequest,
    /// How many clients attack (the last K).
    #[arg(long, default_value_t = 0)]
    pub malicious: usize,
    /// What attackers do to their delta: scale:F, signflip, noise:SIGMA, or the colluding
    /// alie[:Z] ("a little is enough") and ipm[:EPS] (inner-product manipulation); then
    /// clipped to the job's bound, as the canister requires.
    #[arg(long, default_value = "signflip")]
    pub attack: String,
    /// What colluding attackers know of the round's benign deltas: omniscient (every honest
    /// delta, the literature's worst case) or coalition (only their own, trained honestly).
    #[arg(long, default_value = "omniscient")]
    pub attack_knowledge: Knowledge,
    /// Colluding attackers adapt their deviation each round from the public models: double
    /// it when the last model moved their way, halve it when the rule filtered them.
    #[arg(long)]
    pub attack_adaptive: bool,
    #[command(flatten)]
    pub strategy: StrategyArgs,
    #[command(flatten)]
    pub privacy: PrivacyArgs,
    #[command(flatten)]
    pub secagg: SecAggArgs,
}

/// How a job turns contributions into a model: `flic job start` and `flic simulate`.
#[derive(Args, Debug, Clone, Copy)]
pub struct StrategyArgs {
    /// How the canister aggregates: fedavg, median, trimmed-mean:BETA, krum:F,
    /// multi-krum:F,M, bulyan:F or centered-clip[:ITERS] (robust rules keep every delta of
    /// a round until its close).
    #[arg(long, default_value = "fedavg")]
    pub aggregation: AggregationRule,
    /// FedProx: every client adds MU/2 ||w - w_global||^2 to its loss (0 = off).
    #[arg(long, value_name = "MU")]
    pub proximal_mu: Option<f32>,
    /// How the server applies each round's update (with --server-lr): sgd, momentum:B,
    /// nesterov:B, adagrad[:TAU], adam[:B1,B2,TAU] or yogi[:B1,B2,TAU].
    #[arg(long, default_value = "sgd")]
    pub server_optimizer: ServerOptimizer,
}

/// Client-level differential privacy: `flic job start` and `flic simulate`.
#[derive(Args, Debug, Clone, Copy)]
pub struct PrivacyArgs {
    /// Differential privacy for every contributor: `central`, where the canister adds
    /// Gaussian noise to each round's sum from randomness the IC gives it (private against
    /// anyone reading the models, not against the nodes running the canister), or
    /// `distributed` (with --secure-aggregation), where each client adds discrete Gaussian
    /// noise inside its masked input, so that the nodes never see a sum without it.
    #[arg(long, value_enum, requires = "dp_epsilon")]
    pub dp: Option<DpArg>,
    /// The privacy budget: the canister starts no round that would spend more.
    #[arg(long, value_name = "EPSILON", requires = "dp")]
    pub dp_epsilon: Option<f64>,
    /// Delta of the budget (a small multiple of 1/contributors at most).
    #[arg(long, value_name = "DELTA", default_value_t = 1e-5)]
    pub dp_delta: f64,
    /// Noise standard deviation over the sensitivity [default: the least with which
    /// --dp-rounds rounds fit the budget].
    #[arg(long, value_name = "Z", requires = "dp")]
    pub dp_noise: Option<f64>,
    /// Rounds the budget must last when the noise is calibrated [default: --rounds for
    /// simulate, 100 for job start].
    #[arg(long, value_name = "N", requires = "dp", conflicts_with = "dp_noise")]
    pub dp_rounds: Option<u64>,
    /// Adaptive clipping (Andrew et al. 2021, central DP only): the clip follows the Q-th
    /// quantile of the contributors' update norms, starting from --clip-norm, which stays
    /// its ceiling. Each contributor reports whether its norm was below the clip; the count
    /// is noised and takes a tenth of each round's privacy.
    #[arg(long, value_name = "Q", requires = "dp")]
    pub dp_adaptive_clip: Option<f64>,
    /// The adaptive clip's learning rate (the geometric step per round).
    #[arg(
        long,
        value_name = "ETA",
        default_value_t = flic_protocol::privacy::adaptive_clip::DEFAULT_LEARNING_RATE,
        requires = "dp_adaptive_clip"
    )]
    pub dp_clip_lr: f64,
}

/// Secure aggregation: `flic job start` and `flic simulate`.
#[derive(Args, Debug, Clone)]
pub struct SecAggArgs {
    /// Secure aggregation (Bonawitz et al. 2017): contributors mask their deltas so that
    /// the canister (and the nodes running it) only ever hold masked inputs and their sum,
    /// which is bit for bit the plain FedAvg sum. Takes FedAvg, no robust rule, and
    /// contributions are not retained (docs/privacy.md).
    #[arg(long)]
    pub secure_aggregation: bool,
    /// Dropouts per round the job survives, of --max-clients (at most just under half).
    /// `flic simulate` also drops this many clients each round, spread over the phases.
    #[arg(
        long,
        value_name = "K",
        default_value_t = 0,
        requires = "secure_aggregation"
    )]
    pub dropouts: u32,
    /// How long each of the four phases waits for its participants.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 60,
        requires = "secure_aggregation"
    )]
    pub secagg_phase_secs: u64,
}

impl SecAggArgs {
    /// The job's secure aggregation for rounds of up to `max_clients`; `None` without
    /// --secure-aggregation.
    pub fn config(&self, max_clients: u32) -> anyhow::Result<Option<SecAggConfig>> {
        if !self.secure_aggregation {
            return Ok(None);
        }
        Ok(Some(SecAggConfig::tolerating(
            self.dropouts,
            max_clients,
            self.secagg_phase_secs.saturating_mul(1_000_000_000),
        )?))
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpArg {
    Central,
    Distributed,
}

impl From<DpArg> for DpMode {
    fn from(a: DpArg) -> Self {
        match a {
            DpArg::Central => DpMode::Central,
            DpArg::Distributed => DpMode::Distributed,
        }
    }
}

impl PrivacyArgs {
    /// The job's DP, the noise calibrated when not given (`default_rounds` without
    /// --dp-rounds). `None` without --dp.
    pub fn config(
        &self,
        default_rounds: u64,
        secure_aggregation: bool,
    ) -> anyhow::Result<Option<DpConfig>> {
        let Some(mode) = self.dp else {
            return Ok(None);
        };
        let mode = DpMode::from(mode);
        let target_epsilon = self
            .dp_epsilon
            .expect("clap requires --dp-epsilon with --dp");
        let noise_multiplier = match self.dp_noise {
            Some(z) => z,
            None => flic_protocol::privacy::noise_for_budget(
                target_epsilon,
                self.dp_delta,
                self.dp_rounds.unwrap_or(default_rounds),
            )?,
        };
        let dp = DpConfig {
            mode,
            noise_multiplier,
            target_epsilon,
            delta: self.dp_delta,
            adaptive_clip: self.dp_adaptive_clip.map(|q| AdaptiveClip {
                learning_rate: self.dp_clip_lr,
                ..AdaptiveClip::new(q, noise_multiplier)
            }),
        };
        dp.check()?;
        if dp.adaptive_clip.is_some() && secure_aggregation {
            return Err(flic_protocol::privacy::DpError::AdaptiveClipWithSecureAggregation.into());
        }
        if mode == DpMode::Distributed && !secure_aggregation {
            return Err(flic_protocol::privacy::DpError::DistributedNeedsSecureAggregation.into());
        }
        Ok(Some(dp))
    }
}

impl SimulateArgs {
    /// The library configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<SimulationConfig> {
        Ok(SimulationConfig {
            clients: self.clients,
            rounds: self.rounds,
            model: self.model.id().into(),
            hidden: self.hidden.clone(),
            lr: self.lr,
            batch_size: self.batch_size,
            local_epochs: self.local_epochs,
            optimizer: self.optimizer.into(),
            encoding: self.encoding.into(),
            seed: self.seed,
            partition: self.partition.clone(),
            samples: self.samples,
            data: self.data.clone(),
            partitions: self.partitions.clone(),
            format: self.format.map(Into::into),
            test: self.test.clone(),
            clip_norm: self.clip_norm,
            server_lr: self.server_lr,
            state: self.state.clone(),
            network: self.network.clone(),
            receipts: self.receipts.clone(),
            retain_contributions: self.retain_contributions,
            backend: self.backend.to_string(),
            malicious: self.malicious,
            attack: self.attack.clone(),
            aggregation: self.strategy.aggregation,
            server_optimizer: self.strategy.server_optimizer,
            attack_knowledge: self.attack_knowledge,
            attack_adaptive: self.attack_adaptive,
            proximal_mu: self.strategy.proximal_mu,
            dp: self
                .privacy
                .config(self.rounds, self.secagg.secure_aggregation)?,
            // Its dropout fraction is set once the federation's size is known.
            secure_aggregation: self.secagg.secure_aggregation.then(|| SecAggConfig {
                max_dropout_fraction: 0.0,
                phase_duration_ns: self.secagg.secagg_phase_secs.saturating_mul(1_000_000_000),
            }),
            dropouts: self.secagg.dropouts as usize,
        })
    }
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// The registered dataset id this data belongs to.
    #[arg(long)]
    pub dataset_id: u64,
    /// How many rounds to take part in before exiting.
    #[arg(long, default_value_t = 1)]
    pub rounds: u64,
    /// Upload at most this many bytes per second (e.g. 1e6), for a shared or metered link.
    #[arg(long, value_parser = parse_count, value_name = "BYTES_PER_SEC")]
    pub max_upload_rate: Option<u64>,
    /// Where interrupted uploads, and what top-k uploads left unsent, are kept, so a
    /// restart resumes them.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Delta encoding: f32, int8, int4, int2 or topk:FRAC[,BITS] (the job must allow it;
    /// `flic inspect` lists what it does) [default: int8 if allowed, else the most
    /// compact the job allows].
    #[arg(long, value_parser = parse_encoding)]
    pub encoding: Option<DeltaEncoding>,
    /// Compute backend for local training: auto (CUDA, then a GPU through wgpu, then flex
    /// for convolutional models and ndarray otherwise; `flic backends` shows the pick),
    /// ndarray, flex, wgpu or cuda (a build with `--features cuda`). A GPU backend that
    /// fails at start falls back to the CPU, saying why.
    #[arg(long, default_value = "auto")]
    pub backend: BackendRequest,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_lists_keep_a_top_k_width_with_its_top_k() {
        let list = |s: &str| parse_encoding_list(s).map(|l| l.0);
        assert_eq!(
            list("int8,topk:0.03,4").unwrap(),
            [
                DeltaEncoding::Int8Blocks,
                DeltaEncoding::TopK { k: 8, bits: 4 }
            ]
        );
        assert_eq!(
            list("topk:3/256,int4, f32").unwrap(),
            [
                DeltaEncoding::TopK { k: 3, bits: 2 },
                DeltaEncoding::LowBitBlocks { bits: 4 },
                DeltaEncoding::F32
            ]
        );
        // A bare number after anything but a top-k is an error, as is a second width.
        assert!(list("int8,4").is_err());
        assert!(list("topk:0.03,4,2").is_err());
        assert!(parse_encoding("int3").unwrap_err().contains("topk:FRAC"));
    }
}
