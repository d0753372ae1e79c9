//! `flic`: the command-line client. Exit codes: 0 success, 1 error, 2 usage error.

use std::process::ExitCode;

use clap::Parser;
use flic_client::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match flic_client::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed pipe (`flic rounds | head`) is not an error worth reporting.
            if err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
