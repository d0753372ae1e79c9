//! Running `flic` in-process from the integration tests that drive the CLI.

use std::path::Path;

use clap::Parser;
use flic_client::cli::Cli;

/// `flic --quiet ARGS`, as the binary would run them.
pub fn flic(args: &[&str]) -> anyhow::Result<()> {
    let mut argv = vec!["flic", "--quiet"];
    argv.extend_from_slice(args);
    flic_client::commands::run(Cli::try_parse_from(argv)?)
}

/// A temporary path as an argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// `flic simulate` for one round of `clients` clients on 200 samples each, saving to
/// `state`, with `extra` flags: for tests of what a flag refuses before anything runs.
#[allow(dead_code)] // not every test file that includes this module uses it
pub fn simulate_one_round(clients: &str, state: &Path, extra: &[&str]) -> anyhow::Result<()> {
    let mut argv = vec![
        "simulate",
        "--rounds",
        "1",
        "--clients",
        clients,
        "--samples",
        "200",
    ];
    argv.extend_from_slice(&["--state", s(state)]);
    argv.extend_from_slice(extra);
    flic(&argv)
}
