//! The Molecule platform endpoint that hands out GitHub App installation tokens
//! (DESIGN.md, "Platform endpoint").
//!
//! `GET {PLATFORM_URL}/workspaces/{WORKSPACE_ID}/github-installation-token` (or
//! `/admin/github-installation-token`) with our bearer. Every answer — and every way of not
//! getting one — is mapped to a [`Class`] by [`classify`], a pure function, so the status table
//! is tested without a network. Messages never include the response body: the platform's error
//! text is not ours to echo, and a body may carry a token.

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

use crate::clock::parse_rfc3339;
use crate::config::Config;
use crate::error::{Class, Error, Result};
use crate::secret::{Secret, is_valid_token};

/// Largest response body we read.
pub const MAX_BODY: usize = 64 * 1024;
/// How long we cache a token whose `expires_at` is missing or unparseable.
pub const UNKNOWN_EXPIRY_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// The longest we trust any token to live: GitHub installation tokens live one hour, so a
/// later `expires_at` (a platform bug, or year 2999) is capped and we ask again in an hour.
pub const MAX_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// The longest `Retry-After` we honour.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);
/// Connection set-up budget, inside the whole-call budget.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The bearer's file inside `CONFIGS_DIR`.
pub const AUTH_TOKEN_FILE: &str = ".auth_token";

/// A token a source handed us.
#[derive(Clone, Debug)]
pub struct Minted {
    /// The token.
    pub token: Secret<String>,
    /// When we treat it as dead: the source's `expires_at`, corrected for clock skew and capped.
    pub expires_at: OffsetDateTime,
    /// False when the source gave no usable expiry and [`UNKNOWN_EXPIRY_LIFETIME`] was assumed.
    pub expiry_known: bool,
    /// The HTTP status of the answer.
    pub status: u16,
    /// The GitHub App installation that minted it (the `github-app` source).
    pub installation_id: Option<u64>,
}

/// The endpoint URL for this configuration.
pub fn endpoint(config: &Config) -> String {
    match &config.workspace_id {
        Some(ws) => format!(
            "{}/workspaces/{ws}/github-installation-token",
            config.platform_url
        ),
        None => format!("{}/admin/github-installation-token", config.platform_url),
    }
}

/// Reads the platform bearer from `CONFIGS_DIR/.auth_token`, whitespace trimmed.
pub fn read_bearer(configs_dir: &Path) -> Result<Secret<String>> {
    let path = configs_dir.join(AUTH_TOKEN_FILE);
    let raw = std::fs::read(&path)
        .map_err(|e| Error::io(Class::LocalConfig, "reading the platform bearer", &path, &e))?;
    let text = String::from_utf8(raw).map_err(|_| {
        Error::new(
            Class::LocalConfig,
            format!("{} is not UTF-8", path.display()),
        )
    })?;
    let bearer = text.trim();
    if bearer.is_empty() {
        return Err(Error::new(
            Class::LocalConfig,
            format!("{} is empty", path.display()),
        ));
    }
    if !bearer.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::new(
            Class::LocalConfig,
            format!(
                "{} holds characters not allowed in a bearer token",
                path.display()
            ),
        ));
    }
    Ok(Secret::new(bearer.to_owned()))
}

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

/// An HTTP client for the platform. Building one costs a TLS configuration; the helper only
/// builds it on a cache miss.
#[derive(Debug)]
pub struct PlatformClient {
    http: reqwest::Client,
    endpoint: String,
    configs_dir: std::path::PathBuf,
    org_id: Option<String>,
    timeout: Duration,
}

impl PlatformClient {
    /// Builds a client for `config`.
    pub fn new(config: &Config) -> Result<Self> {
        Ok(Self {
            http: http_client(config.http_timeout, Tls::for_url(&config.platform_url))?,
            endpoint: endpoint(config),
            configs_dir: config.configs_dir.clone(),
            org_id: config.org_id.clone(),
            timeout: config.http_timeout,
        })
    }

    /// Asks the platform for a token. `now` is read after the answer arrives.
    pub async fn fetch(&self, now: impl Fn() -> OffsetDateTime) -> Result<Minted> {
        // Read each time: the bearer file may be rotated under us.
        let bearer = read_bearer(&self.configs_dir)?;
        let mut request = self
            .http
            .get(&self.endpoint)
            .bearer_auth(bearer.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(org) = &self.org_id {
            request = request.header("X-Molecule-Org-Id", org);
        }
        let response = get_capped(request, &self.endpoint, self.timeout).await?;
        classify(&response, now())
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
}

/// Builds the one kind of HTTP client this project uses: rustls (ring), no redirects (a
/// redirect would carry our bearer somewhere we did not configure), connect ≤ 3 s, and a whole
/// budget of `timeout` per call.
pub fn http_client(timeout: Duration, tls: Tls) -> Result<reqwest::Client> {
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
    })
}

/// What came back from one HTTP call, body capped.
#[derive(Debug)]
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

/// Sends `request` and reads at most [`MAX_BODY`] of the answer, all within `timeout`.
/// Connection failures and timeouts are [`Class::Transient`].
pub async fn get_capped(
    request: reqwest::RequestBuilder,
    url: &str,
    timeout: Duration,
) -> Result<RawResponse> {
    let call = async {
        let mut response = request
            .send()
            .await
            .map_err(|e| transport_error(&e, url, timeout))?;
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
                .map_err(|e| transport_error(&e, url, timeout))?
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
    match tokio::time::timeout(timeout + Duration::from_millis(250), call).await {
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

fn transport_error(e: &reqwest::Error, url: &str, timeout: Duration) -> Error {
    let at = origin(url);
    if e.is_timeout() {
        Error::new(
            Class::Transient,
            format!("{at} did not answer within {}s", timeout.as_secs()),
        )
    } else if e.is_connect() {
        Error::new(
            Class::Transient,
            format!("cannot connect to {at}: {}", root_cause(e)),
        )
    } else {
        Error::new(
            Class::Transient,
            format!("request to {at} failed: {}", root_cause(e)),
        )
    }
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

#[derive(Deserialize)]
struct TokenBody {
    token: Option<String>,
    expires_at: Option<String>,
}

/// Maps one platform answer to a token or a classified error (DESIGN.md's status table).
pub fn classify(response: &RawResponse, now: OffsetDateTime) -> Result<Minted> {
    let status = response.status;
    let fail = |class: Class, message: &str| Err(Error::new(class, message).with_status(status));
    match status {
        200 => {}
        401 | 403 => {
            return fail(
                Class::Auth,
                "the platform rejected our bearer (CONFIGS_DIR/.auth_token)",
            );
        }
        404 => {
            return fail(
                Class::NotConfigured,
                "the platform has no GitHub App configured for this workspace",
            );
        }
        429 => {
            return Err(Error::new(
                Class::RateLimited,
                match response.retry_after {
                    Some(after) => format!(
                        "the platform is rate limiting us; retry after {}s",
                        after.as_secs()
                    ),
                    None => "the platform is rate limiting us".to_owned(),
                },
            )
            .with_status(status)
            .with_retry_after(response.retry_after));
        }
        408 | 500..=599 => {
            return fail(Class::Transient, "the platform failed to refresh the token");
        }
        300..=399 => {
            return fail(
                Class::Protocol,
                "the platform answered with a redirect; set PLATFORM_URL to the final address",
            );
        }
        _ => {
            return fail(
                Class::Protocol,
                "the platform answered with an unexpected status",
            );
        }
    }
    parse_token_body(response, now, "the platform")
}

/// Reads `{"token": …, "expires_at": …}` from a successful answer (the platform's and GitHub's
/// share this shape). `who` names the source in messages, which never quote the body.
pub fn parse_token_body(response: &RawResponse, now: OffsetDateTime, who: &str) -> Result<Minted> {
    let status = response.status;
    let fail = |class: Class, message: String| Err(Error::new(class, message).with_status(status));
    let Some(body) = &response.body else {
        return fail(
            Class::Protocol,
            format!("{who}'s answer is larger than 64 KiB"),
        );
    };
    let parsed: TokenBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        // Only the position: serde's message may quote the body.
        Err(e) => {
            return fail(
                Class::Protocol,
                format!(
                    "{who}'s answer is not the expected JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            );
        }
    };
    let token = match parsed.token {
        Some(t) if is_valid_token(&t) => t,
        Some(t) if t.is_empty() => {
            return fail(Class::Protocol, format!("{who} answered an empty token"));
        }
        Some(_) => {
            return fail(
                Class::Protocol,
                format!("{who}'s token has characters a token cannot have"),
            );
        }
        None => return fail(Class::Protocol, format!("{who}'s answer has no token")),
    };
    let (expires_at, expiry_known) = match parsed.expires_at.as_deref().and_then(parse_rfc3339) {
        Some(at) => (effective_expiry(at, now, response.date), true),
        None => (now + UNKNOWN_EXPIRY_LIFETIME, false),
    };
    if expires_at <= now {
        return fail(
            Class::Protocol,
            format!("{who} answered a token that has already expired"),
        );
    }
    Ok(Minted {
        token: Secret::new(token),
        expires_at: expires_at
            .min(now.saturating_add(MAX_LIFETIME.try_into().unwrap_or(time::Duration::HOUR))),
        expiry_known,
        status,
        installation_id: None,
    })
}

/// The expiry we act on. With the server's `Date` we can tell how long the token has left by
/// the server's clock; whichever clock is wrong, acting on the earlier of the two readings
/// never serves a dead token. (Checked arithmetic: a server whose clock reads 1970 and a
/// token "expiring" in 9999 must not overflow.)
pub fn effective_expiry(
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
    server_date: Option<OffsetDateTime>,
) -> OffsetDateTime {
    match server_date.and_then(|date| now.checked_add(expires_at - date)) {
        Some(by_server) => expires_at.min(by_server),
        None => expires_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        parse_rfc3339("2026-11-22T18:00:00Z").unwrap()
    }

    fn raw(status: u16, body: &str) -> RawResponse {
        RawResponse {
            status,
            retry_after: None,
            date: None,
            ratelimit_remaining: None,
            body: Some(body.as_bytes().to_vec()),
        }
    }

    fn class_of(r: &RawResponse) -> Class {
        match classify(r, now()) {
            Ok(_) => Class::Ok,
            Err(e) => e.class(),
        }
    }

    #[test]
    fn status_table() {
        let ok = r#"{"token":"ghs_abc","expires_at":"2026-11-22T19:00:00Z"}"#;
        let rows: &[(u16, &str, Class)] = &[
            (200, ok, Class::Ok),
            (
                401,
                r#"{"error":"missing/invalid workspace auth token"}"#,
                Class::Auth,
            ),
            (
                403,
                r#"{"error":"missing/invalid workspace auth token"}"#,
                Class::Auth,
            ),
            (
                404,
                r#"{"error":"no GitHub App configured"}"#,
                Class::NotConfigured,
            ),
            (404, "", Class::NotConfigured),
            (429, r#"{"error":"slow down"}"#, Class::RateLimited),
            (500, r#"{"error":"token refresh failed"}"#, Class::Transient),
            (502, "", Class::Transient),
            (503, r#"{"code":"platform_unavailable"}"#, Class::Transient),
            (504, "", Class::Transient),
            (200, "not json", Class::Protocol),
            (
                200,
                r#"{"token":"","expires_at":"2026-11-22T19:00:00Z"}"#,
                Class::Protocol,
            ),
            (
                200,
                r#"{"expires_at":"2026-11-22T19:00:00Z"}"#,
                Class::Protocol,
            ),
            (
                200,
                r#"{"token":"ghs_a\nhost=evil","expires_at":"2026-11-22T19:00:00Z"}"#,
                Class::Protocol,
            ),
            (
                200,
                r#"{"token":"ghs_abc","expires_at":"2026-11-22T17:00:00Z"}"#,
                Class::Protocol,
            ),
            (302, "", Class::Protocol),
            (400, "", Class::Protocol),
        ];
        for (status, body, want) in rows {
            assert_eq!(class_of(&raw(*status, body)), *want, "{status} {body}");
        }
        let big = RawResponse {
            body: None,
            ..raw(200, "")
        };
        assert_eq!(class_of(&big), Class::Protocol);
    }

    #[test]
    fn errors_carry_status_and_never_the_body() {
        let e = classify(&raw(401, r#"{"error":"ghs_SECRET"}"#), now()).unwrap_err();
        assert_eq!(e.status(), Some(401));
        let e = classify(&raw(200, r#"{"token":1,"x":"ghs_SECRET"}"#), now()).unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }

    #[test]
    fn retry_after_is_carried() {
        let r = RawResponse {
            retry_after: Some(Duration::from_secs(30)),
            ..raw(429, "{}")
        };
        let e = classify(&r, now()).unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
    }

    #[test]
    fn expiry_from_any_offset_and_fraction() {
        let m = classify(
            &raw(
                200,
                r#"{"token":"ghs_a","expires_at":"2026-11-22T20:30:00.123+02:00"}"#,
            ),
            now(),
        )
        .unwrap();
        assert_eq!(
            m.expires_at,
            parse_rfc3339("2026-11-22T18:30:00.123Z").unwrap()
        );
        assert!(m.expiry_known);
    }

    #[test]
    fn missing_or_bad_expiry_caches_ten_minutes() {
        for body in [
            r#"{"token":"ghs_a"}"#,
            r#"{"token":"ghs_a","expires_at":"soon"}"#,
        ] {
            let m = classify(&raw(200, body), now()).unwrap();
            assert_eq!(m.expires_at, now() + Duration::from_secs(600));
            assert!(!m.expiry_known);
        }
    }

    #[test]
    fn far_future_expiry_is_capped() {
        let m = classify(
            &raw(
                200,
                r#"{"token":"ghs_a","expires_at":"2999-01-01T00:00:00Z"}"#,
            ),
            now(),
        )
        .unwrap();
        assert_eq!(m.expires_at, now() + MAX_LIFETIME);
    }

    #[test]
    fn skew_takes_the_earlier_reading() {
        let exp = parse_rfc3339("2026-11-22T19:00:00Z").unwrap();
        // Server clock 10 minutes ahead of ours: by its clock 50 minutes are left.
        let server = Some(parse_rfc3339("2026-11-22T18:10:00Z").unwrap());
        assert_eq!(
            effective_expiry(exp, now(), server),
            parse_rfc3339("2026-11-22T18:50:00Z").unwrap()
        );
        // Server clock behind ours: our own reading is the earlier one.
        let server = Some(parse_rfc3339("2026-11-22T17:50:00Z").unwrap());
        assert_eq!(effective_expiry(exp, now(), server), exp);
        assert_eq!(effective_expiry(exp, now(), None), exp);
    }

    #[test]
    fn extreme_dates_do_not_overflow() {
        // Found by the property tests: a server clock reset to 1970 and a token "expiring" in
        // 9999 overflowed the skew correction.
        let epoch = parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT").unwrap();
        let r = RawResponse {
            date: Some(epoch),
            ..raw(
                200,
                r#"{"token":"ghs_a","expires_at":"9999-01-01T00:00:00Z"}"#,
            )
        };
        let m = classify(&r, now()).unwrap();
        assert_eq!(m.expires_at, now() + MAX_LIFETIME);
    }

    #[test]
    fn http_date() {
        assert_eq!(
            parse_http_date("Sun, 22 Nov 2026 18:00:00 GMT"),
            Some(now())
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn endpoint_routes() {
        let mut c = Config::load(|_| None).config;
        c.platform_url = "http://p:8080".into();
        assert_eq!(
            endpoint(&c),
            "http://p:8080/admin/github-installation-token"
        );
        c.workspace_id = Some("ws-1".into());
        assert_eq!(
            endpoint(&c),
            "http://p:8080/workspaces/ws-1/github-installation-token"
        );
    }

    #[test]
    fn tls_roots_only_for_https() {
        assert_eq!(
            Tls::for_url("http://host.docker.internal:8080"),
            Tls::PlainHttpOnly
        );
        assert_eq!(Tls::for_url("HTTP://x"), Tls::PlainHttpOnly);
        assert_eq!(Tls::for_url("https://platform.example"), Tls::Verify);
        assert!(http_client(Duration::from_secs(1), Tls::PlainHttpOnly).is_ok());
        assert!(http_client(Duration::from_secs(1), Tls::Verify).is_ok());
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
    fn bearer_is_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_bearer(dir.path()).unwrap_err();
        assert_eq!(e.class(), Class::LocalConfig);
        std::fs::write(dir.path().join(AUTH_TOKEN_FILE), "  \n").unwrap();
        assert!(
            read_bearer(dir.path())
                .unwrap_err()
                .message()
                .contains("empty")
        );
        std::fs::write(dir.path().join(AUTH_TOKEN_FILE), " bearer-1\n").unwrap();
        assert_eq!(read_bearer(dir.path()).unwrap().expose(), "bearer-1");
    }
}
