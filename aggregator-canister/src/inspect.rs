//! `canister_inspect_message`: ingress that is plainly invalid is dropped before the IC
//! accepts it, so a stranger's junk costs the canister no ingress fee and no execution.
//!
//! On the IC the canister pays for every ingress message it accepts (1.2 M cycles plus
//! 2,000 per byte, then the execution), and principals are free: without this filter
//! anyone could burn its cycles with calls that are refused anyway. The check is a cheap
//! pre-filter on one replica, not a security boundary (inter-canister calls skip it, and
//! a malicious replica may skip it): every update still validates everything itself.

use candid::Principal;
use flic_protocol::api::{JobState, MAX_DATASET_NAME_LEN, MAX_DESCRIPTION_LEN, MAX_LICENSE_LEN};
use flic_protocol::chunking::MAX_CHUNKS;
use flic_protocol::secagg::keys::ENVELOPE_BYTES;

use crate::state::State;

/// Candid framing and small fields around an argument's payload.
const OVERHEAD: u64 = 1024;
/// Bytes per chunk hash in `begin_submission` (32 plus Candid's length prefix).
const CHUNK_HASH_BYTES: u64 = 40;

/// Why an ingress message is dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Anonymous,
    UnknownMethod,
    NotController,
    TooLarge { len: u64, max: u64 },
    NotRunning,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Anonymous => write!(f, "the anonymous principal cannot call updates"),
            Refusal::UnknownMethod => write!(f, "not an update method of this canister"),
            Refusal::NotController => {
                write!(f, "the caller is not a controller of this canister")
            }
            Refusal::TooLarge { len, max } => {
                write!(f, "argument of {len} bytes, at most {max} for this method")
            }
            Refusal::NotRunning => write!(f, "no round is open: the job is not running"),
        }
    }
}

impl State {
    /// Whether an ingress call of `method` by `caller` with `arg_len` argument bytes may
    /// be accepted.
    pub fn inspect(
        &self,
        caller: Principal,
        is_controller: bool,
        method: &str,
        arg_len: u64,
    ) -> Result<(), Refusal> {
        if caller == Principal::anonymous() {
            return Err(Refusal::Anonymous);
        }
        let job = self.job();
        let chunk_size = job.config.as_ref().map_or(0, |c| c.chunk_size()) as u64;
        let running = job.job_state() == JobState::Running;
        let (max, needs_running) = match method {
            "configure_job" | "upload_model_chunk" | "start_job" | "pause_job" | "resume_job"
            | "evict_submission" | "update_allow_list" => {
                if !is_controller {
                    return Err(Refusal::NotController);
                }
                return Ok(());
            }
            "register_dataset" => (
                OVERHEAD + (MAX_DATASET_NAME_LEN + MAX_LICENSE_LEN + MAX_DESCRIPTION_LEN) as u64,
                false,
            ),
            "revoke_dataset" | "report_evaluation" | "commit_submission" => (OVERHEAD, false),
            "begin_submission" => {
                let chunks = if running {
                    job.model_chunks.len() as u64
                } else {
                    MAX_CHUNKS as u64
                };
                (OVERHEAD + CHUNK_HASH_BYTES * chunks, true)
            }
            "put_chunk" => (OVERHEAD + chunk_size, true),
            // Keys and signature; an envelope, or a share, per participant.
            "secagg_advertise" => (OVERHEAD + 4 * 40 + 72, true),
            "secagg_post_shares" | "secagg_reveal" => {
                let n = job.config.as_ref().map_or(0, |c| c.max_clients) as u64;
                (OVERHEAD + (ENVELOPE_BYTES as u64 + 8) * n, true)
            }
            _ => return Err(Refusal::UnknownMethod),
        };
        if arg_len > max {
            return Err(Refusal::TooLarge { len: arg_len, max });
        }
        if needs_running && !running {
            return Err(Refusal::NotRunning);
        }
        Ok(())
    }
}
