//! Scale: one round end to end (initial upload, contributions, commit, close, verified
//! download) on one canister, checked against the IC's per-message limits.

use crate::bench::aggregate::AggregateReport;
use crate::bench::doc::{short_count, table, thousands};

/// IC limits the scale run is held against (DESIGN.md, "Limits and costs").
pub const UPDATE_INSTRUCTION_LIMIT: u64 = 40_000_000_000;
pub const QUERY_INSTRUCTION_LIMIT: u64 = 5_000_000_000;
pub const HEAP_DELTA_PER_ROUND: u64 = 75 << 20;
pub const STABLE_TOUCHED_PER_UPDATE: u64 = 2 << 30;
pub const STABLE_MEMORY: u64 = 500 << 30;

/// Bytes of memory (heap and stable: both count towards the heap delta) one message writes,
/// from the canister's algorithm: a commit adds into the heap `i64` accumulator (8 per
/// parameter); the close rewrites the `f32` weights in stable memory and zeroes the
/// accumulator (4 + 8 per parameter).
pub fn written_per_message(params: u64) -> (u64, u64) {
    (8 * params, 12 * params)
}

/// Bytes of stable memory one message reads or writes: a commit reads the staged delta
/// (twice, the same pages); the close reads and writes the weights.
pub fn touched_per_message(params: u64, payload_bytes: u64) -> (u64, u64) {
    (payload_bytes, 4 * params)
}

pub fn render(reports: &[AggregateReport]) -> String {
    let gib = |b: u64| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64);
    let mib = |b: u64| format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64);
    let mut rows = Vec::new();
    for r in reports {
        let (commit_w, close_w) = written_per_message(r.params);
        let (commit_t, close_t) = touched_per_message(r.params, r.payload_bytes);
        let dl = r.download.as_ref();
        rows.push(vec![
            short_count(r.params),
            r.encoding.clone(),
            r.contributions.to_string(),
            format!(
                "{} ({}, {:.1}% of 40 B)",
                thousands(r.max_message_instructions),
                r.max_message,
                r.max_message_instructions as f64 / UPDATE_INSTRUCTION_LIMIT as f64 * 100.0
            ),
            dl.map(|d| {
                format!(
                    "{} queries, max {} ({:.2}% of 5 B)",
                    d.queries,
                    thousands(d.max_query_instructions),
                    d.max_query_instructions as f64 / QUERY_INSTRUCTION_LIMIT as f64 * 100.0
                )
            })
            .unwrap_or_else(|| "not run".into()),
            format!("{} / {}", mib(commit_w), mib(close_w)),
            format!("{} / {}", gib(commit_t), gib(close_t)),
            format!("{} / {}", gib(r.stable_memory_bytes), mib(r.heap_bytes)),
            if r.verified {
                "yes".into()
            } else {
                "no".into()
            },
            format!("{:.0} s", r.host_seconds),
        ]);
    }
    format!(
        "One round end to end on one canister: the controller uploads the initial model, \
         each contributor uploads and commits an `N`-parameter delta, the deadline timer \
         closes the round, and the new model is downloaded chunk by chunk and checked \
         against its version hash and the native recomputation. The embedded IC enforces \
         the instruction limits (40 B per update or timer, 5 B per query) and the 4 GiB heap; \
         the memory-written (heap and stable, what the heap-delta limit of 75 MiB per round \
         counts) and stable-touched (limit 2 GiB per update) columns are computed from the \
         canister's algorithm, because the embedded IC does not model those two limits.\n\n{}",
        table(
            &[
                "N params",
                "encoding",
                "K",
                "largest update message",
                "download",
                "memory written per commit / close",
                "stable touched per commit / close (limit 2 GiB)",
                "stable memory / heap at end",
                "model verified",
                "host time",
            ],
            &rows,
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_message_bytes_follow_the_layout() {
        assert_eq!(written_per_message(10), (80, 120));
        // int8: 1e8 parameters stage 101,562,500 bytes.
        let (commit, close) = touched_per_message(100_000_000, 101_562_500);
        assert!(commit < STABLE_TOUCHED_PER_UPDATE && close < STABLE_TOUCHED_PER_UPDATE);
        assert!(written_per_message(100_000_000).0 > HEAP_DELTA_PER_ROUND);
    }
}
