//! Costs that must not grow with the job's history (issue 12, item 8) and replies a client
//! can check against the certificate (item 9), through the release wasm in the embedded IC.

use candid::Principal;
use flic_embedded_ic::InstallMode;
use flic_proofs::certified::{verify_round_info, verify_round_page};
use flic_proofs::{Freshness, ProofError, Trust};
use flic_protocol::api::{
    CertifiedRoundInfo, CertifiedRoundPage, HttpRequest, InitArg, PageArgs, MAX_PAGE_LEN,
};
use flic_protocol::job_config::job_config_hash;
use flic_protocol::DeltaEncoding;
use flic_tests::embedded::EmbeddedEnv;
use flic_tests::fixture::{delta, job, Fixture};
use serde_bytes::ByteBuf;

/// One contributor, one commit per round: every commit closes its round.
fn one_per_round() -> Fixture<EmbeddedEnv> {
    let mut config = job();
    config.min_clients = 1;
    config.max_clients = 1;
    Fixture::new(EmbeddedEnv::new(), 1, config)
}

fn close_rounds(f: &mut Fixture<EmbeddedEnv>, n: u64) {
    for _ in 0..n {
        let round = f.round_info().round;
        let receipt = f
            .submit(0, &delta(0, round), DeltaEncoding::F32)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(receipt.round_closed);
    }
}

/// Upgrades the canister to the same wasm; returns the instructions of the whole upgrade
/// (pre_upgrade, the new instance, post_upgrade), and checks the certified data survived.
fn upgrade(f: &mut Fixture<EmbeddedEnv>) -> u64 {
    let before = f.env.ic.certified_data(f.canister).unwrap().to_vec();
    let arg = candid::encode_one(InitArg::Upgrade(None)).unwrap();
    let outcome = f
        .env
        .ic
        .install_code(f.canister, &f.wasm, arg, InstallMode::Upgrade, f.admin)
        .expect("upgrade");
    assert_eq!(
        f.env.ic.certified_data(f.canister).unwrap(),
        &before[..],
        "the upgrade changed the certified data"
    );
    outcome.instructions
}

/// post_upgrade used to rebuild the certified tree by re-hashing every closed round's
/// record: O(rounds), and past the upgrade limit the canister could never be upgraded again.
/// Now the tree lives in stable memory and an upgrade costs the same after 5 and 50 rounds.
#[test]
fn upgrade_instructions_do_not_grow_with_the_rounds() {
    let mut f = one_per_round();
    close_rounds(&mut f, 5);
    let at_5 = upgrade(&mut f);
    close_rounds(&mut f, 45);
    let at_50 = upgrade(&mut f);
    let at_50_again = upgrade(&mut f);
    println!("upgrade instructions: {at_5} after 5 rounds, {at_50} after 50 ({at_50_again} again)");
    // Ten times the rounds may cost a few B-tree levels more, nothing per round.
    let growth = at_50.saturating_sub(at_5);
    assert!(
        growth < at_5 / 20,
        "upgrade cost grew by {growth} instructions from 5 to 50 rounds ({at_5} -> {at_50}): \
         about {} per round",
        growth / 45
    );
    assert_eq!(f.round_info().round, 50);
}

fn trust(f: &Fixture<EmbeddedEnv>) -> Trust {
    Trust {
        root_key_der: f.env.ic.root_key(),
        canister: f.canister,
        freshness: Freshness::Within {
            now_ns: f.env.ic.time(),
            max_age_ns: flic_proofs::certificate::DEFAULT_MAX_AGE_NS,
        },
    }
}

/// Every page the canister serves verifies under the strict page check (a page ending the
/// history proves there is no next round; an empty page proves its start does not exist):
/// the empty history, every start and limit, the last page, starts past the end.
#[test]
fn every_certified_round_page_verifies() {
    let mut f = one_per_round();
    let check = |f: &mut Fixture<EmbeddedEnv>, start: u64, limit: u32| {
        let reply: CertifiedRoundPage =
            f.query1("round_history_certified", (PageArgs { start, limit },));
        verify_round_page(&reply, start, &trust(f))
            .unwrap_or_else(|e| panic!("page from {start}, limit {limit}: {e}"));
        reply.page
    };
    let empty = check(&mut f, 0, 10);
    assert!(empty.items.is_empty() && empty.next.is_none());
    close_rounds(&mut f, 7);
    for start in 0..=9 {
        for limit in [1, 2, 3, 7, MAX_PAGE_LEN] {
            let page = check(&mut f, start, limit);
            let expect = (7u64.saturating_sub(start)).min(limit as u64);
            assert_eq!(
                page.items.len() as u64,
                expect,
                "start {start} limit {limit}"
            );
        }
    }
    // A replica that hides the last round (drops it and ends the page) is caught.
    let mut reply: CertifiedRoundPage = f.query1(
        "round_history_certified",
        (PageArgs { start: 5, limit: 2 },),
    );
    reply.page.items.pop();
    let e = verify_round_page(&reply, 5, &trust(&f)).unwrap_err();
    assert!(matches!(e, ProofError::Inconsistent { .. }), "{e:?}");
    // So is an empty page for a start that exists.
    let mut reply: CertifiedRoundPage = f.query1(
        "round_history_certified",
        (PageArgs { start: 7, limit: 2 },),
    );
    assert!(reply.page.items.is_empty());
    verify_round_page(&reply, 7, &trust(&f)).unwrap();
    reply.page.next = None;
    let e = verify_round_page(&reply, 3, &trust(&f)).unwrap_err();
    assert!(matches!(e, ProofError::Inconsistent { .. }), "{e:?}");
}

/// The job configuration is certified under `/job_config`: the reply of
/// `round_info_certified` verifies, and one whose configuration was altered (the clip norm a
/// client trains with) does not.
#[test]
fn the_job_configuration_is_certified() {
    let mut f = one_per_round();
    let reply: CertifiedRoundInfo = f.query1("round_info_certified", ());
    let config = reply.info.config.clone().expect("configured");
    assert_eq!(config, f.job);
    let view = verify_round_info(&reply, &trust(&f)).unwrap();
    assert_eq!(
        view.job_config_hash().unwrap(),
        Some(job_config_hash(&f.job))
    );
    let certified: flic_protocol::api::CertifiedState = f.query1("certified_state", ());
    assert_eq!(
        certified.job_config_hash.map(|h| h.into_array()),
        Some(job_config_hash(&f.job))
    );

    let mut tampered = reply.clone();
    tampered.info.config.as_mut().unwrap().clip_norm *= 100.0;
    assert!(matches!(
        verify_round_info(&tampered, &trust(&f)).unwrap_err(),
        ProofError::Mismatch { what, .. } if what == "job configuration hash"
    ));
}

fn metrics_instructions(f: &mut Fixture<EmbeddedEnv>) -> (u64, String) {
    let req = HttpRequest {
        method: "GET".into(),
        url: "/metrics".into(),
        headers: vec![],
        body: ByteBuf::new(),
        certificate_version: None,
    };
    let out = f
        .env
        .ic
        .query(
            f.canister,
            Principal::anonymous(),
            "http_request",
            candid::encode_one(&req).unwrap(),
        )
        .expect("http_request");
    let reply: flic_protocol::api::HttpResponse = candid::decode_one(&out.reply).unwrap();
    (
        out.instructions,
        String::from_utf8(reply.body.to_vec()).unwrap(),
    )
}

/// `/metrics` used to seek once per distinct contributor; it now reads a counter the
/// canister keeps up to date, and its cost does not grow with the contributors.
#[test]
fn metrics_cost_does_not_grow_with_the_contributors() {
    const CLIENTS: usize = 60;
    let mut config = job();
    config.min_clients = 5;
    config.max_clients = 5;
    let mut f = Fixture::new(EmbeddedEnv::new(), CLIENTS, config);
    let submit_round = |f: &mut Fixture<EmbeddedEnv>, first: usize| {
        let round = f.round_info().round;
        for c in first..first + 5 {
            f.submit(c, &delta(c, round), DeltaEncoding::Int8Blocks)
                .unwrap_or_else(|e| panic!("contributor {c}: {e}"));
        }
    };
    submit_round(&mut f, 0);
    submit_round(&mut f, 0);
    let (at_5, text) = metrics_instructions(&mut f);
    assert!(text.lines().any(|l| l == "flic_contributors 5"), "{text}");
    for first in (5..CLIENTS).step_by(5) {
        submit_round(&mut f, first);
    }
    submit_round(&mut f, 0);
    let (at_60, text) = metrics_instructions(&mut f);
    assert!(text.lines().any(|l| l == "flic_contributors 60"), "{text}");
    println!("/metrics instructions: {at_5} with 5 contributors, {at_60} with 60");
    let growth = at_60.saturating_sub(at_5);
    assert!(
        growth < at_5 / 10,
        "/metrics grew by {growth} instructions from 5 to 60 contributors ({at_5} -> {at_60})"
    );
}
