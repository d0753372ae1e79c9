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
