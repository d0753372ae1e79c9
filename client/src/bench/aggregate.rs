//! On-chain aggregation cost: the release wasm of the canister in `flic-embedded-ic`, a job
//! of `N` synthetic parameters, `K` contributors each uploading and committing a signed
//! delta, then the deadline timer closing the round. Every update's instruction count is
//! recorded; the new model version is checked against the protocol's native
//! [`Accumulator`], so a figure always comes from a round that aggregated correctly.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde::Serialize;

use flic_embedded_ic::{EmbeddedIc, InstallMode, SystemTask};
use flic_protocol::api::{
    ClientHyperparameters, InitArg, InitArgs, JobConfig, Optimizer, RegisterDatasetArgs,
};
use flic_protocol::fedavg::Accumulator;
use flic_protocol::hash::sha256;
use flic_protocol::rules::{self, AggregationRule, RoundContribution};
use flic_protocol::{model_version, DeltaEncoding, Hash, ModelSpec, TensorSpec};

use crate::api::{AggregatorApi, CallStats};
use crate::bench::fees::RoundCycles;
use crate::identity::Identity;
use crate::output::Progress;
use crate::participant::{prepare_submission, upload};
use crate::transport::embedded::{self, EmbeddedTransport, SharedIc};

/// Samples each synthetic contributor claims (and the job's weight cap).
const SAMPLES: u64 = 100;
const CLIP_NORM: f32 = 1.0;
const ROUND_NS: u64 = 3600 * 1_000_000_000;

/// What to measure.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AggregateCase {
    pub params: u64,
    pub contributions: u32,
    pub encoding: DeltaEncoding,
    /// Upload and download chunk size in bytes.
    pub chunk_size: u32,
    /// Also download the new model (every chunk, verified against its version hash).
    pub download: bool,
    /// The job's aggregation rule (robust rules do their work at the close).
    pub rule: AggregationRule,
}

/// Instructions of one update method over the round.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MethodCost {
    pub calls: u64,
    pub instructions: u64,
    pub max_instructions: u64,
    pub arg_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DownloadCost {
    pub queries: u64,
    pub max_query_instructions: u64,
    pub bytes: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AggregateReport {
    pub params: u64,
    pub contributions: u32,
    pub encoding: String,
    /// Which wasm build (e.g. `default`, `simd128`).
    pub build: String,
    pub wasm_sha256: String,
    pub wasm_bytes: u64,
    /// Encoded delta bytes of one contribution, and relative to f32.
    pub payload_bytes: u64,
    pub payload_ratio_to_f32: f64,
    pub begin_submission: MethodCost,
    pub put_chunk: MethodCost,
    pub commit_submission: MethodCost,
    /// Instructions of the timer messages that closed the round, all of them.
    pub close_instructions: u64,
    /// Timer messages the close took, and the largest of them.
    pub close_messages: u32,
    pub close_max_instructions: u64,
    /// `commit_submission` instructions per parameter per contribution.
    pub commit_per_param_contribution: f64,
    /// Closing instructions per parameter (paid once per round).
    pub close_per_param: f64,
    /// Commits plus close, per parameter per contribution.
    pub aggregation_per_param_contribution: f64,
    pub max_message_instructions: u64,
    pub max_message: String,
    /// Update messages of the round (ingress plus the closing timer), and ingress only.
    pub executions: u64,
    pub ingress_messages: u64,
    pub ingress_bytes: u64,
    pub instructions: u64,
    pub cycles: RoundCycles,
    pub usd: f64,
    /// The closed round's model version equals the native recomputation.
    pub verified: bool,
    pub download: Option<DownloadCost>,
    pub stable_memory_bytes: u64,
    pub heap_bytes: u64,
    pub host_seconds: f64,
}

/// `count` deterministic values with L2 norm `0.9 * CLIP_NORM` (so clipping never alters
/// them), from a xorshift stream seeded by `seed`.
pub fn synthetic_delta(count: u64, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..count)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    if norm > 0.0 {
        let f = 0.9 * CLIP_NORM as f64 / norm;
        v.iter_mut().for_each(|x| *x = (*x as f64 * f) as f32);
    }
    v
}

/// A one-tensor model spec of `params` parameters (the canister never builds the model).
pub fn synthetic_spec(params: u64) -> ModelSpec {
    ModelSpec {
        architecture: "bench".into(),
        config_json: format!(r#"{{"architecture":"bench","params":{params}}}"#),
        tensors: vec![TensorSpec {
            name: "weights".into(),
            shape: vec![params],
            offset: 0,
        }],
    }
}

fn job(case: &AggregateCase) -> JobConfig {
    let client = ClientHyperparameters {
        learning_rate: 0.1,
        batch_size: 32,
        local_epochs: 1,
        optimizer: Optimizer::Sgd,
        seed: 0,
        proximal_mu: None,
    };
    JobConfig {
        // One more than the contributors, so no commit closes the round: the deadline
        // timer does, and its cost is measured on its own.
        min_clients: case.contributions,
        max_clients: case.contributions + 1,
        round_duration_ns: ROUND_NS,
        clip_norm: CLIP_NORM,
        max_weight: SAMPLES,
        chunk_size: Some(case.chunk_size),
        aggregation: Some(case.rule),
        allowed_encodings: vec![case.encoding],
        ..JobConfig::new(synthetic_spec(case.params), client)
    }
}

fn cost(stats: &CallStats, method: &str) -> MethodCost {
    stats
        .per_method
        .get(method)
        .map(|s| MethodCost {
            calls: s.calls,
            instructions: s.instructions,
            max_instructions: s.max_instructions,
            arg_bytes: s.arg_bytes,
        })
        .unwrap_or_default()
}

/// Runs one round of `case` on `wasm` (labelled `build`).
pub fn run(
    wasm: &[u8],
    build: &str,
    case: &AggregateCase,
    progress: &mut dyn Progress,
) -> anyhow::Result<AggregateReport> {
    ensure!(case.params > 0, "--params must be at least 1");
    ensure!(case.contributions > 0, "--contributions must be at least 1");
    let started = Instant::now();
    let admin = Identity::from_seed([0xad; 32]).principal();
    let mut ic = EmbeddedIc::new();
    let canister = ic.create_canister(vec![admin]);
    ic.install_code(
        canister,
        wasm,
        candid::encode_one(InitArg::Init(InitArgs::default()))?,
        InstallMode::Install,
        admin,
    )
    .context("installing the aggregator wasm")?;
    let ic: SharedIc = embedded::share(ic);
    let job = job(case);
    let spec_id = job.model_spec.spec_id();
    let base = vec![0f32; case.params as usize];
    {
        let mut api = AggregatorApi::new(EmbeddedTransport::new(ic.clone(), canister, admin));
        api.configure_job(&job).context("configure_job")?;
        api.upload_initial_model(&base, job.chunk_size())
            .context("uploading the initial model")?;
        api.start_job().context("start_job")?;
    }

    let mut native = Accumulator::new(
        case.params as usize,
        job.limits(),
        job.limits().safe_frac_bits()?,
    )?;
    let mut stats = CallStats::default();
    let mut payload_bytes = 0;
    // A robust rule's native recomputation needs every payload.
    let mut staged: Vec<(RoundContribution, Vec<u8>)> = Vec::new();
    progress.start(
        &format!("{} x {} {}", case.contributions, case.params, case.encoding),
        case.contributions as u64,
    );
    for k in 0..case.contributions {
        let identity = Identity::from_seed(seed_bytes(k));
        let mut api = AggregatorApi::new(EmbeddedTransport::new(
            ic.clone(),
            canister,
            identity.principal(),
        ));
        let dataset_id = api.register_dataset(&RegisterDatasetArgs {
            name: format!("bench-{k}"),
            commitment: Hash::new(flic_protocol::hash::sha256(&(k as u64).to_le_bytes())),
            sample_count: SAMPLES,
            license: "CC0".into(),
            description: String::new(),
        })?;
        let info = api.round_info()?;
        let delta = synthetic_delta(case.params, k as u64 + 1);
        let prepared = prepare_submission(
            &identity,
            canister,
            &info,
            dataset_id,
            SAMPLES,
            &base,
            &delta,
            case.encoding,
            None,
        )?;
        drop(delta);
        payload_bytes = prepared.payload.len() as u64;
        native
            .add(case.encoding, &prepared.payload, SAMPLES)
            .context("native accumulator rejected the delta")?;
        if case.rule.needs_all_deltas() {
            staged.push((
                RoundContribution {
                    encoding: case.encoding,
                    weight: SAMPLES,
                    key: prepared.header.header_hash(),
                },
                prepared.payload.clone(),
            ));
        }
        // Only the upload's own calls count towards the round (not registration).
        api.stats = CallStats::default();
        upload(&mut api, &prepared, &mut |_, _| {}, &mut |_| true)?
            .context("upload stopped before commit")?;
        stats.merge(&api.stats);
        progress.set(k as u64 + 1);
    }
    progress.finish("");

    // The deadline timer closes the round; a robust close that does not fit one message
    // goes on in the following timer messages.
    let mut reader = AggregatorApi::new(EmbeddedTransport::new(ic.clone(), canister, admin));
    let (mut close_instructions, mut close_max, mut close_messages) = (0u64, 0u64, 0u32);
    let mut step = Duration::from_nanos(ROUND_NS + 1);
    loop {
        let outcomes = embedded::lock(&ic).advance_time(step);
        step = Duration::from_millis(1);
        let close = outcomes
            .into_iter()
            .find(|o| o.canister == canister && o.task == SystemTask::GlobalTimer)
            .context("the deadline timer did not run")?;
        let used = match close.result {
            Ok(out) => out.instructions,
            Err(e) => bail!("closing the round failed: {e}"),
        };
        close_instructions += used;
        close_max = close_max.max(used);
        close_messages += 1;
        if reader.round_info()?.round > 0 {
            break;
        }
        ensure!(close_messages < 10_000, "the close does not end");
    }
    let info = reader.round_info()?;
    ensure!(
        info.round == 1,
        "the round did not close (round {})",
        info.round
    );
    let next = if case.rule.needs_all_deltas() {
        let (contributions, payloads): (Vec<_>, Vec<_>) = staged.into_iter().unzip();
        let frac_bits = job.limits().safe_frac_bits()?;
        let mut a = vec![0i64; case.params as usize];
        let mut source: &[Vec<u8>] = &payloads;
        let d = rules::aggregate(
            &case.rule,
            &contributions,
            case.params,
            frac_bits,
            &mut source,
            &mut |first, v| a[first as usize..first as usize + v.len()].copy_from_slice(v),
        );
        let mut next = base.clone();
        flic_protocol::fedavg::apply_update(
            &mut next,
            &a,
            flic_protocol::fedavg::finalize_factor(d, frac_bits),
            job.server_lr,
        );
        next
    } else {
        native.apply(&base, job.server_lr).context("empty round")?
    };
    let expected = model_version(&spec_id, &next);
    let verified = info.model_version.map(|h| *h) == Some(expected);
    ensure!(
        verified,
        "the canister's new model version differs from the native recomputation"
    );

    let download = if case.download {
        let t = Instant::now();
        reader.stats = CallStats::default();
        let model = reader.download_model(&mut |_, _| {})?;
        ensure!(
            model.weights == next,
            "downloaded weights differ from the native recomputation"
        );
        let q = cost(&reader.stats, "model_chunk");
        Some(DownloadCost {
            queries: q.calls,
            max_query_instructions: q.max_instructions,
            bytes: model.weights.len() as u64 * 4,
            seconds: t.elapsed().as_secs_f64(),
        })
    } else {
        None
    };

    let begin = cost(&stats, "begin_submission");
    let put = cost(&stats, "put_chunk");
    let commit = cost(&stats, "commit_submission");
    let (max_message, max_message_instructions) = [
        ("begin_submission", begin.max_instructions),
        ("put_chunk", put.max_instructions),
        ("commit_submission", commit.max_instructions),
        ("close (timer)", close_max),
    ]
    .into_iter()
    .max_by_key(|(_, i)| *i)
    .expect("non-empty");
    let ingress_messages = begin.calls + put.calls + commit.calls;
    let ingress_bytes = begin.arg_bytes + put.arg_bytes + commit.arg_bytes;
    let instructions =
        begin.instructions + put.instructions + commit.instructions + close_instructions;
    let cycles = RoundCycles::new(
        ingress_messages + close_messages as u64,
        instructions,
        ingress_messages,
        ingress_bytes,
    );
    let pc = (case.params * case.contributions as u64) as f64;
    let (stable_memory_bytes, heap_bytes) = {
        let mut ic = embedded::lock(&ic);
        (
            ic.stable_memory_size(canister).unwrap_or(0),
            ic.heap_size(canister).unwrap_or(0),
        )
    };
    Ok(AggregateReport {
        params: case.params,
        contributions: case.contributions,
        encoding: case.encoding.name(),
        build: build.into(),
        wasm_sha256: hex::encode(sha256(wasm)),
        wasm_bytes: wasm.len() as u64,
        payload_bytes,
        payload_ratio_to_f32: payload_bytes as f64
            / DeltaEncoding::F32.encoded_len(case.params) as f64,
        begin_submission: begin,
        put_chunk: put,
        commit_submission: commit,
        close_instructions,
        close_messages,
        close_max_instructions: close_max,
        commit_per_param_contribution: commit.instructions as f64 / pc,
        close_per_param: close_instructions as f64 / case.params as f64,
        aggregation_per_param_contribution: (commit.instructions + close_instructions) as f64 / pc,
        max_message_instructions,
        max_message: max_message.into(),
        executions: ingress_messages + close_messages as u64,
        ingress_messages,
        ingress_bytes,
        instructions,
        usd: cycles.usd(),
        cycles,
        verified,
        download,
        stable_memory_bytes,
        heap_bytes,
        host_seconds: started.elapsed().as_secs_f64(),
    })
}

fn seed_bytes(k: u32) -> [u8; 32] {
    let mut s = [0x5e; 32];
    s[..4].copy_from_slice(&k.to_le_bytes());
    s
}

/// Every case of the grid (both encodings) on every build; cases with `N * K` above
/// `max_work` are skipped.
pub fn sweep(
    builds: &[(String, Vec<u8>)],
    params: &[u64],
    contributions: &[u32],
    max_work: u64,
    chunk_size: u32,
    progress: &mut dyn Progress,
) -> anyhow::Result<Vec<AggregateReport>> {
    let mut out = Vec::new();
    for &n in params {
        for &k in contributions {
            if n.saturating_mul(k as u64) > max_work {
                progress.note(&format!(
                    "skipping N={n} K={k}: N x K above --sweep-max-work"
                ));
                continue;
            }
            for encoding in [DeltaEncoding::F32, DeltaEncoding::Int8Blocks] {
                for (label, wasm) in builds {
                    let case = AggregateCase {
                        params: n,
                        contributions: k,
                        encoding,
                        chunk_size,
                        download: false,
                        rule: AggregationRule::FedAvg,
                    };
                    let r = run(wasm, label, &case, progress)?;
                    progress.note(&one_line(&r));
                    out.push(r);
                }
            }
        }
    }
    Ok(out)
}

pub fn one_line(r: &AggregateReport) -> String {
    format!(
        "{} N={} K={} {}: commit {:.2} instr/param/contribution, close {:.2} instr/param, largest message {} ({}), {:.4} USD/round, {:.1} s",
        r.build,
        r.params,
        r.contributions,
        r.encoding,
        r.commit_per_param_contribution,
        r.close_per_param,
        super::doc::thousands(r.max_message_instructions),
        r.max_message,
        r.usd,
        r.host_seconds
    )
}

use super::doc::{short_count, table, thousands};

/// The aggregation-cost table.
pub fn render_aggregate(reports: &[AggregateReport]) -> String {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                short_count(r.params),
                r.contributions.to_string(),
                r.encoding.clone(),
                r.build.clone(),
                format!("{:.2}", r.commit_per_param_contribution),
                format!("{:.2}", r.close_per_param),
                format!("{:.2}", r.aggregation_per_param_contribution),
                format!(
                    "{} ({}, {:.2}% of 40 B)",
                    thousands(r.max_message_instructions),
                    r.max_message,
                    r.max_message_instructions as f64 / 4e10 * 100.0
                ),
            ]
        })
        .collect();
    let mut builds: Vec<String> = reports
        .iter()
        .map(|r| {
            format!(
                "`{}`: {} bytes, sha256 `{}`",
                r.build,
                thousands(r.wasm_bytes),
                &r.wasm_sha256[..16]
            )
        })
        .collect();
    builds.sort();
    builds.dedup();
    format!(
        "Instructions counted by `flic-embedded-ic` (wasmtime fuel plus IC System API fees) on \
         the canister's release wasm. `commit` is `commit_submission` (validate the staged delta, \
         then add it into the `i64` accumulator in stable memory) per parameter per contribution; \
         `close` is the deadline timer that applies the accumulator to the weights and hashes the \
         new model, per parameter (paid once per round); `commit + close` is both per \
         parameter-contribution. Every round's new model version was checked against the \
         protocol's native accumulator.\n\n{}\nBuilds: {}.",
        table(
            &[
                "N params",
                "K",
                "encoding",
                "build",
                "commit / (param·contribution)",
                "close / param",
                "commit + close / (param·contribution)",
                "largest single message (instructions)",
            ],
            &rows,
        ),
        builds.join("; ")
    )
}

/// Upload bytes per contribution, per encoding, relative to f32.
pub fn render_bytes(reports: &[AggregateReport]) -> String {
    let mut seen = std::collections::BTreeSet::new();
    let mut rows = Vec::new();
    for r in reports {
        if !seen.insert((r.params, r.encoding.clone())) {
            continue;
        }
        let chunks = r.put_chunk.calls / r.contributions as u64;
        rows.push(vec![
            short_count(r.params),
            r.encoding.clone(),
            thousands(r.payload_bytes),
            format!("{:.4}", r.payload_ratio_to_f32),
            chunks.to_string(),
            thousands(r.ingress_bytes / r.contributions as u64),
        ]);
    }
    format!(
        "Encoded delta bytes of one contribution (`f32`: 4 bytes per parameter; `int8`: one byte \
         per parameter plus a 4-byte `f32` scale per block of 256, so `1 + 4/256 = 1.0156` bytes), \
         and all ingress argument bytes of the contribution (Candid-encoded `begin_submission` \
         with its chunk hashes, every `put_chunk`, `commit_submission`).\n\n{}",
        table(
            &[
                "N params",
                "encoding",
                "delta bytes",
                "relative to f32",
                "1 MiB chunks",
                "ingress bytes per contribution",
            ],
            &rows,
        )
    )
}

/// Cycles and USD per round, from the measured instructions and ingress bytes.
pub fn render_cost(reports: &[AggregateReport], build: &str) -> String {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .filter(|r| r.build == build)
        .map(|r| {
            vec![
                short_count(r.params),
                r.contributions.to_string(),
                r.encoding.clone(),
                r.ingress_messages.to_string(),
                format!("{:.3} B", r.cycles.ingress as f64 / 1e9),
                format!("{:.3} B", r.cycles.execution as f64 / 1e9),
                format!(
                    "{:.1}%",
                    r.cycles.ingress as f64 / r.cycles.total() as f64 * 100.0
                ),
                format!("{:.3} B", r.cycles.total() as f64 / 1e9),
                format!("${:.6}", r.usd),
                format!("${:.6}", r.usd / r.contributions as f64),
            ]
        })
        .collect();
    format!(
        "Cycles of one round on a 13-node subnet (build `{build}`): every ingress message pays \
         1.2 M cycles plus 2,000 per byte; every update execution (each ingress update and the \
         closing timer) pays 5 M cycles plus 1 per instruction; 1 T cycles = 1 XDR ≈ 1.35 USD. \
         Queries (downloads) are free. Instructions are the embedded IC's counts, which \
         undercount the IC's weighted instructions (see below), so the execution share is a lower \
         bound; the ingress share is exact for these argument sizes.\n\n{}",
        table(
            &[
                "N params",
                "K",
                "encoding",
                "ingress messages",
                "ingress cycles",
                "execution cycles",
                "ingress share",
                "total cycles",
                "USD per round",
                "USD per contribution",
            ],
            &rows,
        )
    )
}
