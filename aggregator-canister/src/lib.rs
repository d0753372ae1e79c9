//! The flic aggregator canister.
//!
//! A pure core ([`state::State`] and its modules) that takes the caller and the time as
//! arguments, behind one thin `ic-cdk` boundary ([`canister`]).
//!
//! - [`storage`]: stable-memory layout (one `MemoryManager`, named `MemoryId`s, flat arrays),
//!   the versioned records kept there, and the upgrade from the release before them;
//! - [`state`]: the state, job administration, invariants;
//! - [`registry`]: datasets and contribution indexes;
//! - [`rounds`]: submissions, round closing, round and model queries (one file each);
//! - [`aggregation`]: streaming FedAvg over stable memory;
//! - [`certification`]: the certified state tree and its witnesses;
//! - [`evaluations`]: model quality per round, reported by controllers and contributors;
//! - [`metrics`]: operational counters recorded by the boundary;
//! - [`counters`]: counters of the state kept incrementally (distinct contributors);
//! - [`http`]: `http_request` (dashboard page, JSON API, Prometheus metrics).

pub mod admission;
pub mod aggregation;
pub mod canister;
pub mod certification;
pub mod counters;
pub mod evaluations;
pub mod http;
pub mod inspect;
pub mod metrics;
pub mod registry;
pub mod rounds;
pub mod state;
pub mod storage;

#[cfg(test)]
mod tests;
