//! Costs that must not grow with the history (issue 12, item 8), on the native core: round
//! pages at the protocol's maxima, and the distinct-contributor counter behind `/metrics`.

use crate::storage::records::{ClosedRoundRecord, HistoryRecord};
use crate::storage::Stored;

use super::*;

/// The IC's reply limit for replicated calls (a certified query may be called as an
/// update); queries allow 3 MiB.
const REPLY_LIMIT: usize = 2 * 1024 * 1024;

/// A 29-byte principal (the length of a self-authenticating one), distinct per `i`.
fn principal(i: u64) -> Principal {
    let mut b = [0x5a; 29];
    b[..8].copy_from_slice(&i.to_le_bytes());
    b[28] = 0x02;
    Principal::from_slice(&b)
}

/// Appends closed round records as the close does (history frontier, certified tree,
/// rounds map), each with `contributors[r]` contributors.
fn push_rounds(h: &mut Harness, contributors: &[u64]) {
    let mut next_principal = 0;
    for &n in contributors {
        let round = h.state.history().size;
        let record = RoundRecord {
            round,
            base_version: Hash::new([round as u8; 32]),
            new_version: Hash::new([round as u8 + 1; 32]),
            contributions_root: Hash::new([7; 32]),
            first_contribution: next_principal,
            contribution_count: n as u32,
            total_weight: n,
            contributors: (next_principal..next_principal + n)
                .map(principal)
                .collect(),
            frac_bits: 24,
            server_lr: 1.0,
            opened_at_ns: round * 10,
            closed_at_ns: round * 10 + 5,
            extensions: 0,
            epsilon_spent: None,
            adaptive_clip: None,
        };
        next_principal += n;
        let mut history = h.state.history().frontier();
        history.push(record.history_leaf());
        h.state.set_history(HistoryRecord::of(&history));
        h.state.certified.push_round(&record);
        h.state
            .rounds
            .insert(round, Stored(ClosedRoundRecord::from(record)));
    }
    h.state.check_cheap_invariants().unwrap();
}

fn all_pages(h: &Harness, limit: u32) -> Vec<RoundPage> {
    let mut pages = Vec::new();
    let mut start = 0;
    loop {
        let page = h.state.round_history(PageArgs { start, limit });
        let next = page.next;
        pages.push(page);
        match next {
            Some(n) => start = n,
            None => return pages,
        }
    }
}

/// Eight rounds at `MAX_CLIENTS` contributors: one page of them was 2.5 MB of Candid and
/// 5 MB of JSON, past the IC's reply limit. Pages now end at `MAX_PAGE_CONTRIBUTORS`
/// (two such records), every reply fits, and walking `next` returns every record once.
#[test]
fn round_pages_at_max_clients_fit_the_reply_limit() {
    let mut h = Harness::new();
    let big = MAX_CLIENTS as u64;
    let sizes = [big, big, big, 3, big, big, big, big, big, 1];
    push_rounds(&mut h, &sizes);

    let pages = all_pages(&h, MAX_PAGE_LEN);
    let rounds: Vec<u64> = pages
        .iter()
        .flat_map(|p| p.items.iter().map(|r| r.round))
        .collect();
    assert_eq!(rounds, (0..sizes.len() as u64).collect::<Vec<_>>());
    for p in &pages {
        let contributors: u64 = p.items.iter().map(|r| r.contributors.len() as u64).sum();
        assert!(!p.items.is_empty());
        assert!(
            contributors <= MAX_PAGE_CONTRIBUTORS || p.items.len() == 1,
            "{contributors} contributors on a page"
        );
        let bytes = candid::encode_one(p).unwrap().len();
        assert!(bytes < REPLY_LIMIT, "round_history reply of {bytes} bytes");
    }
    // The first page stops before the record that would pass the budget.
    assert_eq!(pages[0].items.len(), 2);
    assert_eq!(pages[0].next, Some(2));
    // 10,003 contributors, then a full record would pass 20,000.
    assert_eq!(
        pages[1].items.iter().map(|r| r.round).collect::<Vec<_>>(),
        vec![2, 3]
    );

    // The certified form: the same page, its witness hashes to the certified data.
    for start in [0, 2, 4, 9] {
        let args = PageArgs {
            start,
            limit: MAX_PAGE_LEN,
        };
        let reply = h.state.round_history_certified(vec![0; 1_500], args);
        assert_eq!(reply.page, h.state.round_history(args));
        let tree: ic_certification::HashTree =
            serde_cbor::from_slice(&reply.certification.tree).unwrap();
        assert_eq!(tree.digest(), h.state.certified_data());
        let bytes = candid::encode_one(&reply).unwrap().len();
        assert!(
            bytes < REPLY_LIMIT,
            "round_history_certified reply of {bytes} bytes"
        );
    }

    // `/api/rounds`, JSON (about 66 bytes per contributor).
    let (status, r) = get(&h, "GET", "/api/rounds?limit=100");
    assert_eq!(status, 200);
    let bytes = candid::encode_one(&r).unwrap().len();
    assert!(bytes < REPLY_LIMIT, "/api/rounds reply of {bytes} bytes");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    assert_eq!(v["next"], 2);
    assert!(
        bytes > 1_000_000,
        "two records at MAX_CLIENTS are {bytes} bytes of JSON"
    );
}

/// Small records are bounded by `limit` alone; a record above the budget still makes a
/// page of its own.
#[test]
fn round_pages_end_at_the_budget_with_at_least_one_record() {
    let mut h = Harness::new();
    push_rounds(&mut h, &[3; 150]);
    let pages = all_pages(&h, MAX_PAGE_LEN);
    assert_eq!(
        pages.iter().map(|p| p.items.len()).collect::<Vec<_>>(),
        vec![100, 50]
    );
    let args = PageArgs {
        start: 10,
        limit: 100,
    };
    // Budget 7: two records of 3 contributors.
    let page = h.state.round_history_within(args, 7);
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.next, Some(12));
    // Budget 1 is below one record: the page still holds the first.
    let page = h.state.round_history_within(args, 1);
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.next, Some(11));
    // Exactly at the budget.
    let page = h.state.round_history_within(args, 9);
    assert_eq!(page.items.len(), 3);
    // The last record.
    let page = h.state.round_history_within(
        PageArgs {
            start: 149,
            limit: 5,
        },
        1,
    );
    assert_eq!((page.items.len(), page.next), (1, None));
    let page = h.state.round_history_within(
        PageArgs {
            start: 150,
            limit: 5,
        },
        1,
    );
    assert_eq!((page.items.len(), page.next), (0, None));
}

/// `/metrics` reads a stored counter of distinct contributors instead of seeking once per
/// contributor. The counter is advanced after every message (by the boundary; here by hand),
/// a state without it (older releases) is counted a bounded number of contributions at a
/// time, and the query adds at most a bounded uncounted tail.
#[test]
fn distinct_contributors_are_counted_incrementally() {
    let (mut h, clients) = closed_rounds(2);
    // 6 contributions by 3 principals, none counted yet (nothing advanced the counter).
    assert_eq!(h.state.metrics().contributors, None);
    assert_eq!(h.state.distinct_contributors(), 3);
    assert_eq!(h.state.distinct_contributor_count(6), Some(3));
    assert_eq!(
        h.state.distinct_contributor_count(5),
        None,
        "a tail of 6 is past 5"
    );

    h.state.count_new_contributors(2);
    assert_eq!(
        h.state.metrics().contributors,
        Some(crate::metrics::ContributorCount {
            distinct: 2,
            counted_through: 2
        })
    );
    assert_eq!(h.state.distinct_contributor_count(4), Some(3));
    h.state.count_new_contributors(1_000);
    let counted = h.state.metrics().contributors.unwrap();
    assert_eq!((counted.distinct, counted.counted_through), (3, 6));
    assert_eq!(h.state.distinct_contributor_count(0), Some(3));

    // Up to date, counting writes nothing.
    let image = h.snapshot();
    h.state.count_new_contributors(1_000);
    assert!(image == h.snapshot());

    // A new principal and a returning one.
    let newcomer = h.client(9, 1000);
    h.submit(&newcomer, &delta(91), DeltaEncoding::F32, 100);
    h.submit(&clients[0], &delta(92), DeltaEncoding::F32, 100);
    assert_eq!(h.state.distinct_contributor_count(2), Some(4));
    h.state.count_new_contributors(1_000);
    assert_eq!(h.state.distinct_contributor_count(0), Some(4));
    assert_eq!(h.state.distinct_contributors(), 4);
    let (_, r) = get(&h, "GET", "/metrics");
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(text.lines().any(|l| l == "flic_contributors 4"), "{text}");

    // The counter survives an upgrade.
    h.upgrade();
    assert_eq!(h.state.distinct_contributor_count(0), Some(4));
}
