//! What the release before versioned records wrote that this one no longer keeps: one
//! `Meta` cell (MemoryId 0) with the job, the open round's scalars, the allocators and the
//! history frontier, bare Candid. `State::load` (post_upgrade) moves it into the four
//! records of [`super::records`] once, and leaves a tombstone in its place.

use std::borrow::Cow;

use candid::{CandidType, Decode};
use flic_protocol::Hash;
use ic_stable_structures::storable::Bound;
use ic_stable_structures::{StableCell, Storable};
use serde::Deserialize;
use serde_bytes::ByteBuf;

use super::records::{
    AllocatorsRecord, HistoryRecord, JobConfigRecord, JobRecord, JobStateRecord, OpenRoundRecord,
};
use super::Mem;

/// The previous release's `Meta`, field for field (its nested API types have the same
/// Candid shape as their records).
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
pub struct LegacyMeta {
    pub job_id: u64,
    pub config: Option<JobConfigRecord>,
    pub state: Option<JobStateRecord>,
    pub frac_bits: u32,
    pub spec_id: Option<Hash>,
    pub param_count: u64,
    pub model_chunks: ByteBuf,
    pub model_version: Option<Hash>,
    pub round: u64,
    pub round_opened_at_ns: u64,
    pub deadline_ns: u64,
    pub paused_remaining_ns: u64,
    pub extensions: u32,
    pub committed: u32,
    pub total_weight: u64,
    pub first_contribution_of_round: u64,
    pub next_contribution: u64,
    pub next_submission_id: u64,
    pub next_dataset_id: u64,
    pub staging_top: u64,
    pub history_size: u64,
    pub history_peaks: Vec<Hash>,
}

/// The records a [`LegacyMeta`] becomes.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitMeta {
    pub job: JobRecord,
    pub open_round: OpenRoundRecord,
    pub allocators: AllocatorsRecord,
    pub history: HistoryRecord,
}

impl LegacyMeta {
    pub fn split(self) -> SplitMeta {
        SplitMeta {
            job: JobRecord {
                job_id: self.job_id,
                state: self.state.unwrap_or_default(),
                config: self.config,
                spec_id: self.spec_id,
                param_count: self.param_count,
                frac_bits: self.frac_bits,
                model_chunks: self.model_chunks,
                close_slice_instructions: None,
            },
            open_round: OpenRoundRecord {
                round: self.round,
                model_version: self.model_version,
                opened_at_ns: self.round_opened_at_ns,
                deadline_ns: self.deadline_ns,
                paused_remaining_ns: self.paused_remaining_ns,
                extensions: self.extensions,
                committed: self.committed,
                total_weight: self.total_weight,
                first_contribution: self.first_contribution_of_round,
                close_due_ns: None,
                secagg: None,
                clip_norm: None,
                below_clip: None,
            },
            allocators: AllocatorsRecord {
                next_contribution: self.next_contribution,
                next_submission_id: self.next_submission_id,
                next_dataset_id: self.next_dataset_id,
                staging_top: self.staging_top,
                next_slot: None,
            },
            history: HistoryRecord {
                size: self.history_size,
                peaks: self.history_peaks,
            },
        }
    }
}

/// Not Candid: the previous release's decoder traps on it, so that release cannot be
/// reinstalled over a state it would misread.
const TOMBSTONE: &[u8] = b"flic: Meta moved to MemoryIds 18-21 (versioned records)";

/// The cell in MemoryId 0.
#[derive(Clone, Debug, PartialEq)]
enum MetaSlot {
    Meta(Box<LegacyMeta>),
    Tombstone,
}

impl Storable for MetaSlot {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        match self {
            MetaSlot::Tombstone => Cow::Borrowed(TOMBSTONE),
            MetaSlot::Meta(_) => unreachable!("this release never writes a legacy Meta"),
        }
    }
    fn into_bytes(self) -> Vec<u8> {
        self.to_bytes().into_owned()
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        if bytes.as_ref() == TOMBSTONE {
            MetaSlot::Tombstone
        } else {
            let meta = Decode!(bytes.as_ref(), LegacyMeta)
                .unwrap_or_else(|e| panic!("the previous release's Meta (MemoryId 0): {e}"));
            MetaSlot::Meta(Box::new(meta))
        }
    }
    const BOUND: Bound = Bound::Unbounded;
}

/// Takes the previous release's `Meta` out of `memory` (MemoryId 0), if it is there, and
/// leaves the tombstone (also on a fresh memory). Writes nothing when the tombstone is
/// already there.
pub fn take_meta(memory: Mem) -> Option<LegacyMeta> {
    let mut cell = StableCell::init(memory, MetaSlot::Tombstone);
    match cell.get() {
        MetaSlot::Tombstone => None,
        MetaSlot::Meta(_) => match cell.set(MetaSlot::Tombstone) {
            MetaSlot::Meta(meta) => Some(*meta),
            MetaSlot::Tombstone => unreachable!("the cell held a Meta"),
        },
    }
}

#[cfg(test)]
mod tests {
    use candid::Encode;
    use ic_stable_structures::{DefaultMemoryImpl, Memory};

    use super::*;
    use crate::storage::{read_bytes, Memories, MEMORY_LEGACY_META};

    /// Bare Candid, as the previous release's `Stored<Meta>` wrote it.
    struct Bare(LegacyMeta);
    impl Storable for Bare {
        fn to_bytes(&self) -> Cow<'_, [u8]> {
            Cow::Owned(Encode!(&self.0).unwrap())
        }
        fn into_bytes(self) -> Vec<u8> {
            Encode!(&self.0).unwrap()
        }
        fn from_bytes(bytes: Cow<[u8]>) -> Self {
            Bare(Decode!(bytes.as_ref(), LegacyMeta).unwrap())
        }
        const BOUND: Bound = Bound::Unbounded;
    }

    fn meta() -> LegacyMeta {
        LegacyMeta {
            job_id: 3,
            config: None,
            state: Some(JobStateRecord::Paused),
            frac_bits: 20,
            spec_id: Some(Hash::new([1; 32])),
            param_count: 300,
            model_chunks: ByteBuf::from(vec![1, 1]),
            model_version: Some(Hash::new([2; 32])),
            round: 4,
            round_opened_at_ns: 5,
            deadline_ns: 6,
            paused_remaining_ns: 7,
            extensions: 8,
            committed: 9,
            total_weight: 10,
            first_contribution_of_round: 11,
            next_contribution: 20,
            next_submission_id: 13,
            next_dataset_id: 14,
            staging_top: 15,
            history_size: 4,
            history_peaks: vec![Hash::new([3; 32])],
        }
    }

    #[test]
    fn the_legacy_meta_is_taken_once_and_a_tombstone_left() {
        let mems = Memories::init(DefaultMemoryImpl::default());
        let memory = mems.get(MEMORY_LEGACY_META);
        StableCell::init(memory.clone(), Bare(meta()));
        assert_eq!(take_meta(memory.clone()), Some(meta()));
        let after = read_bytes(&memory, 0, memory.size() * 65536);
        assert_eq!(take_meta(memory.clone()), None);
        assert_eq!(read_bytes(&memory, 0, memory.size() * 65536), after);
        // The previous release's decoder refuses the tombstone (a downgrade traps).
        assert!(Decode!(TOMBSTONE, LegacyMeta).is_err());

        let split = meta().split();
        assert_eq!(split.job.state, JobStateRecord::Paused);
        assert_eq!(
            (split.open_round.round, split.open_round.first_contribution),
            (4, 11)
        );
        assert_eq!(split.allocators.next_contribution, 20);
        assert_eq!(split.history.size, 4);
    }

    #[test]
    fn a_fresh_memory_gets_the_tombstone() {
        let mems = Memories::init(DefaultMemoryImpl::default());
        let memory = mems.get(MEMORY_LEGACY_META);
        assert_eq!(take_meta(memory.clone()), None);
        assert!(memory.size() > 0);
        assert_eq!(take_meta(memory), None);
    }
}
