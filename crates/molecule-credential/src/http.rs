//! HTTP plumbing shared by every source: the one kind of client this project builds, and one
//! call with every limit applied (whole-call budget, connect budget, body cap, no redirects).
//!
//! Messages name where we connected (scheme, host, port) and the innermost cause, never a
//! path, query, header or body. [`RawResponse`]'s `Debug` shows the body's length only.

use std::sync::Once;
use std::time::Duration;

use time::OffsetDateTime;

use crate::error::{Class, Error, Result};

/// Largest response body we read.
pub const MAX_BODY: usize = 64 * 1024;
/// The longest `Retry-After` we honour.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);
/// Connection set-up budget, inside the whole-call budget.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// What a call may overrun its budget by before the outer bound cuts it off.
pub const OVERRUN: Duration = Duration::from_millis(250);

/// Installs ring as rustls' process-wide crypto provider, once.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider is already installed; that one serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The scheme, host and port of a URL: what messages may say about where we connected
/// (never userinfo, path or query).
pub fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            match u.port() {
                Some(p) => format!("{}://{host}:{p}", u.scheme()),
                None => format!("{}://{host}", u.scheme()),
            }
        }
        Err(_) => "the configured URL".to_owned(),
    }
}

/// Whether a client will need to verify server certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    /// `https://`: the system's roots (and `SSL_CERT_FILE`), through rustls-platform-verifier.
    Verify,
    /// Plain `http://` only: no root store is loaded. Loading the system's ~140 roots costs
    /// ~10 ms, which on a cold `get` against the default `http://` platform was most of the
    /// call; a client that never sees a certificate has nothing to verify.
    PlainHttpOnly,
}

impl Tls {
    /// What a client for `url` needs.
    pub fn for_url(url: &str) -> Self {
        if url
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
        {
            Tls::PlainHttpOnly
        } else {
            Tls::Verify
        }
    }

    /// What a client for all of `urls` needs.
    pub fn for_urls<'a>(urls: impl IntoIterator<Item = &'a str>) -> Self {
        if urls.into_iter().any(|u| Tls::for_url(u) == Tls::Verify) {
            Tls::Verify
        } else {
            Tls::PlainHttpOnly
        }
    }
}

/// Builds the one kind of HTTP client this project uses: rustls (ring), no redirects (a
/// redirect would carry our bearer somewhere we did not configure), connect ≤ 3 s, and a whole
/// budget of `timeout` per call.
pub fn client(timeout: Duration, tls: Tls) -> Result<reqwest::Client> {
    install_crypto_provider();
    let builder = reqwest::Client::builder()
        .user_agent(concat!("molecule-credential/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .timeout(timeout)
        .pool_max_idle_per_host(1);
    let builder = match tls {
        Tls::Verify => builder,
        Tls::PlainHttpOnly => {
            // An empty root store: should an https URL ever reach this client (a proxy, say),
            // it fails closed rather than trusting anything.
            let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| {
                Error::new(
                    Class::LocalConfig,
                    format!("building the TLS configuration: {e}"),
                )
                .with_source(e)
            })?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
            builder.tls_backend_preconfigured(config)
        }
    };
    builder.build().map_err(|e| {
        Error::new(
            Class::LocalConfig,
            format!("building the HTTP client: {}", root_cause(&e)),
        )
        .with_source(e.without_url())
    })
}

/// What came back from one HTTP call, body capped. Its `Debug` shows the body's length, never
/// its bytes (a body may hold a token).
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After`, parsed as seconds and capped.
    pub retry_after: Option<Duration>,
    /// The server's `Date`, for clock skew.
    pub date: Option<OffsetDateTime>,
    /// GitHub's `x-ratelimit-remaining`.
    pub ratelimit_remaining: Option<u64>,
    /// The body, or `None` when it was larger than [`MAX_BODY`].
    pub body: Option<Vec<u8>>,
}

impl std::fmt::Debug for RawResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let RawResponse {
            status,
            retry_after,
            date,
            ratelimit_remaining,
            body,
        } = self;
        f.debug_struct("RawResponse")
            .field("status", status)
            .field("retry_after", retry_after)
            .field("date", date)
            .field("ratelimit_remaining", ratelimit_remaining)
            .field(
                "body",
                &format_args!(
                    "{}",
                    match body {
                        Some(b) => format!("<{} bytes>", b.len()),
                        None => format!("<more than {MAX_BODY} bytes>"),
                    }
                ),
            )
            .finish()
    }
}

/// Sends `request` and reads at most [`MAX_BODY`] of the answer, all within `timeout`.
/// Connection failures and timeouts are [`Class::Transient`].
pub async fn send(
    request: reqwest::RequestBuilder,
    url: &str,
    timeout: Duration,
) -> Result<RawResponse> {
    let call = async {
        let mut response = request
            .send()
            .await
            .map_err(|e| transport_error(e, url, timeout))?;
        let status = response.status().as_u16();
        let headers = response.headers();
        let retry_after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        let date = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date);
        let ratelimit_remaining = headers
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let too_long = response
            .content_length()
            .is_some_and(|n| n > MAX_BODY as u64);
        let mut body = if too_long { None } else { Some(Vec::new()) };
        while let Some(buf) = body.as_mut() {
            match response
                .chunk()
                .await
                .map_err(|e| transport_error(e, url, timeout))?
            {
                Some(chunk) if buf.len() + chunk.len() <= MAX_BODY => buf.extend_from_slice(&chunk),
                Some(_) => body = None,
                None => break,
            }
        }
        Ok(RawResponse {
            status,
            retry_after,
            date,
            ratelimit_remaining,
            body,
        })
    };
    // reqwest's own timeout covers the body too; this outer bound is the promise that no call
    // outlives its budget whatever a dependency does.
    match tokio::time::timeout(timeout + OVERRUN, call).await {
        Ok(result) => result,
        Err(_) => Err(Error::new(
            Class::Transient,
            format!(
                "{} did not answer within {}s",
                origin(url),
                timeout.as_secs()
            ),
        )),
    }
}

/// A failed request as a transient error. The `reqwest::Error` is kept as the cause without
/// its URL (which may carry a path or query this module never shows).
fn transport_error(e: reqwest::Error, url: &str, timeout: Duration) -> Error {
    let at = origin(url);
    let message = if e.is_timeout() {
        format!("{at} did not answer within {}s", timeout.as_secs())
    } else if e.is_connect() {
        format!("cannot connect to {at}: {}", root_cause(&e))
    } else {
        format!("request to {at} failed: {}", root_cause(&e))
    };
    Error::new(Class::Transient, message).with_source(e.without_url())
}

/// The innermost cause of an error: "connection refused", not the URL-laden wrapper.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Parses an IMF-fixdate (`Sun, 22 Nov 2026 18:00:00 GMT`), the only `Date` form servers send.
pub fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(s.trim(), &format)
        .ok()
        .map(|t| t.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_rfc3339;

    #[test]
    fn http_date() {
        assert_eq!(
            parse_http_date("Sun, 22 Nov 2026 18:00:00 GMT"),
            parse_rfc3339("2026-11-22T18:00:00Z")
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn tls_roots_only_for_https() {
        assert_eq!(
            Tls::for_url("http://host.docker.internal:8080"),
            Tls::PlainHttpOnly
        );
        assert_eq!(Tls::for_url("HTTP://x"), Tls::PlainHttpOnly);
        assert_eq!(Tls::for_url("https://platform.example"), Tls::Verify);
        assert_eq!(
            Tls::for_urls(["http://a", "https://b"]),
            Tls::Verify,
            "one https URL needs the roots"
        );
        assert!(client(Duration::from_secs(1), Tls::PlainHttpOnly).is_ok());
        assert!(client(Duration::from_secs(1), Tls::Verify).is_ok());
    }

    #[test]
    fn origin_hides_userinfo_and_path() {
        assert_eq!(
            origin("http://u:pw@host:8080/admin/x?q=1"),
            "http://host:8080"
        );
        assert_eq!(origin("https://host/a"), "https://host");
    }

    #[test]
    fn debug_shows_the_body_length_only() {
        let r = RawResponse {
            status: 200,
            retry_after: None,
            date: None,
            ratelimit_remaining: None,
            body: Some(br#"{"token":"ghs_SECRET"}"#.to_vec()),
        };
        let shown = format!("{r:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("<22 bytes>"), "{shown}");
    }
}
