//! Every verifier against valid and tampered inputs: each tampering fails with a typed
//! error naming what did not match, never a panic.

use candid::Principal;
use flic_aggregator::certification::{HistoryWitness, InMemoryTree};
use flic_embedded_ic::{certificate_tree, BlsCertificateIssuer};
use flic_proofs::certified::{check_model_info, verify_round_info, verify_round_page};
use flic_proofs::lineage::{recompute_round, RetainedContribution, RoundInputs};
use flic_proofs::receipt::{verify_receipt, Receipt, RECEIPT_FORMAT};
use flic_proofs::sample::{
    verify_sample, verify_sample_against, verify_sample_in_dataset, SampleProof,
    SAMPLE_PROOF_FORMAT,
};
use flic_proofs::{CertifiedView, Freshness, ProofError, Trust};
use flic_protocol::api::{
    Certification, CertifiedRoundInfo, CertifiedRoundPage, CertifiedState, ClientHyperparameters,
    Contribution, JobConfig, JobState, ModelInfo, Optimizer, RoundInfo, RoundPage, RoundRecord,
};
use flic_protocol::chunking::{chunk_hashes, chunk_root};
use flic_protocol::fedavg::{Accumulator, AggregationLimits};
use flic_protocol::job_config::job_config_hash;
use flic_protocol::merkle::{self, leaf_hash, MerkleError};
use flic_protocol::submission::{principal_of_ed25519, signing_key_from_seed};
use flic_protocol::{encoding, model_version, DeltaEncoding, Hash, SubmissionHeader};
use serde_bytes::ByteBuf;

const NOW: u64 = 1_800_000_000_000_000_000;
const CHUNK: u32 = 64;
const PARAMS: usize = 40;

fn canister() -> Principal {
    Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 7, 1, 1])
}

fn issuer() -> BlsCertificateIssuer {
    BlsCertificateIssuer::from_seed(b"proofs test root")
}

fn trust() -> Trust {
    Trust {
        root_key_der: issuer().public_key_der(),
        canister: canister(),
        freshness: Freshness::Within {
            now_ns: NOW,
            max_age_ns: 60_000_000_000,
        },
    }
}

fn limits() -> AggregationLimits {
    AggregationLimits {
        max_clients: 4,
        max_weight: 1_000,
        clip_norm: 10.0,
    }
}

fn spec_id() -> [u8; 32] {
    [9; 32]
}

/// A closed round built the way the canister builds it: three signed contributions.
struct World {
    base: Vec<f32>,
    records: Vec<RoundRecord>,
    contributions: Vec<RetainedContribution>,
    tree: InMemoryTree,
    scalars: CertifiedState,
    config: JobConfig,
}

/// The job the world's canister certifies (its values matter only through their hash).
fn config() -> JobConfig {
    let spec = flic_protocol::ModelSpec {
        architecture: "linear".into(),
        config_json: "{}".into(),
        tensors: vec![flic_protocol::TensorSpec {
            name: "w".into(),
            shape: vec![PARAMS as u64],
            offset: 0,
        }],
    };
    JobConfig {
        clip_norm: 10.0,
        max_weight: 1_000,
        max_clients: 4,
        chunk_size: Some(CHUNK),
        ..JobConfig::new(
            spec,
            ClientHyperparameters {
                learning_rate: 0.05,
                batch_size: 16,
                local_epochs: 1,
                optimizer: Optimizer::Sgd,
                seed: 42,
                proximal_mu: None,
            },
        )
    }
}

fn world() -> World {
    let base: Vec<f32> = (0..PARAMS).map(|i| i as f32 * 0.01).collect();
    let base_version = model_version(&spec_id(), &base);
    let frac_bits = limits().safe_frac_bits().unwrap();
    let mut acc = Accumulator::new(PARAMS, limits(), frac_bits).unwrap();
    let mut contributions = Vec::new();
    for i in 0..3u64 {
        let key = signing_key_from_seed([i as u8 + 1; 32]);
        let pk = key.verifying_key().to_bytes();
        let delta: Vec<f32> = (0..PARAMS)
            .map(|j| ((i as f32 + 1.0) * 0.01) * ((j % 7) as f32 - 3.0))
            .collect();
        let enc = if i == 1 {
            DeltaEncoding::Int8Blocks
        } else {
            DeltaEncoding::F32
        };
        let payload = encoding::encode(enc, &delta).unwrap();
        let hashes = chunk_hashes(&payload, CHUNK);
        let header = SubmissionHeader {
            canister_id: canister(),
            job_id: 1,
            round: 0,
            base_model_version: Hash::new(base_version),
            dataset_id: 10 + i,
            sample_count: 100 * (i + 1),
            encoding: enc,
            param_count: PARAMS as u64,
            chunk_count: hashes.len() as u32,
            chunk_root: Hash::new(merkle::root(&hashes)),
        };
        let signature = header.sign(&key);
        let weight = acc.add(enc, &payload, header.sample_count).unwrap();
        contributions.push(RetainedContribution {
            contribution: Contribution {
                index: i,
                round: 0,
                index_in_round: i as u32,
                contributor: principal_of_ed25519(&pk),
                dataset_id: header.dataset_id,
                header_hash: Hash::new(header.header_hash()),
                header,
                public_key: ByteBuf::from(pk.to_vec()),
                signature: ByteBuf::from(signature.to_vec()),
                weight,
                committed_at_ns: NOW - 10,
                retained: true,
            },
            payload,
        });
    }
    let next = acc.apply(&base, 1.0).unwrap();
    let leaves: Vec<_> = contributions
        .iter()
        .map(|c| leaf_hash(c.contribution.header_hash.as_slice()))
        .collect();
    let record0 = RoundRecord {
        round: 0,
        base_version: Hash::new(base_version),
        new_version: Hash::new(model_version(&spec_id(), &next)),
        contributions_root: Hash::new(merkle::root(&leaves)),
        first_contribution: 0,
        contribution_count: 3,
        total_weight: acc.total_weight(),
        contributors: contributions
            .iter()
            .map(|c| c.contribution.contributor)
            .collect(),
        frac_bits,
        server_lr: 1.0,
        opened_at_ns: NOW - 100,
        closed_at_ns: NOW - 5,
        extensions: 0,
        epsilon_spent: None,
        adaptive_clip: None,
    };
    // A second (empty-bodied) record, so swapped rounds can be tested.
    let mut record1 = record0.clone();
    record1.round = 1;
    record1.base_version = record0.new_version;
    record1.new_version = Hash::new([0xab; 32]);
    record1.first_contribution = 3;
    let records = vec![record0, record1];
    let tree = InMemoryTree::from_history(records.iter().cloned());
    let mut frontier = merkle::MerkleFrontier::new();
    for r in &records {
        frontier.push(r.history_leaf());
    }
    let scalars = CertifiedState {
        job_id: 1,
        round: 2,
        model_version: records[1].new_version,
        history_root: Hash::new(frontier.root()),
        job_config_hash: Some(Hash::new(job_config_hash(&config()))),
    };
    World {
        base,
        records,
        contributions,
        tree,
        scalars,
        config: config(),
    }
}

impl World {
    fn certification(&self, history: HistoryWitness, time: u64) -> Certification {
        let witness = self.tree.witness(&self.scalars, history);
        let root = self.tree.root_hash(&self.scalars);
        Certification {
            certificate: ByteBuf::from(issuer().sign_tree(certificate_tree(
                canister(),
                &root,
                time,
            ))),
            tree: ByteBuf::from(serde_cbor::to_vec(&witness).unwrap()),
        }
    }

    fn round_info(&self) -> CertifiedRoundInfo {
        CertifiedRoundInfo {
            info: RoundInfo {
                job_id: 1,
                state: JobState::Running,
                round: 2,
                model_version: Some(self.scalars.model_version),
                spec_id: Some(Hash::new(spec_id())),
                param_count: PARAMS as u64,
                opened_at_ns: 0,
                deadline_ns: 0,
                committed: 0,
                pending: 0,
                frac_bits: 30,
                config: Some(self.config.clone()),
                round_clip_norm: None,
            },
            certification: self.certification(HistoryWitness::Pruned, NOW - 1),
        }
    }

    fn receipt(&self, i: usize) -> Receipt {
        let leaves: Vec<_> = self
            .contributions
            .iter()
            .map(|c| leaf_hash(c.contribution.header_hash.as_slice()))
            .collect();
        let proof = merkle::inclusion_proof(&leaves, i as u64).unwrap();
        let c = self.contributions[i].contribution.clone();
        Receipt::from_proof(
            canister(),
            flic_protocol::api::ContributionProof {
                contribution: c,
                record: self.records[0].clone(),
                inclusion_proof: proof.into_iter().map(Hash::new).collect(),
                certification: self
                    .certification(HistoryWitness::Range { first: 0, last: 0 }, NOW - 1),
            },
        )
    }

    fn inputs<'a>(&'a self, contributions: &'a [RetainedContribution]) -> RoundInputs<'a> {
        RoundInputs {
            record: &self.records[0],
            spec_id: spec_id(),
            base_weights: &self.base,
            limits: limits(),
            chunk_size: CHUNK,
            contributions,
            rule: flic_protocol::rules::AggregationRule::FedAvg,
            optimizer: flic_protocol::optimizers::ServerOptimizer::Sgd,
        }
    }
}

// ------------------------------------------------------------------ certificates

#[test]
fn valid_certified_round_info_verifies() {
    let w = world();
    let view = verify_round_info(&w.round_info(), &trust()).unwrap();
    assert_eq!(view.round().unwrap(), 2);
    assert_eq!(view.job_id().unwrap(), 1);
    assert_eq!(view.time_ns, NOW - 1);
    assert_eq!(
        view.model_version().unwrap(),
        Some(w.scalars.model_version.into_array())
    );
}

#[test]
fn certificate_from_another_key_fails() {
    let w = world();
    let mut t = trust();
    t.root_key_der = BlsCertificateIssuer::from_seed(b"another").public_key_der();
    assert_eq!(
        verify_round_info(&w.round_info(), &t).unwrap_err(),
        ProofError::CertificateSignature { key: "root key" }
    );
}

#[test]
fn stale_certificate_fails_unless_freshness_is_waived() {
    let w = world();
    let mut reply = w.round_info();
    reply.certification = w.certification(HistoryWitness::Pruned, NOW - 61_000_000_000);
    assert!(matches!(
        verify_round_info(&reply, &trust()).unwrap_err(),
        ProofError::StaleCertificate {
            age_s: 61,
            max_age_s: 60,
            ..
        }
    ));
    let mut t = trust();
    t.freshness = Freshness::AnyTime;
    verify_round_info(&reply, &t).unwrap();
}

#[test]
fn altered_certificate_signature_fails() {
    let w = world();
    let mut reply = w.round_info();
    let mut cert: ic_certification::Certificate =
        serde_cbor::from_slice(&reply.certification.certificate).unwrap();
    // Flipping a low bit usually leaves a point off the curve; another valid point (the
    // signature of another message) must fail too.
    cert.signature[20] ^= 1;
    reply.certification.certificate = ByteBuf::from(serde_cbor::to_vec(&cert).unwrap());
    assert!(matches!(
        verify_round_info(&reply, &trust()).unwrap_err(),
        ProofError::CertificateSignature { .. }
    ));
    let other: ic_certification::Certificate = serde_cbor::from_slice(
        &issuer().sign_tree(certificate_tree(canister(), b"something else", NOW)),
    )
    .unwrap();
    cert.signature = other.signature;
    reply.certification.certificate = ByteBuf::from(serde_cbor::to_vec(&cert).unwrap());
    assert_eq!(
        verify_round_info(&reply, &trust()).unwrap_err(),
        ProofError::CertificateSignature { key: "root key" }
    );
}

#[test]
fn tree_not_matching_the_certified_data_fails() {
    let w = world();
    let mut reply = w.round_info();
    // A witness of another state (round 3), under a certificate for the real one.
    let mut other = w.scalars.clone();
    other.round = 3;
    reply.certification.tree =
        ByteBuf::from(serde_cbor::to_vec(&w.tree.witness(&other, HistoryWitness::Pruned)).unwrap());
    assert!(matches!(
        verify_round_info(&reply, &trust()).unwrap_err(),
        ProofError::TreeMismatch { .. }
    ));
}

#[test]
fn certificate_for_another_canister_fails() {
    let w = world();
    let mut t = trust();
    t.canister = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 8, 1, 1]);
    assert!(matches!(
        verify_round_info(&w.round_info(), &t).unwrap_err(),
        ProofError::MissingPath { path } if path.contains("certified_data")
    ));
}

#[test]
fn reply_fields_not_matching_the_witness_fail() {
    let w = world();
    let mut reply = w.round_info();
    reply.info.round = 1;
    assert!(matches!(
        verify_round_info(&reply, &trust()).unwrap_err(),
        ProofError::Mismatch { what, .. } if what == "round"
    ));
    let mut reply = w.round_info();
    reply.info.model_version = Some(Hash::new([1; 32]));
    assert!(matches!(
        verify_round_info(&reply, &trust()).unwrap_err(),
        ProofError::Mismatch { what, .. } if what == "model version"
    ));
    let mut reply = w.round_info();
    reply.info.job_id = 2;
    assert!(matches!(
        verify_round_info(&reply, &trust()).unwrap_err(),
        ProofError::Mismatch { what, .. } if what == "job id"
    ));
    let view = CertifiedView::verify(&w.round_info().certification, &trust()).unwrap();
    let info = ModelInfo {
        version: Hash::new([2; 32]),
        spec_id: Hash::new(spec_id()),
        round: 2,
        param_count: PARAMS as u64,
        byte_len: PARAMS as u64 * 4,
        chunk_size: CHUNK,
        chunk_count: 3,
    };
    assert!(matches!(
        check_model_info(&view, &info).unwrap_err(),
        ProofError::Mismatch { what, .. } if what == "model version"
    ));
}

#[test]
fn malformed_certificates_and_keys_fail_without_panicking() {
    let w = world();
    let good = w.round_info();
    let mut reply = good.clone();
    reply.certification.certificate = ByteBuf::new();
    assert_eq!(
        verify_round_info(&reply, &trust()).unwrap_err(),
        ProofError::NoCertificate
    );
    reply.certification.certificate = ByteBuf::from(vec![0xd9, 0xd9, 0xf7, 0xa1]);
    assert!(matches!(
        verify_round_info(&reply, &trust()).unwrap_err(),
        ProofError::CertificateDecode(_)
    ));
    let mut reply = good.clone();
    reply.certification.tree = ByteBuf::from(vec![0x83, 0x01]);
    assert!(matches!(
        verify_round_info(&reply, &trust()).unwrap_err(),
        ProofError::TreeDecode(_)
    ));
    let mut t = trust();
    t.root_key_der.truncate(100);
    assert_eq!(
        verify_round_info(&good, &t).unwrap_err(),
        ProofError::RootKey { len: 100 }
    );
    // Every single-byte corruption of the certificate or witness is an error, not a panic.
    let cert = good.certification.certificate.to_vec();
    for i in (0..cert.len()).step_by(3) {
        let mut bad = good.clone();
        let mut bytes = cert.clone();
        bytes[i] ^= 0x55;
        bad.certification.certificate = ByteBuf::from(bytes);
        assert!(verify_round_info(&bad, &trust()).is_err(), "byte {i}");
    }
    let tree = good.certification.tree.to_vec();
    for i in 0..tree.len() {
        let mut bad = good.clone();
        let mut bytes = tree.clone();
        bytes[i] ^= 0x55;
        bad.certification.tree = ByteBuf::from(bytes);
        assert!(verify_round_info(&bad, &trust()).is_err(), "byte {i}");
    }
}

// ------------------------------------------------------------------ round records

#[test]
fn certified_round_pages_verify_and_altered_or_swapped_records_fail() {
    let w = world();
    let page = |items: Vec<RoundRecord>, first, last| CertifiedRoundPage {
        page: RoundPage { items, next: None },
        certification: w.certification(HistoryWitness::Range { first, last }, NOW),
    };
    verify_round_page(&page(w.records.clone(), 0, 1), 0, &trust()).unwrap();

    let mut altered = w.records.clone();
    altered[0].total_weight += 1;
    assert!(matches!(
        verify_round_page(&page(altered, 0, 1), 0, &trust()).unwrap_err(),
        ProofError::Mismatch { what, .. } if what.contains("round 0")
    ));

    // Round 1's record presented as round 0 (and vice versa).
    let mut swapped = vec![w.records[1].clone(), w.records[0].clone()];
    swapped[0].round = 0;
    swapped[1].round = 1;
    assert!(matches!(
        verify_round_page(&page(swapped, 0, 1), 0, &trust()).unwrap_err(),
        ProofError::Mismatch { .. }
    ));

    // A record the witness does not cover (history pruned).
    let pruned = CertifiedRoundPage {
        page: RoundPage {
            items: vec![w.records[0].clone()],
            next: Some(1),
        },
        certification: w.certification(HistoryWitness::Pruned, NOW),
    };
    assert!(matches!(
        verify_round_page(&pruned, 0, &trust()).unwrap_err(),
        ProofError::MissingPath { path } if path == "/history/0"
    ));

    // A round that provably does not exist.
    let mut ghost = w.records[1].clone();
    ghost.round = 2;
    let view = CertifiedView::verify(
        &w.certification(HistoryWitness::Range { first: 1, last: 1 }, NOW),
        &trust(),
    )
    .unwrap();
    assert!(matches!(
        view.check_round_record(&ghost).unwrap_err(),
        ProofError::Inconsistent { .. } | ProofError::MissingPath { .. }
    ));
}

/// A job configuration altered in the reply (the clip norm a client would train with, or
/// any other field) does not hash to the certified `/job_config`: the client refuses it.
#[test]
fn round_info_with_an_altered_job_config_is_rejected() {
    let w = world();
    let honest = w.round_info();
    verify_round_info(&honest, &trust()).unwrap();
    let tamper = |f: &dyn Fn(&mut JobConfig)| {
        let mut reply = honest.clone();
        f(reply.info.config.as_mut().unwrap());
        verify_round_info(&reply, &trust()).unwrap_err()
    };
    let errors = [
        tamper(&|c| c.clip_norm = 1_000.0),
        tamper(&|c| c.max_weight = u64::MAX),
        tamper(&|c| c.client.learning_rate = 5.0),
        tamper(&|c| c.allowed_encodings.reverse()),
    ];
    for e in errors {
        assert!(
            matches!(&e, ProofError::Mismatch { what, .. } if what == "job configuration hash"),
            "{e:?}"
        );
    }
    // A reply that hides the configuration, or shows one where none is certified.
    let mut hidden = honest.clone();
    hidden.info.config = None;
    assert!(matches!(
        verify_round_info(&hidden, &trust()).unwrap_err(),
        ProofError::Mismatch { what, .. } if what == "job configuration hash"
    ));
    let mut w2 = world();
    w2.scalars.job_config_hash = None;
    assert!(matches!(
        verify_round_info(&w2.round_info(), &trust()).unwrap_err(),
        ProofError::Mismatch { what, .. } if what == "job configuration hash"
    ));
}

/// Replaces the labeled node of `round` under `/history` in a CBOR witness by its pruned
/// hash, as a replica may: the tree still hashes to the certified data.
fn prune_round(tree: &[u8], round: u64) -> Vec<u8> {
    use serde_cbor::Value;
    fn go(v: &Value, label: &[u8]) -> Value {
        let Value::Array(a) = v else { return v.clone() };
        match (&a[0], a.get(1)) {
            (Value::Integer(1), _) => {
                Value::Array(vec![a[0].clone(), go(&a[1], label), go(&a[2], label)])
            }
            (Value::Integer(2), Some(Value::Bytes(l))) if l.as_slice() == label => {
                let t: ic_certification::HashTree =
                    serde_cbor::from_slice(&serde_cbor::to_vec(v).unwrap()).unwrap();
                Value::Array(vec![Value::Integer(4), Value::Bytes(t.digest().to_vec())])
            }
            (Value::Integer(2), _) => {
                Value::Array(vec![a[0].clone(), a[1].clone(), go(&a[2], label)])
            }
            _ => v.clone(),
        }
    }
    let v: Value = serde_cbor::from_slice(tree).unwrap();
    serde_cbor::to_vec(&go(&v, &flic_protocol::certified::round_key(round))).unwrap()
}

fn is_inconsistent_page(e: &ProofError) -> bool {
    matches!(e, ProofError::Inconsistent { what, .. } if what == "round history page")
}

/// `next == None` must prove that the history ends; an empty page must prove that its start
/// round does not exist. Honest pages as the canister builds them (the last page, a page
/// cut short with `next` set, the empty page past the end, the empty history) verify.
#[test]
fn truncated_and_empty_round_pages_are_rejected() {
    let w = world();
    let page = |items: Vec<RoundRecord>, next, history| CertifiedRoundPage {
        page: RoundPage { items, next },
        certification: w.certification(history, NOW),
    };
    let range = |first, last| HistoryWitness::Range { first, last };
    // Honest: the whole history, a page cut short, the last page alone, the empty page at
    // the end (the canister's witness for it) and past the end.
    verify_round_page(&page(w.records.clone(), None, range(0, 1)), 0, &trust()).unwrap();
    verify_round_page(
        &page(vec![w.records[0].clone()], Some(1), range(0, 0)),
        0,
        &trust(),
    )
    .unwrap();
    verify_round_page(
        &page(vec![w.records[1].clone()], None, range(1, 1)),
        1,
        &trust(),
    )
    .unwrap();
    verify_round_page(&page(vec![], None, range(2, 2)), 2, &trust()).unwrap();
    verify_round_page(&page(vec![], None, range(2, 2)), 7, &trust()).unwrap();

    // The empty history.
    let mut empty = world();
    empty.tree = InMemoryTree::from_history(std::iter::empty());
    empty.scalars.history_root = Hash::new(merkle::MerkleFrontier::new().root());
    let empty_page = CertifiedRoundPage {
        page: RoundPage {
            items: vec![],
            next: None,
        },
        certification: empty.certification(range(0, 0), NOW),
    };
    verify_round_page(&empty_page, 0, &trust()).unwrap();

    // A malicious replica drops the last record and ends the page, with the honest witness
    // pruned where round 1 is (the certified data is unchanged) or with the witness the
    // canister gives for round 0 alone.
    let mut truncated = page(vec![w.records[0].clone()], None, range(0, 1));
    truncated.certification.tree = ByteBuf::from(prune_round(&truncated.certification.tree, 1));
    let e = verify_round_page(&truncated, 0, &trust()).unwrap_err();
    assert!(
        matches!(&e, ProofError::Inconsistent { detail, .. } if detail.contains("does not prove that round 1")),
        "{e:?}"
    );
    let e = verify_round_page(
        &page(vec![w.records[0].clone()], None, range(0, 0)),
        0,
        &trust(),
    )
    .unwrap_err();
    assert!(is_inconsistent_page(&e), "{e:?}");
    // With the round it hides still revealed, it is caught as a certified round.
    let e = verify_round_page(
        &page(vec![w.records[0].clone()], None, range(0, 1)),
        0,
        &trust(),
    )
    .unwrap_err();
    assert!(
        matches!(&e, ProofError::Inconsistent { detail, .. } if detail.contains("round 1 is certified")),
        "{e:?}"
    );

    // An empty page that hides existing rounds: witness pruned, the end-of-history witness,
    // or one that shows the round.
    for history in [HistoryWitness::Pruned, range(2, 2), range(0, 1)] {
        let e = verify_round_page(&page(vec![], None, history), 0, &trust()).unwrap_err();
        assert!(is_inconsistent_page(&e), "{history:?}: {e:?}");
    }
    // An empty page that claims more follows.
    let e = verify_round_page(&page(vec![], Some(0), range(0, 1)), 0, &trust()).unwrap_err();
    assert!(is_inconsistent_page(&e), "{e:?}");

    // A page that skips its first rounds, or whose `next` skips rounds.
    let e = verify_round_page(
        &page(vec![w.records[1].clone()], None, range(1, 1)),
        0,
        &trust(),
    )
    .unwrap_err();
    assert!(is_inconsistent_page(&e), "{e:?}");
    let e = verify_round_page(
        &page(vec![w.records[0].clone()], Some(5), range(0, 0)),
        0,
        &trust(),
    )
    .unwrap_err();
    assert!(is_inconsistent_page(&e), "{e:?}");
}

// ------------------------------------------------------------------ receipts

#[test]
fn receipts_verify_for_every_contributor() {
    let w = world();
    for i in 0..3 {
        let r = w.receipt(i);
        assert_eq!(r.format, RECEIPT_FORMAT);
        let v = verify_receipt(&r, &trust()).unwrap();
        assert_eq!(v.contribution_index, i as u64);
        assert_eq!(v.new_version, w.records[0].new_version.into_array());
        // A receipt survives a JSON round trip.
        let json = serde_json::to_vec(&r).unwrap();
        let back: Receipt = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, r);
    }
    // Receipts are historical evidence: a stored one verifies without freshness.
    let mut old = w.receipt(0);
    old.certification = w.certification(HistoryWitness::Range { first: 0, last: 0 }, 1);
    let mut t = trust();
    assert!(matches!(
        verify_receipt(&old, &t).unwrap_err(),
        ProofError::StaleCertificate { .. }
    ));
    t.freshness = Freshness::AnyTime;
    verify_receipt(&old, &t).unwrap();
}

#[test]
fn tampered_receipts_fail_with_the_reason() {
    let w = world();
    let t = trust();

    let mut r = w.receipt(1);
    r.index_in_round = 2;
    r.contribution_index = 2;
    assert!(matches!(
        verify_receipt(&r, &t).unwrap_err(),
        ProofError::Inclusion(_)
    ));

    let mut r = w.receipt(1);
    r.inclusion_proof.pop();
    assert!(matches!(
        verify_receipt(&r, &t).unwrap_err(),
        ProofError::Inclusion(MerkleError::WrongProofLength { .. })
    ));

    let mut r = w.receipt(1);
    r.inclusion_proof.push(Hash::new([0; 32]));
    assert!(matches!(
        verify_receipt(&r, &t).unwrap_err(),
        ProofError::Inclusion(MerkleError::WrongProofLength { .. })
    ));

    let mut r = w.receipt(1);
    r.inclusion_proof[0] = Hash::new([7; 32]);
    assert!(matches!(
        verify_receipt(&r, &t).unwrap_err(),
        ProofError::Inclusion(MerkleError::RootMismatch { .. })
    ));

    let mut r = w.receipt(1);
    r.round_record.contributions_root = Hash::new([3; 32]);
    assert!(matches!(
        verify_receipt(&r, &t).unwrap_err(),
        ProofError::Inclusion(MerkleError::RootMismatch { .. })
    ));

    let mut r = w.receipt(0);
    r.header_hash = Hash::new([1; 32]);
    assert!(matches!(
        verify_receipt(&r, &t).unwrap_err(),
        ProofError::Mismatch { what, .. } if what == "header hash"
    ));

    let mut r = w.receipt(1);
    r.signature[5] ^= 1;
    assert!(matches!(
        verify_receipt(&r, &t).unwrap_err(),
        ProofError::HeaderSignature(_)
    ));

    let mut r = w.receipt(1);
    r.header.dataset_id += 1;
    assert!(matches!(
        verify_receipt(&r, &t).unwrap_err(),
        ProofError::HeaderSignature(_)
    ));

    let mut r = w.receipt(1);
    r.contributor = w.contributions[0].contribution.contributor;
    assert!(matches!(
        verify_receipt(&r, &t).unwrap_err(),
        ProofError::Inconsistent { what, .. } if what == "contributor"
    ));

    // Swapped round: the receipt claims round 1 with round 1's record.
    let mut r = w.receipt(1);
    r.round_record = w.records[1].clone();
    assert!(verify_receipt(&r, &t).is_err());

    let mut r = w.receipt(1);
    r.round_record.closed_at_ns += 1;
    assert!(matches!(
        verify_receipt(&r, &t).unwrap_err(),
        ProofError::Mismatch { what, .. } if what.contains("record")
    ));

    let mut r = w.receipt(1);
    r.certification = w.certification(HistoryWitness::Pruned, NOW);
    assert!(matches!(
        verify_receipt(&r, &t).unwrap_err(),
        ProofError::MissingPath { .. }
    ));

    let r = w.receipt(1);
    let mut other_key = t.clone();
    other_key.root_key_der = BlsCertificateIssuer::from_seed(b"x").public_key_der();
    assert!(matches!(
        verify_receipt(&r, &other_key).unwrap_err(),
        ProofError::CertificateSignature { .. }
    ));

    let mut r = w.receipt(1);
    r.format = "flic/receipt/v0".into();
    assert!(matches!(
        verify_receipt(&r, &t).unwrap_err(),
        ProofError::Inconsistent { .. }
    ));
}

// ------------------------------------------------------------------ lineage

#[test]
fn lineage_recomputes_the_version_bit_for_bit() {
    let w = world();
    let (next, shapers) = recompute_round(&w.inputs(&w.contributions)).unwrap();
    assert_eq!(
        model_version(&spec_id(), &next),
        w.records[0].new_version.into_array()
    );
    assert_eq!(
        shapers
            .iter()
            .map(|s| (s.dataset_id, s.weight))
            .collect::<Vec<_>>(),
        vec![(10, 100), (11, 200), (12, 300)]
    );
}

#[test]
fn lineage_with_tampered_inputs_fails() {
    let w = world();

    let mut cs = w.contributions.clone();
    cs[1].payload[3] ^= 1;
    assert!(matches!(
        recompute_round(&w.inputs(&cs)).unwrap_err(),
        ProofError::Mismatch { what, .. } if what.contains("chunk root")
    ));

    let mut cs = w.contributions.clone();
    cs.swap(0, 2);
    assert!(matches!(
        recompute_round(&w.inputs(&cs)).unwrap_err(),
        ProofError::Inconsistent { what, .. } if what == "contribution order"
    ));

    let cs = &w.contributions[..2];
    assert!(matches!(
        recompute_round(&w.inputs(cs)).unwrap_err(),
        ProofError::Inconsistent { .. }
    ));

    let mut base = w.base.clone();
    base[0] = f32::from_bits(base[0].to_bits() ^ 1);
    let mut inputs = w.inputs(&w.contributions);
    inputs.base_weights = &base;
    assert!(matches!(
        recompute_round(&inputs).unwrap_err(),
        ProofError::Mismatch { what, .. } if what.contains("base version")
    ));

    let mut record = w.records[0].clone();
    record.server_lr = 0.5;
    let mut inputs = w.inputs(&w.contributions);
    inputs.record = &record;
    assert!(matches!(
        recompute_round(&inputs).unwrap_err(),
        ProofError::VersionMismatch { .. }
    ));

    let mut cs = w.contributions.clone();
    cs[2].contribution.signature[0] ^= 1;
    assert!(matches!(
        recompute_round(&w.inputs(&cs)).unwrap_err(),
        ProofError::HeaderSignature(_)
    ));

    // A payload re-signed by its owner (a different delta) is not the committed one.
    let mut cs = w.contributions.clone();
    let key = signing_key_from_seed([1; 32]);
    let mut delta = encoding::decode(DeltaEncoding::F32, &cs[0].payload, PARAMS as u64).unwrap();
    delta[0] += 0.5;
    let payload = encoding::encode(DeltaEncoding::F32, &delta).unwrap();
    cs[0].contribution.header.chunk_root = Hash::new(chunk_root(&payload, CHUNK));
    cs[0].contribution.header_hash = Hash::new(cs[0].contribution.header.header_hash());
    cs[0].contribution.signature = ByteBuf::from(cs[0].contribution.header.sign(&key).to_vec());
    cs[0].payload = payload;
    assert!(matches!(
        recompute_round(&w.inputs(&cs)).unwrap_err(),
        ProofError::Mismatch { what, .. } if what.contains("contributions root")
    ));
}

// ------------------------------------------------------------------ samples

fn sample_proof() -> (SampleProof, [u8; 32]) {
    let samples: Vec<Vec<u8>> = (0..11u8).map(|i| vec![i; 5 + i as usize]).collect();
    let leaves: Vec<_> = samples.iter().map(|s| leaf_hash(s)).collect();
    let root = merkle::root(&leaves);
    let proof = merkle::inclusion_proof(&leaves, 6).unwrap();
    (
        SampleProof {
            format: SAMPLE_PROOF_FORMAT.into(),
            sample: ByteBuf::from(samples[6].clone()),
            index: 6,
            sample_count: 11,
            proof: proof.into_iter().map(Hash::new).collect(),
            root: Hash::new(root),
            salt: None,
        },
        root,
    )
}

#[test]
fn salted_sample_proofs_verify_against_the_salted_commitment_only() {
    let (mut p, root) = sample_proof();
    let salt = [0x5a; 32];
    let salted = flic_protocol::sample::salted_commitment(&salt, &root);
    assert_ne!(
        salted, root,
        "the registered value does not reveal the root"
    );
    // Without the salt, the proof does not lead to the salted commitment.
    assert!(verify_sample_against(&p, &salted).is_err());
    p.salt = Some(Hash::new(salt));
    verify_sample_against(&p, &salted).unwrap();
    assert!(verify_sample_against(&p, &root).is_err());
    let mut wrong = p.clone();
    wrong.salt = Some(Hash::new([0x5b; 32]));
    assert!(matches!(
        verify_sample_against(&wrong, &salted).unwrap_err(),
        ProofError::Mismatch { .. }
    ));
    // The salt survives the proof file's JSON, and an unsalted file has no salt field.
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<SampleProof>(&json).unwrap(), p);
    let (plain, _) = sample_proof();
    assert!(!serde_json::to_string(&plain).unwrap().contains("salt"));
}

#[test]
fn a_sample_proof_is_about_a_dataset_only_with_its_commitment_and_size() {
    let (p, root) = sample_proof();
    assert_eq!(verify_sample_in_dataset(&p, &root, 11).unwrap(), root);
    assert!(matches!(
        verify_sample_in_dataset(&p, &root, 12).unwrap_err(),
        ProofError::Inconsistent { what, .. } if what == "sample count"
    ));
    assert!(matches!(
        verify_sample_in_dataset(&p, &[0; 32], 11).unwrap_err(),
        ProofError::Mismatch { .. }
    ));
}

#[test]
fn sample_proofs_verify_and_tampered_ones_fail() {
    let (p, root) = sample_proof();
    verify_sample_against(&p, &root).unwrap();

    let mut bad = p.clone();
    bad.sample[0] ^= 1;
    assert!(matches!(
        verify_sample(&bad).unwrap_err(),
        ProofError::Inclusion(MerkleError::RootMismatch { .. })
    ));
    let mut bad = p.clone();
    bad.index = 7;
    assert!(verify_sample(&bad).is_err());
    let mut bad = p.clone();
    bad.index = 11;
    assert!(matches!(
        verify_sample(&bad).unwrap_err(),
        ProofError::Inclusion(MerkleError::IndexOutOfRange { .. })
    ));
    let mut bad = p.clone();
    bad.proof.pop();
    assert!(matches!(
        verify_sample(&bad).unwrap_err(),
        ProofError::Inclusion(MerkleError::WrongProofLength { .. })
    ));
    let mut bad = p.clone();
    bad.proof.push(Hash::new([0; 32]));
    assert!(matches!(
        verify_sample(&bad).unwrap_err(),
        ProofError::Inclusion(MerkleError::WrongProofLength { .. })
    ));
    assert!(matches!(
        verify_sample_against(&p, &[0; 32]).unwrap_err(),
        ProofError::Mismatch { what, .. } if what == "dataset commitment"
    ));
    let mut bad = p.clone();
    bad.root = Hash::new([5; 32]);
    assert!(matches!(
        verify_sample(&bad).unwrap_err(),
        ProofError::Inclusion(MerkleError::RootMismatch { .. })
    ));
}
