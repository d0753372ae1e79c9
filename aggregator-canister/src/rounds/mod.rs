//! The round lifecycle, in three parts:
//!
//! - [`submission`]: `begin_submission`, `put_chunk`, `commit_submission`;
//! - [`close`]: closing the round by quorum or deadline (`on_timer`);
//! - [`queries`]: round, model and lineage queries and their certified forms.

mod close;
mod queries;
mod submission;

pub use submission::pending_limit;
