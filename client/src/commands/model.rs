//! `flic model pull`: download, verify, and write the current model as safetensors.

use std::path::Path;

use crate::cli::TargetArgs;
use crate::output::{Printer, Progress};

pub fn pull(
    printer: &Printer,
    target: &TargetArgs,
    out: &Path,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    let mut session = super::connect_reader(target)?;
    let exported = crate::model_file::export_current_model(&mut session.api, out, progress)?;
    printer.out(exported)?;
    Ok(())
}
