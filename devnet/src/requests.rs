//! What became of each ingress call: the `request_status` part of the state tree, the
//! replay protection, and what a restarted devnet still knows.
//!
//! A call's request id is recorded when it executes; the same id again is answered from
//! here and never runs twice. Records are dropped once their ingress expiry has passed
//! (a client can no longer submit them), as the IC does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Replied(#[serde(with = "serde_bytes")] Vec<u8>),
    Rejected {
        code: u8,
        message: String,
        error_code: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub outcome: Outcome,
    /// The call's ingress expiry: the record is kept until then.
    pub expiry: u64,
    /// Only the sender may read the status.
    pub sender: candid::Principal,
}

/// Records by request id.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Requests {
    records: BTreeMap<[u8; 32], Record>,
    /// Reply bytes held, bounded by [`MAX_REPLY_BYTES`].
    bytes: usize,
}

/// Replies kept for polling at most (the oldest records' replies go first).
pub const MAX_REPLY_BYTES: usize = 1 << 30;

impl Requests {
    pub fn get(&self, id: &[u8; 32]) -> Option<&Record> {
        self.records.get(id)
    }

    pub fn insert(&mut self, id: [u8; 32], record: Record) {
        self.bytes += record_bytes(&record);
        if let Some(old) = self.records.insert(id, record) {
            self.bytes -= record_bytes(&old);
        }
        while self.bytes > MAX_REPLY_BYTES {
            let Some((&oldest, _)) = self.records.iter().min_by_key(|(_, r)| r.expiry) else {
                break;
            };
            let r = self.records.remove(&oldest).expect("just found");
            self.bytes -= record_bytes(&r);
        }
    }

    /// Drops records whose expiry is before `now`.
    pub fn expire(&mut self, now: u64) {
        let before = self.records.len();
        self.records.retain(|_, r| r.expiry >= now);
        if self.records.len() != before {
            self.bytes = self.records.values().map(record_bytes).sum();
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8; 32], &Record)> {
        self.records.iter()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }
}

fn record_bytes(r: &Record) -> usize {
    match &r.outcome {
        Outcome::Replied(b) => b.len(),
        Outcome::Rejected { message, .. } => message.len(),
    }
}
