//! Untrusted bytes at every endpoint of the devnet, in-process: whatever arrives, the
//! devnet answers (never panics), and nothing but a valid, signed call changes a canister.

use candid::Principal;
use ed25519_dalek::Signer;
use flic_devnet::{Devnet, DevnetConfig, HttpRequest};
use flic_embedded_ic::InstallMode;
use ic_transport_types::{Envelope, EnvelopeContent};
use proptest::prelude::*;

const COUNTER: &str = include_str!("../../embedded-ic/tests/canisters/counter.wat");
const NOW: u64 = 1_800_000_000_000_000_000;

fn devnet() -> (Devnet, Principal) {
    let mut d = Devnet::start(DevnetConfig::default(), NOW).unwrap();
    let admin = Principal::from_slice(&[0xad]);
    let id = d.ic_mut().create_canister(vec![admin]);
    d.ic_mut()
        .install_code(
            id,
            &wat::parse_str(COUNTER).unwrap(),
            vec![],
            InstallMode::Install,
            admin,
        )
        .unwrap();
    (d, id)
}

/// A valid signed call to `inc`, as CBOR.
fn valid_call(id: Principal) -> Vec<u8> {
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let mut der = hex::decode("302a300506032b6570032100").unwrap();
    der.extend_from_slice(key.verifying_key().as_bytes());
    let content = EnvelopeContent::Call {
        nonce: None,
        ingress_expiry: NOW + 60_000_000_000,
        sender: Principal::self_authenticating(&der),
        canister_id: id,
        method_name: "inc".into(),
        arg: vec![],
        sender_info: None,
    };
    let mut msg = b"\x0Aic-request".to_vec();
    msg.extend_from_slice(content.to_request_id().as_slice());
    Envelope {
        content: std::borrow::Cow::Owned(content),
        sender_pubkey: Some(der),
        sender_sig: Some(key.sign(&msg).to_bytes().to_vec()),
        sender_delegation: None,
    }
    .encode_bytes()
}

fn post(path: String, body: Vec<u8>) -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        path,
        body,
        ..HttpRequest::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bodies_are_answered_and_change_nothing(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        endpoint in prop::sample::select(vec!["call", "query", "read_state"]),
        version in prop::sample::select(vec!["v2", "v3", "v4"]),
    ) {
        let (mut d, id) = devnet();
        let before = d.ic().canister_version(id);
        let reply = d.handle(&post(format!("/api/{version}/canister/{id}/{endpoint}"), body), NOW).reply;
        prop_assert!(reply.status == 400 || reply.status == 403, "{}", reply.status);
        prop_assert_eq!(d.ic().canister_version(id), before);
        prop_assert_eq!(d.request_records(), 0);
    }

    /// A valid call with one byte changed: refused (or, where the byte does not matter to
    /// CBOR's meaning, the same call); never a panic, never a second execution.
    #[test]
    fn mutated_calls_run_at_most_once(index in 0usize..4096, xor in 1u8..=255) {
        let (mut d, id) = devnet();
        let valid = valid_call(id);
        let mut body = valid.clone();
        let i = index % body.len();
        body[i] ^= xor;
        let path = format!("/api/v4/canister/{id}/call");
        let before = d.ic().canister_version(id).unwrap();
        let reply = d.handle(&post(path.clone(), body), NOW).reply;
        prop_assert!(matches!(reply.status, 200 | 400 | 403), "{}", reply.status);
        let after_mutated = d.ic().canister_version(id).unwrap();
        prop_assert!(after_mutated - before <= 1);
        // The valid call runs (unless the mutation was the same request) and only once.
        d.handle(&post(path.clone(), valid.clone()), NOW);
        d.handle(&post(path, valid), NOW);
        prop_assert!(d.ic().canister_version(id).unwrap() - before <= 2);
        prop_assert!(d.ic().canister_version(id).unwrap() > before);
    }
}
