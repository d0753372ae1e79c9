//! Secure aggregation in the core, driven by `flic_protocol::secagg::participant` as real
//! clients drive it: the unmasked sum is FedAvg's over the survivors bit for bit at 0, 10
//! and 30 % dropped (at every phase), phases end on their deadlines, a round that loses
//! too many starts over without those that vanished, and nothing the canister stores holds
//! a contribution in the clear.

use flic_protocol::secagg::keys::{AdvertisedKeys, RoundContext};
use flic_protocol::secagg::participant::{Peer, Session};
use flic_protocol::secagg::{masked_bytes, SecAggConfig};

use super::*;

const PHASE: u64 = 60_000_000_000;

fn sa_job(max_dropout_fraction: f64, max_clients: u32) -> JobConfig {
    JobConfig {
        allowed_encodings: vec![DeltaEncoding::Masked],
        secure_aggregation: Some(SecAggConfig {
            max_dropout_fraction,
            phase_duration_ns: PHASE,
        }),
        retain_contributions: false,
        min_clients: 3,
        max_clients,
        ..config()
    }
}

/// Where a participant drops out: it does not do this phase or any later one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Leave {
    Advertise,
    Share,
    Input,
    Reveal,
}

struct Round {
    /// Clients (by position in the list) whose masked inputs count.
    survivors: Vec<usize>,
    /// Every committed masked input's bytes (for the memory scan).
    plain: Vec<(Vec<f32>, u64)>,
}

/// `c`'s advertisement of `keys` for `round` with `signature`.
fn advertise_args(
    c: &Client,
    keys: AdvertisedKeys,
    signature: [u8; 64],
    round: u64,
) -> AdvertiseKeysArgs {
    AdvertiseKeysArgs {
        round,
        public_key: ByteBuf::from(c.key.verifying_key().to_bytes().to_vec()),
        c_public: ByteBuf::from(keys.c_public.to_vec()),
        s_public: ByteBuf::from(keys.s_public.to_vec()),
        self_seed_commitment: ByteBuf::from(keys.self_seed_commitment.to_vec()),
        signature: ByteBuf::from(signature.to_vec()),
    }
}

fn advertise(c: &Client, s: &Session, round: u64) -> AdvertiseKeysArgs {
    advertise_args(c, s.keys(), s.sign(&c.key), round)
}

fn peers(h: &Harness) -> (Vec<Peer>, SecAggRound) {
    let view = h.state.secagg_round().expect("secure aggregation");
    let peers = view
        .participants
        .iter()
        .map(|p| Peer {
            index: p.index,
            principal: p.principal,
            identity: p.public_key.as_slice().try_into().unwrap(),
            keys: AdvertisedKeys {
                c_public: p.c_public.as_slice().try_into().unwrap(),
                s_public: p.s_public.as_slice().try_into().unwrap(),
                self_seed_commitment: p.self_seed_commitment.as_slice().try_into().unwrap(),
            },
            signature: p.signature.to_vec(),
            shared: p.shared,
            masked: p.masked,
        })
        .collect();
    (peers, view)
}

fn to_deadline(h: &mut Harness) {
    h.now = h.state.secagg_round().unwrap().phase_deadline_ns;
    h.state.on_timer(h.now);
    h.check();
}

/// One secure-aggregation round of `clients`, `drops[k]` saying where client `k` drops
/// out (if it does); `pause` runs between the masked inputs and the unmasking.
fn run_round(
    h: &mut Harness,
    clients: &[Client],
    drops: &[Option<Leave>],
    salt: u64,
    pause: &mut dyn FnMut(&mut Harness, &[(Vec<f32>, u64)]),
) -> Round {
    let info = h.state.round_info();
    let ctx = RoundContext {
        canister_id: h.canister.as_slice().to_vec(),
        job_id: info.job_id,
        round: info.round,
    };
    let acts = |k: usize, phase: Leave| drops[k].is_none_or(|d| d > phase);
    let mut sessions: Vec<Option<(u32, Session)>> = Vec::new();
    for (k, c) in clients.iter().enumerate() {
        if !acts(k, Leave::Advertise) {
            sessions.push(None);
            continue;
        }
        let s = Session::new(
            ctx.clone(),
            flic_protocol::hash::sha256_concat(&[&[k as u8], &salt.to_le_bytes()]),
        );
        let args = advertise(c, &s, info.round);
        let index = h.state.secagg_advertise(&h.ctx(c.principal), args).unwrap();
        h.check();
        sessions.push(Some((index, s)));
    }
    if h.state.secagg_round().unwrap().phase == SecAggPhase::AdvertiseKeys {
        to_deadline(h);
    }
    assert_eq!(
        h.state.secagg_round().unwrap().phase,
        SecAggPhase::ShareKeys
    );
    let (list, view) = peers(h);
    for (k, c) in clients.iter().enumerate() {
        if let (true, Some((me, s))) = (acts(k, Leave::Share), sessions[k].as_mut()) {
            let envelopes = s.envelopes(*me, &list, view.threshold).unwrap();
            let args = PostSharesArgs {
                round: info.round,
                envelopes: envelopes.into_iter().map(ByteBuf::from).collect(),
            };
            h.state
                .secagg_post_shares(&h.ctx(c.principal), args)
                .unwrap();
            h.check();
        }
    }
    if h.state.secagg_round().unwrap().phase == SecAggPhase::ShareKeys {
        to_deadline(h);
    }
    assert_eq!(
        h.state.secagg_round().unwrap().phase,
        SecAggPhase::MaskedInput
    );
    let (list, _) = peers(h);
    let frac_bits = h.state.job().frac_bits;
    let max_weight = h.state.job().config().max_weight;
    let mut survivors = Vec::new();
    let mut plain = Vec::new();
    for (k, c) in clients.iter().enumerate() {
        let Some((me, s)) = sessions[k].as_ref() else {
            continue;
        };
        if !list[*me as usize].shared || !acts(k, Leave::Input) {
            continue;
        }
        let d = delta(salt + k as u64);
        let samples = 50 + 10 * k as u64;
        let weight = samples.min(max_weight);
        // Distributed DP: the client's share of the noise, for the round's threshold.
        let noise = h
            .state
            .round_info()
            .config
            .unwrap()
            .client_noise(frac_bits, h.state.secagg_round().unwrap().threshold)
            .unwrap();
        let words = s
            .masked_input(*me, &list, &d, weight, frac_bits, noise)
            .unwrap();
        let bytes = masked_bytes(&words);
        let st = h.begin(c, &bytes, DeltaEncoding::Masked, samples);
        h.put_all(c, st.submission_id, &bytes);
        let receipt = h
            .state
            .commit_submission(&h.ctx(c.principal), st.submission_id)
            .unwrap();
        h.check();
        assert!(
            !receipt.round_closed,
            "a commit never closes a secure round"
        );
        survivors.push(k);
        plain.push((d, samples));
    }
    if h.state.secagg_round().unwrap().phase == SecAggPhase::MaskedInput {
        to_deadline(h);
    }
    assert_eq!(h.state.secagg_round().unwrap().phase, SecAggPhase::Unmask);
    pause(h, &plain);
    let (list, view) = peers(h);
    for (k, c) in clients.iter().enumerate() {
        let Some((me, s)) = sessions[k].as_ref() else {
            continue;
        };
        if !list[*me as usize].masked || !acts(k, Leave::Reveal) {
            continue;
        }
        if h.state.round_info().round != info.round {
            break; // the threshold was reached: the round closed
        }
        let inbox: Vec<(u32, Vec<u8>)> = h
            .state
            .secagg_inbox(c.principal, info.round)
            .into_iter()
            .map(|e| (e.from, e.ciphertext.into_vec()))
            .collect();
        let shares = s.reveal(*me, &list, &inbox, view.threshold).unwrap();
        let args = RevealSharesArgs {
            round: info.round,
            shares: shares.into_iter().map(ByteBuf::from).collect(),
        };
        h.state.secagg_reveal(&h.ctx(c.principal), args).unwrap();
        h.check();
    }
    assert_eq!(
        h.state.round_info().round,
        info.round + 1,
        "the round closed"
    );
    Round { survivors, plain }
}

/// FedAvg of `plain` (f32 deltas and sample counts) without masking, from the initial
/// weights.
fn plain_fedavg(cfg: &JobConfig, plain: &[(Vec<f32>, u64)]) -> Vec<f32> {
    let frac_bits = cfg.validate().unwrap();
    let mut acc = Accumulator::new(PARAMS as usize, cfg.limits(), frac_bits).unwrap();
    for (d, samples) in plain {
        let bytes = encode(DeltaEncoding::F32, d).unwrap();
        acc.add(DeltaEncoding::F32, &bytes, *samples).unwrap();
    }
    acc.apply(&initial_weights(), cfg.server_lr).unwrap()
}

/// Every 32-byte window of a contribution in the clear: its `f32` bytes, and its
/// weighted fixed-point words.
fn in_the_clear(plain: &[(Vec<f32>, u64)], frac_bits: u32, max_weight: u64) -> Vec<Vec<u8>> {
    let mut needles = Vec::new();
    for (d, samples) in plain {
        let f32s: Vec<u8> = d.iter().flat_map(|x| x.to_le_bytes()).collect();
        let w = (*samples).min(max_weight) as i64;
        let words: Vec<u8> = d
            .iter()
            .flat_map(|&x| {
                let q = flic_protocol::fedavg::round_half_away(x as f64 * (frac_bits as f64).exp2())
                    as i64;
                w.wrapping_mul(q).to_le_bytes()
            })
            .collect();
        for bytes in [f32s, words] {
            needles.extend(bytes.chunks_exact(32).step_by(8).map(<[u8]>::to_vec));
        }
    }
    needles
}

/// How many of the 32-byte `needles` occur anywhere in `haystack` (at any offset).
fn found(haystack: &[u8], needles: &[Vec<u8>]) -> usize {
    let set: std::collections::HashSet<&[u8]> = needles.iter().map(Vec::as_slice).collect();
    let mut seen = std::collections::HashSet::new();
    for w in haystack.windows(32) {
        if set.contains(w) {
            seen.insert(w);
        }
    }
    seen.len()
}

#[test]
fn the_unmasked_sum_is_fedavg_of_the_survivors_at_0_10_and_30_percent_dropped() {
    use Leave::*;
    let cases: [(f64, Vec<Option<Leave>>); 4] = [
        (0.0, vec![None; 10]),
        (0.1, [vec![Some(Input)], vec![None; 9]].concat()),
        // 30 %: one at every phase after advertising.
        (
            0.3,
            [
                vec![
                    None,
                    Some(Share),
                    None,
                    Some(Input),
                    None,
                    None,
                    Some(Reveal),
                ],
                vec![None; 3],
            ]
            .concat(),
        ),
        // One never advertises: the phase ends at its deadline with nine.
        (
            0.3,
            [vec![Some(Advertise), None, Some(Input)], vec![None; 7]].concat(),
        ),
    ];
    for (fraction, drops) in cases {
        let cfg = sa_job(fraction, 10);
        let mut h = Harness::running_with(cfg.clone());
        let clients: Vec<Client> = (1..=10).map(|i| h.client(i, 1000)).collect();
        let r = run_round(&mut h, &clients, &drops, 7, &mut |_, _| {});
        let expected_survivors: Vec<usize> = (0..10)
            .filter(|&k| drops[k].is_none_or(|d| d > Leave::Input))
            .collect();
        assert_eq!(r.survivors, expected_survivors, "{fraction}");
        let got = h.weights();
        assert_eq!(
            got,
            plain_fedavg(&cfg, &r.plain),
            "fraction {fraction}: bit for bit"
        );
        let record = h.state.round_history(PageArgs { start: 0, limit: 1 }).items[0].clone();
        assert_eq!(record.contribution_count as usize, r.survivors.len());
        assert_eq!(
            record.total_weight,
            r.plain
                .iter()
                .map(|(_, s)| s.min(&cfg.max_weight))
                .sum::<u64>()
        );
        assert_eq!(
            record.new_version.into_array(),
            model_version(&spec().spec_id(), &got)
        );
        // The bulletin board is gone with the round, and round 1 starts at phase 1.
        assert!(h.state.secagg.is_empty());
        let next = h.state.secagg_round().unwrap();
        assert_eq!(
            (next.round, next.phase, next.participants.len()),
            (1, SecAggPhase::AdvertiseKeys, 0)
        );
        let (code, status) = get_json(&h, "/api/status");
        assert_eq!(code, 200);
        assert_eq!(status["secure_aggregation"]["phase"], "advertise keys");
        let (_, page) = get(&h, "GET", "/");
        assert!(String::from_utf8_lossy(&page.body).contains("secure aggregation"));
    }
}

#[test]
fn distributed_dp_noise_comes_from_the_clients_inside_the_masks() {
    use flic_protocol::privacy::{DpConfig, DpMode};
    let dp = DpConfig {
        mode: DpMode::Distributed,
        noise_multiplier: 1.0,
        target_epsilon: 50.0,
        delta: 1e-5,
        adaptive_clip: None,
    };
    let cfg = JobConfig {
        dp: Some(dp),
        max_weight: 1,
        ..sa_job(0.1, 10)
    };
    let mut h = Harness::running_with(cfg.clone());
    let clients: Vec<Client> = (1..=10).map(|i| h.client(i, 1000)).collect();
    // One drops out after sharing: nine noised inputs, each with 1/t of the variance.
    let drops = [vec![Some(Leave::Input)], vec![None; 9]].concat();
    let r = run_round(&mut h, &clients, &drops, 11, &mut |h, _| {
        assert!(!h.state.wants_noise_seed(), "the canister adds no noise");
    });
    assert_eq!(r.survivors.len(), 9);
    let frac_bits = h.state.job().frac_bits;
    let threshold = 9; // max(10/2 + 1, 10 - floor(10 * 0.1))
    let var = cfg.client_noise(frac_bits, threshold).unwrap().unwrap();
    // The model is FedAvg of the survivors plus the sum of their noise over the total
    // weight: its spread is that of nine discrete Gaussians.
    let plain = plain_fedavg(&cfg, &r.plain);
    let got = h.weights();
    let scale = (frac_bits as f64).exp2() * r.plain.len() as f64 / cfg.server_lr as f64;
    let noise: Vec<f64> = got
        .iter()
        .zip(&plain)
        .map(|(g, p)| (*g as f64 - *p as f64) * scale)
        .collect();
    let n = noise.len() as f64;
    let mean = noise.iter().sum::<f64>() / n;
    let spread = (noise.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    let expected = (9.0 * var.num as f64).sqrt();
    assert!(
        (spread / expected - 1.0).abs() < 0.2,
        "noise spread {spread:.3e}, expected {expected:.3e}"
    );
    // The round's noise is at least the configured one, whoever dropped out.
    let round_std =
        flic_protocol::privacy::noise_std_fixed(&dp, cfg.clip_norm, 1, frac_bits, PARAMS);
    assert!(9.0 * var.num as f64 >= round_std * round_std);
    let record = h.state.round_history(PageArgs { start: 0, limit: 1 }).items[0].clone();
    assert_eq!(record.epsilon_spent, Some(dp.epsilon_after(1)));
    assert_eq!(h.state.privacy_spent(), (1, dp.epsilon_after(1)));
    // Without secure aggregation, distributed DP is refused.
    let mut h = Harness::new();
    let admin = h.admin();
    let plain_job = JobConfig {
        dp: Some(dp),
        max_weight: 1,
        ..config()
    };
    rejects!(
        h,
        h.state.configure_job(&admin, plain_job),
        AdminError::InvalidConfig { .. }
    );
}

#[test]
fn nothing_stored_holds_a_contribution_in_the_clear_and_an_upgrade_mid_round_loses_nothing() {
    let cfg = sa_job(0.3, 10);
    let mut h = Harness::running_with(cfg.clone());
    let clients: Vec<Client> = (1..=10).map(|i| h.client(i, 1000)).collect();
    let (frac_bits, max_weight) = (h.state.job().frac_bits, cfg.max_weight);
    let drops = [vec![Some(Leave::Input), Some(Leave::Reveal)], vec![None; 8]].concat();
    let mut scanned = 0;
    let r = run_round(&mut h, &clients, &drops, 11, &mut |h, plain| {
        // Every masked input is in: the canister's stable memory and heap hold them (as
        // one masked sum) and every envelope, and not one window of any delta.
        let needles = in_the_clear(plain, frac_bits, max_weight);
        assert!(needles.len() > 100);
        assert_eq!(found(&h.snapshot(), &needles), 0);
        h.upgrade();
        assert_eq!(found(&h.snapshot(), &needles), 0);
        scanned += 1;
    });
    assert_eq!(scanned, 1);
    assert_eq!(
        h.weights(),
        plain_fedavg(&cfg, &r.plain),
        "the upgrade lost nothing"
    );
    // After the close too: the model and the records, no delta.
    assert_eq!(
        found(
            &h.snapshot(),
            &in_the_clear(&r.plain, frac_bits, max_weight)
        ),
        0
    );

    // The scan finds a delta where one is stored: a job without secure aggregation that
    // retains its contributions.
    let mut plain_job = Harness::running();
    let c = plain_job.client(1, 100);
    let d = delta(5);
    plain_job.submit(&c, &d, DeltaEncoding::F32, 100);
    let needles = in_the_clear(&[(d, 100)], plain_job.state.job().frac_bits, 500);
    assert!(
        found(&plain_job.snapshot(), &needles) > 0,
        "the scan can find a stored delta"
    );
}

#[test]
fn a_round_that_loses_too_many_starts_over_without_them() {
    let cfg = sa_job(0.3, 10);
    let mut h = Harness::running_with(cfg.clone());
    let clients: Vec<Client> = (1..=10).map(|i| h.client(i, 1000)).collect();
    let info = h.state.round_info();
    let ctx = RoundContext {
        canister_id: h.canister.as_slice().to_vec(),
        job_id: info.job_id,
        round: 0,
    };
    let advertise_as = |h: &mut Harness, k: usize, s: &Session| {
        h.state
            .secagg_advertise(&h.ctx(clients[k].principal), advertise(&clients[k], s, 0))
    };
    // Ten advertise (the round is full), then four vanish: 6 shares < the threshold 7.
    let mut sessions: Vec<Session> = (0..10)
        .map(|k| Session::new(ctx.clone(), [k as u8 + 40; 32]))
        .collect();
    for (k, s) in sessions.iter().enumerate() {
        advertise_as(&mut h, k, s).unwrap();
    }
    // Full: an eleventh is refused, and so is a second advertisement.
    let late = h.client(99, 10);
    let late_args = advertise(&late, &Session::new(ctx.clone(), [1; 32]), 0);
    rejects!(
        h,
        h.state.secagg_advertise(&h.ctx(late.principal), late_args),
        SecAggCallError::WrongPhase { .. }
    );
    let (list, view) = peers(&h);
    assert_eq!((view.phase, view.threshold), (SecAggPhase::ShareKeys, 7));
    for k in 4..10 {
        let envelopes = sessions[k].envelopes(k as u32, &list, 7).unwrap();
        let args = PostSharesArgs {
            round: 0,
            envelopes: envelopes.into_iter().map(ByteBuf::from).collect(),
        };
        if k == 4 {
            let mut short = args.clone();
            short.envelopes.pop();
            rejects!(
                h,
                h.state
                    .secagg_post_shares(&h.ctx(clients[k].principal), short),
                SecAggCallError::WrongEnvelopeCount {
                    expected: 9,
                    got: 8
                }
            );
            let mut cut = args.clone();
            cut.envelopes[3] = ByteBuf::from(vec![0; 10]);
            rejects!(
                h,
                h.state
                    .secagg_post_shares(&h.ctx(clients[k].principal), cut),
                SecAggCallError::EnvelopeLength { position: 3, .. }
            );
        }
        h.state
            .secagg_post_shares(&h.ctx(clients[k].principal), args.clone())
            .unwrap();
        if k == 4 {
            rejects!(
                h,
                h.state
                    .secagg_post_shares(&h.ctx(clients[k].principal), args),
                SecAggCallError::AlreadyDone
            );
        }
    }
    // Uploads wait for their phase.
    let bytes = masked_bytes(&vec![0i64; PARAMS as usize]);
    let header = h.header(&clients[5], DeltaEncoding::Masked, &bytes, 100);
    let args = h.args(&clients[5], header, &bytes);
    rejects!(
        h,
        h.state.begin_submission(&h.ctx(clients[5].principal), args),
        SubmitError::SecureAggregation { .. }
    );
    to_deadline(&mut h);
    let view = h.state.secagg_round().unwrap();
    assert_eq!(
        (view.phase, view.restarts, view.participants.len()),
        (SecAggPhase::AdvertiseKeys, 1, 0)
    );
    assert!(
        h.state.secagg.iter().all(|e| e.key().0 == 4),
        "only the benched are left"
    );
    // Those that vanished may not come back this round; the others start again.
    let sessions2: Vec<Session> = (0..10)
        .map(|k| Session::new(ctx.clone(), [k as u8 + 80; 32]))
        .collect();
    for k in 0..4 {
        rejects!(
            h,
            advertise_as(&mut h, k, &sessions2[k]),
            SecAggCallError::DroppedBefore
        );
    }
    // A signature over other keys is refused.
    let mut forged = sessions2[4].keys();
    forged.s_public = sessions2[5].keys().s_public;
    let args = advertise_args(&clients[4], forged, sessions2[4].sign(&clients[4].key), 0);
    rejects!(
        h,
        h.state.secagg_advertise(&h.ctx(clients[4].principal), args),
        SecAggCallError::BadKeys(_)
    );
    sessions.clear();
    // The six finish a round among themselves (n = 6, t = 5).
    let rest: Vec<Client> = clients[4..].to_vec();
    let r = run_round(&mut h, &rest, &[None; 6], 3, &mut |_, _| {});
    assert_eq!(r.survivors.len(), 6);
    assert_eq!(h.weights(), plain_fedavg(&cfg, &r.plain));
    let record = h.state.round_history(PageArgs { start: 0, limit: 1 }).items[0].clone();
    assert_eq!(record.contribution_count, 6);
}

#[test]
fn masked_inputs_too_few_to_unmask_void_and_the_round_starts_over() {
    let cfg = sa_job(0.1, 5);
    let mut h = Harness::running_with(cfg.clone());
    let clients: Vec<Client> = (1..=5).map(|i| h.client(i, 1000)).collect();
    // n = 5, t = max(3, 5 - 0) = 5: one missing input is one too many.
    let drops = [vec![Some(Leave::Input)], vec![None; 4]].concat();
    let info = h.state.round_info();
    let ctx = RoundContext {
        canister_id: h.canister.as_slice().to_vec(),
        job_id: info.job_id,
        round: 0,
    };
    let sessions: Vec<Session> = (0..5)
        .map(|k| Session::new(ctx.clone(), [k as u8; 32]))
        .collect();
    let mut sessions = sessions;
    for (k, s) in sessions.iter().enumerate() {
        h.state
            .secagg_advertise(&h.ctx(clients[k].principal), advertise(&clients[k], s, 0))
            .unwrap();
    }
    let (list, view) = peers(&h);
    assert_eq!(view.threshold, 5);
    for (k, s) in sessions.iter_mut().enumerate() {
        let e = s.envelopes(k as u32, &list, 5).unwrap();
        h.state
            .secagg_post_shares(
                &h.ctx(clients[k].principal),
                PostSharesArgs {
                    round: 0,
                    envelopes: e.into_iter().map(ByteBuf::from).collect(),
                },
            )
            .unwrap();
    }
    let (list, _) = peers(&h);
    for k in 1..5 {
        let words = sessions[k]
            .masked_input(
                k as u32,
                &list,
                &delta(k as u64),
                100,
                h.state.job().frac_bits,
                None,
            )
            .unwrap();
        let bytes = masked_bytes(&words);
        let st = h.begin(&clients[k], &bytes, DeltaEncoding::Masked, 100);
        h.put_all(&clients[k], st.submission_id, &bytes);
        h.state
            .commit_submission(&h.ctx(clients[k].principal), st.submission_id)
            .unwrap();
    }
    assert_eq!(h.state.round_info().committed, 4);
    let _ = drops;
    to_deadline(&mut h);
    // Voided: no commits, no contributions, no uploads; the one that vanished is benched.
    let info = h.state.round_info();
    assert_eq!((info.round, info.committed), (0, 0));
    assert!(h.state.contributions.is_empty() && h.state.submissions.is_empty());
    assert!(h.state.accumulator().is_empty());
    assert_eq!(h.state.secagg_round().unwrap().restarts, 1);
    // The four left cannot reach t = 5 of 5 ... but four is a new round of n = 4 (t = 4).
    let rest: Vec<Client> = clients[1..].to_vec();
    let r = run_round(&mut h, &rest, &[None; 4], 9, &mut |_, _| {});
    assert_eq!(h.weights(), plain_fedavg(&cfg, &r.plain));
}

#[test]
fn bad_secure_aggregation_configurations_are_refused() {
    let h = Harness::new();
    let bad = |c: JobConfig| {
        let mut h2 = Harness::new();
        let r = h2.state.configure_job(&h2.admin(), c);
        assert!(matches!(r, Err(AdminError::InvalidConfig { .. })), "{r:?}");
    };
    let _ = h;
    bad(JobConfig {
        allowed_encodings: vec![DeltaEncoding::Masked],
        ..config()
    });
    bad(JobConfig {
        allowed_encodings: vec![DeltaEncoding::Masked, DeltaEncoding::F32],
        ..sa_job(0.3, 10)
    });
    bad(JobConfig {
        aggregation: Some(flic_protocol::rules::AggregationRule::Median),
        ..sa_job(0.3, 10)
    });
    bad(JobConfig {
        retain_contributions: true,
        ..sa_job(0.3, 10)
    });
    bad(JobConfig {
        min_clients: 2,
        ..sa_job(0.3, 10)
    });
    bad(sa_job(0.5, 10));
    bad(sa_job(-0.1, 10));
    bad(JobConfig {
        secure_aggregation: Some(SecAggConfig {
            max_dropout_fraction: 0.3,
            phase_duration_ns: 10,
        }),
        ..sa_job(0.3, 10)
    });
    // A job without secure aggregation has none of its calls.
    let mut plain = Harness::running();
    let c = plain.client(1, 10);
    rejects!(
        plain,
        plain.state.secagg_post_shares(
            &plain.ctx(c.principal),
            PostSharesArgs {
                round: 0,
                envelopes: vec![]
            }
        ),
        SecAggCallError::NotSecureAggregation
    );
    assert!(plain.state.secagg_round().is_none());
}
