//! Every row of DESIGN.md's platform table, against an httpmock platform: the class, the exit
//! code of `refresh`, what `get` serves (fresh, degraded, fallback or nothing), and
//! `tokens.json` byte-for-byte unchanged whenever the platform failed.

use std::time::Duration;

use httpmock::prelude::*;

use crate::support::{ADMIN_PATH, BEARER, Sandbox, long_token, token_body};

/// How a row makes the platform answer.
enum Answer {
    Status(u16, &'static str),
    RetryAfter(&'static str),
    Body(String),
    Hang,
    Refused,
}

struct Row {
    name: &'static str,
    answer: Answer,
    class: &'static str,
    code: i32,
}

fn rows() -> Vec<Row> {
    let row = |name, answer, class, code| Row {
        name,
        answer,
        class,
        code,
    };
    vec![
        row(
            "401",
            Answer::Status(401, r#"{"error":"missing/invalid workspace auth token"}"#),
            "auth",
            77,
        ),
        row(
            "403",
            Answer::Status(403, r#"{"error":"missing/invalid workspace auth token"}"#),
            "auth",
            77,
        ),
        row(
            "404 json",
            Answer::Status(404, r#"{"error":"no GitHub App configured"}"#),
            "not-configured",
            78,
        ),
        row("404 empty", Answer::Status(404, ""), "not-configured", 78),
        row(
            "429",
            Answer::RetryAfter(r#"{"error":"rate limited"}"#),
            "rate-limited",
            75,
        ),
        row(
            "500",
            Answer::Status(500, r#"{"error":"token refresh failed"}"#),
            "transient",
            75,
        ),
        row("502", Answer::Status(502, ""), "transient", 75),
        row(
            "503",
            Answer::Status(503, r#"{"code":"platform_unavailable"}"#),
            "transient",
            75,
        ),
        row("504", Answer::Status(504, ""), "transient", 75),
        row("connect error", Answer::Refused, "transient", 75),
        row("timeout", Answer::Hang, "transient", 75),
        row(
            "bad json",
            Answer::Body("{\"token\": ghs_".into()),
            "protocol",
            76,
        ),
        row(
            "empty token",
            Answer::Body(r#"{"token":"","expires_at":"2099-01-01T00:00:00Z"}"#.into()),
            "protocol",
            76,
        ),
        row(
            "body over 64 KiB",
            Answer::Body(format!(
                r#"{{"token":"ghs_x","expires_at":"2099-01-01T00:00:00Z","pad":"{}"}}"#,
                "x".repeat(70_000)
            )),
            "protocol",
            76,
        ),
    ]
}

/// A platform answering `answer`, and the URL to reach it.
fn serve(answer: &Answer) -> (Option<MockServer>, String) {
    if let Answer::Refused = answer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        return (None, format!("http://127.0.0.1:{port}"));
    }
    let server = MockServer::start();
    server.mock(|when, then| {
        when.method(GET).path(ADMIN_PATH);
        match answer {
            Answer::Status(code, body) => {
                then.status(*code)
                    .header("content-type", "application/json")
                    .body(*body);
            }
            Answer::RetryAfter(body) => {
                then.status(429).header("retry-after", "30").body(*body);
            }
            Answer::Body(body) => {
                then.status(200)
                    .header("content-type", "application/json")
                    .body(body);
            }
            Answer::Hang => {
                then.status(200)
                    .delay(Duration::from_secs(5))
                    .body(token_body("ghs_late", 3600));
            }
            Answer::Refused => unreachable!(),
        }
    });
    let url = server.base_url();
    (Some(server), url)
}

fn sandbox(url: &str) -> Sandbox {
    let mut sb = Sandbox::new();
    sb.platform(url).env("MOLECULE_HTTP_TIMEOUT_SEC", "1");
    sb
}

#[test]
fn every_failure_row_is_classified_and_leaves_the_cache_alone() {
    for row in rows() {
        let (_server, url) = serve(&row.answer);
        let name = row.name;

        // refresh: exit code by class; a good cached token stays byte-for-byte.
        let sb = sandbox(&url);
        let good = long_token("good");
        sb.write_cache(&[("github.com", &good, 3000, false)]);
        let before = sb.tokens_json();
        let r = sb.run(&["refresh"], "");
        assert_eq!(
            r.code, row.code,
            "{name}: refresh exit code; stderr {}",
            r.stderr
        );
        assert!(
            r.stderr.contains(row.class),
            "{name}: class {} in {:?}",
            row.class,
            r.stderr
        );
        assert_eq!(
            sb.tokens_json(),
            before,
            "{name}: refresh changed tokens.json"
        );

        // get inside the margin: the refresh fails, the unexpired token is served degraded
        // with its real expiry, and stderr says why.
        let sb = sandbox(&url);
        let expiring = long_token("expiring");
        sb.write_cache(&[("github.com", &expiring, 240, false)]);
        let before = sb.tokens_json();
        let r = sb.get();
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert_eq!(r.password(), Some(expiring.as_str()), "{name}");
        let real = time::OffsetDateTime::now_utc().unix_timestamp() + 240;
        assert!(
            (r.expiry().unwrap() - real).abs() <= 3,
            "{name}: degraded answer carries the real expiry"
        );
        assert!(
            r.stderr.contains("refresh failed") && r.stderr.contains(row.class),
            "{name}: {}",
            r.stderr
        );
        assert_eq!(sb.tokens_json(), before, "{name}: get changed tokens.json");

        // get with nothing cached: the fallback token, without an expiry, and never cached.
        let mut sb = sandbox(&url);
        let fallback = sb.secret(&long_token("fallback"));
        sb.env("GH_TOKEN", &fallback);
        let r = sb.get();
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert_eq!(r.password(), Some(fallback.as_str()), "{name}");
        assert_eq!(r.expiry(), None, "{name}: fallback has no expiry");
        assert!(
            r.stderr.contains("fallback") && r.stderr.contains(row.class),
            "{name}: {}",
            r.stderr
        );
        assert_eq!(
            sb.tokens_json(),
            None,
            "{name}: the fallback token was cached"
        );

        // get with nothing at all: empty stdout, one classified line, exit 69.
        let mut sb = sandbox(&url);
        sb.env("MOLECULE_LOG", "info");
        let r = sb.get();
        r.assert_one_line_error(69, row.class);
        assert_eq!(sb.tokens_json(), None, "{name}");
    }
}

#[test]
fn ok_row_caches_and_serves_with_expiry_minus_margin() {
    let server = MockServer::start();
    let token = long_token("fresh");
    let mock = server.mock(|when, then| {
        when.method(GET)
            .path(ADMIN_PATH)
            .header("authorization", format!("Bearer {BEARER}"))
            .header("accept", "application/json");
        then.status(200)
            .header("content-type", "application/json")
            .body(token_body(&token, 3600));
    });
    let sb = sandbox(&server.base_url());
    sb.secret(&token);
    let r = sb.run(&["refresh"], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("github.com: ok (http 200)"),
        "{}",
        r.stdout
    );
    let r = sb.get();
    assert_eq!(r.code, 0);
    assert_eq!(r.password(), Some(token.as_str()));
    let want = time::OffsetDateTime::now_utc().unix_timestamp() + 3600 - 300;
    assert!((r.expiry().unwrap() - want).abs() <= 3);
    assert_eq!(mock.calls(), 1, "the second get is a cache hit");
    let e = sb.entry("github.com").unwrap();
    assert_eq!(e["source"], "platform");
    assert_eq!(e["suspect"], false);
}

#[test]
fn workspace_route_and_org_header() {
    let server = MockServer::start();
    let mock = server.mock(|when, then| {
        when.method(GET)
            .path("/workspaces/ws-42/github-installation-token")
            .header("x-molecule-org-id", "org-7")
            .header("authorization", format!("Bearer {BEARER}"));
        then.status(200).body(token_body("ghs_ws", 3600));
    });
    let mut sb = sandbox(&server.base_url());
    sb.env("WORKSPACE_ID", "ws-42")
        .env("MOLECULE_ORG_ID", "org-7");
    assert_eq!(sb.get().password(), Some("ghs_ws"));
    mock.assert_calls(1);
}

#[test]
fn expiry_with_offset_and_fraction_drives_the_cache() {
    let server = MockServer::start();
    let at = (time::OffsetDateTime::now_utc() + time::Duration::minutes(30))
        .to_offset(time::UtcOffset::from_hms(5, 30, 0).unwrap());
    let stamp = at
        .format(&time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]+05:30"
        ))
        .unwrap();
    server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200)
            .body(format!(r#"{{"token":"ghs_off","expires_at":"{stamp}"}}"#));
    });
    let sb = sandbox(&server.base_url());
    let r = sb.get();
    assert_eq!(r.expiry(), Some(at.unix_timestamp() - 300));
}

#[test]
fn missing_expiry_caches_ten_minutes() {
    let server = MockServer::start();
    server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200).body(r#"{"token":"ghs_noexp"}"#);
    });
    let sb = sandbox(&server.base_url());
    let r = sb.get();
    let want = time::OffsetDateTime::now_utc().unix_timestamp() + 600 - 300;
    assert!((r.expiry().unwrap() - want).abs() <= 3, "{:?}", r.stdout);
}

#[test]
fn missing_bearer_is_local_config() {
    let server = MockServer::start();
    let mock = server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200).body(token_body("ghs_x", 3600));
    });
    let sb = sandbox(&server.base_url());
    std::fs::remove_file(sb.configs.join(".auth_token")).unwrap();
    let r = sb.run(&["refresh"], "");
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(r.stderr.contains(".auth_token"));
    assert_eq!(mock.calls(), 0, "no call without a bearer");
}

/// DESIGN.md, "Secrets": a Kubernetes secret volume is 0644 unless `defaultMode` says
/// otherwise. Regression: a bearer others could read was refused, which broke the deployment
/// and protected nothing; it is used, with one warning naming the file (never its content).
#[test]
fn a_bearer_others_can_read_is_used_with_one_warning_naming_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let server = MockServer::start();
    let mock = server.mock(|when, then| {
        when.path(ADMIN_PATH)
            .header("authorization", format!("Bearer {BEARER}"));
        then.status(200)
            .body(token_body(&long_token("readable"), 3600));
    });
    let mut sb = sandbox(&server.base_url());
    sb.env("MOLECULE_LOG", "warn");
    let bearer = sb.configs.join(".auth_token");
    std::fs::set_permissions(&bearer, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = sb.run(&["refresh"], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(mock.calls(), 1);
    let warnings: Vec<&str> = r.stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(
        warnings,
        [format!(
            " WARN {} (the platform bearer) is readable by its group and everyone (mode 644); it \
             is used anyway. To keep it private: chmod 600 {0} (a Kubernetes secret volume: \
             defaultMode: 0400)",
            bearer.display()
        )],
        "{}",
        r.stderr
    );
}

#[test]
fn redirects_are_not_followed() {
    let server = MockServer::start();
    let elsewhere = MockServer::start();
    let stolen = elsewhere.mock(|when, then| {
        when.any_request();
        then.status(200).body(token_body("ghs_evil", 3600));
    });
    server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(302).header("location", elsewhere.url("/steal"));
    });
    let sb = sandbox(&server.base_url());
    let r = sb.run(&["refresh"], "");
    assert_eq!(r.code, 76, "{}", r.stderr);
    assert_eq!(stolen.calls(), 0, "the bearer must not follow a redirect");
}
