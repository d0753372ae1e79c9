//! The aggregator's release wasm in `flic-embedded-ic`: every scenario, always.

use flic_tests::embedded::EmbeddedEnv;

flic_tests::scenario_tests!(Ok::<_, String>(EmbeddedEnv::new());
    full_round_three_contributors,
    every_rejection_leaves_state_unchanged,
    upgrade_mid_round_loses_nothing,
    trap_during_commit_rolls_back,
    deadline_timer_closes_or_extends,
    instruction_counts_are_reported,
    replayed_submissions_are_rejected,
    compressed_payloads_are_validated,
);
