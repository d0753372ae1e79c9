//! Aggregation rules on the canister's release wasm: a robust round's deltas wait in their
//! staging slots through an upgrade and the close computes exactly what the protocol's
//! driver computes natively; a rule the job's sizes cannot hold is refused.

use flic_protocol::api::{AdminError, JobConfig};
use flic_protocol::fedavg::{apply_update, finalize_factor};
use flic_protocol::rules::{aggregate, AggregationRule, RoundContribution};
use flic_protocol::{model_version, DeltaEncoding, Hash};
use flic_tests::embedded::EmbeddedEnv;
use flic_tests::env::IcEnv;
use flic_tests::fixture::{delta, initial_weights, job, Fixture, Upload};

fn expected(
    f: &Fixture<EmbeddedEnv>,
    rule: &AggregationRule,
    uploads: &[&Upload],
    frac_bits: u32,
) -> Hash {
    let contributions: Vec<RoundContribution> = uploads
        .iter()
        .map(|u| RoundContribution {
            encoding: u.args.header.encoding,
            weight: u.args.header.sample_count.min(f.job.max_weight),
            key: u.args.header.header_hash(),
        })
        .collect();
    let payloads: Vec<Vec<u8>> = uploads.iter().map(|u| u.payload.clone()).collect();
    let mut weights = initial_weights();
    let mut a = vec![0i64; weights.len()];
    let mut source: &[Vec<u8>] = &payloads;
    let d = aggregate(
        rule,
        &contributions,
        weights.len() as u64,
        frac_bits,
        &mut source,
        &mut |first, v| a[first as usize..first as usize + v.len()].copy_from_slice(v),
    );
    apply_update(
        &mut weights,
        &a,
        finalize_factor(d, frac_bits),
        f.job.server_lr,
    );
    Hash::new(model_version(&f.job.model_spec.spec_id(), &weights))
}

#[test]
fn robust_rounds_survive_an_upgrade_and_close_as_the_driver_computes() {
    for rule in [
        AggregationRule::Median,
        AggregationRule::TrimmedMean { beta: 0.25 },
        AggregationRule::Krum { f: 1 },
        AggregationRule::MultiKrum { f: 1, m: 2 },
        AggregationRule::CenteredClip { iters: 2 },
        AggregationRule::Bulyan { f: 0 },
    ] {
        let job = JobConfig {
            min_clients: 5,
            max_clients: 5,
            aggregation: Some(rule),
            ..job()
        };
        let mut f = Fixture::new(EmbeddedEnv::new(), 5, job);
        let frac_bits = f.round_info().frac_bits;
        // Mixed encodings; one outlier the robust rules must not follow.
        let uploads: Vec<Upload> = (0..5)
            .map(|c| {
                let mut d = delta(c, 0);
                if c == 4 {
                    d.iter_mut().for_each(|x| *x = -*x * 3.0);
                }
                let enc = if c % 2 == 0 {
                    DeltaEncoding::F32
                } else {
                    DeltaEncoding::Int8Blocks
                };
                f.prepare(c, &d, enc)
            })
            .collect();
        for (c, up) in uploads.iter().enumerate().take(3) {
            let id = f.begin(c, up).unwrap().submission_id;
            for i in 0..up.chunk_count() {
                f.put(c, id, i, up.chunk(i)).unwrap();
            }
            f.commit(c, id).unwrap();
        }
        // An upgrade with three deltas waiting in their slots.
        let wasm = f.wasm.clone();
        let arg = candid::encode_one(flic_protocol::api::InitArg::Upgrade(None)).unwrap();
        let (canister, admin) = (f.canister, f.admin);
        f.env.upgrade(canister, &wasm, arg, admin).unwrap();
        for (c, up) in uploads.iter().enumerate().skip(3) {
            let id = f.begin(c, up).unwrap().submission_id;
            for i in 0..up.chunk_count() {
                f.put(c, id, i, up.chunk(i)).unwrap();
            }
            f.commit(c, id).unwrap();
        }
        let info = f.round_info();
        assert_eq!(info.round, 1, "{rule}: closed at max_clients");
        let refs: Vec<&Upload> = uploads.iter().collect();
        assert_eq!(
            info.model_version.unwrap(),
            expected(&f, &rule, &refs, frac_bits),
            "{rule}: the canister's close is the protocol's driver, bit for bit"
        );
        assert_eq!(info.pending, 0);
    }
}

#[test]
fn a_rule_the_round_sizes_cannot_hold_is_refused() {
    let mut f = Fixture::new(EmbeddedEnv::new(), 0, job());
    let fresh = f.another_canister_empty();
    for (rule, min_clients) in [
        (AggregationRule::Krum { f: 1 }, 4),
        (AggregationRule::MultiKrum { f: 1, m: 5 }, 5),
        (AggregationRule::TrimmedMean { beta: 0.5 }, 5),
    ] {
        let bad = JobConfig {
            min_clients,
            max_clients: 10,
            aggregation: Some(rule),
            ..job()
        };
        let r = f.on_canister(fresh, |f| f.admin_call::<_, u64>("configure_job", (&bad,)));
        assert!(
            matches!(r, Err(AdminError::InvalidConfig { .. })),
            "{rule} with min_clients {min_clients}: {r:?}"
        );
    }
    // A robust close runs across messages, so the model's size no longer bounds it: a
    // 4e6-parameter job at 100 contributions per round is accepted with centered clipping.
    // One window must still fit a slice, and Krum's pairwise distances grow with K^2: at
    // 2,000 contributions per round even the smallest window does not, and the job is
    // refused, naming it.
    let sized = |params: u64, clients: u32, rule| JobConfig {
        model_spec: flic_protocol::ModelSpec {
            architecture: "big".into(),
            config_json: "{}".into(),
            tensors: vec![flic_protocol::TensorSpec {
                name: "w".into(),
                shape: vec![params],
                offset: 0,
            }],
        },
        min_clients: 10,
        max_clients: clients,
        aggregation: Some(rule),
        chunk_size: Some(flic_protocol::chunking::MAX_CHUNK_SIZE),
        ..job()
    };
    let krum = sized(1_000, 2_000, AggregationRule::Krum { f: 3 });
    match f.on_canister(fresh, |f| f.admin_call::<_, u64>("configure_job", (&krum,))) {
        Err(AdminError::InvalidConfig { reason }) => {
            assert!(reason.contains("window"), "{reason}")
        }
        other => panic!("Krum at 2,000 contributions should not fit: {other:?}"),
    }
    let cc = sized(4_000_000, 100, AggregationRule::CenteredClip { iters: 5 });
    let fits = f.on_canister(fresh, |f| f.admin_call::<_, u64>("configure_job", (&cc,)));
    assert!(
        fits.is_ok(),
        "centered clipping at 4e6 x 100 fits: {fits:?}"
    );
}

/// A server optimizer's state lives in stable memory: an upgrade between rounds (and one
/// inside a round) loses none of it, and each round's version is what the protocol's
/// optimizer computes natively from the carried state.
#[test]
fn optimizer_state_survives_upgrades() {
    use flic_protocol::fedavg::Accumulator;
    use flic_protocol::optimizers::ServerOptimizer;
    for optimizer in [
        ServerOptimizer::Momentum { beta: 0.9 },
        ServerOptimizer::Adam {
            beta1: 0.9,
            beta2: 0.99,
            tau: 1e-3,
        },
    ] {
        let job = JobConfig {
            min_clients: 3,
            max_clients: 3,
            server_optimizer: Some(optimizer),
            server_lr: 0.05,
            ..job()
        };
        let mut f = Fixture::new(EmbeddedEnv::new(), 3, job);
        let frac_bits = f.round_info().frac_bits;
        let mut weights = initial_weights();
        let (mut m, mut v) = (vec![0f32; weights.len()], vec![0f32; weights.len()]);
        for round in 0..3u64 {
            let uploads: Vec<Upload> = (0..3)
                .map(|c| f.prepare(c, &delta(c, round), DeltaEncoding::F32))
                .collect();
            let mut acc = Accumulator::new(weights.len(), f.job.limits(), frac_bits).unwrap();
            for (c, up) in uploads.iter().enumerate() {
                acc.add(
                    up.args.header.encoding,
                    &up.payload,
                    up.args.header.sample_count,
                )
                .unwrap();
                if c == 1 {
                    // An upgrade inside the round, after two commits.
                    let wasm = f.wasm.clone();
                    let arg =
                        candid::encode_one(flic_protocol::api::InitArg::Upgrade(None)).unwrap();
                    let (canister, admin) = (f.canister, f.admin);
                    f.env.upgrade(canister, &wasm, arg, admin).unwrap();
                }
                let id = f.begin(c, up).unwrap().submission_id;
                for i in 0..up.chunk_count() {
                    f.put(c, id, i, up.chunk(i)).unwrap();
                }
                f.commit(c, id).unwrap();
            }
            let (sv, vv) = match optimizer.state_vectors() {
                1 => (&mut m[..], &mut [][..]),
                _ => (&mut m[..], &mut v[..]),
            };
            optimizer.apply(
                &mut weights,
                acc.values(),
                finalize_factor(acc.total_weight(), frac_bits),
                f.job.server_lr,
                sv,
                vv,
            );
            let info = f.round_info();
            assert_eq!(info.round, round + 1);
            assert_eq!(
                info.model_version.unwrap(),
                Hash::new(model_version(&f.job.model_spec.spec_id(), &weights)),
                "{optimizer}, round {round}"
            );
            // And an upgrade between rounds.
            let wasm = f.wasm.clone();
            let arg = candid::encode_one(flic_protocol::api::InitArg::Upgrade(None)).unwrap();
            let (canister, admin) = (f.canister, f.admin);
            f.env.upgrade(canister, &wasm, arg, admin).unwrap();
        }
    }
}

/// A robust close that does not fit one message goes on in the following timer messages,
/// window by window, while the round refuses submissions; an upgrade in the middle drops
/// the progress and the close starts again from the staged deltas. The version is the
/// driver's, bit for bit, however the close was cut.
#[test]
fn a_robust_close_spans_messages_and_survives_an_upgrade() {
    use flic_protocol::api::{InitArg, SubmitError, UpgradeArgs};
    let rule = AggregationRule::CenteredClip { iters: 2 };
    let job = JobConfig {
        min_clients: 5,
        max_clients: 5,
        aggregation: Some(rule),
        ..job()
    };
    let mut f = Fixture::new(EmbeddedEnv::new(), 6, job);
    let frac_bits = f.round_info().frac_bits;
    let (canister, admin, wasm) = (f.canister, f.admin, f.wasm.clone());
    let upgrade = |f: &mut Fixture<EmbeddedEnv>, slice: Option<u64>| {
        let arg = candid::encode_one(InitArg::Upgrade(Some(UpgradeArgs {
            round_duration_ns: None,
            close_slice_instructions: slice,
        })))
        .unwrap();
        f.env.upgrade(canister, &wasm, arg, admin).unwrap();
    };
    // The smallest slice: one window per message (the fixture's model is one window).
    upgrade(
        &mut f,
        Some(flic_protocol::api::MIN_CLOSE_SLICE_INSTRUCTIONS),
    );
    let uploads: Vec<Upload> = (0..5)
        .map(|c| f.prepare(c, &delta(c, 0), DeltaEncoding::F32))
        .collect();
    let mut last = None;
    for (c, up) in uploads.iter().enumerate() {
        let id = f.begin(c, up).unwrap().submission_id;
        for i in 0..up.chunk_count() {
            f.put(c, id, i, up.chunk(i)).unwrap();
        }
        last = Some(f.commit(c, id).unwrap());
    }
    let receipt = last.unwrap();
    assert!(
        !receipt.round_closed,
        "the close goes on after the last commit"
    );
    assert_eq!(f.round_info().round, 0);
    let late = f.prepare(5, &delta(5, 0), DeltaEncoding::F32);
    assert!(
        matches!(
            f.begin(5, &late),
            Err(SubmitError::RoundClosing { round: 0 })
        ),
        "a closing round takes no submissions"
    );
    // One timer message: still closing. Then an upgrade drops the progress (the slice
    // setting stays), and the close starts again.
    f.env.advance_time(std::time::Duration::from_millis(10));
    assert_eq!(f.round_info().round, 0);
    upgrade(&mut f, None);
    let mut messages = 0;
    while f.round_info().round == 0 {
        messages += 1;
        assert!(messages <= 10, "the close does not end");
        f.env.advance_time(std::time::Duration::from_millis(10));
    }
    // Three passes of one window, then the finalisation: four messages after the upgrade.
    assert_eq!(messages, 4, "one window per message");
    let refs: Vec<&Upload> = uploads.iter().collect();
    assert_eq!(
        f.round_info().model_version.unwrap(),
        expected(&f, &rule, &refs, frac_bits),
        "the sliced close is the driver's, bit for bit"
    );
    // The next round takes submissions again.
    let next = f.prepare(5, &delta(5, 1), DeltaEncoding::F32);
    assert!(f.begin(5, &next).is_ok());
}
