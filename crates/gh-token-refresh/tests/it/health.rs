//! `gh-token-refresh status` is a health probe (DESIGN.md, "Failure classes and exit codes"):
//! it reads only `daemon.status.json` and the cache, so it needs no token source
//! configuration, loads no key and makes no network call.

use std::time::Duration;

use molecule_tests::PlatformStandIn;
use molecule_tests::deadline::{Finished, Guard, run_within};
use molecule_tests::github_api::test_app_key_path;

use crate::support::{BIN, Proc, wait_for, which};

const DEADLINE: Duration = Duration::from_secs(10);

/// A daemon (platform source) that has refreshed and is waiting for its next turn: `status`
/// over its files is healthy. The returned guard keeps it running.
fn healthy(platform: &PlatformStandIn) -> (Proc, Guard) {
    let p = Proc::new(&platform.url());
    let daemon = p.spawn_guarded("d.log", &[]);
    let healthy = wait_for(10, || {
        run_within(&mut p.command(BIN, &["status"]), b"", DEADLINE).code == Some(0)
    });
    assert!(
        healthy,
        "the daemon did not become healthy: {}",
        p.log("d.log")
    );
    (p, daemon)
}

/// Asserts `run` of `status` ended in time, exit 0, reporting healthy.
#[track_caller]
fn assert_healthy(what: &str, run: &Finished) {
    run.assert_in_time(what);
    assert!(
        run.code == Some(0) && run.stdout.starts_with("healthy"),
        "{what}: exit {:?}, stdout {:?}, stderr {:?}",
        run.code,
        run.stdout,
        run.stderr
    );
}

/// Switches `p` to the GitHub App source, with nothing but the source named.
fn app_source(p: &mut Proc) {
    p.set("MOLECULE_TOKEN_SOURCE", "github-app")
        // What a healthy probe must never need.
        .set("PLATFORM_URL", "http://127.0.0.1:9");
}

#[test]
fn status_with_the_github_app_source_and_no_app_configuration_reports_healthy() {
    let platform = PlatformStandIn::local("bearer-xyz");
    let (mut p, _daemon) = healthy(&platform);
    app_source(&mut p);
    let run = run_within(&mut p.command(BIN, &["status"]), b"", DEADLINE);
    assert_healthy("status", &run);
}

#[test]
fn status_with_the_github_app_source_opens_no_key_file() {
    let Some(strace) = which("strace") else {
        return molecule_tests::skip::skip(
            "health::status_with_the_github_app_source_opens_no_key_file",
            "strace is not installed",
        );
    };
    let platform = PlatformStandIn::local("bearer-xyz");
    let (mut p, _daemon) = healthy(&platform);
    // A real PEM at a path nothing else opens, so the trace can only mention it if `status`
    // loaded the key.
    let key = p.path("app-key-for-status.pem");
    std::fs::copy(test_app_key_path(), &key).unwrap();
    app_source(&mut p);
    p.set("MOLECULE_GITHUB_APP_ID", "1").set(
        "MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE",
        &key.display().to_string(),
    );
    let trace = p.path("status.strace");
    let mut command = p.command(strace.to_str().unwrap(), &[]);
    command
        .args(["-f", "-e", "trace=open,openat,openat2", "-o"])
        .arg(&trace)
        .args([BIN, "status"]);
    let run = run_within(&mut command, b"", DEADLINE);
    assert_healthy("status under strace", &run);
    let trace = std::fs::read_to_string(&trace).unwrap();
    assert!(
        trace.contains("tokens.json"),
        "the trace does not show status reading tokens.json: is strace working?\n{trace}"
    );
    let key = key.display().to_string();
    let opened: Vec<&str> = trace.lines().filter(|l| l.contains(&key)).collect();
    assert!(
        opened.is_empty(),
        "status opened the App's key file:\n{}",
        opened.join("\n")
    );
}

/// `status --alive` is a liveness probe: a daemon whose source fails past its token's expiry
/// is unhealthy but alive (restarting it cannot repair the source, and would throw away its
/// backoff); a daemon that has stopped is not alive.
#[test]
fn status_alive_asks_only_whether_the_daemon_runs() {
    let platform = PlatformStandIn::start(
        "127.0.0.1:0".parse().unwrap(),
        molecule_tests::PlatformOptions {
            ttl: Duration::from_secs(4),
            remint_below: Duration::from_secs(2),
            bearer: "bearer-xyz".into(),
            workspace_id: None,
        },
        molecule_tests::TokenAuthority::new(),
    );
    let mut p = Proc::new(&platform.url());
    p.set("TOKEN_REFRESH_MARGIN_SEC", "1");
    let mut daemon = p.spawn_guarded("d.log", &[]);
    let code = |args: &[&str]| run_within(&mut p.command(BIN, args), b"", DEADLINE).code;
    assert!(
        wait_for(10, || code(&["status"]) == Some(0)),
        "{}",
        p.log("d.log")
    );
    platform.set_fault(molecule_tests::Fault::Status(503));
    // The token dies, the platform still fails: unhealthy, alive.
    assert!(
        wait_for(10, || code(&["status"]) == Some(1)),
        "{}",
        p.log("d.log")
    );
    assert_eq!(code(&["status", "--alive"]), Some(0));
    let run = run_within(
        &mut p.command(BIN, &["status", "--alive", "--json"]),
        b"",
        DEADLINE,
    );
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        (v["healthy"].clone(), v["problems"].clone()),
        (true.into(), serde_json::json!([]))
    );
    crate::support::signal(daemon.child(), "TERM");
    assert_eq!(daemon.exit_within(Duration::from_secs(5)), Some(Some(0)));
    let run = run_within(&mut p.command(BIN, &["status", "--alive"]), b"", DEADLINE);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout.contains("the daemon stopped at"),
        "{}",
        run.stdout
    );
}
