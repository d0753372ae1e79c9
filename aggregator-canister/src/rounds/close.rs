//! Closing a round: by `max_clients` inside the commit that reaches it, or by the deadline
//! timer with `min_clients` (otherwise the deadline moves on). Closing computes
//! `w_{r+1}`, appends the round record to the history, indexes the new version and opens
//! round `r + 1`.

use flic_protocol::api::{Contribution, JobState, RoundRecord};
use flic_protocol::merkle::{self, leaf_hash};
use flic_protocol::Hash;

use flic_protocol::rules::RoundContribution;

use crate::aggregation;
use crate::state::State;
use crate::storage::records::{ClosedRoundRecord, HistoryRecord};
use crate::storage::Mem;
use crate::storage::Stored;

impl State {
    /// Closes the open round: computes `w_{r+1}`, records the round, discards uncommitted
    /// uploads, and opens round `r + 1`. Needs at least one commit.
    pub(super) fn close_round(&mut self, now: u64) {
        let job = self.job();
        let config = job.config();
        let (retain, server_lr, round_duration_ns) = (
            config.retain_contributions,
            config.server_lr,
            config.round_duration_ns,
        );
        let (frac_bits, spec_id, param_count) = (job.frac_bits, job.spec_id(), job.param_count);
        let rule = config.aggregation();
        let step = aggregation::ServerStep {
            optimizer: config.server_optimizer(),
            server_lr,
            m: &self.optimizer_m,
            v: &self.optimizer_v,
        };
        let mut round = self.open_round().clone();
        let new_version = if rule.needs_all_deltas() {
            // The round's committed deltas, still in their slots.
            let staged: Vec<(RoundContribution, &Mem, u64)> = self
                .submissions
                .iter()
                .map(|e| e.value().0)
                .filter(|s| s.contribution.is_some())
                .map(|s| {
                    (
                        RoundContribution {
                            encoding: s.header.encoding(),
                            weight: s.weight,
                            key: s.header_hash.into_array(),
                        },
                        self.staged_in(&s),
                        s.staging_offset,
                    )
                })
                .collect();
            aggregation::finalize_rule(
                &self.weights,
                &rule,
                &staged,
                param_count,
                frac_bits,
                &step,
                &spec_id,
            )
        } else {
            aggregation::finalize(
                &self.weights,
                &mut self.acc,
                round.total_weight,
                frac_bits,
                &step,
                &spec_id,
            )
        };
        let next_contribution = self.allocators().next_contribution;
        let contributions: Vec<Contribution> = (round.first_contribution..next_contribution)
            .map(|i| self.contribution(i).expect("round contribution"))
            .collect();
        let leaves: Vec<[u8; 32]> = contributions
            .iter()
            .map(|c| leaf_hash(c.header_hash.as_slice()))
            .collect();
        let record = RoundRecord {
            round: round.round,
            base_version: round.model_version.expect("running"),
            new_version: Hash::new(new_version),
            contributions_root: Hash::new(merkle::root(&leaves)),
            first_contribution: round.first_contribution,
            contribution_count: contributions.len() as u32,
            total_weight: round.total_weight,
            contributors: contributions.iter().map(|c| c.contributor).collect(),
            frac_bits,
            server_lr,
            opened_at_ns: round.opened_at_ns,
            closed_at_ns: now,
            extensions: round.extensions,
        };
        let mut history = self.history().frontier();
        history.push(record.history_leaf());
        self.set_history(HistoryRecord::of(&history));
        self.certified.push_round(&record);
        self.rounds
            .insert(round.round, Stored(ClosedRoundRecord::from(record)));
        self.versions.insert(new_version, round.round + 1);
        // Every upload of the closed round goes (those not committed are discarded), and
        // every slot is free again.
        let ids: Vec<u64> = self.submissions.keys().collect();
        for id in ids {
            self.remove_upload(id);
        }
        if !retain {
            // Only uploads begun by the release before staging slots used the arena.
            let mut ids = self.allocators().clone();
            ids.staging_top = 0;
            self.set_allocators(ids);
        }
        round.round += 1;
        round.model_version = Some(Hash::new(new_version));
        round.opened_at_ns = now;
        round.deadline_ns = now + round_duration_ns;
        round.extensions = 0;
        round.committed = 0;
        round.total_weight = 0;
        round.first_contribution = next_contribution;
        self.set_open_round(round);
    }

    /// The deadline timer: close the round if it has `min_clients`, else extend it by one
    /// round duration from now. Does nothing before the deadline or when not running.
    pub fn on_timer(&mut self, now: u64) {
        let job = self.job();
        let round = self.open_round();
        if job.job_state() != JobState::Running || round.deadline_ns == 0 || now < round.deadline_ns
        {
            return;
        }
        if round.committed >= job.config().min_clients {
            self.close_round(now);
        } else {
            // Each extension drops the uploads that have stalled: nobody holds a slot
            // from one deadline to the next without progressing.
            let mut round = round.clone();
            round.deadline_ns = now + job.config().round_duration_ns;
            round.extensions += 1;
            self.set_open_round(round);
            self.drop_stalled_uploads(now);
        }
    }
}
