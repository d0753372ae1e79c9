//! Everything the binary shows a person: one [`Printer`] for results and messages, progress
//! bars, tables. Library code reports progress through [`Progress`]; only this module draws.
//!
//! Streams: a command's result goes to stdout (a table or text, or JSON with `--json`);
//! progress and informational lines go to stderr. `--quiet` silences both except JSON the
//! user asked for and errors; `--no-progress` keeps the lines and drops the bars.

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
    /// The loss of a training batch, after `samples` samples of the phase (drawn as a
    /// curve by the desktop app; terminals show the mean at the end).
    fn loss(&mut self, samples: u64, loss: f32) {
        let _ = (samples, loss);
    }
}

/// Where every message of a command goes, by the global `--quiet` and `--no-progress`
/// flags and the command's own `--json`.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    quiet: bool,
    bars: bool,
}

impl Printer {
    pub fn new(quiet: bool, no_progress: bool) -> Self {
        Self {
            quiet,
            bars: !quiet && !no_progress,
        }
    }

    /// A printer that shows nothing but JSON (tests, embedding).
    pub fn quiet() -> Self {
        Self::new(true, true)
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// A line of the command's result on stdout (not with `--quiet`).
    pub fn out(&self, text: impl std::fmt::Display) -> std::io::Result<()> {
        use std::io::Write;
        if self.quiet {
            return Ok(());
        }
        writeln!(std::io::stdout().lock(), "{text}")
    }

    /// An informational line on stderr (not with `--quiet`).
    pub fn info(&self, text: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// `value` as pretty JSON on stdout: asked for explicitly, so printed even with
    /// `--quiet`.
    pub fn json<T: serde::Serialize>(&self, value: &T) -> std::io::Result<()> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, value).map_err(std::io::Error::other)?;
        writeln!(out)
    }

    /// The command's result: JSON when `json`, else the text `human` makes.
    pub fn result<T: serde::Serialize>(
        &self,
        json: bool,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> std::io::Result<()> {
        if json {
            self.json(value)
        } else {
            self.out(human())
        }
    }

    /// How long-running work shows its progress: bars, or lines alone with
    /// `--no-progress`, or nothing with `--quiet`.
    pub fn progress(&self) -> Box<dyn Progress> {
        if self.quiet {
            Box::new(Silent)
        } else if self.bars {
            Box::new(Bars::new())
        } else {
            Box::new(Lines)
        }
    }
}

/// Progress as lines on stderr, without bars (`--no-progress`).
pub struct Lines;

impl Progress for Lines {
    fn start(&mut self, _: &str, _: u64) {}
    fn set(&mut self, _: u64) {}
    fn finish(&mut self, summary: &str) {
        if !summary.is_empty() {
            eprintln!("{summary}");
        }
    }
    fn note(&mut self, line: &str) {
        eprintln!("{line}");
    }
}

/// Progress that shows nothing (quiet mode, tests).
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

/// Two columns of names and values, without a header row.
pub fn key_value_table(rows: impl IntoIterator<Item = (String, String)>) -> String {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    for (k, v) in rows {
        t.add_row(vec![k, v]);
    }
    t.to_string()
}

/// An IC time as `YYYY-MM-DD HH:MM:SS UTC` (the canister's dashboard writes the same).
pub use flic_protocol::time::utc;

/// How far `to_ns` is from `now_ns`, for people: `in 42 min`, `3 s ago`.
pub fn relative(to_ns: u64, now_ns: u64) -> String {
    let (d, future) = if to_ns >= now_ns {
        (to_ns - now_ns, true)
    } else {
        (now_ns - to_ns, false)
    };
    let s = d / 1_000_000_000;
    let text = match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// `a, b, c`: items as they display, comma-separated.
pub fn comma_list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
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
        let kv = key_value_table([("round".to_string(), "3".to_string())]);
        assert_eq!(
            kv.lines().count(),
            3,
            "one row between two borders, no header:\n{kv}"
        );
        assert_eq!(relative(61_000_000_000, 1_000_000_000), "in 60 s");
        assert_eq!(relative(0, 3_600_000_000_000), "60 min ago");
    }
}
