//! A GitHub REST API stand-in for a GitHub App: `https://api.github.com`, or a GitHub
//! Enterprise Server's `https://HOST/api/v3` with [`GithubApiOptions::path_prefix`].
//!
//! It checks App JWTs as strictly as GitHub does, against its own clock (real time plus
//! a skew the test sets), so a client that signs, dates or addresses its JWTs wrongly
//! fails here before it fails in production:
//!
//! - `Authorization: Bearer <jwt>`, header `alg` exactly `RS256` (no `none`, no HMAC),
//!   signature checked with the App's public key;
//! - `iss` the App id, as a JSON number or a decimal string, or the App's client ID (GitHub
//!   takes either, and recommends the client ID);
//! - `iat` an integer not after the server's now (leeway [`JWT_IAT_LEEWAY_SECS`]);
//! - `exp` an integer after the server's now and at most [`JWT_MAX_EXP_AHEAD_SECS`] ahead
//!   of it. GitHub bounds how far `exp` lies in the future, not `exp - iat`: its own
//!   documented example (`iat` 60 s back, `exp` 10 min ahead) spans 11 minutes.
//!
//! The checks run in GitHub's order, which follows from how it must verify: decode the
//! token, check the algorithm, find the App by `iss` (only then is the key known), verify
//! the signature, then the times (`iat`, then `exp`). Every rejection is a 401 with the
//! message GitHub sends, and is counted by reason ([`GithubApi::jwt_rejections`]).
//!
//! Routes (all answer JSON shaped like GitHub's, with a `Date` header from the server
//! clock):
//!
//! - JWT: `GET /app`; `POST /app/installations/{id}/access_tokens` (optionally narrowed by
//!   `repositories`, `repository_ids` and `permissions`); `GET /orgs/{org}/installation`,
//!   `GET /users/{user}/installation`, `GET /repos/{owner}/{repo}/installation`.
//! - Installation token (`token` or `Bearer`): `DELETE /installation/token`,
//!   `GET /installation/repositories`.
//!
//! Installation tokens are minted into the shared [`TokenAuthority`], attributed to the
//! installation's account and the narrowed repositories, so the git stand-in can enforce
//! that scope (see [`crate::authority::owner_scoped_rule`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hyper::header::{AUTHORIZATION, DATE, HeaderValue};
use hyper::{Method, Response, StatusCode};
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::authority::TokenAuthority;
use crate::server::{self, Body, Ctx, Reply, Request, ServerThread};
use crate::tls::TestCa;

/// How far in the future, by the server clock, a JWT's `exp` may lie: GitHub's documented
/// "no more than 10 minutes into the future", with no leeway (a client that sets `exp` to
/// exactly now + 600 s by a clock running ahead of GitHub's is rejected there too).
pub const JWT_MAX_EXP_AHEAD_SECS: i64 = 600;

/// How far after the server's now a JWT's `iat` may lie. GitHub documents none and tells
/// clients to backdate `iat` by 60 s for clock drift; clients that backdated by only 10 s
/// have failed against it with a clock slightly ahead. Zero keeps the stand-in at least
/// as strict as GitHub: with one shared clock, `iat` = now always passes (the server's
/// now is never earlier), and any client clock ahead of the server's fails.
pub const JWT_IAT_LEEWAY_SECS: i64 = 0;

/// The permissions every installation holds: what a token is minted with when the
/// request does not narrow them, and the ceiling a narrowed request is checked against.
pub const INSTALLATION_PERMISSIONS: &[(&str, &str)] = &[
    ("contents", "write"),
    ("issues", "write"),
    ("metadata", "read"),
    ("pull_requests", "write"),
    ("workflows", "write"),
];

/// The App's slug and display name, as `GET /app` reports them.
pub const APP_SLUG: &str = "molecule-test-app";
/// See [`APP_SLUG`].
pub const APP_NAME: &str = "Molecule Test App";

/// Where GitHub's error bodies point.
const DOCUMENTATION_URL: &str = "https://docs.github.com/rest";

/// RFC 9110's IMF-fixdate, the only `Date` format a server may send.
const IMF_FIXDATE: &[BorrowedFormatItem<'static>] = format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// `expires_at` as GitHub writes it: UTC, whole seconds, `Z`.
const GITHUB_TIMESTAMP: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// The object identifier of `rsaEncryption` (1.2.840.113549.1.1.1), DER-encoded.
const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// The throw-away App private key (PKCS#1 PEM, `BEGIN RSA PRIVATE KEY`, the format GitHub
/// issues App keys in). Published on purpose; it signs nothing real.
///
/// A git checkout leaves the fixture readable by others, which the helper warns about for a
/// key file (it uses it all the same); this is a private (0600) copy beside the running test
/// binary, made once, so tests see no warning they did not ask for.
pub fn test_app_key_path() -> PathBuf {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/github-app-test-key.pem");
        let dir = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .unwrap_or_else(std::env::temp_dir);
        let copy = dir.join(format!("github-app-test-key.{}.pem", std::process::id()));
        let bytes = std::fs::read(&fixture).expect("the test key fixture");
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&copy)
                .expect("a private copy of the test key");
            f.write_all(&bytes).expect("writing the test key copy");
        }
        copy
    })
    .clone()
}

/// The public half of [`test_app_key_path`] (SPKI PEM, `BEGIN PUBLIC KEY`).
pub fn test_app_public_key_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/github-app-test-key.pub.pem")
}

/// Whether an installation belongs to an organization or a user: it decides which
/// discovery route finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerKind {
    /// Found by `GET /orgs/{org}/installation`.
    Organization,
    /// Found by `GET /users/{username}/installation`.
    User,
}

impl OwnerKind {
    /// The account `type` GitHub reports.
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerKind::Organization => "Organization",
            OwnerKind::User => "User",
        }
    }
}

/// One installation of the App.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installation {
    /// The installation id (`/app/installations/{id}/…`).
    pub id: u64,
    /// The account login it is installed on.
    pub owner: String,
    /// Organization or user account.
    pub kind: OwnerKind,
    /// Names (without the owner) of the repositories the installation can access. A
    /// repository's id is `id * 1000 + position + 1` (see [`GithubApi::repository_id`]).
    pub repositories: Vec<String>,
}

/// The test App's client ID, the other `iss` the stand-in accepts.
pub const APP_CLIENT_ID: &str = "Iv23liMoleculeTest01";

/// How the stand-in is configured.
#[derive(Clone, Debug)]
pub struct GithubApiOptions {
    /// The App id JWTs may carry as `iss`.
    pub app_id: u64,
    /// The App's client ID, which JWTs may carry as `iss` instead.
    pub client_id: String,
    /// The App's public key, PEM: SPKI (`BEGIN PUBLIC KEY`) or PKCS#1
    /// (`BEGIN RSA PUBLIC KEY`).
    pub public_key_pem_path: PathBuf,
    /// The App's installations.
    pub installations: Vec<Installation>,
    /// Lifetime of minted installation tokens (GitHub's is one hour).
    pub token_ttl: Duration,
    /// Where the API is rooted: `""` for api.github.com, `"/api/v3"` for GHES.
    pub path_prefix: String,
    /// The server clock's offset from real time (positive: the server runs ahead).
    pub clock_skew: time::Duration,
}

impl GithubApiOptions {
    /// The defaults with one installation: organisation `owner` as installation `id`, on
    /// `repositories` (empty: all of them). What most tests of the App source need.
    pub fn one_org(id: u64, owner: &str, repositories: &[&str]) -> Self {
        GithubApiOptions {
            installations: vec![Installation {
                id,
                owner: owner.into(),
                kind: OwnerKind::Organization,
                repositories: repositories.iter().map(|r| (*r).to_owned()).collect(),
            }],
            ..GithubApiOptions::default()
        }
    }
}

impl Default for GithubApiOptions {
    /// App 424242 with the test key, no installations, one-hour tokens, api.github.com
    /// paths, and a clock in step with the machine's.
    fn default() -> Self {
        GithubApiOptions {
            app_id: 424_242,
            client_id: APP_CLIENT_ID.to_owned(),
            public_key_pem_path: test_app_public_key_path(),
            installations: Vec::new(),
            token_ttl: Duration::from_secs(3600),
            path_prefix: String::new(),
            clock_skew: time::Duration::ZERO,
        }
    }
}

/// What the stand-in minted, without the token itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedInfo {
    /// The installation the token was minted for.
    pub installation_id: u64,
    /// That installation's account.
    pub owner: String,
    /// The repositories it was narrowed to (canonical names), if any.
    pub repositories: Option<Vec<String>>,
    /// The permissions it was narrowed to, if any.
    pub permissions: Option<BTreeMap<String, String>>,
    /// Length of the token.
    pub token_len: usize,
}

/// One request the stand-in answered. The path carries no credential (those travel in
/// headers), so it is safe to print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// The HTTP method.
    pub method: String,
    /// The request path, prefix included, without the query.
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// When the stand-in had handled it (a revocation, say, was done), as the answer went out.
    pub answered_at: std::time::Instant,
}

/// A running GitHub API stand-in; stops when dropped.
pub struct GithubApi {
    server: ServerThread,
    state: Arc<State>,
    scheme: &'static str,
}

struct State {
    opts: GithubApiOptions,
    /// `opts.path_prefix` with one leading and no trailing slash, or empty.
    prefix: String,
    /// The App key as the RSAPublicKey DER ring verifies with.
    public_key: Vec<u8>,
    authority: TokenAuthority,
    skew: Mutex<time::Duration>,
    requests: Mutex<Vec<RequestRecord>>,
    discoveries: AtomicU64,
    revoked: AtomicU64,
    revocation_schemes: Mutex<Vec<String>>,
    issuers: Mutex<Vec<String>>,
    rejections: Mutex<Vec<String>>,
    issued: Mutex<Vec<IssuedInfo>>,
}

impl State {
    /// The server clock.
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + *lock(&self.skew)
    }
}

impl GithubApi {
    /// Serves the API at `addr`, over TLS with the server certificate of `tls` when given,
    /// plain HTTP otherwise, minting installation tokens into `authority`. Panics when the
    /// public key cannot be read or parsed: a broken fixture, not a test outcome.
    pub fn start(
        addr: SocketAddr,
        opts: GithubApiOptions,
        authority: TokenAuthority,
        tls: Option<&TestCa>,
    ) -> GithubApi {
        let public_key = load_public_key(&opts.public_key_pem_path);
        let trimmed = opts.path_prefix.trim_matches('/');
        let prefix = if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{trimmed}")
        };
        let state = Arc::new(State {
            prefix,
            public_key,
            authority,
            skew: Mutex::new(opts.clock_skew),
            requests: Mutex::new(Vec::new()),
            discoveries: AtomicU64::new(0),
            revoked: AtomicU64::new(0),
            revocation_schemes: Mutex::new(Vec::new()),
            issuers: Mutex::new(Vec::new()),
            rejections: Mutex::new(Vec::new()),
            issued: Mutex::new(Vec::new()),
            opts,
        });
        let handler_state = state.clone();
        let server = ServerThread::spawn(
            "github-api-standin",
            addr,
            tls.map(TestCa::server_config),
            Arc::new(move |request, _ctx: Ctx| {
                let state = handler_state.clone();
                server::boxed(async move { Reply::Response(handle(&state, &request)) })
            }),
        );
        GithubApi {
            server,
            state,
            scheme: if tls.is_some() { "https" } else { "http" },
        }
    }

    /// The API base, e.g. `http://127.0.0.1:41234` or `https://127.0.0.1:41234/api/v3`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme,
            self.server.addr(),
            self.state.prefix
        )
    }

    /// The address bound.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The server clock now: real time plus the current skew.
    pub fn now(&self) -> OffsetDateTime {
        self.state.now()
    }

    /// Moves the server clock to real time plus `skew` for the following requests.
    pub fn set_clock_skew(&self, skew: time::Duration) {
        *lock(&self.state.skew) = skew;
    }

    /// The id of repository `owner/name` (case-insensitive), if an installation has it.
    pub fn repository_id(&self, owner: &str, name: &str) -> Option<u64> {
        self.state.opts.installations.iter().find_map(|inst| {
            if !inst.owner.eq_ignore_ascii_case(owner) {
                return None;
            }
            let position = inst
                .repositories
                .iter()
                .position(|repo| repo.eq_ignore_ascii_case(name))?;
            Some(repo_id(inst, position))
        })
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.state.requests).clone()
    }

    /// Requests to the three installation discovery routes, whatever their outcome.
    pub fn discoveries(&self) -> u64 {
        self.state.discoveries.load(Ordering::Relaxed)
    }

    /// Installation tokens revoked through `DELETE /installation/token`.
    pub fn revoked(&self) -> u64 {
        self.state.revoked.load(Ordering::Relaxed)
    }

    /// The `Authorization` scheme of each revocation, lower-case, in order (`bearer`,
    /// `token`).
    pub fn revocation_schemes(&self) -> Vec<String> {
        lock(&self.state.revocation_schemes).clone()
    }

    /// The `iss` of each JWT accepted so far, as text, in order: the App id or the client ID.
    pub fn jwt_issuers(&self) -> Vec<String> {
        lock(&self.state.issuers).clone()
    }

    /// Reason codes of the JWTs rejected so far, in order: `missing`, `malformed`,
    /// `bad-alg`, `wrong-iss`, `bad-signature`, `iat-future`, `expired`, `exp-too-far`.
    pub fn jwt_rejections(&self) -> Vec<String> {
        lock(&self.state.rejections).clone()
    }

    /// The installation tokens minted so far, in order.
    pub fn issued(&self) -> Vec<IssuedInfo> {
        lock(&self.state.issued).clone()
    }
}

impl std::fmt::Debug for GithubApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubApi")
            .field("url", &self.url())
            .field("app_id", &self.state.opts.app_id)
            .field("issued", &lock(&self.state.issued).len())
            .finish()
    }
}

/// Locks a mutex whose data stays consistent across a panic (each holder does a single
/// read, push or assignment), so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn repo_id(installation: &Installation, position: usize) -> u64 {
    let position = u64::try_from(position).expect("a repository list fits in u64");
    installation.id * 1000 + position + 1
}

/// Reads the App public key as the RSAPublicKey DER ring's RSA verifier takes.
fn load_public_key(path: &Path) -> Vec<u8> {
    let pem = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read the App public key {}: {e}", path.display()));
    if let Some(spki) = pem_der(&pem, "PUBLIC KEY") {
        rsa_public_key_from_spki(&spki)
            .unwrap_or_else(|| panic!("{} is not an RSA SubjectPublicKeyInfo", path.display()))
    } else if let Some(pkcs1) = pem_der(&pem, "RSA PUBLIC KEY") {
        pkcs1
    } else {
        panic!(
            "{} holds no PEM public key (BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY)",
            path.display()
        )
    }
}

/// The DER inside the first PEM block labelled `label`.
fn pem_der(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let base64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(base64).ok()
}

/// One DER element: its tag, its content and what follows it.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let len = bytes
            .iter()
            .fold(0usize, |acc, &byte| (acc << 8) | usize::from(byte));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

/// The RSAPublicKey inside an SPKI: `SEQUENCE { SEQUENCE { rsaEncryption, … }, BIT
/// STRING { 0 unused bits, RSAPublicKey } }`. ring's RSA verifier wants the inner part.
fn rsa_public_key_from_spki(spki: &[u8]) -> Option<Vec<u8>> {
    let (0x30, outer, []) = der_next(spki)? else {
        return None;
    };
    let (0x30, algorithm, rest) = der_next(outer)? else {
        return None;
    };
    let (0x06, oid, _) = der_next(algorithm)? else {
        return None;
    };
    if oid != RSA_ENCRYPTION_OID {
        return None;
    }
    let (0x03, bits, []) = der_next(rest)? else {
        return None;
    };
    let (0, key) = bits.split_first()? else {
        return None;
    };
    Some(key.to_vec())
}

/// Why a JWT was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JwtRejection {
    Missing,
    Malformed,
    BadAlg,
    WrongIss,
    BadSignature,
    IatFuture,
    Expired,
    ExpTooFar,
}

impl JwtRejection {
    fn code(self) -> &'static str {
        match self {
            JwtRejection::Missing => "missing",
            JwtRejection::Malformed => "malformed",
            JwtRejection::BadAlg => "bad-alg",
            JwtRejection::WrongIss => "wrong-iss",
            JwtRejection::BadSignature => "bad-signature",
            JwtRejection::IatFuture => "iat-future",
            JwtRejection::Expired => "expired",
            JwtRejection::ExpTooFar => "exp-too-far",
        }
    }

    /// GitHub's message for each. It gives no detail for an undecodable token, another
    /// algorithm or a signature by the wrong key: all are "could not be decoded".
    fn message(self) -> &'static str {
        match self {
            JwtRejection::Missing
            | JwtRejection::Malformed
            | JwtRejection::BadAlg
            | JwtRejection::BadSignature => "A JSON web token could not be decoded",
            JwtRejection::WrongIss => "Integration not found",
            JwtRejection::IatFuture => {
                "'Issued at' claim ('iat') must be an Integer representing a time in the past"
            }
            JwtRejection::Expired => {
                "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
            }
            JwtRejection::ExpTooFar => "'Expiration time' claim ('exp') is too far in the future",
        }
    }
}

/// Verifies `jwt` for the App of `opts` with RSAPublicKey DER `public_key` at server time
/// `now` (Unix seconds), in the order of the module documentation. Returns the `iss`.
fn verify_jwt(
    jwt: &str,
    opts: &GithubApiOptions,
    public_key: &[u8],
    now: i64,
) -> Result<String, JwtRejection> {
    let mut parts = jwt.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtRejection::Malformed);
    };
    let decode_json = |segment: &str| -> Option<serde_json::Map<String, Value>> {
        let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
        match serde_json::from_slice(&bytes).ok()? {
            Value::Object(map) => Some(map),
            _ => None,
        }
    };
    let (Some(header_json), Some(claims), Ok(signature)) = (
        decode_json(header),
        decode_json(payload),
        URL_SAFE_NO_PAD.decode(signature),
    ) else {
        return Err(JwtRejection::Malformed);
    };
    if header_json.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(JwtRejection::BadAlg);
    }
    let iss = match claims.get("iss") {
        Some(Value::Number(number)) if number.as_u64() == Some(opts.app_id) => number.to_string(),
        Some(Value::String(text))
            if text.parse::<u64>().ok() == Some(opts.app_id) || *text == opts.client_id =>
        {
            text.clone()
        }
        _ => return Err(JwtRejection::WrongIss),
    };
    let signing_input = &jwt[..header.len() + 1 + payload.len()];
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key)
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| JwtRejection::BadSignature)?;
    // Integers only, as GitHub's messages say; a missing or fractional claim is refused
    // with that claim's message.
    let iat = claims.get("iat").and_then(Value::as_i64);
    if iat.is_none_or(|iat| iat > now + JWT_IAT_LEEWAY_SECS) {
        return Err(JwtRejection::IatFuture);
    }
    match claims.get("exp").and_then(Value::as_i64) {
        Some(exp) if exp <= now => Err(JwtRejection::Expired),
        Some(exp) if exp > now + JWT_MAX_EXP_AHEAD_SECS => Err(JwtRejection::ExpTooFar),
        Some(_) => Ok(iss),
        None => Err(JwtRejection::Expired),
    }
}

/// Answers one request, stamping it with the server clock's `Date` and logging it.
fn handle(state: &State, request: &Request) -> Response<Body> {
    let path = request.uri.path();
    let mut response = match path
        .strip_prefix(state.prefix.as_str())
        .filter(|rest| rest.starts_with('/'))
    {
        Some(route_path) => route(state, request, route_path),
        None => not_found(),
    };
    let date = state
        .now()
        .format(IMF_FIXDATE)
        .expect("a UTC time formats as IMF-fixdate");
    let headers = response.headers_mut();
    // hyper adds its own Date only when the response has none, so this one wins.
    headers.insert(
        DATE,
        HeaderValue::from_str(&date).expect("an IMF-fixdate is a valid header value"),
    );
    headers.insert(
        "x-github-media-type",
        HeaderValue::from_static("github.v3; format=json"),
    );
    lock(&state.requests).push(RequestRecord {
        method: request.method.to_string(),
        path: path.to_owned(),
        status: response.status().as_u16(),
        answered_at: std::time::Instant::now(),
    });
    response
}

fn route(state: &State, request: &Request, path: &str) -> Response<Body> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (&request.method, segments.as_slice()) {
        (&Method::GET, ["app"]) => with_jwt(state, request, || {
            server::json(
                StatusCode::OK,
                &json!({
                    "id": state.opts.app_id,
                    "slug": APP_SLUG,
                    "name": APP_NAME,
                }),
            )
        }),
        (&Method::POST, ["app", "installations", id, "access_tokens"]) => {
            with_jwt(state, request, || access_token(state, request, id))
        }
        (&Method::GET, ["orgs", org, "installation"]) => discover(state, request, |inst| {
            inst.kind == OwnerKind::Organization && inst.owner.eq_ignore_ascii_case(org)
        }),
        (&Method::GET, ["users", user, "installation"]) => discover(state, request, |inst| {
            inst.kind == OwnerKind::User && inst.owner.eq_ignore_ascii_case(user)
        }),
        (&Method::GET, ["repos", owner, repo, "installation"]) => {
            discover(state, request, |inst| {
                inst.owner.eq_ignore_ascii_case(owner)
                    && inst
                        .repositories
                        .iter()
                        .any(|name| name.eq_ignore_ascii_case(repo))
            })
        }
        (&Method::DELETE, ["installation", "token"]) => {
            let Some(token) = installation_token(state, request) else {
                return bad_credentials();
            };
            state.authority.revoke(token);
            state.revoked.fetch_add(1, Ordering::Relaxed);
            let scheme = request
                .headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' '))
                .map(|(scheme, _)| scheme.to_ascii_lowercase())
                .unwrap_or_default();
            lock(&state.revocation_schemes).push(scheme);
            let mut response = Response::new(server::full(bytes::Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        (&Method::GET, ["installation", "repositories"]) => {
            let Some(token) = installation_token(state, request) else {
                return bad_credentials();
            };
            installation_repositories(state, token)
        }
        _ => not_found(),
    }
}

/// A GitHub error body.
fn error(status: StatusCode, message: &str) -> Response<Body> {
    server::json(
        status,
        &json!({ "message": message, "documentation_url": DOCUMENTATION_URL }),
    )
}

fn not_found() -> Response<Body> {
    error(StatusCode::NOT_FOUND, "Not Found")
}

fn bad_credentials() -> Response<Body> {
    error(StatusCode::UNAUTHORIZED, "Bad credentials")
}

/// The credential of `Authorization: <scheme> <credential>` when the scheme is one of
/// `schemes` (case-insensitive).
fn credential<'r>(request: &'r Request, schemes: &[&str]) -> Option<&'r str> {
    let value = request.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    let credential = credential.trim();
    (schemes.iter().any(|s| scheme.eq_ignore_ascii_case(s)) && !credential.is_empty())
        .then_some(credential)
}

/// Runs `answer` only for a request bearing a JWT that passes [`verify_jwt`] by the
/// server clock; otherwise records the reason and answers 401.
fn with_jwt(
    state: &State,
    request: &Request,
    answer: impl FnOnce() -> Response<Body>,
) -> Response<Body> {
    let verdict = match request.headers.get(AUTHORIZATION) {
        None => Err(JwtRejection::Missing),
        Some(_) => match credential(request, &["bearer"]) {
            None => Err(JwtRejection::Malformed),
            Some(jwt) => verify_jwt(
                jwt,
                &state.opts,
                &state.public_key,
                state.now().unix_timestamp(),
            ),
        },
    };
    match verdict {
        Ok(iss) => {
            lock(&state.issuers).push(iss);
            answer()
        }
        Err(rejection) => {
            lock(&state.rejections).push(rejection.code().to_owned());
            error(StatusCode::UNAUTHORIZED, rejection.message())
        }
    }
}

/// An installation token the authority holds valid, from `token …` or `Bearer …`.
fn installation_token<'r>(state: &State, request: &'r Request) -> Option<&'r str> {
    credential(request, &["token", "bearer"]).filter(|token| state.authority.is_valid(token))
}

fn installation_json(state: &State, inst: &Installation) -> Value {
    json!({
        "id": inst.id,
        "account": { "login": inst.owner, "type": inst.kind.as_str() },
        "app_id": state.opts.app_id,
        "app_slug": APP_SLUG,
        "repository_selection": "all",
        "permissions": permissions_json(INSTALLATION_PERMISSIONS.iter().copied()),
    })
}

fn permissions_json<'a>(permissions: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    Value::Object(
        permissions
            .map(|(name, level)| (name.to_owned(), Value::from(level)))
            .collect(),
    )
}

fn repository_json(inst: &Installation, position: usize) -> Value {
    let name = &inst.repositories[position];
    json!({
        "id": repo_id(inst, position),
        "name": name,
        "full_name": format!("{}/{name}", inst.owner),
        "owner": { "login": inst.owner, "type": inst.kind.as_str() },
        "private": true,
    })
}

/// One of the `…/installation` discovery routes: counted whatever the outcome, so tests
/// can see whether a client caches what it discovered.
fn discover(
    state: &State,
    request: &Request,
    matches: impl Fn(&Installation) -> bool,
) -> Response<Body> {
    state.discoveries.fetch_add(1, Ordering::Relaxed);
    with_jwt(state, request, || {
        match state.opts.installations.iter().find(|inst| matches(inst)) {
            Some(inst) => server::json(StatusCode::OK, &installation_json(state, inst)),
            None => not_found(),
        }
    })
}

/// The body of `POST /app/installations/{id}/access_tokens`.
#[derive(Deserialize)]
struct TokenRequest {
    repositories: Option<Vec<String>>,
    repository_ids: Option<Vec<u64>>,
    permissions: Option<BTreeMap<String, String>>,
}

/// How much a permission level allows; `None` for a level GitHub does not know.
fn level_rank(level: &str) -> Option<u8> {
    match level {
        "read" => Some(1),
        "write" => Some(2),
        "admin" => Some(3),
        _ => None,
    }
}

fn access_token(state: &State, request: &Request, id: &str) -> Response<Body> {
    let Some(inst) = id
        .parse::<u64>()
        .ok()
        .and_then(|id| state.opts.installations.iter().find(|inst| inst.id == id))
    else {
        return not_found();
    };
    let body = if request.body.iter().all(u8::is_ascii_whitespace) {
        TokenRequest {
            repositories: None,
            repository_ids: None,
            permissions: None,
        }
    } else {
        match serde_json::from_slice::<TokenRequest>(&request.body) {
            Ok(body) => body,
            Err(e) if e.is_data() => {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request.");
            }
            Err(_) => return error(StatusCode::BAD_REQUEST, "Problems parsing JSON"),
        }
    };

    // Positions into inst.repositories, in the installation's order, without repeats.
    let mut selected = Vec::new();
    for name in body.repositories.iter().flatten() {
        let position = inst.repositories.iter().position(|repo| {
            // `owner/name` is refused like any other unknown name, as on GitHub.
            repo.eq_ignore_ascii_case(name)
        });
        match position {
            Some(position) => selected.push(position),
            None => return inaccessible_repository(),
        }
    }
    for &wanted in body.repository_ids.iter().flatten() {
        match (0..inst.repositories.len()).find(|&position| repo_id(inst, position) == wanted) {
            Some(position) => selected.push(position),
            None => return inaccessible_repository(),
        }
    }
    selected.sort_unstable();
    selected.dedup();

    let permissions = body.permissions.filter(|map| !map.is_empty());
    if let Some(requested) = &permissions {
        for (name, level) in requested {
            let granted = INSTALLATION_PERMISSIONS
                .iter()
                .find(|(granted_name, _)| granted_name == name)
                .and_then(|(_, granted_level)| level_rank(granted_level));
            let allowed = match (level_rank(level), granted) {
                (Some(wanted), Some(granted)) => wanted <= granted,
                _ => false,
            };
            if !allowed {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "The permissions requested are not granted to this installation.",
                );
            }
        }
    }

    let repositories = (!selected.is_empty()).then(|| {
        selected
            .iter()
            .map(|&position| inst.repositories[position].clone())
            .collect::<Vec<_>>()
    });
    let issued =
        state
            .authority
            .issue_scoped(&inst.owner, state.opts.token_ttl, repositories.clone());
    // The body's expiry is by the server clock, as a real server with its own clock says
    // it; the authority's (what actually decides validity) is by real time.
    let expires_at = (state.now() + state.opts.token_ttl)
        .format(GITHUB_TIMESTAMP)
        .expect("a UTC time formats as a GitHub timestamp");
    let permissions_value = match &permissions {
        Some(map) => permissions_json(map.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        None => permissions_json(INSTALLATION_PERMISSIONS.iter().copied()),
    };
    let mut answer = json!({
        "token": issued.token,
        "expires_at": expires_at,
        "permissions": permissions_value,
        "repository_selection": if repositories.is_some() { "selected" } else { "all" },
    });
    if repositories.is_some() {
        answer["repositories"] = Value::Array(
            selected
                .iter()
                .map(|&position| repository_json(inst, position))
                .collect(),
        );
    }
    lock(&state.issued).push(IssuedInfo {
        installation_id: inst.id,
        owner: inst.owner.clone(),
        repositories,
        permissions,
        token_len: issued.token.len(),
    });
    server::json(StatusCode::CREATED, &answer)
}

fn inaccessible_repository() -> Response<Body> {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "There is at least one repository that does not exist or is not accessible to the parent installation.",
    )
}

fn installation_repositories(state: &State, token: &str) -> Response<Body> {
    let owner = state.authority.owner_of(token);
    let inst = owner.as_deref().and_then(|owner| {
        state
            .opts
            .installations
            .iter()
            .find(|inst| inst.owner.eq_ignore_ascii_case(owner))
    });
    let Some(inst) = inst else {
        // A valid token of no installation of this App (one a test minted directly).
        return server::json(
            StatusCode::OK,
            &json!({ "total_count": 0, "repositories": [] }),
        );
    };
    let narrowed = state.authority.repositories_of(token);
    let repositories: Vec<Value> = (0..inst.repositories.len())
        .filter(|&position| {
            narrowed.as_ref().is_none_or(|names| {
                names
                    .iter()
                    .any(|name| name.eq_ignore_ascii_case(&inst.repositories[position]))
            })
        })
        .map(|position| repository_json(inst, position))
        .collect();
    server::json(
        StatusCode::OK,
        &json!({
            "total_count": repositories.len(),
            "repository_selection": if narrowed.is_some() { "selected" } else { "all" },
            "repositories": repositories,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpStream};
    use std::process::Command;

    use ring::rand::SystemRandom;
    use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
    use time::PrimitiveDateTime;
    use time::format_description::well_known::Rfc3339;

    const APP_ID: u64 = 31_337;

    /// Signs JWTs the way a client does: RS256, base64url without padding.
    struct Signer {
        key: RsaKeyPair,
    }

    impl Signer {
        /// From a PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`) PEM.
        fn from_pem_file(path: &Path) -> Signer {
            let pem = std::fs::read_to_string(path).expect("read the private key");
            let key = match pem_der(&pem, "RSA PRIVATE KEY") {
                Some(der) => RsaKeyPair::from_der(&der),
                None => RsaKeyPair::from_pkcs8(&pem_der(&pem, "PRIVATE KEY").expect("a PEM key")),
            }
            .expect("a usable RSA key");
            Signer { key }
        }

        fn app() -> Signer {
            Signer::from_pem_file(&test_app_key_path())
        }

        fn sign(&self, header: &Value, claims: &Value) -> String {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let mut signature = vec![0; self.key.public().modulus_len()];
            self.key
                .sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    input.as_bytes(),
                    &mut signature,
                )
                .expect("sign the JWT");
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
        }

        fn claims(&self, claims: &Value) -> String {
            self.sign(&json!({ "alg": "RS256", "typ": "JWT" }), claims)
        }

        fn jwt(&self, iat: i64, exp: i64) -> String {
            self.claims(&json!({ "iss": APP_ID, "iat": iat, "exp": exp }))
        }

        /// As GitHub recommends, by the client's clock: `iat` 60 s back, `exp` 9 min ahead.
        fn careful(&self) -> String {
            let now = unix_now();
            self.jwt(now - 60, now + 540)
        }
    }

    fn unix_now() -> i64 {
        OffsetDateTime::now_utc().unix_timestamp()
    }

    fn installations() -> Vec<Installation> {
        vec![
            Installation {
                id: 101,
                owner: "acme".to_owned(),
                kind: OwnerKind::Organization,
                repositories: vec!["app".to_owned(), "lib".to_owned(), "docs".to_owned()],
            },
            Installation {
                id: 202,
                owner: "alice".to_owned(),
                kind: OwnerKind::User,
                repositories: vec!["dotfiles".to_owned()],
            },
        ]
    }

    fn options() -> GithubApiOptions {
        GithubApiOptions {
            app_id: APP_ID,
            installations: installations(),
            ..GithubApiOptions::default()
        }
    }

    fn start(opts: GithubApiOptions) -> (GithubApi, TokenAuthority) {
        let authority = TokenAuthority::new();
        let api = GithubApi::start(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            opts,
            authority.clone(),
            None,
        );
        (api, authority)
    }

    /// One answer. Not `Debug`: a body may hold a token.
    struct Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Answer {
        fn json(&self) -> Value {
            serde_json::from_str(&self.body).expect("a JSON body")
        }

        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        }

        /// The error message, asserting GitHub's error shape on the way.
        fn message(&self) -> String {
            let body = self.json();
            assert_eq!(body["documentation_url"], DOCUMENTATION_URL);
            body["message"].as_str().expect("a message").to_owned()
        }
    }

    /// One raw HTTP/1.1 request to `path` under the API root.
    fn call(
        api: &GithubApi,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: &str,
    ) -> Answer {
        let mut stream = TcpStream::connect(api.addr()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let auth = authorization
            .map(|value| format!("Authorization: {value}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "{method} {}{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/vnd.github+json\r\n\
             {auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            api.state.prefix,
            body.len()
        )
        .expect("send the request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read the answer");
        let raw = String::from_utf8(raw).expect("a UTF-8 answer");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .expect("a status line");
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
            .collect();
        Answer {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    fn mint(api: &GithubApi, jwt: &str, installation: u64, body: &str) -> Answer {
        call(
            api,
            "POST",
            &format!("/app/installations/{installation}/access_tokens"),
            Some(&format!("Bearer {jwt}")),
            body,
        )
    }

    fn token_of(answer: &Answer) -> String {
        // Only a refusal's body is printed: a 201's holds the token.
        if answer.status != 201 {
            panic!("mint failed: {} {}", answer.status, answer.body);
        }
        answer.json()["token"].as_str().expect("a token").to_owned()
    }

    #[test]
    fn spki_key_converts_to_what_ring_verifies() {
        let key = load_public_key(&test_app_public_key_path());
        let signer = Signer::app();
        assert_eq!(key.as_slice(), signer.key.public().as_ref());
    }

    #[test]
    fn jwt_time_boundaries() {
        let key = load_public_key(&test_app_public_key_path());
        let signer = Signer::app();
        let opts = options();
        let now = 1_700_000_000;
        let id = Ok(APP_ID.to_string());
        let verify = |iat: i64, exp: i64| verify_jwt(&signer.jwt(iat, exp), &opts, &key, now);
        assert_eq!(verify(now, now + 600), id);
        assert_eq!(verify(now - 3600, now + 1), id, "only exp is bounded");
        assert_eq!(verify(now + 1, now + 300), Err(JwtRejection::IatFuture));
        assert_eq!(verify(now - 60, now), Err(JwtRejection::Expired));
        assert_eq!(verify(now - 60, now + 601), Err(JwtRejection::ExpTooFar));
        let string_iss =
            signer.claims(&json!({ "iss": APP_ID.to_string(), "iat": now, "exp": now + 60 }));
        assert_eq!(verify_jwt(&string_iss, &opts, &key, now), id);
        let float_iat = signer.claims(&json!({ "iss": APP_ID, "iat": 1.7e9, "exp": now + 60 }));
        assert_eq!(
            verify_jwt(&float_iat, &opts, &key, now),
            Err(JwtRejection::IatFuture)
        );
        // The client ID is an issuer too; another App's is not.
        let by_client_id =
            |iss: &str| signer.claims(&json!({ "iss": iss, "iat": now, "exp": now + 60 }));
        assert_eq!(
            verify_jwt(&by_client_id(APP_CLIENT_ID), &opts, &key, now),
            Ok(APP_CLIENT_ID.to_owned())
        );
        assert_eq!(
            verify_jwt(&by_client_id("Iv23liSomeoneElse000"), &opts, &key, now),
            Err(JwtRejection::WrongIss)
        );
    }

    #[test]
    fn correct_jwt_mints_an_owned_token() {
        let (api, authority) = start(options());
        let signer = Signer::app();

        let app = call(
            &api,
            "GET",
            "/app",
            Some(&format!("Bearer {}", signer.careful())),
            "",
        );
        assert_eq!(app.status, 200, "{}", app.body);
        assert_eq!(
            app.json(),
            json!({ "id": APP_ID, "slug": APP_SLUG, "name": APP_NAME })
        );

        let answer = mint(&api, &signer.careful(), 101, "");
        let token = token_of(&answer);
        let body = answer.json();
        assert!(token.starts_with("ghs_") && token.len() > 400);
        assert_eq!(body["repository_selection"], "all");
        assert!(body.get("repositories").is_none());
        assert_eq!(
            body["permissions"],
            permissions_json(INSTALLATION_PERMISSIONS.iter().copied())
        );
        let text = body["expires_at"].as_str().expect("expires_at");
        assert!(text.ends_with('Z') && !text.contains('.'), "{text}");
        let expires_at = OffsetDateTime::parse(text, &Rfc3339).expect("RFC 3339");
        let lifetime = expires_at - OffsetDateTime::now_utc();
        assert!(
            (3590..=3600).contains(&lifetime.whole_seconds()),
            "{lifetime}"
        );
        assert!(authority.is_valid(&token));
        assert_eq!(authority.owner_of(&token).as_deref(), Some("acme"));
        assert_eq!(authority.repositories_of(&token), None);
        assert_eq!(
            api.issued(),
            vec![IssuedInfo {
                installation_id: 101,
                owner: "acme".to_owned(),
                repositories: None,
                permissions: None,
                token_len: token.len(),
            }]
        );

        let repos = call(
            &api,
            "GET",
            "/installation/repositories",
            Some(&format!("token {token}")),
            "",
        );
        assert_eq!(repos.status, 200);
        assert_eq!(repos.json()["total_count"], 3);

        // GitHub accepts iss as a string too.
        let now = unix_now();
        let string_iss =
            signer.claims(&json!({ "iss": APP_ID.to_string(), "iat": now - 60, "exp": now + 540 }));
        assert_eq!(mint(&api, &string_iss, 202, "").status, 201);
        assert_eq!(api.issued()[1].owner, "alice");

        let unknown = mint(&api, &signer.careful(), 999, "");
        assert_eq!(
            (unknown.status, unknown.message()),
            (404, "Not Found".to_owned())
        );
        assert!(api.jwt_rejections().is_empty());
        assert!(
            api.requests()
                .iter()
                .all(|record| !record.path.contains("ghs_"))
        );
    }

    #[test]
    fn narrowing_selects_repositories_and_permissions() {
        let (api, authority) = start(options());
        let signer = Signer::app();
        let lib_id = api.repository_id("ACME", "lib").expect("lib has an id");

        let body = json!({
            "repositories": ["APP"],
            "repository_ids": [lib_id],
            "permissions": { "contents": "read" },
        });
        let answer = mint(&api, &signer.careful(), 101, &body.to_string());
        let token = token_of(&answer);
        let body = answer.json();
        assert_eq!(body["repository_selection"], "selected");
        assert_eq!(body["permissions"], json!({ "contents": "read" }));
        let names: Vec<(&str, &str)> = body["repositories"]
            .as_array()
            .expect("repositories")
            .iter()
            .map(|repo| {
                (
                    repo["name"].as_str().expect("name"),
                    repo["full_name"].as_str().expect("full_name"),
                )
            })
            .collect();
        assert_eq!(names, [("app", "acme/app"), ("lib", "acme/lib")]);
        let selected = Some(vec!["app".to_owned(), "lib".to_owned()]);
        assert_eq!(authority.repositories_of(&token), selected);
        let info = &api.issued()[0];
        assert_eq!(info.repositories, selected);
        assert_eq!(
            info.permissions,
            Some(BTreeMap::from([("contents".to_owned(), "read".to_owned())]))
        );
        let listed = call(
            &api,
            "GET",
            "/installation/repositories",
            Some(&format!("Bearer {token}")),
            "",
        );
        assert_eq!(listed.json()["total_count"], 2);

        for (body, message) in [
            (
                json!({ "repositories": ["app", "secret"] }),
                "There is at least one repository that does not exist or is not accessible to the parent installation.",
            ),
            (
                json!({ "repositories": ["dotfiles"] }),
                "There is at least one repository that does not exist or is not accessible to the parent installation.",
            ),
            (
                json!({ "repository_ids": [9_999_999] }),
                "There is at least one repository that does not exist or is not accessible to the parent installation.",
            ),
            (
                json!({ "permissions": { "administration": "write" } }),
                "The permissions requested are not granted to this installation.",
            ),
            (
                json!({ "permissions": { "metadata": "write" } }),
                "The permissions requested are not granted to this installation.",
            ),
            (json!({ "repositories": "app" }), "Invalid request."),
        ] {
            let answer = mint(&api, &signer.careful(), 101, &body.to_string());
            assert_eq!(
                (answer.status, answer.message()),
                (422, message.to_owned()),
                "{body}"
            );
        }
        let broken = mint(&api, &signer.careful(), 101, "{not json");
        assert_eq!(
            (broken.status, broken.message()),
            (400, "Problems parsing JSON".to_owned())
        );
        assert_eq!(api.issued().len(), 1, "refused requests mint nothing");
    }

    #[test]
    fn each_jwt_defect_is_rejected_with_githubs_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let other_key = dir.path().join("other.pem");
        let status = Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&other_key)
            .arg("2048")
            .output()
            .expect("run openssl genrsa");
        assert!(status.status.success(), "openssl genrsa failed");
        let other = Signer::from_pem_file(&other_key);
        let (api, authority) = start(options());
        let signer = Signer::app();
        let now = unix_now();
        let claims = json!({ "iss": APP_ID, "iat": now - 60, "exp": now + 540 });
        let unsigned = |header: Value| {
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            )
        };
        let hs256 = format!(
            "{}{}",
            unsigned(json!({ "alg": "HS256", "typ": "JWT" })),
            URL_SAFE_NO_PAD.encode([7u8; 32])
        );
        let installation_token = authority.issue(Duration::from_secs(60)).token;

        const DECODE: &str = "A JSON web token could not be decoded";
        const IAT: &str =
            "'Issued at' claim ('iat') must be an Integer representing a time in the past";
        const EXPIRED: &str = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
        const TOO_FAR: &str = "'Expiration time' claim ('exp') is too far in the future";
        let cases: Vec<(&str, Option<String>, &str, &str)> = vec![
            ("no header", None, "missing", DECODE),
            (
                "other key",
                Some(format!("Bearer {}", other.careful())),
                "bad-signature",
                DECODE,
            ),
            (
                "alg none",
                Some(format!(
                    "Bearer {}",
                    unsigned(json!({ "alg": "none", "typ": "JWT" }))
                )),
                "bad-alg",
                DECODE,
            ),
            (
                "alg HS256",
                Some(format!("Bearer {hs256}")),
                "bad-alg",
                DECODE,
            ),
            (
                "exp 11 minutes ahead",
                Some(format!("Bearer {}", signer.jwt(now - 60, now + 660))),
                "exp-too-far",
                TOO_FAR,
            ),
            (
                "iat in the future",
                Some(format!("Bearer {}", signer.jwt(now + 30, now + 300))),
                "iat-future",
                IAT,
            ),
            (
                "no iat",
                Some(format!(
                    "Bearer {}",
                    signer.claims(&json!({ "iss": APP_ID, "exp": now + 300 }))
                )),
                "iat-future",
                IAT,
            ),
            (
                "expired",
                Some(format!("Bearer {}", signer.jwt(now - 700, now - 100))),
                "expired",
                EXPIRED,
            ),
            (
                "exp as a string",
                Some(format!(
                    "Bearer {}",
                    signer.claims(
                        &json!({ "iss": APP_ID, "iat": now - 60, "exp": (now + 300).to_string() })
                    )
                )),
                "expired",
                EXPIRED,
            ),
            (
                "wrong iss",
                Some(format!(
                    "Bearer {}",
                    signer.claims(&json!({ "iss": APP_ID + 1, "iat": now - 60, "exp": now + 540 }))
                )),
                "wrong-iss",
                "Integration not found",
            ),
            (
                "garbage",
                Some("Bearer garbage".to_owned()),
                "malformed",
                DECODE,
            ),
            (
                "three garbage parts",
                Some("Bearer a.b.c".to_owned()),
                "malformed",
                DECODE,
            ),
            (
                "an installation token",
                Some(format!("Bearer {installation_token}")),
                "malformed",
                DECODE,
            ),
        ];
        for (name, authorization, _, message) in &cases {
            let answer = call(
                &api,
                "POST",
                "/app/installations/101/access_tokens",
                authorization.as_deref(),
                "",
            );
            assert_eq!(answer.status, 401, "{name}: {}", answer.body);
            assert_eq!(answer.message(), *message, "{name}");
        }
        let reasons: Vec<&str> = cases.iter().map(|(_, _, reason, _)| *reason).collect();
        assert_eq!(api.jwt_rejections(), reasons);
        assert!(api.issued().is_empty());
    }

    #[test]
    fn server_clock_skew_decides_and_shows() {
        let (api, authority) = start(GithubApiOptions {
            clock_skew: time::Duration::minutes(5),
            ..options()
        });
        let signer = Signer::app();

        // Server 5 min ahead; a careful JWT (iat now-60, exp now+540 by the client clock)
        // is iat -360 s and exp +240 s by the server's: GitHub accepts it.
        let answer = mint(&api, &signer.careful(), 101, "");
        let token = token_of(&answer);
        assert!(authority.is_valid(&token));
        let date = answer.header("date").expect("a Date header");
        let date = PrimitiveDateTime::parse(date, IMF_FIXDATE)
            .expect("an IMF-fixdate")
            .assume_utc();
        let shown = (date - OffsetDateTime::now_utc()).whole_seconds();
        assert!((295..=301).contains(&shown), "Date is {shown} s ahead");
        let expires_at = OffsetDateTime::parse(
            answer.json()["expires_at"].as_str().expect("expires_at"),
            &Rfc3339,
        )
        .expect("RFC 3339");
        let ahead = (expires_at - OffsetDateTime::now_utc()).whole_seconds();
        assert!(
            (3890..=3900).contains(&ahead),
            "expires_at by the server clock: {ahead}"
        );

        // 10 min ahead: exp is 60 s in the server's past.
        api.set_clock_skew(time::Duration::minutes(10));
        let answer = mint(&api, &signer.careful(), 101, "");
        assert_eq!(answer.status, 401);
        assert!(
            answer
                .message()
                .contains("must be a numeric value representing the future time")
        );

        // 5 min behind: iat is 240 s in the server's future.
        api.set_clock_skew(time::Duration::minutes(-5));
        let answer = mint(&api, &signer.careful(), 101, "");
        assert_eq!(answer.status, 401);
        assert!(answer.message().starts_with("'Issued at' claim ('iat')"));
        // With iat fine, exp 9 min ahead by the client is 14 min ahead by the server.
        let now = unix_now();
        let answer = mint(&api, &signer.jwt(now - 400, now + 540), 101, "");
        assert_eq!(answer.message(), JwtRejection::ExpTooFar.message());

        // 60 s behind: the recommended 60 s of backdating is exactly enough.
        api.set_clock_skew(time::Duration::seconds(-60));
        assert_eq!(mint(&api, &signer.careful(), 101, "").status, 201);

        assert_eq!(
            api.jwt_rejections(),
            ["expired", "iat-future", "exp-too-far"]
        );
        let date = call(&api, "GET", "/nowhere", None, "");
        assert_eq!(date.status, 404);
        assert!(date.header("date").is_some_and(|d| d.ends_with(" GMT")));
    }

    #[test]
    fn discovery_routes_follow_owner_kind() {
        let (api, _) = start(options());
        let signer = Signer::app();
        let get = |path: &str| {
            call(
                &api,
                "GET",
                path,
                Some(&format!("Bearer {}", signer.careful())),
                "",
            )
        };

        let org = get("/orgs/ACME/installation");
        assert_eq!(org.status, 200);
        let org = org.json();
        assert_eq!(org["id"], 101);
        assert_eq!(
            org["account"],
            json!({ "login": "acme", "type": "Organization" })
        );
        assert_eq!(org["app_id"], APP_ID);
        assert_eq!(org["repository_selection"], "all");
        let user = get("/users/alice/installation");
        assert_eq!(user.status, 200);
        assert_eq!(user.json()["account"]["type"], "User");
        assert_eq!(get("/repos/acme/app/installation").json()["id"], 101);
        assert_eq!(get("/repos/Alice/DotFiles/installation").json()["id"], 202);
        for path in [
            "/users/acme/installation",
            "/orgs/alice/installation",
            "/orgs/nobody/installation",
            "/repos/acme/secret/installation",
            "/repos/nobody/app/installation",
        ] {
            let answer = get(path);
            assert_eq!(
                (answer.status, answer.message()),
                (404, "Not Found".to_owned()),
                "{path}"
            );
        }
        let unauthenticated = call(&api, "GET", "/orgs/acme/installation", None, "");
        assert_eq!(unauthenticated.status, 401);
        assert_eq!(api.discoveries(), 10);
        assert_eq!(api.jwt_rejections(), ["missing"]);
    }

    #[test]
    fn delete_installation_token_revokes_it() {
        let (api, authority) = start(options());
        let signer = Signer::app();
        let first = token_of(&mint(&api, &signer.careful(), 101, ""));
        let second = token_of(&mint(&api, &signer.careful(), 202, ""));

        let answer = call(
            &api,
            "DELETE",
            "/installation/token",
            Some(&format!("token {first}")),
            "",
        );
        assert_eq!((answer.status, answer.body.as_str()), (204, ""));
        assert!(!authority.is_valid(&first));
        let again = call(
            &api,
            "DELETE",
            "/installation/token",
            Some(&format!("token {first}")),
            "",
        );
        assert_eq!(
            (again.status, again.message()),
            (401, "Bad credentials".to_owned())
        );
        let answer = call(
            &api,
            "DELETE",
            "/installation/token",
            Some(&format!("Bearer {second}")),
            "",
        );
        assert_eq!(answer.status, 204);
        assert!(!authority.is_valid(&second));
        // A JWT is no installation token.
        let jwt = call(
            &api,
            "DELETE",
            "/installation/token",
            Some(&format!("Bearer {}", signer.careful())),
            "",
        );
        assert_eq!(jwt.status, 401);
        assert_eq!(api.revoked(), 2);
        assert_eq!(api.revocation_schemes(), ["token", "bearer"]);
        let listed = call(
            &api,
            "GET",
            "/installation/repositories",
            Some(&format!("token {second}")),
            "",
        );
        assert_eq!(listed.status, 401);
    }

    #[test]
    fn tls_with_the_ghes_path_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::generate(dir.path());
        let api = GithubApi::start(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            GithubApiOptions {
                path_prefix: "api/v3/".to_owned(),
                ..options()
            },
            TokenAuthority::new(),
            Some(&ca),
        );
        assert_eq!(api.url(), format!("https://{}/api/v3", api.addr()));
        let bearer = format!("Bearer {}", Signer::app().careful());
        let curl = |url: &str| {
            let output = ca
                .curl(dir.path(), &bearer)
                .args(["-w", "\n%{http_code}", url])
                .output()
                .expect("run curl");
            assert!(
                output.status.success(),
                "curl failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let stdout = String::from_utf8(output.stdout).expect("UTF-8");
            let (body, code) = stdout.rsplit_once('\n').expect("status after the body");
            (code.to_owned(), body.to_owned())
        };
        let (code, body) = curl(&format!("{}/app", api.url()));
        assert_eq!(code, "200", "{body}");
        assert!(body.contains(APP_SLUG));
        let (code, _) = curl(&format!("https://{}/app", api.addr()));
        assert_eq!(code, "404", "outside the prefix");
    }
}
