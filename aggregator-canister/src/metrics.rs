//! Operational counters for `/metrics`, kept in stable memory so they survive upgrades.
//!
//! These are metrics, not protocol state: the boundary (`canister.rs`) records every update
//! call after the core has run, including calls the core rejected. A rejected call changes
//! no core state, but its reply is an ordinary reply (`variant { Err }`), so the IC commits
//! what the message wrote: counting rejections here is real. Calls that trap (a bug, or an
//! instruction limit) commit nothing and are not counted. The counter write itself is not
//! included in the instructions recorded.

use std::collections::BTreeMap;

use candid::CandidType;
use serde::{Deserialize, Serialize};

/// Calls and cost of one update method (or of the timer, as `"canister_global_timer"`).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct MethodCounters {
    pub ok: u64,
    pub rejected: u64,
    /// `ic0.performance_counter(0)` summed over the calls.
    pub instructions: u64,
    /// Payload bytes (chunk bytes for uploads) of calls that succeeded, and of rejected ones.
    pub bytes_accepted: u64,
    pub bytes_rejected: u64,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Metrics {
    pub methods: BTreeMap<String, MethodCounters>,
    /// `(method, error variant) -> count`. Keys are bounded by the error enums.
    pub rejections: BTreeMap<(String, String), u64>,
    /// Distinct contributors among the first contributions (see [`ContributorCount`]);
    /// `None` in what the releases before it wrote (counted from contribution 0 on).
    pub contributors: Option<ContributorCount>,
}

/// Principals with at least one committed contribution, counted incrementally so that
/// `/metrics` reads one counter instead of seeking once per contributor: `distinct` of the
/// contributions `0..counted_through` (global indices) were the first of their principal.
/// The boundary advances it after every update and timer by at most
/// [`crate::counters::CONTRIBUTOR_COUNT_STEPS`] contributions (one index seek each).
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ContributorCount {
    pub distinct: u64,
    pub counted_through: u64,
}

/// What one finished call contributes to the counters.
#[derive(Clone, Copy, Debug)]
pub struct CallRecord<'a> {
    pub method: &'a str,
    /// The error variant's name when the core rejected the call.
    pub rejection: Option<&'a str>,
    pub bytes: u64,
    pub instructions: u64,
}

/// The name of an error's variant (`StaleRound { .. }` -> `StaleRound`), from its `Debug`
/// form, which for derived `Debug` starts with the variant name.
pub fn variant_name<E: std::fmt::Debug>(e: &E) -> String {
    let text = format!("{e:?}");
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    text[..end].to_string()
}

impl Metrics {
    pub fn record(&mut self, call: CallRecord<'_>) {
        let m = self.methods.entry(call.method.to_string()).or_default();
        m.instructions = m.instructions.saturating_add(call.instructions);
        match call.rejection {
            None => {
                m.ok += 1;
                m.bytes_accepted = m.bytes_accepted.saturating_add(call.bytes);
            }
            Some(reason) => {
                m.rejected += 1;
                m.bytes_rejected = m.bytes_rejected.saturating_add(call.bytes);
                *self
                    .rejections
                    .entry((call.method.to_string(), reason.to_string()))
                    .or_default() += 1;
            }
        }
    }

    pub fn method(&self, name: &str) -> MethodCounters {
        self.methods.get(name).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flic_protocol::api::SubmitError;

    #[test]
    fn variant_names_come_from_debug() {
        assert_eq!(
            variant_name(&SubmitError::StaleRound { current: 2, got: 1 }),
            "StaleRound"
        );
        assert_eq!(
            variant_name(&SubmitError::AnonymousCaller),
            "AnonymousCaller"
        );
        assert_eq!(
            variant_name(&SubmitError::Signature(
                flic_protocol::submission::SignatureError::BadSignature
            )),
            "Signature"
        );
    }
}
