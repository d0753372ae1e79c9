//! Load: 1,000 contributors submit to one round of the release wasm in the embedded IC.
//! Every valid submission is accepted, no message comes near the IC's instruction limit,
//! and memory stays bounded. Throughput is printed (a figure, not an assertion).

use std::time::Instant;

use flic_protocol::DeltaEncoding;
use flic_tests::embedded::EmbeddedEnv;
use flic_tests::fixture::{delta, job, Fixture};

const CONTRIBUTORS: usize = 1_000;

#[test]
fn a_thousand_contributors_in_one_round() {
    let mut config = job();
    config.min_clients = CONTRIBUTORS as u32;
    config.max_clients = CONTRIBUTORS as u32;
    let started = Instant::now();
    let mut f = Fixture::new(EmbeddedEnv::new(), CONTRIBUTORS, config);
    let registered = started.elapsed();

    let started = Instant::now();
    for c in 0..CONTRIBUTORS {
        let receipt = f
            .submit(c, &delta(c, 0), DeltaEncoding::Int8Blocks)
            .unwrap_or_else(|e| panic!("contributor {c}: {e}"));
        assert_eq!(receipt.index_in_round as usize, c);
        assert_eq!(receipt.round_closed, c + 1 == CONTRIBUTORS);
    }
    let submitted = started.elapsed();

    let info = f.round_info();
    assert_eq!(info.round, 1, "the 1,000th commit closed the round");
    let record = f.snapshot().history.pop().unwrap();
    assert_eq!(record.contribution_count as usize, CONTRIBUTORS);

    let mut by_method: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    for (method, n) in &f.instructions {
        let n = n.expect("embedded counts instructions");
        let e = by_method.entry(method.as_str()).or_default();
        e.0 += 1;
        e.1 = e.1.max(n);
    }
    for (method, (calls, max)) in &by_method {
        eprintln!("  {method:<20} {calls:>5} calls, largest {max:>12} instructions");
    }

    // Bounded memory: staged chunks are dropped at close; what remains is the registry and
    // the contribution log, linear in contributors and small.
    let canister = f.canister;
    let stable = f.env.ic.stable_memory_size(canister).unwrap();
    let heap = f.env.ic.heap_size(canister).unwrap();
    assert!(stable < 256 << 20, "stable memory grew to {stable} bytes");
    assert!(heap < 64 << 20, "heap grew to {heap} bytes");

    eprintln!(
        "1,000 contributors: registered in {:.1} s, submitted in {:.1} s ({:.0} submissions/s); \
         stable memory {} KiB, heap {} KiB",
        registered.as_secs_f64(),
        submitted.as_secs_f64(),
        CONTRIBUTORS as f64 / submitted.as_secs_f64(),
        stable >> 10,
        heap >> 10
    );
    let largest = by_method.values().map(|(_, max)| *max).max().unwrap();
    assert!(
        largest < 40_000_000_000,
        "a message used {largest} instructions, over the IC's limit"
    );
}
