//! `flic dashboard`: serves a canister's own `http_request` over HTTP/1.1 on loopback, the
//! way the IC's HTTP gateway would, for a saved embedded IC.
//!
//! A deliberately small server: one request per connection (`Connection: close`), a fixed
//! pool of worker threads fed by a bounded queue (a full queue answers 503 at once), read
//! and write timeouts, a 16 KiB limit on the request head and 1 MiB on the body. The canister
//! is queried as the anonymous principal, as the gateway does. [`serve`] returns once its
//! stop flag is set and the requests in flight are answered.

use std::io::{self, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candid::Principal;
use flic_protocol::api::{HttpRequest, HttpResponse};
use serde_bytes::ByteBuf;

use crate::transport::embedded::{self, SharedIc};

pub const WORKERS: usize = 4;
pub const QUEUE: usize = 16;
pub const MAX_HEAD: usize = 16 * 1024;
pub const MAX_BODY: usize = 1024 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const ACCEPT_POLL: Duration = Duration::from_millis(25);

/// The canister behind the server.
#[derive(Clone)]
pub struct Dashboard {
    ic: SharedIc,
    canister: Principal,
}

impl Dashboard {
    pub fn new(ic: SharedIc, canister: Principal) -> Self {
        Self { ic, canister }
    }

    pub fn canister(&self) -> Principal {
        self.canister
    }

    /// Asks the canister; a failed call becomes a 502 naming the cause.
    pub fn answer(&self, req: &HttpRequest) -> HttpResponse {
        let arg = candid::encode_one(req).expect("HttpRequest encodes");
        let outcome = embedded::lock(&self.ic).query(
            self.canister,
            Principal::anonymous(),
            "http_request",
            arg,
        );
        let decoded = outcome
            .map_err(|e| e.to_string())
            .and_then(|o| candid::decode_one::<HttpResponse>(&o.reply).map_err(|e| e.to_string()));
        decoded.unwrap_or_else(|e| plain(502, &format!("the canister did not answer: {e}\n")))
    }
}

fn plain(status: u16, text: &str) -> HttpResponse {
    HttpResponse {
        status_code: status,
        headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
        body: ByteBuf::from(text.as_bytes().to_vec()),
        upgrade: None,
    }
}

/// Why a request could not be read; each maps to a status.
#[derive(Debug)]
enum ReadError {
    Io(io::Error),
    Malformed(&'static str),
    HeadTooLarge,
    BodyTooLarge,
}

/// Reads one request: head up to [`MAX_HEAD`], body by `Content-Length` up to [`MAX_BODY`].
fn read_request(stream: &mut TcpStream) -> Result<HttpRequest, ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::HeadTooLarge);
        }
        let n = stream.read(&mut chunk).map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Malformed(
                "connection closed before the request ended",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if head_end > MAX_HEAD {
        return Err(ReadError::HeadTooLarge);
    }
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| ReadError::Malformed("the request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed("bad request line"));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(ReadError::Malformed("bad request line"));
    }
    let mut headers = Vec::new();
    let mut content_length = 0usize;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(ReadError::Malformed("bad header line"))?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value
                .parse()
                .map_err(|_| ReadError::Malformed("bad Content-Length"))?;
        }
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ReadError::Malformed(
                "chunked request bodies are not supported",
            ));
        }
        headers.push((name.to_string(), value.to_string()));
    }
    if content_length > MAX_BODY {
        return Err(ReadError::BodyTooLarge);
    }
    let mut body = buf[head_end + 4..].to_vec();
    body.truncate(content_length);
    while body.len() < content_length {
        let n = stream.read(&mut chunk).map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Malformed("connection closed inside the body"));
        }
        let take = n.min(content_length - body.len());
        body.extend_from_slice(&chunk[..take]);
    }
    Ok(HttpRequest {
        method: method.to_string(),
        url: target.to_string(),
        headers,
        body: ByteBuf::from(body),
        certificate_version: Some(2),
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn write_response(stream: &TcpStream, r: &HttpResponse, head_only: bool) -> io::Result<()> {
    let mut w = BufWriter::new(stream);
    write!(
        w,
        "HTTP/1.1 {} {}\r\n",
        r.status_code,
        reason(r.status_code)
    )?;
    let mut length_sent = false;
    for (name, value) in &r.headers {
        let hop = ["connection", "transfer-encoding", "keep-alive"];
        if hop.iter().any(|h| name.eq_ignore_ascii_case(h)) || value.contains(['\r', '\n']) {
            continue;
        }
        if name.eq_ignore_ascii_case("content-length") {
            // For HEAD the canister's length describes the GET body; otherwise recount.
            if !head_only {
                continue;
            }
            length_sent = true;
        }
        write!(w, "{name}: {value}\r\n")?;
    }
    if !length_sent {
        write!(w, "content-length: {}\r\n", r.body.len())?;
    }
    w.write_all(b"connection: close\r\n\r\n")?;
    if !head_only {
        w.write_all(&r.body)?;
    }
    w.flush()
}

/// Answers one connection.
fn handle_connection(dashboard: &Dashboard, mut stream: TcpStream, log: bool) {
    let started = Instant::now();
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let (line, response, head_only) = match read_request(&mut stream) {
        Ok(req) => {
            let head_only = req.method.eq_ignore_ascii_case("HEAD");
            let r = dashboard.answer(&req);
            (format!("{} {}", req.method, req.url), r, head_only)
        }
        Err(ReadError::Io(e)) => {
            if log {
                eprintln!("dashboard: reading a request failed: {e}");
            }
            return;
        }
        Err(ReadError::Malformed(why)) => ("-".into(), plain(400, &format!("{why}\n")), false),
        Err(ReadError::HeadTooLarge) => (
            "-".into(),
            plain(431, &format!("the request head exceeds {MAX_HEAD} bytes\n")),
            false,
        ),
        Err(ReadError::BodyTooLarge) => (
            "-".into(),
            plain(413, &format!("the request body exceeds {MAX_BODY} bytes\n")),
            false,
        ),
    };
    let result = write_response(&stream, &response, head_only);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    if log {
        eprintln!(
            "{line} -> {} ({} bytes, {:.1} ms){}",
            response.status_code,
            response.body.len(),
            started.elapsed().as_secs_f64() * 1e3,
            result.err().map(|e| format!(": {e}")).unwrap_or_default()
        );
    }
}

fn worker(dashboard: &Dashboard, queue: &Mutex<Receiver<TcpStream>>, log: bool) {
    loop {
        // Hold the lock only to take one connection.
        let next = queue.lock().expect("queue lock").recv();
        match next {
            Ok(stream) => handle_connection(dashboard, stream, log),
            Err(_) => return, // the accept loop has stopped
        }
    }
}

/// Serves until `stop` is set, then finishes the requests already accepted and returns.
pub fn serve(
    listener: TcpListener,
    dashboard: &Dashboard,
    stop: &AtomicBool,
    log: bool,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let (tx, rx) = mpsc::sync_channel::<TcpStream>(QUEUE);
    let rx = Arc::new(Mutex::new(rx));
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            let rx = rx.clone();
            scope.spawn(move || worker(dashboard, &rx, log));
        }
        let result = loop {
            if stop.load(Ordering::SeqCst) {
                break Ok(());
            }
            match listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = stream.set_nonblocking(false) {
                        break Err(e);
                    }
                    match tx.try_send(stream) {
                        Ok(()) => {}
                        Err(TrySendError::Full(stream)) => {
                            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                            let busy = plain(503, "too many requests in flight; retry\n");
                            let _ = write_response(&stream, &busy, false);
                        }
                        Err(TrySendError::Disconnected(_)) => {
                            break Err(io::Error::other("all dashboard workers stopped"))
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if log {
                        eprintln!("dashboard: accept failed: {e}");
                    }
                    std::thread::sleep(ACCEPT_POLL);
                }
            }
        };
        drop(tx); // workers drain the queue, then see the channel closed
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(raw: &[u8]) -> Result<HttpRequest, ReadError> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let raw = raw.to_vec();
        let client = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&raw).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let r = read_request(&mut stream);
        client.join().unwrap();
        r
    }

    #[test]
    fn parses_requests_and_rejects_bad_ones() {
        let r = roundtrip(b"GET /api/rounds?limit=2 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(
            (r.method.as_str(), r.url.as_str()),
            ("GET", "/api/rounds?limit=2")
        );
        assert_eq!(r.headers, vec![("Host".to_string(), "x".to_string())]);
        let r = roundtrip(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcdef").unwrap();
        assert_eq!(r.body.as_slice(), b"abc");
        assert!(matches!(
            roundtrip(b"GET /\r\n\r\n"),
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(
            roundtrip(b"GET http://x/ HTTP/1.1\r\n\r\n"),
            Err(ReadError::Malformed(_))
        ));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(
            roundtrip(big.as_bytes()),
            Err(ReadError::HeadTooLarge)
        ));
        let body = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(
            roundtrip(body.as_bytes()),
            Err(ReadError::BodyTooLarge)
        ));
        assert!(matches!(
            roundtrip(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Err(ReadError::Malformed(_))
        ));
    }
}
