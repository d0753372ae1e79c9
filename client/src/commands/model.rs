//! `flic model pull`: download, verify, and write the current model as safetensors.

use std::path::Path;

use anyhow::Context;

use crate::cli::TargetArgs;
use crate::output::{Printer, Progress};

pub fn pull(
    printer: &Printer,
    target: &TargetArgs,
    out: &Path,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    let mut session = super::connect_reader(target)?;
    let mut started = false;
    let model = session.api.download_model(&mut |done, total| {
        if !started {
            progress.start("download", total as u64);
            started = true;
        }
        progress.set(done as u64);
    })?;
    progress.finish("");
    let bytes = flic_model_zoo::export_safetensors(&model.spec, &model.weights)?;
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    printer.out(format!(
        "wrote {} ({}, {} parameters, version {}, verified)",
        out.display(),
        model.spec.architecture,
        model.weights.len(),
        hex::encode(model.info.version.as_slice())
    ))?;
    Ok(())
}
