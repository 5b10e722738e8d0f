//! The daemon as a process: one per cache directory, signals, a crash, `--once`, the health
//! check, and its log lines.

use std::time::Duration;

use httpmock::prelude::*;

use crate::support::{BIN, Proc, exit_within, signal, wait_for};

const PATH: &str = "/admin/github-installation-token";

fn body(token: &str) -> String {
    let exp = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    format!(
        r#"{{"token":"{token}","expires_at":"{}"}}"#,
        exp.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    )
}

fn ok_platform<'a>(server: &'a MockServer, token: &str) -> httpmock::Mock<'a> {
    let b = body(token);
    server.mock(|when, then| {
        when.method(GET).path(PATH);
        then.status(200).body(b);
    })
}

fn no_temp_files(p: &Proc) -> bool {
    std::fs::read_dir(p.path("cache"))
        .unwrap()
        .all(|e| !e.unwrap().file_name().to_string_lossy().contains(".tmp-"))
}

#[test]
fn a_second_instance_exits_0_saying_so() {
    let server = MockServer::start();
    ok_platform(&server, "ghs_first");
    let p = Proc::new(&server.base_url());
    let mut first = p.spawn("first.log", &[]);
    assert!(wait_for(10, || p.path("cache/daemon.status.json").exists()));
    let mut second = p.spawn("second.log", &[]);
    assert_eq!(exit_within(&mut second, 10), Some(0));
    assert!(
        p.log("second.log")
            .contains("another gh-token-refresh holds daemon.lock"),
        "{}",
        p.log("second.log")
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first keeps running"
    );
    signal(&first, "TERM");
    assert_eq!(exit_within(&mut first, 5), Some(0));
}

#[test]
fn sigterm_during_a_slow_refresh_ends_promptly_and_leaves_no_temp_file() {
    let server = MockServer::start();
    let b = body("ghs_slow");
    server.mock(|when, then| {
        when.method(GET).path(PATH);
        then.status(200).delay(Duration::from_secs(8)).body(b);
    });
    let p = Proc::new(&server.base_url());
    let mut daemon = p.spawn("d.log", &[]);
    assert!(wait_for(10, || p.path("cache/daemon.status.json").exists()));
    std::thread::sleep(Duration::from_millis(300));
    let start = std::time::Instant::now();
    signal(&daemon, "TERM");
    assert_eq!(exit_within(&mut daemon, 5), Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "waited for the slow call: {:?}",
        start.elapsed()
    );
    assert!(no_temp_files(&p));
    assert!(
        !p.path("cache/tokens.json").exists(),
        "the abandoned call wrote nothing"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path("cache/daemon.status.json")).unwrap())
            .unwrap();
    assert_eq!(
        status["next_wake_at"],
        serde_json::Value::Null,
        "a clean stop is recorded"
    );
}

#[test]
fn sigint_and_sigterm_after_a_write_leave_a_whole_cache() {
    for sig in ["TERM", "INT"] {
        let server = MockServer::start();
        ok_platform(&server, "ghs_whole");
        let p = Proc::new(&server.base_url());
        let mut daemon = p.spawn("d.log", &[]);
        assert!(wait_for(10, || p.cached_token().is_some()));
        signal(&daemon, sig);
        assert_eq!(exit_within(&mut daemon, 5), Some(0), "{sig}");
        assert!(no_temp_files(&p));
        assert_eq!(p.cached_token().as_deref(), Some("ghs_whole"));
    }
}

#[test]
fn sighup_forces_a_refresh() {
    let server = MockServer::start();
    let mut first = ok_platform(&server, "ghs_before_hup");
    let p = Proc::new(&server.base_url());
    let mut daemon = p.spawn("d.log", &[]);
    assert!(wait_for(10, || p.cached_token().as_deref() == Some("ghs_before_hup")));
    first.delete();
    let second = ok_platform(&server, "ghs_after_hup");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(second.calls(), 0, "nothing scheduled this soon");
    signal(&daemon, "HUP");
    assert!(wait_for(10, || p.cached_token().as_deref() == Some("ghs_after_hup")));
    assert_eq!(second.calls(), 1);
    assert!(p.log("d.log").contains("SIGHUP: refreshing now"));
    signal(&daemon, "TERM");
    exit_within(&mut daemon, 5);
}

#[test]
fn after_kill_9_the_helper_still_serves_and_a_restarted_daemon_resumes() {
    let server = MockServer::start();
    let mock = ok_platform(&server, "ghs_survivor");
    let p = Proc::new(&server.base_url());
    let mut daemon = p.spawn("d.log", &[]);
    assert!(wait_for(10, || p.cached_token().is_some()));
    daemon.kill().unwrap();
    daemon.wait().unwrap();

    let helper = env!("CARGO_BIN_EXE_gh-token-refresh")
        .replace("gh-token-refresh", "git-credential-molecule");
    let mut get = p.command(&helper, &["get"]);
    let out = {
        use std::io::Write;
        let mut child = get
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("git-credential-molecule is built beside the daemon");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"protocol=https\nhost=github.com\n\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(String::from_utf8_lossy(&out.stdout).contains("password=ghs_survivor\n"));
    assert_eq!(
        mock.calls(),
        1,
        "served from the cache the dead daemon left"
    );

    let mut again = p.spawn("again.log", &[]);
    // Waited for, not slept on: on a loaded machine a start can take longer than a fixed pause.
    assert!(
        wait_for(5, || p.log("again.log").contains("the cache is fresh")),
        "{}",
        p.log("again.log")
    );
    assert!(
        again.try_wait().unwrap().is_none(),
        "the kernel released daemon.lock: the new daemon runs"
    );
    signal(&again, "TERM");
    assert_eq!(exit_within(&mut again, 5), Some(0));
}

#[test]
fn once_exits_with_the_fetch_class_and_ignores_the_fallback() {
    for (status, code) in [(200, 0), (401, 77), (404, 78), (503, 75), (429, 75)] {
        let server = MockServer::start();
        let b = if status == 200 {
            body("ghs_once")
        } else {
            "{}".to_owned()
        };
        server.mock(|when, then| {
            when.method(GET).path(PATH);
            then.status(status).body(b);
        });
        let mut p = Proc::new(&server.base_url());
        p.set("GH_TOKEN", "ghs_fallback_must_not_count");
        let out = p.command(BIN, &["--once"]).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{status}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!String::from_utf8_lossy(&out.stderr).contains("ghs_fallback_must_not_count"));
    }
}

#[test]
fn status_is_a_health_check() {
    let server = MockServer::start();
    ok_platform(&server, "ghs_health");
    let p = Proc::new(&server.base_url());
    let out = p.command(BIN, &["status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "no daemon has run");
    assert!(String::from_utf8_lossy(&out.stdout).contains("unhealthy: no daemon.status.json"));

    let mut daemon = p.spawn("d.log", &[]);
    assert!(wait_for(10, || p.cached_token().is_some()));
    assert!(wait_for(5, || p
        .command(BIN, &["status"])
        .output()
        .unwrap()
        .status
        .success()));
    let out = p.command(BIN, &["status", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["healthy"], true);
    assert_eq!(
        v["daemon"]["hosts"]["github.com"]["last_attempt"]["class"],
        "ok"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ghs_health"));

    signal(&daemon, "TERM");
    exit_within(&mut daemon, 5);
    let out = p.command(BIN, &["status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("the daemon stopped"));
}

#[test]
fn one_line_per_attempt_and_one_warning_per_change_of_state() {
    let server = MockServer::start();
    let mut denied = server.mock(|when, then| {
        when.method(GET).path(PATH);
        then.status(401)
            .body(r#"{"error":"missing/invalid workspace auth token"}"#);
    });
    let mut p = Proc::new(&server.base_url());
    p.set("TOKEN_REFRESH_INTERVAL_SEC", "1")
        .set("TOKEN_REFRESH_JITTER_SEC", "0");
    let mut daemon = p.spawn("d.log", &[]);
    assert!(wait_for(15, || denied.calls() >= 4));
    denied.delete();
    ok_platform(&server, "ghs_recovered");
    assert!(wait_for(10, || p.cached_token().is_some()));
    signal(&daemon, "TERM");
    exit_within(&mut daemon, 5);
    let log = p.log("d.log");
    let attempts: Vec<&str> = log.lines().filter(|l| l.contains("class=")).collect();
    let warns = attempts.iter().filter(|l| l.contains(" WARN ")).count();
    assert_eq!(warns, 1, "one warning when auth started failing:\n{log}");
    assert!(
        attempts
            .iter()
            .filter(|l| l.contains("refresh failed again"))
            .count()
            >= 3,
        "{log}"
    );
    let ok = attempts
        .iter()
        .find(|l| l.contains("class=\"ok\"") || l.contains("class=ok"))
        .expect("a success line");
    // RFC 3339 UTC timestamp, class, HTTP status, new expiry, next wake.
    assert!(
        ok.len() > 24 && ok.as_bytes()[10] == b'T' && ok[..24].ends_with('Z'),
        "{ok}"
    );
    for field in [
        "http_status=200",
        "expires_at=",
        "next_wake=",
        "recovered=true",
    ] {
        assert!(ok.contains(field), "{field} missing: {ok}");
    }
    assert!(
        !log.contains("invalid workspace auth token"),
        "no response body in logs"
    );
    assert!(!log.contains("ghs_recovered"), "no token in logs");
}

#[test]
fn json_logs_at_trace_keep_tokens_out() {
    let server = MockServer::start();
    let token = format!("ghs_{}", "a.b-c_9".repeat(75));
    ok_platform(&server, &token);
    let mut p = Proc::new(&server.base_url());
    p.set("MOLECULE_LOG", "trace")
        .set("MOLECULE_LOG_FORMAT", "json")
        .set("GH_TOKEN", "ghs_stale_boot_token");
    let mut daemon = p.spawn("d.log", &[]);
    assert!(wait_for(10, || p.cached_token().is_some()));
    signal(&daemon, "HUP");
    std::thread::sleep(Duration::from_millis(500));
    signal(&daemon, "TERM");
    exit_within(&mut daemon, 5);
    let log = p.log("d.log");
    assert!(log.lines().count() > 5, "trace produced logs");
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|_| panic!("not JSON: {line}"));
    }
    assert!(
        !log.contains(&token[4..]) && !log.contains("stale_boot_token"),
        "a token reached the log"
    );
    assert_eq!(
        log.matches("GH_TOKEN is set in this daemon's environment")
            .count(),
        1,
        "warned once"
    );
    assert_eq!(log.matches("gh is not installed").count(), 1, "warned once");
}

#[test]
fn a_failed_refresh_never_replaces_a_good_token() {
    for (status, body) in [
        (503, r#"{"code":"platform_unavailable"}"#),
        (200, "not json"),
        (200, r#"{"token":""}"#),
    ] {
        let server = MockServer::start();
        server.mock(|when, then| {
            when.method(GET).path(PATH);
            then.status(status).body(body);
        });
        let p = Proc::new(&server.base_url());
        let good = MockServer::start();
        ok_platform(&good, "ghs_good_token");
        // Prime with a good token from a healthy platform, then point at the failing one.
        let mut prime = p.command(BIN, &["--once", "--platform-url", &good.base_url()]);
        assert!(prime.status().unwrap().success());
        let before = std::fs::read(p.path("cache/tokens.json")).unwrap();
        let out = p.command(BIN, &["--once"]).output().unwrap();
        assert_ne!(out.status.code(), Some(0), "{status} {body}");
        assert_eq!(
            std::fs::read(p.path("cache/tokens.json")).unwrap(),
            before,
            "{status} {body}"
        );
    }
}

/// DESIGN.md, "Secrets": a bearer others can read (a Kubernetes secret volume's 0644) is
/// used, and the daemon says so once, naming the file, however often it reads it.
#[test]
fn a_bearer_others_can_read_is_used_and_warned_about_once_per_process() {
    use std::os::unix::fs::PermissionsExt;
    let server = MockServer::start();
    let platform = ok_platform(&server, "ghs_readable_bearer");
    let p = Proc::new(&server.base_url());
    let bearer = p.path("configs/.auth_token");
    std::fs::set_permissions(&bearer, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut daemon = p.spawn("d.log", &[]);
    assert!(wait_for(10, || platform.calls() == 1), "{}", p.log("d.log"));
    for calls in 2..=3 {
        signal(&daemon, "HUP");
        assert!(
            wait_for(10, || platform.calls() == calls),
            "{}",
            p.log("d.log")
        );
    }
    signal(&daemon, "TERM");
    assert_eq!(exit_within(&mut daemon, 5), Some(0));
    assert_eq!(p.cached_token().as_deref(), Some("ghs_readable_bearer"));
    let log = p.log("d.log");
    let warned = format!(
        "{} (the platform bearer) is readable by its group and everyone (mode 644)",
        bearer.display()
    );
    assert_eq!(log.matches(&warned).count(), 1, "{log}");
    assert!(!log.contains("bearer-xyz"), "never the content");
}
