//! The devnet over HTTP, driven by `ic-agent` (a client nobody here wrote) and by raw
//! requests: deploying through the management canister, updates and queries with
//! verified certificates and node signatures, Ed25519, secp256k1 and delegated senders,
//! and every kind of malformed traffic refused with the right status and nothing changed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use candid::{Encode, Nat, Principal};
use ed25519_dalek::Signer;
use flic_devnet::server;
use flic_devnet::{Devnet, DevnetConfig};
use ic_agent::agent::RejectCode;
use ic_agent::identity::{BasicIdentity, DelegatedIdentity, Secp256k1Identity};
use ic_agent::{Agent, AgentError, Identity};
use ic_management_canister_types::{
    CanisterIdRecord, CanisterInstallMode, InstallCodeArgs, ProvisionalCreateCanisterWithCyclesArgs,
};
use ic_transport_types::{Delegation, Envelope, EnvelopeContent, SignedDelegation};

const COUNTER: &str = include_str!("../../embedded-ic/tests/canisters/counter.wat");

/// A devnet serving on a free port from a background thread, stopped on drop.
struct Running {
    server: server::Background,
}

impl Running {
    fn start(config: DevnetConfig) -> Running {
        let devnet = Devnet::start(config, server::wall_clock_ns()).expect("the devnet starts");
        let server = server::Background::start(devnet, "127.0.0.1:0".parse().unwrap())
            .expect("the devnet listens");
        Running { server }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    fn url(&self) -> String {
        self.server.url()
    }

    fn agent(&self, identity: impl Identity + 'static) -> (tokio::runtime::Runtime, Agent) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let agent = Agent::builder()
            .with_url(self.url())
            .with_identity(identity)
            .build()
            .unwrap();
        rt.block_on(agent.fetch_root_key()).unwrap();
        (rt, agent)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Devnet> {
        server::lock(self.server.devnet())
    }
}

fn ed25519_key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn der(key: &ed25519_dalek::SigningKey) -> Vec<u8> {
    let mut der = hex::decode("302a300506032b6570032100").unwrap();
    der.extend_from_slice(key.verifying_key().as_bytes());
    der
}

/// Creates a canister through the management canister and installs the counter.
fn deploy_counter(rt: &tokio::runtime::Runtime, agent: &Agent) -> Principal {
    let management = Principal::management_canister();
    let created = rt
        .block_on(
            agent
                .update(&management, "provisional_create_canister_with_cycles")
                .with_arg(Encode!(&ProvisionalCreateCanisterWithCyclesArgs::default()).unwrap())
                .call_and_wait(),
        )
        .unwrap();
    let id = candid::decode_one::<CanisterIdRecord>(&created)
        .unwrap()
        .canister_id;
    let install = InstallCodeArgs {
        mode: CanisterInstallMode::Install,
        canister_id: id,
        wasm_module: wat::parse_str(COUNTER).unwrap(),
        arg: b"init-arg".to_vec(),
        sender_canister_version: None,
    };
    rt.block_on(
        agent
            .update(&management, "install_code")
            .with_effective_canister_id(id)
            .with_arg(Encode!(&install).unwrap())
            .call_and_wait(),
    )
    .unwrap();
    id
}

fn counter(rt: &tokio::runtime::Runtime, agent: &Agent, id: Principal) -> u64 {
    let reply = rt
        .block_on(agent.query(&id, "get").with_arg(Vec::<u8>::new()).call())
        .unwrap();
    u64::from_le_bytes(reply[..8].try_into().unwrap())
}

#[test]
fn ic_agent_deploys_updates_and_queries_with_verified_certificates_and_node_signatures() {
    let devnet = Running::start(DevnetConfig::default());
    let (rt, agent) = devnet.agent(BasicIdentity::from_raw_key(&[1; 32]));
    assert_eq!(agent.read_root_key(), devnet.lock().root_key());
    let id = deploy_counter(&rt, &agent);
    let me = agent.get_principal().unwrap();

    // Read state: the module hash and the controllers, certified.
    let hash = rt
        .block_on(agent.read_state_canister_module_hash(id))
        .unwrap();
    let wasm = wat::parse_str(COUNTER).unwrap();
    assert_eq!(hash, flic_embedded_ic::wasm_hash(&wasm).to_vec());
    let controllers = rt
        .block_on(agent.read_state_canister_controllers(id))
        .unwrap();
    assert_eq!(controllers, vec![me]);

    // An update replies with a certificate the agent verifies against the root key.
    for _ in 0..3 {
        rt.block_on(
            agent
                .update(&id, "inc")
                .with_arg(Vec::<u8>::new())
                .call_and_wait(),
        )
        .unwrap();
    }
    // A query comes back signed by the node the subnet's certified state names.
    assert_eq!(counter(&rt, &agent, id), 3);

    // The caller is the sender's self-authenticating principal.
    let whoami = rt
        .block_on(
            agent
                .update(&id, "whoami")
                .with_arg(Vec::<u8>::new())
                .call_and_wait(),
        )
        .unwrap();
    assert_eq!(Principal::from_slice(&whoami), me);

    // Rejects carry the IC's codes: a trap is a certified canister error, an explicit
    // reject a certified canister reject, inspect_message's refusal is not replicated.
    match rt.block_on(
        agent
            .update(&id, "inc_then_trap")
            .with_arg(vec![])
            .call_and_wait(),
    ) {
        Err(AgentError::CertifiedReject { reject, .. }) => {
            assert_eq!(reject.reject_code, RejectCode::CanisterError);
            assert_eq!(reject.error_code.as_deref(), Some("IC0503"));
        }
        other => panic!("a trap is a certified reject, not {other:?}"),
    }
    match rt.block_on(
        agent
            .update(&id, "inc_then_reject")
            .with_arg(vec![])
            .call_and_wait(),
    ) {
        Err(AgentError::CertifiedReject { reject, .. }) => {
            assert_eq!(reject.reject_code, RejectCode::CanisterReject)
        }
        other => panic!("msg_reject is a certified reject, not {other:?}"),
    }
    match rt.block_on(
        agent
            .update(&id, "forbidden")
            .with_arg(vec![])
            .call_and_wait(),
    ) {
        Err(AgentError::UncertifiedReject { reject, .. }) => {
            assert_eq!(reject.reject_code, RejectCode::CanisterReject);
            assert_eq!(reject.error_code.as_deref(), Some("IC0516"));
        }
        other => panic!("inspect_message refuses before execution, not {other:?}"),
    }
    match rt.block_on(
        agent
            .update(&id, "no_such_method")
            .with_arg(vec![])
            .call_and_wait(),
    ) {
        Err(AgentError::UncertifiedReject { reject, .. }) => {
            assert_eq!(reject.reject_code, RejectCode::DestinationInvalid);
            assert_eq!(reject.error_code.as_deref(), Some("IC0536"));
        }
        other => panic!("an unknown method is destination invalid, not {other:?}"),
    }
    match rt.block_on(agent.query(&id, "no_such_query").with_arg(vec![]).call()) {
        Err(AgentError::UncertifiedReject { reject, .. }) => {
            assert_eq!(reject.reject_code, RejectCode::DestinationInvalid)
        }
        other => panic!("an unknown query is destination invalid, not {other:?}"),
    }
    // Only the trap rolled back: inc_then_reject's bump stays, as on the IC.
    assert_eq!(counter(&rt, &agent, id), 4);

    // Management: status for a controller, refused for anyone else; stop and start.
    let status = rt
        .block_on(
            agent
                .update(&Principal::management_canister(), "canister_status")
                .with_effective_canister_id(id)
                .with_arg(Encode!(&CanisterIdRecord { canister_id: id }).unwrap())
                .call_and_wait(),
        )
        .unwrap();
    let status: flic_devnet::management::CanisterStatus = candid::decode_one(&status).unwrap();
    assert_eq!(status.module_hash, Some(hash.clone()));
    assert_eq!(status.settings.controllers, vec![me]);
    let (rt2, stranger) = devnet.agent(BasicIdentity::from_raw_key(&[2; 32]));
    match rt2.block_on(
        stranger
            .update(&Principal::management_canister(), "stop_canister")
            .with_effective_canister_id(id)
            .with_arg(Encode!(&CanisterIdRecord { canister_id: id }).unwrap())
            .call_and_wait(),
    ) {
        Err(AgentError::CertifiedReject { reject, .. }) => {
            assert!(
                reject.reject_message.contains("not a controller"),
                "{reject:?}"
            )
        }
        other => panic!("a stranger cannot stop the canister: {other:?}"),
    }
    let manage = |method: &str| {
        rt.block_on(
            agent
                .update(&Principal::management_canister(), method)
                .with_effective_canister_id(id)
                .with_arg(Encode!(&CanisterIdRecord { canister_id: id }).unwrap())
                .call_and_wait(),
        )
    };
    manage("stop_canister").unwrap();
    match rt.block_on(agent.update(&id, "inc").with_arg(vec![]).call_and_wait()) {
        Err(AgentError::UncertifiedReject { reject, .. }) => {
            assert_eq!(reject.error_code.as_deref(), Some("IC0508"))
        }
        other => panic!("a stopped canister takes no calls: {other:?}"),
    }
    manage("start_canister").unwrap();
    assert_eq!(counter(&rt, &agent, id), 4);
}

#[test]
fn secp256k1_and_delegated_senders_are_verified_and_delegation_targets_enforced() {
    let devnet = Running::start(DevnetConfig::default());
    let (rt, admin) = devnet.agent(BasicIdentity::from_raw_key(&[1; 32]));
    let id = deploy_counter(&rt, &admin);

    let secp = Secp256k1Identity::from_private_key(k256::SecretKey::from_slice(&[7; 32]).unwrap());
    let secp_principal = secp.sender().unwrap();
    let (rt, agent) = devnet.agent(secp);
    let whoami = rt
        .block_on(agent.update(&id, "whoami").with_arg(vec![]).call_and_wait())
        .unwrap();
    assert_eq!(Principal::from_slice(&whoami), secp_principal);

    // A session key B acting for A through a delegation A signed.
    let a = ed25519_key(10);
    let b = BasicIdentity::from_raw_key(&[11; 32]);
    let b_der = b.public_key().unwrap();
    let delegated = |targets: Option<Vec<Principal>>| {
        let delegation = Delegation {
            pubkey: b_der.clone(),
            expiration: server::wall_clock_ns() + 600_000_000_000,
            targets,
            permissions: None,
        };
        let signature = a.sign(&delegation.signable()).to_bytes().to_vec();
        DelegatedIdentity::new_unchecked(
            der(&a),
            Box::new(BasicIdentity::from_raw_key(&[11; 32])),
            vec![SignedDelegation {
                delegation,
                signature,
            }],
        )
    };
    let (rt, agent) = devnet.agent(delegated(Some(vec![id])));
    let whoami = rt
        .block_on(agent.update(&id, "whoami").with_arg(vec![]).call_and_wait())
        .unwrap();
    assert_eq!(
        Principal::from_slice(&whoami),
        Principal::self_authenticating(der(&a)),
        "the caller is the delegating key's principal"
    );
    let (rt, agent) = devnet.agent(delegated(Some(vec![Principal::management_canister()])));
    match rt.block_on(agent.update(&id, "inc").with_arg(vec![]).call_and_wait()) {
        Err(AgentError::HttpError(e)) => assert_eq!(e.status, 403),
        other => panic!("a delegation for other canisters does not reach this one: {other:?}"),
    }
}

/// A raw HTTP/1.1 request; returns the status and the body.
fn post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/cbor\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // A server may answer (413) before reading a large body: ignore a broken pipe.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text[9..12].parse().unwrap();
    let start = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (status, out[start..].to_vec())
}

/// A signed call envelope for `method` on `canister`, expiring at `expiry`.
fn signed_call(
    key: &ed25519_dalek::SigningKey,
    canister: Principal,
    method: &str,
    expiry: u64,
) -> (Vec<u8>, EnvelopeContent) {
    let content = EnvelopeContent::Call {
        nonce: Some(b"nonce-0123456789".to_vec()),
        ingress_expiry: expiry,
        sender: Principal::self_authenticating(der(key)),
        canister_id: canister,
        method_name: method.into(),
        arg: Vec::new(),
        sender_info: None,
    };
    let mut msg = b"\x0Aic-request".to_vec();
    msg.extend_from_slice(content.to_request_id().as_slice());
    let envelope = Envelope {
        content: std::borrow::Cow::Owned(content.clone()),
        sender_pubkey: Some(der(key)),
        sender_sig: Some(key.sign(&msg).to_bytes().to_vec()),
        sender_delegation: None,
    };
    (envelope.encode_bytes(), content)
}

#[test]
fn malformed_traffic_gets_the_right_status_and_changes_nothing() {
    let devnet = Running::start(DevnetConfig::default());
    let (rt, agent) = devnet.agent(BasicIdentity::from_raw_key(&[1; 32]));
    let id = deploy_counter(&rt, &agent);
    let other = deploy_counter(&rt, &agent);
    let key = ed25519_key(3);
    let now = server::wall_clock_ns();
    let call_path = format!("/api/v4/canister/{id}/call");
    let snapshot = |d: &Running| {
        let d = d.lock();
        (
            d.ic().canister_version(id),
            d.ic().certified_data(id).map(<[u8]>::to_vec),
            d.request_records(),
        )
    };
    let before = snapshot(&devnet);

    let (valid, _) = signed_call(&key, id, "inc", now + 120_000_000_000);
    let mut bad_sig = serde_cbor::from_slice::<serde_cbor::Value>(&valid).unwrap();
    if let serde_cbor::Value::Map(m) = &mut bad_sig {
        let sig = m
            .get_mut(&serde_cbor::Value::Text("sender_sig".into()))
            .unwrap();
        if let serde_cbor::Value::Bytes(b) = sig {
            b[0] ^= 1;
        }
    }
    let bad_sig = serde_cbor::to_vec(&bad_sig).unwrap();
    let (expired, _) = signed_call(&key, id, "inc", now - 1_000_000_000);
    let (too_far, _) = signed_call(&key, id, "inc", now + 3_600_000_000_000);
    let cases: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![
        (
            "bad signature",
            call_path.clone(),
            bad_sig,
            400,
            "signature",
        ),
        ("expired", call_path.clone(), expired, 400, "expired"),
        (
            "expiry too far ahead",
            call_path.clone(),
            too_far,
            400,
            "6 minutes",
        ),
        (
            "wrong effective canister id",
            format!("/api/v4/canister/{other}/call"),
            valid.clone(),
            400,
            "effective canister id",
        ),
        (
            "not CBOR",
            call_path.clone(),
            b"{\"hello\": 1}".to_vec(),
            400,
            "not CBOR",
        ),
        (
            "no content",
            call_path.clone(),
            serde_cbor::to_vec(&serde_cbor::Value::Map(Default::default())).unwrap(),
            400,
            "no `content`",
        ),
        (
            "oversize",
            call_path.clone(),
            vec![0u8; 5 << 20],
            413,
            "larger than",
        ),
        (
            "a query at the call endpoint",
            call_path.clone(),
            {
                let q = EnvelopeContent::Query {
                    ingress_expiry: now + 60_000_000_000,
                    sender: Principal::anonymous(),
                    canister_id: id,
                    method_name: "get".into(),
                    arg: vec![],
                    nonce: None,
                    sender_info: None,
                };
                Envelope {
                    content: std::borrow::Cow::Owned(q),
                    sender_pubkey: None,
                    sender_sig: None,
                    sender_delegation: None,
                }
                .encode_bytes()
            },
            400,
            "call endpoint",
        ),
        (
            "unknown endpoint",
            format!("/api/v4/canister/{id}/teleport"),
            valid.clone(),
            404,
            "no endpoint",
        ),
        (
            "not a principal",
            "/api/v4/canister/not-a-principal/call".into(),
            valid.clone(),
            400,
            "not a principal",
        ),
    ];
    for (what, path, body, status, needle) in cases {
        let (got, reply) = post(devnet.addr(), &path, &body);
        let text = String::from_utf8_lossy(&reply);
        assert_eq!(got, status, "{what}: {text}");
        assert!(
            text.contains(needle),
            "{what}: `{text}` should say `{needle}`"
        );
        assert_eq!(snapshot(&devnet), before, "{what} changed nothing");
    }
    assert_eq!(counter(&rt, &agent, id), 0);

    // The valid envelope runs once; the same request id again is answered, not run.
    for _ in 0..3 {
        let (status, reply) = post(devnet.addr(), &call_path, &valid);
        assert_eq!(status, 200);
        let v: serde_cbor::Value = serde_cbor::from_slice(&reply).unwrap();
        let serde_cbor::Value::Map(m) = v else {
            panic!()
        };
        assert_eq!(
            m.get(&serde_cbor::Value::Text("status".into())),
            Some(&serde_cbor::Value::Text("replied".into()))
        );
    }
    assert_eq!(counter(&rt, &agent, id), 1, "a replayed request runs once");

    // Management calls to a canister of someone else, or with nat cycles, still checked.
    let stranger = BasicIdentity::from_raw_key(&[9; 32]);
    let (rt2, stranger) = devnet.agent(stranger);
    match rt2.block_on(
        stranger
            .update(&Principal::management_canister(), "install_code")
            .with_effective_canister_id(id)
            .with_arg(
                Encode!(&InstallCodeArgs {
                    mode: CanisterInstallMode::Reinstall,
                    canister_id: id,
                    wasm_module: wat::parse_str(COUNTER).unwrap(),
                    arg: vec![],
                    sender_canister_version: None,
                })
                .unwrap(),
            )
            .call_and_wait(),
    ) {
        Err(AgentError::CertifiedReject { reject, .. }) => {
            assert!(reject.reject_message.contains("not a controller"))
        }
        other => panic!("only controllers install: {other:?}"),
    }
    assert_eq!(counter(&rt, &agent, id), 1);
    let _ = Nat::from(0u8);
}

#[test]
fn the_gateway_serves_http_request_by_host_or_canister_id() {
    let devnet = Running::start(DevnetConfig::default());
    let (rt, agent) = devnet.agent(BasicIdentity::from_raw_key(&[1; 32]));
    let id = deploy_counter(&rt, &agent);
    // The counter has no http_request: the gateway says so with a 502, by either form.
    for (host, path) in [
        (
            format!("{id}.localhost:{}", devnet.addr().port()),
            "/".to_string(),
        ),
        (
            devnet.addr().to_string(),
            format!("/index.html?canisterId={id}"),
        ),
    ] {
        let mut s = TcpStream::connect(devnet.addr()).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 502"), "{out}");
        assert!(out.contains("http_request"), "{out}");
    }
    let (status, body) = post(devnet.addr(), "/elsewhere", b"");
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn metadata_sections_are_certified_public_to_all_and_private_to_controllers() {
    let devnet = Running::start(DevnetConfig::default());
    let (rt, admin) = devnet.agent(BasicIdentity::from_raw_key(&[1; 32]));
    let id = deploy_counter(&rt, &admin);
    let wasm = wat::parse_str(
        r#"(module
            (@custom "icp:public candid:service" "service : { get : () -> (nat) query }")
            (@custom "icp:private notes" "for controllers"))"#,
    )
    .unwrap();
    let install = InstallCodeArgs {
        mode: CanisterInstallMode::Reinstall,
        canister_id: id,
        wasm_module: wasm,
        arg: vec![],
        sender_canister_version: None,
    };
    rt.block_on(
        admin
            .update(&Principal::management_canister(), "install_code")
            .with_effective_canister_id(id)
            .with_arg(Encode!(&install).unwrap())
            .call_and_wait(),
    )
    .unwrap();
    let read = |rt: &tokio::runtime::Runtime, agent: &Agent, name: &str| {
        rt.block_on(agent.read_state_canister_metadata(id, name))
    };
    assert_eq!(
        read(&rt, &admin, "candid:service").unwrap(),
        b"service : { get : () -> (nat) query }"
    );
    assert_eq!(read(&rt, &admin, "notes").unwrap(), b"for controllers");
    let (rt2, stranger) = devnet.agent(BasicIdentity::from_raw_key(&[2; 32]));
    assert!(read(&rt2, &stranger, "candid:service").is_ok());
    assert!(
        read(&rt2, &stranger, "notes").is_err(),
        "icp:private metadata is for controllers only"
    );

    // Logs: the management canister's fetch_canister_logs query, for controllers.
    let logs = rt
        .block_on(
            admin
                .query(&Principal::management_canister(), "fetch_canister_logs")
                .with_effective_canister_id(id)
                .with_arg(Encode!(&CanisterIdRecord { canister_id: id }).unwrap())
                .call(),
        )
        .unwrap();
    assert!(!logs.is_empty());
    assert!(rt2
        .block_on(
            stranger
                .query(&Principal::management_canister(), "fetch_canister_logs")
                .with_effective_canister_id(id)
                .with_arg(Encode!(&CanisterIdRecord { canister_id: id }).unwrap())
                .call(),
        )
        .is_err());
}

#[test]
fn new_canisters_never_take_a_system_canisters_id() {
    let mut devnet = Devnet::start(DevnetConfig::default(), server::wall_clock_ns()).unwrap();
    let ids: Vec<Principal> = (0..8)
        .map(|_| devnet.ic_mut().create_canister(vec![]))
        .collect();
    for reserved in flic_devnet::system::reserved_ids() {
        assert!(!ids.contains(&reserved), "{reserved} was handed out");
    }
    assert_eq!(ids.len(), 8);
}

#[test]
fn a_v2_call_is_accepted_then_polled_and_only_its_sender_reads_its_status() {
    let devnet = Running::start(DevnetConfig::default());
    let (rt, admin) = devnet.agent(BasicIdentity::from_raw_key(&[1; 32]));
    let id = deploy_counter(&rt, &admin);
    let key = ed25519_key(3);
    let (envelope, content) =
        signed_call(&key, id, "inc", server::wall_clock_ns() + 120_000_000_000);
    let (status, _) = post(
        devnet.addr(),
        &format!("/api/v2/canister/{id}/call"),
        &envelope,
    );
    assert_eq!(status, 202);
    assert_eq!(counter(&rt, &admin, id), 1);

    // The same key polls through ic-agent: the certified status says replied.
    let (rt3, sender) = devnet.agent(BasicIdentity::from_raw_key(&[3; 32]));
    let status = rt3
        .block_on(sender.request_status_raw(&content.to_request_id(), id))
        .unwrap();
    assert!(
        matches!(status.0, ic_agent::agent::RequestStatusResponse::Replied(_)),
        "{status:?}"
    );
    // Anyone else is refused the status of someone else's request.
    match rt.block_on(admin.request_status_raw(&content.to_request_id(), id)) {
        Err(AgentError::HttpError(e)) => assert_eq!(e.status, 403),
        other => panic!("another sender reads no status: {other:?}"),
    }
}
