//! gh: a fake that refuses to run while any token variable is set (as real gh refuses to log
//! in), and the real Debian gh against a local GitHub Enterprise stand-in on 127.0.0.1:443 in
//! a private network namespace.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use httpmock::prelude::*;

use crate::support::{Proc, exit_within, signal, wait_for};

/// A gh that records logins and answers `auth token`, and exits 1 whenever a token variable
/// is set in its environment.
const FAKE_GH: &str = r#"#!/bin/sh
if [ -n "${GH_TOKEN}${GITHUB_TOKEN}${GH_ENTERPRISE_TOKEN}${GITHUB_ENTERPRISE_TOKEN}" ]; then
  echo "fake gh: refusing, a token variable is set" >&2; exit 1
fi
[ "$GH_PROMPT_DISABLED" = 1 ] || { echo "fake gh: prompts not disabled" >&2; exit 1; }
state=$FAKE_GH_STATE
case "$1 $2" in
  "auth token") cat "$state/token-$4" 2>/dev/null || exit 1 ;;
  "auth login") IFS= read -r tok; printf %s "$tok" > "$state/token-$4"; echo "$4" >> "$state/logins" ;;
  *) exit 2 ;;
esac
"#;

fn install_fake_gh(p: &mut Proc) {
    let gh = p.path("bin/gh");
    std::fs::write(&gh, FAKE_GH).unwrap();
    std::fs::set_permissions(&gh, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(p.path("ghstate")).unwrap();
    let state = p.path("ghstate").display().to_string();
    let path = format!("{}:/bin:/usr/bin", p.path("bin").display());
    p.set("FAKE_GH_STATE", &state).set("PATH", &path);
}

fn logins(p: &Proc) -> Vec<String> {
    std::fs::read_to_string(p.path("ghstate/logins"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_gh_that_refuses_gh_token_is_still_driven() {
    let server = MockServer::start();
    let mut first = server.mock(|when, then| {
        when.path("/admin/github-installation-token");
        then.status(200)
            .body(r#"{"token":"ghs_rotation_one","expires_at":"2999-01-01T00:00:00Z"}"#);
    });
    let mut p = Proc::new(&server.base_url());
    install_fake_gh(&mut p);
    // The stale boot-time token is exported on purpose: gh must never see it.
    p.set("GH_TOKEN", "ghs_stale")
        .set("GITHUB_TOKEN", "ghs_stale")
        .set("GH_ENTERPRISE_TOKEN", "ghs_stale");
    let mut daemon = p.spawn("d.log", &[]);
    assert!(
        wait_for(10, || logins(&p) == ["github.com"]),
        "{}",
        p.log("d.log")
    );
    assert_eq!(
        std::fs::read_to_string(p.path("ghstate/token-github.com")).unwrap(),
        "ghs_rotation_one"
    );

    // Same token again (SIGHUP): gh already holds it, no second login.
    signal(&daemon, "HUP");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(logins(&p), ["github.com"]);

    // A new token: logged in again.
    first.delete();
    server.mock(|when, then| {
        when.path("/admin/github-installation-token");
        then.status(200)
            .body(r#"{"token":"ghs_rotation_two","expires_at":"2999-01-01T00:00:00Z"}"#);
    });
    signal(&daemon, "HUP");
    assert!(wait_for(10, || logins(&p).len() == 2));
    assert_eq!(
        std::fs::read_to_string(p.path("ghstate/token-github.com")).unwrap(),
        "ghs_rotation_two"
    );
    signal(&daemon, "TERM");
    assert_eq!(exit_within(&mut daemon, 5), Some(0));
    let log = p.log("d.log");
    assert!(log.contains("gh logged in with the new token"), "{log}");
    assert!(!log.contains("rotation_"), "no token in the log");
}

#[test]
fn a_failing_gh_is_reported_and_retried_not_swallowed() {
    let server = MockServer::start();
    let platform = server.mock(|when, then| {
        when.path("/admin/github-installation-token");
        then.status(200)
            .body(r#"{"token":"ghs_gh_fails","expires_at":"2999-01-01T00:00:00Z"}"#);
    });
    let mut p = Proc::new(&server.base_url());
    install_fake_gh(&mut p);
    // A gh that fails the way a rejected token does, counting its calls.
    std::fs::write(
        p.path("bin/gh"),
        "#!/bin/sh\necho \"$1 $2\" >> \"$FAKE_GH_STATE/calls\"\necho 'error validating token: HTTP 401: Bad credentials (https://api.github.com/) ghs_gh_fails' >&2\nexit 1\n",
    )
    .unwrap();
    let logins = || {
        std::fs::read_to_string(p.path("ghstate/calls"))
            .unwrap_or_default()
            .matches("auth login")
            .count()
    };
    let mut daemon = p.spawn("d.log", &[]);
    // The first login fails at start; a retry follows on the backoff series (within 15 s).
    assert!(
        wait_for(30, || logins() >= 2),
        "gh was not retried: {}",
        p.log("d.log")
    );
    signal(&daemon, "TERM");
    exit_within(&mut daemon, 5);
    let log = p.log("d.log");
    assert!(log.contains("class=auth"), "{log}");
    assert!(
        log.contains("ghs_[REDACTED]") && !log.contains("ghs_gh_fails"),
        "gh's stderr is redacted: {log}"
    );
    assert_eq!(
        log.matches("gh login failed;").count(),
        1,
        "one warning per change of state: {log}"
    );
    assert!(log.contains("gh login failed again"), "{log}");
    // Regression: a gh retry used to run a whole refresh cycle (skipped as "refreshed moments
    // ago" for a minute, then a platform call per gh retry).
    assert!(
        !log.contains("another process refreshed moments ago"),
        "a gh retry ran a refresh cycle: {log}"
    );
    assert_eq!(
        platform.calls(),
        1,
        "retrying gh must not call the platform"
    );
    let status = std::fs::read_to_string(p.path("cache/daemon.status.json")).unwrap();
    assert!(
        status.contains("\"gh_login\"") && status.contains("\"auth\""),
        "{status}"
    );
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "the rotation count is this test's report"
)]
fn real_gh_stays_logged_in_across_rotations() {
    if !molecule_tests::netns::in_private_netns("gh::real_gh_stays_logged_in_across_rotations") {
        return;
    }
    use molecule_tests::{GheServer, PlatformOptions, PlatformStandIn, TestCa, TokenAuthority};
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::generate(work.path());
    let authority = TokenAuthority::new();
    let platform = PlatformStandIn::start(
        "127.0.0.1:0".parse().unwrap(),
        PlatformOptions {
            ttl: Duration::from_secs(6),
            remint_below: Duration::from_secs(3),
            bearer: "bearer-xyz".into(),
            workspace_id: None,
        },
        authority.clone(),
    );
    let ghe = GheServer::start("127.0.0.1:443".parse().unwrap(), &ca, authority.clone());
    let mut p = Proc::new(&platform.url());
    let gh_config = p.path("gh-config").display().to_string();
    p.set("PATH", "/usr/bin:/bin")
        .set("MOLECULE_GIT_HOSTS", "localhost")
        .set("TOKEN_REFRESH_MARGIN_SEC", "2")
        .set("GH_CONFIG_DIR", &gh_config)
        .set("SSL_CERT_FILE", &ca.ca_pem_path().display().to_string())
        // A stale token exported on purpose: what the container started with.
        .set("GH_TOKEN", "ghs_stale_from_boot")
        .set("GITHUB_TOKEN", "ghs_stale_from_boot");
    let mut daemon = p.spawn("d.log", &[]);
    assert!(
        wait_for(20, || ghe.ok() > 0),
        "gh never logged in: {}",
        p.log("d.log")
    );

    // A shell without GH_TOKEN, as the agent's is: gh api must answer 200 every time.
    let gh_api = || {
        std::process::Command::new("gh")
            .args(["api", "--hostname", "localhost", "/user"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", p.path(""))
            .env("GH_CONFIG_DIR", &gh_config)
            .env("SSL_CERT_FILE", ca.ca_pem_path())
            .env("GH_NO_UPDATE_NOTIFIER", "1")
            .output()
            .unwrap()
    };
    let start_mints = platform.minted();
    let mut calls = 0;
    while platform.minted() < start_mints + 4 {
        let out = gh_api();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("molecule-bot"),
            "gh api failed after {} rotations: {}\n{}",
            platform.minted() - start_mints,
            String::from_utf8_lossy(&out.stderr),
            p.log("d.log")
        );
        calls += 1;
        assert!(
            calls < 60,
            "not enough rotations in time: {}",
            p.log("d.log")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    signal(&daemon, "TERM");
    assert_eq!(exit_within(&mut daemon, 10), Some(0));
    eprintln!(
        "gh api ok {calls} times across {} rotations",
        platform.minted() - start_mints
    );
    let log = p.log("d.log");
    assert!(log.contains("GH_TOKEN is set in this daemon's environment"));
    assert!(!log.contains("stale_from_boot"));
}

/// GitHub's stateless installation tokens (2026) run to ~520 characters of letters, digits,
/// `.`, `_` and `-`. Regression: gh's stderr reaches the daemon's log (through
/// `child::excerpt`, which shortens it to one line of 200 characters); a server that quotes
/// the refused token makes gh print it back, and no 20-character piece of it may be left in
/// any log line, in text or JSON. Also a regression: gh 2.23 ends a refusal with the hint
/// "Try authenticating with: gh auth login", and an excerpt of the last line alone lost the
/// 401, so a refused token was classed protocol instead of auth.
#[test]
fn real_gh_printing_a_refused_token_back_leaves_no_piece_of_it_in_the_log() {
    const NAME: &str = "gh::real_gh_printing_a_refused_token_back_leaves_no_piece_of_it_in_the_log";
    if !molecule_tests::netns::in_private_netns(NAME) {
        return;
    }
    use molecule_tests::{GheServer, PlatformOptions, PlatformStandIn, TestCa, TokenAuthority};
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::generate(work.path());
    let minting = TokenAuthority::new();
    let platform = PlatformStandIn::start(
        "127.0.0.1:0".parse().unwrap(),
        PlatformOptions {
            ttl: Duration::from_secs(3600),
            remint_below: Duration::from_secs(300),
            bearer: "bearer-xyz".into(),
            workspace_id: None,
        },
        minting,
    );
    // GitHub knows none of the platform's tokens: every login is refused, token quoted.
    let ghe = GheServer::start("127.0.0.1:443".parse().unwrap(), &ca, TokenAuthority::new());
    ghe.echo_rejected_tokens();
    for format in ["text", "json"] {
        let mut p = Proc::new(&platform.url());
        let gh_config = p.path("gh-config").display().to_string();
        p.set("PATH", "/usr/bin:/bin")
            .set("MOLECULE_GIT_HOSTS", "localhost")
            .set("MOLECULE_LOG", "trace")
            .set("MOLECULE_LOG_FORMAT", format)
            .set("GH_CONFIG_DIR", &gh_config)
            .set("SSL_CERT_FILE", &ca.ca_pem_path().display().to_string());
        let refused = ghe.unauthorized();
        let mut once = p.spawn("once.log", &["--once"]);
        exit_within(&mut once, 30);
        let log = p.log("once.log");
        assert!(ghe.unauthorized() > refused, "gh never asked: {log}");
        let cache: serde_json::Value =
            serde_json::from_slice(&std::fs::read(p.path("cache/tokens.json")).unwrap()).unwrap();
        let token = cache["entries"]["localhost"]["token"]
            .as_str()
            .expect("the platform's token")
            .to_owned();
        assert!(token.len() > 500, "a token of the new shape");
        assert!(
            log.contains("gh auth login --hostname localhost failed")
                && log.contains("Bad credentials: ghs_[REDACTED]"),
            "gh's own words, with the token it printed redacted: {log}"
        );
        assert!(
            log.contains("class=auth") || log.contains(r#""class":"auth""#),
            "a refused token is auth: {log}"
        );
        for line in log.lines() {
            assert_eq!(
                molecule_tests::leak::piece(&token, line),
                None,
                "{format}: a piece of the token in: {line}"
            );
        }
    }
}
