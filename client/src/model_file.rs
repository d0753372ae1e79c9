//! The current model, downloaded, verified and written as safetensors: what `flic model
//! pull` and the desktop app's export both do.

use std::path::{Path, PathBuf};

use anyhow::Context;
use flic_protocol::Hash;

use crate::api::AggregatorApi;
use crate::output::Progress;
use crate::transport::Transport;

/// A model written to a file; displays as the line both front ends show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub path: PathBuf,
    pub architecture: String,
    pub parameters: usize,
    pub version: Hash,
}

impl std::fmt::Display for Exported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wrote {} ({}, {} parameters, version {}, verified)",
            self.path.display(),
            self.architecture,
            self.parameters,
            hex::encode(self.version.as_slice())
        )
    }
}

/// Downloads the current model (every chunk checked against the announced version, see
/// [`AggregatorApi::download_model`]) and writes it to `out` as safetensors; `progress`
/// sees a `download` phase of chunks.
pub fn export_current_model<T: Transport>(
    api: &mut AggregatorApi<T>,
    out: &Path,
    progress: &mut dyn Progress,
) -> anyhow::Result<Exported> {
    let mut started = false;
    let model = api.download_model(&mut |done, total| {
        if !started {
            progress.start("download", total as u64);
            started = true;
        }
        progress.set(done as u64);
    })?;
    progress.finish("");
    let bytes = flic_model_zoo::export_safetensors(&model.spec, &model.weights)?;
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    Ok(Exported {
        path: out.to_path_buf(),
        architecture: model.spec.architecture.clone(),
        parameters: model.weights.len(),
        version: model.info.version,
    })
}
