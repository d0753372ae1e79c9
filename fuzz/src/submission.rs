//! `submission_path`: sequences of operations against the pure canister core
//! (`flic_aggregator::state::State`) on a fresh `VectorMemory`, with a configured, started
//! job and registered contributors holding real Ed25519 keys from fixed seeds.
//!
//! Input layout: byte 0 is the job shape (bit 0 `retain_contributions`, bits 1-2
//! `max_clients - 1`, bit 3 `min_clients = max_clients` instead of 1, bit 4 central
//! differential privacy, whose noise seed an odd `Op::Advance` delivers); then operations, each
//! an opcode byte and a fixed number of argument bytes (see [`Op::parse`]), at most
//! [`MAX_OPS`].
//!
//! After every operation:
//! - a rejected call (an `Err`) left the whole stable memory and the heap accumulator
//!   byte-identical;
//! - `State::check_invariants` holds (indexes, counters, committed <= max_clients, ...);
//! - the round number never decreases and moves by at most one per operation, and the
//!   history has one record per closed round;
//! - a header or chunk the harness corrupted is rejected; a commit succeeds exactly when the
//!   caller's upload is complete and its delta validates;
//! - when a round closes, the new model version equals the one a verifier recomputes with
//!   `fedavg::Accumulator` from the committed deltas (a reference model of the round); with
//!   DP, a round closes only with its noise seed, its record certifies the epsilon the
//!   accountant gives, and the job pauses exactly when the budget has no room for a round;
//! - an upgrade (`save_for_upgrade`, then `State::load` on the same memory) restores the
//!   accumulator exactly, loading writes nothing, and no query changes.

use candid::Principal;
use ed25519_dalek::SigningKey;
use flic_aggregator::state::{CallContext, State};
use flic_protocol::api::{
    BeginSubmissionArgs, JobConfig, PutChunkArgs,
    RegisterDatasetArgs, SubmitError,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use flic_protocol::chunking::{chunk_count, chunk_hashes};
use flic_protocol::encoding::{
    clip_l2, encode, encode_within, validate, DeltaEncoding, INT8_BLOCK_BYTES,
};
use flic_protocol::fedavg::Accumulator;
use flic_protocol::merkle;
use flic_protocol::privacy::{DpConfig, DpMode};
use flic_protocol::model::{model_version, weights_to_le_bytes, ModelSpec};
use flic_protocol::submission::signing_key_from_seed;
use flic_protocol::{Hash, SubmissionHeader};
use ic_stable_structures::DefaultMemoryImpl;
use serde_bytes::ByteBuf;

use crate::memory_image::MemImage;
use crate::Cursor;

pub const PARAMS: u64 = 300;
pub const CHUNK: u32 = 256;
pub const DURATION: u64 = 60_000_000_000;
pub const CLIP: f32 = 1.0;
pub const MAX_WEIGHT: u64 = 500;
pub const REGISTERED_SAMPLES: u64 = 1000;
/// Contributor keys (seeds `[1; 32]` ..); the first three register a dataset at setup.
pub const CLIENTS: usize = 4;
pub const MAX_OPS: usize = 48;

fn spec() -> ModelSpec {
    flic_test_fixtures::linear_spec(29, 10)
}

pub fn config(shape: u8) -> JobConfig {
    let max_clients = 1 + ((shape >> 1) & 3) as u32;
    JobConfig {
        min_clients: if shape & 8 != 0 { max_clients } else { 1 },
        max_clients,
        round_duration_ns: DURATION,
        clip_norm: CLIP,
        max_weight: MAX_WEIGHT,
        retain_contributions: shape & 1 != 0,
        allowed_encodings: ENCODINGS.to_vec(),
        // A budget of a few rounds, so that sequences reach the pause.
        dp: (shape & 0x10 != 0).then_some(DpConfig {
            mode: DpMode::Central,
            noise_multiplier: 1.0,
            target_epsilon: 11.0,
            delta: 1e-5,
            adaptive_clip: None,
        }),
        ..flic_test_fixtures::job(spec(), CHUNK)
    }
}

/// The encodings the harness's jobs allow; an op's `enc` picks one.
pub const ENCODINGS: [DeltaEncoding; 4] = [
    DeltaEncoding::F32,
    DeltaEncoding::Int8Blocks,
    DeltaEncoding::TopK { k: 8, bits: 4 },
    DeltaEncoding::LowBitBlocks { bits: 4 },
];

fn initial_weights() -> Vec<f32> {
    flic_test_fixtures::smooth_weights(PARAMS)
}

/// Deterministic delta clipped to the job's bound; `seed` also picks its size.
pub fn delta(seed: u8) -> Vec<f32> {
    let mut x = (seed as u64).wrapping_mul(0x9e3779b97f4a7c15) | 1;
    let size = 0.01 * (1 + seed % 40) as f32;
    let mut d: Vec<f32> = (0..PARAMS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * size
        })
        .collect();
    clip_l2(&mut d, CLIP);
    d
}

/// One operation. Arguments are raw bytes; their meaning is in [`Harness::apply`].
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// `who`, encoding (bit 0), delta seed, mutation, sample count.
    Begin {
        who: u8,
        enc: u8,
        seed: u8,
        mutation: u8,
        samples: u16,
    },
    /// `who`, chunk index, mutation.
    Put { who: u8, index: u8, mutation: u8 },
    /// Every chunk of `who`'s upload, valid, in reverse order.
    PutAll { who: u8 },
    /// `who`, which submission (0 own, 1 another's, else an unknown id).
    Commit { who: u8, which: u8 },
    /// Advance time by `amount * DURATION / 16` and fire the deadline timer.
    Advance { amount: u8 },
    /// `who`, 0 register / 1 revoke own / 2 revoke another's, sample count.
    Dataset { who: u8, action: u8, samples: u16 },
    /// 0 pause, 1 resume, 2 reconfigure, 3 start; bit 2 set: as a non-controller.
    Admin { action: u8 },
    /// `State::load` on the same memory (an upgrade).
    Upgrade,
    /// Re-send `who`'s last committed `begin_submission` arguments.
    Replay { who: u8 },
}

pub const OPCODES: u8 = 9;

impl Op {
    pub fn parse(c: &mut Cursor) -> Op {
        match c.u8() % OPCODES {
            0 => Op::Begin {
                who: c.u8(),
                enc: c.u8(),
                seed: c.u8(),
                mutation: c.u8(),
                samples: c.u16(),
            },
            1 => Op::Put {
                who: c.u8(),
                index: c.u8(),
                mutation: c.u8(),
            },
            2 => Op::PutAll { who: c.u8() },
            3 => Op::Commit {
                who: c.u8(),
                which: c.u8(),
            },
            4 => Op::Advance { amount: c.u8() },
            5 => Op::Dataset {
                who: c.u8(),
                action: c.u8(),
                samples: c.u16(),
            },
            6 => Op::Admin { action: c.u8() },
            7 => Op::Upgrade,
            _ => Op::Replay { who: c.u8() },
        }
    }

    /// The bytes [`Op::parse`] reads back as `self` (for seeds).
    pub fn encode(&self, out: &mut crate::cursor::Writer) {
        match *self {
            Op::Begin {
                who,
                enc,
                seed,
                mutation,
                samples,
            } => {
                out.u8(0).u8(who).u8(enc).u8(seed).u8(mutation).u16(samples);
            }
            Op::Put {
                who,
                index,
                mutation,
            } => {
                out.u8(1).u8(who).u8(index).u8(mutation);
            }
            Op::PutAll { who } => {
                out.u8(2).u8(who);
            }
            Op::Commit { who, which } => {
                out.u8(3).u8(who).u8(which);
            }
            Op::Advance { amount } => {
                out.u8(4).u8(amount);
            }
            Op::Dataset {
                who,
                action,
                samples,
            } => {
                out.u8(5).u8(who).u8(action).u16(samples);
            }
            Op::Admin { action } => {
                out.u8(6).u8(action);
            }
            Op::Upgrade => {
                out.u8(7);
            }
            Op::Replay { who } => {
                out.u8(8).u8(who);
            }
        }
    }
}

/// Header and payload mutations of `Op::Begin` (mutation byte modulo their count).
/// Payload mutations keep the header honest: begin must accept, commit must reject.
pub const BEGIN_MUTATIONS: u8 = 24;
fn begin_mutation_is_payload(m: u8) -> bool {
    matches!(m, 1..=4)
}

struct Upload {
    id: u64,
    payload: Vec<u8>,
    payload_valid: bool,
    encoding: DeltaEncoding,
    samples: u64,
    args: BeginSubmissionArgs,
}

struct Contributor {
    key: SigningKey,
    principal: Principal,
    /// Datasets this contributor registered (and whether revoked).
    datasets: Vec<(u64, u64, bool)>,
    upload: Option<Upload>,
    last_committed: Option<BeginSubmissionArgs>,
}

/// What the harness expects the round to compute.
struct Reference {
    weights: Vec<f32>,
    acc: Accumulator,
}

pub struct Harness {
    mem: DefaultMemoryImpl,
    state: State,
    now: u64,
    canister: Principal,
    controller: Principal,
    config: JobConfig,
    clients: Vec<Contributor>,
    reference: Reference,
    spec_id: [u8; 32],
}

fn fresh_reference(config: &JobConfig, weights: Vec<f32>) -> Reference {
    let limits = config.limits();
    Reference {
        weights,
        acc: Accumulator::new(PARAMS as usize, limits, limits.safe_frac_bits().unwrap()).unwrap(),
    }
}

/// The state right after setup, per job shape.
struct Prepared {
    image: MemImage,
    datasets: Vec<u64>,
}

thread_local! {
    static PREPARED: RefCell<HashMap<u8, Rc<Prepared>>> = RefCell::new(HashMap::new());
    /// One memory reused by every input (allocating ~100 MiB per input is slow).
    static WORKING: DefaultMemoryImpl = DefaultMemoryImpl::default();
}

const START_NS: u64 = 1_700_000_000_000_000_000;
const CANISTER: [u8; 10] = [0, 0, 0, 0, 0, 0, 0, 1, 1, 1];
const CONTROLLER: [u8; 10] = [0xc0; 10];

fn key(seed: u8) -> (SigningKey, Principal) {
    let k = flic_test_fixtures::key([seed; 32]);
    (k.signing, k.principal)
}

/// Configures the job, uploads the model, starts it, and registers one dataset for each
/// of the first `CLIENTS - 1` contributors, on a fresh memory.
fn prepare(shape: u8) -> Prepared {
    let (mem, datasets) = prepare_memory(shape);
    Prepared {
        image: MemImage::of(&mem),
        datasets,
    }
}

fn prepare_memory(shape: u8) -> (DefaultMemoryImpl, Vec<u64>) {
    let mem = DefaultMemoryImpl::default();
    let mut state = State::load(mem.clone());
    let ctx = |caller: Principal| CallContext {
        caller,
        now: START_NS,
        canister_id: Principal::from_slice(&CANISTER),
        is_controller: caller == Principal::from_slice(&CONTROLLER),
    };
    let admin = ctx(Principal::from_slice(&CONTROLLER));
    state.configure_job(&admin, config(shape)).unwrap();
    let bytes = weights_to_le_bytes(&initial_weights());
    for (i, chunk) in bytes.chunks(CHUNK as usize).enumerate() {
        state.upload_model_chunk(&admin, i as u32, chunk).unwrap();
    }
    state.start_job(&admin).unwrap();
    let datasets = (1..CLIENTS as u8)
        .map(|seed| {
            state
                .register_dataset(
                    &ctx(key(seed).1),
                    dataset_args(REGISTERED_SAMPLES, key(seed).1, 0),
                )
                .unwrap()
        })
        .collect();
    state.check_invariants().unwrap();
    (mem, datasets)
}

impl Harness {
    pub fn new(shape: u8) -> Self {
        let shape = shape & 0x1f;
        let prepared = PREPARED.with_borrow_mut(|p| {
            p.entry(shape)
                .or_insert_with(|| Rc::new(prepare(shape)))
                .clone()
        });
        let mem = WORKING.with(|m| m.clone());
        prepared.image.restore(&mem);
        let state = State::load(mem.clone());
        let config = config(shape);
        let clients = (1..=CLIENTS as u8)
            .map(|seed| {
                let (key, principal) = key(seed);
                let datasets = prepared
                    .datasets
                    .get(seed as usize - 1)
                    .map(|&id| vec![(id, REGISTERED_SAMPLES, false)])
                    .unwrap_or_default();
                Contributor {
                    key,
                    principal,
                    datasets,
                    upload: None,
                    last_committed: None,
                }
            })
            .collect();
        Self {
            mem,
            state,
            now: START_NS,
            canister: Principal::from_slice(&CANISTER),
            controller: Principal::from_slice(&CONTROLLER),
            reference: fresh_reference(&config, initial_weights()),
            spec_id: spec().spec_id(),
            config,
            clients,
        }
    }

    /// For tests of the harness: every byte of the prepared memory built from scratch.
    pub fn fresh_bytes(shape: u8) -> Vec<u8> {
        prepare_memory(shape & 0x1f).0.borrow().clone()
    }

    /// For tests of the harness: every byte of this harness's memory.
    pub fn bytes(&self) -> Vec<u8> {
        self.mem.borrow().clone()
    }

    fn ctx(&self, caller: Principal) -> CallContext {
        CallContext {
            caller,
            now: self.now,
            canister_id: self.canister,
            is_controller: caller == self.controller,
        }
    }

    /// Every byte of stable memory (see [`MemImage`]).
    fn snapshot(&self) -> MemImage {
        MemImage::of(&self.mem)
    }

    /// Callers: the contributors, then the anonymous principal, then the controller.
    fn caller(&self, who: u8) -> (Option<usize>, Principal) {
        match who as usize % (CLIENTS + 2) {
            i if i < CLIENTS => (Some(i), self.clients[i].principal),
            i if i == CLIENTS => (None, Principal::anonymous()),
            _ => (None, self.controller),
        }
    }

    /// The open round and the number of contributions committed so far.
    pub fn progress(&self) -> (u64, u64) {
        (
            self.state.open_round().round,
            self.state.allocators().next_contribution,
        )
    }

    fn round(&self) -> u64 {
        self.state.open_round().round
    }

    /// Runs `f`; if it fails, asserts that stable memory is unchanged.
    fn guarded<T, E: std::fmt::Debug>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut State, &CallContext) -> Result<T, E>,
        caller: Principal,
    ) -> Result<T, E> {
        let before = self.snapshot();
        let acc_before = self.state.accumulator().to_vec();
        let ctx = self.ctx(caller);
        let out = f(&mut self.state, &ctx);
        if let Err(e) = &out {
            assert!(
                before == self.snapshot(),
                "{what} was rejected ({e:?}) but changed stable memory"
            );
            assert!(
                acc_before == self.state.accumulator(),
                "{what} was rejected ({e:?}) but changed the accumulator"
            );
            let message = format!("{e:?}");
            assert!(!message.is_empty());
        }
        out
    }

    pub fn apply(&mut self, op: Op) {
        let round_before = self.round();
        let committed_before = self.state.open_round().committed;
        match op {
            Op::Begin {
                who,
                enc,
                seed,
                mutation,
                samples,
            } => self.begin(who, enc, seed, mutation % BEGIN_MUTATIONS, samples),
            Op::Put {
                who,
                index,
                mutation,
            } => self.put(who, index, mutation),
            Op::PutAll { who } => {
                let (Some(i), _) = self.caller(who) else {
                    return;
                };
                let Some(u) = &self.clients[i].upload else {
                    return;
                };
                let n = u.args.chunk_hashes.len() as u8;
                for index in (0..n).rev() {
                    self.put(who, index, 0);
                    self.check_after(round_before, committed_before);
                }
            }
            Op::Commit { who, which } => self.commit(who, which),
            Op::Advance { amount } => {
                self.now += amount as u64 * (DURATION / 16);
                let dp = self.config.dp.is_some();
                if dp && amount & 1 == 1 {
                    // raw_rand's reply: a close that waited for it happens now.
                    let waiting = self.state.close_pending() && self.state.wants_noise_seed();
                    self.state.receive_noise_seed([amount; 32], self.now);
                    assert_eq!(self.round(), round_before + waiting as u64, "seed close");
                    if waiting {
                        self.round_closed();
                        self.check_after(round_before, committed_before);
                        return;
                    }
                }
                let m = self.state.open_round().clone();
                let due = m.deadline_ns != 0 && self.now >= m.deadline_ns;
                let running =
                    self.state.job().job_state() == flic_protocol::api::JobState::Running;
                // A DP round without its seed waits (and refuses submissions meanwhile).
                let waits = dp && self.state.wants_noise_seed();
                let pending = self.state.close_pending();
                self.state.on_timer(self.now);
                let closes = running
                    && !waits
                    && (pending || (due && m.committed >= self.config.min_clients));
                assert_eq!(self.round(), round_before + closes as u64, "timer close");
                if closes {
                    self.round_closed();
                } else if running && due && !pending && m.committed < self.config.min_clients {
                    assert_eq!(self.state.open_round().extensions, m.extensions + 1);
                    assert_eq!(self.state.open_round().deadline_ns, self.now + DURATION);
                    // An extension drops the stalled uploads.
                    self.forget_dropped_uploads();
                }
            }
            Op::Dataset {
                who,
                action,
                samples,
            } => self.dataset(who, action, samples as u64),
            Op::Admin { action } => self.admin(action),
            Op::Upgrade => {
                self.state.save_for_upgrade();
                let before = self.snapshot();
                let acc = self.state.accumulator().to_vec();
                let info = self.state.round_info();
                let cert = self.state.certified_state();
                self.state = State::load(self.mem.clone());
                assert!(
                    before == self.snapshot(),
                    "loading the state wrote to memory"
                );
                // Between rounds the accumulator is all zeros, allocated or not.
                let zero = |a: &[i64]| a.iter().all(|&x| x == 0);
                assert!(
                    acc == self.state.accumulator()
                        || (zero(&acc) && zero(self.state.accumulator())),
                    "the upgrade lost the accumulator"
                );
                assert_eq!(info, self.state.round_info());
                assert_eq!(cert, self.state.certified_state());
            }
            Op::Replay { who } => {
                let (Some(i), p) = self.caller(who) else {
                    return;
                };
                let Some(args) = self.clients[i].last_committed.clone() else {
                    return;
                };
                let r = self.guarded(
                    "replayed begin_submission",
                    |s, c| s.begin_submission(c, args),
                    p,
                );
                assert!(
                    r.is_err(),
                    "a committed submission's arguments were accepted again"
                );
            }
        }
        self.check_after(round_before, committed_before);
    }

    fn check_after(&self, round_before: u64, _committed_before: u32) {
        if let Err(e) = self.state.check_invariants() {
            panic!("invariant broken: {e}");
        }
        let m = self.state.open_round();
        assert!(m.committed <= self.config.max_clients);
        assert!(
            m.round >= round_before && m.round <= round_before + 1,
            "round moved by more than one"
        );
        assert_eq!(self.state.history().size, m.round);
    }

    fn begin(&mut self, who: u8, enc: u8, seed: u8, mutation: u8, samples: u16) {
        let (idx, caller) = self.caller(who);
        let encoding = ENCODINGS[(enc & 3) as usize];
        let mut payload = encode_within(encoding, &delta(seed), CLIP, seed as u64)
            .unwrap()
            .bytes;
        // Payload mutations: the header stays honest, the delta is bad.
        match (mutation, encoding) {
            (1, DeltaEncoding::F32) => payload[4 * (seed as usize % PARAMS as usize)..][..4]
                .copy_from_slice(&f32::NAN.to_le_bytes()),
            (1, DeltaEncoding::Int8Blocks) => {
                payload[..4].copy_from_slice(&f32::INFINITY.to_le_bytes())
            }
            (2, DeltaEncoding::F32) => payload[..4].copy_from_slice(&(2.0 * CLIP).to_le_bytes()),
            (2, DeltaEncoding::Int8Blocks) => payload[..4].copy_from_slice(&CLIP.to_le_bytes()),
            (3, DeltaEncoding::F32) => {
                payload[..4].copy_from_slice(&f32::NEG_INFINITY.to_le_bytes())
            }
            (3, DeltaEncoding::Int8Blocks) => payload[5 + seed as usize % 200] = 0x80,
            // Top-k: a NaN scale, a scale whose largest code is above the bound, two
            // offsets out of order.
            (1, DeltaEncoding::TopK { .. }) => payload[..4].copy_from_slice(&f32::NAN.to_le_bytes()),
            (2, DeltaEncoding::TopK { .. }) => payload[..4].copy_from_slice(&CLIP.to_le_bytes()),
            (3, DeltaEncoding::TopK { .. }) => payload[5] = payload[4],
            // Low-bit: an infinite scale, an oversized one, the forbidden code -8.
            (1, DeltaEncoding::LowBitBlocks { .. }) => {
                payload[..4].copy_from_slice(&f32::INFINITY.to_le_bytes())
            }
            (2, DeltaEncoding::LowBitBlocks { .. }) => {
                payload[..4].copy_from_slice(&CLIP.to_le_bytes())
            }
            (3, DeltaEncoding::LowBitBlocks { .. }) => payload[4 + seed as usize % 100] = 0x88,
            (4, _) => {
                // Every element within the bound, the norm far above it.
                let x = vec![0.9 * CLIP; PARAMS as usize];
                payload = encode(encoding, &x).unwrap();
            }
            _ => {}
        }
        let payload_valid = validate(encoding, &payload, PARAMS, CLIP).is_ok();
        assert!(
            payload_valid != begin_mutation_is_payload(mutation),
            "harness payload mutation"
        );
        let info = self.state.round_info();
        let key = idx
            .map(|i| self.clients[i].key.clone())
            .unwrap_or_else(|| signing_key_from_seed([0xaa; 32]));
        let dataset_id = idx
            .and_then(|i| self.clients[i].datasets.last().map(|d| d.0))
            .unwrap_or(u64::MAX);
        let sample_count = 1 + samples as u64 % REGISTERED_SAMPLES;
        let hashes = chunk_hashes(&payload, CHUNK);
        let mut header = SubmissionHeader {
            canister_id: self.canister,
            job_id: info.job_id,
            round: info.round,
            base_model_version: info.model_version.unwrap(),
            dataset_id,
            sample_count,
            encoding,
            param_count: PARAMS,
            chunk_count: chunk_count(payload.len() as u64, CHUNK) as u32,
            chunk_root: Hash::new(merkle::root(&hashes)),
        };
        let mut chunk_hashes: Vec<Hash> = hashes.iter().copied().map(Hash::new).collect();
        let other = &self.clients[(idx.unwrap_or(0) + 1) % CLIENTS];
        let mut signer = key.clone();
        // Header mutations (signed after mutating, so only the field itself is wrong).
        match mutation {
            5 => header.round += 1,
            6 => header.round = header.round.wrapping_sub(1),
            7 => header.base_model_version = Hash::new([0x5a; 32]),
            8 => header.dataset_id = other.datasets.first().map(|d| d.0).unwrap_or(7),
            9 => header.sample_count = 0,
            10 => {
                let registered = idx.and_then(|i| self.clients[i].datasets.last().map(|d| d.1));
                header.sample_count = registered.unwrap_or(REGISTERED_SAMPLES) + 1
            }
            11 => header.param_count += 1,
            12 => header.chunk_count += 1,
            13 => header.chunk_root = Hash::new([0x11; 32]),
            14 => header.job_id += 1,
            15 => header.canister_id = Principal::from_slice(&[9; 10]),
            16 => {
                // Another allowed encoding than the payload's.
                let i = ENCODINGS.iter().position(|&e| e == encoding).unwrap_or(0);
                header.encoding = ENCODINGS[(i + 1) % ENCODINGS.len()];
            }
            17 => chunk_hashes[0] = Hash::new([0x22; 32]),
            18 => {
                chunk_hashes.pop();
            }
            19 => signer = other.key.clone(),
            _ => {}
        }
        let mut signature = header.sign(&signer).to_vec();
        let mut public_key = signer.verifying_key().to_bytes().to_vec();
        match mutation {
            20 => signature[seed as usize % 64] ^= 1 << (seed % 8),
            21 => signature.truncate(63),
            22 => public_key[seed as usize % 32] ^= 1 << (seed % 8),
            _ => {}
        }
        let args = BeginSubmissionArgs {
            header,
            public_key: ByteBuf::from(public_key),
            signature: ByteBuf::from(signature),
            chunk_hashes,
            below_clip: None,
        };
        let header_mutated = mutation >= 5 && mutation != 23;
        // Mutation 16 names another encoding; when both encodings make as many chunks
        // (top-k and int4 at this size: one each), begin cannot tell and accepts, and the
        // chunks are refused later for their length.
        let same_shape = mutation == 16
            && chunk_count(args.header.encoding.encoded_len(PARAMS), CHUNK)
                == chunk_count(encoding.encoded_len(PARAMS), CHUNK);
        // Whether the sample count fits the dataset (the latest one may be smaller).
        let registered = idx.and_then(|i| self.clients[i].datasets.last().copied());
        let closing = self.state.close_pending();
        let r = self.guarded(
            "begin_submission",
            |s, c| s.begin_submission(c, args.clone()),
            caller,
        );
        match r {
            Ok(status) => {
                assert!(
                    !header_mutated || same_shape,
                    "begin_submission accepted header mutation {mutation}"
                );
                // A new upload may have pushed out a stalled one.
                self.forget_dropped_uploads();
                if same_shape {
                    // An upload whose chunks cannot match: the harness does not own it.
                    return;
                }
                let i = idx.expect("only contributors with a dataset can begin");
                let (_, reg_samples, revoked) = registered.expect("a dataset");
                assert!(!revoked && sample_count <= reg_samples);
                assert!(!status.committed);
                let stored = status.stored_chunks.len();
                let upload = &self.clients[i].upload;
                match upload {
                    // Resume: the same header returns the same upload.
                    Some(u) if u.id == status.submission_id => {
                        assert_eq!(u.args.header, args.header);
                    }
                    _ => {
                        assert_eq!(stored, 0, "a new upload starts empty");
                        self.clients[i].upload = Some(Upload {
                            id: status.submission_id,
                            payload,
                            payload_valid,
                            encoding,
                            samples: sample_count,
                            args,
                        });
                    }
                }
            }
            Err(e) => {
                // Honest headers from a contributor with a usable dataset and no upload
                // this round must be accepted.
                let honest = !header_mutated
                    && idx.is_some_and(|i| self.clients[i].upload.is_none())
                    && registered.is_some_and(|(_, n, revoked)| !revoked && sample_count <= n)
                    && self.state.job().job_state() == flic_protocol::api::JobState::Running;
                let duplicate = matches!(e, SubmitError::DuplicateSubmission { .. });
                // The round's uploads in progress are capped (2 × max_clients); an honest
                // begin may only be refused for that when the cap is really reached.
                let info = self.state.round_info();
                let limit = info
                    .config
                    .as_ref()
                    .map_or(0, |c| flic_aggregator::rounds::pending_limit(c.max_clients));
                let full = matches!(e, SubmitError::TooManyPendingSubmissions { .. })
                    && info.pending >= limit;
                // A round waiting for its close (central DP's seed) takes no uploads.
                let closing = closing && matches!(e, SubmitError::RoundClosing { .. });
                assert!(
                    !honest || duplicate || full || closing,
                    "honest begin_submission rejected: {e:?}"
                );
            }
        }
    }

    fn put(&mut self, who: u8, index: u8, mutation: u8) {
        let (idx, caller) = self.caller(who);
        let running = self.state.job().job_state() == flic_protocol::api::JobState::Running;
        let own = idx
            .and_then(|i| self.clients[i].upload.as_ref())
            .map(|u| (u.id, u.payload.clone()));
        let other = self
            .clients
            .iter()
            .enumerate()
            .find(|(j, c)| Some(*j) != idx && c.upload.is_some())
            .and_then(|(_, c)| c.upload.as_ref())
            .map(|u| (u.id, u.payload.clone()));
        let mutation = mutation % 8;
        // 1 flipped byte, 2 truncated, 3 index past the end, 4 another's upload, 5 unknown id.
        let (id, payload, corrupted) = match (mutation, own.clone(), other) {
            (4, _, Some((id, p))) => (id, p, true),
            (5, _, _) | (_, None, _) => (u64::MAX - index as u64, vec![0u8; 64], true),
            (m, Some((id, p)), _) => (id, p, matches!(m, 1..=3)),
        };
        let n = payload.len().div_ceil(CHUNK as usize);
        let i = index as usize % n;
        let mut bytes = payload.chunks(CHUNK as usize).nth(i).unwrap().to_vec();
        let mut chunk_index = i as u32;
        match mutation {
            1 => {
                let at = index as usize % bytes.len();
                bytes[at] ^= 1;
            }
            2 => {
                bytes.pop();
            }
            3 => chunk_index += n as u32,
            _ => {}
        }
        let args = PutChunkArgs {
            submission_id: id,
            index: chunk_index,
            bytes: ByteBuf::from(bytes),
        };
        let closing = self.state.close_pending();
        let r = self.guarded("put_chunk", |s, c| s.put_chunk(c, args), caller);
        match r {
            Ok(_) => assert!(!corrupted, "put_chunk accepted corruption {mutation}"),
            Err(e) => assert!(
                corrupted || !running || closing,
                "an honest chunk of the caller's own upload was rejected: {e:?}"
            ),
        }
    }

    fn commit(&mut self, who: u8, which: u8) {
        let (idx, caller) = self.caller(who);
        let own = idx.and_then(|i| self.clients[i].upload.as_ref().map(|u| u.id));
        let id = match which % 3 {
            0 => own.unwrap_or(u64::MAX),
            1 => self
                .clients
                .iter()
                .enumerate()
                .find(|(j, c)| Some(*j) != idx && c.upload.is_some())
                .map(|(_, c)| c.upload.as_ref().unwrap().id)
                .unwrap_or(u64::MAX - 1),
            _ => which as u64 * 7919,
        };
        let status = self.state.submission_status(id).ok();
        let complete = status
            .as_ref()
            .is_some_and(|s| s.stored_chunks.len() as u32 == s.chunk_count && !s.committed);
        let running = self.state.job().job_state() == flic_protocol::api::JobState::Running;
        let upload = idx
            .and_then(|i| self.clients[i].upload.as_ref())
            .filter(|u| u.id == id)
            .map(|u| {
                (
                    u.payload.clone(),
                    u.payload_valid,
                    u.encoding,
                    u.samples,
                    u.args.clone(),
                )
            });
        // The upload's dataset is still live (a revoked one takes no contribution).
        let live = upload.as_ref().is_some_and(|u| {
            idx.and_then(|i| {
                self.clients[i]
                    .datasets
                    .iter()
                    .find(|d| d.0 == u.4.header.dataset_id)
            })
            .is_some_and(|d| !d.2)
        });
        let round_before = self.round();
        let closing = self.state.close_pending();
        let r = self.guarded(
            "commit_submission",
            |s, c| s.commit_submission(c, id),
            caller,
        );
        match r {
            Ok(receipt) if upload.is_none() => {
                // A repeated commit (a retry after a lost reply): the caller's receipt of
                // that commit again, and nothing changed.
                let last = idx.and_then(|i| self.clients[i].last_committed.as_ref());
                assert!(
                    last.is_some_and(|a| a.header.header_hash() == receipt.header_hash.into_array()),
                    "a commit succeeded for an upload that is not the caller's"
                );
                assert_eq!(self.round(), round_before);
            }
            Ok(receipt) => {
                let (payload, valid, encoding, samples, args) =
                    upload.expect("a commit succeeds only for the caller's own upload");
                assert!(valid, "a commit accepted an invalid delta");
                assert!(complete, "a commit succeeded with chunks missing");
                assert!(live, "a commit succeeded on a revoked dataset");
                let w = self
                    .reference
                    .acc
                    .add(encoding, &payload, samples)
                    .expect("the reference accepts what the canister accepted");
                assert_eq!(receipt.weight, w);
                assert_eq!(receipt.header_hash.into_array(), args.header.header_hash());
                let i = idx.unwrap();
                self.clients[i].last_committed = Some(args);
                self.clients[i].upload = None;
                assert_eq!(receipt.round_closed, self.round() == round_before + 1);
                if receipt.round_closed {
                    self.round_closed();
                }
            }
            Err(e) => {
                let valid = upload.as_ref().is_some_and(|u| u.1);
                assert!(
                    !(valid && complete && running && live && !closing),
                    "a complete, valid upload was not committed: {e:?}"
                );
                if matches!(e, SubmitError::InvalidDelta(_)) {
                    assert!(
                        upload.is_some_and(|u| !u.1),
                        "a valid delta was rejected: {e:?}"
                    );
                }
            }
        }
    }

    /// A round closed: compare the new model with the reference and start the next round.
    /// Uploads the canister dropped (stalled ones, pushed out by a new upload or by a
    /// deadline extension) are no longer the clients'.
    fn forget_dropped_uploads(&mut self) {
        for c in &mut self.clients {
            if let Some(u) = &c.upload {
                if self.state.submission_status(u.id).is_err() {
                    c.upload = None;
                }
            }
        }
    }

    fn round_closed(&mut self) {
        let expected = self
            .reference
            .acc
            .apply(&self.reference.weights, self.config.server_lr)
            .expect("a round closes with a contribution");
        let version = self.state.round_info().model_version.unwrap().into_array();
        let expected = match self.config.dp {
            None => {
                assert_eq!(
                    version,
                    model_version(&self.spec_id, &expected),
                    "new model differs from the reference FedAvg"
                );
                expected
            }
            Some(dp) => {
                // Noise from a secret seed: the model is the canister's; its record
                // certifies the budget, and the job pauses when the budget is spent.
                let closed = self.round() - 1;
                let record = self
                    .state
                    .round_history(flic_protocol::api::PageArgs {
                        start: closed,
                        limit: 1,
                    })
                    .items
                    .remove(0);
                assert_eq!(record.epsilon_spent, Some(dp.epsilon_after(closed + 1)));
                assert!(record.epsilon_spent.unwrap() <= dp.target_epsilon);
                let paused =
                    self.state.job().job_state() == flic_protocol::api::JobState::Paused;
                assert_eq!(paused, !dp.allows_round(closed + 1), "the budget's pause");
                let weights = self.model_weights();
                assert_eq!(version, model_version(&self.spec_id, &weights));
                weights
            }
        };
        self.reference = fresh_reference(&self.config, expected);
        for c in &mut self.clients {
            // Uncommitted uploads of the closed round are discarded.
            c.upload = None;
        }
        assert_eq!(self.state.open_round().committed, 0);
    }

    /// The current model, downloaded as a client would.
    fn model_weights(&self) -> Vec<f32> {
        let info = self.state.model_info().expect("a model exists");
        let mut bytes = Vec::new();
        for i in 0..info.chunk_count {
            bytes.extend_from_slice(&self.state.model_chunk(i).expect("in range").bytes);
        }
        flic_protocol::model::weights_from_le_bytes(&bytes).expect("whole f32 values")
    }

    fn dataset(&mut self, who: u8, action: u8, samples: u64) {
        let (idx, caller) = self.caller(who);
        match action % 3 {
            0 => {
                let samples = samples % 2000;
                let r = self.guarded(
                    "register_dataset",
                    |s, c| {
                        let n = s.allocators().next_dataset_id;
                        s.register_dataset(c, dataset_args(samples, c.caller, n))
                    },
                    caller,
                );
                if let Ok(id) = r {
                    assert!(caller != Principal::anonymous() && samples > 0);
                    if let Some(i) = idx {
                        self.clients[i].datasets.push((id, samples, false));
                    }
                }
            }
            a => {
                let target = if a == 1 {
                    idx
                } else {
                    idx.map(|i| (i + 1) % CLIENTS)
                };
                let id = target
                    .and_then(|t| self.clients[t].datasets.last().map(|d| d.0))
                    .unwrap_or(samples);
                let r = self.guarded("revoke_dataset", |s, c| s.revoke_dataset(c, id), caller);
                if r.is_ok() {
                    match idx {
                        Some(i) => {
                            let d = self.clients[i]
                                .datasets
                                .iter_mut()
                                .find(|d| d.0 == id)
                                .expect("only the owner revokes a dataset");
                            assert!(!d.2, "revoked twice");
                            d.2 = true;
                        }
                        // Datasets the controller registered itself are not tracked.
                        None => assert_eq!(caller, self.controller),
                    }
                }
            }
        }
    }

    fn admin(&mut self, action: u8) {
        let caller = if action & 4 != 0 {
            self.clients[0].principal
        } else {
            self.controller
        };
        let r: Result<(), String> = match action % 4 {
            0 => self
                .guarded("pause_job", |s, c| s.pause_job(c), caller)
                .map_err(|e| e.to_string()),
            1 => self
                .guarded("resume_job", |s, c| s.resume_job(c), caller)
                .map_err(|e| e.to_string()),
            2 => {
                let cfg = self.config.clone();
                self.guarded("configure_job", |s, c| s.configure_job(c, cfg), caller)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            _ => self
                .guarded("start_job", |s, c| s.start_job(c), caller)
                .map_err(|e| e.to_string()),
        };
        if caller != self.controller {
            assert!(r.is_err(), "an admin call by a non-controller succeeded");
        }
        if action % 4 >= 2 {
            assert!(r.is_err(), "a started job was reconfigured or restarted");
        }
    }
}

/// A dataset of `samples` samples; its commitment is new for every (owner, dataset count),
/// since a commitment is registered once.
fn dataset_args(samples: u64, owner: Principal, registered: u64) -> RegisterDatasetArgs {
    RegisterDatasetArgs {
        name: "shard".into(),
        commitment: Hash::new(flic_protocol::hash::sha256_concat(&[
            owner.as_slice(),
            &registered.to_le_bytes(),
        ])),
        sample_count: samples,
        license: "CC-BY-4.0".into(),
        description: "fuzz".into(),
    }
}

pub fn run(data: &[u8]) {
    execute(data);
}

/// Runs the program in `data` and returns the harness (tests look at where it ended).
pub fn execute(data: &[u8]) -> Harness {
    let mut c = Cursor::new(data);
    let mut h = Harness::new(c.u8());
    for _ in 0..MAX_OPS {
        if c.is_empty() {
            break;
        }
        let op = Op::parse(&mut c);
        h.apply(op);
    }
    h
}

/// Int8 payload length of the model (seeds use it).
pub fn int8_len() -> usize {
    DeltaEncoding::Int8Blocks.encoded_len(PARAMS) as usize
}
const _: () = assert!(INT8_BLOCK_BYTES == 260);
