//! A deployed aggregator with a controller and contributors holding real Ed25519 keys,
//! over any [`IcEnv`]. Helpers return the canister's typed errors so scenarios can assert
//! the exact rejection.

use candid::utils::{ArgumentDecoder, ArgumentEncoder};
use candid::Principal;
use ed25519_dalek::SigningKey;
use serde_bytes::ByteBuf;

use flic_protocol::api::{
    AdminError, BeginSubmissionArgs, CertifiedState, CommitReceipt, DatasetError, DatasetPage,
    InitArg, InitArgs, JobConfig, ModelChunk, PageArgs, PutChunkArgs, QueryError,
    RegisterDatasetArgs, RoundInfo, RoundRecord, SubmissionStatus, SubmitError,
};
use flic_protocol::fedavg::Accumulator;
use flic_protocol::{model_version, DeltaEncoding, Hash, ModelSpec};

use crate::env::{CallFailure, IcEnv};

pub const PARAMS: u64 = 100;
/// Small chunks so every delta spans several of them.
pub const CHUNK_SIZE: u32 = 128;
pub const SAMPLES: u64 = 50;
pub const ROUND_NS: u64 = 600 * 1_000_000_000;

/// The fixture model: a linear layer of 9 inputs and 10 classes (`PARAMS` parameters).
pub fn spec() -> ModelSpec {
    flic_test_fixtures::linear_spec(9, 10)
}

pub fn initial_weights() -> Vec<f32> {
    (0..PARAMS)
        .map(|i| ((i % 11) as f32 - 5.0) * 0.01)
        .collect()
}

/// A deterministic, small delta for `client` in `round`.
pub fn delta(client: usize, round: u64) -> Vec<f32> {
    (0..PARAMS as usize)
        .map(|i| (((i * 7 + client * 13 + round as usize * 5) % 17) as f32 - 8.0) / 400.0)
        .collect()
}

/// Contributor `i`'s dataset commitment (a commitment is registered once).
pub fn commitment(i: usize) -> Hash {
    Hash::new(flic_protocol::hash::sha256(&(i as u64).to_le_bytes()))
}

pub fn job() -> JobConfig {
    JobConfig {
        round_duration_ns: ROUND_NS,
        max_weight: 1000,
        ..flic_test_fixtures::job(spec(), CHUNK_SIZE)
    }
}

pub struct Contributor {
    pub key: SigningKey,
    pub principal: Principal,
    pub dataset_id: u64,
}

/// A delta ready to upload.
#[derive(Clone)]
pub struct Upload {
    pub args: BeginSubmissionArgs,
    pub payload: Vec<u8>,
}

impl Upload {
    pub fn chunk(&self, index: u32) -> Vec<u8> {
        assert!(index < self.chunk_count(), "chunk index");
        self.payload
            .chunks(CHUNK_SIZE as usize)
            .nth(index as usize)
            .expect("chunk index")
            .to_vec()
    }
    pub fn chunk_count(&self) -> u32 {
        self.args.header.chunk_count
    }
}

/// Everything a client can observe; two equal snapshots mean no visible state changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub round: RoundInfo,
    pub history: Vec<RoundRecord>,
    pub datasets: DatasetPage,
    pub certified: CertifiedState,
    pub submissions: Vec<Result<SubmissionStatus, QueryError>>,
}

pub struct Fixture<E: IcEnv> {
    pub env: E,
    pub wasm: Vec<u8>,
    pub canister: Principal,
    pub admin: Principal,
    pub job: JobConfig,
    pub job_id: u64,
    pub contributors: Vec<Contributor>,
    /// `(method, instructions)` of every update, where the host counts them.
    pub instructions: Vec<(String, Option<u64>)>,
}

impl<E: IcEnv> Fixture<E> {
    /// Installs the aggregator, configures `job`, uploads the initial model, starts the job
    /// and registers one dataset for each of `contributors` keys.
    pub fn new(mut env: E, contributors: usize, job: JobConfig) -> Self {
        let wasm = flic_aggregator_wasm::AGGREGATOR_WASM.to_vec();
        let admin = flic_test_fixtures::key([0xad; 32]).principal;
        let init = candid::encode_one(InitArg::Init(InitArgs::default())).unwrap();
        let canister = env.install(&wasm, init, admin);
        let mut f = Fixture {
            env,
            wasm,
            canister,
            admin,
            job: job.clone(),
            job_id: 0,
            contributors: Vec::new(),
            instructions: Vec::new(),
        };
        f.job_id = f
            .admin_call::<_, u64>("configure_job", (&job,))
            .expect("configure_job");
        let bytes = flic_protocol::model::weights_to_le_bytes(&initial_weights());
        for (i, chunk) in bytes.chunks(job.chunk_size() as usize).enumerate() {
            f.admin_call::<_, u32>(
                "upload_model_chunk",
                (i as u32, ByteBuf::from(chunk.to_vec())),
            )
            .expect("upload_model_chunk");
        }
        f.admin_call::<_, ()>("start_job", ()).expect("start_job");
        for i in 0..contributors {
            f.add_contributor(i);
        }
        f
    }

    /// Installs a second aggregator in the same host with the same job, and registers
    /// contributor `c`'s dataset there; returns the canister id.
    pub fn another_canister(&mut self, c: usize) -> Principal {
        let init = candid::encode_one(InitArg::Init(InitArgs::default())).unwrap();
        let wasm = self.wasm.clone();
        let (first, admin) = (self.canister, self.admin);
        self.canister = self.env.install(&wasm, init, admin);
        let job = self.job.clone();
        self.admin_call::<_, u64>("configure_job", (&job,))
            .expect("configure_job");
        let bytes = flic_protocol::model::weights_to_le_bytes(&initial_weights());
        for (i, chunk) in bytes.chunks(job.chunk_size() as usize).enumerate() {
            self.admin_call::<_, u32>(
                "upload_model_chunk",
                (i as u32, ByteBuf::from(chunk.to_vec())),
            )
            .expect("upload_model_chunk");
        }
        self.admin_call::<_, ()>("start_job", ())
            .expect("start_job");
        let args = RegisterDatasetArgs {
            name: format!("dataset-{c}"),
            commitment: commitment(c),
            sample_count: SAMPLES,
            license: "CC0".into(),
            description: String::new(),
        };
        let who = self.contributors[c].principal;
        let id: Result<u64, DatasetError> = self
            .update1(who, "register_dataset", (args,))
            .expect("reached");
        id.expect("register_dataset");
        let second = self.canister;
        self.canister = first;
        second
    }

    /// Installs a second aggregator in the same host, with no job configured.
    pub fn another_canister_empty(&mut self) -> Principal {
        let init = candid::encode_one(InitArg::Init(InitArgs::default())).unwrap();
        let wasm = self.wasm.clone();
        self.env.install(&wasm, init, self.admin)
    }

    /// Runs `f` with calls going to `canister` instead of the fixture's own.
    pub fn on_canister<R>(&mut self, canister: Principal, f: impl FnOnce(&mut Self) -> R) -> R {
        let own = std::mem::replace(&mut self.canister, canister);
        let r = f(self);
        self.canister = own;
        r
    }

    pub fn add_contributor(&mut self, i: usize) -> usize {
        let flic_test_fixtures::Key {
            signing: key,
            principal,
        } = flic_test_fixtures::key_for(i as u64);
        let args = RegisterDatasetArgs {
            name: format!("dataset-{i}"),
            commitment: commitment(i),
            sample_count: SAMPLES,
            license: "CC0".into(),
            description: String::new(),
        };
        let id: Result<u64, DatasetError> = self
            .update1(principal, "register_dataset", (args,))
            .expect("register_dataset call");
        self.contributors.push(Contributor {
            key,
            principal,
            dataset_id: id.expect("register_dataset"),
        });
        self.contributors.len() - 1
    }

    pub fn update<A: ArgumentEncoder, R: for<'a> ArgumentDecoder<'a>>(
        &mut self,
        sender: Principal,
        method: &str,
        args: A,
    ) -> Result<R, CallFailure> {
        let ok = self.env.update(
            self.canister,
            sender,
            method,
            candid::encode_args(args).unwrap(),
        )?;
        self.instructions
            .push((method.to_string(), ok.instructions));
        Ok(candid::decode_args(&ok.reply)
            .unwrap_or_else(|e| panic!("decoding the reply of {method}: {e}")))
    }

    /// An update returning `Result<T, E>` in Candid, unwrapped one level.
    pub fn update1<A: ArgumentEncoder, T: candid::CandidType + for<'a> serde::Deserialize<'a>>(
        &mut self,
        sender: Principal,
        method: &str,
        args: A,
    ) -> Result<T, CallFailure> {
        self.update::<A, (T,)>(sender, method, args).map(|(t,)| t)
    }

    pub fn query1<A: ArgumentEncoder, T: candid::CandidType + for<'a> serde::Deserialize<'a>>(
        &mut self,
        method: &str,
        args: A,
    ) -> T {
        let ok = self
            .env
            .query(
                self.canister,
                Principal::anonymous(),
                method,
                candid::encode_args(args).unwrap(),
            )
            .unwrap_or_else(|e| panic!("query {method}: {e:?}"));
        let (t,): (T,) = candid::decode_args(&ok.reply)
            .unwrap_or_else(|e| panic!("decoding the reply of {method}: {e}"));
        t
    }

    pub fn admin_call<
        A: ArgumentEncoder,
        T: candid::CandidType + for<'a> serde::Deserialize<'a>,
    >(
        &mut self,
        method: &str,
        args: A,
    ) -> Result<T, AdminError> {
        let admin = self.admin;
        self.update1::<A, Result<T, AdminError>>(admin, method, args)
            .expect("admin call reached the canister")
    }

    pub fn round_info(&mut self) -> RoundInfo {
        self.query1("round_info", ())
    }

    /// The current model, fetched chunk by chunk, and its announced version.
    pub fn model(&mut self) -> (Hash, Vec<f32>) {
        let mut bytes = Vec::new();
        let mut index = 0;
        let version = loop {
            let chunk: Result<ModelChunk, QueryError> = self.query1("model_chunk", (index,));
            let chunk = chunk.expect("model_chunk");
            bytes.extend_from_slice(&chunk.bytes);
            index += 1;
            if index >= chunk.chunk_count {
                break chunk.version;
            }
        };
        (
            version,
            flic_protocol::model::weights_from_le_bytes(&bytes).unwrap(),
        )
    }

    /// Encodes, chunks and signs `delta` as contributor `c` for the open round.
    pub fn prepare(&mut self, c: usize, delta: &[f32], enc: DeltaEncoding) -> Upload {
        let info = self.round_info();
        self.prepare_for(
            c,
            delta,
            enc,
            info.round,
            info.model_version.expect("model version"),
        )
    }

    pub fn prepare_for(
        &self,
        c: usize,
        delta: &[f32],
        enc: DeltaEncoding,
        round: u64,
        base: Hash,
    ) -> Upload {
        let who = &self.contributors[c];
        let target = flic_test_fixtures::UploadTarget {
            canister_id: self.canister,
            job_id: self.job_id,
            round,
            base_model_version: base,
            dataset_id: who.dataset_id,
            sample_count: SAMPLES,
        };
        let up = flic_test_fixtures::Upload::new(&target, enc, delta, CHUNK_SIZE);
        Upload {
            args: up.sign(&who.key),
            payload: up.payload,
        }
    }

    pub fn begin(&mut self, c: usize, up: &Upload) -> Result<SubmissionStatus, SubmitError> {
        let who = self.contributors[c].principal;
        self.begin_as(who, up)
    }

    pub fn begin_as(
        &mut self,
        sender: Principal,
        up: &Upload,
    ) -> Result<SubmissionStatus, SubmitError> {
        self.update1(sender, "begin_submission", (&up.args,))
            .expect("begin_submission reached the canister")
    }

    pub fn put(
        &mut self,
        c: usize,
        id: u64,
        index: u32,
        bytes: Vec<u8>,
    ) -> Result<u32, SubmitError> {
        let who = self.contributors[c].principal;
        self.update1(
            who,
            "put_chunk",
            (PutChunkArgs {
                submission_id: id,
                index,
                bytes: ByteBuf::from(bytes),
            },),
        )
        .expect("put_chunk reached the canister")
    }

    pub fn commit(&mut self, c: usize, id: u64) -> Result<CommitReceipt, SubmitError> {
        let who = self.contributors[c].principal;
        self.update1(who, "commit_submission", (id,))
            .expect("commit_submission reached the canister")
    }

    /// Begins, uploads every chunk and commits.
    pub fn submit(
        &mut self,
        c: usize,
        delta: &[f32],
        enc: DeltaEncoding,
    ) -> Result<CommitReceipt, SubmitError> {
        let up = self.prepare(c, delta, enc);
        let status = self.begin(c, &up)?;
        for i in 0..up.chunk_count() {
            self.put(c, status.submission_id, i, up.chunk(i))?;
        }
        self.commit(c, status.submission_id)
    }

    pub fn snapshot(&mut self) -> Snapshot {
        let round = self.round_info();
        let mut history = Vec::new();
        let mut start = 0;
        loop {
            let page: flic_protocol::api::RoundPage =
                self.query1("round_history", (PageArgs { start, limit: 100 },));
            history.extend(page.items);
            match page.next {
                Some(n) => start = n,
                None => break,
            }
        }
        let datasets = self.query1(
            "list_datasets",
            (PageArgs {
                start: 0,
                limit: 100,
            },),
        );
        let certified = self.query1("certified_state", ());
        let submissions = (0..8u64)
            .map(|id| self.query1("submission_status", (id,)))
            .collect();
        Snapshot {
            round,
            history,
            datasets,
            certified,
            submissions,
        }
    }

    /// What the next model version must be after `uploads` (in any order) are aggregated
    /// onto `weights`: recomputed natively with the protocol's accumulator.
    pub fn expected_next(
        &self,
        weights: &[f32],
        uploads: &[&Upload],
        frac_bits: u32,
    ) -> (Hash, Vec<f32>) {
        let mut acc =
            Accumulator::new(PARAMS as usize, self.job.limits(), frac_bits).expect("limits");
        for up in uploads {
            acc.add(
                up.args.header.encoding,
                &up.payload,
                up.args.header.sample_count,
            )
            .expect("valid contribution");
        }
        let next = acc
            .apply(weights, self.job.server_lr)
            .expect("non-empty round");
        (
            Hash::new(model_version(&self.job.model_spec.spec_id(), &next)),
            next,
        )
    }
}
