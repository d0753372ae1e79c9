//! Upgrades from stable-memory images written by earlier releases.
//!
//! `tests/fixtures/stable-<release>.bin.gz` is the whole stable memory (gzip) of a canister
//! that lived through [`life`] under that release, taken after `save_for_upgrade` (as
//! `pre_upgrade` leaves it); `stable-<release>.expected.json` is what that release's queries
//! answered then, and what the continuation (one more commit, closing the open round)
//! answered. [`upgrade_from_release_images_loses_nothing`] loads each image with this
//! release's `State::load` (`post_upgrade`), checks every answer, continues the round, and
//! upgrades once more.
//!
//! Generate an image with the release it belongs to (an image is only worth something if
//! that release wrote it: never regenerate an old release's image with newer code):
//!
//! ```text
//! FLIC_STABLE_IMAGE=v1 cargo test --release -p flic-aggregator \
//!     tests::stable_image::generate -- --ignored --exact
//! ```
//!
//! `v1` is the release before stored records carried a version (untagged Candid, one
//! `Meta` cell), written at commit "canister: stable-memory image of the previous release".
//! `v2` is the release at commit 4649289 (issue 12: staging slots, allow-list, certified
//! history in stable memory, aggregation rules and server optimizers), before FedProx's
//! `proximal_mu`, the close-slice setting, and the centered-clipping and Bulyan rules.
//! A change that adds a stored field must keep these images loading, and extend the checks
//! here (and, once released, add that release's image).

use std::io::{Read, Write};
use std::path::PathBuf;

use serde::Serialize;
use serde_json::{json, Value};

use super::*;

/// The images this release must upgrade from.
const RELEASES: &[&str] = &["v1", "v2"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn v<T: Serialize>(x: &T) -> Value {
    serde_json::to_value(x).expect("query answers serialize")
}

fn sha_hex(bytes: &[u8]) -> String {
    flic_protocol::hash::to_hex(&flic_protocol::hash::sha256(bytes))
}

fn all() -> PageArgs {
    PageArgs {
        start: 0,
        limit: MAX_PAGE_LEN,
    }
}

/// A realistic life: a job, its model, datasets (one revoked), two closed rounds (f32 and
/// int8, a deadline extension, a discarded upload, a pause), evaluations, metrics, and an
/// open round with two commits, one complete upload not yet committed and one partial.
/// Returns the caller and id of the complete upload.
fn life(h: &mut Harness) -> (Principal, u64) {
    let clients: Vec<Client> = (1..=4).map(|i| h.client(i, 1000 + i as u64)).collect();
    let spare = h
        .state
        .register_dataset(&h.ctx(clients[3].principal), dataset_args(77))
        .unwrap();
    h.state
        .revoke_dataset(&h.ctx(clients[3].principal), spare)
        .unwrap();
    h.check();

    // Round 0 closes at max_clients.
    h.submit(&clients[0], &delta(1), DeltaEncoding::F32, 300);
    h.submit(&clients[1], &delta(2), DeltaEncoding::Int8Blocks, 800);
    h.now += 1_000;
    h.submit(&clients[2], &delta(3), DeltaEncoding::F32, 1000);

    // Round 1: one commit, an extension, a second commit, an upload that never commits,
    // a pause, and the deadline closes it with quorum.
    h.now += 5_000;
    h.submit(&clients[1], &delta(4), DeltaEncoding::F32, 120);
    h.now = h.state.timer_deadline();
    h.state.on_timer(h.now);
    h.check();
    h.submit(&clients[3], &delta(5), DeltaEncoding::Int8Blocks, 64);
    let stale = encode(DeltaEncoding::F32, &delta(6)).unwrap();
    h.begin(&clients[0], &stale, DeltaEncoding::F32, 10);
    h.now += 7_000;
    h.state.pause_job(&h.admin()).unwrap();
    h.now += 3_000_000;
    h.state.resume_job(&h.admin()).unwrap();
    h.now = h.state.timer_deadline();
    h.state.on_timer(h.now);
    h.check();
    assert_eq!(h.state.round_info().round, 2);

    // Evaluations of both closed rounds.
    let admin = h.admin();
    h.state
        .report_evaluation(&admin, eval_args(h, 0, 0.61))
        .unwrap();
    h.state
        .report_evaluation(&h.ctx(clients[1].principal), eval_args(h, 0, 0.65))
        .unwrap();
    h.state
        .report_evaluation(&h.ctx(clients[3].principal), eval_args(h, 1, 0.7))
        .unwrap();
    // What the boundary records after every call.
    for (method, rejection, bytes, instructions) in [
        ("begin_submission", None, 0, 1_200_000),
        ("put_chunk", None, 256, 90_000),
        ("put_chunk", Some("ChunkHashMismatch"), 256, 40_000),
        ("commit_submission", None, 0, 3_400_000),
        ("begin_submission", Some("StaleRound"), 0, 800_000),
    ] {
        h.state.record_call(crate::metrics::CallRecord {
            method,
            rejection,
            bytes,
            instructions,
        });
    }

    // The open round 2: two commits (so the heap accumulator is spilled), one complete
    // upload, one partial.
    h.now += 11_000;
    h.submit(&clients[2], &delta(7), DeltaEncoding::Int8Blocks, 900);
    h.submit(&clients[0], &delta(8), DeltaEncoding::F32, 40);
    let complete = encode(DeltaEncoding::F32, &delta(9)).unwrap();
    let s = h.begin(&clients[1], &complete, DeltaEncoding::F32, 500);
    h.put_all(&clients[1], s.submission_id, &complete);
    let partial = encode(DeltaEncoding::Int8Blocks, &delta(10)).unwrap();
    let p = h.begin(&clients[3], &partial, DeltaEncoding::Int8Blocks, 50);
    h.state
        .put_chunk(
            &h.ctx(clients[3].principal),
            PutChunkArgs {
                submission_id: p.submission_id,
                index: 1,
                bytes: ByteBuf::from(partial[CHUNK as usize..].to_vec()),
            },
        )
        .unwrap();
    h.check();
    assert_eq!(h.state.round_info().committed, 2);
    (clients[1].principal, s.submission_id)
}

/// Everything a reader can ask the state, as JSON.
fn answers(h: &Harness) -> Value {
    let s = &h.state;
    let info = s.round_info();
    let rounds = s.round_history(all()).items;
    let contributions: Vec<Contribution> =
        (0..).map_while(|i| s.contribution(i)).collect::<Vec<_>>();
    let retained: Vec<String> = contributions
        .iter()
        .map(|c| {
            let n = chunk_count(c.header.encoding.encoded_len(PARAMS), CHUNK) as u32;
            let bytes: Vec<u8> = (0..n)
                .flat_map(|k| s.contribution_chunk(c.index, k).unwrap().into_vec())
                .collect();
            sha_hex(&bytes)
        })
        .collect();
    let submissions: Vec<SubmissionStatus> = (0..64)
        .filter_map(|id| s.submission_status(id).ok())
        .collect();
    let model: Vec<u8> = h.weights().iter().flat_map(|w| w.to_le_bytes()).collect();
    let initial: Vec<u8> = (0..s.model_info().unwrap().chunk_count)
        .flat_map(|i| s.initial_model_chunk(i).unwrap().bytes.into_vec())
        .collect();
    // Empty and all-zero are the same accumulator (a load keeps it empty until a commit).
    let acc = if s.accumulator().iter().all(|&a| a == 0) {
        "zero".to_string()
    } else {
        let bytes: Vec<u8> = s
            .accumulator()
            .iter()
            .flat_map(|a| a.to_le_bytes())
            .collect();
        format!(
            "{} x i64, sha256 {}",
            s.accumulator().len(),
            sha_hex(&bytes)
        )
    };
    let evaluations: Vec<Value> = rounds
        .iter()
        .map(|r| v(&s.round_evaluations(r.round)))
        .collect();
    let metrics = s.metrics();
    let rejections: Vec<Value> = metrics
        .rejections
        .iter()
        .map(|((m, e), n)| json!([m, e, n]))
        .collect();
    let lineage = s
        .lineage(LineageArgs {
            model_version: info.model_version.unwrap(),
            page: all(),
        })
        .unwrap();
    json!({
        "round_info": v(&info),
        "timer_deadline": s.timer_deadline(),
        "certified_state": v(&s.certified_state()),
        "certified_data": hex::encode(s.certified_data()),
        "certified_data_without_job_config": hex::encode(root_without_job_config(s)),
        "model_info": v(&s.model_info().unwrap()),
        "weights_sha256": sha_hex(&model),
        "initial_model_sha256": sha_hex(&initial),
        "rounds": v(&rounds),
        "datasets": v(&s.list_datasets(all()).items),
        "contributions": v(&contributions),
        "retained_delta_sha256": retained,
        "submissions": v(&submissions),
        "accumulator": acc,
        "evaluations": evaluations,
        "metrics": { "methods": v(&metrics.methods), "rejections": rejections },
        "lineage": v(&lineage),
    })
}

/// The root hash of the certified tree as releases before `/job_config` laid it out, from
/// this state: equal to what such a release certified iff `/history` (kept in stable memory
/// since, node for node the heap `RbTree` those releases rebuilt) and the scalars are.
fn root_without_job_config(s: &State) -> [u8; 32] {
    use flic_protocol::certified::{
        u64_leaf, LABEL_HISTORY, LABEL_HISTORY_ROOT, LABEL_JOB, LABEL_MODEL_VERSION, LABEL_ROUND,
    };
    use ic_certification::{fork, labeled, leaf, pruned};
    let c = s.certified_state();
    let version = if c.model_version.iter().all(|&b| b == 0) {
        Vec::new()
    } else {
        c.model_version.to_vec()
    };
    fork(
        fork(
            labeled(LABEL_HISTORY, pruned(s.certified.history_hash())),
            labeled(LABEL_HISTORY_ROOT, leaf(c.history_root.to_vec())),
        ),
        fork(
            labeled(LABEL_JOB, leaf(u64_leaf(c.job_id).to_vec())),
            fork(
                labeled(LABEL_MODEL_VERSION, leaf(version)),
                labeled(LABEL_ROUND, leaf(u64_leaf(c.round).to_vec())),
            ),
        ),
    )
    .digest()
}

/// What an image written before `/job_config` existed expects: its certified data is the
/// tree without that label, and its certified state has no configuration hash. Checks that
/// the hash this release certifies is the configuration's, then compares the rest.
fn as_before_job_config(got: &Value, want: &Value) -> Value {
    let mut got = got.clone();
    if want.get("certified_state").is_none() {
        for key in ["receipt", "after"] {
            if let (Some(g), Some(w)) = (got.get(key), want.get(key)) {
                let g = as_before_job_config(g, w);
                got[key] = g;
            }
        }
        return got;
    }
    let answers = got.as_object_mut().expect("answers are an object");
    if want["certified_state"].get("job_config_hash").is_none() {
        let without = answers
            .remove("certified_data_without_job_config")
            .expect("answers carry the root without /job_config");
        let config: JobConfig =
            serde_json::from_value(answers["round_info"]["config"].clone()).unwrap();
        let hash = Some(Hash::new(flic_protocol::job_config::job_config_hash(
            &config,
        )));
        let state = answers["certified_state"].as_object_mut().unwrap();
        assert_eq!(
            state.remove("job_config_hash"),
            Some(v(&hash)),
            "/job_config certifies the job's configuration"
        );
        answers.insert("certified_data".into(), without);
    }
    got
}

/// Commits `id` for `caller`, which closes the open round at `max_clients`.
fn continue_round(h: &mut Harness, caller: Principal, id: u64) -> Value {
    h.now += 13_000;
    let receipt = h
        .state
        .commit_submission(&h.ctx(caller), id)
        .expect("the staged upload commits after the upgrade");
    h.check();
    assert!(receipt.round_closed);
    json!({ "receipt": v(&receipt), "after": answers(h) })
}

fn read_image(release: &str) -> Vec<u8> {
    let path = fixture(&format!("stable-{release}.bin.gz"));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

fn harness_on(bytes: Vec<u8>) -> Harness {
    let mut h = Harness::new();
    h.mem = std::rc::Rc::new(std::cell::RefCell::new(bytes));
    h.state = State::load(h.mem.clone());
    h
}

/// Writes this release's image and answers (see the module documentation).
#[test]
#[ignore = "writes a fixture: FLIC_STABLE_IMAGE=<release> ... -- --ignored --exact"]
fn generate() {
    let release = std::env::var("FLIC_STABLE_IMAGE")
        .expect("FLIC_STABLE_IMAGE=<release name>, e.g. v1: the image's file name");
    let mut h = Harness::running();
    let (caller, id) = life(&mut h);
    h.state.save_for_upgrade();
    let image = h.mem.borrow().clone();
    let before = answers(&h);
    let now_ns = h.now;
    let continued = continue_round(&mut h, caller, id);
    let expected = json!({
        "release": release,
        "crate_version": env!("CARGO_PKG_VERSION"),
        "now_ns": now_ns,
        "canister_id": h.canister.to_text(),
        "controller": h.controller.to_text(),
        "continue": { "caller": caller.to_text(), "submission_id": id },
        "before": before,
        "continued": continued,
    });

    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(fixture(&format!("stable-{release}.bin.gz"))).unwrap(),
        flate2::Compression::best(),
    );
    gz.write_all(&image).unwrap();
    gz.finish().unwrap();
    let mut text = serde_json::to_string_pretty(&expected).unwrap();
    text.push('\n');
    std::fs::write(fixture(&format!("stable-{release}.expected.json")), text).unwrap();
}

/// Every earlier release's image loads with nothing lost, its open round continues, and
/// the result upgrades again. Extend it whenever a stored record changes.
#[test]
fn upgrade_from_release_images_loses_nothing() {
    for release in RELEASES {
        let expected: Value = serde_json::from_slice(
            &std::fs::read(fixture(&format!("stable-{release}.expected.json"))).unwrap(),
        )
        .unwrap();
        let image = read_image(release);
        // The scalars no query shows in full (allocators, the history frontier) must come
        // through the split of the previous release's Meta field for field.
        let legacy = crate::storage::legacy::take_meta(
            crate::storage::Memories::init(std::rc::Rc::new(std::cell::RefCell::new(
                image.clone(),
            )))
            .get(crate::storage::MEMORY_LEGACY_META),
        );
        assert!(
            legacy.is_some() || *release != "v1",
            "v1 holds a legacy Meta"
        );
        let mut h = harness_on(image);
        if let Some(meta) = legacy {
            let split = meta.split();
            assert_eq!(h.state.job(), &split.job, "{release}");
            assert_eq!(h.state.open_round(), &split.open_round, "{release}");
            assert_eq!(h.state.allocators(), &split.allocators, "{release}");
            assert_eq!(h.state.history(), &split.history, "{release}");
        }
        // Fields added after these releases decode as unset, which keeps their behaviour.
        let job = h.state.job();
        assert_eq!(job.close_slice_instructions, None, "{release}");
        if let Some(c) = &job.config {
            assert_eq!(c.client.proximal_mu, None, "{release}");
            assert_eq!(c.dp, None, "{release}: no differential privacy");
            assert_eq!(
                c.secure_aggregation, None,
                "{release}: no secure aggregation"
            );
        }
        assert_eq!(h.state.open_round().close_due_ns, None, "{release}");
        assert_eq!(h.state.open_round().secagg, None, "{release}");
        assert_eq!(h.state.open_round().clip_norm, None, "{release}");
        assert_eq!(h.state.open_round().below_clip, None, "{release}");
        assert_eq!(h.state.round_info().round_clip_norm, None, "{release}");
        assert!(
            h.state
                .submissions
                .iter()
                .all(|e| e.value().0.below_clip.is_none()),
            "{release}: no upload carries a clip bit"
        );
        assert!(h.state.secagg_round().is_none(), "{release}");
        assert!(
            h.state.secagg.is_empty(),
            "{release}: the bulletin board's memory starts empty"
        );
        assert!(
            h.state
                .round_history(all())
                .items
                .iter()
                .all(|r| r.epsilon_spent.is_none() && r.adaptive_clip.is_none()),
            "{release}: no round record certifies an epsilon or a clip"
        );
        assert!(
            !h.state.wants_noise_seed(),
            "{release}: no seed is asked for"
        );
        assert!(
            !h.state.close_pending(),
            "{release}: no robust close pending"
        );
        assert_eq!(h.canister.to_text(), expected["canister_id"], "{release}");
        assert_eq!(h.controller.to_text(), expected["controller"], "{release}");
        h.now = expected["now_ns"].as_u64().unwrap();
        h.check();
        assert_json_eq(
            &as_before_job_config(&answers(&h), &expected["before"]),
            &expected["before"],
            release,
            "after the upgrade",
        );

        // A second upgrade in this release's format changes nothing, and loading writes
        // nothing.
        h.upgrade();
        assert_json_eq(
            &as_before_job_config(&answers(&h), &expected["before"]),
            &expected["before"],
            release,
            "after a second upgrade",
        );
        let image = h.mem.borrow().clone();
        drop(State::load(h.mem.clone()));
        assert!(
            image == *h.mem.borrow(),
            "image {release}: loading wrote to stable memory"
        );

        let caller =
            Principal::from_text(expected["continue"]["caller"].as_str().unwrap()).unwrap();
        let id = expected["continue"]["submission_id"].as_u64().unwrap();
        let continued = continue_round(&mut h, caller, id);
        assert_json_eq(
            &as_before_job_config(&continued, &expected["continued"]),
            &expected["continued"],
            release,
            "continuing the round",
        );
        h.upgrade();
        assert_json_eq(
            &as_before_job_config(&answers(&h), &expected["continued"]["after"]),
            &expected["continued"]["after"],
            release,
            "upgrading after the close",
        );
    }
}

/// Names the first differing field instead of printing two large documents.
fn assert_json_eq(got: &Value, want: &Value, release: &str, when: &str) {
    fn diff(got: &Value, want: &Value, path: &str) -> Option<String> {
        match (got, want) {
            (Value::Object(g), Value::Object(w)) => {
                for k in g.keys().chain(w.keys()) {
                    let (a, b) = (g.get(k), w.get(k));
                    match (a, b) {
                        (Some(a), Some(b)) => {
                            if let Some(d) = diff(a, b, &format!("{path}.{k}")) {
                                return Some(d);
                            }
                        }
                        // A field added since the image's release, absent from its
                        // expectations, must read as empty (`None`).
                        (Some(Value::Null), None) => {}
                        _ => return Some(format!("{path}.{k}: {a:?} vs {b:?}")),
                    }
                }
                None
            }
            (Value::Array(g), Value::Array(w)) if g.len() == w.len() => g
                .iter()
                .zip(w)
                .enumerate()
                .find_map(|(i, (a, b))| diff(a, b, &format!("{path}[{i}]"))),
            _ if got == want => None,
            _ => Some(format!("{path}: got {got}, want {want}")),
        }
    }
    if let Some(d) = diff(got, want, "") {
        panic!("image {release}, {when}: {d}");
    }
}
