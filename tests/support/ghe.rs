//! A GitHub Enterprise Server API stand-in, just enough for real `gh` 2.23:
//! `gh auth login --with-token` validates the token with `GET /api/v3/` (and checks the
//! `X-OAuth-Scopes` it gets back), and `gh api /user` reads `GET /api/v3/user`.
//!
//! gh 2.23 refuses a `--hostname` with a port, so tests bind this to `127.0.0.1:443` for
//! host `localhost`, inside their own network namespace (see [`crate::netns`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hyper::header::{AUTHORIZATION, HeaderValue};
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use crate::authority::TokenAuthority;
use crate::server::{self, Body, Ctx, Reply, Request, ServerThread};
use crate::tls::TestCa;

/// The scopes a classic token needs for gh to accept it at login: gh 2.23 requires
/// `repo` and `read:org` when the header is present (an absent header, as for app
/// installation tokens on github.com, passes too).
const SCOPES: &str = "repo, read:org";

/// A running GitHub Enterprise API stand-in; stops when dropped.
pub struct GheServer {
    server: ServerThread,
    state: Arc<State>,
}

pub(crate) struct State {
    authority: TokenAuthority,
    ok: AtomicU64,
    unauthorized: AtomicU64,
    echo_rejected: AtomicBool,
}

impl GheServer {
    /// Serves the API at `addr` over TLS with the server certificate of `ca`, accepting
    /// tokens that `authority` holds valid.
    pub fn start(addr: SocketAddr, ca: &TestCa, authority: TokenAuthority) -> GheServer {
        let state = api_state(authority);
        let handler_state = state.clone();
        let server = ServerThread::spawn(
            "ghe-standin",
            addr,
            Some(ca.server_config()),
            Arc::new(move |request, _ctx: Ctx| {
                let state = handler_state.clone();
                server::boxed(async move { Reply::Response(handle(&state, &request)) })
            }),
        );
        GheServer { server, state }
    }

    /// The address bound.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Requests answered 200 (or 404 for an unknown path) with a valid token.
    pub fn ok(&self) -> u64 {
        self.state.ok.load(Ordering::Relaxed)
    }

    /// Requests answered 401.
    pub fn unauthorized(&self) -> u64 {
        self.state.unauthorized.load(Ordering::Relaxed)
    }

    /// From now on, a 401's message quotes the token it refused, as a careless server or
    /// proxy might: gh then prints the token back on its stderr (for the redaction tests).
    pub fn echo_rejected_tokens(&self) {
        self.state.echo_rejected.store(true, Ordering::Relaxed);
    }
}

/// Fresh API state, for a server that also serves the API (see
/// [`crate::git_server::GitServer::start_with_api`]).
pub(crate) fn api_state(authority: TokenAuthority) -> Arc<State> {
    Arc::new(State {
        authority,
        ok: AtomicU64::new(0),
        unauthorized: AtomicU64::new(0),
        echo_rejected: AtomicBool::new(false),
    })
}

/// Answers one API request.
pub(crate) fn handle(state: &State, request: &Request) -> Response<Body> {
    let token = bearer_or_token(&request.headers);
    if !token.is_some_and(|token| state.authority.is_valid(token)) {
        state.unauthorized.fetch_add(1, Ordering::Relaxed);
        let message = match token {
            Some(token) if state.echo_rejected.load(Ordering::Relaxed) => {
                format!("Bad credentials: {token}")
            }
            _ => "Bad credentials".to_owned(),
        };
        return with_github_headers(
            server::json(StatusCode::UNAUTHORIZED, &json!({ "message": message })),
            false,
        );
    }
    state.ok.fetch_add(1, Ordering::Relaxed);
    let path = request.uri.path();
    let response = match (&request.method, path) {
        (&Method::GET, "/api/v3" | "/api/v3/") => server::json(StatusCode::OK, &json!({})),
        (&Method::GET, "/api/v3/user") => {
            server::json(StatusCode::OK, &json!({ "login": "molecule-bot", "id": 1 }))
        }
        _ => server::json(
            StatusCode::NOT_FOUND,
            &json!({
                "message": "Not Found",
                "documentation_url": "https://docs.github.com/enterprise-server@3.9/rest"
            }),
        ),
    };
    with_github_headers(response, true)
}

/// `Authorization: token T` (what gh sends) or `Authorization: Bearer T`.
fn bearer_or_token(headers: &hyper::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    ((scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
        && !token.is_empty())
    .then_some(token)
}

/// Headers a real GHES 3.9 sends on every API answer; scopes only to an authenticated
/// caller.
fn with_github_headers(mut response: Response<Body>, authenticated: bool) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(
        "x-github-enterprise-version",
        HeaderValue::from_static("3.9.0"),
    );
    headers.insert(
        "x-github-media-type",
        HeaderValue::from_static("github.v3; format=json"),
    );
    if authenticated {
        headers.insert("x-oauth-scopes", HeaderValue::from_static(SCOPES));
        headers.insert("x-accepted-oauth-scopes", HeaderValue::from_static(""));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    /// `curl` status code for `GET url` with `Authorization: token …`, trusting only the
    /// test CA. The header goes through a file so the token is not in curl's arguments.
    fn curl_status(ca: &TestCa, dir: &std::path::Path, url: &str, token: &str) -> (u16, String) {
        let body_file = dir.join("body");
        let output = ca
            .curl(dir, &format!("token {token}"))
            .arg("-o")
            .arg(&body_file)
            .args(["-w", "%{http_code}", url])
            .output()
            .expect("run curl");
        assert!(
            output.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let code = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("curl printed the status code");
        let body = std::fs::read_to_string(&body_file).unwrap_or_default();
        (code, body)
    }

    #[test]
    fn answers_valid_and_rejects_invalid_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::generate(dir.path());
        let authority = TokenAuthority::new();
        let ghe = GheServer::start(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            &ca,
            authority.clone(),
        );
        let token = authority.issue(Duration::from_secs(300)).token;
        let base = format!("https://localhost:{}/api/v3", ghe.addr().port());

        let (code, body) = curl_status(&ca, dir.path(), &format!("{base}/"), &token);
        assert_eq!((code, body.as_str()), (200, "{}"));
        let (code, body) = curl_status(&ca, dir.path(), &format!("{base}/user"), &token);
        assert_eq!(code, 200);
        let user: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(user["login"], "molecule-bot");
        let (code, body) = curl_status(&ca, dir.path(), &format!("{base}/user"), "ghs_nope");
        assert_eq!(code, 401);
        assert!(body.contains("Bad credentials"));
        assert_eq!((ghe.ok(), ghe.unauthorized()), (2, 1));
    }
}

/// Real `gh` against the stand-in on `localhost:443`, in a private network namespace.
#[cfg(test)]
mod gh_tests {
    use super::*;
    use std::io::Write;
    use std::net::Ipv4Addr;
    use std::path::Path;
    use std::process::{Command, Output, Stdio};
    use std::time::Duration;

    fn gh(home: &Path, ca: &TestCa) -> Command {
        let mut command = Command::new("gh");
        crate::gitcmd::isolate(&mut command, home);
        command
            .env("GH_CONFIG_DIR", home.join("gh"))
            .env("SSL_CERT_FILE", ca.ca_pem_path())
            // No update checks, prompts or pagers reaching for the network or a terminal.
            .env("GH_NO_UPDATE_NOTIFIER", "1")
            .env("GH_PROMPT_DISABLED", "1")
            .env("GH_PAGER", "cat")
            .env("NO_COLOR", "1");
        command
    }

    fn login(home: &Path, ca: &TestCa, token: &str) -> Output {
        let mut child = gh(home, ca)
            .args(["auth", "login", "--hostname", "localhost", "--with-token"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run gh auth login");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(format!("{token}\n").as_bytes())
            .expect("send the token to gh");
        child.wait_with_output().expect("wait for gh auth login")
    }

    #[test]
    fn gh_login_against_ghe_standin() {
        if !crate::netns::in_private_netns("ghe::gh_tests::gh_login_against_ghe_standin") {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::generate(dir.path());
        let authority = TokenAuthority::new();
        let ghe = GheServer::start(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 443)),
            &ca,
            authority.clone(),
        );
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("home");
        let token = authority.issue(Duration::from_secs(300)).token;

        let output = login(&home, &ca, &token);
        assert!(
            output.status.success(),
            "gh auth login failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let hosts = std::fs::read_to_string(home.join("gh/hosts.yml")).expect("hosts.yml");
        assert!(hosts.contains("localhost:") && hosts.contains(&token));

        let output = gh(&home, &ca)
            .args(["api", "--hostname", "localhost", "/user"])
            .output()
            .expect("run gh api");
        assert!(
            output.status.success(),
            "gh api /user failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let user: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
        assert_eq!(user["login"], "molecule-bot");

        let unauthorized = ghe.unauthorized();
        let output = login(&home, &ca, "ghs_not_a_valid_token");
        assert!(!output.status.success(), "gh accepted a bad token");
        assert!(ghe.unauthorized() > unauthorized);
        // A failed login leaves the stored token in place.
        let hosts = std::fs::read_to_string(home.join("gh/hosts.yml")).expect("hosts.yml");
        assert!(
            hosts.contains(&token),
            "a failed login replaced the stored token"
        );
        assert!(!hosts.contains("ghs_not_a_valid_token"));
        // gh prints the server's message: with the token in it, gh prints the token back.
        ghe.echo_rejected_tokens();
        let output = login(&home, &ca, "ghs_echoed_back_by_the_server");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains("ghs_echoed_back_by_the_server"),
            "{stderr}"
        );
    }
}
