//! Certified replies of the aggregator canister: the witness tree must hash to the
//! certified data of a valid certificate, and the reply's fields must equal the leaves.

use candid::Principal;
use flic_protocol::api::{
    Certification, CertifiedModelInfo, CertifiedRoundInfo, CertifiedRoundPage, ModelInfo,
    RoundInfo, RoundRecord,
};
use flic_protocol::certified::{
    round_key, round_record_hash, u64_leaf, LABEL_HISTORY, LABEL_HISTORY_ROOT, LABEL_JOB,
    LABEL_JOB_CONFIG, LABEL_MODEL_VERSION, LABEL_ROUND,
};
use flic_protocol::job_config::job_config_hash;
use ic_certification::{HashTree, LookupResult};

use crate::certificate::{lookup, verify_certificate, Freshness};
use crate::ProofError;

/// What a verifier trusts: the root key (DER; built in for mainnet, fetched only from a
/// local replica, the host's test key for the embedded IC), which canister it asked, and
/// how fresh the state must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    pub root_key_der: Vec<u8>,
    pub canister: Principal,
    pub freshness: Freshness,
}

/// A witness tree that has been checked against a certificate: its leaves are what the
/// canister certified at `time_ns`.
#[derive(Debug, Clone)]
pub struct CertifiedView {
    tree: HashTree,
    pub time_ns: u64,
}

impl CertifiedView {
    /// Checks the certificate (signature, freshness, the canister's certified data) and that
    /// the witness tree hashes to that certified data.
    pub fn verify(certification: &Certification, trust: &Trust) -> Result<Self, ProofError> {
        let cert = verify_certificate(
            &certification.certificate,
            &trust.root_key_der,
            trust.canister,
            trust.freshness,
        )?;
        let tree: HashTree = serde_cbor::from_slice(&certification.tree)
            .map_err(|e| ProofError::TreeDecode(e.to_string()))?;
        let digest = tree.digest();
        if cert.certified_data != digest {
            return Err(ProofError::TreeMismatch {
                canister: trust.canister.to_text(),
                tree: digest.to_vec(),
                certified: cert.certified_data,
            });
        }
        Ok(Self {
            tree,
            time_ns: cert.time_ns,
        })
    }

    fn leaf(&self, label: &[u8]) -> Result<&[u8], ProofError> {
        lookup(&self.tree, &[label], || {
            format!("/{}", String::from_utf8_lossy(label))
        })
    }

    fn u64_at(&self, label: &[u8]) -> Result<u64, ProofError> {
        let bytes = self.leaf(label)?;
        let arr: [u8; 8] = bytes.try_into().map_err(|_| ProofError::MalformedValue {
            path: format!("/{}", String::from_utf8_lossy(label)),
            reason: format!("{} bytes, expected 8", bytes.len()),
        })?;
        Ok(u64::from_le_bytes(arr))
    }

    pub fn job_id(&self) -> Result<u64, ProofError> {
        self.u64_at(LABEL_JOB)
    }

    pub fn round(&self) -> Result<u64, ProofError> {
        self.u64_at(LABEL_ROUND)
    }

    /// The current model version; `None` before a model exists.
    pub fn model_version(&self) -> Result<Option<[u8; 32]>, ProofError> {
        self.optional_hash_at(LABEL_MODEL_VERSION)
    }

    /// The hash of the job's configuration (`flic_protocol::job_config`); `None` before a
    /// job is configured.
    pub fn job_config_hash(&self) -> Result<Option<[u8; 32]>, ProofError> {
        self.optional_hash_at(LABEL_JOB_CONFIG)
    }

    /// A 32-byte leaf that is empty until its value exists.
    fn optional_hash_at(&self, label: &[u8]) -> Result<Option<[u8; 32]>, ProofError> {
        let bytes = self.leaf(label)?;
        if bytes.is_empty() {
            return Ok(None);
        }
        bytes
            .try_into()
            .map(Some)
            .map_err(|_| ProofError::MalformedValue {
                path: format!("/{}", String::from_utf8_lossy(label)),
                reason: format!("{} bytes, expected 32", bytes.len()),
            })
    }

    pub fn history_root(&self) -> Result<[u8; 32], ProofError> {
        let bytes = self.leaf(LABEL_HISTORY_ROOT)?;
        bytes.try_into().map_err(|_| ProofError::MalformedValue {
            path: "/history_root".into(),
            reason: format!("{} bytes, expected 32", bytes.len()),
        })
    }

    /// The certified hash of round `round`'s record: `Some`, provably `None` (no such round),
    /// or an error when the witness does not cover it.
    pub fn round_record_hash(&self, round: u64) -> Result<Option<[u8; 32]>, ProofError> {
        let key = round_key(round);
        let path = || format!("/history/{round}");
        match self.tree.lookup_path([LABEL_HISTORY, key.as_slice()]) {
            LookupResult::Found(v) => {
                v.try_into()
                    .map(Some)
                    .map_err(|_| ProofError::MalformedValue {
                        path: path(),
                        reason: format!("{} bytes, expected 32", v.len()),
                    })
            }
            LookupResult::Absent => Ok(None),
            LookupResult::Unknown | LookupResult::Error => {
                Err(ProofError::MissingPath { path: path() })
            }
        }
    }

    /// Checks that the witness proves round `round` absent from the certified history (a
    /// pruned part of the tree that could hold it is not proof).
    pub fn check_round_absent(&self, round: u64, why: &str) -> Result<(), ProofError> {
        match self.round_record_hash(round) {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(ProofError::Inconsistent {
                what: "round history page".into(),
                detail: format!("round {round} is certified but {why}"),
            }),
            Err(_) => Err(ProofError::Inconsistent {
                what: "round history page".into(),
                detail: format!(
                    "{why}, but the witness does not prove that round {round} does not exist \
                     (it prunes the part of the history that would hold it)"
                ),
            }),
        }
    }

    /// Checks that `record` is the certified record of its round.
    pub fn check_round_record(&self, record: &RoundRecord) -> Result<(), ProofError> {
        let reply = round_record_hash(record);
        match self.round_record_hash(record.round)? {
            Some(certified) if certified == reply => Ok(()),
            Some(certified) => Err(ProofError::Mismatch {
                what: format!("hash of round {}'s record", record.round),
                certified: certified.to_vec(),
                reply: reply.to_vec(),
            }),
            None => Err(ProofError::Inconsistent {
                what: format!("round {}", record.round),
                detail: "the certified history has no such round".into(),
            }),
        }
    }
}

fn mismatch(what: &str, certified: &[u8], reply: &[u8]) -> ProofError {
    ProofError::Mismatch {
        what: what.into(),
        certified: certified.to_vec(),
        reply: reply.to_vec(),
    }
}

/// Checks `round_info_certified`: job id, round, model version and the job configuration
/// (by its hash: a client trains only with a configuration that is certified). The other
/// fields of `RoundInfo` (counters, deadline) are not certified.
pub fn verify_round_info(
    reply: &CertifiedRoundInfo,
    trust: &Trust,
) -> Result<CertifiedView, ProofError> {
    let view = CertifiedView::verify(&reply.certification, trust)?;
    check_round_info(&view, &reply.info)?;
    Ok(view)
}

pub fn check_round_info(view: &CertifiedView, info: &RoundInfo) -> Result<(), ProofError> {
    let job = view.job_id()?;
    if job != info.job_id {
        return Err(mismatch("job id", &u64_leaf(job), &u64_leaf(info.job_id)));
    }
    let round = view.round()?;
    if round != info.round {
        return Err(mismatch("round", &u64_leaf(round), &u64_leaf(info.round)));
    }
    let version = view.model_version()?;
    if version.map(|v| v.to_vec()) != info.model_version.map(|v| v.to_vec()) {
        return Err(mismatch(
            "model version",
            version.as_ref().map_or(&[][..], |v| v.as_slice()),
            info.model_version
                .as_ref()
                .map_or(&[][..], |v| v.as_slice()),
        ));
    }
    let certified = view.job_config_hash()?;
    let reply = info.config.as_ref().map(job_config_hash);
    if certified != reply {
        return Err(mismatch(
            "job configuration hash",
            certified.as_ref().map_or(&[][..], |h| h.as_slice()),
            reply.as_ref().map_or(&[][..], |h| h.as_slice()),
        ));
    }
    Ok(())
}

/// Checks `model_info_certified`: the announced version and round are the certified ones.
pub fn verify_model_info(
    reply: &CertifiedModelInfo,
    trust: &Trust,
) -> Result<CertifiedView, ProofError> {
    let view = CertifiedView::verify(&reply.certification, trust)?;
    check_model_info(&view, &reply.info)?;
    Ok(view)
}

pub fn check_model_info(view: &CertifiedView, info: &ModelInfo) -> Result<(), ProofError> {
    match view.model_version()? {
        Some(v) if v == *info.version => {}
        certified => {
            return Err(mismatch(
                "model version",
                certified.as_ref().map_or(&[][..], |v| v.as_slice()),
                info.version.as_slice(),
            ))
        }
    }
    let round = view.round()?;
    if round != info.round {
        return Err(mismatch("round", &u64_leaf(round), &u64_leaf(info.round)));
    }
    Ok(())
}

/// Checks `round_history_certified(PageArgs { start, .. })`: every record on the page is
/// certified; the page starts at round `start` and its rounds are consecutive; `next`, when
/// set, is the round after the last record; a page that ends the history (`next == None`)
/// proves that no round follows its last record; and an empty page proves that round
/// `start` does not exist (an empty history, or `start` past its end). A page may hold fewer
/// records than asked for (the canister bounds pages by contributors as well).
pub fn verify_round_page(
    reply: &CertifiedRoundPage,
    start: u64,
    trust: &Trust,
) -> Result<CertifiedView, ProofError> {
    let view = CertifiedView::verify(&reply.certification, trust)?;
    check_round_page(&view, reply, start)?;
    Ok(view)
}

pub fn check_round_page(
    view: &CertifiedView,
    reply: &CertifiedRoundPage,
    start: u64,
) -> Result<(), ProofError> {
    let inconsistent = |detail: String| ProofError::Inconsistent {
        what: "round history page".into(),
        detail,
    };
    let items = &reply.page.items;
    let Some(last) = items.last() else {
        if let Some(next) = reply.page.next {
            return Err(inconsistent(format!(
                "the page is empty but points at round {next}"
            )));
        }
        return view.check_round_absent(start, &format!("the page from round {start} is empty"));
    };
    if items[0].round != start {
        return Err(inconsistent(format!(
            "the page asked for from round {start} starts at round {}",
            items[0].round
        )));
    }
    for (i, record) in items.iter().enumerate() {
        if i > 0 && Some(record.round) != items[i - 1].round.checked_add(1) {
            return Err(inconsistent(format!(
                "round {} follows round {}",
                record.round,
                items[i - 1].round
            )));
        }
        view.check_round_record(record)?;
    }
    let after = last.round.checked_add(1).ok_or_else(|| {
        inconsistent(format!(
            "round {} cannot be followed by another",
            last.round
        ))
    })?;
    match reply.page.next {
        Some(next) if next == after => Ok(()),
        Some(next) => Err(inconsistent(format!(
            "the page ends at round {} but points at round {next}",
            last.round
        ))),
        None => view.check_round_absent(after, "the page ends the history before it"),
    }
}
