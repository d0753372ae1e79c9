//! One module per subcommand; this file dispatches and connects to the canister.

mod bench;
mod dashboard;
mod dataset;
mod identity;
mod inspect;
mod job;
mod model;
mod simulate;
mod train;
mod verify;

use std::path::PathBuf;

use anyhow::Context;
use candid::Principal;
use serde::Serialize;

use crate::api::AggregatorApi;
use crate::cli::{
    Cli, Command, DatasetCommand, JobCommand, ModelCommand, TargetArgs, VerifyCommand,
};
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
        Command::Dataset(DatasetCommand::Prove { data, sample, out }) => {
            dataset::prove(&data, sample, &out)
        }
        Command::Verify(VerifyCommand::Receipt {
            file,
            target,
            offline,
        }) => verify::receipt(&file, &target, offline),
        Command::Verify(VerifyCommand::Lineage {
            target,
            version,
            output,
        }) => verify::lineage(&target, &version, output.json),
        Command::Verify(VerifyCommand::Sample {
            file,
            dataset_id,
            target,
        }) => verify::sample(&file, dataset_id, &target),
        Command::Train(args) => train::run(&args, progress),
        Command::Status { target, output } => inspect::status(&target, output.json),
        Command::Rounds {
            target,
            offset,
            limit,
            output,
        } => inspect::rounds(&target, offset, limit, output.json),
        Command::Model(ModelCommand::Pull { target, out }) => model::pull(&target, &out, progress),
        Command::Job(JobCommand::Start(args)) => job::start(&args),
        Command::Job(JobCommand::Pause { target }) => job::pause(&target),
        Command::Job(JobCommand::Resume { target }) => job::resume(&target),
        Command::Simulate(args) => simulate::run(&args, progress),
        Command::Dashboard {
            state,
            listen,
            canister,
        } => dashboard::run(&state, &listen, canister.as_deref(), cli.quiet),
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
        let (ic, canister) = load_embedded(&dir, target.canister.as_deref())?;
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

/// Loads an embedded IC saved by `flic simulate --state DIR`, and picks `canister` (or
/// the first canister in the state).
pub fn load_embedded(
    dir: &std::path::Path,
    canister: Option<&str>,
) -> anyhow::Result<(flic_embedded_ic::EmbeddedIc, Principal)> {
    let config = flic_embedded_ic::Config {
        module_cache_dir: Some(module_cache_dir()),
        ..Default::default()
    };
    let ic = flic_embedded_ic::EmbeddedIc::load_with_config(dir, config)
        .with_context(|| format!("loading the embedded IC state from {}", dir.display()))?;
    let canister = match canister {
        Some(text) => Principal::from_text(text)
            .with_context(|| format!("--canister {text} is not a principal"))?,
        None => *ic
            .canister_ids()
            .first()
            .context("the saved state has no canister")?,
    };
    Ok((ic, canister))
}

/// Compiled canister modules are cached here across `flic` invocations (compiling the
/// aggregator takes about a second and a half).
fn module_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("flic").join("modules")
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}
