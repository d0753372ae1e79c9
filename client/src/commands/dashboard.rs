//! `flic dashboard --state DIR --listen 127.0.0.1:PORT`: loads a saved embedded IC and
//! serves its canister's `http_request` on loopback until Ctrl-C.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

use crate::dashboard::{serve, Dashboard};
use crate::output::Printer;
use crate::transport::embedded;

/// Set by SIGINT or SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
fn on_signal_stop() {
    extern "C" fn handler(_: libc::c_int) {
        // Only an atomic store: async-signal-safe.
        STOP.store(true, Ordering::SeqCst);
    }
    // SAFETY: installs a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as *const () as libc::sighandler_t);
    }
}

#[cfg(not(unix))]
fn on_signal_stop() {}

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
    let listener = TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    let bound = listener.local_addr()?;
    let dashboard = Dashboard::new(embedded::share(ic), canister);
    on_signal_stop();
    printer.out(format!(
        "dashboard of canister {canister} at http://{bound}/  (Ctrl-C stops)"
    ))?;
    serve(listener, &dashboard, &STOP, !printer.is_quiet()).context("serving the dashboard")?;
    printer.info("dashboard stopped");
    Ok(())
}
