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
//!
//! This file routes; [`json`] renders the JSON views, [`prometheus`] the metrics, and
//! [`page`] the dashboard (its stylesheet and script are `page.css` and `page.js`, built
//! in with `include_str!`).

use std::collections::BTreeMap;

use candid::Principal;
use flic_protocol::api::{HttpRequest, HttpResponse, PageArgs, MAX_PAGE_LEN};
use flic_protocol::Hash;
use serde::Serialize;
use serde_bytes::ByteBuf;
use serde_json::json;

use crate::state::State;

mod json;
mod page;
mod prometheus;

pub use flic_protocol::time::utc;
pub use json::{lineage_shares, DatasetShare};
#[cfg(test)]
pub(crate) use page::esc;

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

pub(super) fn response(status: u16, content_type: &str, body: Vec<u8>) -> HttpResponse {
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

pub(super) fn error(status: u16, message: impl Into<String>) -> HttpResponse {
    json_response(
        status,
        &json!({ "status": status, "error": message.into() }),
    )
}

pub(super) fn not_found(message: impl Into<String>) -> HttpResponse {
    error(404, message)
}

pub(super) fn bad_request(message: impl Into<String>) -> HttpResponse {
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
        [""] | ["index.html"] => page::page(state, env),
        ["metrics"] => prometheus::metrics(state, env),
        ["api", "status"] => json_response(
            200,
            &json::status_json(&state.round_info(), state.secagg_round().as_ref(), env),
        ),
        ["api", "rounds"] => paged(&|p| json::rounds(state, p)),
        ["api", "rounds", n] => match n.parse::<u64>() {
            Ok(n) => json::round(state, n),
            Err(_) => bad_request(format!("round `{n}` is not a round number")),
        },
        ["api", "datasets"] => paged(&|p| json::datasets(state, p)),
        ["api", "contributors", p] => match Principal::from_text(p) {
            Ok(principal) => paged(&|page| json::contributor(state, principal, page)),
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
            paged(&|p| json::lineage(state, version, p))
        }
        _ => not_found(format!(
            "no such path: {path} (see / for the dashboard, /api/rounds, /api/rounds/<n>, \
             /api/datasets, /api/contributors/<principal>, /api/lineage/<version>, /metrics)"
        )),
    }
}

fn parse_version(text: &str) -> Option<Hash> {
    flic_protocol::hash::parse_hex32(text).ok().map(Hash::new)
}
