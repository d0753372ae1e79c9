//! The round lifecycle, in three parts:
//!
//! - [`submission`]: `begin_submission`, `put_chunk`, `commit_submission`;
//! - [`close`]: closing the round by quorum or deadline (`on_timer`), a robust rule's
//!   close over as many messages as it needs;
//! - [`queries`]: round, model and lineage queries and their certified forms;
//! - [`privacy`]: central DP's noise seed and budget;
//! - [`secagg`]: secure aggregation's phases, the canister as their bulletin board.

mod close;
mod privacy;
mod queries;
mod secagg;
mod submission;

pub use close::Closing;
pub use submission::pending_limit;
