//! The part of the IC's state tree a request can ask about, built from the devnet's
//! state: `time`, `request_status`, `canister` (with `icp:public` metadata, and
//! `icp:private` for controllers), `subnet` and `canister_ranges`.

use candid::Principal;
use flic_embedded_ic::EmbeddedIc;

use crate::http::cbor;
use crate::request_id::leb128;
use crate::requests::{Outcome, Requests};
use crate::tree::Tree;

/// The devnet's one subnet and its one node.
pub struct Subnet<'a> {
    pub id: Principal,
    pub root_key: &'a [u8],
    pub node_id: Principal,
    pub node_der: &'a [u8],
}

/// The tree at `now`, as `reader` may see it.
pub fn build(
    ic: &EmbeddedIc,
    requests: &Requests,
    subnet: &Subnet<'_>,
    now: u64,
    reader: Principal,
) -> Tree {
    let mut tree = Tree::default();
    tree.insert(&[b"time"], leb128(i128::from(now)));
    for (id, record) in requests.iter() {
        let base: [&[u8]; 2] = [b"request_status", id];
        let at = |leaf: &'static [u8]| [base[0], base[1], leaf];
        match &record.outcome {
            Outcome::Replied(reply) => {
                tree.insert(&at(b"status"), b"replied".to_vec());
                tree.insert(&at(b"reply"), reply.clone());
            }
            Outcome::Rejected {
                code,
                message,
                error_code,
            } => {
                tree.insert(&at(b"status"), b"rejected".to_vec());
                tree.insert(&at(b"reject_code"), leb128(i128::from(*code)));
                tree.insert(&at(b"reject_message"), message.clone().into_bytes());
                tree.insert(&at(b"error_code"), error_code.clone().into_bytes());
            }
        }
    }
    for id in ic.canister_ids() {
        let c = id.as_slice();
        tree.insert(
            &[b"canister", c, b"certified_data"],
            ic.certified_data(id).unwrap_or_default().to_vec(),
        );
        let controllers: Vec<Principal> = ic.controllers(id).unwrap_or_default().to_vec();
        tree.insert(&[b"canister", c, b"controllers"], cbor(&controllers));
        if let Some(hash) = ic.module_hash(id) {
            tree.insert(&[b"canister", c, b"module_hash"], hash.to_vec());
        }
        let is_controller = controllers.contains(&reader);
        for (name, data) in metadata(ic, id, is_controller) {
            tree.insert(&[b"canister", c, b"metadata", name.as_bytes()], data);
        }
    }
    let s = subnet.id.as_slice();
    let ranges = cbor(&canister_ranges());
    tree.insert(&[b"subnet", s, b"public_key"], subnet.root_key.to_vec());
    tree.insert(&[b"subnet", s, b"canister_ranges"], ranges.clone());
    tree.insert(&[b"subnet", s, b"type"], b"application".to_vec());
    tree.insert(
        &[
            b"subnet",
            s,
            b"node",
            subnet.node_id.as_slice(),
            b"public_key",
        ],
        subnet.node_der.to_vec(),
    );
    let low = canister_ranges()[0].0;
    tree.insert(&[b"canister_ranges", s, low.as_slice()], ranges);
    tree
}

/// The canister's metadata sections (`icp:public NAME`, and `icp:private NAME` for a
/// controller), by name.
fn metadata(ic: &EmbeddedIc, id: Principal, is_controller: bool) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (section, data) in ic.custom_sections(id).unwrap_or_default() {
        let name = match section.split_once(' ') {
            Some(("icp:public", name)) => name,
            Some(("icp:private", name)) if is_controller => name,
            _ => continue,
        };
        // Of two sections with one name, the tree keeps the later (insert replaces).
        out.push((name.to_string(), data.clone()));
    }
    out
}

/// The subnet's canister range: every principal, shortest first (so `aaaaa-aa` is in it
/// too), as `ic-agent` compares principals.
fn canister_ranges() -> Vec<(Principal, Principal)> {
    vec![(
        Principal::management_canister(),
        Principal::from_slice(&[0xff; 29]),
    )]
}
