//! One module per subcommand; this file dispatches and connects to the canister.

mod backends;
mod bench;
mod dashboard;
mod dataset;
mod deploy;
mod devnet;
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

use crate::api::AggregatorApi;
use crate::cli::{
    Cli, Command, DatasetCommand, JobCommand, ModelCommand, TargetArgs, VerifyCommand,
};
use crate::identity::Identity;
use crate::output::{Printer, Progress};
use crate::transport::agent::{AgentTransport, Network};
use crate::transport::embedded::{self, EmbeddedTransport, SharedIc};
use crate::transport::Transport;

/// How `flic` ends: its exit status (documented in `flic --help` and docs/cli.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: the command did what it was asked; a proof verified.
    Success,
    /// 1: a proof, receipt or lineage does not verify (the reason is printed).
    NotVerified,
    /// 2: an error: bad input or usage, a file that cannot be read, an unreachable network.
    Error,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(s: ExitStatus) -> Self {
        std::process::ExitCode::from(match s {
            ExitStatus::Success => 0,
            ExitStatus::NotVerified => 1,
            ExitStatus::Error => 2,
        })
    }
}

/// A proof, receipt or lineage that does not verify: exit status 1, not 2.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct NotVerified(pub anyhow::Error);

impl ExitStatus {
    /// The status an error ends the program with.
    pub fn of(err: &anyhow::Error) -> Self {
        if err
            .chain()
            .any(|c| c.downcast_ref::<NotVerified>().is_some())
        {
            ExitStatus::NotVerified
        } else {
            ExitStatus::Error
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let printer = Printer::new(cli.quiet, cli.no_progress);
    let mut progress = printer.progress();
    let progress: &mut dyn Progress = progress.as_mut();
    let p = &printer;
    match cli.command {
        Command::Keygen { identity } => identity::keygen(p, &identity.path()),
        Command::Whoami { identity, output } => identity::whoami(p, &identity.path(), output.json),
        Command::Dataset(DatasetCommand::Register {
            target,
            data,
            name,
            license,
            description,
            salted,
            output,
        }) => dataset::register(
            p,
            &target,
            &data,
            dataset::Registration {
                name,
                license,
                description,
                salted,
            },
            output.json,
        ),
        Command::Dataset(DatasetCommand::List { target, output }) => {
            dataset::list(p, &target, output.json)
        }
        Command::Dataset(DatasetCommand::Prove { data, sample, out }) => {
            dataset::prove(p, &data, sample, &out)
        }
        Command::Verify(VerifyCommand::Receipt {
            file,
            target,
            offline,
        }) => verify::receipt(p, &file, &target, offline),
        Command::Verify(VerifyCommand::Lineage {
            target,
            version,
            output,
        }) => verify::lineage(p, &target, &version, output.json),
        Command::Verify(VerifyCommand::Privacy { target, output }) => {
            verify::privacy(p, &target, output.json)
        }
        Command::Verify(VerifyCommand::Sample {
            file,
            dataset_id,
            target,
        }) => verify::sample(p, &file, dataset_id, &target),
        Command::Train(args) => train::run(p, &args, progress),
        Command::Status { target, output } => inspect::status(p, &target, output.json),
        Command::Rounds {
            target,
            offset,
            limit,
            output,
        } => inspect::rounds(p, &target, offset, limit, output.json),
        Command::Model(ModelCommand::Pull { target, out }) => {
            model::pull(p, &target, &out, progress)
        }
        Command::Job(JobCommand::Start(args)) => job::start(p, &args),
        Command::Job(JobCommand::Pause { target }) => job::pause(p, &target),
        Command::Job(JobCommand::Resume { target }) => job::resume(p, &target),
        Command::Job(JobCommand::Allow {
            target,
            add,
            remove,
        }) => job::allow(p, &target, &add, &remove),
        Command::Job(JobCommand::Evict {
            target,
            submission_id,
        }) => job::evict(p, &target, submission_id),
        Command::Simulate(args) => simulate::run(p, &args, progress),
        Command::Devnet(args) => devnet::run(p, &args),
        Command::Deploy(args) => deploy::run(p, &args),
        Command::Dashboard {
            state,
            listen,
            canister,
        } => dashboard::run(p, &state, &listen, canister.as_deref()),
        Command::Bench(cmd) => bench::run(p, cmd, progress),
        Command::Backends { output } => backends::run(p, output.json),
    }
}

/// A connection to the canister, by whichever transport the target names.
pub struct Session {
    pub api: AggregatorApi<Box<dyn Transport>>,
    /// The caller's key; `None` for a read-only session as the anonymous principal.
    pub identity: Option<Identity>,
    /// Where to save an embedded IC's state after updates.
    embedded: Option<(SharedIc, PathBuf)>,
}

impl Session {
    /// The caller's key (present in sessions from [`connect`]).
    pub fn identity(&self) -> anyhow::Result<&Identity> {
        self.identity
            .as_ref()
            .context("this command signs, but the session has no identity")
    }

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

/// Connects with the caller's identity (commands that sign or administer).
/// `--network embedded` loads the state directory written by `flic simulate --state DIR`.
pub fn connect(target: &TargetArgs) -> anyhow::Result<Session> {
    let identity = Identity::load(&target.identity.path())?;
    connect_as(target, Some(identity))
}

/// Connects for queries: with the caller's identity if its file exists, else as the
/// anonymous principal (a query needs no key).
pub fn connect_reader(target: &TargetArgs) -> anyhow::Result<Session> {
    let path = target.identity.path();
    let identity = if path.exists() {
        Some(Identity::load(&path)?)
    } else {
        None
    };
    connect_as(target, identity)
}

pub fn connect_as(target: &TargetArgs, identity: Option<Identity>) -> anyhow::Result<Session> {
    let caller = identity
        .as_ref()
        .map_or(Principal::anonymous(), Identity::principal);
    if target.network == "embedded" {
        let dir = target
            .state
            .clone()
            .context("--network embedded needs --state DIR (from `flic simulate --state DIR`)")?;
        let (ic, canister) = load_embedded(&dir, target.canister.as_deref())?;
        let ic = embedded::share(ic);
        let transport = EmbeddedTransport::new(ic.clone(), canister, caller);
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
    let transport = AgentTransport::connect(&network, canister, identity.as_ref())?;
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
pub(crate) fn module_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("flic").join("modules")
}
