//! Where a contributor keeps its receipts: one JSON file per contribution, written once the
//! round closes (a receipt needs the round's certified record), and a list of commits
//! whose rounds were still open.

use std::path::{Path, PathBuf};

use flic_proofs::receipt::Receipt;
use flic_protocol::api::QueryError;
use serde::{Deserialize, Serialize};

use crate::api::{AggregatorApi, ApiError};
use crate::transport::Transport;

pub struct ReceiptStore {
    dir: PathBuf,
    origin: Option<ReceiptOrigin>,
}

/// Where a receipt came from, so that `flic verify receipt FILE` knows where to check it
/// without being told. A hint only: the proof is the certificate inside the receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptOrigin {
    /// `ic`, `local`, a URL, or `embedded`.
    pub network: String,
    /// The saved embedded IC (`flic simulate --state DIR`), for `embedded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<PathBuf>,
}

/// A receipt file: the receipt's fields, plus where it came from (files written before
/// `origin` existed still read).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiptFile {
    #[serde(flatten)]
    pub receipt: Receipt,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<ReceiptOrigin>,
}

/// `receipt-round<r>-contribution<i>.json`.
pub fn receipt_file_name(r: &Receipt) -> String {
    format!(
        "receipt-round{}-contribution{}.json",
        r.round, r.contribution_index
    )
}

pub fn write_receipt(path: &Path, file: &ReceiptFile) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    std::fs::write(path, json)
}

pub fn read_receipt(path: &Path) -> anyhow::Result<ReceiptFile> {
    use anyhow::Context;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a flic receipt", path.display()))
}

impl ReceiptStore {
    pub fn new(dir: &Path, origin: Option<ReceiptOrigin>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            origin,
        }
    }

    fn pending_path(&self) -> PathBuf {
        self.dir.join("pending.json")
    }

    fn pending(&self) -> std::io::Result<Vec<u64>> {
        match std::fs::read(self.pending_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn set_pending(&self, pending: &[u64]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        std::fs::write(
            self.pending_path(),
            serde_json::to_vec(pending).map_err(std::io::Error::other)?,
        )
    }

    /// Remembers a committed contribution whose receipt is still to be fetched.
    pub fn add_pending(&self, contribution_index: u64) -> std::io::Result<()> {
        let mut p = self.pending()?;
        if !p.contains(&contribution_index) {
            p.push(contribution_index);
        }
        self.set_pending(&p)
    }

    /// Fetches (and verifies) the receipt of every pending contribution whose round has
    /// closed, writes it, and returns the paths written.
    pub fn collect<T: Transport>(
        &self,
        api: &mut AggregatorApi<T>,
    ) -> Result<Vec<PathBuf>, anyhow::Error> {
        let mut still = Vec::new();
        let mut written = Vec::new();
        for index in self.pending()? {
            match api.receipt(index) {
                Ok(r) => {
                    let path = self.dir.join(receipt_file_name(&r));
                    let file = ReceiptFile {
                        receipt: r,
                        origin: self.origin.clone(),
                    };
                    write_receipt(&path, &file)?;
                    written.push(path);
                }
                Err(ApiError::Query(QueryError::RoundNotClosed { .. })) => still.push(index),
                Err(e) => return Err(e.into()),
            }
        }
        self.set_pending(&still)?;
        Ok(written)
    }
}
