//! The HTTP request and reply the devnet handles, independent of the server that carries
//! them.

use serde::Serialize;

use crate::error::IngressError;

/// One HTTP request, as the server received it.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    pub query: Option<String>,
    /// The `Host` header, if any.
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn cbor<T: Serialize>(value: &T) -> HttpReply {
        HttpReply {
            status: 200,
            content_type: "application/cbor".into(),
            headers: Vec::new(),
            body: cbor(value),
        }
    }

    pub fn text(status: u16, message: impl Into<String>) -> HttpReply {
        let mut body = message.into().into_bytes();
        body.push(b'\n');
        HttpReply {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            headers: Vec::new(),
            body,
        }
    }

    pub(crate) fn error(e: &IngressError) -> HttpReply {
        HttpReply::text(e.http_status(), e.to_string())
    }
}

/// `value` as CBOR with the self-describing tag, as the IC encodes replies and state-tree
/// leaves.
pub(crate) fn cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut ser = serde_cbor::Serializer::new(Vec::new());
    ser.self_describe().expect("writing to a Vec");
    value.serialize(&mut ser).expect("CBOR encoding");
    ser.into_inner()
}
