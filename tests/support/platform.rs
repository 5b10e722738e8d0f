//! A plain-HTTP stand-in of the token platform that mints GitHub installation tokens,
//! following the real contract:
//!
//! - `GET /workspaces/{WORKSPACE_ID}/github-installation-token` or
//!   `GET /admin/github-installation-token`, with `Authorization: Bearer <bearer>`;
//! - 200 `{"token":"ghs_…","expires_at":"2025-01-01T00:00:00.123Z"}`;
//! - 401 `{"error":"missing/invalid workspace auth token"}` without the right bearer;
//! - 404 `{"error":"no GitHub App configured"}` for a workspace without an app.
//!
//! Like the real platform it caches one token and mints a new one only when less than
//! `remint_below` of its lifetime remains, so callers see the same token repeatedly and
//! then a new one. Faults ([`Fault`]) can be switched on and off while it runs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::channel::Channel;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderValue, RETRY_AFTER};
use hyper::{Method, Response, StatusCode};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::authority::{Issued, TokenAuthority};
use crate::server::{self, Body, Ctx, Reply, Request, ServerThread};

/// How the stand-in is configured.
#[derive(Clone)]
pub struct PlatformOptions {
    /// Lifetime of each minted token.
    pub ttl: Duration,
    /// Mint a new token once the cached one has less than this left.
    pub remint_below: Duration,
    /// The workspace auth token callers must present as `Authorization: Bearer …`.
    pub bearer: String,
    /// When set, only `/workspaces/{this}/…` answers (the admin route and other
    /// workspaces get 404 "no GitHub App configured"); when unset, every route answers.
    pub workspace_id: Option<String>,
}

impl std::fmt::Debug for PlatformOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformOptions")
            .field("ttl", &self.ttl)
            .field("remint_below", &self.remint_below)
            .field("bearer", &format_args!("<{} chars>", self.bearer.len()))
            .field("workspace_id", &self.workspace_id)
            .finish()
    }
}

impl Default for PlatformOptions {
    /// GitHub's one-hour installation tokens, re-minted in their last five minutes.
    fn default() -> Self {
        PlatformOptions {
            ttl: Duration::from_secs(3600),
            remint_below: Duration::from_secs(300),
            bearer: "molecule-test-bearer".to_owned(),
            workspace_id: None,
        }
    }
}

/// A failure the stand-in injects into every request until switched back to
/// [`Fault::None`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// Answer with this status and a JSON error body (429 also gets `Retry-After: 1`).
    Status(u16),
    /// Read the request, then never answer (until the server shuts down).
    Hang,
    /// Read the request, then reset the TCP connection without answering.
    ResetConnection,
    /// Answer normally, but send the body one byte per this interval.
    SlowBody(Duration),
}

/// Called with the running count and the new token each time the stand-in mints one.
pub type MintObserver = Box<dyn Fn(u64, &Issued) + Send + Sync>;

type SharedObserver = Arc<dyn Fn(u64, &Issued) + Send + Sync>;

/// A running platform stand-in; stops when dropped.
pub struct PlatformStandIn {
    server: ServerThread,
    state: Arc<State>,
}

struct State {
    opts: PlatformOptions,
    authority: TokenAuthority,
    cached: Mutex<Option<Issued>>,
    fault: Mutex<Fault>,
    observer: Mutex<Option<SharedObserver>>,
    requests: AtomicU64,
    /// When each request arrived, in order.
    arrivals: Mutex<Vec<Instant>>,
    minted: AtomicU64,
}

impl PlatformStandIn {
    /// Serves plain HTTP at `addr`, minting tokens into `authority`.
    pub fn start(
        addr: SocketAddr,
        opts: PlatformOptions,
        authority: TokenAuthority,
    ) -> PlatformStandIn {
        let state = Arc::new(State {
            opts,
            authority,
            cached: Mutex::new(None),
            fault: Mutex::new(Fault::None),
            observer: Mutex::new(None),
            requests: AtomicU64::new(0),
            arrivals: Mutex::new(Vec::new()),
            minted: AtomicU64::new(0),
        });
        let handler_state = state.clone();
        let server = ServerThread::spawn(
            "platform-standin",
            addr,
            None,
            Arc::new(move |request, ctx| {
                let state = handler_state.clone();
                server::boxed(async move { handle(&state, &request, ctx).await })
            }),
        );
        PlatformStandIn { server, state }
    }

    /// On a free port of 127.0.0.1, with the default options but `bearer`, and a fresh
    /// authority.
    pub fn local(bearer: &str) -> PlatformStandIn {
        PlatformStandIn::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            PlatformOptions {
                bearer: bearer.to_owned(),
                ..PlatformOptions::default()
            },
            TokenAuthority::new(),
        )
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The address bound.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Switches fault injection for the following requests.
    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.state.fault) = fault;
    }

    /// Registers a callback run on every mint (the testkit prints a timeline from it).
    pub fn on_mint(&self, observer: MintObserver) {
        *lock(&self.state.observer) = Some(Arc::from(observer));
    }

    /// The token the platform would hand out now without minting, if any.
    pub fn cached(&self) -> Option<Issued> {
        lock(&self.state.cached).clone()
    }

    /// Requests received, including failed and faulted ones.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// When each request arrived (faulted ones included), in order: for tests of retry
    /// timing.
    pub fn request_times(&self) -> Vec<Instant> {
        lock(&self.state.arrivals).clone()
    }

    /// Tokens minted so far.
    pub fn minted(&self) -> u64 {
        self.state.minted.load(Ordering::Relaxed)
    }

    /// Forgets the cached token: the next request mints a new one whatever the old one has
    /// left, as the platform does once a token it cached was revoked. The old token stays
    /// valid (in the authority) until its own expiry.
    pub fn remint_on_next_request(&self) {
        *lock(&self.state.cached) = None;
    }
}

/// Locks a mutex whose data stays consistent across a panic (each holder does a single
/// read or assignment), so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    server::json(status, &json!({ "error": message }))
}

async fn handle(state: &State, request: &Request, mut ctx: Ctx) -> Reply {
    lock(&state.arrivals).push(Instant::now());
    state.requests.fetch_add(1, Ordering::Relaxed);
    let fault = *lock(&state.fault);
    match fault {
        Fault::None | Fault::SlowBody(_) => {}
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = error(status, &format!("injected fault: HTTP {code}"));
            if status == StatusCode::TOO_MANY_REQUESTS {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            return Reply::Response(response);
        }
        Fault::Hang => {
            ctx.shutdown().await;
            return Reply::Reset;
        }
        Fault::ResetConnection => return Reply::Reset,
    }

    let response = answer(state, request);
    match fault {
        Fault::SlowBody(per_byte) => Reply::Response(slow(response, per_byte, ctx).await),
        _ => Reply::Response(response),
    }
}

fn answer(state: &State, request: &Request) -> Response<Body> {
    let path = request.uri.path();
    let workspace = if path == "/admin/github-installation-token" {
        None
    } else if let Some(id) = path
        .strip_prefix("/workspaces/")
        .and_then(|rest| rest.strip_suffix("/github-installation-token"))
        .filter(|id| !id.is_empty() && !id.contains('/'))
    {
        Some(id)
    } else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    if request.method != Method::GET {
        return error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let presented = request
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented != Some(state.opts.bearer.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing/invalid workspace auth token",
        );
    }
    if let Some(configured) = &state.opts.workspace_id
        && workspace != Some(configured.as_str())
    {
        return error(StatusCode::NOT_FOUND, "no GitHub App configured");
    }

    let issued = current_token(state);
    let expires_at = issued
        .expires_at
        .format(&Rfc3339)
        .expect("a UTC timestamp formats as RFC 3339");
    server::json(
        StatusCode::OK,
        &json!({ "token": issued.token, "expires_at": expires_at }),
    )
}

/// The cached token, or a freshly minted one when the cached one is missing or has less
/// than `remint_below` left.
fn current_token(state: &State) -> Issued {
    let now = OffsetDateTime::now_utc();
    let (issued, minted) = {
        let mut cached = lock(&state.cached);
        match &*cached {
            Some(issued) if now + state.opts.remint_below <= issued.expires_at => {
                (issued.clone(), None)
            }
            _ => {
                let issued = state.authority.issue(state.opts.ttl);
                let n = state.minted.fetch_add(1, Ordering::Relaxed) + 1;
                *cached = Some(issued.clone());
                (issued, Some(n))
            }
        }
    };
    if let Some(n) = minted {
        // Outside the cache lock: an observer that blocks must not stall other requests.
        let observer = lock(&state.observer).clone();
        if let Some(observer) = observer {
            observer(n, &issued);
        }
    }
    issued
}

/// Re-sends `response`'s body one byte at a time, `per_byte` apart, with its full
/// Content-Length announced up front (as a slow network, not a short body).
async fn slow(response: Response<Body>, per_byte: Duration, mut ctx: Ctx) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let length = HeaderValue::from(bytes.len());
    let (mut sender, channel) = Channel::<Bytes>::new(1);
    tokio::spawn(async move {
        for byte in bytes.iter() {
            tokio::select! {
                _ = ctx.shutdown() => return,
                _ = tokio::time::sleep(per_byte) => {}
            }
            if sender
                .send_data(Bytes::copy_from_slice(&[*byte]))
                .await
                .is_err()
            {
                // The client went away.
                return;
            }
        }
    });
    let mut response = Response::from_parts(parts, channel.boxed_unsync());
    response.headers_mut().insert(CONTENT_LENGTH, length);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpStream};
    use std::time::Instant;

    fn start(opts: PlatformOptions) -> (PlatformStandIn, TokenAuthority) {
        let authority = TokenAuthority::new();
        let platform = PlatformStandIn::start(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            opts,
            authority.clone(),
        );
        (platform, authority)
    }

    /// One raw HTTP/1.1 GET; returns the status and body, or the I/O error.
    fn get(platform: &PlatformStandIn, path: &str, bearer: &str) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(platform.addr())?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\r\n"
        )?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let status = raw
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("no status line"))?;
        let body = raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    fn token_of(body: &str) -> (String, OffsetDateTime) {
        let value: serde_json::Value = serde_json::from_str(body).expect("json body");
        let token = value["token"].as_str().expect("token").to_owned();
        let expires_at =
            OffsetDateTime::parse(value["expires_at"].as_str().expect("expires_at"), &Rfc3339)
                .expect("RFC 3339 expires_at");
        (token, expires_at)
    }

    const PATH: &str = "/workspaces/ws-1/github-installation-token";

    #[test]
    fn caches_then_remints_below_threshold() {
        let opts = PlatformOptions {
            ttl: Duration::from_secs(3),
            remint_below: Duration::from_millis(1500),
            bearer: "b3arer".to_owned(),
            workspace_id: None,
        };
        let (platform, authority) = start(opts);
        let (status, body) = get(&platform, PATH, "b3arer").expect("first");
        assert_eq!(status, 200);
        let (first, expires_at) = token_of(&body);
        assert!(first.starts_with("ghs_") && first.len() > 400);
        assert!(body.contains('Z'), "expires_at in UTC");
        assert!(authority.is_valid(&first));
        assert!(expires_at > OffsetDateTime::now_utc());

        let (_, body) =
            get(&platform, "/admin/github-installation-token", "b3arer").expect("cached");
        assert!(token_of(&body).0 == first, "served the cached token");
        assert_eq!(platform.minted(), 1);

        std::thread::sleep(Duration::from_millis(1700));
        let (_, body) = get(&platform, PATH, "b3arer").expect("after threshold");
        let (second, _) = token_of(&body);
        assert!(second != first, "re-minted below the threshold");
        assert_eq!(platform.minted(), 2);
        // The old token stays valid until its own expiry, as on GitHub.
        assert!(authority.is_valid(&first));
        assert_eq!(platform.requests(), 3);

        // Forced: a new token at once, though the cached one has most of its life left.
        platform.remint_on_next_request();
        let (_, body) = get(&platform, PATH, "b3arer").expect("forced");
        let (third, _) = token_of(&body);
        assert!(third != second, "re-minted on request");
        assert_eq!(platform.minted(), 3);
        assert!(authority.is_valid(&second));
    }

    #[test]
    fn auth_and_workspace_routing() {
        let (platform, _) = start(PlatformOptions {
            workspace_id: Some("ws-1".to_owned()),
            ..PlatformOptions::default()
        });
        let bearer = PlatformOptions::default().bearer;
        let (status, body) = get(&platform, PATH, "wrong").expect("bad bearer");
        assert_eq!(status, 401);
        assert_eq!(body, r#"{"error":"missing/invalid workspace auth token"}"#);
        let (status, body) = get(
            &platform,
            "/workspaces/ws-2/github-installation-token",
            &bearer,
        )
        .expect("other ws");
        assert_eq!(status, 404);
        assert_eq!(body, r#"{"error":"no GitHub App configured"}"#);
        let (status, _) =
            get(&platform, "/admin/github-installation-token", &bearer).expect("admin");
        assert_eq!(status, 404);
        assert_eq!(get(&platform, PATH, &bearer).expect("own ws").0, 200);
        assert_eq!(platform.minted(), 1);
    }

    #[test]
    fn faults_switch_at_runtime() {
        let (platform, _) = start(PlatformOptions::default());
        let bearer = PlatformOptions::default().bearer;

        platform.set_fault(Fault::Status(503));
        let (status, body) = get(&platform, PATH, &bearer).expect("503");
        assert_eq!(status, 503);
        assert!(body.contains("\"error\""));

        platform.set_fault(Fault::Status(429));
        let mut stream = TcpStream::connect(platform.addr()).expect("connect");
        write!(
            stream,
            "GET {PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).expect("read");
        assert!(raw.starts_with("HTTP/1.1 429"));
        assert!(raw.to_ascii_lowercase().contains("retry-after: 1\r\n"));

        platform.set_fault(Fault::ResetConnection);
        let err = get(&platform, PATH, &bearer).expect_err("reset");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

        platform.set_fault(Fault::Hang);
        let mut stream = TcpStream::connect(platform.addr()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        write!(stream, "GET {PATH} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        let mut buf = [0u8; 16];
        let err = stream.read(&mut buf).expect_err("no answer while hanging");
        assert!(matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ));

        platform.set_fault(Fault::SlowBody(Duration::from_millis(2)));
        let started = Instant::now();
        let (status, body) = get(&platform, PATH, &bearer).expect("slow body");
        assert_eq!(status, 200);
        let (token, _) = token_of(&body);
        // ~550 bytes at 2 ms each.
        assert!(
            started.elapsed()
                >= Duration::from_millis(2) * u32::try_from(token.len()).expect("small")
        );

        platform.set_fault(Fault::None);
        assert_eq!(get(&platform, PATH, &bearer).expect("healthy").0, 200);
        assert_eq!(platform.minted(), 1);
        // Dropping with a connection still hanging must not block for long.
        let dropped = Instant::now();
        drop(platform);
        assert!(dropped.elapsed() < Duration::from_secs(2));
        drop(stream);
    }
}
