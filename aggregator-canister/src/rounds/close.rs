//! Closing a round: by `max_clients` inside the commit that reaches it, or by the deadline
//! timer with `min_clients` (otherwise the deadline moves on). Closing computes
//! `w_{r+1}`, appends the round record to the history, indexes the new version and opens
//! round `r + 1`.

use flic_protocol::api::{Contribution, JobState, RoundClip, RoundRecord};
use flic_protocol::merkle::{self, leaf_hash};
use flic_protocol::Hash;

use flic_protocol::ic_limits;
use flic_protocol::privacy::{self, DpMode};
use flic_protocol::rules::{RoundContribution, RuleProgress};

use crate::aggregation;
use crate::state::State;
use crate::storage::records::{ClosedRoundRecord, HistoryRecord};
use crate::storage::Mem;
use crate::storage::Stored;

/// A robust rule's close under way: the rule's progress and its integers (8 bytes per
/// parameter, as FedAvg's accumulator), then its denominator once every pass is done.
pub struct Closing {
    /// When the round stopped taking contributions (its record's `closed_at_ns`).
    started_ns: u64,
    progress: RuleProgress,
    integers: Vec<i64>,
    denominator: Option<u64>,
}

/// How a round's integers reach the finalisation.
enum Update<'a> {
    /// FedAvg: the streaming accumulator and the round's total weight.
    Accumulated,
    /// A robust rule: its integers and denominator.
    Rule(&'a mut [i64], u64),
}

impl State {
    /// Closes the open round (needs at least one commit). FedAvg closes here and now; a
    /// rule that reads every delta starts its close, which goes on window by window in
    /// this message and the following timer messages ([`State::continue_close`]) while
    /// the round refuses submissions.
    pub(super) fn close_round(&mut self, now: u64) {
        if self.close_waits_for_seed() {
            // Central DP: the noise needs this round's secret seed, which is on its way
            // (`receive_noise_seed` closes the round); the round takes no submissions.
            if self.open_round().close_due_ns.is_none() {
                let mut round = self.open_round().clone();
                round.close_due_ns = Some(now);
                self.set_open_round(round);
            }
            return;
        }
        if self.job().config().aggregation().needs_all_deltas() {
            if self.closing.is_none() {
                self.closing = Some(Closing {
                    started_ns: now,
                    progress: RuleProgress::default(),
                    integers: vec![0; self.job().param_count as usize],
                    denominator: None,
                });
            }
            self.continue_close(now);
        } else {
            let closed_at = self.open_round().close_due_ns.unwrap_or(now);
            self.finish_close(closed_at, now, Update::Accumulated);
        }
    }

    /// Whether the round is closing: a robust close under way, a close waiting for its
    /// noise seed (central DP), or one an upgrade interrupted (the round reached
    /// `max_clients` and is still open), which the next timer starts again. The round
    /// takes no submissions meanwhile.
    pub fn close_pending(&self) -> bool {
        if self.closing.is_some() || self.open_round().close_due_ns.is_some() {
            return true;
        }
        let job = self.job();
        job.job_state() == JobState::Running
            && (job.config().aggregation().needs_all_deltas() || job.config().dp.is_some())
            && job.config().secure_aggregation.is_none()
            && self.open_round().committed >= job.config().max_clients
    }

    /// One message's share of a robust close: windows while the message stays below the
    /// slice budget, then the finalisation if it fits too (else the next message does it).
    fn continue_close(&mut self, now: u64) {
        let Some(mut closing) = self.closing.take() else {
            return;
        };
        let job = self.job();
        let config = job.config();
        let rule = config.aggregation();
        let (frac_bits, param_count) = (job.frac_bits, job.param_count);
        let budget = job.close_slice_instructions();
        let (clients, optimizer) = (config.max_clients, config.server_optimizer());
        let meter = self.meter;
        // A rule done in an earlier message leaves this one to the finalisation alone (the
        // job's limit check makes it fit a message, whatever the slice budget).
        let fresh = closing.denominator.is_some();
        if closing.denominator.is_none() {
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
            let window = ic_limits::rule_window_params(&rule, clients);
            let window_cost =
                ic_limits::rule_per_param(&rule, clients) * window * ic_limits::MARGIN;
            closing.denominator = aggregation::rule_slice(
                &rule,
                &staged,
                param_count,
                frac_bits,
                &mut closing.integers,
                &mut closing.progress,
                window,
                &mut || meter().saturating_add(window_cost) <= budget,
            );
        }
        let finalisation = ic_limits::finalisation(param_count, clients, &optimizer);
        match closing.denominator {
            Some(d) if fresh || meter().saturating_add(finalisation) <= budget => {
                let closed_at = closing.started_ns;
                self.finish_close(closed_at, now, Update::Rule(&mut closing.integers, d));
            }
            _ => self.closing = Some(closing),
        }
    }

    /// Computes `w_{r+1}`, records the round as closed at `closed_at`, discards
    /// uncommitted uploads, and opens round `r + 1` at `now`.
    fn finish_close(&mut self, closed_at: u64, now: u64, update: Update) {
        let job = self.job();
        let config = job.config();
        let (retain, server_lr, round_duration_ns) = (
            config.retain_contributions,
            config.server_lr,
            config.round_duration_ns,
        );
        let (frac_bits, spec_id) = (job.frac_bits, job.spec_id());
        let round_index = self.open_round().round;
        let dp = config.dp();
        let param_count = job.param_count;
        let (max_clip, max_weight) = (config.clip_norm, config.max_weight);
        let clip_norm = self.round_clip_norm();
        let optimizer = config.server_optimizer();
        let mut round = self.open_round().clone();
        // Central DP: Gaussian noise on the round's sum, from the round's secret seed
        // (FedAvg only: jobs with DP refuse robust rules), and with adaptive clipping on
        // the count of contributions at or below the clip, which moves the clip.
        // Distributed DP: the unmasked sum carries the clients' noise already.
        // With adaptive clipping: this round's clip and noised count, and the next clip.
        let mut adaptive_clip = None;
        let mut next_clip = None;
        let epsilon_spent = match (dp, &update) {
            (Some(dp), Update::Accumulated) if dp.mode == DpMode::Distributed => {
                Some(dp.epsilon_after(round_index + 1))
            }
            (Some(dp), Update::Accumulated) => {
                let seed = self
                    .take_noise_seed()
                    .expect("a DP round closes only with its seed (close_round waits)");
                let std =
                    privacy::noise_std_fixed(&dp, clip_norm, max_weight, frac_bits, param_count);
                if self.acc.is_empty() {
                    self.acc = vec![0; param_count as usize];
                }
                privacy::add_gaussian_noise(&mut self.acc, &seed, round_index, std);
                if let Some(clip) = dp.adaptive_clip {
                    let below = round.below_clip.unwrap_or(0) as f64;
                    let noise = privacy::adaptive_clip::count_noise(
                        &seed,
                        round_index,
                        clip.count_noise_std,
                    );
                    let noised_count = below + noise;
                    adaptive_clip = Some(RoundClip {
                        clip_norm,
                        noised_count,
                    });
                    next_clip =
                        Some(clip.next_clip(clip_norm, noised_count, round.committed, max_clip));
                }
                Some(dp.epsilon_after(round_index + 1))
            }
            _ => None,
        };
        let step = aggregation::ServerStep {
            optimizer,
            server_lr,
            m: &self.optimizer_m,
            v: &self.optimizer_v,
        };
        let new_version = match update {
            Update::Rule(integers, d) => {
                aggregation::finalize(&self.weights, integers, d, frac_bits, &step, &spec_id)
            }
            Update::Accumulated => aggregation::finalize(
                &self.weights,
                &mut self.acc,
                round.total_weight,
                frac_bits,
                &step,
                &spec_id,
            ),
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
            closed_at_ns: closed_at,
            extensions: round.extensions,
            epsilon_spent,
            adaptive_clip,
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
        self.clear_secagg(&mut round);
        round.round += 1;
        round.model_version = Some(Hash::new(new_version));
        round.opened_at_ns = now;
        round.deadline_ns = now + round_duration_ns;
        round.extensions = 0;
        round.close_due_ns = None;
        round.committed = 0;
        round.total_weight = 0;
        round.first_contribution = next_contribution;
        round.below_clip = None;
        if next_clip.is_some() {
            round.clip_norm = next_clip;
        }
        if let Some(dp) = dp {
            if !dp.allows_round(round.round) {
                // The budget has no room for another round: the job pauses, and
                // `resume_job` refuses while the budget is spent.
                round.paused_remaining_ns = round.deadline_ns - now;
                self.set_open_round(round);
                self.set_job_state(crate::storage::records::JobStateRecord::Paused);
                return;
            }
        }
        self.set_open_round(round);
    }

    /// The deadline timer: close the round if it has `min_clients`, else extend it by one
    /// round duration from now. Does nothing before the deadline or when not running.
    pub fn on_timer(&mut self, now: u64) {
        if self.close_pending() {
            // A robust close goes on (or, after an upgrade dropped it, starts again).
            self.close_round(now);
            return;
        }
        let job = self.job();
        let round = self.open_round();
        if job.job_state() == JobState::Running && job.config().secure_aggregation.is_some() {
            // Secure aggregation's phases have their own deadlines, and close by unmasking.
            self.secagg_timer(now);
            return;
        }
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
