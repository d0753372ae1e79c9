//! `flic dashboard --state DIR --listen 127.0.0.1:PORT`: a saved embedded IC behind the
//! devnet's HTTP gateway, with the canister's dashboard at `/`, until Ctrl-C. Nothing is
//! written back to DIR. `flic devnet --state DIR` serves the same and everything else.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use flic_devnet::server::{self, wall_clock_ns};
use flic_devnet::{Devnet, DevnetConfig};

use crate::output::Printer;

pub fn run(
    printer: &Printer,
    state: &Path,
    listen: &str,
    canister: Option<&str>,
) -> anyhow::Result<()> {
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen} is not an address like 127.0.0.1:8080"))?;
    if !addr.ip().is_loopback() {
        printer.info(format!(
            "warning: {addr} is not a loopback address; the dashboard will be reachable from \
             other machines"
        ));
    }
    let (ic, canister) = super::load_embedded(state, canister)?;
    let config = DevnetConfig {
        default_canister: Some(canister),
        ..DevnetConfig::default()
    };
    let devnet = Devnet::from_ic(ic, config, wall_clock_ns());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let quiet = printer.is_quiet();
    runtime.block_on(async {
        let listener = server::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let bound = listener.local_addr()?;
        printer.out(format!(
            "dashboard of canister {canister} at http://{bound}/  (Ctrl-C stops)"
        ))?;
        let log: server::Logger = Arc::new(move |summary: &str, status: u16| {
            if !quiet {
                eprintln!("{status} {summary}");
            }
        });
        server::serve(
            Arc::new(Mutex::new(devnet)),
            listener,
            log,
            super::devnet::shutdown_signal(),
        )
        .await
        .context("serving the dashboard")?;
        printer.info("dashboard stopped");
        anyhow::Ok(())
    })
}
