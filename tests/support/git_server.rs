//! An HTTPS smart-HTTP git server that relays every request to the real
//! `git http-backend` as CGI, behind token authentication against a [`TokenAuthority`].
//!
//! Using the real backend (rather than a fake of the protocol) means clone, fetch and push
//! behave exactly as against a git host: protocol v2, pack negotiation, the 401 that makes
//! git call the credential helper, and the `erase` after a rejected credential.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::io::AsyncWriteExt;

use crate::authority::TokenAuthority;
use crate::gitcmd;
use crate::server::{self, Body, Ctx, Reply, Request, ServerThread};
use crate::tls::TestCa;

/// A CGI child that has not answered by then is stuck; kill it rather than hang the test.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The only username accepted in Basic auth, as GitHub documents for installation tokens.
const USERNAME: &str = "x-access-token";

/// Decides whether `token` may access the repository at request path `path`
/// (e.g. `/acme/widgets.git/info/refs`).
pub type AuthRule = Box<dyn Fn(&str, &str) -> bool + Send + Sync>;

type SharedRule = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// A running git server; stops when dropped.
pub struct GitServer {
    server: ServerThread,
    state: Arc<State>,
}

struct State {
    repos_root: PathBuf,
    backend: PathBuf,
    /// PATH for the CGI child: git's exec-path first, so the backend finds
    /// `git-upload-pack` and `git-receive-pack` whatever the caller's PATH.
    path: String,
    rule: RwLock<SharedRule>,
    requests: AtomicU64,
    unauthorized: AtomicU64,
    /// When set, `/api/…` is the GitHub Enterprise API, as on a real GHE host.
    api: Option<Arc<crate::ghe::State>>,
}

impl GitServer {
    /// Serves the repositories under `repos_root` on `127.0.0.1` (ephemeral port) with
    /// the server certificate of `ca`, accepting tokens that `authority` holds valid.
    pub fn start(repos_root: &Path, ca: &TestCa, authority: TokenAuthority) -> GitServer {
        GitServer::start_on(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            repos_root,
            ca,
            authority,
        )
    }

    /// As [`GitServer::start`], on a chosen address.
    pub fn start_on(
        addr: SocketAddr,
        repos_root: &Path,
        ca: &TestCa,
        authority: TokenAuthority,
    ) -> GitServer {
        GitServer::spawn(addr, repos_root, ca, authority, false)
    }

    /// A GitHub-Enterprise-like host: git smart HTTP for repositories and, under `/api/`,
    /// the API stand-in of [`crate::ghe`], on one address. With `127.0.0.1:443` in a private
    /// network namespace, host `localhost` serves both `git clone https://localhost/o/r.git`
    /// and `gh api --hostname localhost /user`.
    pub fn start_with_api(
        addr: SocketAddr,
        repos_root: &Path,
        ca: &TestCa,
        authority: TokenAuthority,
    ) -> GitServer {
        GitServer::spawn(addr, repos_root, ca, authority, true)
    }

    fn spawn(
        addr: SocketAddr,
        repos_root: &Path,
        ca: &TestCa,
        authority: TokenAuthority,
        with_api: bool,
    ) -> GitServer {
        let api = with_api.then(|| crate::ghe::api_state(authority.clone()));
        let exec_path = git_exec_path();
        let backend = exec_path.join("git-http-backend");
        assert!(
            backend.is_file(),
            "git-http-backend not found at {}",
            backend.display()
        );
        let default_rule: SharedRule =
            Arc::new(move |_path: &str, token: &str| authority.is_valid(token));
        let state = Arc::new(State {
            repos_root: repos_root.to_path_buf(),
            backend,
            path: format!("{}:/usr/local/bin:/usr/bin:/bin", exec_path.display()),
            rule: RwLock::new(default_rule),
            requests: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
            api,
        });
        let handler_state = state.clone();
        let server = ServerThread::spawn(
            "git-server",
            addr,
            Some(ca.server_config()),
            Arc::new(move |request, _ctx: Ctx| {
                let state = handler_state.clone();
                server::boxed(async move { Reply::Response(handle(&state, request).await) })
            }),
        );
        GitServer { server, state }
    }

    /// Replaces the access rule, e.g. to accept `/OWNER/…` only with that owner's
    /// tokens. The default rule is `authority.is_valid(token)`.
    pub fn set_auth_rule(&self, rule: AuthRule) {
        *self
            .state
            .rule
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::from(rule);
    }

    /// Base URL, e.g. `https://127.0.0.1:41234`; append `/NAME` for a repository.
    pub fn url(&self) -> String {
        format!("https://{}", self.host())
    }

    /// Host as git's credential protocol names it: `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.server.addr().to_string()
    }

    /// The port bound.
    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// Where the repositories live.
    pub fn repos_root(&self) -> &Path {
        &self.state.repos_root
    }

    /// Requests received so far, authorized or not.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Requests answered 401 so far.
    pub fn unauthorized(&self) -> u64 {
        self.state.unauthorized.load(Ordering::Relaxed)
    }
}

/// Creates a bare repository `repos_root/name` (parents included) with `HEAD` on `main`
/// and pushes over HTTP enabled, and returns its path.
pub fn init_bare_repo(repos_root: &Path, name: &str) -> PathBuf {
    let path = repos_root.join(name);
    std::fs::create_dir_all(&path).expect("create the repository directory");
    run_git(
        repos_root,
        gitcmd::git(repos_root)
            .args(["init", "--bare", "-q", "--initial-branch=main"])
            .arg(&path),
    );
    run_git(
        repos_root,
        gitcmd::git(repos_root)
            .arg("-C")
            .arg(&path)
            .args(["config", "http.receivepack", "true"]),
    );
    path
}

fn run_git(repos_root: &Path, command: &mut std::process::Command) {
    let output = command.output().expect("run git");
    assert!(
        output.status.success(),
        "git failed under {}: {:?}\n{}",
        repos_root.display(),
        command,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn git_exec_path() -> PathBuf {
    let output = std::process::Command::new("git")
        .arg("--exec-path")
        .output()
        .expect("run `git --exec-path`: is git installed?");
    assert!(output.status.success(), "`git --exec-path` failed");
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

async fn handle(state: &State, request: Request) -> Response<Body> {
    if let Some(api) = state
        .api
        .as_ref()
        .filter(|_| request.uri.path().starts_with("/api/"))
    {
        return crate::ghe::handle(api, &request);
    }
    state.requests.fetch_add(1, Ordering::Relaxed);
    if !authorize(state, &request) {
        state.unauthorized.fetch_add(1, Ordering::Relaxed);
        let mut response = server::text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
        response.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"test\""),
        );
        return response;
    }
    match run_backend(state, &request).await {
        Ok(response) => response,
        Err(message) => server::text(StatusCode::BAD_GATEWAY, format!("{message}\n")),
    }
}

/// The one place access is decided: Basic credentials with the `x-access-token` user,
/// and a token the current rule accepts for this path.
fn authorize(state: &State, request: &Request) -> bool {
    let Some(token) = basic_token(&request.headers) else {
        return false;
    };
    let rule = state
        .rule
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    rule(request.uri.path(), &token)
}

fn basic_token(headers: &hyper::HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (user, token) = decoded.split_once(':')?;
    (user == USERNAME && !token.is_empty()).then(|| token.to_owned())
}

async fn run_backend(state: &State, request: &Request) -> Result<Response<Body>, String> {
    let mut command = tokio::process::Command::new(&state.backend);
    command
        .env_clear()
        .env("PATH", &state.path)
        .env("HOME", &state.repos_root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        // Pushes over HTTP, and repositories created by another uid (a container volume).
        .env("GIT_CONFIG_COUNT", "2")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env("GIT_CONFIG_VALUE_0", "true")
        .env("GIT_CONFIG_KEY_1", "safe.directory")
        .env("GIT_CONFIG_VALUE_1", "*")
        .env("GIT_PROJECT_ROOT", &state.repos_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", request.method.as_str())
        .env("PATH_INFO", request.uri.path())
        .env("QUERY_STRING", request.uri.query().unwrap_or(""))
        .env("REMOTE_USER", USERNAME)
        .env("REMOTE_ADDR", request.remote.ip().to_string())
        .env("CONTENT_LENGTH", request.body.len().to_string());
    if let Some(value) = header_str(&request.headers, CONTENT_TYPE) {
        command.env("CONTENT_TYPE", value);
    }
    // http-backend inflates gzip bodies itself when told the encoding, as a web server
    // would tell it; git sends large push bodies gzipped.
    if let Some(value) = header_str(&request.headers, CONTENT_ENCODING) {
        command.env("HTTP_CONTENT_ENCODING", value);
    }
    if let Some(value) = header_str(&request.headers, HeaderName::from_static("git-protocol")) {
        command
            .env("GIT_PROTOCOL", value)
            .env("HTTP_GIT_PROTOCOL", value);
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);

    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start git http-backend: {e}"))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or("git http-backend has no stdin pipe")?;
    let body = request.body.clone();
    // Writing the whole body before reading would deadlock once both pipes fill (a
    // multi-MB push answered by a large report), so feed and drain at the same time.
    let feed = async move {
        // The backend may answer without reading everything (an error): a broken pipe
        // here is then expected, and its output tells what happened.
        let _ = stdin.write_all(&body).await;
        drop(stdin);
    };
    let (_, output) = tokio::time::timeout(BACKEND_TIMEOUT, async {
        tokio::join!(feed, child.wait_with_output())
    })
    .await
    .map_err(|_| format!("git http-backend timed out after {BACKEND_TIMEOUT:?}"))?;
    let output = output.map_err(|e| format!("git http-backend failed: {e}"))?;
    parse_cgi(&output.stdout).ok_or_else(|| {
        format!(
            "git http-backend gave no CGI headers (exit {}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
    })
}

fn header_str(headers: &hyper::HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Turns CGI output (headers, a blank line, the body) into a response.
fn parse_cgi(stdout: &[u8]) -> Option<Response<Body>> {
    let (head, body) = split_head(stdout)?;
    let head = std::str::from_utf8(head).ok()?;
    let mut response = Response::new(server::full(Bytes::copy_from_slice(body)));
    for line in head.lines() {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next()?.parse::<u16>().ok()?;
            *response.status_mut() = StatusCode::from_u16(code).ok()?;
            continue;
        }
        // hyper frames the body itself; a CGI's own framing headers would conflict.
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            continue;
        }
        response.headers_mut().append(
            HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
            HeaderValue::from_str(value).ok()?,
        );
    }
    Some(response)
}

fn split_head(stdout: &[u8]) -> Option<(&[u8], &[u8])> {
    let crlf = find(stdout, b"\r\n\r\n").map(|i| (i, 4));
    let lf = find(stdout, b"\n\n").map(|i| (i, 2));
    let (at, len) = match (crlf, lf) {
        (Some(a), Some(b)) => {
            if a.0 <= b.0 {
                a
            } else {
                b
            }
        }
        (a, b) => a.or(b)?,
    };
    Some((&stdout[..at], &stdout[at + len..]))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Output;

    /// A git command for a client in `home` that answers `token` from an inline helper and
    /// trusts only the test CA. The token reaches git through the environment, so it
    /// never appears in an argument list or in test output.
    fn client(home: &Path, ca: &TestCa, token: &str) -> std::process::Command {
        let mut command = gitcmd::git(home);
        command
            .env("TEST_TOKEN", token)
            .arg("-c")
            .arg(format!("http.sslCAInfo={}", ca.ca_pem_path().display()))
            .args(["-c", "credential.helper="])
            .args([
                "-c",
                "credential.helper=!f() { echo username=x-access-token; echo \"password=$TEST_TOKEN\"; }; f",
            ]);
        command
    }

    fn run(command: &mut std::process::Command) -> Output {
        command.output().expect("run git")
    }

    fn assert_ok(output: &Output, what: &str) {
        assert!(
            output.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    struct Fixture {
        dir: tempfile::TempDir,
        ca: TestCa,
        authority: TokenAuthority,
        server: GitServer,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::generate(dir.path());
        let repos = dir.path().join("repos");
        init_bare_repo(&repos, "acme/widgets.git");
        let authority = TokenAuthority::new();
        let server = GitServer::start(&repos, &ca, authority.clone());
        Fixture {
            dir,
            ca,
            authority,
            server,
        }
    }

    #[test]
    fn clone_with_valid_token_and_push_back() {
        let f = fixture();
        let token = f.authority.issue(Duration::from_secs(300)).token;
        let home = f.dir.path().join("home");
        let work = f.dir.path().join("work");
        let url = format!("{}/acme/widgets.git", f.server.url());

        assert_ok(
            &run(client(&home, &f.ca, &token)
                .args(["clone", "-q", &url])
                .arg(&work)),
            "clone of the empty repository",
        );
        std::fs::write(work.join("README"), "hello\n").expect("write README");
        // A few MB of incompressible data: exercises the concurrent stdin/stdout relay
        // and git's gzip + chunked upload of a large pack.
        let mut noise = vec![0u8; 3 * 1024 * 1024];
        rand::fill(&mut noise[..]);
        std::fs::write(work.join("noise.bin"), &noise).expect("write noise");
        assert_ok(
            &run(gitcmd::git(&home).arg("-C").arg(&work).args(["add", "."])),
            "add",
        );
        assert_ok(
            &run(gitcmd::git(&home)
                .arg("-C")
                .arg(&work)
                .args(["commit", "-q", "-m", "first"])),
            "commit",
        );
        assert_ok(
            &run(client(&home, &f.ca, &token).arg("-C").arg(&work).args([
                "push",
                "-q",
                "origin",
                "HEAD:main",
            ])),
            "push",
        );

        let second = f.dir.path().join("second");
        assert_ok(
            &run(client(&home, &f.ca, &token)
                .args(["clone", "-q", &url])
                .arg(&second)),
            "clone after push",
        );
        assert_eq!(
            std::fs::read(second.join("noise.bin")).expect("read cloned noise"),
            noise
        );
        assert!(f.server.requests() >= 4);

        let head = run(gitcmd::git(&home)
            .arg("-C")
            .arg(&work)
            .args(["rev-parse", "HEAD"]));
        assert_ok(&head, "rev-parse");
        let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
        let pack = gzipped_upload_pack(&f, &token, &head);
        assert!(
            pack.windows(4).any(|w| w == b"PACK"),
            "no pack in the answer to a gzipped upload-pack request"
        );
    }

    /// POSTs a gzipped protocol-v0 upload-pack request for `want` with curl (git itself
    /// gzips only mid-sized negotiation bodies, hard to provoke on purpose) and returns
    /// the response body.
    fn gzipped_upload_pack(f: &Fixture, token: &str, want: &str) -> Vec<u8> {
        let request = format!("0032want {want}\n00000009done\n");
        let mut gzip = std::process::Command::new("gzip")
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run gzip");
        std::io::Write::write_all(
            &mut gzip.stdin.take().expect("stdin is piped"),
            request.as_bytes(),
        )
        .expect("feed gzip");
        let gzipped = gzip.wait_with_output().expect("gzip output");
        assert!(gzipped.status.success());
        let body_file = f.dir.path().join("upload-pack.gz");
        std::fs::write(&body_file, &gzipped.stdout).expect("write gzipped body");
        let basic = format!("Basic {}", BASE64.encode(format!("{USERNAME}:{token}")));
        let output =
            f.ca.curl(f.dir.path(), &basic)
                .args([
                    "--fail",
                    "-H",
                    "Content-Type: application/x-git-upload-pack-request",
                    "-H",
                    "Content-Encoding: gzip",
                    "--data-binary",
                ])
                .arg(format!("@{}", body_file.display()))
                .arg(format!(
                    "{}/acme/widgets.git/git-upload-pack",
                    f.server.url()
                ))
                .output()
                .expect("run curl");
        assert!(
            output.status.success(),
            "gzipped upload-pack failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    #[test]
    fn unknown_or_expired_token_gets_401() {
        let f = fixture();
        let home = f.dir.path().join("home");
        let url = format!("{}/acme/widgets.git", f.server.url());

        let expired = f.authority.issue(Duration::from_secs(300)).token;
        f.authority.insert(
            &expired,
            time::OffsetDateTime::now_utc() - Duration::from_secs(1),
        );
        for (name, token) in [("unknown", "ghs_unknown"), ("expired", expired.as_str())] {
            let before = f.server.unauthorized();
            let output = run(client(&home, &f.ca, token).args(["ls-remote", &url]));
            assert!(!output.status.success(), "{name} token was accepted");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("401") || stderr.contains("Authentication failed"),
                "{name}: unexpected error: {stderr}"
            );
            assert!(f.server.unauthorized() > before);
        }
    }

    #[test]
    fn auth_rule_sees_the_path() {
        let f = fixture();
        init_bare_repo(f.server.repos_root(), "other/thing.git");
        let token = f.authority.issue(Duration::from_secs(300)).token;
        let authority = f.authority.clone();
        f.server.set_auth_rule(Box::new(move |path, token| {
            path.starts_with("/acme/") && authority.is_valid(token)
        }));
        let home = f.dir.path().join("home");
        let ok = run(client(&home, &f.ca, &token)
            .args(["ls-remote", &format!("{}/acme/widgets.git", f.server.url())]));
        assert_ok(&ok, "ls-remote of an allowed owner");
        let denied = run(client(&home, &f.ca, &token)
            .args(["ls-remote", &format!("{}/other/thing.git", f.server.url())]));
        assert!(!denied.status.success());
    }

    #[test]
    fn cgi_output_parsing() {
        let response = parse_cgi(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope")
            .expect("parse");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/plain");
        let response = parse_cgi(b"Expires: Fri, 01 Jan 1980 00:00:00 GMT\n\nbody").expect("lf");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(parse_cgi(b"no blank line").is_none());
    }
}
