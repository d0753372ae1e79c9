//! Minimal SVG line charts, written by hand (no plotting crate, no external service).

use std::fmt::Write;

pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Dashed lines let overlapping series stay visible.
    pub dashed: bool,
}

/// A per-round series as points: `(0, initial)`, then `(r, value of round r)` from 1.
pub fn from_round_zero(initial: f64, per_round: &[f64]) -> Vec<(f64, f64)> {
    std::iter::once((0.0, initial))
        .chain(
            per_round
                .iter()
                .enumerate()
                .map(|(i, &a)| ((i + 1) as f64, a)),
        )
        .collect()
}

pub struct Panel {
    pub title: String,
    pub series: Vec<Series>,
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Panels side by side sharing the y range `[y_min, y_max]`; one legend below.
pub fn line_panels(
    panels: &[Panel],
    x_label: &str,
    y_label: &str,
    y_min: f64,
    y_max: f64,
) -> String {
    let (pw, ph, ml, mt, mb, gap) = (300.0, 220.0, 50.0, 30.0, 40.0, 20.0);
    let width = ml + panels.len() as f64 * (pw + gap) + 10.0;
    // The legend wraps into as many rows as the width needs: (x, row) of each entry.
    let mut places = Vec::new();
    let (mut x, mut row) = (ml, 0usize);
    for series in panels.first().map_or(&[][..], |p| &p.series[..]) {
        let w = 30.0 + 7.0 * series.label.len() as f64;
        if x > ml && x + w > width {
            (x, row) = (ml, row + 1);
        }
        places.push((x, row));
        x += w;
    }
    let legend_h = 24.0 + 16.0 * places.last().map_or(0, |p| p.1) as f64;
    let height = mt + ph + mb + legend_h;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
"#
    );
    let span = (y_max - y_min).max(1e-12);
    for (p, panel) in panels.iter().enumerate() {
        let x0 = ml + p as f64 * (pw + gap);
        let x_max = panel
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|q| q.0))
            .fold(1.0f64, f64::max);
        let sx = |x: f64| x0 + x / x_max * pw;
        let sy = |y: f64| mt + ph - (y - y_min) / span * ph;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">{}</text>"#,
            x0 + pw / 2.0,
            mt - 10.0,
            esc(&panel.title)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##
        );
        for i in 0..=5 {
            let y = y_min + span * i as f64 / 5.0;
            let (x1, yy, tx, ty) = (x0 + pw, sy(y), x0 - 4.0, sy(y) + 4.0);
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" x2="{x1}" y1="{yy}" y2="{yy}" stroke="#eee"/><text x="{tx}" y="{ty}" text-anchor="end">{y:.2}</text>"##
            );
        }
        let ticks = x_max.round() as i64;
        for t in 0..=ticks {
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="middle">{t}</text>"#,
                sx(t as f64),
                mt + ph + 14.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            x0 + pw / 2.0,
            mt + ph + 30.0,
            esc(x_label)
        );
        for (k, series) in panel.series.iter().enumerate() {
            let pts: Vec<String> = series
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="{}" {} points="{}"/>"#,
                COLORS[k % COLORS.len()],
                if series.dashed { 1.5 } else { 2.5 },
                if series.dashed {
                    r#"stroke-dasharray="5,3""#
                } else {
                    ""
                },
                pts.join(" ")
            );
        }
    }
    let _ = writeln!(
        s,
        r#"<text transform="translate(12,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
        mt + ph / 2.0,
        esc(y_label)
    );
    if let Some(first) = panels.first() {
        for (k, (series, &(x, row))) in first.series.iter().zip(&places).enumerate() {
            let y = mt + ph + mb + 12.0 + 16.0 * row as f64;
            let _ = writeln!(
                s,
                r#"<line x1="{x}" x2="{}" y1="{y}" y2="{y}" stroke="{}" stroke-width="2.5" {}/><text x="{}" y="{}">{}</text>"#,
                x + 20.0,
                COLORS[k % COLORS.len()],
                if series.dashed {
                    r#"stroke-dasharray="5,3""#
                } else {
                    ""
                },
                x + 25.0,
                y + 4.0,
                esc(&series.label)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_one_polyline_per_series_and_escapes_text() {
        let panel = |t: &str| Panel {
            title: t.into(),
            series: vec![
                Series {
                    label: "a<b".into(),
                    points: vec![(0.0, 0.1), (1.0, 0.5)],
                    dashed: false,
                },
                Series {
                    label: "c".into(),
                    points: vec![(0.0, 0.2), (1.0, 0.6)],
                    dashed: true,
                },
            ],
        };
        let svg = line_panels(&[panel("x"), panel("y")], "round", "accuracy", 0.0, 1.0);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("a&lt;b"));
        assert!(!svg.contains("a<b"));
    }

    #[test]
    fn a_long_legend_wraps_inside_the_picture() {
        let series = (0..6)
            .map(|i| Series {
                label: format!("a fairly long label number {i}"),
                points: vec![(0.0, 0.1), (1.0, 0.5)],
                dashed: false,
            })
            .collect();
        let svg = line_panels(
            &[Panel {
                title: "one".into(),
                series,
            }],
            "round",
            "accuracy",
            0.0,
            1.0,
        );
        let width: f64 = svg
            .split("width=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        for x in svg.split("<text x=\"").skip(1) {
            let x: f64 = x.split('"').next().unwrap().parse().unwrap();
            assert!(x < width, "text at {x} beyond the width {width}");
        }
    }
}
