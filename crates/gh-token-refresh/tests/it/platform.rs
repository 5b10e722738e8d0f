//! The real platform client over real HTTP (httpmock), driven by the daemon under paused time:
//! a failing platform costs a bounded, exactly known number of requests.

use httpmock::prelude::*;

use crate::support::{HttpMinter, TokioClock, config, run_daemon, signals, until};

const PATH: &str = "/admin/github-installation-token";
const TOKEN_BODY: &str = r#"{"token":"ghs_from_mock","expires_at":"2999-01-01T00:00:00Z"}"#;

#[tokio::test(start_paused = true)]
async fn three_500s_back_off_then_recover() {
    let server = MockServer::start();
    let mut failing = server.mock(|when, then| {
        when.method(GET)
            .path(PATH)
            .header("authorization", "Bearer bearer-xyz");
        then.status(500).body(r#"{"error":"token refresh failed"}"#);
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.base_url(), &[]);
    let clock = TokioClock::new();
    let minter = HttpMinter::new(&config, clock.clone());
    let (signals, controls) = signals();
    let mut healthy = None;
    run_daemon(&config, &clock, &minter, None, signals, async {
        // After the third failure (t = 22.5 s) the platform recovers.
        until(&clock, 30.0).await;
        assert_eq!(failing.calls(), 3);
        failing.delete();
        healthy = Some(server.mock(|when, then| {
            when.method(GET).path(PATH);
            then.status(200).body(TOKEN_BODY);
        }));
        until(&clock, 3000.0).await;
        controls.stop.send(()).unwrap();
    })
    .await;
    // 0, 7.5, 22.5 fail; 52.5 succeeds (a 1-hour token, capped); then the 45-minute interval.
    assert_eq!(minter.times(), [0.0, 7.5, 22.5, 52.5, 2752.5]);
    assert_eq!(healthy.unwrap().calls(), 2);
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config.cache_dir.join("tokens.json")).unwrap())
            .unwrap();
    assert_eq!(doc["entries"]["github.com"]["token"], "ghs_from_mock");
}

#[tokio::test(start_paused = true)]
async fn a_persistent_401_over_three_hours_costs_four_requests() {
    let server = MockServer::start();
    let denied = server.mock(|when, then| {
        when.method(GET).path(PATH);
        then.status(401)
            .body(r#"{"error":"missing/invalid workspace auth token"}"#);
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.base_url(), &[]);
    let clock = TokioClock::new();
    let minter = HttpMinter::new(&config, clock.clone());
    let (signals, controls) = signals();
    run_daemon(&config, &clock, &minter, None, signals, async {
        until(&clock, 3.0 * 3600.0 - 1.0).await;
        controls.stop.send(()).unwrap();
    })
    .await;
    assert_eq!(denied.calls(), 4, "0, 45, 90 and 135 minutes");
    assert_eq!(minter.times(), [0.0, 2700.0, 5400.0, 8100.0]);
    let status: serde_json::Value = serde_json::from_slice(
        &std::fs::read(config.cache_dir.join("daemon.status.json")).unwrap(),
    )
    .unwrap();
    let host = &status["hosts"]["github.com"];
    assert_eq!(host["last_attempt"]["class"], "auth");
    assert_eq!(host["last_attempt"]["http_status"], 401);
    assert_eq!(host["consecutive_failures"], 4);
    assert!(
        !status.to_string().contains("invalid workspace auth token"),
        "no response body in the status file"
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limited_with_retry_after() {
    let server = MockServer::start();
    let mut limited = server.mock(|when, then| {
        when.method(GET).path(PATH);
        then.status(429).header("retry-after", "120").body("{}");
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.base_url(), &[]);
    let clock = TokioClock::new();
    let minter = HttpMinter::new(&config, clock.clone());
    let (signals, controls) = signals();
    run_daemon(&config, &clock, &minter, None, signals, async {
        until(&clock, 60.0).await;
        limited.delete();
        let _ok = server.mock(|when, then| {
            when.method(GET).path(PATH);
            then.status(200).body(TOKEN_BODY);
        });
        until(&clock, 200.0).await;
        controls.stop.send(()).unwrap();
    })
    .await;
    assert_eq!(minter.times(), [0.0, 120.0]);
}
