//! Runs every committed corpus file (`fuzz/corpus/<target>/`) through its target once, on
//! the nightly toolchain without libFuzzer driving it:
//! `cargo +nightly test --release --manifest-path fuzz/Cargo.toml`. A regression input
//! for a fixed bug belongs in the corpus, so this keeps it fixed without libFuzzer.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| run(&data));
        assert!(result.is_ok(), "{} panicked on {}", target, path.display());
        n += 1;
    }
    assert!(n > 0, "no corpus in {}", dir.display());
}

#[test]
fn candid_update_args_corpus() {
    replay("candid_update_args", flic_fuzz::candid_args::run);
}

#[test]
fn delta_decoders_corpus() {
    replay("delta_decoders", flic_fuzz::delta::run);
}

#[test]
fn submission_path_corpus() {
    replay("submission_path", flic_fuzz::submission::run);
}

#[test]
fn merkle_verify_corpus() {
    replay("merkle_verify", flic_fuzz::merkle_proofs::run);
}
