//! `flic keygen` and `flic whoami`.

use std::path::Path;

use crate::identity::Identity;

pub fn keygen(path: &Path) -> anyhow::Result<()> {
    let identity = Identity::generate();
    identity.write_new(path)?;
    eprintln!(
        "wrote a new Ed25519 identity to {} (mode 0600)",
        path.display()
    );
    println!("{}", identity.principal());
    Ok(())
}

pub fn whoami(path: &Path, json: bool) -> anyhow::Result<()> {
    let identity = Identity::load(path)?;
    if json {
        super::print_json(&serde_json::json!({
            "principal": identity.principal().to_text(),
            "public_key": hex::encode(identity.verifying_key().to_bytes()),
            "identity_file": path.display().to_string(),
        }))
    } else {
        println!("{}", identity.principal());
        Ok(())
    }
}
