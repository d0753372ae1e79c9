//! The `flic` client as a library: identity, transports, typed canister API, the
//! contributor flow, and whole-federation simulation. The binary (`src/main.rs`) only
//! parses arguments and prints.

pub mod api;
pub mod attack;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod compute;
pub mod data;
pub mod identity;
pub mod lineage;
pub mod model_file;
pub mod output;
pub mod participant;
pub mod receipts;
pub mod residual;
pub mod retry;
pub mod secagg;
pub mod simulate;
pub mod training;
pub mod transport;
