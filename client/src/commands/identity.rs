//! `flic keygen` and `flic whoami`.

use crate::output::Printer;
use std::path::Path;

use crate::identity::Identity;

pub fn keygen(printer: &Printer, path: &Path) -> anyhow::Result<()> {
    let identity = Identity::generate();
    identity.write_new(path)?;
    printer.info(format!(
        "wrote a new Ed25519 identity to {} (mode 0600)",
        path.display()
    ));
    printer.out(format!("{}", identity.principal()))?;
    Ok(())
}

pub fn whoami(printer: &Printer, path: &Path, json: bool) -> anyhow::Result<()> {
    let identity = Identity::load(path)?;
    if json {
        Ok(printer.json(&serde_json::json!({
            "principal": identity.principal().to_text(),
            "public_key": hex::encode(identity.verifying_key().to_bytes()),
            "identity_file": path.display().to_string(),
        }))?)
    } else {
        printer.out(format!("{}", identity.principal()))?;
        Ok(())
    }
}
