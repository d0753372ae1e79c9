//! `http_request`: the dashboard page, a JSON read API and Prometheus metrics, computed
//! from the state on every request (pure: the boundary passes the time and cycle balance).
//!
//! | path | reply |
//! |---|---|
//! | `/` | the dashboard (HTML, inline CSS, SVG and one inline script; nothing external) |
//! | `/api/status` | the open round |
//! | `/api/rounds?offset=&limit=` | closed rounds from `offset` (a round number), oldest first |
//! | `/api/rounds/<n>` | one closed round with its evaluations and contributions |
//! | `/api/datasets?offset=&limit=` | datasets from id `offset` |
//! | `/api/contributors/<principal>?offset=&limit=` | a principal's datasets and contributions |
//! | `/api/lineage/<version or "current">?offset=&limit=` | what built a model version |
//! | `/metrics` | Prometheus text format 0.0.4 |
//!
//! `limit` defaults to 20 and is capped at [`MAX_PAGE_LEN`]; a malformed or zero value is a
//! 400, an unknown path or item a 404, a method other than GET or HEAD a 405, each with a
//! JSON body `{"status": .., "error": ".."}`. Responses are not certified (see
//! `docs/dashboard.md`): the certified source of truth stays the Candid API.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Bound;

use candid::Principal;
use flic_protocol::api::{
    Contribution, Dataset, Evaluation, HttpRequest, HttpResponse, JobState, PageArgs, RoundInfo,
    RoundRecord, MAX_PAGE_LEN,
};
use flic_protocol::Hash;
use serde::Serialize;
use serde_bytes::ByteBuf;
use serde_json::{json, Value};

use crate::evaluations::RoundQuality;
use crate::state::State;

/// What the runtime knows that the state does not.
#[derive(Clone, Copy, Debug)]
pub struct HttpEnv {
    pub now_ns: u64,
    pub cycle_balance: u128,
    pub canister_id: Principal,
}

pub const DEFAULT_LIMIT: u32 = 20;
/// Rounds shown in the page's charts and table (the newest).
pub const PAGE_ROUNDS: u64 = 100;
/// Contributions a lineage summary reads at most (bounds the query's instructions).
pub const LINEAGE_SCAN_MAX: u64 = 10_000;

// ---------------------------------------------------------------- responses

fn response(status: u16, content_type: &str, body: Vec<u8>) -> HttpResponse {
    HttpResponse {
        status_code: status,
        headers: vec![
            ("content-type".into(), content_type.into()),
            ("content-length".into(), body.len().to_string()),
            // Every reply reflects live state.
            ("cache-control".into(), "no-store".into()),
            ("x-content-type-options".into(), "nosniff".into()),
        ],
        body: ByteBuf::from(body),
        upgrade: None,
    }
}

fn json_response<T: Serialize>(status: u16, value: &T) -> HttpResponse {
    let mut body = serde_json::to_vec_pretty(value).expect("JSON views serialize");
    body.push(b'\n');
    response(status, "application/json", body)
}

fn error(status: u16, message: impl Into<String>) -> HttpResponse {
    json_response(
        status,
        &json!({ "status": status, "error": message.into() }),
    )
}

fn not_found(message: impl Into<String>) -> HttpResponse {
    error(404, message)
}

fn bad_request(message: impl Into<String>) -> HttpResponse {
    error(400, message)
}

// ---------------------------------------------------------------- request parsing

/// Query parameters, split but not percent-decoded (every value we accept is plain ASCII).
fn parse_query(query: &str) -> Result<BTreeMap<&str, &str>, HttpResponse> {
    let mut out = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if out.insert(k, v).is_some() {
            return Err(bad_request(format!("query parameter `{k}` is given twice")));
        }
    }
    Ok(out)
}

/// `offset` and `limit`: limit in `1..`, capped at [`MAX_PAGE_LEN`].
fn page_args(query: &BTreeMap<&str, &str>) -> Result<PageArgs, HttpResponse> {
    let start = match query.get("offset") {
        None => 0,
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| bad_request(format!("offset `{v}` is not a non-negative integer")))?,
    };
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<u64>() {
            Ok(0) => return Err(bad_request("limit must be at least 1")),
            Ok(n) => n.min(MAX_PAGE_LEN as u64) as u32,
            Err(_) => {
                return Err(bad_request(format!(
                "limit `{v}` is not a positive integer (at most {MAX_PAGE_LEN} items are returned)"
            )))
            }
        },
    };
    Ok(PageArgs { start, limit })
}

/// Answers one HTTP request from the state.
pub fn handle(state: &State, req: &HttpRequest, env: &HttpEnv) -> HttpResponse {
    let head = req.method.eq_ignore_ascii_case("HEAD");
    if !head && !req.method.eq_ignore_ascii_case("GET") {
        let mut r = error(
            405,
            format!(
                "method {} is not allowed: this API is read-only",
                req.method
            ),
        );
        r.headers.push(("allow".into(), "GET, HEAD".into()));
        return r;
    }
    let mut r = route(state, req, env);
    if head {
        r.body = ByteBuf::new();
    }
    r
}

fn route(state: &State, req: &HttpRequest, env: &HttpEnv) -> HttpResponse {
    // The gateway sends the path and query; tolerate an absolute URL too.
    let url = req.url.as_str();
    let url = match url.find("://") {
        Some(i) => url[i + 3..].find('/').map_or("/", |j| &url[i + 3 + j..]),
        None => url,
    };
    let url = url.split('#').next().unwrap_or("");
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let query = match parse_query(query) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let paged = |f: &dyn Fn(PageArgs) -> HttpResponse| match page_args(&query) {
        Ok(p) => f(p),
        Err(r) => r,
    };
    match segments.as_slice() {
        [""] | ["index.html"] => page(state, env),
        ["metrics"] => metrics(state, env),
        ["api", "status"] => json_response(200, &status_json(&state.round_info(), env)),
        ["api", "rounds"] => paged(&|p| rounds(state, p)),
        ["api", "rounds", n] => match n.parse::<u64>() {
            Ok(n) => round(state, n),
            Err(_) => bad_request(format!("round `{n}` is not a round number")),
        },
        ["api", "datasets"] => paged(&|p| datasets(state, p)),
        ["api", "contributors", p] => match Principal::from_text(p) {
            Ok(principal) => paged(&|page| contributor(state, principal, page)),
            Err(e) => bad_request(format!("`{p}` is not a principal: {e}")),
        },
        ["api", "lineage", v] => {
            let version = if *v == "current" {
                match state.open_round().model_version {
                    Some(v) => v,
                    None => return not_found("there is no model yet"),
                }
            } else {
                match parse_version(v) {
                    Some(h) => h,
                    None => {
                        return bad_request(format!(
                            "`{v}` is not a model version (64 hex digits) or `current`"
                        ))
                    }
                }
            };
            paged(&|p| lineage(state, version, p))
        }
        _ => not_found(format!(
            "no such path: {path} (see / for the dashboard, /api/rounds, /api/rounds/<n>, \
             /api/datasets, /api/contributors/<principal>, /api/lineage/<version>, /metrics)"
        )),
    }
}

fn parse_version(text: &str) -> Option<Hash> {
    let bytes: [u8; 32] = hex::decode(text).ok()?.try_into().ok()?;
    Some(Hash::new(bytes))
}

// ---------------------------------------------------------------- JSON views

fn hx(h: &Hash) -> String {
    hex::encode(h.as_slice())
}

fn quality_json(q: Option<RoundQuality>) -> Value {
    match q {
        Some(q) => json!({
            "accuracy": q.accuracy, "loss": q.loss, "samples": q.samples, "reports": q.reports
        }),
        None => Value::Null,
    }
}

fn round_json(state: &State, r: &RoundRecord) -> Value {
    json!({
        "round": r.round,
        "base_version": hx(&r.base_version),
        "new_version": hx(&r.new_version),
        "contributions_root": hx(&r.contributions_root),
        "first_contribution": r.first_contribution,
        "contribution_count": r.contribution_count,
        "total_weight": r.total_weight,
        "contributors": r.contributors.iter().map(|p| p.to_text()).collect::<Vec<_>>(),
        "frac_bits": r.frac_bits,
        "server_lr": r.server_lr,
        "opened_at_ns": r.opened_at_ns,
        "closed_at_ns": r.closed_at_ns,
        "extensions": r.extensions,
        "quality": quality_json(state.round_quality(r.round)),
    })
}

fn evaluation_json(e: &Evaluation) -> Value {
    json!({
        "round": e.round,
        "model_version": hx(&e.model_version),
        "reporter": e.reporter.to_text(),
        "accuracy": e.accuracy,
        "loss": e.loss,
        "samples": e.samples,
        "reported_at_ns": e.reported_at_ns,
    })
}

fn contribution_json(c: &Contribution) -> Value {
    json!({
        "index": c.index,
        "round": c.round,
        "index_in_round": c.index_in_round,
        "contributor": c.contributor.to_text(),
        "dataset_id": c.dataset_id,
        "sample_count": c.header.sample_count,
        "weight": c.weight,
        "encoding": c.header.encoding.to_string(),
        "header_hash": hx(&c.header_hash),
        "committed_at_ns": c.committed_at_ns,
        "retained": c.retained,
    })
}

fn dataset_json(d: &Dataset) -> Value {
    json!({
        "id": d.id,
        "owner": d.owner.to_text(),
        "name": d.name,
        "commitment": hx(&d.commitment),
        "sample_count": d.sample_count,
        "license": d.license,
        "description": d.description,
        "registered_at_ns": d.registered_at_ns,
        "revoked_at_ns": d.revoked_at_ns,
    })
}

fn status_json(info: &RoundInfo, env: &HttpEnv) -> Value {
    json!({
        "canister_id": env.canister_id.to_text(),
        "now_ns": env.now_ns,
        "job_id": info.job_id,
        "state": info.state.to_string(),
        "round": info.round,
        "model_version": info.model_version.as_ref().map(hx),
        "param_count": info.param_count,
        "opened_at_ns": info.opened_at_ns,
        "deadline_ns": info.deadline_ns,
        "committed": info.committed,
        "pending": info.pending,
        "min_clients": info.config.as_ref().map(|c| c.min_clients),
        "max_clients": info.config.as_ref().map(|c| c.max_clients),
    })
}

fn page_json(p: PageArgs, next: Option<u64>, items: Vec<Value>) -> Value {
    json!({ "offset": p.start, "limit": p.limit, "next": next, "items": items })
}

fn rounds(state: &State, p: PageArgs) -> HttpResponse {
    let page = state.round_history(p);
    let mut v = page_json(
        p,
        page.next,
        page.items.iter().map(|r| round_json(state, r)).collect(),
    );
    v["total"] = json!(state.history().size);
    json_response(200, &v)
}

fn round(state: &State, n: u64) -> HttpResponse {
    let Some(r) = state.rounds.get(&n).map(|s| RoundRecord::from(s.0)) else {
        let open = state.open_round().round;
        return not_found(
            if n >= open && state.job().job_state() != JobState::Unconfigured {
                format!("round {n} is not closed yet (the open round is {open}; see /api/status)")
            } else {
                format!("round {n} does not exist")
            },
        );
    };
    let mut v = round_json(state, &r);
    v["evaluations"] = state
        .round_evaluations(n)
        .iter()
        .map(evaluation_json)
        .collect();
    let page = state.contributions_range(
        r.first_contribution + r.contribution_count as u64,
        PageArgs {
            start: r.first_contribution,
            limit: MAX_PAGE_LEN,
        },
    );
    v["contributions"] = page.items.iter().map(contribution_json).collect();
    v["contributions_truncated"] = json!(page.next.is_some());
    json_response(200, &v)
}

fn datasets(state: &State, p: PageArgs) -> HttpResponse {
    let page = state.list_datasets(p);
    let mut v = page_json(p, page.next, page.items.iter().map(dataset_json).collect());
    v["total"] = json!(state.datasets.len());
    json_response(200, &v)
}

fn contributor(state: &State, principal: Principal, p: PageArgs) -> HttpResponse {
    let owned: Vec<Value> = state
        .datasets_by_owner
        .keys_range((principal, 0)..=(principal, u64::MAX))
        .filter_map(|(_, id)| state.dataset(id))
        .map(|d| dataset_json(&d))
        .collect();
    let page = state.contributions_by_contributor(principal, p);
    if owned.is_empty() && page.items.is_empty() && p.start == 0 {
        return not_found(format!(
            "principal {principal} has no datasets and no contributions"
        ));
    }
    json_response(
        200,
        &json!({
            "principal": principal.to_text(),
            "datasets": owned,
            "contributions": page_json(p, page.next, page.items.iter().map(contribution_json).collect()),
        }),
    )
}

/// One dataset's share of a lineage.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetShare {
    pub dataset_id: u64,
    pub name: String,
    pub owner: Principal,
    pub revoked: bool,
    pub contributions: u64,
    pub rounds: u64,
    pub weight: u64,
}

/// Per-dataset totals over the contributions `0..total` that built a version, reading at
/// most [`LINEAGE_SCAN_MAX`]; returns the shares (largest weight first) and how many
/// contributions were read.
pub fn lineage_shares(state: &State, total: u64) -> (Vec<DatasetShare>, u64) {
    let scanned = total.min(LINEAGE_SCAN_MAX);
    let mut by_dataset: BTreeMap<u64, (u64, u64, u64, Option<u64>)> = BTreeMap::new();
    for e in state.contributions.range(..scanned) {
        let c = e.value().0.contribution;
        let entry = by_dataset.entry(c.dataset_id).or_insert((0, 0, 0, None));
        entry.0 += 1;
        entry.2 += c.weight;
        if entry.3 != Some(c.round) {
            entry.1 += 1;
            entry.3 = Some(c.round);
        }
    }
    let mut shares: Vec<DatasetShare> = by_dataset
        .into_iter()
        .map(|(id, (contributions, rounds, weight, _))| {
            let d = state.dataset(id);
            DatasetShare {
                dataset_id: id,
                name: d.as_ref().map(|d| d.name.clone()).unwrap_or_default(),
                owner: d.as_ref().map_or(Principal::anonymous(), |d| d.owner),
                revoked: d.as_ref().is_some_and(|d| d.revoked_at_ns.is_some()),
                contributions,
                rounds,
                weight,
            }
        })
        .collect();
    shares.sort_by(|a, b| {
        b.weight
            .cmp(&a.weight)
            .then(a.dataset_id.cmp(&b.dataset_id))
    });
    (shares, scanned)
}

fn lineage(state: &State, version: Hash, p: PageArgs) -> HttpResponse {
    let l = match state.lineage(flic_protocol::api::LineageArgs {
        model_version: version,
        page: p,
    }) {
        Ok(l) => l,
        Err(e) => return not_found(e.to_string()),
    };
    let (shares, scanned) = lineage_shares(state, l.total);
    let total_weight: u64 = shares.iter().map(|s| s.weight).sum();
    let datasets: Vec<Value> = shares
        .iter()
        .map(|s| {
            json!({
                "dataset_id": s.dataset_id,
                "name": s.name,
                "owner": s.owner.to_text(),
                "revoked": s.revoked,
                "contributions": s.contributions,
                "rounds": s.rounds,
                "weight": s.weight,
                "share": if total_weight == 0 { 0.0 } else { s.weight as f64 / total_weight as f64 },
            })
        })
        .collect();
    json_response(
        200,
        &json!({
            "model_version": hx(&l.model_version),
            "round": l.round,
            "total_contributions": l.total,
            "summarised_contributions": scanned,
            "datasets": datasets,
            "contributions": page_json(p, l.contributions.next, l.contributions.items.iter().map(contribution_json).collect()),
        }),
    )
}

// ---------------------------------------------------------------- metrics

impl State {
    /// Principals with at least one contribution (one index seek per principal).
    pub fn distinct_contributors(&self) -> u64 {
        let mut n = 0;
        let mut next = self.by_contributor.keys().next();
        while let Some((p, _)) = next {
            n += 1;
            next = self
                .by_contributor
                .keys_range((Bound::Excluded((p, u64::MAX)), Bound::Unbounded))
                .next();
        }
        n
    }
}

struct Prom(String);

impl Prom {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

const SUBMISSION_METHODS: [&str; 3] = ["begin_submission", "put_chunk", "commit_submission"];

fn metrics(state: &State, env: &HttpEnv) -> HttpResponse {
    let (job, open_round) = (state.job(), state.open_round());
    let counters = state.metrics();
    let mut p = Prom(String::with_capacity(4096));
    p.single(
        "flic_rounds_closed_total",
        "counter",
        "Rounds closed since the job started.",
        state.rounds.len(),
    );
    p.single(
        "flic_current_round",
        "gauge",
        "The open round (equal to the rounds closed while the job runs).",
        open_round.round,
    );
    p.family("flic_job_state", "gauge", "1 for the job's current state.");
    for s in [
        JobState::Unconfigured,
        JobState::AwaitingModel,
        JobState::Ready,
        JobState::Running,
        JobState::Paused,
    ] {
        p.sample(
            "flic_job_state",
            &[("state", &s.to_string())],
            u8::from(job.job_state() == s),
        );
    }
    let info = state.round_info();
    p.single(
        "flic_round_committed",
        "gauge",
        "Contributions committed in the open round.",
        info.committed,
    );
    p.single(
        "flic_round_pending",
        "gauge",
        "Uploads begun but not committed in the open round.",
        info.pending,
    );
    p.single(
        "flic_round_deadline_seconds",
        "gauge",
        "Deadline of the open round, Unix seconds (0: none).",
        info.deadline_ns / 1_000_000_000,
    );
    p.single(
        "flic_submissions_accepted_total",
        "counter",
        "Submissions committed (accepted into a round's aggregate).",
        counters.method("commit_submission").ok,
    );
    p.family(
        "flic_submissions_rejected_total",
        "counter",
        "Submission calls rejected with a typed error, by method and error variant.",
    );
    for ((method, reason), n) in &counters.rejections {
        if SUBMISSION_METHODS.contains(&method.as_str()) {
            p.sample(
                "flic_submissions_rejected_total",
                &[("method", method), ("reason", reason)],
                n,
            );
        }
    }
    p.family(
        "flic_rejections_total",
        "counter",
        "Every update rejected with a typed error, by method and error variant.",
    );
    for ((method, reason), n) in &counters.rejections {
        p.sample(
            "flic_rejections_total",
            &[("method", method), ("reason", reason)],
            n,
        );
    }
    p.family(
        "flic_bytes_received_total",
        "counter",
        "Delta chunk bytes received by put_chunk, by outcome.",
    );
    let pc = counters.method("put_chunk");
    p.sample(
        "flic_bytes_received_total",
        &[("outcome", "accepted")],
        pc.bytes_accepted,
    );
    p.sample(
        "flic_bytes_received_total",
        &[("outcome", "rejected")],
        pc.bytes_rejected,
    );
    p.family(
        "flic_update_calls_total",
        "counter",
        "Update calls (and timer runs) that completed, by method and outcome.",
    );
    for (method, c) in &counters.methods {
        p.sample(
            "flic_update_calls_total",
            &[("method", method), ("outcome", "ok")],
            c.ok,
        );
        p.sample(
            "flic_update_calls_total",
            &[("method", method), ("outcome", "rejected")],
            c.rejected,
        );
    }
    p.family(
        "flic_instructions_total",
        "counter",
        "Wasm instructions used by completed update calls and timer runs (ic0.performance_counter), by method.",
    );
    for (method, c) in &counters.methods {
        p.sample(
            "flic_instructions_total",
            &[("method", method)],
            c.instructions,
        );
    }
    p.single(
        "flic_cycle_balance",
        "gauge",
        "The canister's cycle balance.",
        env.cycle_balance,
    );
    p.single(
        "flic_contributors",
        "gauge",
        "Principals with at least one committed contribution.",
        state.distinct_contributors(),
    );
    p.single(
        "flic_contributions_total",
        "counter",
        "Contributions committed since the job started.",
        state.allocators().next_contribution,
    );
    p.single(
        "flic_datasets",
        "gauge",
        "Datasets registered (revoked ones included).",
        state.datasets.len(),
    );
    p.single(
        "flic_evaluations",
        "gauge",
        "Evaluations of round models stored.",
        state.evaluations.len(),
    );
    if let Some(q) = open_round
        .round
        .checked_sub(1)
        .and_then(|r| state.round_quality(r))
    {
        p.single(
            "flic_model_accuracy",
            "gauge",
            "Sample-weighted mean reported accuracy of the latest round's model.",
            q.accuracy,
        );
        p.single(
            "flic_model_loss",
            "gauge",
            "Sample-weighted mean reported loss of the latest round's model.",
            q.loss,
        );
    }
    response(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        p.0.into_bytes(),
    )
}

// ---------------------------------------------------------------- the page

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

/// `YYYY-MM-DD HH:MM:SS UTC` from nanoseconds since the Unix epoch.
pub fn utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
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
const SCRIPT: &str = r#"(function(){var d=document.getElementById('deadline');if(d){var off=(+d.dataset.nowMs)-Date.now(),t=+d.dataset.deadlineMs,c=d.querySelector('.countdown');var f=function(s){return s<120?s+' s':s<7200?Math.floor(s/60)+' min':Math.floor(s/3600)+' h '+Math.floor(s/60%60)+' min';};var tick=function(){var s=Math.round((t-Date.now()-off)/1000);c.textContent=s>0?'in '+f(s):'passed '+f(-s)+' ago';};tick();setInterval(tick,1000);}document.documentElement.setAttribute('data-js','ok');})();"#;

const STYLE: &str = r#"
:root{--bg:#f6f7f9;--card:#fff;--fg:#1c2330;--muted:#5d6778;--line:#e2e6ec;--accent:#2f6fdb;--accent2:#17a673;--warn:#c77700}
@media (prefers-color-scheme:dark){:root{--bg:#12161c;--card:#1b2129;--fg:#e6e9ee;--muted:#9aa4b2;--line:#2c3440;--accent:#6b9cf0;--accent2:#3cc58f;--warn:#e0a040}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header,main,footer{max-width:1120px;margin:0 auto;padding:0 16px}
header{padding-top:20px}
h1{font-size:1.45rem;margin:0 0 2px}
h2{font-size:1.05rem;margin:0 0 10px}
.sub{color:var(--muted);font-size:.9rem}
.grid{display:grid;gap:14px;grid-template-columns:repeat(auto-fit,minmax(min(100%,420px),1fr));margin:16px 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;min-width:0}
.wide{grid-column:1/-1}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(130px,1fr));gap:10px}
.stat b{display:block;font-size:1.35rem;font-variant-numeric:tabular-nums}
.stat span{color:var(--muted);font-size:.82rem}
.badge{display:inline-block;padding:1px 8px;border-radius:99px;font-size:.8rem;font-weight:600;background:var(--line)}
.badge.Running{background:var(--accent2);color:#fff}.badge.Paused{background:var(--warn);color:#fff}
svg{width:100%;height:auto;display:block}
svg text{fill:var(--muted);font-size:13px;font-family:inherit}
svg .grid-line{stroke:var(--line)}
svg .bar{fill:var(--accent)}
svg .line{fill:none;stroke:var(--accent2);stroke-width:2}
svg .dot{fill:var(--accent2)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.88rem;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);white-space:nowrap}
th{color:var(--muted);font-weight:600}
td.num,th.num{text-align:right}
code{font-size:.85em;word-break:break-all}
.share{display:inline-block;height:8px;background:var(--accent);border-radius:4px;vertical-align:middle;margin-right:6px}
.empty{color:var(--muted);font-style:italic}
footer{color:var(--muted);font-size:.85rem;padding-bottom:28px}
a{color:var(--accent)}
@media (max-width:560px){svg text{font-size:22px}body{font-size:14px}.stat b{font-size:1.15rem}th,td{padding:5px 6px}}
"#;

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

fn page(state: &State, env: &HttpEnv) -> HttpResponse {
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

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
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
