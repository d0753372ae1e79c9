//! Everything the binary shows a person: tables, progress bars, quiet mode.
//! Library code reports progress through [`Progress`]; only this module draws.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What long-running library code tells the user about; implementations decide how.
pub trait Progress {
    /// A new phase of `total` units (samples, bytes, chunks) starts.
    fn start(&mut self, label: &str, total: u64);
    /// `done` units of the current phase are finished.
    fn set(&mut self, done: u64);
    /// The phase is over; `summary` may be shown.
    fn finish(&mut self, summary: &str);
    /// A line of information outside any bar.
    fn note(&mut self, line: &str);
}

/// Progress that shows nothing (quiet mode, tests, `--json` on a pipe).
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: &str, _: u64) {}
    fn set(&mut self, _: u64) {}
    fn finish(&mut self, _: &str) {}
    fn note(&mut self, _: &str) {}
}

/// Progress bars on stderr with `indicatif` (hidden automatically when not a terminal).
pub struct Bars {
    bar: Option<ProgressBar>,
}

impl Bars {
    pub fn new() -> Self {
        Self { bar: None }
    }
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Bars {
    fn start(&mut self, label: &str, total: u64) {
        if let Some(old) = self.bar.take() {
            old.finish_and_clear();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>14.bold} [{bar:30}] {pos}/{len} {msg} ({elapsed})",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        self.bar = Some(bar);
    }

    fn set(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    fn finish(&mut self, summary: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if !summary.is_empty() {
            eprintln!("{summary}");
        }
    }

    fn note(&mut self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

/// A table for people: rounded borders, wrapped to the terminal width.
pub fn table(headers: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.to_vec());
    for row in rows {
        t.add_row(row);
    }
    t.to_string()
}

/// First 12 hex characters of a hash, as shown in tables.
pub fn short_hex(bytes: &[u8]) -> String {
    let full = hex::encode(bytes);
    full.chars().take(12).collect()
}

/// Bytes as KiB/MiB for tables.
pub fn human_bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f >= KIB * KIB {
        format!("{:.2} MiB", f / KIB / KIB)
    } else if f >= KIB {
        format!("{:.1} KiB", f / KIB)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.00 MiB");
        assert_eq!(short_hex(&[0xab; 32]), "abababababab");
        let t = table(&["a", "b"], vec![vec!["1".into(), "2".into()]]);
        assert!(t.contains('a') && t.contains('2'));
    }
}
