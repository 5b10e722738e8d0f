//! The Molecule platform endpoint that hands out GitHub App installation tokens
//! (DESIGN.md, "Platform endpoint").
//!
//! `GET {PLATFORM_URL}/workspaces/{WORKSPACE_ID}/github-installation-token` (or
//! `/admin/github-installation-token`) with our bearer. Every answer — and every way of not
//! getting one — is mapped to a [`Class`] by [`classify`], a pure function, so the status table
//! is tested without a network. Messages never include the response body: the platform's error
//! text is not ours to echo, and a body may carry a token.

use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;

use crate::config::Config;
use crate::error::{Class, Error, Result};
use crate::http::{RawResponse, Tls};
use crate::secret::Secret;
use crate::token::{Minted, parse_token_body};

/// The bearer's file inside `CONFIGS_DIR`.
pub const AUTH_TOKEN_FILE: &str = ".auth_token";

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

/// Reads the platform bearer from `CONFIGS_DIR/.auth_token`, whitespace trimmed. The file gets
/// the rules of every provisioned secret file ([`crate::secret::read_file`]): a regular file,
/// and a warning when others may read it.
pub fn read_bearer(configs_dir: &Path) -> Result<Secret<String>> {
    let path = configs_dir.join(AUTH_TOKEN_FILE);
    let raw = crate::secret::read_file(&path, "the platform bearer")?;
    let text = std::str::from_utf8(raw.expose()).map_err(|e| {
        Error::new(
            Class::LocalConfig,
            format!("{} is not UTF-8", path.display()),
        )
        .with_source(e)
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
            http: crate::http::client(config.http_timeout, Tls::for_url(&config.platform_url))?,
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
        let response = crate::http::send(request, &self.endpoint, self.timeout).await?;
        classify(&response, now())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_rfc3339;
    use crate::http::parse_http_date;
    use crate::token::MAX_LIFETIME;

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
    fn bearer_is_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_bearer(dir.path()).unwrap_err();
        assert_eq!(e.class(), Class::LocalConfig);
        let write = |text: &str| {
            let file = dir.path().join(AUTH_TOKEN_FILE);
            std::fs::write(&file, text).unwrap();
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        };
        write("  \n");
        assert!(
            read_bearer(dir.path())
                .unwrap_err()
                .message()
                .contains("empty")
        );
        write(" bearer-1\n");
        assert_eq!(read_bearer(dir.path()).unwrap().expose(), "bearer-1");
    }
}
