//! Checks of the fuzz harness itself: that its snapshots see every byte and that it starts
//! every input from exactly the prepared state.

use flic_fuzz::memory_image::MemImage;
use flic_fuzz::submission::{execute, run, Harness};

#[test]
fn restored_state_is_byte_identical_to_a_fresh_one() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/submission_path");
    for shape in [0u8, 0b0101, 0b1111, 0b1_0101] {
        let fresh = Harness::fresh_bytes(shape);
        // Dirty the working memory with whole rounds, then start over.
        for entry in std::fs::read_dir(&seeds).unwrap().take(6) {
            let mut data = std::fs::read(entry.unwrap().path()).unwrap();
            data[0] = shape ^ 0b0110;
            run(&data);
        }
        let h = Harness::new(shape);
        assert!(
            h.bytes() == fresh,
            "restored memory differs from a fresh one (shape {shape})"
        );
    }
}

#[test]
fn an_image_sees_every_byte_in_use() {
    let mem = ic_stable_structures::DefaultMemoryImpl::default();
    *mem.borrow_mut() = Harness::new(0b0101).bytes();
    let before = MemImage::of(&mem);
    let in_use: Vec<usize> = (0..mem.borrow().len())
        .filter(|&i| mem.borrow()[i] != 0)
        .collect();
    assert!(in_use.len() > 1000);
    // Flip a sample of the non-zero bytes past page 0 (the image holds page 0 verbatim,
    // and a corrupt manager header is not something a load can read back), one at a
    // time: each must change the image.
    for &at in in_use.iter().filter(|&&i| i >= 65536).step_by(53) {
        mem.borrow_mut()[at] ^= 0x40;
        assert!(
            MemImage::of(&mem) != before,
            "a change at byte {at} was invisible"
        );
        mem.borrow_mut()[at] ^= 0x40;
    }
    assert!(MemImage::of(&mem) == before);
}

/// The seeds reach where their names say: a harness that rejects everything would pass the
/// fuzz target's checks without testing much.
#[test]
fn seeds_reach_closed_rounds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/submission_path");
    let progress = |name: &str| execute(&std::fs::read(dir.join(name)).unwrap()).progress();
    assert_eq!(progress("full_round_quorum"), (1, 3));
    assert_eq!(progress("two_rounds_then_replay"), (2, 6));
    assert_eq!(progress("deadline_close"), (1, 2));
    assert_eq!(progress("deadline_extends"), (1, 3));
    assert_eq!(progress("single_client_rounds"), (3, 3));
    assert_eq!(progress("pause_upgrade_resume"), (0, 1));
    assert_eq!(progress("chunk_mutations"), (0, 1));
    assert_eq!(progress("datasets_and_revocation"), (0, 1));
    // A header mutation is rejected; the honest upload after it commits.
    assert_eq!(progress("begin_mutation_07"), (0, 1));
    // A payload mutation is accepted at begin and rejected at commit.
    assert_eq!(progress("begin_mutation_02"), (0, 1));
    assert_eq!(progress("begin_mutation_23"), (0, 2));
    // Central DP: three rounds close, each only with its seed (one across an upgrade).
    assert_eq!(progress("dp_rounds_wait_for_their_seed"), (3, 7));
    // Rounds of one contribution until the budget pauses the job; the resume is refused.
    let budget = flic_fuzz::submission::config(0x10)
        .dp
        .unwrap()
        .rounds_within_budget();
    assert!((1..8).contains(&budget), "{budget}");
    assert_eq!(progress("dp_budget_pauses"), (budget, budget));
}
