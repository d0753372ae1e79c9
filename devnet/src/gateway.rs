//! The HTTP gateway: a browser's request to `http://<canister-id>.localhost:<port>/...`
//! (or any path with `?canisterId=<id>`) becomes the canister's `http_request` query, and
//! `http_request_update` when the canister asks for an upgrade, as the IC's gateways do.
//! Response certification is not checked (as on a `raw` domain); see docs/devnet.md.

use candid::{CandidType, Deserialize, Principal};
use flic_embedded_ic::EmbeddedIc;
use serde_bytes::ByteBuf;

use crate::http::{HttpReply, HttpRequest};

/// The IC HTTP gateway protocol's request and response (without streaming).
#[derive(CandidType, Deserialize, Clone, Debug)]
struct GatewayRequest {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: ByteBuf,
    certificate_version: Option<u16>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
struct GatewayResponse {
    status_code: u16,
    headers: Vec<(String, String)>,
    body: ByteBuf,
    upgrade: Option<bool>,
}

/// The canister a request is for: the first label of a `*.localhost` host, or the
/// `canisterId` query parameter.
pub fn target(req: &HttpRequest) -> Option<Principal> {
    if let Some(query) = &req.query {
        for pair in query.split('&') {
            if let Some(id) = pair.strip_prefix("canisterId=") {
                return Principal::from_text(id).ok();
            }
        }
    }
    let host = req.host.as_deref()?;
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let first = name.strip_suffix(".localhost")?.split('.').next()?;
    Principal::from_text(first).ok()
}

pub fn serve(ic: &mut EmbeddedIc, canister: Principal, req: &HttpRequest) -> HttpReply {
    let url = match &req.query {
        Some(q) => format!("{}?{q}", req.path),
        None => req.path.clone(),
    };
    let request = GatewayRequest {
        method: req.method.clone(),
        url,
        headers: req.headers.clone(),
        body: ByteBuf::from(req.body.clone()),
        certificate_version: Some(2),
    };
    let arg = candid::encode_one(&request).expect("a gateway request encodes");
    let anonymous = Principal::anonymous();
    let answer = ic
        .query(canister, anonymous, "http_request", arg.clone())
        .map_err(|e| e.to_string())
        .and_then(|out| decode(&out.reply));
    let answer = match answer {
        Ok(r) if r.upgrade == Some(true) => ic
            .update(canister, anonymous, "http_request_update", arg)
            .map_err(|e| e.to_string())
            .and_then(|out| decode(&out.reply)),
        other => other,
    };
    match answer {
        Ok(r) => {
            let content_type = r
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .map_or_else(
                    || "application/octet-stream".to_string(),
                    |(_, v)| v.clone(),
                );
            HttpReply {
                status: r.status_code,
                content_type,
                headers: r
                    .headers
                    .into_iter()
                    .filter(|(k, _)| {
                        !k.eq_ignore_ascii_case("content-type")
                            && !k.eq_ignore_ascii_case("content-length")
                    })
                    .collect(),
                body: r.body.into_vec(),
            }
        }
        Err(e) => HttpReply::text(502, format!("canister {canister} did not answer: {e}")),
    }
}

fn decode(bytes: &[u8]) -> Result<GatewayResponse, String> {
    candid::decode_one(bytes).map_err(|e| format!("its http_request reply does not decode: {e}"))
}
