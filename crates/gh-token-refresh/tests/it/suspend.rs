//! The schedule follows the wall clock (DESIGN.md, "Failure classes and exit codes"): after a
//! suspend, a snapshot-restore or a frozen container, the daemon refreshes as soon as it runs
//! again and logs gh in again, instead of sleeping out a timer set before the pause.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use molecule_credential::store::current_uid;
use molecule_tests::deadline::{Guard, run_within};

use crate::support::{BIN, Proc, signal, which};

/// Debian's libfaketime (package `faketime`).
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const TEST: &str =
    "suspend::a_wall_clock_jump_past_expiry_is_refreshed_within_2_s_and_gh_logged_in_again";

/// The environment that puts a process on the shifted wall clock read from `offset_file`
/// (`+0`, `+7200`, …), re-read on every call, with the monotonic clock left alone.
fn faketime_env(offset_file: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("LD_PRELOAD", LIBFAKETIME.to_owned()),
        ("FAKETIME_TIMESTAMP_FILE", offset_file.display().to_string()),
        ("FAKETIME_NO_CACHE", "1".to_owned()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
    ]
}

/// Rewrites the offset file in one step (libfaketime may read it at any moment).
fn set_offset(offset_file: &Path, offset: &str) {
    let tmp = offset_file.with_extension("tmp");
    std::fs::write(&tmp, format!("{offset}\n")).unwrap();
    std::fs::rename(&tmp, offset_file).unwrap();
}

/// Checks the shift itself (so a failure below is the daemon's, not the harness's): a
/// process on the faked clock reads about two hours ahead of the real one.
fn assert_shifted_by_two_hours(offset_file: &Path) {
    let mut date = Command::new("date");
    date.arg("+%s")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(faketime_env(offset_file));
    let run = run_within(&mut date, b"", Duration::from_secs(10));
    let faked: i64 = run.stdout.trim().parse().expect("date +%s prints seconds");
    let real = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (7190..=7210).contains(&(faked - real)),
        "libfaketime did not shift the clock by +7200 s: {} s",
        faked - real
    );
}

/// Lines the testkit printed for its mints so far.
fn mints(state: &Path) -> usize {
    std::fs::read_to_string(state.join("mints.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" minted token#"))
        .count()
}

/// The token the daemon cached for `localhost`.
fn cached(p: &Proc) -> Option<String> {
    let bytes = std::fs::read(p.path("cache/tokens.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["entries"]["localhost"]["token"]
        .as_str()
        .map(str::to_owned)
}

/// The token gh holds for `localhost` in the daemon's GH_CONFIG_DIR.
fn gh_token(p: &Proc, gh: &Path) -> Option<String> {
    let mut c = Command::new(gh);
    c.args(["auth", "token", "--hostname", "localhost"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", p.path(""))
        .env("GH_CONFIG_DIR", p.path("gh-config"))
        .env("GH_NO_UPDATE_NOTIFIER", "1");
    let run = run_within(&mut c, b"", Duration::from_secs(10));
    run.assert_in_time("gh auth token");
    (run.code == Some(0)).then(|| run.stdout.trim().to_owned())
}

/// The cached token, when the testkit minted `n` tokens and gh holds the cached one.
fn settled(p: &Proc, gh: &Path, state: &Path, n: usize) -> Option<String> {
    let token = cached(p)?;
    (mints(state) == n && gh_token(p, gh).as_deref() == Some(token.as_str())).then_some(token)
}

/// Skips (returning `None`) unless everything this test needs is here: the testkit binary,
/// gh, python3 and libfaketime, and root (a network namespace for port 443, and CAP_SYS_TIME
/// to announce a clock change).
fn prerequisites() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let testkit = Path::new(BIN).with_file_name("molecule-testkit");
    let missing = if current_uid() != 0 {
        Some("needs root: a network namespace for gh's port 443, and CAP_SYS_TIME".to_owned())
    } else if !Path::new(LIBFAKETIME).exists() {
        Some(format!(
            "{LIBFAKETIME} is missing (apt-get install faketime)"
        ))
    } else if which("gh").is_none() {
        Some("gh is not installed".to_owned())
    } else if which("python3").is_none() {
        Some("python3 is not installed".to_owned())
    } else if !testkit.is_file() {
        Some(format!(
            "{} is not built (cargo build -p molecule-tests --bin molecule-testkit)",
            testkit.display()
        ))
    } else {
        None
    };
    if let Some(reason) = missing {
        molecule_tests::skip::skip(TEST, &reason);
        return None;
    }
    Some((testkit, which("gh")?, which("python3")?))
}

/// A real suspend or snapshot-restore does two things a process can see: its wall clock reads
/// later, and the kernel announces a clock change (timers armed with
/// `TFD_TIMER_CANCEL_ON_SET` are cancelled, as on resume via `timerfd_resume`). This test
/// does both, without suspending the machine:
///
/// 1. The daemon and the stand-ins (`molecule-testkit serve`, so tokens are minted and
///    validated on the same shifted clock) run under libfaketime with
///    `FAKETIME_TIMESTAMP_FILE`, `FAKETIME_NO_CACHE=1` and `FAKETIME_DONT_FAKE_MONOTONIC=1`.
///    Rewriting the file from `+0` to `+7200` moves their wall clock two hours ahead, past the
///    one-hour token's expiry, while their monotonic clock runs on: what a resumed process
///    sees. libfaketime announces nothing, though.
/// 2. So the test then sets `CLOCK_REALTIME` to its own current value (python3's
///    `time.clock_settime`, run without the preload; needs CAP_SYS_TIME). That moves the real
///    clock by microseconds only, and makes the kernel cancel every `CANCEL_ON_SET` timer,
///    as a resume does.
///
/// Set-up: default interval (2700 s) and margin (300 s), tokens living 3600 s, real gh logging
/// in to `localhost` on port 443 in a private network namespace. Before the jump the daemon
/// must not mint again (its schedule is not polling); after it, within 2 s, the stand-in has
/// minted a new token, `tokens.json` holds it, and gh holds it.
#[test]
fn a_wall_clock_jump_past_expiry_is_refreshed_within_2_s_and_gh_logged_in_again() {
    let Some((testkit, gh, python)) = prerequisites() else {
        return;
    };
    if !molecule_tests::netns::in_private_netns(TEST) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let offset = work.path().join("faketime-offset");
    set_offset(&offset, "+0");
    let state = work.path().join("stack");
    std::fs::create_dir_all(&state).unwrap();

    let mut serve = Command::new(&testkit);
    serve
        .args(["serve", "--state-dir"])
        .arg(&state)
        .args(["--ghe-addr", "127.0.0.1:443", "--ttl-secs", "3600"])
        .args(["--remint-below-secs", "300", "--bearer", "bearer-xyz"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(faketime_env(&offset))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(state.join("mints.log")).unwrap())
        .stderr(std::fs::File::create(state.join("testkit.log")).unwrap());
    let _stack = Guard::spawn(&mut serve);
    let ready = state.join("ready.json");
    assert!(
        crate::support::wait_for(30, || ready.exists()),
        "molecule-testkit did not get ready: {}",
        std::fs::read_to_string(state.join("testkit.log")).unwrap_or_default()
    );
    let ready: serde_json::Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();

    let mut p = Proc::new(ready["platform_url"].as_str().unwrap());
    let gh_config = p.path("gh-config").display().to_string();
    p.set("PATH", "/usr/bin:/bin")
        .set("MOLECULE_GIT_HOSTS", "localhost")
        .set("TOKEN_REFRESH_JITTER_SEC", "0")
        .set("GH_CONFIG_DIR", &gh_config)
        .set("GH_NO_UPDATE_NOTIFIER", "1")
        .set("SSL_CERT_FILE", ready["ca_pem"].as_str().unwrap());
    for (k, v) in faketime_env(&offset) {
        p.set(k, &v);
    }
    let mut daemon = p.spawn_guarded("d.log", &[]);
    let first = {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(token) = settled(&p, &gh, &state, 1) {
                break token;
            }
            assert!(
                Instant::now() < end,
                "no first refresh and gh login: mints {}, log:\n{}",
                mints(&state),
                p.log("d.log")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // Idle on an unshifted clock: nothing to do for the next 40 minutes.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(mints(&state), 1, "the daemon minted again while idle");
    assert!(
        cached(&p).as_deref() == Some(first.as_str()),
        "the cache changed while idle"
    );

    set_offset(&offset, "+7200");
    let announce = run_within(
        Command::new(&python).args([
            "-c",
            "import time; time.clock_settime(time.CLOCK_REALTIME, time.clock_gettime(time.CLOCK_REALTIME))",
        ]),
        b"",
        Duration::from_secs(10),
    );
    assert_eq!(
        announce.code,
        Some(0),
        "announcing a clock change failed: {}",
        announce.stderr
    );
    let jumped = Instant::now();
    assert_shifted_by_two_hours(&offset);
    let mut after = None;
    while jumped.elapsed() < Duration::from_secs(10) {
        // Settled on the new token: between the stand-in's second mint and the daemon's cache
        // write, the old token still satisfies "cached, and what gh holds".
        if let Some(token) = settled(&p, &gh, &state, 2).filter(|t| *t != first) {
            after = Some((token, jumped.elapsed()));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Some((second, took)) = after else {
        panic!(
            "10 s after the jump: mints {}, cache changed {}, log:\n{}",
            mints(&state),
            cached(&p).as_deref() != Some(first.as_str()),
            p.log("d.log")
        );
    };
    assert!(second != first, "the same token after the jump");
    assert!(
        took <= Duration::from_secs(2),
        "refreshed and logged gh in {took:?} after the jump, not within 2 s; log:\n{}",
        p.log("d.log")
    );
    signal(daemon.child(), "TERM");
    assert_eq!(
        daemon.exit_within(Duration::from_secs(5)),
        Some(Some(0)),
        "SIGTERM after the jump"
    );
}
