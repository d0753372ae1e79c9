//! Writes the seed corpus under `fuzz/corpus/<target>/`:
//!
//! ```sh
//! cargo run --release --manifest-path fuzz/Cargo.toml --example gen_corpus
//! ```
//!
//! Seeds are valid inputs in each target's layout (valid Candid arguments of every method,
//! valid deltas, whole rounds of submissions, honest Merkle proofs) plus a few that are
//! known to be rejected, so fuzzing starts past the early checks. The output is
//! deterministic; file names say what each seed is.

use std::path::{Path, PathBuf};

use candid::utils::encode_args;
use flic_fuzz::cursor::Writer;
use flic_fuzz::submission::{self, Op, BEGIN_MUTATIONS};
use flic_protocol::api::{
    BeginSubmissionArgs, InitArg, InitArgs, PutChunkArgs, RegisterDatasetArgs, UpgradeArgs,
};
use flic_protocol::chunking::{chunk_count, chunk_hashes, chunk_root};
use flic_protocol::encoding::{clip_l2, encode, DeltaEncoding};
use flic_protocol::submission::signing_key_from_seed;
use flic_protocol::{Hash, SubmissionHeader};
use serde_bytes::ByteBuf;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn target_dir(root: &Path, target: &str) -> PathBuf {
    let dir = root.join(target);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn begin_args() -> BeginSubmissionArgs {
    let key = signing_key_from_seed([1; 32]);
    let bytes = encode(DeltaEncoding::Int8Blocks, &submission::delta(3)).unwrap();
    let header = SubmissionHeader {
        canister_id: candid::Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 1, 1]),
        job_id: 1,
        round: 0,
        base_model_version: Hash::new([7; 32]),
        dataset_id: 0,
        sample_count: 100,
        encoding: DeltaEncoding::Int8Blocks,
        param_count: submission::PARAMS,
        chunk_count: chunk_count(bytes.len() as u64, submission::CHUNK) as u32,
        chunk_root: Hash::new(chunk_root(&bytes, submission::CHUNK)),
    };
    BeginSubmissionArgs {
        signature: ByteBuf::from(header.sign(&key).to_vec()),
        header,
        public_key: ByteBuf::from(key.verifying_key().to_bytes().to_vec()),
        chunk_hashes: chunk_hashes(&bytes, submission::CHUNK)
            .into_iter()
            .map(Hash::new)
            .collect(),
        below_clip: None,
    }
}

fn candid_seeds(root: &Path) {
    let dir = target_dir(root, "candid_update_args");
    let seed = |name: &str, selector: u8, msg: Vec<u8>| {
        let mut b = vec![selector];
        b.extend(msg);
        write(&dir, name, &b);
    };
    let config = submission::config(0b0101);
    let mut no_chunk_size = config.clone();
    no_chunk_size.chunk_size = None;
    seed("configure_job", 0, encode_args((config.clone(),)).unwrap());
    seed(
        "configure_job_default_chunk",
        0,
        encode_args((no_chunk_size,)).unwrap(),
    );
    seed(
        "upload_model_chunk",
        1,
        encode_args((3u32, ByteBuf::from(vec![0x3f; 256]))).unwrap(),
    );
    let dataset = RegisterDatasetArgs {
        name: "clinic A".into(),
        commitment: Hash::new([9; 32]),
        sample_count: 1000,
        license: "CC-BY-4.0".into(),
        description: "a shard".into(),
    };
    seed("register_dataset", 2, encode_args((dataset,)).unwrap());
    seed("revoke_dataset", 3, encode_args((5u64,)).unwrap());
    seed("begin_submission", 4, encode_args((begin_args(),)).unwrap());
    let put = PutChunkArgs {
        submission_id: 2,
        index: 1,
        bytes: ByteBuf::from(vec![1u8; 52]),
    };
    seed("put_chunk", 5, encode_args((put,)).unwrap());
    seed("commit_submission", 6, encode_args((7u64,)).unwrap());
    seed(
        "init_with_job",
        7,
        encode_args((InitArg::Init(InitArgs { job: Some(config) }),)).unwrap(),
    );
    seed(
        "init_without_job",
        7,
        encode_args((InitArg::Init(InitArgs::default()),)).unwrap(),
    );
    let upgrade = InitArg::Upgrade(Some(UpgradeArgs {
        round_duration_ns: Some(120_000_000_000),
        close_slice_instructions: None,
    }));
    seed("post_upgrade", 8, encode_args((Some(upgrade),)).unwrap());
    seed(
        "post_upgrade_none",
        8,
        encode_args((None::<InitArg>,)).unwrap(),
    );
    seed("every_type_begin", 9, encode_args((begin_args(),)).unwrap());
    // An empty argument is what the entry points turn into `DIDL\0\0`.
    seed("empty_commit", 6, Vec::new());
}

fn delta_seed(enc: DeltaEncoding, values: &[f32], clip: f32) -> Vec<u8> {
    let mut w = Writer::default();
    let flags = (0..=255u8)
        .find(|&f| flic_fuzz::delta::encoding_of(f) == enc && f & 2 == 0)
        .expect("every encoding has flags");
    w.u8(flags)
        .u64(values.len() as u64)
        .u32(clip.to_bits())
        .u16(300)
        .u16(10)
        .u32(500)
        .bytes(&encode(enc, values).unwrap());
    w.0
}

fn delta_seeds(root: &Path) {
    let dir = target_dir(root, "delta_decoders");
    for n in [1usize, 255, 256, 257, 300, 1000] {
        let mut x: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.71).sin()).collect();
        clip_l2(&mut x, 1.0);
        write(
            &dir,
            &format!("f32_{n}"),
            &delta_seed(DeltaEncoding::F32, &x, 1.0),
        );
        write(
            &dir,
            &format!("int8_{n}"),
            &delta_seed(DeltaEncoding::Int8Blocks, &x, 1.0),
        );
    }
    // The compressed encodings, a short last block and several blocks.
    for n in [257usize, 1000] {
        let mut x: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).cos()).collect();
        clip_l2(&mut x, 1.0);
        for (name, enc) in [
            ("int4", DeltaEncoding::LowBitBlocks { bits: 4 }),
            ("int2", DeltaEncoding::LowBitBlocks { bits: 2 }),
            ("topk3_2", DeltaEncoding::TopK { k: 3, bits: 2 }),
            ("topk13_4", DeltaEncoding::TopK { k: 13, bits: 4 }),
            ("topk256_8", DeltaEncoding::TopK { k: 256, bits: 8 }),
        ] {
            write(&dir, &format!("{name}_{n}"), &delta_seed(enc, &x, 1.0));
        }
    }
    // Top-k offsets out of order (header 21 bytes, then the scale, then the offsets).
    let mut unsorted = delta_seed(DeltaEncoding::TopK { k: 13, bits: 4 }, &[0.1; 300], 1.0);
    unsorted.swap(21 + 4, 21 + 5);
    write(&dir, "topk13_4_unsorted", &unsorted);
    let big: Vec<f32> = vec![0.5; 64];
    write(
        &dir,
        "f32_norm_above_clip",
        &delta_seed(DeltaEncoding::F32, &big, 1.0),
    );
    let mut nan = delta_seed(DeltaEncoding::F32, &[0.1, 0.2, 0.3], 1.0);
    let at = nan.len() - 4;
    nan[at..].copy_from_slice(&f32::NAN.to_le_bytes());
    write(&dir, "f32_nan", &nan);
    let mut m128 = delta_seed(DeltaEncoding::Int8Blocks, &[0.1, -0.2, 0.3], 1.0);
    let at = m128.len() - 1;
    m128[at] = 0x80;
    write(&dir, "int8_minus_128", &m128);
    // Raw parameter count (flags bit 1): the largest count, whose encoded length overflows.
    let mut raw = Writer::default();
    raw.u8(3)
        .u64(u64::MAX)
        .u32(1f32.to_bits())
        .u16(1)
        .u16(1)
        .u32(1)
        .bytes(&[0; 8]);
    write(&dir, "int8_raw_count_u64_max", &raw.0);
    let mut raw = Writer::default();
    raw.u8(2)
        .u64((1 << 62) + 1)
        .u32(1f32.to_bits())
        .u16(1)
        .u16(1)
        .u32(1)
        .bytes(&[0; 4]);
    write(&dir, "f32_raw_count_wraps_to_4_bytes", &raw.0);
}

fn program(shape: u8, ops: &[Op]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(shape);
    for op in ops {
        op.encode(&mut w);
    }
    w.0
}

fn begin(who: u8, enc: u8, seed: u8, mutation: u8) -> Op {
    Op::Begin {
        who,
        enc,
        seed,
        mutation,
        samples: 299 + who as u16 * 100,
    }
}

fn submit(who: u8, enc: u8, seed: u8) -> [Op; 3] {
    [
        begin(who, enc, seed, 0),
        Op::PutAll { who },
        Op::Commit { who, which: 0 },
    ]
}

fn submission_seeds(root: &Path) {
    let dir = target_dir(root, "submission_path");
    // max_clients = 3 (shape bits 1-2 = 2), min_clients 1, retain.
    let shape = 0b0101;
    let full: Vec<Op> = [submit(0, 0, 1), submit(1, 1, 2), submit(2, 0, 3)].concat();
    write(&dir, "full_round_quorum", &program(shape, &full));
    let mut two_rounds = full.clone();
    two_rounds.extend([submit(1, 0, 4), submit(0, 1, 5), submit(2, 1, 6)].concat());
    two_rounds.push(Op::Replay { who: 0 });
    write(&dir, "two_rounds_then_replay", &program(shape, &two_rounds));
    // Deadline: one commit, then the timer closes the round (min_clients 1).
    let mut deadline: Vec<Op> = submit(0, 1, 7).to_vec();
    deadline.push(Op::Advance { amount: 17 });
    deadline.extend(submit(1, 0, 8));
    write(&dir, "deadline_close", &program(shape, &deadline));
    // min_clients = max_clients = 3: the deadline extends the round.
    let mut extend: Vec<Op> = submit(0, 0, 9).to_vec();
    extend.push(Op::Advance { amount: 16 });
    extend.push(Op::Advance { amount: 16 });
    extend.extend([submit(1, 0, 10), submit(2, 1, 11)].concat());
    write(&dir, "deadline_extends", &program(shape | 8, &extend));
    // Central DP (bit 4): the round at max_clients waits for its seed (an odd Advance),
    // a second round's seed comes first, then the deadline path with a waiting close.
    let mut dp: Vec<Op> = full.clone();
    dp.push(Op::Advance { amount: 1 });
    dp.push(Op::Advance { amount: 3 });
    dp.extend([submit(1, 0, 14), submit(0, 1, 15), submit(2, 1, 16)].concat());
    dp.extend(submit(0, 0, 17));
    dp.push(Op::Advance { amount: 18 });
    dp.push(Op::Upgrade);
    dp.push(Op::Advance { amount: 2 });
    dp.push(Op::Advance { amount: 5 });
    write(&dir, "dp_rounds_wait_for_their_seed", &program(shape | 0x10, &dp));
    // Rounds until the budget pauses the job, then a resume that must be refused.
    let mut budget: Vec<Op> = Vec::new();
    for r in 0..8u8 {
        budget.push(Op::Advance { amount: 1 });
        budget.extend(submit(r % 3, r & 1, 20 + r));
    }
    budget.push(Op::Admin { action: 1 });
    write(&dir, "dp_budget_pauses", &program(0x10, &budget));
    // Every begin mutation, each followed by an honest upload attempt.
    for m in 1..BEGIN_MUTATIONS {
        let mut ops = vec![
            begin(0, m & 1, m, m),
            Op::PutAll { who: 0 },
            Op::Commit { who: 0, which: 0 },
        ];
        ops.extend(submit(1, 0, m));
        write(
            &dir,
            &format!("begin_mutation_{m:02}"),
            &program(shape, &ops),
        );
    }
    // Chunk corruption, then the honest chunks.
    let mut chunks = vec![begin(0, 0, 12, 0)];
    for mutation in 0..8 {
        chunks.push(Op::Put {
            who: 0,
            index: mutation,
            mutation,
        });
    }
    chunks.extend([
        Op::Commit { who: 0, which: 0 },
        Op::PutAll { who: 0 },
        Op::Commit { who: 0, which: 1 },
        Op::Commit { who: 0, which: 0 },
    ]);
    write(&dir, "chunk_mutations", &program(shape, &chunks));
    // Pause, non-controller admin calls, an upgrade mid-upload, resume.
    let admin = vec![
        begin(1, 1, 13, 0),
        Op::Put {
            who: 1,
            index: 0,
            mutation: 0,
        },
        Op::Admin { action: 0 },
        Op::Put {
            who: 1,
            index: 1,
            mutation: 0,
        },
        Op::Admin { action: 4 | 1 },
        Op::Upgrade,
        Op::Admin { action: 1 },
        Op::Admin { action: 2 },
        Op::PutAll { who: 1 },
        Op::Commit { who: 1, which: 0 },
    ];
    write(&dir, "pause_upgrade_resume", &program(shape, &admin));
    // Datasets: register, revoke, then submit with the revoked and a new one.
    let datasets = vec![
        Op::Dataset {
            who: 3,
            action: 0,
            samples: 1000,
        },
        begin(3, 0, 14, 0),
        Op::Dataset {
            who: 0,
            action: 1,
            samples: 0,
        },
        begin(0, 0, 15, 0),
        Op::Dataset {
            who: 1,
            action: 2,
            samples: 0,
        },
        Op::Dataset {
            who: 4,
            action: 0,
            samples: 10,
        },
        Op::PutAll { who: 3 },
        Op::Commit { who: 3, which: 0 },
    ];
    write(&dir, "datasets_and_revocation", &program(shape, &datasets));
    // max_clients = 1: every commit closes a round.
    let single: Vec<Op> = [submit(0, 0, 16), submit(1, 1, 17), submit(0, 1, 18)].concat();
    write(&dir, "single_client_rounds", &program(0, &single));
}

fn merkle_seeds(root: &Path) {
    let dir = target_dir(root, "merkle_verify");
    for (n, index, flags) in [
        (1u16, 0u64, 0u8),
        (7, 3, 0),
        (8, 7, 4),
        (13, 12, 8),
        (100, 37, 16),
        (255, 200, 32),
        (64, 5, 64),
        (3, 0, 2),
    ] {
        let mut w = Writer::default();
        w.u16(n - 1)
            .u64(index)
            .u64(if flags & 2 != 0 { 4 } else { 0 })
            .u8(flags)
            .u16(9)
            .bytes(b"seed leaves");
        write(&dir, &format!("n{n}_i{index}_f{flags}"), &w.0);
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    candid_seeds(&root);
    delta_seeds(&root);
    submission_seeds(&root);
    merkle_seeds(&root);
    println!("seed corpus written to {}", root.display());
}
