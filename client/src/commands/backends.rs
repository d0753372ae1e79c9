//! `flic backends`: the compiled backends, every adapter found, and what `auto` picks.

use crate::compute;
use crate::output::{table, Printer};

pub fn run(printer: &Printer, json: bool) -> anyhow::Result<()> {
    let r = compute::report()?;
    printer.result(json, &r, || {
        let mut out = String::new();
        let compiled: Vec<&str> = r.compiled.iter().map(|b| b.as_str()).collect();
        out.push_str(&format!("compiled backends: {}\n", compiled.join(", ")));
        if r.adapters.is_empty() {
            out.push_str("adapters: none found\n");
        } else {
            let rows = r.adapters.iter().map(|a| {
                vec![
                    a.backend.as_str().to_string(),
                    a.api.clone(),
                    a.name.clone(),
                    a.kind.as_str().to_string(),
                    a.driver.clone(),
                    a.memory_bytes
                        .map(|m| format!("{:.1} GiB", m as f64 / (1u64 << 30) as f64))
                        .unwrap_or_else(|| "-".into()),
                ]
            });
            let t = table(
                &["backend", "api", "name", "type", "driver", "memory"],
                rows,
            );
            out.push_str(&format!("{t}\n"));
        }
        for p in &r.problems {
            out.push_str(&format!("note: {p}\n"));
        }
        out.push_str(&format!(
            "--backend auto picks: {} for dense models ({}), {} for convolutional models ({})",
            r.auto_dense.backend,
            r.auto_dense.reason,
            r.auto_convolutional.backend,
            r.auto_convolutional.reason
        ));
        out
    })?;
    Ok(())
}
