//! `flic dataset register` and `flic dataset list`.

use anyhow::Context;
use flic_protocol::api::RegisterDatasetArgs;
use flic_protocol::Hash;

use crate::cli::{DataArgs, TargetArgs};
use crate::output::{short_hex, table, Printer};

/// What `flic dataset register` registers besides the data.
pub struct Registration {
    pub name: String,
    pub license: String,
    pub description: String,
    pub salted: bool,
}

pub fn register(
    printer: &Printer,
    target: &TargetArgs,
    data: &DataArgs,
    registration: Registration,
    json: bool,
) -> anyhow::Result<()> {
    let dataset = crate::data::load(&data.data, data.format.into())?;
    let (salt, written) =
        crate::data::registration_salt(&data.data, data.salt_file.as_deref(), registration.salted)?;
    if let Some(path) = written {
        printer.info(format!(
            "wrote the commitment's salt to {} (keep it: `--salt-file` for train and prove)",
            path.display()
        ));
    }
    let commitment = crate::data::registered_commitment_with_progress(
        &dataset,
        salt.as_ref(),
        printer.progress().as_mut(),
    );
    let mut session = super::connect(target)?;
    let args = RegisterDatasetArgs {
        name: registration.name,
        commitment: Hash::new(commitment),
        sample_count: dataset.len() as u64,
        license: registration.license,
        description: registration.description,
    };
    let id = session
        .api
        .register_dataset(&args)
        .context("registering the dataset")?;
    session.save()?;
    if json {
        Ok(printer.json(&serde_json::json!({
            "dataset_id": id,
            "commitment": hex::encode(commitment),
            "salted": salt.is_some(),
            "sample_count": dataset.len(),
            "owner": session.api.caller().to_text(),
        }))?)
    } else {
        printer.out(format!(
            "registered dataset {id}: {} samples, commitment {}, owner {}",
            dataset.len(),
            hex::encode(commitment),
            session.api.caller()
        ))?;
        Ok(())
    }
}

/// `flic dataset prove`: a membership proof for one sample.
pub fn prove(
    printer: &Printer,
    data: &DataArgs,
    sample: u64,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let dataset = crate::data::load(&data.data, data.format.into())?;
    let proof = crate::data::write_sample_proof(&dataset, sample, data.salt()?, out)?;
    printer.out(format!(
        "wrote {}: sample {sample} of {} under commitment {}",
        out.display(),
        dataset.len(),
        hex::encode(proof.commitment())
    ))?;
    Ok(())
}

pub fn list(printer: &Printer, target: &TargetArgs, json: bool) -> anyhow::Result<()> {
    let mut session = super::connect_reader(target)?;
    let all = session.api.all_datasets()?;
    if json {
        let rows: Vec<_> = all
            .iter()
            .map(|d| {
                serde_json::json!({
                    "id": d.id, "owner": d.owner.to_text(), "name": d.name,
                    "commitment": hex::encode(d.commitment.as_slice()), "sample_count": d.sample_count,
                    "license": d.license, "revoked": d.revoked_at_ns.is_some(),
                })
            })
            .collect();
        return Ok(printer.json(&rows)?);
    }
    let rows = all.iter().map(|d| {
        vec![
            d.id.to_string(),
            d.name.clone(),
            d.owner.to_text(),
            d.sample_count.to_string(),
            d.license.clone(),
            short_hex(d.commitment.as_slice()),
            if d.revoked_at_ns.is_some() {
                "revoked".into()
            } else {
                "active".into()
            },
        ]
    });
    printer.out(format!(
        "{}",
        table(
            &[
                "id",
                "name",
                "owner",
                "samples",
                "license",
                "commitment",
                "state"
            ],
            rows
        )
    ))?;
    Ok(())
}
