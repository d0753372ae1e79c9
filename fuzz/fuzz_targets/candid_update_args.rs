#![no_main]
//! See `flic_fuzz::candid_args` for the input layout and the invariants checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flic_fuzz::candid_args::run(data));
