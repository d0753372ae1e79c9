//! Differential privacy: the secret seed of each round's noise under central DP (from the
//! IC's `raw_rand`, asked for by the `ic-cdk` boundary), and the budget of either mode.
//! Under distributed DP the clients add the noise inside their masked inputs, and the
//! canister neither draws nor adds any.
//!
//! A round of a job with DP closes only with its seed: a close that finds none waits
//! (recorded in the open round, so it survives upgrades), and the seed's arrival closes it.
//! The seed lives on the heap only and is overwritten when the close uses it, so no later
//! read of the canister's memory can remove a past round's noise; an upgrade drops it and
//! the boundary asks again.

use flic_protocol::api::JobState;
use flic_protocol::privacy::{AdaptiveClip, DpConfig, DpMode};

use crate::state::State;

impl State {
    /// The job's DP, if any.
    pub fn dp(&self) -> Option<DpConfig> {
        self.job().config.as_ref().and_then(|c| c.dp())
    }

    /// The job's DP if the canister adds its noise (central DP).
    pub(crate) fn central_dp(&self) -> Option<DpConfig> {
        self.dp().filter(|dp| dp.mode == DpMode::Central)
    }

    /// The job's adaptive clipping, if any.
    pub fn adaptive_clip(&self) -> Option<AdaptiveClip> {
        self.dp().and_then(|dp| dp.adaptive_clip)
    }

    /// The L2 bound of the open round's deltas: the job's `clip_norm`, or under adaptive
    /// clipping the round's clip.
    pub fn round_clip_norm(&self) -> f32 {
        let fixed = self.job().config().clip_norm;
        match self.adaptive_clip() {
            Some(_) => self.open_round().clip_norm.unwrap_or(fixed),
            None => fixed,
        }
    }

    /// Whether the open round still needs the seed of its noise.
    pub fn wants_noise_seed(&self) -> bool {
        self.central_dp().is_some()
            && self.job().job_state() == JobState::Running
            && self.noise_seed.is_none()
    }

    /// A close that waits for the seed (see [`State::close_pending`]).
    pub(crate) fn close_waits_for_seed(&self) -> bool {
        self.central_dp().is_some() && self.noise_seed.is_none()
    }

    /// `raw_rand`'s reply. A close that was waiting goes ahead now.
    pub fn receive_noise_seed(&mut self, seed: [u8; 32], now: u64) {
        self.seed_requested = false;
        if !self.wants_noise_seed() {
            return;
        }
        self.noise_seed = Some(seed);
        if self.close_pending() {
            self.close_round(now);
        }
    }

    /// The seed, for the close that uses it; the copy in the state is overwritten.
    pub(crate) fn take_noise_seed(&mut self) -> Option<[u8; 32]> {
        let seed = self.noise_seed?;
        if let Some(stored) = self.noise_seed.as_mut() {
            for b in stored.iter_mut() {
                // Volatile: the compiler may not drop a store nobody reads.
                // SAFETY: `b` is a valid, aligned, exclusive reference to a byte.
                unsafe { std::ptr::write_volatile(b, 0) };
            }
        }
        self.noise_seed = None;
        Some(seed)
    }

    /// Rounds closed so far and the epsilon they spent (0 and 0 without DP).
    pub fn privacy_spent(&self) -> (u64, f64) {
        match self.dp() {
            Some(dp) if self.job().job_state() != JobState::Unconfigured => {
                let rounds = self.open_round().round;
                (rounds, dp.epsilon_after(rounds))
            }
            _ => (0, 0.0),
        }
    }

    /// Whether the budget has room for the open round.
    pub fn budget_allows_open_round(&self) -> bool {
        match self.dp() {
            Some(dp) => dp.allows_round(self.open_round().round),
            None => true,
        }
    }
}
