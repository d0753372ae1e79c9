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
}
