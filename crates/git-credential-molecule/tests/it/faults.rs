//! The fault matrix: the platform hangs, dribbles, resets, floods, lies; the disk fills; the
//! directory turns read-only; a writer is killed mid-write; two writers race; the clock jumps.
//! In every case: no hang beyond the budget, no torn or lost cache, the newest valid token
//! wins, and a clear classified error.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use httpmock::prelude::*;
use molecule_tests::deadline::run_within;
use molecule_tests::{Fault, PlatformOptions, PlatformStandIn, TokenAuthority};

use crate::support::{ADMIN_PATH, BEARER, BIN, Sandbox, in_secs, long_token, token_body};

/// Budget for one platform call in these tests; `get` may take one call plus slack.
const BUDGET_SECS: u64 = 2;

fn budget_sandbox(url: &str) -> Sandbox {
    let mut sb = Sandbox::new();
    sb.platform(url)
        .env("MOLECULE_HTTP_TIMEOUT_SEC", &BUDGET_SECS.to_string())
        .env("MOLECULE_LOG", "info");
    sb
}

/// Runs `get` against a faulty platform twice: with an expiring token cached (it must be
/// served, degraded, with the class on stderr, the cache untouched) and with nothing cached
/// (nothing served, exit 69, one line). Both within the budget.
fn assert_survives(url: &str, class: &str, what: &str) {
    let sb = budget_sandbox(url);
    let held = long_token("held");
    sb.write_cache(&[("github.com", &held, 200, false)]);
    let before = sb.tokens_json();
    let start = Instant::now();
    let r = sb.get();
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(BUDGET_SECS + 2),
        "{what}: get took {took:?}"
    );
    assert_eq!(r.password(), Some(held.as_str()), "{what}: {}", r.stderr);
    assert!(
        r.stderr.contains(class),
        "{what}: class {class} in {:?}",
        r.stderr
    );
    assert_eq!(sb.tokens_json(), before, "{what}: the cache changed");

    let sb = budget_sandbox(url);
    let start = Instant::now();
    let r = sb.get();
    assert!(
        start.elapsed() < Duration::from_secs(BUDGET_SECS + 2),
        "{what}: {:?}",
        start.elapsed()
    );
    r.assert_one_line_error(69, class);
}

fn standin(fault: Fault) -> PlatformStandIn {
    let p = PlatformStandIn::start(
        "127.0.0.1:0".parse().unwrap(),
        PlatformOptions {
            bearer: BEARER.into(),
            ..PlatformOptions::default()
        },
        TokenAuthority::new(),
    );
    p.set_fault(fault);
    p
}

#[test]
fn platform_hangs_without_answering() {
    let p = standin(Fault::Hang);
    assert_survives(&p.url(), "transient", "hang");
}

#[test]
fn platform_answers_byte_by_byte() {
    let p = standin(Fault::SlowBody(Duration::from_millis(300)));
    assert_survives(&p.url(), "transient", "slow body");
}

#[test]
fn platform_resets_the_connection() {
    let p = standin(Fault::ResetConnection);
    assert_survives(&p.url(), "transient", "reset");
}

#[test]
fn platform_is_unresolvable() {
    assert_survives(
        "http://platform.invalid:8080",
        "transient",
        "unresolvable host",
    );
}

#[test]
fn platform_sends_ten_mebibytes() {
    let server = MockServer::start();
    let pad = "x".repeat(10 << 20);
    server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200).body(format!(
            r#"{{"token":"ghs_big","expires_at":"{}","pad":"{pad}"}}"#,
            in_secs(3600)
        ));
    });
    assert_survives(&server.base_url(), "protocol", "10 MiB body");
}

#[test]
fn platform_lies() {
    for (body, what) in [
        ("{\"token\": \"ghs_", "bad JSON"),
        (
            r#"{"token":"","expires_at":"2099-01-01T00:00:00Z"}"#,
            "empty token",
        ),
        (
            r#"{"token":"ghs_old","expires_at":"2001-01-01T00:00:00Z"}"#,
            "expires_at in the past",
        ),
        (
            r#"{"token":"ghs_a\nhost=evil.test","expires_at":"2099-01-01T00:00:00Z"}"#,
            "a token with a newline",
        ),
    ] {
        let server = MockServer::start();
        server.mock(|when, then| {
            when.path(ADMIN_PATH);
            then.status(200).body(body);
        });
        assert_survives(&server.base_url(), "protocol", what);
    }
}

#[test]
fn an_expiry_in_2999_is_capped_at_an_hour() {
    let server = MockServer::start();
    server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200)
            .body(r#"{"token":"ghs_forever","expires_at":"2999-12-31T23:59:59Z"}"#);
    });
    let sb = budget_sandbox(&server.base_url());
    let r = sb.get();
    assert_eq!(r.password(), Some("ghs_forever"));
    let hour = time::OffsetDateTime::now_utc().unix_timestamp() + 3600 - 300;
    assert!(
        (r.expiry().unwrap() - hour).abs() <= 3,
        "served as living at most an hour"
    );
    let cached = sb.entry("github.com").unwrap();
    assert!(
        cached["expires_at"]
            .as_str()
            .unwrap()
            .starts_with(&in_secs(3600)[..13])
    );
}

/// Runs `script` as root in a private mount namespace (the mounts vanish with it), with the
/// sandbox's environment, `$CACHE`, `$OUT` and `$BIN` set.
fn in_mount_namespace(sb: &Sandbox, script: &str) -> std::process::Output {
    let out = sb.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut c = sb.command(&[]);
    let envs: Vec<_> = c
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    c = Command::new("unshare");
    c.args(["-m", "sh", "-ec", script])
        .env_clear()
        .envs(envs)
        .env("CACHE", &sb.cache)
        .env("OUT", &out)
        .env("BIN", BIN)
        .stdin(Stdio::null());
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "namespace script failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn read(sb: &Sandbox, name: &str) -> String {
    std::fs::read_to_string(sb.path("out").join(name)).unwrap_or_default()
}

#[test]
fn the_disk_fills_during_a_cache_write() {
    // A 64 KiB tmpfs in a private mount namespace.
    if !molecule_tests::skip::require_root("faults::the_disk_fills_during_a_cache_write") {
        return;
    }
    let server = MockServer::start();
    let fresh = long_token("fresh");
    server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200).body(token_body(&fresh, 3600));
    });
    let mut sb = budget_sandbox(&server.base_url());
    sb.secret(&fresh);
    let old = long_token("old");
    sb.write_cache(&[("github.com", &old, 200, false)]);
    std::fs::copy(sb.cache.join("tokens.json"), sb.path("seed.json")).unwrap();
    sb.env("SEED", &sb.path("seed.json").display().to_string());
    in_mount_namespace(
        &sb,
        r#"
        mount -t tmpfs -o size=64k,mode=0700 tmpfs "$CACHE"
        cp "$SEED" "$CACHE/tokens.json" && chmod 600 "$CACHE/tokens.json"
        dd if=/dev/zero of="$CACHE/filler" bs=1k count=4096 2>/dev/null || true
        printf 'protocol=https\nhost=github.com\n\n' | "$BIN" get > "$OUT/get.out" 2> "$OUT/get.err" || echo $? > "$OUT/get.code"
        "$BIN" refresh > "$OUT/refresh.out" 2> "$OUT/refresh.err" || echo $? > "$OUT/refresh.code"
        cp "$CACHE/tokens.json" "$OUT/after.json"
        ls -a "$CACHE" > "$OUT/listing"
        "#,
    );
    // git still gets the new token (served uncached, with a warning); the cache is whole.
    assert!(
        read(&sb, "get.out").contains(&format!("password={fresh}\n")),
        "{}",
        read(&sb, "get.err")
    );
    assert!(
        read(&sb, "get.err").contains("could not write the token cache"),
        "{}",
        read(&sb, "get.err")
    );
    assert_eq!(
        read(&sb, "refresh.code").trim(),
        "78",
        "refresh reports the full disk: {}",
        read(&sb, "refresh.err")
    );
    assert!(
        read(&sb, "refresh.err").contains("No space left on device"),
        "{}",
        read(&sb, "refresh.err")
    );
    assert_eq!(
        std::fs::read(sb.path("out/after.json")).unwrap(),
        std::fs::read(sb.path("seed.json")).unwrap(),
        "torn or lost"
    );
    assert!(
        !read(&sb, "listing").contains(".tmp-"),
        "a temp file was left: {}",
        read(&sb, "listing")
    );
    sb.assert_no_secret(&read(&sb, "get.err"));
}

#[test]
fn the_cache_directory_is_read_only() {
    // A read-only bind mount in a private mount namespace.
    if !molecule_tests::skip::require_root("faults::the_cache_directory_is_read_only") {
        return;
    }
    let server = MockServer::start();
    let fresh = long_token("rofresh");
    server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200).body(token_body(&fresh, 3600));
    });
    let mut sb = budget_sandbox(&server.base_url());
    sb.secret(&fresh);
    let old = long_token("roold");
    sb.write_cache(&[
        ("github.com", &old, 200, false),
        ("ghe.example.com", &long_token("rohit"), 3000, false),
    ]);
    sb.env("MOLECULE_GIT_HOSTS", "github.com,ghe.example.com");
    let before = sb.tokens_json().unwrap();
    in_mount_namespace(
        &sb,
        r#"
        mount --bind "$CACHE" "$CACHE" && mount -o remount,bind,ro "$CACHE"
        printf 'protocol=https\nhost=ghe.example.com\n\n' | "$BIN" get > "$OUT/hit.out" 2> "$OUT/hit.err"
        printf 'protocol=https\nhost=github.com\n\n' | "$BIN" get > "$OUT/get.out" 2> "$OUT/get.err" || echo $? > "$OUT/get.code"
        "$BIN" refresh > "$OUT/refresh.out" 2> "$OUT/refresh.err" || echo $? > "$OUT/refresh.code"
        "#,
    );
    assert!(
        read(&sb, "hit.out").contains("password=ghs_rohit"),
        "a hit needs no write"
    );
    assert!(
        read(&sb, "get.out").contains(&format!("password={fresh}\n")),
        "{}",
        read(&sb, "get.err")
    );
    assert!(
        read(&sb, "get.err").contains("Read-only file system"),
        "{}",
        read(&sb, "get.err")
    );
    assert_eq!(
        read(&sb, "refresh.code").trim(),
        "78",
        "{}",
        read(&sb, "refresh.err")
    );
    assert_eq!(sb.tokens_json().unwrap(), before);
}

#[test]
fn kill_9_during_writes_never_tears_the_cache() {
    let server = MockServer::start();
    let token = long_token("kill");
    server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200).body(token_body(&token, 3600));
    });
    let mut sb = budget_sandbox(&server.base_url());
    sb.env("MOLECULE_LOG", "off");
    sb.secret(&token);
    let mut killed_mid_run = 0;
    for i in 0..150u64 {
        let mut child = sb
            .command(&["refresh"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kills over the process's whole life (start-up, fetch, write, rename).
        std::thread::sleep(Duration::from_micros((i * 97) % 4000));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.code().is_none() {
            killed_mid_run += 1;
        }
        if let Some(bytes) = sb.tokens_json() {
            let doc = molecule_credential::cache::Document::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("torn tokens.json after kill {i}: {e}"));
            assert!(doc.entries["github.com"].token.eq_str(&token));
        }
    }
    assert!(
        killed_mid_run > 50,
        "the kills mostly landed after exit: {killed_mid_run}"
    );
    // What a killed writer leaves is a temp file; the next writer does not trip over it.
    let r = sb.run(&["refresh"], "");
    assert_eq!(r.code, 0);
    assert!(sb.entry("github.com").is_some());
}

#[test]
fn two_writers_racing_keep_the_later_expiry() {
    let early = MockServer::start();
    let late = MockServer::start();
    let (t_early, t_late) = (long_token("early"), long_token("late"));
    early.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200)
            .delay(Duration::from_millis(20))
            .body(token_body(&t_early, 1800));
    });
    late.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200).body(token_body(&t_late, 3600));
    });
    let mut sb = budget_sandbox(&early.base_url());
    sb.env("MOLECULE_LOG", "off");
    for round in 0..20 {
        let _ = std::fs::remove_file(sb.cache.join("tokens.json"));
        let spawn = |url: &str| {
            let mut c = sb.command(&["refresh", "--platform-url", url]);
            c.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        // Alternate who starts first; the slower early-expiry writer often finishes last.
        let (mut a, mut b) = if round % 2 == 0 {
            (spawn(&early.base_url()), spawn(&late.base_url()))
        } else {
            (spawn(&late.base_url()), spawn(&early.base_url()))
        };
        a.wait().unwrap();
        b.wait().unwrap();
        let e = sb.entry("github.com").unwrap();
        assert_eq!(
            e["token"].as_str(),
            Some(t_late.as_str()),
            "round {round}: the earlier expiry won"
        );
    }
}

#[test]
fn the_clock_jumping_is_read_from_expiry_each_time() {
    // Jumped back after the fetch: fetched_at is "in the future". Still fresh: served.
    let mut sb = Sandbox::new();
    sb.env("MOLECULE_LOG", "info");
    let token = long_token("jump");
    sb.write_cache(&[("github.com", &token, 1800, false)]);
    let path = sb.cache.join("tokens.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&in_secs(-60), &in_secs(7200));
    std::fs::write(&path, text).unwrap();
    assert_eq!(sb.get().password(), Some(token.as_str()));

    // Jumped forward past expiry: not served; refetched from the platform.
    let server = MockServer::start();
    let next = long_token("after-jump");
    server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200).body(token_body(&next, 3600));
    });
    sb.platform(&server.base_url());
    sb.secret(&next);
    sb.write_cache(&[("github.com", &token, -1, false)]);
    assert_eq!(sb.get().password(), Some(next.as_str()));
}

#[test]
fn git_leaving_stdout_closed_costs_nothing_and_corrupts_nothing() {
    // The helper defines its own C main (start-up speed), so the guard std's start-up keeps
    // (closed standard descriptors reopened on /dev/null, so a file the helper opens can never
    // become "stdout") is its own: a cold get and a hit with stdout closed both succeed, print
    // nothing anywhere, and leave tokens.json a whole document.
    let server = MockServer::start();
    let token = long_token("closed-stdout");
    server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200).body(token_body(&token, 3600));
    });
    let mut sb = Sandbox::new();
    sb.platform(&server.base_url());
    sb.env("MOLECULE_LOG", "warn");
    sb.secret(&token);
    let get_with_stdout_closed = || {
        let mut sh = Command::new("/bin/sh");
        sh.arg("-c")
            .arg("exec \"$0\" get >&-")
            .arg(BIN)
            .env_clear()
            .envs(
                sb.command(&[])
                    .get_envs()
                    .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
            );
        let run = run_within(
            &mut sh,
            b"protocol=https\nhost=github.com\n\n",
            Duration::from_secs(20),
        );
        assert!(!run.stderr.contains(&token));
        assert!(!run.timed_out);
        (run.code, run.stderr)
    };
    // Cold: minted, written, and the answer went to /dev/null, not into a file.
    assert_eq!(get_with_stdout_closed(), (Some(0), String::new()));
    let doc = molecule_credential::cache::Document::from_slice(&sb.tokens_json().unwrap())
        .expect("tokens.json is a whole document, nothing else");
    assert!(doc.entries["github.com"].token.eq_str(&token));
    // A hit: tokens.json is opened first; the answer still goes to /dev/null.
    let before = sb.tokens_json();
    assert_eq!(get_with_stdout_closed(), (Some(0), String::new()));
    assert_eq!(sb.tokens_json(), before);
}
