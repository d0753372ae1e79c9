//! Central differential privacy in the core: rounds wait for their noise seed, the noise
//! has the calibrated scale, every record certifies the epsilon spent, and the budget
//! pauses the job for good.

use flic_protocol::privacy::{self, DpConfig, DpMode};

use super::*;

fn dp(noise_multiplier: f64, target_epsilon: f64) -> DpConfig {
    DpConfig {
        mode: DpMode::Central,
        noise_multiplier,
        target_epsilon,
        delta: 1e-5,
        adaptive_clip: None,
    }
}

fn dp_job(d: DpConfig) -> JobConfig {
    JobConfig {
        dp: Some(d),
        max_weight: 1,
        ..config()
    }
}

/// Commits one delta from each client (the last reaches `max_clients`).
fn commit_round(h: &mut Harness, clients: &[Client], salt: u64) -> Vec<CommitReceipt> {
    clients
        .iter()
        .enumerate()
        .map(|(i, c)| h.submit(c, &delta(salt + i as u64), DeltaEncoding::F32, 100))
        .collect()
}

#[test]
fn a_dp_round_waits_for_its_seed_then_adds_noise_of_the_calibrated_scale() {
    let d = dp(2.0, 50.0);
    let mut h = Harness::running_with(dp_job(d));
    assert!(
        h.state.wants_noise_seed(),
        "the first round asks for its seed"
    );
    let clients: Vec<Client> = (1..=3).map(|i| h.client(i, 100)).collect();
    let receipts = commit_round(&mut h, &clients, 10);
    assert!(receipts.iter().all(|r| r.weight == 1));
    // At max_clients without a seed: the close waits and the round takes nothing more.
    assert!(!receipts[2].round_closed);
    assert!(h.state.close_pending());
    assert_eq!(h.state.round_info().round, 0);
    assert_eq!(h.state.timer_deadline(), 1, "the timer asks for the seed");
    h.state.seed_requested = true;
    assert_eq!(
        h.state.timer_deadline(),
        0,
        "the seed's arrival closes the round"
    );
    let late = h.client(9, 100);
    let bytes = encode(DeltaEncoding::F32, &delta(99)).unwrap();
    let header = h.header(&late, DeltaEncoding::F32, &bytes, 100);
    let args = h.args(&late, header, &bytes);
    let ctx = h.ctx(late.principal);
    rejects!(
        h,
        h.state.begin_submission(&ctx, args.clone()),
        SubmitError::RoundClosing { .. }
    );

    h.state.receive_noise_seed([7; 32], h.now);
    h.check();
    assert!(!h.state.seed_requested);
    let info = h.state.round_info();
    assert_eq!(info.round, 1);
    let record = h.state.round_history(PageArgs { start: 0, limit: 1 }).items[0].clone();
    assert_eq!(record.epsilon_spent, Some(d.epsilon_after(1)));
    assert_eq!(record.total_weight, 3);
    // The seed is used up; round 1 asks for its own.
    assert!(h.state.noise_seed.is_none() && h.state.wants_noise_seed());

    // The same contributions without noise, then what the noise did to each weight.
    let cfg = dp_job(d);
    let frac_bits = cfg.limits().safe_frac_bits().unwrap();
    let mut acc = Accumulator::new(PARAMS as usize, cfg.limits(), frac_bits).unwrap();
    for i in 0..3 {
        let bytes = encode(DeltaEncoding::F32, &delta(10 + i)).unwrap();
        acc.add(DeltaEncoding::F32, &bytes, 1).unwrap();
    }
    let plain = acc.apply(&initial_weights(), cfg.server_lr).unwrap();
    let noisy = h.weights();
    assert_eq!(
        record.new_version.into_array(),
        model_version(&spec().spec_id(), &noisy)
    );
    let diffs: Vec<f64> = noisy
        .iter()
        .zip(&plain)
        .map(|(a, b)| *a as f64 - *b as f64)
        .collect();
    let n = diffs.len() as f64;
    let mean = diffs.iter().sum::<f64>() / n;
    let std = (diffs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    // sigma * sensitivity on the sum, over the 3 contributions' weight.
    let expected = privacy::noise_std_fixed(&d, cfg.clip_norm, 1, frac_bits, PARAMS)
        / (frac_bits as f64).exp2()
        / 3.0;
    assert!(
        (std / expected - 1.0).abs() < 0.15,
        "noise std {std}, calibrated {expected}"
    );
    assert!(mean.abs() < 4.0 * expected / n.sqrt(), "noise mean {mean}");
}

#[test]
fn the_budget_pauses_the_job_and_resume_refuses_to_spend_more() {
    // Just enough noise for two rounds within epsilon 10.
    let z = privacy::noise_for_budget(10.0, 1e-5, 2).unwrap();
    let d = dp(z, 10.0);
    assert_eq!(d.rounds_within_budget(), 2);
    let mut h = Harness::running_with(dp_job(d));
    let clients: Vec<Client> = (1..=3).map(|i| h.client(i, 100)).collect();
    for round in 0..2u64 {
        // The seed may come first: then the commit that reaches max_clients closes.
        h.state.receive_noise_seed([round as u8 + 1; 32], h.now);
        let receipts = commit_round(&mut h, &clients, 10 * round);
        assert!(receipts[2].round_closed);
    }
    let info = h.state.round_info();
    assert_eq!((info.round, info.state), (2, JobState::Paused));
    assert!(!h.state.wants_noise_seed());
    let records = h.records();
    let spent: Vec<f64> = records.iter().map(|r| r.epsilon_spent.unwrap()).collect();
    assert_eq!(spent, vec![d.epsilon_after(1), d.epsilon_after(2)]);
    assert!(spent[1] <= 10.0 && d.epsilon_after(3) > 10.0);
    let admin = h.admin();
    rejects!(
        h,
        h.state.resume_job(&admin),
        AdminError::PrivacyBudgetSpent { rounds: 2, .. }
    );
    // The budget and what is left of it are public.
    let (status, json) = get_json(&h, "/api/status");
    assert_eq!(status, 200);
    let p = &json["privacy"];
    assert_eq!(p["mode"], "central");
    assert_eq!(p["epsilon_spent"].as_f64(), Some(d.epsilon_after(2)));
    assert_eq!(p["target_epsilon"].as_f64(), Some(10.0));
    assert_eq!(p["rounds_within_budget"].as_u64(), Some(2));
    let (_, page) = get(&h, "GET", "/");
    let html = String::from_utf8(page.body.to_vec()).unwrap();
    assert!(html.contains("privacy budget spent (central DP)"), "{html}");
    assert!(html.contains("0 of 2"), "rounds left");
    let (_, rounds) = get_json(&h, "/api/rounds");
    assert_eq!(
        rounds["items"][1]["epsilon_spent"].as_f64(),
        Some(d.epsilon_after(2))
    );
}

#[test]
fn an_upgrade_drops_the_seed_and_a_waiting_close_asks_again() {
    let d = dp(1.5, 50.0);
    let mut h = Harness::running_with(dp_job(d));
    let clients: Vec<Client> = (1..=3).map(|i| h.client(i, 100)).collect();
    h.state.receive_noise_seed([3; 32], h.now);
    h.upgrade();
    assert!(
        h.state.wants_noise_seed(),
        "the seed lived on the heap only"
    );
    commit_round(&mut h, &clients, 0);
    assert!(h.state.close_pending());
    // The deadline passes too: the round still waits, with the deadline it had.
    h.now += DURATION;
    h.state.on_timer(h.now);
    assert_eq!(h.state.round_info().round, 0);
    // An upgrade while the close waits: still closing (the wait is in the open round's
    // record), nothing a query shows changes, and the timer asks at once.
    let before = h.state.round_info();
    h.upgrade();
    assert_eq!(before, h.state.round_info());
    assert!(h.state.close_pending());
    assert_eq!(h.state.timer_deadline(), 1);
    h.state.on_timer(h.now);
    assert_eq!(h.state.round_info().round, 0);
    h.state.receive_noise_seed([4; 32], h.now);
    h.check();
    assert_eq!(h.state.round_info().round, 1);
    // A seed nobody asked for (another job, or a duplicate) changes nothing once used.
    let before = h.snapshot();
    h.state.noise_seed = Some([5; 32]);
    h.state.receive_noise_seed([6; 32], h.now);
    assert_eq!(h.state.noise_seed, Some([5; 32]));
    h.state.noise_seed = None;
    assert_eq!(before, h.snapshot());
}

#[test]
fn dp_configurations_are_checked() {
    let mut h = Harness::new();
    let admin = h.admin();
    let bad = [
        JobConfig {
            aggregation: Some(flic_protocol::rules::AggregationRule::Median),
            ..dp_job(dp(1.0, 50.0))
        },
        dp_job(DpConfig {
            mode: DpMode::Distributed,
            ..dp(1.0, 50.0)
        }),
        dp_job(dp(0.1, 1.0)),
        dp_job(dp(f64::NAN, 1.0)),
        dp_job(DpConfig {
            delta: 0.0,
            ..dp(1.0, 50.0)
        }),
        // Adaptive clipping: a quantile outside (0, 1), a count noise that leaves the
        // update nothing, and distributed DP.
        dp_job(DpConfig {
            adaptive_clip: Some(privacy::AdaptiveClip::new(1.0, 1.0)),
            ..dp(1.0, 50.0)
        }),
        dp_job(DpConfig {
            adaptive_clip: Some(privacy::AdaptiveClip {
                count_noise_std: 0.4,
                ..privacy::AdaptiveClip::new(0.5, 1.0)
            }),
            ..dp(1.0, 50.0)
        }),
        dp_job(DpConfig {
            mode: DpMode::Distributed,
            adaptive_clip: Some(privacy::AdaptiveClip::new(0.5, 1.0)),
            ..dp(1.0, 50.0)
        }),
    ];
    for config in bad {
        rejects!(
            h,
            h.state.configure_job(&admin, config.clone()),
            AdminError::InvalidConfig { .. }
        );
    }
    h.state
        .configure_job(&admin, dp_job(dp(1.0, 50.0)))
        .unwrap();
    h.check();
}

/// Begins, uploads and commits `d` with the adaptive-clipping bit `below_clip`.
fn submit_with_bit(
    h: &mut Harness,
    c: &Client,
    d: &[f32],
    below_clip: Option<bool>,
) -> Result<CommitReceipt, SubmitError> {
    let bytes = encode(DeltaEncoding::F32, d).unwrap();
    let header = h.header(c, DeltaEncoding::F32, &bytes, 100);
    let args = BeginSubmissionArgs {
        below_clip,
        ..h.args(c, header, &bytes)
    };
    let s = h.state.begin_submission(&h.ctx(c.principal), args)?;
    h.put_all(c, s.submission_id, &bytes);
    let receipt = h
        .state
        .commit_submission(&h.ctx(c.principal), s.submission_id);
    h.check();
    receipt
}

fn scaled(d: &[f32], norm: f32) -> Vec<f32> {
    let now = d.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    d.iter()
        .map(|x| (*x as f64 * norm as f64 / now) as f32)
        .collect()
}

#[test]
fn adaptive_clipping_moves_the_clip_by_the_noised_count_and_every_record_chains() {
    use flic_protocol::privacy::adaptive_clip::{count_noise, ClipChain};
    use flic_protocol::privacy::AdaptiveClip;
    let clip = AdaptiveClip::new(0.5, 1.0);
    let d = DpConfig {
        adaptive_clip: Some(clip),
        ..dp(1.0, 50.0)
    };
    let cfg = dp_job(d);
    let mut h = Harness::running_with(cfg.clone());
    let max_clip = cfg.clip_norm;
    assert_eq!(h.state.round_info().round_clip_norm, Some(max_clip));
    let clients: Vec<Client> = (1..=3).map(|i| h.client(i, 100)).collect();
    // The bit is required, and only by jobs that clip adaptively.
    let bytes = encode(DeltaEncoding::F32, &delta(1)).unwrap();
    let header = h.header(&clients[0], DeltaEncoding::F32, &bytes, 100);
    let args = h.args(&clients[0], header, &bytes);
    let ctx = h.ctx(clients[0].principal);
    rejects!(
        h,
        h.state.begin_submission(&ctx, args),
        SubmitError::ClipBit { expected: true }
    );

    // Round 0 clips to the job's clip_norm; every norm is at it, so every bit is set.
    h.state.receive_noise_seed([1; 32], h.now);
    for (i, c) in clients.iter().enumerate() {
        submit_with_bit(&mut h, c, &delta(10 + i as u64), Some(true)).unwrap();
    }
    assert_eq!(h.state.round_info().round, 1);
    let r0 = h.state.round_history(PageArgs { start: 0, limit: 1 }).items[0].clone();
    let rc = r0.adaptive_clip.expect("the record publishes the clip");
    assert_eq!(rc.clip_norm, max_clip);
    assert_eq!(
        rc.noised_count,
        3.0 + count_noise(&[1; 32], 0, clip.count_noise_std),
        "the count plus the noise from the round's seed"
    );
    let c1 = clip.next_clip(max_clip, rc.noised_count, 3, max_clip);
    assert_eq!(h.state.round_info().round_clip_norm, Some(c1));
    assert_eq!(h.state.round_info().clip_norm(), Some(c1));

    // Round 1 refuses a delta above its clip (the canister checks the round's, not the
    // job's), and keeps its count across an upgrade.
    h.state.receive_noise_seed([2; 32], h.now);
    assert!(
        c1 < max_clip,
        "this seed's count is above the quantile: {rc:?}"
    );
    let other = h.client(4, 100);
    let err = submit_with_bit(&mut h, &other, &scaled(&delta(20), max_clip), Some(false));
    assert!(matches!(err, Err(SubmitError::InvalidDelta(_))), "{err:?}");
    submit_with_bit(&mut h, &clients[0], &scaled(&delta(21), c1), Some(false)).unwrap();
    let before = h.state.round_info();
    h.upgrade();
    assert_eq!(before, h.state.round_info());
    h.state.receive_noise_seed([2; 32], h.now);
    for (i, c) in clients.iter().enumerate().skip(1) {
        submit_with_bit(&mut h, c, &scaled(&delta(22 + i as u64), c1), Some(i == 2)).unwrap();
    }
    let records = h.records();
    assert_eq!(records.len(), 2);
    let r1 = records[1].adaptive_clip.unwrap();
    assert_eq!(r1.clip_norm, c1);
    assert_eq!(
        r1.noised_count,
        1.0 + count_noise(&[2; 32], 1, clip.count_noise_std)
    );
    // Anyone recomputes the chain from the records, and a forged clip breaks it.
    let mut chain = ClipChain::new(clip, max_clip);
    for r in &records {
        let c = r.adaptive_clip.unwrap();
        chain
            .step(c.clip_norm, c.noised_count, r.contribution_count)
            .unwrap();
    }
    assert_eq!(Some(chain.expected()), h.state.round_info().round_clip_norm);
    let mut forged = ClipChain::new(clip, max_clip);
    assert!(forged.step(max_clip * 0.5, 3.0, 3).is_err());
    // The epsilon is the job's: the count's noise is inside the round's multiplier.
    assert_eq!(records[1].epsilon_spent, Some(d.epsilon_after(2)));
    let (_, rounds) = get_json(&h, "/api/rounds");
    assert_eq!(rounds["items"][1]["clip_norm"].as_f64(), Some(c1 as f64));
    let (_, status) = get_json(&h, "/api/status");
    assert_eq!(
        status["privacy"]["adaptive_clip"]["round_clip_norm"].as_f64(),
        h.state.round_info().round_clip_norm.map(f64::from)
    );
}

#[test]
fn a_job_without_adaptive_clipping_refuses_the_bit() {
    let mut h = Harness::running_with(dp_job(dp(1.0, 50.0)));
    assert_eq!(h.state.round_info().round_clip_norm, None);
    let c = h.client(1, 100);
    let bytes = encode(DeltaEncoding::F32, &delta(1)).unwrap();
    let header = h.header(&c, DeltaEncoding::F32, &bytes, 100);
    let args = BeginSubmissionArgs {
        below_clip: Some(true),
        ..h.args(&c, header, &bytes)
    };
    let ctx = h.ctx(c.principal);
    rejects!(
        h,
        h.state.begin_submission(&ctx, args),
        SubmitError::ClipBit { expected: false }
    );
}

/// The release before adaptive clipping stored DP configurations without its field (no
/// stable-memory image holds one: v2 predates DP); they decode as a fixed clip.
#[test]
fn a_dp_configuration_of_the_previous_release_decodes_with_a_fixed_clip() {
    use crate::storage::records::{DpConfigRecord, DpModeRecord};
    use candid::{CandidType, Decode, Deserialize, Encode};
    #[derive(CandidType)]
    struct Before {
        mode: DpModeRecord,
        noise_multiplier: f64,
        target_epsilon: f64,
        delta: f64,
    }
    #[derive(CandidType)]
    struct JobBefore {
        dp: Option<Before>,
    }
    #[derive(CandidType, Deserialize)]
    struct JobNow {
        dp: Option<DpConfigRecord>,
    }
    let written = Encode!(&JobBefore {
        dp: Some(Before {
            mode: DpModeRecord::Central,
            noise_multiplier: 1.5,
            target_epsilon: 9.0,
            delta: 1e-5,
        }),
    })
    .unwrap();
    let read = Decode!(&written, JobNow).unwrap();
    assert_eq!(read.dp.map(DpConfig::from), Some(dp(1.5, 9.0)));
}
