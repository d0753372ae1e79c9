//! `flic bench`: figures about what a round costs and how well it learns, measured on this
//! machine and written into `docs/benchmarks.md`.
//!
//! Each benchmark is a function returning a serialisable report; [`doc`] renders a report
//! as a Markdown section (the figures, the machine, the command that reproduces them) and
//! replaces that section, between its markers, in the document. Instruction counts come
//! from `flic-embedded-ic` and are deterministic; wall-clock figures are only compared with
//! others taken in the same session.

pub mod aggregate;
pub mod compression;
pub mod doc;
pub mod fees;
pub mod learning;
pub mod plot;
pub mod privacy;
pub mod robust;
pub mod scale;
pub mod secagg;
pub mod simulation;
pub mod training;

use serde::Serialize;

/// The machine a figure was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub logical_cpus: usize,
    pub memory_gib: f64,
    pub os: String,
    pub flic_commit: String,
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map(|kb| kb / (1024.0 * 1024.0))
            .unwrap_or(0.0);
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("PRETTY_NAME="))
                    .map(|l| l["PRETTY_NAME=".len()..].trim_matches('"').to_string())
            })
            .unwrap_or_else(|| std::env::consts::OS.to_string());
        let flic_commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu,
            logical_cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_gib,
            os,
            flic_commit,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{}, {} logical CPUs, {:.0} GiB RAM, {}, flic {}",
            self.cpu, self.logical_cpus, self.memory_gib, self.os, self.flic_commit
        )
    }
}

/// The command line that produced a report, as typed (for "reproduce with").
pub fn invocation() -> String {
    let mut args = std::env::args();
    let _bin = args.next();
    let target = std::env::var("CARGO_TARGET_DIR")
        .ok()
        .filter(|t| !t.is_empty());
    let rest: Vec<String> = args
        .map(|a| match &target {
            // Paths under the build folder read the same on every machine.
            Some(t) if a.starts_with(t.as_str()) => format!("$CARGO_TARGET_DIR{}", &a[t.len()..]),
            _ => a,
        })
        .map(|a| {
            if a.chars().any(|c| c.is_whitespace() || c == '"') {
                format!("'{a}'")
            } else {
                a
            }
        })
        .collect();
    format!("cargo run --release -p flic-client -- {}", rest.join(" "))
}
