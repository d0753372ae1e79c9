//! Error feedback on disk: what a contributor's top-k uploads left unsent, kept in its
//! work directory between runs so that `flic train` adds it to the next round's delta.
//!
//! `residual.bin`: `flic/residual/v1\n`, the job id (u64 LE), the encoding's descriptor
//! (its length as one byte, then the bytes), the parameter count (u64 LE), the values
//! (`f32` LE), and the SHA-256 of everything before it. It is written atomically
//! (temporary file, then rename) after the canister accepted the commit that produced
//! it, so a crash leaves either the old residual or the new one, never half of one. A
//! residual for another job, encoding or model is ignored and replaced.

use std::path::{Path, PathBuf};

use flic_protocol::hash::sha256;
use flic_protocol::DeltaEncoding;

const MAGIC: &[u8] = b"flic/residual/v1\n";

pub struct ResidualStore {
    path: PathBuf,
}

/// Why a stored residual was not used.
#[derive(Debug, PartialEq, Eq)]
pub enum Unused {
    /// None is stored.
    Missing,
    /// It belongs to another job, encoding or model.
    Other,
    /// The file is not a residual this release wrote (truncated, corrupted).
    Damaged,
}

impl ResidualStore {
    pub fn new(work_dir: &Path) -> Self {
        Self {
            path: work_dir.join("residual.bin"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The residual of `job_id` with `encoding` over `param_count` parameters.
    pub fn load(
        &self,
        job_id: u64,
        encoding: DeltaEncoding,
        param_count: u64,
    ) -> std::io::Result<Result<Vec<f32>, Unused>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Err(Unused::Missing)),
            Err(e) => return Err(e),
        };
        Ok(parse(&bytes).and_then(|(job, enc, values)| {
            if job == job_id && enc == encoding && values.len() as u64 == param_count {
                Ok(values)
            } else {
                Err(Unused::Other)
            }
        }))
    }

    pub fn save(
        &self,
        job_id: u64,
        encoding: DeltaEncoding,
        values: &[f32],
    ) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut out = Vec::with_capacity(MAGIC.len() + 24 + values.len() * 4 + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&job_id.to_le_bytes());
        let d = encoding.descriptor();
        out.push(d.len() as u8);
        out.extend_from_slice(&d);
        out.extend_from_slice(&(values.len() as u64).to_le_bytes());
        values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        let digest = sha256(&out);
        out.extend_from_slice(&digest);
        let tmp = self.path.with_extension("bin.tmp");
        std::fs::write(&tmp, &out)?;
        std::fs::rename(tmp, &self.path)
    }
}

fn take(r: &[u8], n: usize) -> Result<(&[u8], &[u8]), Unused> {
    (r.len() >= n).then(|| r.split_at(n)).ok_or(Unused::Damaged)
}

fn parse(bytes: &[u8]) -> Result<(u64, DeltaEncoding, Vec<f32>), Unused> {
    let body_len = bytes.len().checked_sub(32).ok_or(Unused::Damaged)?;
    let (body, digest) = bytes.split_at(body_len);
    if sha256(body) != digest || !body.starts_with(MAGIC) {
        return Err(Unused::Damaged);
    }
    let rest = &body[MAGIC.len()..];
    let (job, rest) = take(rest, 8)?;
    let (len, rest) = take(rest, 1)?;
    let (desc, rest) = take(rest, len[0] as usize)?;
    let (count, rest) = take(rest, 8)?;
    let (encoding, used) = DeltaEncoding::from_descriptor(desc).ok_or(Unused::Damaged)?;
    let count = u64::from_le_bytes(count.try_into().expect("8 bytes"));
    if used != desc.len() || Some(rest.len() as u64) != count.checked_mul(4) {
        return Err(Unused::Damaged);
    }
    let values = rest
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((
        u64::from_le_bytes(job.try_into().expect("8 bytes")),
        encoding,
        values,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResidualStore::new(dir.path());
        let enc = DeltaEncoding::TopK { k: 3, bits: 2 };
        assert_eq!(store.load(1, enc, 3).unwrap(), Err(Unused::Missing));
        store.save(1, enc, &[0.5, -1e-30, 3.0]).unwrap();
        assert_eq!(store.load(1, enc, 3).unwrap(), Ok(vec![0.5, -1e-30, 3.0]));
        assert_eq!(store.load(2, enc, 3).unwrap(), Err(Unused::Other));
        assert_eq!(
            store
                .load(1, DeltaEncoding::TopK { k: 4, bits: 2 }, 3)
                .unwrap(),
            Err(Unused::Other)
        );
        assert_eq!(store.load(1, enc, 4).unwrap(), Err(Unused::Other));
        // A flipped byte or a truncated file is damage, not a residual.
        let mut bytes = std::fs::read(store.path()).unwrap();
        bytes[20] ^= 1;
        std::fs::write(store.path(), &bytes).unwrap();
        assert_eq!(store.load(1, enc, 3).unwrap(), Err(Unused::Damaged));
        std::fs::write(store.path(), &bytes[..10]).unwrap();
        assert_eq!(store.load(1, enc, 3).unwrap(), Err(Unused::Damaged));
    }
}
