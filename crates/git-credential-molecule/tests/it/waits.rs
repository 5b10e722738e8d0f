//! No wait unbounded (DESIGN.md, "Files in the cache directory"), for the helper as git runs
//! it: real processes, `flock(2)` locks held by a SIGSTOPped process, and FIFOs, sockets and
//! directories where the cache expects a regular file. Every run is under a deadline that must
//! not fire: a hang fails the test instead of hanging it.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use molecule_tests::deadline::run_within;
use molecule_tests::stuck::{NotRegular, StoppedHolder};
use molecule_tests::table::{Case, Failures};
use molecule_tests::{Fault, PlatformStandIn};

use crate::support::{BEARER, Sandbox, long_token};

/// Kills a run that takes this long: a guard against hanging, never the bound under test.
const DEADLINE: Duration = Duration::from_secs(10);
/// `MOLECULE_HTTP_TIMEOUT_SEC` here: the platform source's whole mint budget is one call.
const HTTP_TIMEOUT_SECS: u64 = 2;
/// The slack DESIGN.md allows a waiter on `refresh.lock` beyond the HTTP timeout.
const MINT_SLACK: Duration = Duration::from_secs(2);
/// How long `tokens.lock` is waited for (git's `credentialStore.lockTimeoutMS`).
const TOKENS_LOCK_WAIT: Duration = Duration::from_secs(1);
/// `get` for github.com, as git sends it.
const GET: &str = "protocol=https\nhost=github.com\n\n";

/// A sandbox on `platform` with a short HTTP budget and its cache directory in place.
fn sandbox(platform: &PlatformStandIn) -> Sandbox {
    let mut sb = Sandbox::new();
    sb.platform(&platform.url())
        .env("MOLECULE_HTTP_TIMEOUT_SEC", &HTTP_TIMEOUT_SECS.to_string())
        .env("MOLECULE_LOG", "info");
    std::fs::create_dir_all(&sb.cache).unwrap();
    std::fs::set_permissions(&sb.cache, Permissions::from_mode(0o700)).unwrap();
    sb
}

/// The lock files `locks` in `cache` held by a stopped process; `None` when `test` skipped.
fn stuck(test: &str, cache: &Path, locks: &[&str]) -> Option<StoppedHolder> {
    StoppedHolder::hold(cache, locks)
        .map_err(|why| molecule_tests::skip::skip(test, why))
        .ok()
}

/// The token the platform minted (registered as a secret), if it minted one.
fn minted(sb: &Sandbox, platform: &PlatformStandIn) -> Option<String> {
    platform.cached().map(|issued| sb.secret(&issued.token))
}

/// A platform, a sandbox on it, and a fresh token (tagged `tag`) cached for github.com.
fn with_cached(tag: &str) -> (PlatformStandIn, Sandbox, String) {
    let platform = PlatformStandIn::local(BEARER);
    let sb = sandbox(&platform);
    let token = long_token(tag);
    sb.write_cache(&[("github.com", &token, 3000, false)]);
    (platform, sb, token)
}

/// Runs `get` on an empty cache whose `refresh.lock` a stopped process holds: it must serve
/// the token the platform minted for it (exactly one request), after waiting for the holder
/// at least one HTTP timeout and at most `at_most`. Returns the token.
fn get_mints_after_waiting(sb: &Sandbox, platform: &PlatformStandIn, at_most: Duration) -> String {
    let (r, took) = sb.run_within("get on an empty cache", &["get"], GET, DEADLINE);
    let token = minted(sb, platform);
    sb.assert_no_secret(&r.stderr);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let token = token.expect("the platform minted a token");
    assert!(
        r.password() == Some(token.as_str()),
        "not the freshly minted token: {}",
        r.stderr
    );
    assert_eq!(platform.requests(), 1, "exactly one platform request");
    assert!(
        took >= Duration::from_millis(HTTP_TIMEOUT_SECS * 1000 - 100),
        "served after {took:?}: it did not wait for the holder's mint"
    );
    assert!(
        took <= at_most,
        "served after {took:?}: more than {at_most:?}, the most a mint by the holder could take"
    );
    token
}

fn erase_input(token: &str) -> String {
    format!("protocol=https\nhost=github.com\nusername=x-access-token\npassword={token}\n\n")
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "the measured time is this test's report"
)]
fn a_cache_hit_answers_in_under_100_ms_while_a_stopped_process_holds_both_locks() {
    let (platform, sb, token) = with_cached("hit");
    // Page the binary in first: what is measured is the locks' effect, not a cold disk.
    let (warm, _) = sb.run_within("warm-up get", &["get"], GET, DEADLINE);
    assert!(warm.password() == Some(token.as_str()), "{}", warm.stderr);

    let Some(_holder) = stuck(
        "waits::a_cache_hit_answers_in_under_100_ms_while_a_stopped_process_holds_both_locks",
        &sb.cache,
        &["tokens.lock", "refresh.lock"],
    ) else {
        return;
    };
    let (r, took) = sb.run_within("get on a hit", &["get"], GET, DEADLINE);
    eprintln!(
        "cache hit with tokens.lock and refresh.lock held by a stopped process: {:.1} ms",
        took.as_secs_f64() * 1000.0
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.password() == Some(token.as_str()),
        "the cached token was not served"
    );
    assert!(
        took < Duration::from_millis(100),
        "a hit took {took:?} with the locks held: it waited for a lock"
    );
    assert_eq!(platform.requests(), 0, "a hit calls nobody");
}

#[test]
fn with_both_locks_stuck_get_on_an_empty_cache_mints_after_one_mint_budget_uncached() {
    let platform = PlatformStandIn::local(BEARER);
    let sb = sandbox(&platform);
    let Some(_holder) = stuck(
        "waits::with_both_locks_stuck_get_on_an_empty_cache_mints_after_one_mint_budget_uncached",
        &sb.cache,
        &["tokens.lock", "refresh.lock"],
    ) else {
        return;
    };
    let budget = Duration::from_secs(HTTP_TIMEOUT_SECS) + MINT_SLACK;
    get_mints_after_waiting(
        &sb,
        &platform,
        budget + TOKENS_LOCK_WAIT + Duration::from_secs(1),
    );
    assert_eq!(
        sb.tokens_json(),
        None,
        "served uncached: tokens.lock is held, so nothing may be written"
    );
}

#[test]
fn with_only_refresh_lock_stuck_get_mints_after_one_mint_budget_and_caches_the_token() {
    let platform = PlatformStandIn::local(BEARER);
    let sb = sandbox(&platform);
    let Some(_holder) = stuck(
        "waits::with_only_refresh_lock_stuck_get_mints_after_one_mint_budget_and_caches_the_token",
        &sb.cache,
        &["refresh.lock"],
    ) else {
        return;
    };
    let budget = Duration::from_secs(HTTP_TIMEOUT_SECS) + MINT_SLACK;
    let token = get_mints_after_waiting(&sb, &platform, budget + Duration::from_secs(1));
    let cached = sb.entry("github.com").expect("the minted token is cached");
    assert!(
        cached["token"].as_str() == Some(token.as_str()),
        "the cache holds another token"
    );
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "the measured time is this test's report"
)]
fn erase_gives_up_on_a_stuck_tokens_lock_within_about_a_second_with_exit_75() {
    let (platform, sb, token) = with_cached("erased");
    let before = sb.tokens_json();
    let Some(_holder) = stuck(
        "waits::erase_gives_up_on_a_stuck_tokens_lock_within_about_a_second_with_exit_75",
        &sb.cache,
        &["tokens.lock"],
    ) else {
        return;
    };
    let (r, took) = sb.run_within("erase", &["erase"], &erase_input(&token), DEADLINE);
    eprintln!(
        "erase behind a stuck tokens.lock gave up after {:.2} s",
        took.as_secs_f64()
    );
    r.assert_one_line_error(75, "tokens.lock");
    assert!(
        r.stderr.starts_with("git-credential-molecule: transient: "),
        "{:?}",
        r.stderr
    );
    assert!(
        took < TOKENS_LOCK_WAIT + Duration::from_millis(700),
        "erase took {took:?}: tokens.lock is waited for at most {TOKENS_LOCK_WAIT:?}"
    );
    assert_eq!(sb.tokens_json(), before, "the cache changed");
    assert_eq!(platform.requests(), 0);
}

#[test]
fn erase_never_waits_for_refresh_lock() {
    let (_platform, sb, token) = with_cached("erased");
    let Some(_holder) = stuck(
        "waits::erase_never_waits_for_refresh_lock",
        &sb.cache,
        &["refresh.lock"],
    ) else {
        return;
    };
    let (r, took) = sb.run_within("erase", &["erase"], &erase_input(&token), DEADLINE);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    assert!(
        took < Duration::from_millis(500),
        "erase took {took:?} behind a stuck refresh.lock"
    );
    assert_eq!(sb.entry("github.com").unwrap()["suspect"], true);
}

/// What a command must do when a cache file is not a regular file.
#[derive(Clone, Copy)]
enum Expect {
    /// Exit with this code, nothing on stdout, the path and "not a regular file" on stderr.
    Refused(i32),
    /// Exit 0 with a freshly minted token (one platform request), warning on stderr with the
    /// path and "not a regular file".
    Minted,
}

/// One row of the table: `file` in the cache directory replaced, then the command run.
struct Row {
    file: &'static str,
    command: &'static str,
    /// A fresh token cached before `file` is replaced (then it must be left byte for byte).
    cached: bool,
    /// The platform's fault.
    fault: Fault,
    expect: Expect,
}

const ROWS: [Row; 8] = {
    use Expect::{Minted, Refused};
    const fn row(file: &'static str, command: &'static str, cached: bool, expect: Expect) -> Row {
        Row {
            file,
            command,
            cached,
            fault: Fault::None,
            expect,
        }
    }
    [
        row("tokens.json", "get", false, Refused(78)),
        row("tokens.json", "erase", false, Refused(78)),
        row("tokens.json", "status", false, Refused(78)),
        row("tokens.lock", "get", false, Minted),
        row("tokens.lock", "erase", true, Refused(78)),
        row("refresh.lock", "get", false, Minted),
        row("daemon.status.json", "status", true, Refused(78)),
        // The platform fails and the fallback is skipped: every source failed.
        Row {
            fault: Fault::Status(503),
            ..row("fallback-token", "get", false, Refused(69))
        },
    ]
};

/// Runs one row for one kind, recording what went wrong in `case`.
fn run_row(kind: NotRegular, row: &Row, case: &mut Case<'_>) {
    let platform = PlatformStandIn::local(BEARER);
    platform.set_fault(row.fault);
    let sb = sandbox(&platform);
    let victim = long_token("victim");
    if row.cached {
        sb.write_cache(&[("github.com", &victim, 3000, false)]);
    }
    let before = sb.tokens_json();
    let placed = kind.place(&sb.cache.join(row.file));
    let path = placed.path.display().to_string();
    let input = match row.command {
        "erase" => erase_input(&victim),
        "get" => GET.to_owned(),
        _ => String::new(),
    };
    let run = run_within(&mut sb.command(&[row.command]), input.as_bytes(), DEADLINE);
    let token = minted(&sb, &platform);
    sb.assert_no_secret(&run.stderr);
    if let Some(hang) = run.hang() {
        return case.check(false, || hang);
    }
    case.check(run.took < Duration::from_secs(3), || {
        format!("took {:?}, not refused at once", run.took)
    });
    let names_it = run
        .stderr
        .lines()
        .any(|l| l.contains(&path) && l.contains("not a regular file"));
    case.check(names_it, || {
        format!(
            "no stderr line names {path} as not a regular file: {:?}",
            run.stderr
        )
    });
    let want = match row.expect {
        Expect::Refused(code) => code,
        Expect::Minted => 0,
    };
    case.check(run.code == Some(want), || {
        format!("exit {:?}, want {want}; stderr {:?}", run.code, run.stderr)
    });
    match row.expect {
        Expect::Refused(code) => {
            case.check(run.stdout.is_empty(), || {
                format!("{} bytes on stdout, want none", run.stdout.len())
            });
            if code == 78 {
                case.check(platform.requests() == 0, || {
                    format!(
                        "{} platform requests: a refused cache serves nothing",
                        platform.requests()
                    )
                });
            }
            if code == 78 && row.command != "status" {
                case.check(run.stderr.lines().count() == 1, || {
                    format!("want one line on stderr: {:?}", run.stderr)
                });
            }
        }
        Expect::Minted => {
            let served = run.stdout.lines().find_map(|l| l.strip_prefix("password="));
            case.check(token.is_some() && served == token.as_deref(), || {
                "the freshly minted token was not served".to_owned()
            });
            case.check(platform.requests() == 1, || {
                format!("{} platform requests, want 1", platform.requests())
            });
        }
    }
    if row.cached || row.file == "tokens.lock" {
        // Read only when tokens.json is a regular file (or absent): a FIFO would block us.
        case.check(sb.tokens_json() == before, || {
            "tokens.json changed: a token was written past a refused file".to_owned()
        });
    }
    drop(placed);
}

#[test]
fn a_fifo_socket_or_directory_in_place_of_a_cache_file_is_refused_at_once() {
    let mut failures = Failures::default();
    for kind in NotRegular::ALL {
        for row in &ROWS {
            let label = format!("{} as {} / {}", kind.name(), row.file, row.command);
            run_row(kind, row, &mut failures.case(label));
        }
    }
    failures.assert_none();
}
