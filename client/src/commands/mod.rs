//! One module per subcommand; this file dispatches and connects to the canister.

mod bench;
mod dataset;
mod identity;
mod inspect;
mod model;
mod simulate;
mod train;

use std::path::PathBuf;

use anyhow::Context;
use candid::Principal;
use serde::Serialize;

use crate::api::AggregatorApi;
use crate::cli::{Cli, Command, DatasetCommand, ModelCommand, TargetArgs};
use crate::identity::Identity;
use crate::output::{Bars, Progress, Silent};
use crate::transport::agent::{AgentTransport, Network};
use crate::transport::embedded::{self, EmbeddedTransport, SharedIc};
use crate::transport::Transport;

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let mut bars = Bars::new();
    let mut silent = Silent;
    let progress: &mut dyn Progress = if cli.quiet { &mut silent } else { &mut bars };
    match cli.command {
        Command::Keygen { identity } => identity::keygen(&identity.path()),
        Command::Whoami { identity, output } => identity::whoami(&identity.path(), output.json),
        Command::Dataset(DatasetCommand::Register {
            target,
            data,
            name,
            license,
            description,
            output,
        }) => dataset::register(&target, &data, name, license, description, output.json),
        Command::Dataset(DatasetCommand::List { target, output }) => {
            dataset::list(&target, output.json)
        }
        Command::Train(args) => train::run(&args, progress),
        Command::Status { target, output } => inspect::status(&target, output.json),
        Command::Rounds {
            target,
            offset,
            limit,
            output,
        } => inspect::rounds(&target, offset, limit, output.json),
        Command::Model(ModelCommand::Pull { target, out }) => model::pull(&target, &out, progress),
        Command::Simulate(args) => simulate::run(&args, progress),
        Command::Bench(cmd) => bench::run(cmd, progress),
    }
}

/// A connection to the canister, by whichever transport the target names.
pub struct Session {
    pub api: AggregatorApi<Box<dyn Transport>>,
    pub identity: Identity,
    /// Where to save an embedded IC's state after updates.
    embedded: Option<(SharedIc, PathBuf)>,
}

impl Session {
    /// The state directory when connected to an embedded IC.
    pub fn embedded_state(&self) -> Option<&std::path::Path> {
        self.embedded.as_ref().map(|(_, dir)| dir.as_path())
    }

    /// Saves the embedded IC's state (no-op against a replica).
    pub fn save(&self) -> anyhow::Result<()> {
        if let Some((ic, dir)) = &self.embedded {
            embedded::lock(ic)
                .save(dir)
                .with_context(|| format!("saving the embedded IC state to {}", dir.display()))?;
        }
        Ok(())
    }
}

/// Connects with the caller's identity. `--network embedded` loads the state directory
/// written by `flic simulate --state DIR`.
pub fn connect(target: &TargetArgs) -> anyhow::Result<Session> {
    let identity = Identity::load(&target.identity.path())?;
    connect_as(target, identity)
}

pub fn connect_as(target: &TargetArgs, identity: Identity) -> anyhow::Result<Session> {
    if target.network == "embedded" {
        let dir = target
            .state
            .clone()
            .context("--network embedded needs --state DIR (from `flic simulate --state DIR`)")?;
        let ic = flic_embedded_ic::EmbeddedIc::load(&dir)
            .with_context(|| format!("loading the embedded IC state from {}", dir.display()))?;
        let canister = match &target.canister {
            Some(text) => Principal::from_text(text)
                .with_context(|| format!("--canister {text} is not a principal"))?,
            None => *ic
                .canister_ids()
                .first()
                .context("the saved state has no canister")?,
        };
        let ic = embedded::share(ic);
        let transport = EmbeddedTransport::new(ic.clone(), canister, identity.principal());
        return Ok(Session {
            api: AggregatorApi::new(Box::new(transport)),
            identity,
            embedded: Some((ic, dir)),
        });
    }
    let network = Network::parse(&target.network).map_err(anyhow::Error::msg)?;
    let text = target
        .canister
        .as_deref()
        .context("--canister ID is needed (or set FLIC_CANISTER)")?;
    let canister = Principal::from_text(text)
        .with_context(|| format!("--canister {text} is not a principal"))?;
    let transport = AgentTransport::connect(&network, canister, &identity)?;
    Ok(Session {
        api: AggregatorApi::new(Box::new(transport)),
        identity,
        embedded: None,
    })
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}
