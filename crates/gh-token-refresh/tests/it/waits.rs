//! No wait unbounded, for the daemon as a process (DESIGN.md, "Files in the cache directory"
//! and "Failure classes and exit codes"): `flock(2)` locks held by a SIGSTOPped process, FIFOs,
//! sockets and directories where its files belong, and retry waits that never outgrow the
//! interval. Every child runs under a deadline or a guard: a hang fails the test, never hangs
//! it.

use std::time::{Duration, Instant};

use molecule_credential::clock::parse_rfc3339;
use molecule_tests::deadline::{Guard, run_within};
use molecule_tests::stuck::{NotRegular, StoppedHolder};
use molecule_tests::table::{Case, Failures};
use molecule_tests::{Fault, PlatformStandIn};

use crate::support::{BIN, Proc, signal};

/// The bearer every [`Proc`] presents.
const BEARER: &str = "bearer-xyz";
/// Kills a run that takes this long: a guard against hanging, never the bound under test.
const DEADLINE: Duration = Duration::from_secs(10);
/// SIGTERM must end the daemon within this, whatever it is waiting for.
const STOP_WITHIN: Duration = Duration::from_secs(2);
const INTERVAL_SECS: u64 = 3;

/// A daemon sandbox on `platform`: interval 3 s, no jitter, a 2 s HTTP budget.
fn proc(platform: &PlatformStandIn) -> Proc {
    let mut p = Proc::new(&platform.url());
    p.set("TOKEN_REFRESH_INTERVAL_SEC", &INTERVAL_SECS.to_string())
        .set("TOKEN_REFRESH_JITTER_SEC", "0")
        .set("MOLECULE_HTTP_TIMEOUT_SEC", "2");
    p
}

/// A daemon started on an empty cache whose lock files a stopped process holds.
struct Stuck {
    daemon: Guard,
    _holder: StoppedHolder,
    p: Proc,
    platform: PlatformStandIn,
}

/// Holds `locks` with a stopped process, then starts the daemon (interval 3 s); `None` when
/// `test` had to skip.
fn start_stuck(test: &str, locks: &[&str]) -> Option<Stuck> {
    let platform = PlatformStandIn::local(BEARER);
    let p = proc(&platform);
    let holder = StoppedHolder::hold(&p.cache_dir(), locks)
        .map_err(|why| molecule_tests::skip::skip(test, why))
        .ok()?;
    Some(Stuck {
        daemon: p.spawn_guarded("d.log", &[]),
        _holder: holder,
        p,
        platform,
    })
}

/// github.com's last attempt in the status file: (when, class).
fn last_attempt(p: &Proc) -> Option<(String, String)> {
    let status = p.status()?;
    let attempt = &status["hosts"]["github.com"]["last_attempt"];
    Some((
        attempt["at"].as_str()?.to_owned(),
        attempt["class"].as_str()?.to_owned(),
    ))
}

/// How far ahead of `updated_at` the status file schedules the next wake.
fn scheduled_ahead(status: &serde_json::Value) -> Option<time::Duration> {
    let at = parse_rfc3339(status["updated_at"].as_str()?)?;
    let wake = parse_rfc3339(status["next_wake_at"].as_str()?)?;
    Some(wake - at)
}

/// Sends SIGTERM and asserts exit 0 within [`STOP_WITHIN`]; `what` labels the failure.
fn stop(daemon: &mut Guard, p: &Proc, what: &str) {
    let sent = Instant::now();
    signal(daemon.child(), "TERM");
    let exit = daemon.exit_within(Duration::from_secs(5));
    let took = sent.elapsed();
    assert_eq!(
        exit,
        Some(Some(0)),
        "{what}: SIGTERM did not end the daemon with 0 ({took:?}); log:\n{}",
        p.log("d.log")
    );
    assert!(
        took < STOP_WITHIN,
        "{what}: SIGTERM took {took:?} to end the daemon; log:\n{}",
        p.log("d.log")
    );
}

#[test]
fn with_both_locks_stuck_the_daemon_keeps_recording_classified_attempts_on_its_schedule() {
    let Some(Stuck {
        platform: _platform,
        p,
        mut daemon,
        _holder,
    }) = start_stuck(
        "waits::with_both_locks_stuck_the_daemon_keeps_recording_classified_attempts_on_its_schedule",
        &["tokens.lock", "refresh.lock"],
    )
    else {
        return;
    };

    // Each attempt waits at most one mint budget (2 s + slack) and one tokens.lock wait (1 s),
    // then retries within the interval: two attempts fit well inside 20 s.
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut updates = std::collections::BTreeSet::new();
    let mut late_wakes = std::collections::BTreeSet::new();
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end && seen.len() < 2 {
        if let Some(status) = p.status()
            && let Some(updated) = status["updated_at"].as_str()
        {
            updates.insert(updated.to_owned());
            // A failed attempt's retry comes within the interval.
            if let Some(ahead) = scheduled_ahead(&status)
                && ahead > time::Duration::seconds(INTERVAL_SECS as i64 + 1)
            {
                late_wakes.insert(format!("updated {updated}, next wake {ahead} later"));
            }
        }
        if let Some(attempt) = last_attempt(&p)
            && seen.last() != Some(&attempt)
        {
            seen.push(attempt);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        seen.len() >= 2,
        "the daemon recorded {} attempt(s) in 20 s with the locks stuck: {seen:?}; log:\n{}",
        seen.len(),
        p.log("d.log")
    );
    for (at, class) in &seen {
        assert_eq!(class, "transient", "attempt at {at}: {seen:?}");
    }
    assert!(
        updates.len() >= 2,
        "daemon.status.json's updated_at did not advance: {updates:?}"
    );
    assert!(
        late_wakes.is_empty(),
        "a retry was scheduled past the {INTERVAL_SECS} s interval: {late_wakes:?}"
    );
    stop(&mut daemon, &p, "both locks stuck");
}

#[test]
fn sigterm_ends_the_daemon_within_2_s_while_it_waits_for_a_stuck_refresh_lock() {
    let Some(Stuck {
        platform,
        p,
        mut daemon,
        _holder,
    }) = start_stuck(
        "waits::sigterm_ends_the_daemon_within_2_s_while_it_waits_for_a_stuck_refresh_lock",
        &["tokens.lock", "refresh.lock"],
    )
    else {
        return;
    };
    // An empty cache: the daemon primes at once, and waits for refresh.lock (up to one mint
    // budget, 2 s + slack) before it may mint itself.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        platform.requests(),
        0,
        "the daemon did not wait for refresh.lock at all"
    );
    stop(&mut daemon, &p, "waiting for refresh.lock");
    assert_eq!(platform.requests(), 0, "it minted after SIGTERM");
}

#[test]
fn sigterm_ends_the_daemon_within_2_s_while_it_waits_for_a_stuck_tokens_lock() {
    let Some(Stuck {
        platform,
        p,
        mut daemon,
        _holder,
    }) = start_stuck(
        "waits::sigterm_ends_the_daemon_within_2_s_while_it_waits_for_a_stuck_tokens_lock",
        &["tokens.lock"],
    )
    else {
        return;
    };
    // The mint goes through at once; the write then waits for tokens.lock.
    let end = Instant::now() + Duration::from_secs(5);
    while platform.requests() == 0 {
        assert!(
            Instant::now() < end,
            "the daemon never called the platform: {}",
            p.log("d.log")
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    stop(&mut daemon, &p, "waiting for tokens.lock");
}

/// How a daemon command must react to a non-regular file.
#[derive(Clone, Copy)]
enum Expect {
    /// Exit with this code, naming the path as not a regular file on stderr.
    Refused(i32),
    /// `status`: exit 1 and an `unhealthy: ` line naming the path as not a regular file.
    Unhealthy,
}

/// (file replaced, arguments, a fresh token cached first, expected).
const ROWS: [(&str, &[&str], bool, Expect); 6] = [
    ("tokens.json", &["status"], false, Expect::Unhealthy),
    ("tokens.json", &["--once"], false, Expect::Refused(78)),
    ("tokens.lock", &["--once"], false, Expect::Refused(78)),
    ("refresh.lock", &["--once"], false, Expect::Refused(78)),
    ("daemon.status.json", &["status"], true, Expect::Unhealthy),
    // The daemon itself: it must not start on a status file it cannot write.
    ("daemon.status.json", &[], true, Expect::Refused(78)),
];

/// Runs one row for one kind, recording what went wrong in `case`.
fn run_row(
    kind: NotRegular,
    (file, args, cached, expect): (&str, &[&str], bool, Expect),
    case: &mut Case<'_>,
) {
    let platform = PlatformStandIn::local(BEARER);
    let p = proc(&platform);
    let cache = p.cache_dir();
    if cached {
        let primed = run_within(&mut p.command(BIN, &["--once"]), b"", DEADLINE);
        assert_eq!(primed.code, Some(0), "priming: {}", primed.stderr);
    }
    let before = cached.then(|| std::fs::read(cache.join("tokens.json")).unwrap());
    let placed = kind.place(&cache.join(file));
    let path = placed.path.display().to_string();
    let run = run_within(&mut p.command(BIN, args), b"", DEADLINE);
    if let Some(hang) = run.hang() {
        return case.check(false, || hang);
    }
    case.check(run.took < Duration::from_secs(3), || {
        format!("took {:?}, not refused at once", run.took)
    });
    let names = |text: &str, prefix: &str| {
        text.lines()
            .any(|l| l.starts_with(prefix) && l.contains(&path) && l.contains("not a regular file"))
    };
    match expect {
        Expect::Refused(code) => {
            case.check(run.code == Some(code), || {
                format!("exit {:?}, want {code}; stderr {:?}", run.code, run.stderr)
            });
            case.check(names(&run.stderr, ""), || {
                format!(
                    "no stderr line names {path} as not a regular file: {:?}",
                    run.stderr
                )
            });
        }
        Expect::Unhealthy => {
            case.check(run.code == Some(1), || {
                format!("exit {:?}, want 1; stdout {:?}", run.code, run.stdout)
            });
            case.check(names(&run.stdout, "unhealthy: "), || {
                format!(
                    "no `unhealthy: ` line names {path} as not a regular file: {:?}",
                    run.stdout
                )
            });
        }
    }
    if let Some(before) = before {
        case.check(
            std::fs::read(cache.join("tokens.json")).ok() == Some(before),
            || "tokens.json changed".to_owned(),
        );
    }
    drop(placed);
}

#[test]
fn a_fifo_socket_or_directory_in_place_of_a_daemon_file_is_refused_at_once() {
    let mut failures = Failures::default();
    for kind in NotRegular::ALL {
        for row in ROWS {
            let command = if row.1.is_empty() {
                "(daemon)".to_owned()
            } else {
                row.1.join(" ")
            };
            let label = format!("{} as {} / gh-token-refresh {command}", kind.name(), row.0);
            run_row(kind, row, &mut failures.case(label));
        }
    }
    failures.assert_none();
}

/// The request times of `platform` within `window` of `start`, in seconds since `start`.
fn arrivals(platform: &PlatformStandIn, start: Instant, window: Duration) -> Vec<f64> {
    platform
        .request_times()
        .into_iter()
        .map(|t| t.saturating_duration_since(start))
        .filter(|d| *d <= window)
        .map(|d| d.as_secs_f64())
        .collect()
}

#[test]
fn against_a_503_platform_the_daemon_retries_within_the_3_s_interval() {
    let platform = PlatformStandIn::local(BEARER);
    platform.set_fault(Fault::Status(503));
    let p = proc(&platform);
    let start = Instant::now();
    let mut daemon = p.spawn_guarded("d.log", &[]);
    std::thread::sleep(Duration::from_secs(8).saturating_sub(start.elapsed()));
    let times = arrivals(&platform, start, Duration::from_secs(8));
    stop(&mut daemon, &p, "retrying a 503");
    assert!(
        times.len() >= 2,
        "{} platform request(s) in the first 8 s, want a retry: {times:?}",
        times.len()
    );
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] <= INTERVAL_SECS as f64 + 0.5,
            "a retry came {:.1} s after the failure, past the {INTERVAL_SECS} s interval: {times:?}",
            pair[1] - pair[0]
        );
    }
    let (_, class) = last_attempt(&p).expect("an attempt is recorded");
    assert_eq!(class, "transient");
}

#[test]
fn against_a_401_platform_the_daemon_records_auth_within_one_interval_and_does_not_hammer() {
    let platform = PlatformStandIn::local(BEARER);
    platform.set_fault(Fault::Status(401));
    let p = proc(&platform);
    let start = Instant::now();
    let mut daemon = p.spawn_guarded("d.log", &[]);
    let recorded = loop {
        if last_attempt(&p).is_some_and(|(_, class)| class == "auth") {
            break Some(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(INTERVAL_SECS) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        recorded.is_some(),
        "daemon.status.json did not record class auth for github.com within {INTERVAL_SECS} s: \
         {:?}",
        p.status()
    );
    std::thread::sleep(Duration::from_secs(8).saturating_sub(start.elapsed()));
    let times = arrivals(&platform, start, Duration::from_secs(8));
    stop(&mut daemon, &p, "auth failing");
    assert!(
        (2..=4).contains(&times.len()),
        "{} platform requests in 8 s: auth keeps the normal {INTERVAL_SECS} s interval: {times:?}",
        times.len()
    );
}
