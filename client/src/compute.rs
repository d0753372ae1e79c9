//! Starting the training backend a command asked for: discovery, the plan, the device, and
//! one line on stderr that says what was picked and, on a fallback, why.

use flic_model_zoo::backend::{self, BackendRequest, Started};
use flic_model_zoo::hardware::{self, Discovery};
use flic_model_zoo::Backend;

/// Discovery is only worth its cost (loading drivers) when the request may use a GPU.
fn discover_for(request: BackendRequest) -> Discovery {
    match request {
        BackendRequest::Named(b) if b.is_cpu() => Discovery::default(),
        _ => hardware::discover(),
    }
}

/// Plans and starts `request` for a model (`convolutional` picks the CPU backend), and
/// says what runs through `note` (a progress line or stderr).
pub fn start(
    request: BackendRequest,
    convolutional: bool,
    note: &mut dyn FnMut(&str),
) -> anyhow::Result<Started> {
    let found = discover_for(request);
    let plan = backend::plan(request, convolutional, &found)?;
    let started = backend::start(plan, convolutional)?;
    let p = &started.plan;
    if let Some(why) = &p.fallback {
        note(&format!(
            "warning: backend {request} is not usable: {why}; training on {} instead",
            p.backend
        ));
    }
    if request == BackendRequest::Auto || p.fallback.is_some() || !p.backend.is_cpu() {
        note(&format!("backend {} ({})", p.backend, p.reason));
    }
    Ok(started)
}

/// What `flic backends` reports.
#[derive(Debug, serde::Serialize)]
pub struct BackendsReport {
    /// The backends this `flic` was built with.
    pub compiled: Vec<Backend>,
    pub adapters: Vec<hardware::Adapter>,
    /// Why an API found nothing, where known.
    pub problems: Vec<String>,
    /// What `--backend auto` picks for a dense and for a convolutional model.
    pub auto_dense: backend::Plan,
    pub auto_convolutional: backend::Plan,
}

pub fn report() -> anyhow::Result<BackendsReport> {
    let found = hardware::discover();
    Ok(BackendsReport {
        compiled: Backend::compiled(),
        auto_dense: backend::plan(BackendRequest::Auto, false, &found)?,
        auto_convolutional: backend::plan(BackendRequest::Auto, true, &found)?,
        adapters: found.adapters,
        problems: found.problems,
    })
}
