#![no_main]
//! See `flic_fuzz::delta` for the input layout and the invariants checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flic_fuzz::delta::run(data));
