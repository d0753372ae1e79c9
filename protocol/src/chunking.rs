//! Splitting encoded payloads (deltas, model weights) into chunks that fit IC messages.
//!
//! Chunk `i` is `bytes[i * chunk_size .. min((i + 1) * chunk_size, len)]`; only the last
//! chunk may be shorter. Each chunk's hash is its Merkle leaf hash
//! (`sha256(0x00 || chunk)`), and the payload is authenticated by the RFC 6962 root over
//! those leaves, so chunks can be uploaded in any order and resumed after a crash.

use crate::merkle::{self, Digest32};

/// Default chunk size: 1 MiB, half the 2 MiB ingress limit, leaving room for the envelope.
pub const DEFAULT_CHUNK_SIZE: u32 = 1 << 20;
/// Largest chunk size a job may choose.
pub const MAX_CHUNK_SIZE: u32 = 1 << 20;
/// Smallest chunk size a job may choose (small values exist for tests and tiny models).
pub const MIN_CHUNK_SIZE: u32 = 64;
/// Most chunks one payload may have (bounds the chunk-hash list in `begin_submission`).
pub const MAX_CHUNKS: u32 = 16_384;

/// Number of chunks of a payload of `len` bytes (`0` for an empty payload).
pub fn chunk_count(len: u64, chunk_size: u32) -> u64 {
    len.div_ceil(chunk_size as u64)
}

/// Byte range `(offset, len)` of chunk `index`, or `None` if out of range.
pub fn chunk_range(total_len: u64, chunk_size: u32, index: u64) -> Option<(u64, u64)> {
    let offset = index.checked_mul(chunk_size as u64)?;
    (offset < total_len).then(|| (offset, (chunk_size as u64).min(total_len - offset)))
}

/// Leaf hashes of every chunk of `bytes`.
pub fn chunk_hashes(bytes: &[u8], chunk_size: u32) -> Vec<Digest32> {
    bytes
        .chunks(chunk_size as usize)
        .map(merkle::leaf_hash)
        .collect()
}

/// Merkle root over the chunk hashes of `bytes`.
pub fn chunk_root(bytes: &[u8], chunk_size: u32) -> Digest32 {
    merkle::root(&chunk_hashes(bytes, chunk_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_tile_the_payload() {
        for len in [1u64, 63, 64, 65, 1000] {
            let n = chunk_count(len, 64);
            let mut covered = 0;
            for i in 0..n {
                let (off, l) = chunk_range(len, 64, i).unwrap();
                assert_eq!(off, covered);
                assert!(l > 0 && l <= 64);
                covered += l;
            }
            assert_eq!(covered, len);
            assert_eq!(chunk_range(len, 64, n), None);
        }
        let bytes: Vec<u8> = (0..200u8).collect();
        let hs = chunk_hashes(&bytes, 64);
        assert_eq!(hs.len(), 4);
        assert_eq!(hs[3], merkle::leaf_hash(&bytes[192..]));
        assert_eq!(chunk_root(&bytes, 64), merkle::root(&hs));
    }
}
