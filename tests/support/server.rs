//! The plumbing every stand-in shares: a listener on its own thread and tokio runtime,
//! optional TLS, HTTP/1.1 via hyper, graceful shutdown on drop, and a way for a handler
//! to answer with a TCP reset instead of a response.
//!
//! Handlers see the request with its body already collected: the stand-ins are small and
//! the bodies (at most a few MB of pack data) fit in memory, which keeps every handler a
//! plain function from request to reply.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Response body of every stand-in: a whole buffer or a stream fed by a task.
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How long in-flight connections get to finish once the server is dropped. Long enough
/// for a git request in progress, short enough that a hung test server does not stall Drop.
const GRACE: Duration = Duration::from_secs(3);

/// A TLS handshake that has not finished by then is a client that will never finish it.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One request as a handler sees it.
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) remote: SocketAddr,
}

/// What a handler answers.
pub(crate) enum Reply {
    /// Send this response.
    Response(Response<Body>),
    /// Drop the connection with a TCP RST (SO_LINGER 0), without any response.
    Reset,
}

/// Per-request context: lets long-running handlers (hangs, slow bodies) end promptly when
/// the server shuts down instead of holding Drop up for the whole grace period.
#[derive(Clone)]
pub(crate) struct Ctx {
    shutdown: watch::Receiver<bool>,
}

impl Ctx {
    /// Resolves once the server is shutting down.
    pub(crate) async fn shutdown(&mut self) {
        stopped(&mut self.shutdown).await;
    }
}

/// Resolves once `shutdown` turns true, or its sender is gone (a shutdown too). The
/// guard `wait_for` returns is dropped here: it is not `Send`, and must not live across
/// the awaits of a spawned task.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&stop| stop).await;
}

/// The function a stand-in serves.
pub(crate) type Handler =
    Arc<dyn Fn(Request, Ctx) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

/// A running server: its thread, runtime and listener. Dropping it shuts everything down
/// and joins the thread, so nothing it started outlives it.
pub(crate) struct ServerThread {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Binds `addr` now (so the port is known and connections queue before this returns)
    /// and serves `handler` on a new thread.
    pub(crate) fn spawn(
        name: &str,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: Handler,
    ) -> Self {
        let listener = std::net::TcpListener::bind(addr)
            .unwrap_or_else(|e| panic!("{name}: cannot bind {addr}: {e}"));
        let addr = listener
            .local_addr()
            .expect("a bound listener has a local address");
        listener
            .set_nonblocking(true)
            .expect("tokio needs a non-blocking listener");
        let (shutdown, shutdown_rx) = watch::channel(false);
        let thread_name = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(thread_name)
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for the test server");
                runtime.block_on(accept_loop(listener, tls, handler, shutdown_rx));
                // Whatever is still running after the grace period (a child process
                // killed on drop, a stuck handshake) is cancelled here.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("spawn the test server thread");
        Self {
            addr,
            shutdown,
            thread: Some(thread),
        }
    }

    /// The address actually bound (the ephemeral port resolved).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take() {
            // A panic on the server thread was already reported by the panic hook; a
            // second panic in Drop would only abort the test binary.
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Handler,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = TcpListener::from_std(listener).expect("register the listener with tokio");
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    conns.spawn(serve_conn(
                        tcp,
                        remote,
                        acceptor.clone(),
                        handler.clone(),
                        shutdown.clone(),
                    ));
                }
                // EMFILE and friends: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(GRACE, async { while conns.join_next().await.is_some() {} }).await;
    conns.abort_all();
}

async fn serve_conn(
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    handler: Handler,
    shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let reset = Arc::new(AtomicBool::new(false));
    let stream = ResettableStream {
        inner: tcp,
        reset: reset.clone(),
    };
    match acceptor {
        Some(acceptor) => {
            let Ok(Ok(tls)) =
                tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            else {
                return;
            };
            serve_http(TokioIo::new(tls), remote, handler, shutdown, reset).await;
        }
        None => serve_http(TokioIo::new(stream), remote, handler, shutdown, reset).await,
    }
}

async fn serve_http<I>(
    io: I,
    remote: SocketAddr,
    handler: Handler,
    mut shutdown: watch::Receiver<bool>,
    reset: Arc<AtomicBool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let ctx = Ctx {
        shutdown: shutdown.clone(),
    };
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let handler = handler.clone();
        let ctx = ctx.clone();
        let reset = reset.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    return Ok(text(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read request body: {e}\n"),
                    ));
                }
            };
            let request = Request {
                method: parts.method,
                uri: parts.uri,
                headers: parts.headers,
                body,
                remote,
            };
            match handler(request, ctx).await {
                Reply::Response(response) => Ok(response),
                Reply::Reset => {
                    reset.store(true, Ordering::SeqCst);
                    // An error from the service makes hyper drop the connection at once;
                    // the stream's Drop then turns the close into a RST.
                    Err(io::Error::other("fault injection: reset the connection"))
                }
            }
        }
    });
    let conn = http1::Builder::new().serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.as_mut().await;
        }
    }
}

/// A TCP stream that closes with RST instead of FIN when its flag is set.
struct ResettableStream {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.reset.load(Ordering::SeqCst) {
            // A FIN first would let the client see a clean EOF before the RST.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.inner.set_zero_linger();
        }
    }
}

/// A whole-buffer response body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// Boxes an async block into the future type a [`Handler`] returns.
pub(crate) fn boxed<F>(future: F) -> Pin<Box<dyn Future<Output = Reply> + Send>>
where
    F: Future<Output = Reply> + Send + 'static,
{
    Box::pin(future)
}
