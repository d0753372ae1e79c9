//! Fuzz targets for flic, as plain functions of the input bytes, so the libFuzzer binaries
//! (`fuzz_targets/`), the seed-corpus generator (`examples/gen_corpus.rs`) and the corpus
//! replay test (`tests/replay.rs`) share one implementation.
//!
//! Each target reads its input with a [`Cursor`] in a documented byte layout rather than
//! through `arbitrary`, so seeds can be written by hand (see `examples/gen_corpus.rs`).
//! A target returns normally or panics; a panic is a finding.

pub mod candid_args;
pub mod cursor;
pub mod delta;
pub mod memory_image;
pub mod merkle_proofs;
pub mod submission;

pub use cursor::Cursor;
