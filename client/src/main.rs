//! `flic`: the command-line client. Exit status: 0 success, 1 a proof that does not
//! verify, 2 an error (see [`ExitStatus`]).

use std::process::ExitCode;

use clap::Parser;
use flic_client::cli::Cli;
use flic_client::commands::ExitStatus;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match flic_client::commands::run(cli) {
        Ok(()) => ExitStatus::Success.into(),
        Err(err) => {
            // A closed pipe (`flic rounds | head`) is not an error worth reporting.
            if err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitStatus::Success.into();
            }
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitStatus::of(&err).into()
        }
    }
}
