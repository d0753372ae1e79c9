//! What went wrong, in the terms a contributor acts on: every failure the app shows has a
//! kind (which decides what it suggests doing) and the library's own message.

use flic_client::api::ApiError;
use flic_client::transport::TransportError;
use flic_protocol::api::SubmitError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The network or replica could not be reached (retried already): try again later.
    NetworkDown,
    /// The round closed or moved on while this contributor worked: train the next one.
    RoundClosed,
    /// The canister refused the request, and said why.
    Rejected,
    /// A certificate, hash or proof did not verify: do not trust what was served.
    NotVerified,
    /// Anything else: a file, the data, the local set-up.
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    /// The whole chain of context, outermost first.
    pub message: String,
}

impl FailureKind {
    /// A heading for the failure.
    pub fn title(self) -> &'static str {
        match self {
            FailureKind::NetworkDown => "Cannot reach the federation",
            FailureKind::RoundClosed => "The round closed",
            FailureKind::Rejected => "The canister refused",
            FailureKind::NotVerified => "Verification failed",
            FailureKind::Local => "Something went wrong here",
        }
    }

    /// What the contributor can do about it.
    pub fn advice(self) -> &'static str {
        match self {
            FailureKind::NetworkDown => {
                "Check the network connection and the canister id, then try again. Nothing was lost: an upload in progress resumes where it stopped."
            }
            FailureKind::RoundClosed => {
                "Your update was for a round that is over. Train again to contribute to the open round."
            }
            FailureKind::Rejected => "The reason is below; nothing changed on the canister.",
            FailureKind::NotVerified => {
                "What the canister served did not match its certificate. Do not use it, and tell the federation's operator."
            }
            FailureKind::Local => "The reason is below.",
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure {
            kind: classify(&e),
            message: format!("{e:#}"),
        }
    }
}

fn classify(e: &anyhow::Error) -> FailureKind {
    for cause in e.chain() {
        if let Some(t) = cause.downcast_ref::<TransportError>() {
            return transport_kind(t);
        }
        if let Some(a) = cause.downcast_ref::<ApiError>() {
            return match a {
                ApiError::Transport(t) => transport_kind(t),
                ApiError::Submit(s) => submit_kind(s),
                ApiError::Verification(_) | ApiError::Proof { .. } => FailureKind::NotVerified,
                ApiError::Decode { .. } => FailureKind::NotVerified,
                _ => FailureKind::Rejected,
            };
        }
        if let Some(s) = cause.downcast_ref::<SubmitError>() {
            return submit_kind(s);
        }
        if cause.downcast_ref::<flic_proofs::ProofError>().is_some() {
            return FailureKind::NotVerified;
        }
    }
    // The step reads the round again when the model it downloaded is no longer current.
    if format!("{e}").contains("moved on from round") {
        return FailureKind::RoundClosed;
    }
    FailureKind::Local
}

fn transport_kind(t: &TransportError) -> FailureKind {
    if t.is_transient() {
        FailureKind::NetworkDown
    } else {
        FailureKind::Rejected
    }
}

fn submit_kind(s: &SubmitError) -> FailureKind {
    match s {
        SubmitError::StaleRound { .. } | SubmitError::WrongBaseVersion { .. } => {
            FailureKind::RoundClosed
        }
        _ => FailureKind::Rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn failures_are_classified_through_their_context() {
        let unreachable: anyhow::Error = ApiError::Transport(TransportError::Unreachable {
            method: "round_info".into(),
            message: "connection refused".into(),
        })
        .into();
        let f = Failure::from(unreachable.context("reading the round"));
        assert_eq!(f.kind, FailureKind::NetworkDown);
        assert!(
            f.message.starts_with("reading the round: "),
            "{}",
            f.message
        );
        assert!(f.message.contains("connection refused"));

        let stale = Err::<(), _>(ApiError::Submit(SubmitError::StaleRound {
            current: 4,
            got: 3,
        }))
        .context("uploading")
        .unwrap_err();
        assert_eq!(Failure::from(stale).kind, FailureKind::RoundClosed);

        let revoked: anyhow::Error =
            ApiError::Submit(SubmitError::DatasetRevoked { dataset_id: 2 }).into();
        let f = Failure::from(revoked);
        assert_eq!(f.kind, FailureKind::Rejected);
        assert!(f.message.contains("dataset 2 was revoked"));

        let forged: anyhow::Error = ApiError::Verification("chunk hash".into()).into();
        assert_eq!(Failure::from(forged).kind, FailureKind::NotVerified);

        let local = anyhow::anyhow!("no such file").context("loading data.csv");
        assert_eq!(Failure::from(local).kind, FailureKind::Local);
    }
}
