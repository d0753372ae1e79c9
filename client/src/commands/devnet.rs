//! `flic devnet --listen ADDR [--state DIR]`: a local IC network on this machine until
//! Ctrl-C (or SIGTERM), then the state is saved.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use flic_devnet::server::{self, wall_clock_ns};
use flic_devnet::{Devnet, DevnetConfig};
use serde::Serialize;

use crate::cli::DevnetArgs;
use crate::output::Printer;

/// What `--json` prints once the devnet listens (one JSON value, for scripts).
#[derive(Serialize)]
struct Started {
    url: String,
    root_key: String,
    subnet: String,
    canisters: Vec<String>,
    state: Option<String>,
}

pub fn run(printer: &Printer, args: &DevnetArgs) -> anyhow::Result<()> {
    let addr: SocketAddr = args.listen.parse().with_context(|| {
        format!(
            "--listen {} is not an address like 127.0.0.1:4943",
            args.listen
        )
    })?;
    if !addr.ip().is_loopback() {
        printer.info(format!(
            "warning: {addr} is not a loopback address; the devnet will be reachable from other machines"
        ));
    }
    if let Some(dir) = &args.state {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the state directory {}", dir.display()))?;
    }
    let config = DevnetConfig {
        state_dir: args.state.clone(),
        module_cache_dir: Some(super::module_cache_dir()),
        ..DevnetConfig::default()
    };
    let devnet = Devnet::start(config, wall_clock_ns()).context("starting the devnet")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = server::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let bound = listener.local_addr()?;
        let started = Started {
            url: format!("http://{bound}"),
            root_key: hex::encode(devnet.root_key()),
            subnet: devnet.subnet_id().to_text(),
            canisters: devnet
                .ic()
                .canister_ids()
                .iter()
                .map(|c| c.to_text())
                .collect(),
            state: args.state.as_ref().map(|d| d.display().to_string()),
        };
        if args.output.json {
            printer.json(&started)?;
        } else {
            printer.out(format!(
                "devnet listening on {}  (Ctrl-C stops)",
                started.url
            ))?;
            printer.out(format!("  subnet    {}", started.subnet))?;
            printer.out(format!("  root key  {}", started.root_key))?;
            for c in &started.canisters {
                printer.out(format!(
                    "  canister  {c}  dashboard http://{c}.localhost:{}/",
                    bound.port()
                ))?;
            }
            match &started.state {
                Some(d) => printer.out(format!(
                    "  state     {d} (saved after every committed message)"
                ))?,
                None => printer.out("  state     in memory only (use --state DIR to keep it)")?,
            }
        }
        let quiet = args.no_request_log || printer.is_quiet();
        let log: server::Logger = Arc::new(move |summary: &str, status: u16| {
            if !quiet {
                eprintln!("{status} {summary}");
            }
        });
        let devnet = Arc::new(Mutex::new(devnet));
        server::serve(devnet, listener, log, shutdown_signal())
            .await
            .context("serving the devnet")?;
        printer.info(match &args.state {
            Some(d) => format!("devnet stopped; state saved in {}", d.display()),
            None => "devnet stopped".to_string(),
        });
        anyhow::Ok(())
    })
}

/// Ctrl-C or SIGTERM.
pub(super) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
