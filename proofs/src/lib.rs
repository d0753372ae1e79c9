//! # flic-proofs
//!
//! Verifiers that let a client, a contributor or any reader trust nothing but the IC's
//! root key and its own arithmetic:
//!
//! - [`certificate`]: an IC certificate (BLS12-381 signature over the state tree, optional
//!   subnet delegation) and the canister's certified data in it;
//! - [`certified`]: a certified reply of the aggregator: the witness against the certified
//!   data, and the reply's fields against the witness;
//! - [`receipt`]: a contribution receipt (signature, inclusion proof, certified round);
//! - [`lineage`]: recomputing a model version bit for bit from its round's contributions;
//! - [`sample`]: membership of one sample in a registered dataset commitment.
//!
//! Every verifier returns a typed [`ProofError`] naming what did not match; none panics on
//! malformed input. See `docs/proofs.md` for what each proof shows and what it does not.

pub mod certificate;
pub mod certified;
mod error;
pub mod lineage;
pub mod receipt;
pub mod sample;

pub use certificate::{verify_certificate, Freshness, VerifiedCertificate};
pub use certified::{CertifiedView, Trust};
pub use error::ProofError;
