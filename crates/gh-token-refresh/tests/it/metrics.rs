//! The daemon's metrics as an operator meets them (DESIGN.md, "Metrics"): the `/metrics`
//! listener's hygiene against real sockets, the textfile read while tokens rotate, and
//! `gh-token-refresh metrics` printing what the daemon served. The text is checked by
//! `promtool check metrics` when Prometheus's tools are installed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use molecule_tests::deadline::{Guard, run_within};
use molecule_tests::prometheus::{self, Prometheus};
use molecule_tests::{Fault, PlatformOptions, PlatformStandIn, TokenAuthority, skip};

use crate::support::{Proc, signal, wait_for};

const BEARER: &str = "bearer-xyz";

/// A platform minting tokens that live `ttl` (re-minted below half of it).
fn platform(ttl: u64) -> PlatformStandIn {
    PlatformStandIn::start(
        "127.0.0.1:0".parse().unwrap(),
        PlatformOptions {
            ttl: Duration::from_secs(ttl),
            remint_below: Duration::from_secs(ttl / 2),
            bearer: BEARER.into(),
            workspace_id: None,
        },
        TokenAuthority::new(),
    )
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The daemon with a listener at `addr` and a 2 s margin.
fn daemon(platform: &PlatformStandIn, addr: SocketAddr) -> (Proc, Guard) {
    let mut p = Proc::new(&platform.url());
    p.set("MOLECULE_METRICS_LISTEN", &addr.to_string())
        .set("TOKEN_REFRESH_MARGIN_SEC", "2")
        .set("TOKEN_REFRESH_INTERVAL_SEC", "60");
    let guard = p.spawn_guarded("daemon.log", &[]);
    // Serving from before the first refresh; ready once that token shows.
    assert!(
        wait_for(10, || get(addr, "/metrics").2.contains(
            "molecule_token_valid{host=\"github.com\",owner=\"\"} 1\n"
        )),
        "the listener never showed a valid token: {}",
        p.log("daemon.log")
    );
    (p, guard)
}

/// One request on a fresh connection: (status, head, body); status 0 when nothing listens.
fn request(addr: SocketAddr, raw: &str) -> (u16, String, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new(), String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

/// `promtool check metrics` on `text`, when promtool is installed: `None` when skipped.
fn promtool_check(test: &str, text: &str) -> Option<String> {
    if !skip::require_tools(test, &["promtool"]) {
        return None;
    }
    let mut cmd = std::process::Command::new("promtool");
    cmd.args(["check", "metrics"]);
    let run = run_within(&mut cmd, text.as_bytes(), Duration::from_secs(20));
    run.assert_in_time("promtool check metrics");
    let said = run.stdout + &run.stderr;
    assert_eq!(run.code, Some(0), "promtool check metrics: {said}\n{text}");
    Some(said)
}

/// Every label of every sample, as (name, value) pairs.
fn labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, rest)) = line.split_once('{') else {
            continue;
        };
        let inner = &rest[..rest.rfind('}').unwrap()];
        for pair in inner.split("\",") {
            let (k, v) = pair.split_once("=\"").unwrap();
            out.push((k.to_owned(), v.trim_end_matches('"').to_owned()));
        }
    }
    out
}

#[test]
fn the_listener_answers_only_get_and_head_of_metrics_and_says_nothing_secret() {
    const NAME: &str =
        "metrics::the_listener_answers_only_get_and_head_of_metrics_and_says_nothing_secret";
    let platform = platform(3600);
    let addr = free_addr();
    let (p, _daemon) = daemon(&platform, addr);

    let (status, head, body) = get(addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        body.contains("molecule_token_valid{host=\"github.com\",owner=\"\"} 1\n"),
        "{body}"
    );
    assert_eq!(get(addr, "/metrics?name[]=x").0, 200, "a query is fine");
    let (status, _, body) = request(
        addr,
        "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((status, body.as_str()), (200, ""), "HEAD: headers only");
    for path in ["/", "/metrics/", "/metric", "/debug/pprof", "/../metrics"] {
        assert_eq!(get(addr, path).0, 404, "{path}");
    }
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let (status, head, _) = request(
            addr,
            &format!(
                "{method} /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        );
        assert_eq!(status, 405, "{method}");
        assert!(
            head.to_ascii_lowercase().contains("allow: get, head"),
            "{head}"
        );
    }

    // No token, bearer or path anywhere; labels only from the bounded sets.
    let token = p.cached_token().expect("a token is cached");
    let text = get(addr, "/metrics").2;
    for secret in [token.as_str(), BEARER, &p.path("").display().to_string()] {
        assert!(
            !text.contains(secret),
            "the exposition holds a secret or a path"
        );
    }
    for (name, value) in labels(&text) {
        assert!(
            matches!(
                name.as_str(),
                "host" | "owner" | "source" | "result" | "class" | "le" | "version" | "commit"
            ),
            "label {name}={value}"
        );
        assert!(
            !value.contains('/'),
            "label {name}={value} looks like a path"
        );
    }
    promtool_check(NAME, &text);
}

#[test]
fn oversized_and_stalled_requests_are_closed_and_idle_clients_never_lock_a_scraper_out() {
    let platform = platform(6);
    let addr = free_addr();
    let (p, mut daemon) = daemon(&platform, addr);

    // A head over 8 KiB: refused (431) and the connection closed, at once.
    let started = Instant::now();
    let (status, _, _) = request(
        addr,
        &format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
            "a".repeat(9 * 1024)
        ),
    );
    assert_ne!(status, 200, "an oversized head is never answered 200");
    assert!(started.elapsed() < Duration::from_secs(2));

    // A head that stalls half-way: closed after the 5 s header deadline, not held forever.
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled.write_all(b"GET /metrics HTTP/1.1\r\nHo").unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let closed = match stalled.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => !String::from_utf8_lossy(&buf[..n]).contains(" 200 "),
        Err(_) => true,
    };
    let took = started.elapsed();
    assert!(closed, "the stalled request was answered");
    assert!(
        (Duration::from_secs(4)..Duration::from_secs(8)).contains(&took),
        "closed after {took:?}, not at the 5 s deadline"
    );

    // 80 idle connections (more than the 64 allowed): a scraper still gets its answer within a
    // second, and refreshing goes on.
    let minted = platform.minted();
    let idle: Vec<TcpStream> = (0..80).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let (status, _, body) = get(addr, "/metrics");
    let answered = started.elapsed();
    assert_eq!(status, 200);
    assert!(
        answered < Duration::from_secs(1),
        "answered after {answered:?}"
    );
    assert!(body.contains("molecule_build_info"));
    assert!(
        wait_for(10, || platform.minted() > minted),
        "no refresh while the idle clients were held: {}",
        p.log("daemon.log")
    );
    // The server closed the longest-idle ones to make room.
    let closed = idle
        .iter()
        .filter(|s| {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            matches!((&**s).read(&mut [0u8; 1]), Ok(0))
        })
        .count();
    assert!(
        closed >= 80 + 1 - 64,
        "only {closed} idle connections were closed"
    );
    // A signal is answered with the clients still connected.
    let more: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let stopping = Instant::now();
    signal(daemon.child(), "TERM");
    assert_eq!(daemon.exit_within(Duration::from_secs(3)), Some(Some(0)));
    let stopped_in = stopping.elapsed();
    drop((idle, more));
    molecule_tests_report(
        "metrics-listener",
        &format!(
            "listener: 80 idle connections held, /metrics answered in {:.1} ms, {closed} idle closed to make room; a stalled head closed after {:.1} s; SIGTERM with 64 clients connected: exit in {:.0} ms",
            answered.as_secs_f64() * 1000.0,
            took.as_secs_f64(),
            stopped_in.as_secs_f64() * 1000.0
        ),
    );
}

#[test]
fn the_textfile_is_never_seen_empty_or_torn_and_matches_gh_token_refresh_metrics() {
    const NAME: &str =
        "metrics::the_textfile_is_never_seen_empty_or_torn_and_matches_gh_token_refresh_metrics";
    let platform = platform(4);
    let mut p = Proc::new(&platform.url());
    p.set("TOKEN_REFRESH_MARGIN_SEC", "1")
        .set("TOKEN_REFRESH_INTERVAL_SEC", "60");
    let mut daemon = p.spawn_guarded("daemon.log", &[]);
    let file = p.path("cache/metrics.prom");
    assert!(wait_for(10, || file.exists()), "{}", p.log("daemon.log"));
    let first = platform.minted();
    let (mut reads, mut texts) = (0u64, std::collections::BTreeSet::new());
    let end = Instant::now() + Duration::from_secs(30);
    while platform.minted() < first + 3 && Instant::now() < end {
        let text = std::fs::read_to_string(&file).unwrap();
        reads += 1;
        assert!(!text.is_empty(), "an empty textfile after {reads} reads");
        assert!(
            text.ends_with("\n")
                && text
                    .trim_end()
                    .lines()
                    .last()
                    .unwrap()
                    .starts_with("molecule_build_info{"),
            "a torn textfile after {reads} reads:\n{text}"
        );
        assert_eq!(text.matches("# TYPE ").count(), 9, "{text}");
        texts.insert(text);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        platform.minted() >= first + 3,
        "three rotations within 30 s"
    );
    // A token another process writes into the cache shows within 2 s: the daemon watches the
    // directory rather than waiting for its own next refresh.
    let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(50);
    let cache = molecule_credential::store::CacheDir::open(&p.path("cache")).unwrap();
    let entry = molecule_credential::cache::Entry::new(
        molecule_credential::Secret::new("ghs_from_another_process".into()),
        later,
        time::OffsetDateTime::now_utc(),
        "platform",
    );
    assert!(
        cache.offer("github.com", entry).unwrap().1,
        "the later token is written"
    );
    let written = Instant::now();
    let want = format!(
        "molecule_token_expiration_timestamp_seconds{{host=\"github.com\",owner=\"\",source=\"platform\"}} {}\n",
        later.unix_timestamp()
    );
    assert!(
        wait_for(2, || std::fs::read_to_string(&file)
            .unwrap()
            .contains(&want)),
        "another process's token did not reach the textfile within 2 s"
    );
    let seen_in = written.elapsed();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o644,
        "readable by node_exporter, whatever the umask"
    );

    // Stopped, the daemon's last text is what `gh-token-refresh metrics` prints from its files.
    signal(daemon.child(), "TERM");
    assert_eq!(daemon.exit_within(Duration::from_secs(5)), Some(Some(0)));
    let served = std::fs::read_to_string(&file).unwrap();
    let out = p
        .command(crate::support::BIN, &["metrics"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        printed, served,
        "gh-token-refresh metrics differs from the textfile"
    );
    promtool_check(NAME, &printed);
    molecule_tests_report(
        "metrics-textfile",
        &format!(
            "textfile: {reads} reads 10 ms apart through 3 rotations, {} distinct texts, none empty or torn; another process's token shown after {:.0} ms",
            texts.len(),
            seen_in.as_secs_f64() * 1000.0
        ),
    );
}

/// What a test measured, for scripts/test.sh to print (libtest hides a passing test's output).
fn molecule_tests_report(name: &str, text: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-reports");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.txt")), format!("{text}\n")).unwrap();
}

/// A real Prometheus server (Debian's) scrapes the daemon's listener every second, as an
/// operator's would. Its HTTP API sees a valid token; then, with the platform answering 503
/// past the token's expiry, no valid token and the fallback active, and the failures counted
/// as transient; then 401, counted as auth; then recovery.
#[test]
fn a_real_prometheus_sees_the_token_go_invalid_and_each_failure_by_class() {
    const NAME: &str =
        "metrics::a_real_prometheus_sees_the_token_go_invalid_and_each_failure_by_class";
    if !skip::require_tools(NAME, &[prometheus::PROGRAM]) {
        return;
    }
    let platform = platform(8);
    let addr = free_addr();
    let mut p = Proc::new(&platform.url());
    p.set("MOLECULE_METRICS_LISTEN", &addr.to_string())
        .set("TOKEN_REFRESH_MARGIN_SEC", "2")
        // Retries never wait longer than the interval: each failure shows within seconds.
        .set("TOKEN_REFRESH_INTERVAL_SEC", "3")
        .set("TOKEN_REFRESH_JITTER_SEC", "0");
    let _daemon = p.spawn_guarded("daemon.log", &[]);
    let prom = Prometheus::start(addr, Some(&prometheus::alert_rules()));
    let value = |samples: &[prometheus::Sample]| samples.first().map(|s| s.value);
    let within = Duration::from_secs(30);

    // What git gets: a valid token (1, fallback 0), or none (0, fallback active 1).
    let expect = |valid: f64| {
        prom.wait_for("molecule_token_valid{host=\"github.com\"}", within, |s| {
            value(s) == Some(valid)
        });
        prom.wait_for(
            "molecule_fallback_active{host=\"github.com\"}",
            within,
            |s| value(s) == Some(1.0 - valid),
        );
    };
    expect(1.0);
    let started = Instant::now();
    platform.set_fault(Fault::Status(503));
    expect(0.0);
    let invalid_after = started.elapsed();
    prom.wait_for(
        "molecule_token_refresh_total{host=\"github.com\",result=\"failure\",class=\"transient\"}",
        within,
        |s| value(s).is_some_and(|v| v >= 1.0),
    );
    let auth =
        "molecule_token_refresh_total{host=\"github.com\",result=\"failure\",class=\"auth\"}";
    assert_eq!(value(&prom.query(auth)), Some(0.0), "no auth failure yet");
    platform.set_fault(Fault::Status(401));
    prom.wait_for(auth, within, |s| value(s).is_some_and(|v| v >= 1.0));
    platform.set_fault(Fault::None);
    expect(1.0);
    // Every series Prometheus holds from the daemon: labels from the bounded sets only, no
    // token anywhere.
    let token = p.cached_token().expect("a token is cached");
    for sample in prom.query("{job=\"molecule\"}") {
        for (k, v) in &sample.labels {
            assert!(!v.contains(&token[..20]), "a token in label {k}");
            assert!(!v.starts_with("ghs_"), "a token in label {k}={v}");
        }
    }
    molecule_tests_report(
        "metrics-prometheus",
        &format!(
            "a real Prometheus scraping /metrics every second: valid 1, then 0 with fallback_active 1 {:.1} s after the platform started failing; failures counted as transient (503) and auth (401); valid again after recovery",
            invalid_after.as_secs_f64()
        ),
    );
}
