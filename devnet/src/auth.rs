//! Ingress envelopes: decoding, the request id, and the checks the IC makes before a
//! message reaches a canister (expiry, sender, signature, delegations).

use candid::Principal;
use ic_transport_types::{Envelope, EnvelopeContent};
use serde_cbor::Value;

use crate::error::IngressError;
use crate::request_id::hash_of;

/// `\x0Aic-request`: the domain separator of sender signatures.
pub const REQUEST_DOMAIN_SEPARATOR: &[u8] = b"\x0Aic-request";
/// How far ahead an ingress expiry may lie: the IC's 5-minute time to live plus 60 s drift.
pub const MAX_INGRESS_TTL_NS: u64 = 6 * 60 * 1_000_000_000;
/// The IC accepts at most 20 delegations in a chain.
pub const MAX_DELEGATIONS: usize = 20;

/// An envelope that passed every check.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub content: EnvelopeContent,
    pub request_id: [u8; 32],
    /// Canisters the delegations restrict the request to (`None`: any).
    pub targets: Option<Vec<Principal>>,
}

impl Authenticated {
    pub fn sender(&self) -> Principal {
        *self.content.sender()
    }
}

/// Decodes and authenticates an envelope received at `now_ns`.
pub fn authenticate(body: &[u8], now_ns: u64) -> Result<Authenticated, IngressError> {
    let value: Value = serde_cbor::from_slice(body)
        .map_err(|e| IngressError::Malformed(format!("the body is not CBOR: {e}")))?;
    let Value::Map(map) = &value else {
        return Err(IngressError::Malformed(
            "the envelope is not a CBOR map".into(),
        ));
    };
    let content_value = map
        .get(&Value::Text("content".into()))
        .ok_or_else(|| IngressError::Malformed("the envelope has no `content`".into()))?;
    let request_id = hash_of(content_value)
        .map_err(|e| IngressError::Malformed(format!("the content has no request id: {e}")))?;
    let envelope: Envelope<'static> = serde_cbor::value::from_value(value.clone())
        .map_err(|e| IngressError::Malformed(format!("the envelope does not decode: {e}")))?;
    let content = envelope.content.into_owned();

    let expiry = content.ingress_expiry();
    if expiry < now_ns {
        return Err(IngressError::Expired {
            expiry,
            now: now_ns,
        });
    }
    if expiry > now_ns.saturating_add(MAX_INGRESS_TTL_NS) {
        return Err(IngressError::ExpiryTooFar {
            expiry,
            now: now_ns,
        });
    }

    let sender = *content.sender();
    let targets = if sender == Principal::anonymous() {
        if envelope.sender_pubkey.is_some() || envelope.sender_sig.is_some() {
            return Err(IngressError::BadSignature(
                "an anonymous request carries no public key or signature".into(),
            ));
        }
        None
    } else {
        let (Some(pubkey), Some(sig)) = (envelope.sender_pubkey, envelope.sender_sig) else {
            return Err(IngressError::BadSignature(format!(
                "sender {sender} is not anonymous, so the request needs sender_pubkey and sender_sig"
            )));
        };
        if Principal::self_authenticating(&pubkey) != sender {
            return Err(IngressError::BadSignature(format!(
                "sender {sender} is not the principal of sender_pubkey ({})",
                Principal::self_authenticating(&pubkey)
            )));
        }
        let delegations = envelope.sender_delegation.unwrap_or_default();
        if delegations.len() > MAX_DELEGATIONS {
            return Err(IngressError::BadSignature(format!(
                "{} delegations; at most {MAX_DELEGATIONS} are accepted",
                delegations.len()
            )));
        }
        let mut key = pubkey;
        let mut targets: Option<Vec<Principal>> = None;
        for (i, signed) in delegations.iter().enumerate() {
            let d = &signed.delegation;
            verify_signature(&key, &d.signable(), &signed.signature)
                .map_err(|e| IngressError::BadSignature(format!("delegation {i}: {e}")))?;
            if d.expiration < now_ns {
                return Err(IngressError::BadSignature(format!(
                    "delegation {i} expired at {} (now {now_ns})",
                    d.expiration
                )));
            }
            if matches!(
                d.permissions,
                Some(ic_transport_types::DelegationPermissions::Queries)
            ) && matches!(content, EnvelopeContent::Call { .. })
            {
                return Err(IngressError::BadSignature(format!(
                    "delegation {i} permits queries only"
                )));
            }
            if let Some(t) = &d.targets {
                targets = Some(match targets {
                    None => t.clone(),
                    Some(prev) => prev.into_iter().filter(|p| t.contains(p)).collect(),
                });
            }
            key = d.pubkey.clone();
        }
        let mut msg = REQUEST_DOMAIN_SEPARATOR.to_vec();
        msg.extend_from_slice(&request_id);
        verify_signature(&key, &msg, &sig).map_err(IngressError::BadSignature)?;
        targets
    };
    Ok(Authenticated {
        content,
        request_id,
        targets,
    })
}

/// DER prefix of an Ed25519 public key (OID 1.3.101.112).
const ED25519_DER_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Checks `sig` over `msg` with a DER public key: Ed25519, or ECDSA on secp256k1 or P-256
/// (SHA-256, 64-byte `r || s`), the schemes the IC accepts from users. Canister signatures
/// (Internet Identity) and WebAuthn are not modelled.
pub fn verify_signature(der: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), String> {
    if let Some(raw) = der.strip_prefix(&ED25519_DER_PREFIX) {
        let key: [u8; 32] = raw
            .try_into()
            .map_err(|_| "an Ed25519 key is 32 bytes".to_string())?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&key)
            .map_err(|e| format!("invalid Ed25519 public key: {e}"))?;
        let sig = ed25519_dalek::Signature::from_slice(sig)
            .map_err(|e| format!("invalid Ed25519 signature: {e}"))?;
        return key
            .verify_strict(msg, &sig)
            .map_err(|_| "the Ed25519 signature does not verify".to_string());
    }
    use k256::pkcs8::DecodePublicKey;
    if let Ok(key) = k256::ecdsa::VerifyingKey::from_public_key_der(der) {
        use k256::ecdsa::signature::Verifier;
        let sig = k256::ecdsa::Signature::from_slice(sig)
            .map_err(|e| format!("invalid secp256k1 signature: {e}"))?;
        return key
            .verify(msg, &sig)
            .map_err(|_| "the secp256k1 signature does not verify".to_string());
    }
    if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(der) {
        use p256::ecdsa::signature::Verifier;
        let sig = p256::ecdsa::Signature::from_slice(sig)
            .map_err(|e| format!("invalid P-256 signature: {e}"))?;
        return key
            .verify(msg, &sig)
            .map_err(|_| "the P-256 signature does not verify".to_string());
    }
    Err(format!(
        "unsupported public key ({} bytes of DER): the devnet accepts Ed25519, secp256k1 and P-256 keys",
        der.len()
    ))
}
