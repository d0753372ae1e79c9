//! `ic-agent` transport for a local replica (`dfx start`) or the IC mainnet.

use candid::Principal;
use ic_agent::identity::{AnonymousIdentity, BasicIdentity};
use ic_agent::Agent;
use ic_management_canister_types::{
    CanisterIdRecord, CanisterInstallMode, CanisterSettings, InstallCodeArgs,
    ProvisionalCreateCanisterWithCyclesArgs,
};

use super::{Reply, Transport, TransportError};
use crate::identity::Identity;

/// Where the replica is: `local` (dfx's default port), `ic` (mainnet) or a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    Local,
    Ic,
    Url(String),
}

impl Network {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(Network::Local),
            "ic" => Ok(Network::Ic),
            url if url.starts_with("http://") || url.starts_with("https://") => {
                Ok(Network::Url(url.to_string()))
            }
            other => Err(format!(
                "unknown network `{other}`: use local, ic, or an http(s) URL"
            )),
        }
    }

    pub fn url(&self) -> &str {
        match self {
            Network::Local => "http://127.0.0.1:4943",
            Network::Ic => "https://icp-api.io",
            Network::Url(u) => u,
        }
    }

    /// Only a local replica's root key may be fetched from the replica itself; mainnet's
    /// is built into the agent, so a rogue endpoint cannot substitute its own.
    pub fn fetch_root_key(&self) -> bool {
        !matches!(self, Network::Ic)
    }
}

pub struct AgentTransport {
    agent: Agent,
    runtime: tokio::runtime::Runtime,
    canister: Principal,
    caller: Principal,
}

impl AgentTransport {
    pub fn connect(
        network: &Network,
        canister: Principal,
        identity: Option<&Identity>,
    ) -> Result<Self, TransportError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TransportError::Other(format!("cannot start the async runtime: {e}")))?;
        let builder = Agent::builder().with_url(network.url());
        let builder = match identity {
            Some(id) => builder.with_identity(BasicIdentity::from_raw_key(&id.secret_bytes())),
            // Queries need no key: the anonymous principal reads.
            None => builder.with_identity(AnonymousIdentity),
        };
        let agent = builder.build().map_err(|e| {
            TransportError::Other(format!("cannot build an agent for {}: {e}", network.url()))
        })?;
        if network.fetch_root_key() {
            runtime
                .block_on(agent.fetch_root_key())
                .map_err(|e| TransportError::Unreachable {
                    method: "fetch_root_key".into(),
                    message: format!(
                        "{} ({e}); is the replica running (`dfx start`)?",
                        network.url()
                    ),
                })?;
        }
        Ok(Self {
            agent,
            runtime,
            canister,
            caller: identity.map_or(Principal::anonymous(), Identity::principal),
        })
    }
}

fn classify(method: &str, err: ic_agent::AgentError) -> TransportError {
    use ic_agent::AgentError as E;
    match err {
        E::CertifiedReject { reject, .. } | E::UncertifiedReject { reject, .. } => {
            TransportError::Rejected {
                method: method.into(),
                message: reject.reject_message,
            }
        }
        E::TransportError(e) => TransportError::Unreachable {
            method: method.into(),
            message: e.to_string(),
        },
        E::TimeoutWaitingForResponse() => TransportError::Unreachable {
            method: method.into(),
            message: "timed out waiting for the reply".into(),
        },
        other => TransportError::Other(format!("`{method}`: {other}")),
    }
}

impl AgentTransport {
    /// An update call with an explicit effective canister id: what the management
    /// canister's methods need (the canister they act on).
    pub fn update_with_effective(
        &mut self,
        method: &str,
        arg: Vec<u8>,
        effective: Principal,
    ) -> Result<Vec<u8>, TransportError> {
        let call = self
            .agent
            .update(&self.canister, method)
            .with_effective_canister_id(effective)
            .with_arg(arg)
            .call_and_wait();
        self.runtime.block_on(call).map_err(|e| classify(method, e))
    }
}

/// Deploying through the management canister (`aaaaa-aa`): what `flic deploy` and
/// `flic simulate --network` do.
pub struct Management(AgentTransport);

impl Management {
    pub fn connect(network: &Network, identity: &Identity) -> Result<Self, TransportError> {
        AgentTransport::connect(network, Principal::management_canister(), Some(identity))
            .map(Management)
    }

    /// `provisional_create_canister_with_cycles` (local networks only), with the caller as
    /// the only controller.
    pub fn create_canister(&mut self, cycles: u128) -> Result<Principal, TransportError> {
        let method = "provisional_create_canister_with_cycles";
        let arg = candid::encode_one(ProvisionalCreateCanisterWithCyclesArgs {
            amount: Some(candid::Nat::from(cycles)),
            settings: Some(CanisterSettings {
                controllers: Some(vec![self.0.caller]),
                ..CanisterSettings::default()
            }),
            specified_id: None,
            sender_canister_version: None,
        })
        .map_err(|e| TransportError::Other(e.to_string()))?;
        // Any canister id of the subnet is a valid effective id for the creation: the
        // first one of the IC's local subnets.
        let effective = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
        let reply = self.0.update_with_effective(method, arg, effective)?;
        candid::decode_one::<CanisterIdRecord>(&reply)
            .map(|r| r.canister_id)
            .map_err(|e| TransportError::Other(format!("`{method}` replied {e}")))
    }

    pub fn install_code(
        &mut self,
        canister: Principal,
        mode: CanisterInstallMode,
        wasm: &[u8],
        arg: Vec<u8>,
    ) -> Result<(), TransportError> {
        let arg = candid::encode_one(InstallCodeArgs {
            mode,
            canister_id: canister,
            wasm_module: wasm.to_vec(),
            arg,
            sender_canister_version: None,
        })
        .map_err(|e| TransportError::Other(e.to_string()))?;
        self.0
            .update_with_effective("install_code", arg, canister)?;
        Ok(())
    }
}

impl Transport for AgentTransport {
    fn caller(&self) -> Principal {
        self.caller
    }

    fn canister_id(&self) -> Principal {
        self.canister
    }

    fn update(&mut self, method: &str, arg: Vec<u8>) -> Result<Reply, TransportError> {
        let call = self
            .agent
            .update(&self.canister, method)
            .with_arg(arg)
            .call_and_wait();
        let bytes = self
            .runtime
            .block_on(call)
            .map_err(|e| classify(method, e))?;
        Ok(Reply {
            bytes,
            instructions: None,
        })
    }

    fn root_key(&self) -> Vec<u8> {
        self.agent.read_root_key()
    }

    fn now_ns(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }

    fn query(&mut self, method: &str, arg: Vec<u8>) -> Result<Reply, TransportError> {
        let call = self
            .agent
            .query(&self.canister, method)
            .with_arg(arg)
            .call();
        let bytes = self
            .runtime
            .block_on(call)
            .map_err(|e| classify(method, e))?;
        Ok(Reply {
            bytes,
            instructions: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_parsing() {
        assert_eq!(Network::parse("local").unwrap(), Network::Local);
        assert_eq!(Network::parse("ic").unwrap().url(), "https://icp-api.io");
        assert_eq!(
            Network::parse("http://127.0.0.1:8080").unwrap().url(),
            "http://127.0.0.1:8080"
        );
        assert!(Network::parse("mainnet").is_err());
        assert!(!Network::Ic.fetch_root_key());
    }
}
