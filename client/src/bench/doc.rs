//! `docs/benchmarks.md` is hand-written prose around generated sections. Each generated
//! section sits between `<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->`; a bench
//! command rewrites only its own section, so the analysis around it survives reruns.

use std::path::Path;

use anyhow::Context;

use super::Machine;

/// A generated section: its body plus where and how it was measured.
pub fn section_body(body: &str, machine: &Machine, command: &str) -> String {
    format!(
        "{body}\n\n*Measured on {}. Reproduce with:*\n\n```sh\n{command}\n```\n",
        machine.describe()
    )
}

/// Replaces section `name` of `text` with `body`; appends it when the markers are absent.
pub fn replace_section(text: &str, name: &str, body: &str) -> String {
    let begin = format!("<!-- bench:{name}:begin -->");
    let end = format!("<!-- bench:{name}:end -->");
    let block = format!("{begin}\n{}\n{end}", body.trim_end());
    match (text.find(&begin), text.find(&end)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{}{}", &text[..b], block, &text[e + end.len()..])
        }
        _ => {
            let mut out = text.trim_end().to_string();
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            out.push_str(&block);
            out.push('\n');
            out
        }
    }
}

/// Rewrites section `name` of the Markdown file at `path` (created if missing).
pub fn write_section(path: &Path, name: &str, body: &str) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    std::fs::write(path, replace_section(&text, name, body))
        .with_context(|| format!("writing {}", path.display()))
}

/// A Markdown table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "| {} |\n|{}\n",
        headers.join(" | "),
        "---|".repeat(headers.len())
    );
    for r in rows {
        out.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    out
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `10000` as `1e4` when it is a power of ten, else with separators.
pub fn short_count(n: u64) -> String {
    let mut p = 0;
    let mut m = n;
    while m >= 10 && m.is_multiple_of(10) {
        m /= 10;
        p += 1;
    }
    if m == 1 && p >= 3 {
        format!("1e{p}")
    } else {
        thousands(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_in_place_and_appended_when_missing() {
        let doc =
            "# Bench\n\nintro\n\n<!-- bench:a:begin -->\nold\n<!-- bench:a:end -->\n\nanalysis\n";
        let new = replace_section(doc, "a", "new body");
        assert_eq!(
            new,
            "# Bench\n\nintro\n\n<!-- bench:a:begin -->\nnew body\n<!-- bench:a:end -->\n\nanalysis\n"
        );
        let added = replace_section(&new, "b", "b body");
        assert!(added.starts_with(&new.trim_end().to_string()));
        assert!(added.ends_with("<!-- bench:b:begin -->\nb body\n<!-- bench:b:end -->\n"));
        // Rewriting again is idempotent.
        assert_eq!(replace_section(&added, "b", "b body"), added);
    }

    #[test]
    fn number_formats() {
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(short_count(10_000), "1e4");
        assert_eq!(short_count(100_000_000), "1e8");
        assert_eq!(short_count(2762), "2,762");
    }
}
