//! The dashboard page at `/`: current round, charts (inline SVG), round table, datasets
//! and lineage, rendered from the state on every request. Its stylesheet (`page.css`) and
//! script (`page.js`) are separate files built in with `include_str!`; the script's hash
//! goes into the page's Content-Security-Policy.

use std::fmt::Write as _;

use flic_protocol::api::{HttpResponse, PageArgs, RoundRecord};
use flic_protocol::hash::sha256;
use flic_protocol::time::utc;

use super::json::{hx, lineage_shares};
use super::{response, HttpEnv, PAGE_ROUNDS};
use crate::evaluations::RoundQuality;
use crate::state::State;

pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h {} min", s / 3600, s / 60 % 60),
        s => format!("{} days", s / 86_400),
    }
}

fn short(text: &str) -> String {
    if text.len() > 14 {
        format!("{}…", &text[..12])
    } else {
        text.to_string()
    }
}

/// The inline script: a live deadline countdown on the IC's clock. Its hash goes into the
/// page's Content-Security-Policy, so no other script can run.
const SCRIPT: &str = include_str!("page.js").trim_ascii_end();

/// The page's stylesheet, inlined in its `<style>` (the leading newline keeps the served
/// bytes what they were when it was a string here).
const STYLE: &str = concat!("\n", include_str!("page.css"));

const W: f64 = 600.0;
const H: f64 = 220.0;
const LEFT: f64 = 46.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

fn x_labels(svg: &mut String, rounds: &[u64], x_of: &dyn Fn(usize) -> f64) {
    let step = rounds.len().div_ceil(10).max(1);
    for (i, r) in rounds.iter().enumerate() {
        if i % step == 0 || i + 1 == rounds.len() {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{r}</text>"#,
                x_of(i),
                H - 8.0
            );
        }
    }
}

fn y_grid(svg: &mut String, max: f64, ticks: usize, fmt: &dyn Fn(f64) -> String) {
    for t in 0..=ticks {
        let v = max * t as f64 / ticks as f64;
        let y = TOP + (H - TOP - BOTTOM) * (1.0 - v / max);
        let _ = write!(
            svg,
            r#"<line class="grid-line" x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            fmt(v)
        );
    }
}

/// Bars: contributions per round.
fn participation_chart(records: &[RoundRecord]) -> String {
    let max = records
        .iter()
        .map(|r| r.contribution_count)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let n = records.len().max(1);
    let slot = (W - LEFT - RIGHT) / n as f64;
    let plot_h = H - TOP - BOTTOM;
    let mut svg = format!(
        r#"<svg id="participation-chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="pc-title"><title id="pc-title">Contributions per round</title>"#
    );
    let ticks = (max as usize).clamp(1, 4);
    y_grid(&mut svg, max, ticks, &|v| format!("{v:.0}"));
    for (i, r) in records.iter().enumerate() {
        let h = plot_h * r.contribution_count as f64 / max;
        let _ = write!(
            svg,
            r#"<rect class="bar" data-round="{}" data-value="{}" x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}"><title>round {}: {} contributions, weight {}</title></rect>"#,
            r.round,
            r.contribution_count,
            LEFT + slot * i as f64 + slot * 0.15,
            TOP + plot_h - h,
            slot * 0.7,
            r.round,
            r.contribution_count,
            r.total_weight
        );
    }
    let rounds: Vec<u64> = records.iter().map(|r| r.round).collect();
    x_labels(&mut svg, &rounds, &|i| LEFT + slot * (i as f64 + 0.5));
    svg.push_str("</svg>");
    svg
}

/// A line of reported accuracy per round (gaps where no one reported).
fn quality_chart(points: &[(u64, Option<RoundQuality>)]) -> String {
    let n = points.len().max(1);
    let slot = (W - LEFT - RIGHT) / n as f64;
    let plot_h = H - TOP - BOTTOM;
    let x_of = |i: usize| LEFT + slot * (i as f64 + 0.5);
    let y_of = |acc: f64| TOP + plot_h * (1.0 - acc);
    let mut svg = format!(
        r#"<svg id="quality-chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="qc-title"><title id="qc-title">Reported test accuracy of each round's model</title>"#
    );
    y_grid(&mut svg, 1.0, 4, &|v| format!("{:.0}%", v * 100.0));
    let mut path = String::new();
    let mut pen_down = false;
    for (i, (_, q)) in points.iter().enumerate() {
        match q {
            Some(q) => {
                let _ = write!(
                    path,
                    "{}{:.1},{:.1} ",
                    if pen_down { "L" } else { "M" },
                    x_of(i),
                    y_of(q.accuracy)
                );
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    if !path.is_empty() {
        let _ = write!(svg, r#"<path class="line" d="{}"/>"#, path.trim_end());
    }
    for (i, (round, q)) in points.iter().enumerate() {
        if let Some(q) = q {
            let _ = write!(
                svg,
                r#"<circle class="dot" data-round="{round}" data-accuracy="{:.4}" cx="{:.1}" cy="{:.1}" r="3.5"><title>round {round}: accuracy {:.2}%, loss {:.4} ({} samples)</title></circle>"#,
                q.accuracy,
                x_of(i),
                y_of(q.accuracy),
                q.accuracy * 100.0,
                q.loss,
                q.samples
            );
        }
    }
    let rounds: Vec<u64> = points.iter().map(|(r, _)| *r).collect();
    x_labels(&mut svg, &rounds, &x_of);
    svg.push_str("</svg>");
    svg
}

fn stat(out: &mut String, value: &str, label: &str) {
    let _ = write!(
        out,
        r#"<div class="stat"><b>{value}</b><span>{label}</span></div>"#
    );
}

pub(super) fn page(state: &State, env: &HttpEnv) -> HttpResponse {
    let info = state.round_info();
    let closed = state.rounds.len();
    let first = closed.saturating_sub(PAGE_ROUNDS);
    let records: Vec<RoundRecord> = state
        .rounds
        .range(first..)
        .map(|e| e.value().0.into())
        .collect();
    let qualities: Vec<(u64, Option<RoundQuality>)> = records
        .iter()
        .map(|r| (r.round, state.round_quality(r.round)))
        .collect();

    let mut h = String::with_capacity(32 * 1024);
    let script_hash = base64(&sha256(SCRIPT.as_bytes()));
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>flic · round {} · {}</title><style>{STYLE}</style></head><body>"#,
        info.round,
        esc(&env.canister_id.to_text())
    );
    let _ = write!(
        h,
        r#"<header><h1>flic federated training</h1><div class="sub">aggregator canister <code>{}</code> · job {} · <span class="badge {}" id="job-state">{}</span></div></header><main>"#,
        esc(&env.canister_id.to_text()),
        info.job_id,
        info.state,
        info.state
    );

    // Current round.
    h.push_str(r#"<div class="grid"><section class="card wide" id="current-round"><h2>Current round</h2><div class="stats">"#);
    stat(&mut h, &info.round.to_string(), "open round");
    let (min, max) = info
        .config
        .as_ref()
        .map_or((0, 0), |c| (c.min_clients, c.max_clients));
    stat(
        &mut h,
        &format!("{} / {max}", info.committed),
        &format!("committed (quorum {min})"),
    );
    stat(&mut h, &info.pending.to_string(), "uploads in progress");
    stat(&mut h, &closed.to_string(), "rounds closed");
    stat(
        &mut h,
        &state.allocators().next_contribution.to_string(),
        "contributions",
    );
    stat(&mut h, &info.param_count.to_string(), "parameters");
    if let Some(c) = &info.config {
        stat(&mut h, &c.aggregation().to_string(), "aggregation");
        let encodings: Vec<String> = c
            .allowed_encodings
            .iter()
            .map(|e| format!("{e} ({:.3} B/param)", e.bytes_per_param()))
            .collect();
        stat(&mut h, &encodings.join(", "), "encodings");
        stat(
            &mut h,
            &c.server_optimizer().to_string(),
            "server optimizer",
        );
        if c.client.proximal_mu() > 0.0 {
            stat(&mut h, &c.client.proximal_mu().to_string(), "FedProx mu");
        }
        if let Some(dp) = &c.dp {
            let spent = dp.epsilon_after(info.round);
            stat(
                &mut h,
                &format!("ε {spent:.3} of {} (δ {:e})", dp.target_epsilon, dp.delta),
                &format!("privacy budget spent ({} DP)", dp.mode.name()),
            );
            let total = dp.rounds_within_budget();
            stat(
                &mut h,
                &format!("{} of {total}", total.saturating_sub(info.round)),
                "rounds left in the budget",
            );
            if let (Some(a), Some(clip)) = (dp.adaptive_clip, info.clip_norm()) {
                stat(
                    &mut h,
                    &format!("{clip:.4} (of at most {})", c.clip_norm),
                    &format!(
                        "this round's clip (adaptive, tracking the {} quantile of update norms)",
                        a.target_quantile
                    ),
                );
            }
        }
        if let Some(v) = state.secagg_round() {
            stat(
                &mut h,
                &v.summary().to_string(),
                "secure aggregation (the canister holds masked inputs only)",
            );
        }
    }
    h.push_str("</div>");
    if info.deadline_ns > 0 {
        let left = info.deadline_ns.saturating_sub(env.now_ns) / 1_000_000_000;
        let rel = if info.deadline_ns >= env.now_ns {
            format!("in {}", duration(left))
        } else {
            format!(
                "passed {} ago",
                duration((env.now_ns - info.deadline_ns) / 1_000_000_000)
            )
        };
        let _ = write!(
            h,
            r#"<p id="deadline" data-deadline-ms="{}" data-now-ms="{}">Deadline <b>{}</b> (<span class="countdown">{rel}</span>, canister clock). Opened {}.</p>"#,
            info.deadline_ns / 1_000_000,
            env.now_ns / 1_000_000,
            utc(info.deadline_ns),
            utc(info.opened_at_ns)
        );
    } else {
        let _ = write!(
            h,
            r#"<p id="deadline-none" class="empty">No deadline: the job is {}.</p>"#,
            info.state
        );
    }
    if let Some(v) = &info.model_version {
        let _ = write!(
            h,
            r#"<p class="sub">Current model <code id="model-version">{}</code></p>"#,
            hx(v)
        );
    }
    h.push_str("</section>");

    // Charts.
    let _ = write!(
        h,
        r#"<section class="card"><h2>Participation per round</h2>{}</section>"#,
        if records.is_empty() {
            r#"<p class="empty">No round has closed yet.</p>"#.to_string()
        } else {
            participation_chart(&records)
        }
    );
    let _ = write!(
        h,
        r#"<section class="card"><h2>Model quality per round</h2>{}</section>"#,
        if qualities.iter().all(|(_, q)| q.is_none()) {
            r#"<p class="empty">No evaluations reported yet (report_evaluation).</p>"#.to_string()
        } else {
            quality_chart(&qualities)
        }
    );

    // History table, newest first.
    h.push_str(r#"<section class="card wide"><h2>Round history</h2>"#);
    if records.is_empty() {
        h.push_str(r#"<p class="empty">No round has closed yet.</p>"#);
    } else {
        h.push_str(r#"<div class="scroll"><table id="round-history"><thead><tr><th>round</th><th class="num">accuracy</th><th class="num">loss</th><th class="num">contributions</th><th class="num">weight</th><th class="num">extensions</th><th>closed (UTC)</th><th>new model</th></tr></thead><tbody>"#);
        for (r, (_, q)) in records.iter().zip(&qualities).rev() {
            let (acc, loss) = match q {
                Some(q) => (
                    format!("{:.2}%", q.accuracy * 100.0),
                    format!("{:.4}", q.loss),
                ),
                None => ("–".into(), "–".into()),
            };
            let _ = write!(
                h,
                r#"<tr data-round="{round}"><td><a href="/api/rounds/{round}">{round}</a></td><td class="num">{acc}</td><td class="num">{loss}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td><code title="{}">{}</code></td></tr>"#,
                r.contribution_count,
                r.total_weight,
                r.extensions,
                utc(r.closed_at_ns).trim_end_matches(" UTC"),
                hx(&r.new_version),
                short(&hx(&r.new_version)),
                round = r.round,
            );
        }
        h.push_str("</tbody></table></div>");
        if first > 0 {
            let _ = write!(
                h,
                r#"<p class="sub">Showing the newest {PAGE_ROUNDS} of {closed} rounds; all of them at <a href="/api/rounds">/api/rounds</a>.</p>"#
            );
        }
    }
    h.push_str("</section>");

    // Lineage of the current model.
    h.push_str(r#"<section class="card wide"><h2>Lineage of the current model</h2>"#);
    let lineage = info.model_version.and_then(|v| {
        state
            .lineage(flic_protocol::api::LineageArgs {
                model_version: v,
                page: PageArgs { start: 0, limit: 1 },
            })
            .ok()
    });
    match lineage {
        Some(l) if l.total > 0 => {
            let (shares, scanned) = lineage_shares(state, l.total);
            let total_weight: u64 = shares.iter().map(|s| s.weight).sum::<u64>().max(1);
            let _ = write!(
                h,
                r#"<p class="sub">Built by {} contributions over {} rounds from {} datasets. Weight is the sum of the contributions' FedAvg weights (capped sample counts). <a href="/api/lineage/current">JSON</a></p>"#,
                l.total,
                l.round,
                shares.len()
            );
            h.push_str(r#"<div class="scroll"><table id="lineage"><thead><tr><th>dataset</th><th>share</th><th class="num">weight</th><th>owner</th><th class="num">rounds</th><th class="num">contributions</th></tr></thead><tbody>"#);
            for s in &shares {
                let share = s.weight as f64 / total_weight as f64;
                let owner = s.owner.to_text();
                let _ = write!(
                    h,
                    r#"<tr data-dataset="{}"><td>#{} {}{}</td><td><span class="share" style="width:{:.0}px"></span>{:.1}%</td><td class="num">{}</td><td><a href="/api/contributors/{owner}"><code title="{owner}">{}</code></a></td><td class="num">{}</td><td class="num">{}</td></tr>"#,
                    s.dataset_id,
                    s.dataset_id,
                    esc(&s.name),
                    if s.revoked { " (revoked)" } else { "" },
                    (share * 80.0).max(1.0),
                    share * 100.0,
                    s.weight,
                    short(&owner),
                    s.rounds,
                    s.contributions,
                );
            }
            h.push_str("</tbody></table></div>");
            if scanned < l.total {
                let _ = write!(
                    h,
                    r#"<p class="sub">Summarised over the first {scanned} of {} contributions.</p>"#,
                    l.total
                );
            }
        }
        Some(_) => h.push_str(
            r#"<p class="empty">The current model is the initial model: no contributions yet.</p>"#,
        ),
        None => h.push_str(r#"<p class="empty">There is no model yet.</p>"#),
    }
    h.push_str("</section></div></main>");
    let _ = write!(
        h,
        r#"<footer>Rendered {} (canister clock) by the canister's <code>http_request</code>; not certified: verify with the Candid API. JSON: <a href="/api/status">status</a> · <a href="/api/rounds">rounds</a> · <a href="/api/datasets">datasets</a> · <a href="/api/lineage/current">lineage</a> · <a href="/metrics">metrics</a></footer><script>{SCRIPT}</script></body></html>"#,
        utc(env.now_ns)
    );
    let mut r = response(200, "text/html; charset=utf-8", h.into_bytes());
    r.headers.push((
        "content-security-policy".into(),
        format!(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ),
    ));
    r
}

/// Standard base64 with padding (for the CSP script hash).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_735_689_600_000_000_000), "2025-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000_000_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(4_107_542_399_000_000_000), "2100-02-28 23:59:59 UTC");
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            esc(r#"<script>alert("x")&'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;)&amp;&#39;&lt;/script&gt;"
        );
    }
}
