//! The opt-in `/metrics` listener (`MOLECULE_METRICS_LISTEN`; DESIGN.md, "Metrics").
//!
//! hyper's HTTP/1 server on the daemon's own single-threaded runtime, serving the text the
//! daemon last rendered (a `watch` channel: a scrape never renders, reads a file or waits on
//! the refresh loop, so a scraper cannot slow or stop refreshing, and the loop never waits
//! for a scraper).
//!
//! - Only `GET` and `HEAD` of `/metrics`: other paths 404, other methods 405.
//! - Headers at most 8 KiB (hyper's smallest read buffer: a longer head is answered 431 and
//!   the connection closed), sent within 5 s of hyper starting to read a request (a stalled
//!   or idle connection is closed).
//! - At most [`MAX_CONNECTIONS`] open: one more closes the longest-idle, so idle clients can
//!   never lock a scraper out.
//! - Unscraped, it is one listening socket in epoll: no timer runs without a connection.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::metrics::CONTENT_TYPE as METRICS_TYPE;

/// Connections open at once; one more closes the longest-idle.
pub const MAX_CONNECTIONS: usize = 64;
/// The most a request's head may take, in bytes (hyper's smallest buffer).
pub const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send a request's head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The connections open now: when each last started a request (or connected), and how to
/// close it.
#[derive(Default)]
struct Open {
    next_id: u64,
    conns: BTreeMap<u64, (Instant, oneshot::Sender<()>)>,
}

type Registry = Arc<Mutex<Open>>;

fn lock(registry: &Registry) -> std::sync::MutexGuard<'_, Open> {
    registry.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Binds `addr` (before the daemon's first refresh, so a bad address is said at start).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `text` (the latest exposition) on `listener` until the runtime ends.
pub async fn serve(listener: TcpListener, text: watch::Receiver<String>) {
    let registry = Registry::default();
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, say: wait for one to close rather than spin.
                tracing::warn!("metrics listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (id, closed) = admit(&registry);
        let registry = registry.clone();
        let text = text.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|req| {
                touch(&registry, id);
                let body = text.borrow().clone();
                async move { Ok::<_, Infallible>(respond(&req, body)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = closed => {}
            }
            lock(&registry).conns.remove(&id);
        });
    }
}

/// Registers a new connection, closing the longest-idle one when the limit is reached.
fn admit(registry: &Registry) -> (u64, oneshot::Receiver<()>) {
    let mut open = lock(registry);
    while open.conns.len() >= MAX_CONNECTIONS {
        let idlest = open
            .conns
            .iter()
            .min_by_key(|(_, (since, _))| *since)
            .map(|(id, _)| *id)
            .expect("the map is not empty");
        if let Some((_, close)) = open.conns.remove(&idlest) {
            let _ = close.send(());
        }
    }
    let (tx, rx) = oneshot::channel();
    let id = open.next_id;
    open.next_id += 1;
    open.conns.insert(id, (Instant::now(), tx));
    (id, rx)
}

/// A request started on connection `id`: it is not idle.
fn touch(registry: &Registry, id: u64) {
    if let Some((since, _)) = lock(registry).conns.get_mut(&id) {
        *since = Instant::now();
    }
}

fn respond(req: &Request<Incoming>, body: String) -> Response<Full<Bytes>> {
    let status = if req.uri().path() != "/metrics" {
        StatusCode::NOT_FOUND
    } else if req.method() != Method::GET && req.method() != Method::HEAD {
        StatusCode::METHOD_NOT_ALLOWED
    } else {
        // hyper sends no body in answer to HEAD, and the length of the GET's.
        let mut ok = Response::new(Full::new(Bytes::from(body)));
        ok.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_TYPE));
        return ok;
    };
    let mut r = Response::new(Full::new(Bytes::from(format!(
        "{}\n",
        status.canonical_reason().unwrap_or("error")
    ))));
    *r.status_mut() = status;
    if status == StatusCode::METHOD_NOT_ALLOWED {
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    r
}
