//! `flic deploy`: creates the aggregator canister on a network and installs its wasm, or
//! reinstalls or upgrades an existing canister, through the management canister.

use anyhow::Context;
use candid::Principal;
use flic_protocol::api::{InitArg, InitArgs};
use ic_management_canister_types::CanisterInstallMode;
use serde::Serialize;

use crate::cli::{DeployArgs, DeployMode};
use crate::identity::Identity;
use crate::output::Printer;
use crate::transport::agent::{Management, Network};

#[derive(Serialize)]
struct Deployed {
    canister: String,
    mode: &'static str,
    module_hash: String,
    controller: String,
}

pub fn run(printer: &Printer, args: &DeployArgs) -> anyhow::Result<()> {
    let identity = Identity::load(&args.identity.path())?;
    let network = Network::parse(&args.network).map_err(anyhow::Error::msg)?;
    let wasm = match &args.wasm {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => flic_aggregator_wasm::AGGREGATOR_WASM.to_vec(),
    };
    let mut management = Management::connect(&network, &identity)?;
    let existing = args
        .canister
        .as_deref()
        .map(|t| {
            Principal::from_text(t).with_context(|| format!("--canister {t} is not a principal"))
        })
        .transpose()?;
    let mode = args.mode.unwrap_or(if existing.is_some() {
        DeployMode::Upgrade
    } else {
        DeployMode::Install
    });
    if existing.is_none() && mode != DeployMode::Install {
        anyhow::bail!("--mode {mode:?} needs --canister ID (the canister to change)");
    }
    let canister = match existing {
        Some(id) => id,
        None => {
            let id = management.create_canister(args.cycles).context(
                "creating the canister (provisional_create_canister_with_cycles works on local networks only)",
            )?;
            printer.info(format!("created canister {id}"));
            id
        }
    };
    let init = match mode {
        DeployMode::Upgrade => candid::encode_one(Some(InitArg::Upgrade(None)))?,
        _ => candid::encode_one(InitArg::Init(InitArgs::default()))?,
    };
    let install_mode = match mode {
        DeployMode::Install => CanisterInstallMode::Install,
        DeployMode::Reinstall => CanisterInstallMode::Reinstall,
        DeployMode::Upgrade => CanisterInstallMode::Upgrade(None),
    };
    management
        .install_code(canister, install_mode, &wasm, init)
        .with_context(|| format!("installing the wasm into {canister}"))?;
    let deployed = Deployed {
        canister: canister.to_text(),
        mode: match mode {
            DeployMode::Install => "install",
            DeployMode::Reinstall => "reinstall",
            DeployMode::Upgrade => "upgrade",
        },
        module_hash: flic_protocol::hash::to_hex(&flic_protocol::hash::sha256(&wasm)),
        controller: identity.principal().to_text(),
    };
    if args.output.json {
        printer.json(&deployed)?;
    } else {
        printer.out(format!(
            "{}: canister {} runs module {}",
            deployed.mode, deployed.canister, deployed.module_hash
        ))?;
        printer.out(format!(
            "next: flic job start --network {} --canister {} ...",
            args.network, deployed.canister
        ))?;
    }
    Ok(())
}
