//! The `github-app` token source: installation tokens minted straight from a GitHub App
//! (MOLECULE_TOKEN_SOURCE=github-app), for teams without the Molecule platform.
//!
//! - The App authenticates with a JWT signed RS256 by its private key (PKCS#1 as GitHub hands
//!   it out, or PKCS#8), or by a command that holds the key elsewhere ([`signer`]): `iss` the
//!   client ID when there is one, else the App ID; `iat` 60 s in the past and `exp` 9 minutes
//!   ahead, as GitHub recommends, by the *server's* clock: every answer's `Date` header
//!   updates our estimate of the skew, and a JWT refused for its time claims is retried once
//!   with the new estimate. A JWT is reused while it is valid by that estimate with a minute
//!   to spare, so a signer runs once per mint, not once per call.
//! - `POST /app/installations/{id}/access_tokens` mints, optionally narrowed to repositories
//!   and permissions; the answer's `expires_at` drives the cache as the platform's does.
//! - `GET /orgs/{owner}/installation`, then `GET /users/{owner}/installation`, discover which
//!   installation serves an owner.
//! - `DELETE /installation/token` revokes a token, sent as `Authorization: Bearer <token>`
//!   (which works for every token shape).
//!
//! Signing uses ring (already in the tree through rustls): no JWT crate needed.

pub mod signer;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::config::{Config, GithubAppConfig, Issuer, vars};
use crate::error::{Class, Error, Result};
use crate::http::{RawResponse, Tls};
use crate::secret::Secret;
use crate::token::{Minted, parse_token_body};

/// How far back `iat` is set, against clock drift (GitHub's recommendation).
pub const JWT_BACKDATE: Duration = Duration::from_secs(60);
/// How far ahead `exp` is set: GitHub refuses more than 10 minutes.
pub const JWT_LIFETIME: Duration = Duration::from_secs(9 * 60);
/// The REST API version every request names.
pub const API_VERSION: &str = "2022-11-28";
/// Skew below this is noise (the `Date` header has one-second resolution).
const SKEW_NOISE: i64 = 2;
/// A JWT is signed anew when it has less than this left, by the server's clock.
const JWT_REUSE_MARGIN: Duration = Duration::from_secs(60);

/// The App's identity and what signs for it: its private key, or a command holding it.
pub struct AppKey {
    issuer: Issuer,
    signing: Signing,
}

enum Signing {
    Key(Box<RsaKeyPair>),
    Command(signer::Signer),
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let signing = match self.signing {
            Signing::Key(_) => "key file",
            Signing::Command(_) => "signer",
        };
        f.debug_struct("AppKey")
            .field("issuer", &self.issuer)
            .field("signing", &signing)
            .finish()
    }
}

impl AppKey {
    /// What `app` configures: its issuer, and either the signer or the key file (never both).
    pub fn from_config(app: &GithubAppConfig) -> Result<Self> {
        let missing = |what: &str| {
            Error::new(
                Class::LocalConfig,
                format!("MOLECULE_TOKEN_SOURCE=github-app needs {what}"),
            )
        };
        let issuer = app.issuer().ok_or_else(|| {
            missing(&format!(
                "{} or {}",
                vars::MOLECULE_GITHUB_APP_ID,
                vars::MOLECULE_GITHUB_APP_CLIENT_ID
            ))
        })?;
        match (&app.signer, &app.private_key_file) {
            (Some(_), Some(_)) => Err(Error::new(
                Class::LocalConfig,
                format!(
                    "{} and {} are both set: the App's key is either with the signer or in                      the file; unset one",
                    vars::MOLECULE_GITHUB_APP_SIGNER,
                    vars::MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE
                ),
            )),
            (Some(command), None) => Ok(Self::with_signer(issuer, command.clone())),
            (None, Some(path)) => Self::load(issuer, path),
            (None, None) => Err(missing(&format!(
                "{} or {}",
                vars::MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE,
                vars::MOLECULE_GITHUB_APP_SIGNER
            ))),
        }
    }

    /// An App whose JWTs `command` signs ([`signer`]): no key file is read.
    pub fn with_signer(issuer: Issuer, command: Secret<String>) -> Self {
        Self {
            issuer,
            signing: Signing::Command(signer::Signer::new(command)),
        }
    }

    /// Loads the PEM private key at `path` for the App `issuer` names. The file gets the
    /// rules of every secret file ([`crate::secret::read_file`]).
    pub fn load(issuer: Issuer, path: &Path) -> Result<Self> {
        let bad =
            |what: &str| Error::new(Class::LocalConfig, format!("{}: {what}", path.display()));
        let pem = crate::secret::read_file(path, "the GitHub App private key")?;
        let der = PrivateKeyDer::from_pem_slice(pem.expose())
            .map_err(|_| bad("not a PEM private key"))?;
        let key = match &der {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            _ => return Err(bad("not an RSA key (GitHub App keys are RSA)")),
        }
        .map_err(|_| bad("the RSA key was rejected"))?;
        Ok(Self {
            issuer,
            signing: Signing::Key(Box::new(key)),
        })
    }

    /// A JWT for this App, valid from `server_now − 60 s` to `server_now + 9 min`.
    pub async fn jwt(&self, server_now: OffsetDateTime) -> Result<Jwt> {
        let iat = (server_now - JWT_BACKDATE).unix_timestamp();
        let exp = (server_now + JWT_LIFETIME).unix_timestamp();
        let iss = match &self.issuer {
            Issuer::AppId(id) => serde_json::json!(id),
            Issuer::ClientId(id) => serde_json::json!(id),
        };
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD
            .encode(serde_json::json!({"iat": iat, "exp": exp, "iss": iss}).to_string());
        let signing_input = format!("{header}.{claims}");
        let signature = match &self.signing {
            Signing::Key(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    signing_input.as_bytes(),
                    &mut signature,
                )
                .map_err(|_| Error::new(Class::LocalConfig, "signing the GitHub App JWT failed"))?;
                signature
            }
            Signing::Command(signer) => signer.sign(&signing_input).await?,
        };
        Ok(Jwt {
            token: Secret::new(format!(
                "{signing_input}.{}",
                URL_SAFE_NO_PAD.encode(signature)
            )),
            iat,
            exp,
        })
    }
}

/// A signed JWT and its time claims (Unix seconds, by the server's clock as estimated).
#[derive(Clone, Debug)]
pub struct Jwt {
    /// The JWT.
    pub token: Secret<String>,
    /// Its `iat`.
    pub iat: i64,
    /// Its `exp`.
    pub exp: i64,
}

impl Jwt {
    /// Whether the server, at `server_now`, takes it with [`JWT_REUSE_MARGIN`] to spare.
    fn fresh_at(&self, server_now: OffsetDateTime) -> bool {
        let now = server_now.unix_timestamp();
        self.iat <= now && now + JWT_REUSE_MARGIN.as_secs().cast_signed() < self.exp
    }
}

/// Narrowing for minted tokens.
#[derive(Clone, Debug, Default)]
pub struct Narrowing {
    /// Repository names (empty: all the installation covers).
    pub repositories: Vec<String>,
    /// Permission → level (empty: all the App has).
    pub permissions: std::collections::BTreeMap<String, String>,
}

impl Narrowing {
    /// The narrowing `config` asks for.
    pub fn from_config(app: &GithubAppConfig) -> Self {
        Self {
            repositories: app.repositories.clone(),
            permissions: app.permissions.clone(),
        }
    }

    fn body(&self) -> Option<serde_json::Value> {
        if self.repositories.is_empty() && self.permissions.is_empty() {
            return None;
        }
        let mut body = serde_json::Map::new();
        if !self.repositories.is_empty() {
            body.insert("repositories".into(), serde_json::json!(self.repositories));
        }
        if !self.permissions.is_empty() {
            body.insert("permissions".into(), serde_json::json!(self.permissions));
        }
        Some(serde_json::Value::Object(body))
    }
}

/// A client for one App against the REST API.
pub struct AppClient {
    http: reqwest::Client,
    key: AppKey,
    /// The last JWT, reused while it is fresh ([`Jwt::fresh_at`]).
    jwt: Mutex<Option<Jwt>>,
    timeout: Duration,
    narrowing: Narrowing,
    /// Server clock minus ours, as the last `Date` header said.
    skew: Mutex<time::Duration>,
}

impl std::fmt::Debug for AppClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppClient")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct InstallationBody {
    id: u64,
}

impl AppClient {
    /// A client for the App `config` describes.
    pub fn new(config: &Config) -> Result<Self> {
        let app = &config.github_app;
        let key = AppKey::from_config(app)?;
        // API bases may be http:// for a local stand-in; the client still verifies https.
        let bases: Vec<String> = config.hosts.iter().map(|h| app.api_base(h)).collect();
        Ok(Self {
            http: crate::http::client(
                config.http_timeout,
                Tls::for_urls(bases.iter().map(String::as_str)),
            )?,
            key,
            jwt: Mutex::new(None),
            timeout: config.http_timeout,
            narrowing: Narrowing::from_config(app),
            skew: Mutex::new(time::Duration::ZERO),
        })
    }

    /// A JWT valid at `server_now`: the last one while it is fresh, else a new one.
    async fn jwt(&self, server_now: OffsetDateTime) -> Result<Secret<String>> {
        let held = lock(&self.jwt).clone();
        if let Some(jwt) = held.filter(|j| j.fresh_at(server_now)) {
            return Ok(jwt.token);
        }
        let jwt = self.key.jwt(server_now).await?;
        let token = jwt.token.clone();
        *lock(&self.jwt) = Some(jwt);
        Ok(token)
    }

    /// The server's clock minus ours, as last observed.
    pub fn skew(&self) -> time::Duration {
        *lock(&self.skew)
    }

    fn observe(&self, response: &RawResponse, local_now: OffsetDateTime) {
        if let Some(date) = response.date {
            let skew = date - local_now;
            let mut held = lock(&self.skew);
            if (skew - *held).whole_seconds().abs() >= SKEW_NOISE {
                if skew.whole_seconds().abs() >= 30 {
                    tracing::warn!(
                        skew_sec = skew.whole_seconds(),
                        "the GitHub API's clock differs from ours; JWTs follow the server's"
                    );
                }
                *held = skew;
            } else if skew.whole_seconds().abs() < SKEW_NOISE {
                *held = time::Duration::ZERO;
            }
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&serde_json::Value>,
        now: &dyn Fn() -> OffsetDateTime,
    ) -> Result<RawResponse> {
        let mut retried = false;
        loop {
            let jwt = self.jwt(now() + self.skew()).await?;
            let mut request = self
                .http
                .request(method.clone(), url)
                .bearer_auth(jwt.expose())
                .header(reqwest::header::ACCEPT, "application/vnd.github+json")
                .header("X-GitHub-Api-Version", API_VERSION);
            if let Some(b) = body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.to_string());
            }
            let response = crate::http::send(request, url, self.timeout).await?;
            let before = self.skew();
            self.observe(&response, now());
            // A JWT refused for its time claims with a clock we had wrong: once more, on the
            // server's clock.
            if response.status == 401 && !retried && self.skew() != before {
                retried = true;
                continue;
            }
            return Ok(response);
        }
    }

    /// Mints a token of installation `installation` from the API at `api`.
    pub async fn mint(
        &self,
        api: &str,
        installation: u64,
        now: impl Fn() -> OffsetDateTime,
    ) -> Result<Minted> {
        let url = format!("{api}/app/installations/{installation}/access_tokens");
        let body = self.narrowing.body();
        let response = self
            .call(reqwest::Method::POST, &url, body.as_ref(), &now)
            .await?;
        let local = now();
        let mut minted = match response.status {
            200 | 201 => parse_token_body(&response, local, "GitHub")?,
            _ => {
                return Err(classify_failure(
                    &response,
                    &format!("installation {installation}"),
                ));
            }
        };
        minted.installation_id = Some(installation);
        Ok(minted)
    }

    /// Which installation of this App serves `owner` (an organisation or a user).
    pub async fn discover(
        &self,
        api: &str,
        owner: &str,
        now: impl Fn() -> OffsetDateTime,
    ) -> Result<u64> {
        for kind in ["orgs", "users"] {
            let url = format!("{api}/{kind}/{owner}/installation");
            let response = self.call(reqwest::Method::GET, &url, None, &now).await?;
            match response.status {
                200 => {
                    let body = response.body.as_deref().unwrap_or_default();
                    let parsed: InstallationBody = serde_json::from_slice(body).map_err(|e| {
                        Error::new(
                            Class::Protocol,
                            format!("GitHub's installation answer is not the expected JSON (line {}, column {})", e.line(), e.column()),
                        )
                    })?;
                    return Ok(parsed.id);
                }
                404 => continue,
                _ => {
                    return Err(classify_failure(
                        &response,
                        &format!("the installation for {owner}"),
                    ));
                }
            }
        }
        Err(Error::new(
            Class::NotConfigured,
            format!("the GitHub App is not installed for {owner}; install it, or map the owner in MOLECULE_GITHUB_APP_INSTALLATIONS"),
        )
        .with_status(404))
    }

    /// Revokes `token` (`DELETE /installation/token`, authenticated by the token itself as
    /// `Bearer`, which GitHub takes for every token shape).
    pub async fn revoke(&self, api: &str, token: &Secret<String>) -> Result<()> {
        let url = format!("{api}/installation/token");
        let mut authorization =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| Error::new(Class::LocalConfig, "the token cannot go in a header"))?;
        // Kept out of any header dump (reqwest's Debug, HTTP/2 indexing): it is a live token.
        authorization.set_sensitive(true);
        let request = self
            .http
            .delete(&url)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION);
        let response = crate::http::send(request, &url, self.timeout).await?;
        match response.status {
            204 => Ok(()),
            // Already dead: nothing left to revoke.
            401 => Ok(()),
            _ => Err(classify_failure(&response, "token revocation")),
        }
    }

    /// Asks the API at `api` whether it accepts this App's JWT (`GET /app`): for `doctor`.
    /// Returns the status and the server's `Date`.
    pub async fn check(
        &self,
        api: &str,
        now: impl Fn() -> OffsetDateTime,
    ) -> Result<(u16, Option<OffsetDateTime>)> {
        let url = format!("{api}/app");
        let response = self.call(reqwest::Method::GET, &url, None, &now).await?;
        Ok((response.status, response.date))
    }
}

/// A poisoned lock still holds a usable value here (a skew estimate, a JWT).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// GitHub's error statuses, mapped to the classes (messages never quote the body).
pub fn classify_failure(response: &RawResponse, what: &str) -> Error {
    let status = response.status;
    let (class, message) = match status {
        401 => (
            Class::Auth,
            format!(
                "GitHub refused the App's JWT for {what}: check MOLECULE_GITHUB_APP_ID (or \
                 MOLECULE_GITHUB_APP_CLIENT_ID) and the private key or signer"
            ),
        ),
        403 if response.retry_after.is_some() || response.ratelimit_remaining == Some(0) => (
            Class::RateLimited,
            format!("GitHub is rate limiting the App ({what})"),
        ),
        403 => (Class::Auth, format!("GitHub refused access to {what}")),
        404 => (
            Class::NotConfigured,
            format!("GitHub does not know {what} for this App"),
        ),
        422 => (
            Class::LocalConfig,
            format!(
                "GitHub refused the narrowing for {what}: a repository or permission the installation does not have"
            ),
        ),
        429 => (
            Class::RateLimited,
            format!("GitHub is rate limiting the App ({what})"),
        ),
        408 | 500..=599 => (Class::Transient, format!("GitHub failed ({what})")),
        _ => (
            Class::Protocol,
            format!("GitHub answered an unexpected status ({what})"),
        ),
    };
    Error::new(class, message)
        .with_status(status)
        .with_retry_after(response.retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private copy of the test key (the checkout's is readable by others, which is warned
    /// about).
    fn key_path() -> (tempfile::TempDir, std::path::PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/github-app-test-key.pem"),
            &path,
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        (dir, path)
    }

    #[tokio::test]
    async fn jwt_shape_and_claims() {
        let (_dir, path) = key_path();
        let key = AppKey::load(Issuer::AppId(4242), &path).unwrap();
        let now = crate::clock::parse_rfc3339("2026-11-22T18:00:00Z").unwrap();
        let jwt = key.jwt(now).await.unwrap();
        assert!(jwt.fresh_at(now) && jwt.fresh_at(now + time::Duration::minutes(7)));
        assert!(
            !jwt.fresh_at(now + time::Duration::minutes(8)),
            "a minute to spare"
        );
        assert!(
            !jwt.fresh_at(now - time::Duration::minutes(2)),
            "issued in the future"
        );
        let parts: Vec<&str> = jwt.token.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], 4242);
        assert_eq!(claims["iat"], now.unix_timestamp() - 60);
        assert_eq!(claims["exp"], now.unix_timestamp() + 540);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(),
            256,
            "a 2048-bit signature"
        );
        // A client ID is the issuer as a string.
        let key = AppKey::load(Issuer::ClientId("Iv23liAbc".into()), &path).unwrap();
        let jwt = key.jwt(now).await.unwrap();
        let claims = jwt.token.expose().split('.').nth(1).unwrap().to_owned();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert_eq!(claims["iss"], "Iv23liAbc");
    }

    #[test]
    fn the_app_needs_an_issuer_and_one_way_to_sign() {
        let (_dir, path) = key_path();
        let app = |id: Option<u64>, client: Option<&str>, key: bool, signer: bool| {
            AppKey::from_config(&GithubAppConfig {
                app_id: id,
                client_id: client.map(str::to_owned),
                private_key_file: key.then(|| path.clone()),
                signer: signer.then(|| Secret::new("false".to_owned())),
                ..GithubAppConfig::default()
            })
        };
        let e = app(Some(1), None, true, true).unwrap_err();
        assert_eq!(e.class(), Class::LocalConfig);
        assert!(
            e.message().contains(
                "MOLECULE_GITHUB_APP_SIGNER and MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE are both set"
            ),
            "{e}"
        );
        let e = app(Some(1), None, false, false).unwrap_err();
        assert!(
            e.message().contains(
                "needs MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE or MOLECULE_GITHUB_APP_SIGNER"
            ),
            "{e}"
        );
        let e = app(None, None, true, false).unwrap_err();
        assert!(
            e.message()
                .contains("needs MOLECULE_GITHUB_APP_ID or MOLECULE_GITHUB_APP_CLIENT_ID"),
            "{e}"
        );
        // The client ID wins as the issuer; a signer means no key file at all.
        let key = app(Some(1), Some("Iv23liXyz"), false, true).unwrap();
        assert_eq!(key.issuer, Issuer::ClientId("Iv23liXyz".into()));
        assert!(matches!(key.signing, Signing::Command(_)));
        assert!(app(Some(1), None, true, false).is_ok());
    }

    #[tokio::test]
    async fn a_key_others_can_read_is_used() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, path) = key_path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let key = AppKey::load(Issuer::AppId(7), &path).unwrap();
        assert!(key.jwt(OffsetDateTime::now_utc()).await.is_ok());
    }

    #[test]
    fn key_errors_name_the_file_not_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.pem");
        std::fs::write(
            &f,
            "-----BEGIN PRIVATE KEY-----\nZ2hzX1NFQ1JFVA==\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let e = AppKey::load(Issuer::AppId(1), &f).unwrap_err();
        assert_eq!(e.class(), Class::LocalConfig);
        assert!(e.message().contains("k.pem"), "{e}");
        let e = AppKey::load(Issuer::AppId(1), &dir.path().join("missing.pem")).unwrap_err();
        assert_eq!(e.class(), Class::LocalConfig);
    }

    #[test]
    fn failure_classes() {
        let raw = |status, retry_after, remaining| RawResponse {
            status,
            retry_after,
            date: None,
            ratelimit_remaining: remaining,
            body: Some(br#"{"message":"ghs_SECRET"}"#.to_vec()),
        };
        let c = |r: RawResponse| classify_failure(&r, "x").class();
        assert_eq!(c(raw(401, None, None)), Class::Auth);
        assert_eq!(c(raw(403, None, None)), Class::Auth);
        assert_eq!(c(raw(403, None, Some(0))), Class::RateLimited);
        assert_eq!(
            c(raw(403, Some(Duration::from_secs(60)), None)),
            Class::RateLimited
        );
        assert_eq!(c(raw(404, None, None)), Class::NotConfigured);
        assert_eq!(c(raw(422, None, None)), Class::LocalConfig);
        assert_eq!(c(raw(429, None, None)), Class::RateLimited);
        assert_eq!(c(raw(502, None, None)), Class::Transient);
        assert!(
            !classify_failure(&raw(401, None, None), "x")
                .to_string()
                .contains("SECRET")
        );
    }
}
