//! Checked-in test vectors (`tests/vectors/protocol_v1.json`) that another implementation
//! can check itself against. This test recomputes every vector from its inputs and fails
//! on any difference. Regenerate (only after an intended format change) with
//! `FLIC_REGENERATE_VECTORS=1 cargo test --release -p flic-protocol --test vectors`.

use candid::Principal;
use flic_protocol::chunking::chunk_root;
use flic_protocol::encoding::{encode, DeltaEncoding};
use flic_protocol::fedavg::{Accumulator, AggregationLimits};
use flic_protocol::merkle::{leaf_hash, root};
use flic_protocol::model::weights_to_le_bytes;
use flic_protocol::submission::{principal_of_ed25519, signing_key_from_seed, verify_signature};
use flic_protocol::{Hash, SubmissionHeader};
use serde_json::{json, Value};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/protocol_v1.json"
);

fn compute() -> Value {
    // Submission: fixed key seed, fixed header.
    let seed = [7u8; 32];
    let key = signing_key_from_seed(seed);
    let pk = key.verifying_key().to_bytes();
    let delta = [0.25f32, -0.5, 0.125, 1.0, -1.0, 0.0, 0.75];
    let encoded = encode(DeltaEncoding::Int8Blocks, &delta).unwrap();
    let header = SubmissionHeader {
        canister_id: Principal::from_text("bkyz2-fmaaa-aaaaa-qaaaq-cai").unwrap(),
        job_id: 1,
        round: 3,
        base_model_version: Hash::new([0xab; 32]),
        dataset_id: 42,
        sample_count: 600,
        encoding: DeltaEncoding::Int8Blocks,
        param_count: delta.len() as u64,
        chunk_count: 1,
        chunk_root: Hash::new(chunk_root(&encoded, 1 << 20)),
    };
    let sig = header.sign(&key);
    verify_signature(&pk, &header.signing_bytes(), &sig).unwrap();

    // Merkle roots over 1..=5 leaves whose data is the single byte i.
    let merkle: Vec<Value> = (1..=5u8)
        .map(|n| {
            let data: Vec<Vec<u8>> = (0..n).map(|i| vec![i]).collect();
            let leaves: Vec<_> = data.iter().map(|d| leaf_hash(d)).collect();
            json!({ "leaf_data_hex": data.iter().map(hex::encode).collect::<Vec<_>>(), "root_hex": hex::encode(root(&leaves)) })
        })
        .collect();

    // FedAvg: two contributions, one per encoding, then the finalised weights.
    let limits = AggregationLimits {
        max_clients: 4,
        max_weight: 1000,
        clip_norm: 2.0,
    };
    let frac_bits = limits.safe_frac_bits().unwrap();
    let d2 = [-0.5f32, 0.25, 0.0, 0.5, 0.125, -0.25, 1.0];
    let f32_bytes = encode(DeltaEncoding::F32, &d2).unwrap();
    let mut acc = Accumulator::new(delta.len(), limits, frac_bits).unwrap();
    acc.add(DeltaEncoding::Int8Blocks, &encoded, 600).unwrap();
    acc.add(DeltaEncoding::F32, &f32_bytes, 1500).unwrap();
    let weights = [0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7];
    let next = acc.apply(&weights, 0.5).unwrap();

    json!({
        "submission": {
            "key_seed_hex": hex::encode(seed),
            "public_key_hex": hex::encode(pk),
            "principal": principal_of_ed25519(&pk).to_text(),
            "header": {
                "canister_id": header.canister_id.to_text(),
                "job_id": header.job_id,
                "round": header.round,
                "base_model_version_hex": hex::encode(header.base_model_version.as_slice()),
                "dataset_id": header.dataset_id,
                "sample_count": header.sample_count,
                "encoding": "int8_blocks",
                "param_count": header.param_count,
                "chunk_count": header.chunk_count,
                "chunk_root_hex": hex::encode(header.chunk_root.as_slice()),
            },
            "signing_bytes_hex": hex::encode(header.signing_bytes()),
            "header_hash_hex": hex::encode(header.header_hash()),
            "signature_hex": hex::encode(sig),
        },
        "int8_blocks": { "input_f32": delta, "encoded_hex": hex::encode(&encoded) },
        "merkle": merkle,
        "fedavg": {
            "max_clients": limits.max_clients,
            "max_weight": limits.max_weight,
            "clip_norm": limits.clip_norm,
            "frac_bits": frac_bits,
            "contributions": [
                { "encoding": "int8_blocks", "sample_count": 600, "bytes_hex": hex::encode(&encoded) },
                { "encoding": "f32", "sample_count": 1500, "bytes_hex": hex::encode(&f32_bytes) },
            ],
            "accumulator": acc.values(),
            "total_weight": acc.total_weight(),
            "weights_le_hex": hex::encode(weights_to_le_bytes(&weights)),
            "server_lr": 0.5f32,
            "next_weights_le_hex": hex::encode(weights_to_le_bytes(&next)),
        },
    })
}

#[test]
fn vectors_match_the_checked_in_file() {
    let computed = compute();
    if std::env::var_os("FLIC_REGENERATE_VECTORS").is_some() {
        std::fs::write(
            PATH,
            serde_json::to_string_pretty(&computed).unwrap() + "\n",
        )
        .unwrap();
    }
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(PATH).expect("vectors file")).unwrap();
    assert_eq!(
        stored, computed,
        "protocol vectors changed: is this an intended format change?"
    );
}
