//! Whether a job fits the IC's per-message limits, from measured costs.
//!
//! A message over the instruction limit traps, and a trap rolls it back: a close that does
//! not fit would be retried by every later timer and never succeed. So `configure_job`
//! refuses a configuration whose worst-case message does not fit with a margin. The costs
//! are upper bounds of what `flic bench aggregate` and `flic bench scale` measured on the
//! release wasm in `flic-embedded-ic` (docs/benchmarks.md, sections 2 and 6), per
//! parameter and per client; [`MARGIN`] covers what the embedded IC undercounts (the
//! replica weighs some instructions, bulk memory and System API calls more).

use crate::encoding::DeltaEncoding;
use crate::optimizers::ServerOptimizer;
use crate::rules::{AggregationRule, RULE_WINDOW_PARAMS};

/// Instructions one update call or timer message may use.
pub const UPDATE_INSTRUCTION_LIMIT: u64 = 40_000_000_000;
/// Instructions an upgrade (`pre_upgrade` plus `post_upgrade`) may use.
pub const UPGRADE_INSTRUCTION_LIMIT: u64 = 300_000_000_000;
/// Measured costs times this must fit the limits.
pub const MARGIN: u64 = 2;
/// Instructions per parameter to draw and add central DP's Gaussian noise (ChaCha12, the
/// polar method through `libm`): 674 measured on a 1.09e6-parameter close
/// (docs/benchmarks.md, section 9), rounded up.
pub const NOISE_PER_PARAM: u64 = 800;
/// Canister instructions per parameter to expand one mask stream (ChaCha12) and subtract
/// it (secure aggregation's unmasking): 438 to 455 measured by `flic bench secagg` on an
/// 88,000-parameter model (docs/benchmarks.md, section 10; the seeds' reconstruction
/// and agreements included), rounded up.
pub const MASK_PER_PARAM: u64 = 600;
/// Canister instructions for one X25519 agreement and the reconstruction of its secret.
pub const AGREEMENT_INSTRUCTIONS: u64 = 5_000_000;
/// Canister instructions per revealed share at the unmasking close (reading it and its
/// part of the Lagrange interpolation): `n^2` shares for `n` participants. Measured at
/// about 54,000 (100 participants, 1386 parameters: 649 M for the closing reveal, of
/// which 62 M are mask streams), counted as 80,000.
pub const SHARE_INSTRUCTIONS: u64 = 80_000;

/// Instructions a robust rule's close uses per message by default: it starts another
/// window only while its estimated cost, times [`MARGIN`], keeps the message below this.
/// Half the limit, so that the commit that starts a close has room for its own work.
pub const CLOSE_SLICE_INSTRUCTIONS: u64 = UPDATE_INSTRUCTION_LIMIT / 2;

/// Fixed cost of any update (decoding, checks, certified data, invariants).
const FIXED: u64 = 10_000_000;
/// The close per parameter: apply the accumulator, write and hash the weights (measured
/// 339-352).
const CLOSE_PER_PARAM: u64 = 400;
/// The close per client of `max_clients`: a contribution read into the round record, and
/// up to two uploads in progress dropped (measured 420-530 k per contribution, the
/// dropped uploads far less).
const CLOSE_PER_CLIENT: u64 = 1_000_000;
/// `pre_upgrade` writes, and `post_upgrade` reads, the accumulator: 8 bytes per parameter
/// each way (measured under 10 instructions per parameter for both).
const UPGRADE_PER_PARAM: u64 = 20;

/// Robust rules at the close, per value (parameter times contribution) and pass: reading
/// a staged window and decoding it into the fixed point. The robust-rule costs below are
/// fitted to `flic bench aggregate --aggregation RULE` on the release wasm (int8, N = 1e5
/// with K = 10 and N = 5e4 with K = 30; docs/benchmarks.md, robustness section) and
/// rounded up: measured median 135 and 173 per value, Krum(3) 410 and 1,407, Bulyan(1)
/// 686 and 1,940, centered clipping (1 step) 441 and 506, each further step 221.
const DECODE_PER_VALUE: u64 = 50;
/// Sorting a coordinate's values, per value and per bit of `K`.
const SORT_PER_VALUE_LOG: u64 = 30;
/// Krum's squared distance, per pair and parameter.
const DISTANCE_PER_PAIR_VALUE: u64 = 90;
/// Bulyan's two sorts of a coordinate's selected values (by value, then by distance to
/// their median), per value and per bit of `K`.
const BULYAN_SORTS_PER_VALUE_LOG: u64 = 110;
/// Centered clipping's distance to the centre, per value.
const DISTANCE_PER_VALUE: u64 = 60;
/// Centered clipping's step, per value: the clipped difference and the next distance.
const CLIP_PER_VALUE: u64 = 200;

/// A server optimizer's state vector, per parameter: read, update, write (estimate).
const STATE_PER_VECTOR: u64 = 60;

/// Worst-case instructions of the messages a job's size decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorstCase {
    pub commit: u64,
    pub close: u64,
    pub upgrade: u64,
    /// One window of a robust rule's close (0 for FedAvg, which streams).
    pub window: u64,
}

/// A robust rule's close instructions per parameter, all passes (0 for FedAvg): decoding
/// `K` deltas per parameter and pass, then sorting each coordinate's `K` values (median,
/// trimmed mean, centered clipping's start), the `K^2 / 2` pairwise distances (Krum), or
/// centered clipping's steps; measured per rule (constants above).
pub fn rule_per_param(rule: &AggregationRule, max_clients: u32) -> u64 {
    let k = max_clients as u64;
    let log_k = 64 - k.leading_zeros() as u64;
    match rule {
        AggregationRule::FedAvg => 0,
        AggregationRule::Median | AggregationRule::TrimmedMean { .. } => {
            k * (DECODE_PER_VALUE + SORT_PER_VALUE_LOG * log_k)
        }
        AggregationRule::Krum { .. } | AggregationRule::MultiKrum { .. } => {
            k * 2 * DECODE_PER_VALUE + (k * k / 2) * DISTANCE_PER_PAIR_VALUE
        }
        // Krum's distances, then two sorts of the selected values per coordinate.
        AggregationRule::Bulyan { .. } => {
            k * 2 * DECODE_PER_VALUE
                + (k * k / 2) * DISTANCE_PER_PAIR_VALUE
                + k * BULYAN_SORTS_PER_VALUE_LOG * log_k
        }
        AggregationRule::CenteredClip { iters } => {
            k * (DECODE_PER_VALUE + SORT_PER_VALUE_LOG * log_k + DISTANCE_PER_VALUE)
                + *iters as u64 * k * (DECODE_PER_VALUE + CLIP_PER_VALUE)
        }
    }
}

/// The finalisation of a close (the update applied, the weights written and hashed, the
/// round recorded), which a robust close runs only in a message with this much room left.
pub fn finalisation(param_count: u64, max_clients: u32, optimizer: &ServerOptimizer) -> u64 {
    FIXED
        + (CLOSE_PER_PARAM + STATE_PER_VECTOR * optimizer.state_vectors() as u64) * param_count
        + CLOSE_PER_CLIENT * max_clients as u64
}

/// Parameters per window of a robust close at `max_clients`: the driver's
/// [`RULE_WINDOW_PARAMS`], fewer (whole int8 blocks, at least one) when a window of the
/// rule would take more than a tenth of a slice. Any window size gives the same integers.
pub fn rule_window_params(rule: &AggregationRule, max_clients: u32) -> u64 {
    let block = crate::encoding::WINDOW_ALIGN;
    let per_param = rule_per_param(rule, max_clients).max(1);
    let fit = CLOSE_SLICE_INSTRUCTIONS / 10 / MARGIN / per_param;
    (fit / block * block).clamp(block, RULE_WINDOW_PARAMS)
}

impl WorstCase {
    pub fn of(param_count: u64, max_clients: u32, encodings: &[DeltaEncoding]) -> Self {
        let per_param = encodings
            .iter()
            .map(|e| e.codec().commit_instructions_per_param())
            .max()
            .unwrap_or_else(|| DeltaEncoding::F32.codec().commit_instructions_per_param());
        let n = param_count;
        let k = max_clients as u64;
        Self {
            // The commit that reaches max_clients also closes the round.
            commit: FIXED + per_param * n + CLOSE_PER_PARAM * n + CLOSE_PER_CLIENT * k,
            close: FIXED + CLOSE_PER_PARAM * n + CLOSE_PER_CLIENT * k,
            upgrade: FIXED + UPGRADE_PER_PARAM * n,
            window: 0,
        }
    }

    /// Adds what a rule that reads every delta of the round costs: its close runs window by
    /// window across messages, each stopping before [`CLOSE_SLICE_INSTRUCTIONS`], so what
    /// must fit is one window of [`rule_window_params`] (its estimate times the margin
    /// within a slice) and the finalisation, which runs in a message of its own when the
    /// slice has no room left for it (as FedAvg's close).
    pub fn with_rule(mut self, rule: &AggregationRule, param_count: u64, max_clients: u32) -> Self {
        let _ = param_count;
        self.window = rule_per_param(rule, max_clients) * rule_window_params(rule, max_clients);
        self
    }

    /// Adds the close's cost of a server optimizer's state: each state vector is read and
    /// written once per parameter, and the adaptive ones take a square root.
    pub fn with_optimizer(mut self, optimizer: &ServerOptimizer, param_count: u64) -> Self {
        let extra = param_count * STATE_PER_VECTOR * optimizer.state_vectors() as u64;
        self.close = self.close.saturating_add(extra);
        self.commit = self.commit.saturating_add(extra);
        self
    }

    /// Central DP adds the noise to every parameter at the close (in the commit that
    /// reaches `max_clients`, or the timer's close).
    pub fn with_dp(mut self, dp: Option<&crate::privacy::DpConfig>, param_count: u64) -> Self {
        // Distributed DP's noise comes from the clients: the canister pays nothing for it.
        if dp.is_some_and(|dp| dp.mode == crate::privacy::DpMode::Central) {
            let extra = param_count * NOISE_PER_PARAM;
            self.close = self.close.saturating_add(extra);
            self.commit = self.commit.saturating_add(extra);
        }
        self
    }

    /// Secure aggregation removes the masks in the message that closes the round: one
    /// mask stream over every parameter per seed (the worst case: the threshold survive,
    /// and the rest dropped after sharing), and one X25519 agreement per dropped pair.
    pub fn with_secagg(
        mut self,
        sa: Option<&crate::secagg::SecAggConfig>,
        param_count: u64,
        max_clients: u32,
    ) -> Self {
        if let Some(sa) = sa {
            let seeds = sa.worst_case_seeds(max_clients);
            let extra = seeds
                .saturating_mul(param_count)
                .saturating_mul(MASK_PER_PARAM)
                .saturating_add(seeds.saturating_mul(AGREEMENT_INSTRUCTIONS))
                .saturating_add(
                    (max_clients as u64)
                        .pow(2)
                        .saturating_mul(SHARE_INSTRUCTIONS),
                );
            self.close = self.close.saturating_add(extra);
        }
        self
    }

    /// `Err(reason)` naming the first message that does not fit with the margin.
    pub fn check(&self) -> Result<(), String> {
        let fits = |what: &str, cost: u64, limit: u64| {
            if cost.saturating_mul(MARGIN) <= limit {
                Ok(())
            } else {
                Err(format!(
                    "the worst-case {what} needs about {:.1} B instructions, and {MARGIN} times that is above the IC's limit of {:.0} B per message: use fewer parameters or clients",
                    cost as f64 / 1e9,
                    limit as f64 / 1e9
                ))
            }
        };
        fits(
            "commit (with the close it triggers)",
            self.commit,
            UPDATE_INSTRUCTION_LIMIT,
        )?;
        fits("close", self.close, UPDATE_INSTRUCTION_LIMIT)?;
        if self.window.saturating_mul(MARGIN) > CLOSE_SLICE_INSTRUCTIONS {
            return Err(format!(
                "one window of the robust rule's close needs about {:.1} B instructions, and {MARGIN} times that is above a close slice of {:.0} B: use fewer clients per round or another rule",
                self.window as f64 / 1e9,
                CLOSE_SLICE_INSTRUCTIONS as f64 / 1e9
            ));
        }
        fits("upgrade", self.upgrade, UPGRADE_INSTRUCTION_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_aggregation_counts_its_unmasking() {
        // 3 of 10 may drop: the worst case is 7 survivors and 3 dropped, 28 streams.
        let sa = crate::secagg::SecAggConfig::tolerating(3, 10, 60_000_000_000).unwrap();
        assert_eq!(sa.worst_case_seeds(10), 28);
        let job = |p: u64| {
            WorstCase::of(p, 10, &[DeltaEncoding::Masked])
                .with_secagg(Some(&sa), p, 10)
                .check()
        };
        assert!(job(1_000_000).is_ok());
        assert!(job(10_000_000).unwrap_err().contains("close"));
        // Without dropouts the streams are the survivors' self masks alone.
        let none = crate::secagg::SecAggConfig::tolerating(0, 10, 60_000_000_000).unwrap();
        assert_eq!(none.worst_case_seeds(10), 10);
    }

    #[test]
    fn small_jobs_fit_and_the_largest_do_not() {
        let both = [DeltaEncoding::F32, DeltaEncoding::Int8Blocks];
        assert!(WorstCase::of(1_000_000, 100, &both).check().is_ok());
        assert!(WorstCase::of(30_000_000, 1_000, &both).check().is_ok());
        let e = WorstCase::of(100_000_000, 10, &both).check().unwrap_err();
        assert!(e.contains("commit"), "{e}");
        // int8 only commits cheaper, but the close alone is too big at 1e8.
        let e = WorstCase::of(100_000_000, 10, &[DeltaEncoding::Int8Blocks])
            .check()
            .unwrap_err();
        assert!(e.contains("B instructions"), "{e}");
        // Ten thousand clients alone fit (the close reads each contribution once).
        assert!(WorstCase::of(1_000, 10_000, &both).check().is_ok());
    }

    #[test]
    fn robust_rules_cost_what_was_measured() {
        // Measured extra close instructions per value (docs/benchmarks.md) stay below the
        // model's: median 135 (K = 10) and 173 (K = 30), Krum(3) 410 and 1,407, Bulyan(1)
        // 686 and 1,940, centered clipping 441 and 506.
        for (rule, k, measured) in [
            (AggregationRule::Median, 10, 135.0),
            (AggregationRule::Median, 30, 173.0),
            (AggregationRule::Krum { f: 3 }, 10, 410.0),
            (AggregationRule::Krum { f: 3 }, 30, 1_407.0),
            (AggregationRule::Bulyan { f: 1 }, 10, 686.0),
            (AggregationRule::Bulyan { f: 1 }, 30, 1_940.0),
            (AggregationRule::CenteredClip { iters: 1 }, 10, 441.0),
            (AggregationRule::CenteredClip { iters: 1 }, 30, 506.0),
        ] {
            let per_value = rule_per_param(&rule, k) as f64 / k as f64;
            assert!(
                per_value >= measured,
                "{rule} K={k}: {per_value} < {measured}"
            );
            assert!(
                per_value <= 2.0 * measured,
                "{rule} K={k}: {per_value} far above {measured}"
            );
        }
        let both = [DeltaEncoding::F32, DeltaEncoding::Int8Blocks];
        // Sliced, a robust close is no longer bounded by the model's size...
        let cc = AggregationRule::CenteredClip { iters: 5 };
        assert!(WorstCase::of(30_000_000, 100, &both)
            .with_rule(&cc, 30_000_000, 100)
            .check()
            .is_ok());
        // ...but one window still has to fit a slice: Krum's pairs grow with K^2.
        let krum = AggregationRule::Krum { f: 3 };
        assert!(WorstCase::of(1_000, 300, &both)
            .with_rule(&krum, 1_000, 300)
            .check()
            .is_ok());
        let e = WorstCase::of(1_000, 2_000, &both)
            .with_rule(&krum, 1_000, 2_000)
            .check()
            .unwrap_err();
        assert!(e.contains("window"), "{e}");
        // Windows shrink with K, in whole int8 blocks.
        assert_eq!(
            rule_window_params(&AggregationRule::Median, 10),
            RULE_WINDOW_PARAMS
        );
        let w = rule_window_params(&krum, 300);
        assert!(w < RULE_WINDOW_PARAMS && w.is_multiple_of(256), "{w}");
    }
}
