#![no_main]
//! See `flic_fuzz::merkle_proofs` for the input layout and the invariants checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flic_fuzz::merkle_proofs::run(data));
