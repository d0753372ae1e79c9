//! The devnet on a TCP port: hyper serves HTTP/1.1, each request is answered by
//! [`Devnet::handle`] on a blocking thread (canister code is CPU work), and a ticker moves
//! the clock to wall-clock time so timers fire on their own.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::devnet::Devnet;
use crate::http::{HttpReply, HttpRequest};

/// How often the clock follows the wall clock (and due timers run).
pub const TICK: Duration = Duration::from_millis(200);
/// How long a connection may take to send a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Nanoseconds since the Unix epoch, by this machine's clock.
pub fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub type SharedDevnet = Arc<Mutex<Devnet>>;

/// What the server reports about each request (the CLI prints it).
pub type Logger = Arc<dyn Fn(&str, u16) + Send + Sync>;

/// Serves `devnet` on `listener` until `shutdown` resolves; then saves the state.
pub async fn serve(
    devnet: SharedDevnet,
    listener: TcpListener,
    log: Logger,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let ticker = {
        let devnet = devnet.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            loop {
                interval.tick().await;
                let devnet = devnet.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    lock(&devnet).tick(wall_clock_ns());
                })
                .await;
            }
        })
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(x) => x,
                    Err(_) => continue,
                };
                let devnet = devnet.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(devnet.clone(), log.clone(), req));
                    // A client that never finishes its request head gives up its connection.
                    let _ = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
    ticker.abort();
    let devnet = devnet.clone();
    tokio::task::spawn_blocking(move || lock(&devnet).save().map_err(std::io::Error::other))
        .await
        .map_err(std::io::Error::other)?
}

/// Binds `addr` (port 0 picks a free one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

pub fn lock(devnet: &SharedDevnet) -> std::sync::MutexGuard<'_, Devnet> {
    devnet.lock().unwrap_or_else(|e| e.into_inner())
}

async fn answer(
    devnet: SharedDevnet,
    log: Logger,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let max = lock(&devnet).max_body_bytes();
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, max).collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => {
            let reply = HttpReply::text(413, format!("the body is larger than {max} bytes"));
            log(
                &format!("{} {} (too large)", parts.method, parts.uri.path()),
                413,
            );
            return Ok(to_response(reply));
        }
    };
    let request = HttpRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        host: parts
            .headers
            .get(hyper::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body,
    };
    let handled =
        tokio::task::spawn_blocking(move || lock(&devnet).handle(&request, wall_clock_ns())).await;
    let reply = match handled {
        Ok(h) => {
            log(&h.summary, h.reply.status);
            h.reply
        }
        Err(e) => HttpReply::text(500, format!("the devnet failed on this request: {e}")),
    };
    Ok(to_response(reply))
}

fn to_response(reply: HttpReply) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(reply.status)
        .header(hyper::header::CONTENT_TYPE, reply.content_type);
    for (k, v) in reply.headers {
        builder = builder.header(k, v);
    }
    builder
        .body(Full::new(Bytes::from(reply.body)))
        .unwrap_or_else(|_| {
            Response::builder()
                .status(502)
                .body(Full::new(Bytes::from_static(
                    b"the canister sent an invalid header\n",
                )))
                .expect("a plain response builds")
        })
}

/// A devnet serving on a loopback port from its own thread and runtime until dropped: for
/// tests and for programs that embed a local network (the state is saved on drop).
pub struct Background {
    addr: SocketAddr,
    devnet: SharedDevnet,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Background {
    /// Starts serving `devnet` on `addr` (port 0 picks a free one).
    pub fn start(devnet: Devnet, addr: SocketAddr) -> std::io::Result<Background> {
        let devnet: SharedDevnet = Arc::new(Mutex::new(devnet));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let shared = devnet.clone();
        let thread = std::thread::Builder::new()
            .name("devnet".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let listener = match bind(addr).await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = bound_tx.send(Err(e));
                            return Ok(());
                        }
                    };
                    let _ = bound_tx.send(listener.local_addr());
                    let log: Logger = Arc::new(|_, _| {});
                    serve(shared, listener, log, async {
                        let _ = stopped.await;
                    })
                    .await
                })
            })?;
        let addr = bound_rx
            .recv()
            .map_err(|_| std::io::Error::other("the devnet thread ended before it listened"))??;
        Ok(Background {
            addr,
            devnet,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, as `--network` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn devnet(&self) -> &SharedDevnet {
        &self.devnet
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
