//! [`Devnet`]: the embedded IC behind the IC's public HTTP interface, answered request by
//! request. No sockets here: [`Devnet::handle`] takes an HTTP request and returns the
//! response, so every path is testable in-process; `server` puts it on a port.

use std::path::{Path, PathBuf};

use candid::Principal;
use flic_embedded_ic::{BlsCertificateIssuer, CallError, Config, EmbeddedIc, TEST_ROOT_KEY_SEED};
use ic_transport_types::{
    EnvelopeContent, NodeSignature, QueryResponse, ReadStateResponse, RejectCode, RejectResponse,
    ReplyResponse, RequestId, TransportCallResponse,
};
use serde::Serialize;
use sha2::Digest;

use crate::auth::{authenticate, Authenticated};
use crate::error::IngressError;
use crate::gateway;
use crate::http::{HttpReply, HttpRequest};
use crate::management::{self, ChunkStores, ManagementReject};
use crate::requests::{Outcome, Record, Requests};
use crate::state_tree;
use crate::store;
use crate::system;
use crate::tree::Tree;

/// The largest request body taken (the IC's limit on an ingress message is 2 MiB plus the
/// envelope; boundary nodes refuse more than about 4 MiB).
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// Settings of a devnet.
#[derive(Debug, Clone)]
pub struct DevnetConfig {
    /// Seed of the root key (BLS) that signs every certificate. The default is the embedded
    /// IC's public test key, so receipts made by `flic simulate` verify here too.
    pub root_key_seed: Vec<u8>,
    /// Where the state is kept across restarts (`None`: memory only).
    pub state_dir: Option<PathBuf>,
    pub max_body_bytes: usize,
    /// Where compiled canister modules are cached across runs.
    pub module_cache_dir: Option<PathBuf>,
    /// The canister the HTTP gateway serves for a request that names none (no
    /// `<id>.localhost` host, no `canisterId`): what `flic dashboard` serves at `/`.
    pub default_canister: Option<Principal>,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        DevnetConfig {
            root_key_seed: TEST_ROOT_KEY_SEED.to_vec(),
            state_dir: None,
            max_body_bytes: MAX_BODY_BYTES,
            module_cache_dir: None,
            default_canister: None,
        }
    }
}

/// Why a devnet could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot load the state in {dir}: {source}")]
    Load {
        dir: PathBuf,
        source: Box<flic_embedded_ic::PersistError>,
    },
    #[error("cannot read the devnet records in {dir}: {message}")]
    Records { dir: PathBuf, message: String },
}

/// The one node of the devnet's one subnet: it signs query responses.
struct Node {
    key: ed25519_dalek::SigningKey,
    id: Principal,
    der: Vec<u8>,
}

impl Node {
    fn from_seed(seed: &[u8]) -> Node {
        let mut h = sha2::Sha256::new();
        h.update(b"flic-devnet/node-key/v1");
        h.update(seed);
        let key = ed25519_dalek::SigningKey::from_bytes(&h.finalize().into());
        let der = ed25519_der(key.verifying_key().as_bytes());
        Node {
            id: Principal::self_authenticating(&der),
            key,
            der,
        }
    }
}

fn ed25519_der(raw: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(raw);
    der
}

/// A local Internet Computer: one subnet, one node, the embedded IC's canisters.
pub struct Devnet {
    ic: EmbeddedIc,
    issuer: BlsCertificateIssuer,
    root_key: Vec<u8>,
    subnet_id: Principal,
    node: Node,
    requests: Requests,
    chunks: ChunkStores,
    config: DevnetConfig,
}

/// What a request was, for the log line the server prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub reply: HttpReply,
    /// A short description: `call <canister> <method>`, `query ...`, `read_state`, `status`.
    pub summary: String,
}

impl Devnet {
    /// A devnet starting empty, or from `config.state_dir` where it holds a saved state
    /// (what `flic simulate --state DIR` or an earlier devnet wrote).
    pub fn start(config: DevnetConfig, now_ns: u64) -> Result<Devnet, StartError> {
        let ic_config = Config {
            start_time_ns: now_ns,
            module_cache_dir: config.module_cache_dir.clone(),
            ..Config::default()
        };
        let saved = config
            .state_dir
            .as_deref()
            .filter(|d| d.join("manifest.json").exists());
        let ic = match saved {
            Some(dir) => {
                EmbeddedIc::load_with_config(dir, ic_config.clone()).map_err(|source| {
                    StartError::Load {
                        dir: dir.to_path_buf(),
                        source: Box::new(source),
                    }
                })?
            }
            None => EmbeddedIc::with_config(ic_config),
        };
        let requests = match saved {
            Some(dir) => store::load_requests(dir).map_err(|message| StartError::Records {
                dir: dir.to_path_buf(),
                message,
            })?,
            None => Requests::default(),
        };
        Ok(Devnet::with_ic(ic, requests, config, now_ns))
    }

    /// A devnet around an embedded IC loaded elsewhere (`flic dashboard`). It saves to
    /// `config.state_dir` only if one is given.
    pub fn from_ic(ic: EmbeddedIc, config: DevnetConfig, now_ns: u64) -> Devnet {
        Devnet::with_ic(ic, Requests::default(), config, now_ns)
    }

    fn with_ic(
        mut ic: EmbeddedIc,
        requests: Requests,
        config: DevnetConfig,
        now_ns: u64,
    ) -> Devnet {
        ic.reserve_canister_ids(system::reserved_ids());
        let issuer = BlsCertificateIssuer::from_seed(&config.root_key_seed);
        ic.set_certificate_issuer(Box::new(BlsCertificateIssuer::from_seed(
            &config.root_key_seed,
        )));
        let root_key = issuer.public_key_der();
        let mut devnet = Devnet {
            subnet_id: Principal::self_authenticating(&root_key),
            root_key,
            issuer,
            node: Node::from_seed(&config.root_key_seed),
            requests,
            chunks: ChunkStores::default(),
            config,
            ic,
        };
        // A saved clock may be ahead of this machine's (or behind it): time only moves on.
        devnet.tick(now_ns);
        devnet
    }

    pub fn root_key(&self) -> &[u8] {
        &self.root_key
    }

    pub fn subnet_id(&self) -> Principal {
        self.subnet_id
    }

    pub fn node_id(&self) -> Principal {
        self.node.id
    }

    pub fn ic(&self) -> &EmbeddedIc {
        &self.ic
    }

    pub fn ic_mut(&mut self) -> &mut EmbeddedIc {
        &mut self.ic
    }

    pub fn state_dir(&self) -> Option<&Path> {
        self.config.state_dir.as_deref()
    }

    /// Moves the clock to `now_ns` (never back) and runs the timers that are due; saves if
    /// any committed. Returns how many timer messages ran.
    pub fn tick(&mut self, now_ns: u64) -> usize {
        let now = now_ns.max(self.ic.time());
        let outcomes = self.ic.set_time(now);
        self.requests.expire(now);
        let committed = outcomes.iter().filter(|o| o.result.is_ok()).count();
        if committed > 0 {
            let _ = self.save();
        }
        outcomes.len()
    }

    /// Writes the state to the state directory, if there is one.
    pub fn save(&mut self) -> Result<(), IngressError> {
        let Some(dir) = self.config.state_dir.clone() else {
            return Ok(());
        };
        self.ic
            .save(&dir)
            .map_err(|e| IngressError::Internal(e.to_string()))?;
        store::save_requests(&dir, &self.requests).map_err(IngressError::Internal)
    }

    /// Answers one HTTP request received at `now_ns`.
    pub fn handle(&mut self, req: &HttpRequest, now_ns: u64) -> Handled {
        self.tick(now_ns);
        let now = self.ic.time();
        if let Some(canister) = gateway::target(req) {
            return Handled {
                summary: format!("gateway {canister} {} {}", req.method, req.path),
                reply: gateway::serve(&mut self.ic, canister, req),
            };
        }
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        match (req.method.as_str(), segments.as_slice()) {
            ("GET", ["api", "v2", "status"]) => {
                return Handled {
                    summary: "status".into(),
                    reply: self.status(),
                }
            }
            (
                "POST",
                ["api", version @ ("v2" | "v3" | "v4"), kind @ ("canister" | "subnet"), id, endpoint @ ("call" | "query" | "read_state")],
            ) => {
                let mut summary = format!("{endpoint} {kind}/{id}");
                let route = Route {
                    version,
                    kind,
                    id,
                    endpoint,
                };
                let reply = match self.api(req, &route, now, &mut summary) {
                    Ok(reply) => reply,
                    Err(e) => {
                        summary.push_str(&format!(": {e}"));
                        HttpReply::error(&e)
                    }
                };
                return Handled { summary, reply };
            }
            _ => {}
        }
        if let Some(canister) = self.config.default_canister {
            return Handled {
                summary: format!("gateway {canister} {} {}", req.method, req.path),
                reply: gateway::serve(&mut self.ic, canister, req),
            };
        }
        match segments.as_slice() {
            ["api", "v2", "status"] => Handled {
                summary: "status (wrong method)".into(),
                reply: HttpReply::text(405, "use GET for /api/v2/status"),
            },
            ["api", ..] => Handled {
                summary: format!("unknown endpoint {} {}", req.method, req.path),
                reply: HttpReply::text(
                    404,
                    format!(
                        "no endpoint {} {}: the devnet serves GET /api/v2/status, POST /api/v4/canister/<id>/call, /api/v3/canister/<id>/query and /api/v3/{{canister,subnet}}/<id>/read_state",
                        req.method, req.path
                    ),
                ),
            },
            _ => Handled {
                summary: format!("no canister for {} {}", req.method, req.path),
                reply: HttpReply::text(
                    404,
                    "not an IC API path, and no canister named: open http://<canister-id>.localhost:<port>/ or add ?canisterId=<canister-id>",
                ),
            },
        }
    }

    fn status(&self) -> HttpReply {
        #[derive(Serialize)]
        struct Status<'a> {
            ic_api_version: &'a str,
            impl_version: &'a str,
            #[serde(with = "serde_bytes")]
            root_key: &'a [u8],
            replica_health_status: &'a str,
        }
        HttpReply::cbor(&Status {
            ic_api_version: "0.18.0",
            impl_version: concat!("flic-devnet ", env!("CARGO_PKG_VERSION")),
            root_key: &self.root_key,
            replica_health_status: "healthy",
        })
    }

    fn api(
        &mut self,
        req: &HttpRequest,
        route: &Route<'_>,
        now: u64,
        summary: &mut String,
    ) -> Result<HttpReply, IngressError> {
        let Route {
            version,
            kind,
            id,
            endpoint,
        } = *route;
        if req.body.len() > self.config.max_body_bytes {
            return Err(IngressError::TooLarge {
                limit: self.config.max_body_bytes,
            });
        }
        let effective = Principal::from_text(id)
            .map_err(|e| IngressError::Malformed(format!("`{id}` is not a principal: {e}")))?;
        let request = authenticate(&req.body, now)?;
        if let EnvelopeContent::Call { method_name, .. }
        | EnvelopeContent::Query { method_name, .. } = &request.content
        {
            summary.push(' ');
            summary.push_str(method_name);
        }
        match (kind, endpoint, &request.content) {
            ("canister", "call", EnvelopeContent::Call { .. }) => {
                self.call(&request, effective, version == "v2", now)
            }
            ("canister", "query", EnvelopeContent::Query { .. }) => {
                self.query(&request, effective, now)
            }
            (_, "read_state", EnvelopeContent::ReadState { paths, .. }) => {
                let paths: Vec<Vec<Vec<u8>>> = paths
                    .iter()
                    .map(|p| p.iter().map(|l| l.as_bytes().to_vec()).collect())
                    .collect();
                self.read_state(&request, kind == "subnet", effective, &paths)
            }
            ("subnet", "call" | "query", _) => Err(IngressError::WrongEndpoint(
                "the devnet has no subnet-level calls or queries; use /api/v4/canister/<id>/call"
                    .into(),
            )),
            (_, endpoint, content) => Err(IngressError::WrongEndpoint(format!(
                "a `{}` request sent to the {endpoint} endpoint",
                request_type(content)
            ))),
        }
    }

    /// An update call, executed at once: the v4 endpoint answers with the certified
    /// status, the v2 endpoint with 202 (the client then polls `read_state`).
    fn call(
        &mut self,
        request: &Authenticated,
        effective: Principal,
        asynchronous: bool,
        now: u64,
    ) -> Result<HttpReply, IngressError> {
        let EnvelopeContent::Call {
            canister_id,
            method_name,
            arg,
            ingress_expiry,
            ..
        } = &request.content
        else {
            unreachable!("checked by the caller")
        };
        self.check_target(request, *canister_id, effective, method_name, arg)?;
        // A replay: the same request id is answered from its record and never runs again.
        if self.requests.get(&request.request_id).is_none() {
            let outcome =
                match self.execute(request.sender(), *canister_id, effective, method_name, arg) {
                    Ok(outcome) => outcome,
                    // Never entered the ingress queue: nothing to record or certify.
                    Err(reject) => {
                        return Ok(HttpReply::cbor(
                            &TransportCallResponse::NonReplicatedRejection(reject),
                        ))
                    }
                };
            self.requests.insert(
                request.request_id,
                Record {
                    outcome,
                    expiry: *ingress_expiry,
                    sender: request.sender(),
                },
            );
            self.save()?;
        }
        if asynchronous {
            return Ok(HttpReply {
                status: 202,
                content_type: "text/plain".into(),
                headers: Vec::new(),
                body: Vec::new(),
            });
        }
        let tree = self.state_tree(now, request.sender());
        let witness = tree.witness(&[
            vec![b"time".to_vec()],
            vec![b"request_status".to_vec(), request.request_id.to_vec()],
        ]);
        Ok(HttpReply::cbor(&TransportCallResponse::Replied {
            certificate: self.issuer.sign_tree(witness),
        }))
    }

    /// Runs an update: on the management canister, a system canister, or a canister of the
    /// embedded IC. `Err` is a refusal before execution (nothing ran, nothing is recorded).
    fn execute(
        &mut self,
        sender: Principal,
        canister: Principal,
        effective: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<Outcome, RejectResponse> {
        let native = |r: Result<Vec<u8>, ManagementReject>| {
            r.map(Outcome::Replied).unwrap_or_else(Outcome::from)
        };
        if canister == Principal::management_canister() {
            return Ok(native(management::call(
                &mut self.ic,
                &mut self.chunks,
                sender,
                effective,
                method,
                arg,
            )));
        }
        if system::is_system_canister(canister) {
            return Ok(native(system::update(
                &mut self.ic,
                canister,
                sender,
                method,
                arg,
            )));
        }
        match self.ic.update(canister, sender, method, arg.to_vec()) {
            Ok(out) => Ok(Outcome::Replied(out.reply)),
            Err(e) => match refused_before_execution(&e) {
                Some(reject) => Err(reject),
                None => Ok(rejected(&e).into()),
            },
        }
    }

    fn check_target(
        &self,
        request: &Authenticated,
        canister: Principal,
        effective: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<(), IngressError> {
        if canister == Principal::management_canister() {
            // Management calls name their target in the argument: the URL's effective
            // canister id must be that target, or `aaaaa-aa` itself (what a client that
            // sets no effective canister id sends).
            if let Some(target) = management::effective_canister_id(method, arg) {
                if effective != target && effective != Principal::management_canister() {
                    return Err(IngressError::WrongEffectiveCanister { effective, target });
                }
            }
        } else if effective != canister {
            return Err(IngressError::WrongEffectiveCanister {
                effective,
                target: canister,
            });
        }
        if let Some(targets) = &request.targets {
            if !targets.contains(&canister) {
                return Err(IngressError::DelegationTarget(canister));
            }
        }
        Ok(())
    }

    fn query(
        &mut self,
        request: &Authenticated,
        effective: Principal,
        now: u64,
    ) -> Result<HttpReply, IngressError> {
        let EnvelopeContent::Query {
            canister_id,
            method_name,
            arg,
            ..
        } = &request.content
        else {
            unreachable!("checked by the caller")
        };
        self.check_target(request, *canister_id, effective, method_name, arg)?;
        let answer: Result<Vec<u8>, RejectResponse> = if *canister_id
            == Principal::management_canister()
            && method_name == "fetch_canister_logs"
        {
            management::fetch_canister_logs(&self.ic, request.sender(), effective, arg)
                .map_err(RejectResponse::from)
        } else if *canister_id == Principal::management_canister() {
            Err(RejectResponse {
                reject_code: RejectCode::DestinationInvalid,
                reject_message: format!(
                    "the management canister has no query method `{method_name}`; call it as an update"
                ),
                error_code: Some("IC0536".into()),
            })
        } else if *canister_id == system::cycles_minting_canister()
            && method_name == "get_default_subnets"
        {
            Ok(system::default_subnets(self.subnet_id))
        } else if system::is_system_canister(*canister_id) {
            system::query(*canister_id, method_name, arg).map_err(RejectResponse::from)
        } else {
            self.ic
                .query(*canister_id, request.sender(), method_name, arg.clone())
                .map(|out| out.reply)
                .map_err(|e| refused_before_execution(&e).unwrap_or_else(|| rejected(&e).into()))
        };
        let response = match answer {
            Ok(arg) => QueryResponse::Replied {
                reply: ReplyResponse { arg },
                signatures: Vec::new(),
            },
            Err(reject) => QueryResponse::Rejected {
                reject,
                signatures: Vec::new(),
            },
        };
        let signable = response.signable(RequestId::new(&request.request_id), now);
        use ed25519_dalek::Signer;
        let signature = NodeSignature {
            timestamp: now,
            signature: self.node.key.sign(&signable).to_bytes().to_vec(),
            identity: self.node.id,
        };
        let response = match response {
            QueryResponse::Replied { reply, .. } => QueryResponse::Replied {
                reply,
                signatures: vec![signature],
            },
            QueryResponse::Rejected { reject, .. } => QueryResponse::Rejected {
                reject,
                signatures: vec![signature],
            },
        };
        Ok(HttpReply::cbor(&response))
    }

    fn read_state(
        &mut self,
        request: &Authenticated,
        subnet_endpoint: bool,
        effective: Principal,
        paths: &[Vec<Vec<u8>>],
    ) -> Result<HttpReply, IngressError> {
        if subnet_endpoint && effective != self.subnet_id {
            return Err(IngressError::WrongEndpoint(format!(
                "subnet {effective} is not this devnet's subnet {}",
                self.subnet_id
            )));
        }
        let mut request_ids = std::collections::BTreeSet::new();
        for path in paths {
            let first = path.first().map(Vec::as_slice);
            match (first, subnet_endpoint) {
                (Some(b"time"), _) | (Some(b"subnet"), _) | (Some(b"canister_ranges"), _) => {}
                (Some(b"request_status"), false) => {
                    let Some(id) = path.get(1) else {
                        return Err(IngressError::Forbidden(
                            "request_status needs a request id".into(),
                        ));
                    };
                    request_ids.insert(id.clone());
                    if let Some(record) = <[u8; 32]>::try_from(id.as_slice())
                        .ok()
                        .and_then(|id| self.requests.get(&id))
                    {
                        if record.sender != request.sender() {
                            return Err(IngressError::Forbidden(
                                "only the sender of a request may read its status".into(),
                            ));
                        }
                    }
                }
                (Some(b"canister"), false) => {
                    let Some(id) = path.get(1) else {
                        return Err(IngressError::Forbidden(
                            "canister paths need a canister id".into(),
                        ));
                    };
                    if id.as_slice() != effective.as_slice() {
                        return Err(IngressError::Forbidden(format!(
                            "the path names canister {}, not the effective canister {effective}",
                            Principal::try_from_slice(id)
                                .map_or_else(|_| hex::encode(id), |p| p.to_text())
                        )));
                    }
                }
                _ => {
                    return Err(IngressError::Forbidden(format!(
                        "path {:?} may not be read at this endpoint",
                        path.iter()
                            .map(|l| String::from_utf8_lossy(l).into_owned())
                            .collect::<Vec<_>>()
                    )))
                }
            }
        }
        if request_ids.len() > 1 {
            return Err(IngressError::Forbidden(
                "a read_state may ask for one request id at a time".into(),
            ));
        }
        let mut paths = paths.to_vec();
        paths.push(vec![b"time".to_vec()]);
        let tree = self.state_tree(self.ic.time(), request.sender());
        Ok(HttpReply::cbor(&ReadStateResponse {
            certificate: self.issuer.sign_tree(tree.witness(&paths)),
        }))
    }

    /// The state tree as of now, as `reader` may see it.
    fn state_tree(&self, now: u64, reader: Principal) -> Tree {
        let subnet = state_tree::Subnet {
            id: self.subnet_id,
            root_key: &self.root_key,
            node_id: self.node.id,
            node_der: &self.node.der,
        };
        state_tree::build(&self.ic, &self.requests, &subnet, now, reader)
    }

    pub fn max_body_bytes(&self) -> usize {
        self.config.max_body_bytes
    }

    /// How many request records the devnet holds (replay protection and polling).
    pub fn request_records(&self) -> usize {
        self.requests.len()
    }
}

/// An IC API path: `/api/<version>/<kind>/<id>/<endpoint>`.
#[derive(Clone, Copy)]
struct Route<'a> {
    version: &'a str,
    kind: &'a str,
    id: &'a str,
    endpoint: &'a str,
}

fn request_type(content: &EnvelopeContent) -> &'static str {
    match content {
        EnvelopeContent::Call { .. } => "call",
        EnvelopeContent::Query { .. } => "query",
        EnvelopeContent::ReadState { .. } => "read_state",
    }
}

/// Refusals a replica makes before a message is inducted (the ingress filter): they
/// answer as a non-replicated rejection and leave no request status.
fn refused_before_execution(e: &CallError) -> Option<RejectResponse> {
    let (code, error_code) = match e {
        CallError::CanisterNotFound(_) => (RejectCode::DestinationInvalid, "IC0301"),
        CallError::NoCode(_) => (RejectCode::DestinationInvalid, "IC0537"),
        CallError::CanisterStopped(_) => (RejectCode::CanisterError, "IC0508"),
        CallError::MethodNotFound { .. } => (RejectCode::DestinationInvalid, "IC0536"),
        CallError::InspectRejected { .. } => (RejectCode::CanisterReject, "IC0516"),
        _ => return None,
    };
    Some(RejectResponse {
        reject_code: code,
        reject_message: e.to_string(),
        error_code: Some(error_code.into()),
    })
}

/// A message that ran and failed: a certified rejection.
fn rejected(e: &CallError) -> ManagementReject {
    let (code, error_code) = match e {
        CallError::Reject { .. } => (4, "IC0406"),
        CallError::Trap { .. } => (5, "IC0503"),
        CallError::DidNotReply { .. } => (5, "IC0506"),
        CallError::InstructionLimit { .. } => (5, "IC0522"),
        _ => (5, "IC0504"),
    };
    ManagementReject {
        code,
        error_code,
        message: e.to_string(),
    }
}
