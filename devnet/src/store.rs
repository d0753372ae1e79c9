//! The devnet's own records next to the embedded IC's saved state: `devnet-requests.cbor`,
//! the request statuses (so a restarted devnet still answers polls and refuses replays).

use std::io::Write;
use std::path::Path;

use crate::requests::Requests;

const FILE: &str = "devnet-requests.cbor";

pub fn load_requests(dir: &Path) -> Result<Requests, String> {
    let path = dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_cbor::from_slice(&bytes)
            .map_err(|e| format!("{} does not decode: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Requests::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Written to a temporary file, synced and renamed: a crash leaves the old or the new.
pub fn save_requests(dir: &Path, requests: &Requests) -> Result<(), String> {
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let bytes = serde_cbor::to_vec(requests).map_err(|e| e.to_string())?;
    let mut file = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
}
