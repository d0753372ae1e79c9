//! One message: which entry point runs ([`MessageKind`], which decides what the System
//! API allows), what it sees and what it has answered so far ([`MessageContext`]).

use candid::Principal;

/// Which entry point is running: decides what the System API allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MessageKind {
    Init,
    PreUpgrade,
    PostUpgrade,
    Update,
    /// A query method called as an update: replicated, but its changes are dropped.
    ReplicatedQuery,
    Query,
    InspectMessage,
    GlobalTimer,
    Heartbeat,
    /// The reply callback of an inter-canister call this canister made.
    ReplyCallback,
    /// The reject callback of an inter-canister call this canister made.
    RejectCallback,
    /// The cleanup callback, after a reply or reject callback trapped.
    Cleanup,
}

impl MessageKind {
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Init => "canister_init",
            MessageKind::PreUpgrade => "canister_pre_upgrade",
            MessageKind::PostUpgrade => "canister_post_upgrade",
            MessageKind::Update => "update",
            MessageKind::ReplicatedQuery => "replicated query",
            MessageKind::Query => "query",
            MessageKind::InspectMessage => "canister_inspect_message",
            MessageKind::GlobalTimer => "canister_global_timer",
            MessageKind::Heartbeat => "canister_heartbeat",
            MessageKind::ReplyCallback => "reply callback",
            MessageKind::RejectCallback => "reject callback",
            MessageKind::Cleanup => "cleanup callback",
        }
    }
    pub fn replicated(self) -> bool {
        !matches!(self, MessageKind::Query | MessageKind::InspectMessage)
    }
    pub fn has_arg(self) -> bool {
        matches!(
            self,
            MessageKind::Init
                | MessageKind::PostUpgrade
                | MessageKind::Update
                | MessageKind::ReplicatedQuery
                | MessageKind::Query
                | MessageKind::InspectMessage
                | MessageKind::ReplyCallback
        )
    }
    /// May make inter-canister calls (`ic0.call_*`).
    pub fn can_call(self) -> bool {
        matches!(
            self,
            MessageKind::Update
                | MessageKind::GlobalTimer
                | MessageKind::Heartbeat
                | MessageKind::ReplyCallback
                | MessageKind::RejectCallback
        )
    }
    /// Sees the reject code of a call (0 in a reply callback).
    pub fn is_callback(self) -> bool {
        matches!(
            self,
            MessageKind::ReplyCallback | MessageKind::RejectCallback
        )
    }
    pub fn can_reply(self) -> bool {
        matches!(
            self,
            MessageKind::Update | MessageKind::ReplicatedQuery | MessageKind::Query
        )
    }
    /// May change system state that outlives the message: certified data, the
    /// timer, the cycle balance.
    pub fn changes_system_state(self) -> bool {
        matches!(
            self,
            MessageKind::Init
                | MessageKind::PreUpgrade
                | MessageKind::PostUpgrade
                | MessageKind::Update
                | MessageKind::GlobalTimer
                | MessageKind::Heartbeat
                | MessageKind::ReplyCallback
                | MessageKind::RejectCallback
                | MessageKind::Cleanup
        )
    }
}

/// How the method answered, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Response {
    Reply,
    Reject(String),
}

/// What one message sees: its argument, caller, and what it has produced so far.
pub(crate) struct MessageContext {
    pub kind: MessageKind,
    pub arg: Vec<u8>,
    pub caller: Principal,
    pub method: String,
    pub reply: Vec<u8>,
    pub response: Option<Response>,
    pub accepted: bool,
    /// Present in non-replicated queries only.
    pub certificate: Option<Vec<u8>>,
    /// Fuel when the message started, for `performance_counter`.
    pub fuel_at_start: u64,
    /// The call `ic0.call_new` started and `call_perform` has not sent yet.
    pub pending_call: Option<OutgoingCall>,
    /// Calls sent by `call_perform`: they go out only if the message commits.
    pub calls: Vec<OutgoingCall>,
    /// In a reject callback: the reject code and message.
    pub reject: Option<(u32, String)>,
}

/// An inter-canister call, as `ic0.call_new` and its followers describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutgoingCall {
    pub callee: Principal,
    pub method: String,
    pub arg: Vec<u8>,
    /// Indices into the module's function table, and their environments.
    pub reply: (u32, u32),
    pub reject: (u32, u32),
    pub cleanup: Option<(u32, u32)>,
    pub cycles: u128,
}

impl MessageContext {
    pub fn new(kind: MessageKind, caller: Principal, method: &str, arg: Vec<u8>) -> Self {
        MessageContext {
            kind,
            arg,
            caller,
            method: method.to_string(),
            reply: Vec::new(),
            response: None,
            accepted: false,
            certificate: None,
            fuel_at_start: 0,
            pending_call: None,
            calls: Vec::new(),
            reject: None,
        }
    }
}
