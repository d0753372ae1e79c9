//! Counters of the state that would otherwise cost a scan: kept in the metrics record and
//! advanced incrementally, so that `/metrics` stays O(1) however long the history.

use std::ops::Bound;

use crate::metrics::ContributorCount;
use crate::state::State;
use crate::storage::Stored;

/// Contributions the boundary counts per update or timer message (one contribution record
/// read and one index seek each; a commit adds one). Only a state written by a release
/// before the counter has a backlog, and it is counted this many at a time.
pub const CONTRIBUTOR_COUNT_STEPS: u64 = 1_000;

/// Contributions `/metrics` (a query) counts past the stored counter before it gives up and
/// leaves the gauge out until the boundary has caught up.
pub const CONTRIBUTOR_COUNT_QUERY_STEPS: u64 = 1_000;

impl State {
    fn contributor_counter(&self) -> ContributorCount {
        self.metrics().contributors.unwrap_or_default()
    }

    /// How many of contributions `from..to` are the first of their principal.
    fn count_first_contributions(&self, from: u64, to: u64) -> u64 {
        (from..to)
            .filter(|&i| {
                let p = self
                    .contributions
                    .get(&i)
                    .expect("contributions 0..next_contribution exist")
                    .0
                    .contribution
                    .contributor;
                let first = self
                    .by_contributor
                    .keys_range((Bound::Included((p, 0)), Bound::Unbounded))
                    .next();
                first == Some((p, i))
            })
            .count() as u64
    }

    /// Principals with at least one committed contribution: the stored counter plus at most
    /// `max_steps` contributions it has not counted yet; `None` if more are uncounted.
    pub fn distinct_contributor_count(&self, max_steps: u64) -> Option<u64> {
        let c = self.contributor_counter();
        let end = self.allocators().next_contribution;
        let behind = end.saturating_sub(c.counted_through);
        (behind <= max_steps)
            .then(|| c.distinct + self.count_first_contributions(c.counted_through, end))
    }

    /// Counts up to `max_steps` contributions not counted yet into the stored counter.
    /// Writes nothing when it is up to date (every message but those that commit).
    pub fn count_new_contributors(&mut self, max_steps: u64) {
        let mut c = self.contributor_counter();
        let end = self.allocators().next_contribution;
        if c.counted_through >= end {
            return;
        }
        let stop = end.min(c.counted_through.saturating_add(max_steps));
        c.distinct += self.count_first_contributions(c.counted_through, stop);
        c.counted_through = stop;
        let mut m = self.metrics().clone();
        m.contributors = Some(c);
        self.metrics.set(Stored(m));
    }
}
