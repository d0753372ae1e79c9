//! The same scenarios on PocketIC, when `POCKET_IC_BIN` names a server binary; otherwise
//! each test prints why it is skipped.

use flic_tests::pocket::PocketIcEnv;

flic_tests::scenario_tests!(PocketIcEnv::from_env();
    full_round_three_contributors,
    every_rejection_leaves_state_unchanged,
    upgrade_mid_round_loses_nothing,
    trap_during_commit_rolls_back,
    deadline_timer_closes_or_extends,
    instruction_counts_are_reported,
    replayed_submissions_are_rejected,
    compressed_payloads_are_validated,
);
