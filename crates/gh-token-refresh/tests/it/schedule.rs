//! Exact wake times under tokio's paused time and fixed jitter (dice 0.5: jitter offset 0,
//! full-jitter backoff at half its ceiling): the interval, the expiry guard, the backoff series,
//! Retry-After, the initial delay, SIGHUP and shutdown.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use molecule_credential::cache::Entry;
use molecule_credential::clock::Clock;
use molecule_credential::store::CacheDir;
use molecule_credential::{Class, Error, Secret};

use crate::support::{Controls, Scripted, Step, TokioClock, config, run_daemon, signals, until};

const HOUR: Duration = Duration::from_secs(3600);

/// What one daemon run left behind.
struct Played {
    /// When the minter was called, in seconds of paused time.
    times: Vec<f64>,
    code: u8,
    clock: TokioClock,
    cache_dir: PathBuf,
    _dir: tempfile::TempDir,
}

/// Runs the daemon over `steps` from a cache `prepare` filled, while `script` drives the clock
/// and the signals; the run ends when the script sends stop.
async fn run<F, Fut>(
    steps: Vec<Step>,
    prepare: impl FnOnce(&CacheDir, &TokioClock),
    script: F,
) -> Played
where
    F: FnOnce(TokioClock, Controls) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "http://127.0.0.1:9", &[]);
    let clock = TokioClock::new();
    prepare(&CacheDir::open(&config.cache_dir).unwrap(), &clock);
    let minter = Scripted::new(clock.clone(), steps);
    let (signals, controls) = signals();
    let code = run_daemon(
        &config,
        &clock,
        &minter,
        None,
        signals,
        script(clock.clone(), controls),
    )
    .await;
    Played {
        times: minter.times(),
        code,
        clock,
        cache_dir: config.cache_dir.clone(),
        _dir: dir,
    }
}

/// The minter's call times for a run stopped at `stop_at` seconds.
async fn play(
    steps: Vec<Step>,
    stop_at: f64,
    prepare: impl FnOnce(&CacheDir, &TokioClock),
) -> Vec<f64> {
    let played = run(steps, prepare, |clock, controls| async move {
        until(&clock, stop_at).await;
        controls.stop.send(()).unwrap();
    })
    .await;
    assert_eq!(played.code, 0);
    played.times
}

/// Caches a token for github.com that expires `expires_in` seconds from now and was fetched
/// `fetched_ago` seconds ago.
fn hold(cache: &CacheDir, clock: &TokioClock, expires_in: u64, fetched_ago: u64, suspect: bool) {
    let now = clock.now();
    let mut entry = Entry::new(
        Secret::new("ghs_held".into()),
        now + Duration::from_secs(expires_in),
        now - Duration::from_secs(fetched_ago),
        "platform",
    );
    entry.suspect = suspect;
    cache.offer("github.com", entry).unwrap();
}

fn transient() -> Step {
    Step::Fail(
        Error::new(Class::Transient, "the platform failed to refresh the token").with_status(500),
    )
}

#[tokio::test(start_paused = true)]
async fn primes_at_once_then_keeps_the_interval() {
    let times = play(vec![Step::Token(HOUR)], 9000.0, |_, _| {}).await;
    assert_eq!(times, [0.0, 2700.0, 5400.0, 8100.0]);
}

#[tokio::test(start_paused = true)]
async fn the_expiry_guard_wakes_before_the_margin() {
    // The platform hands out its cached token with 20 minutes left: wake 15 minutes later.
    let times = play(
        vec![Step::Token(Duration::from_secs(1200))],
        3000.0,
        |_, _| {},
    )
    .await;
    assert_eq!(times, [0.0, 900.0, 1800.0, 2700.0]);
}

#[tokio::test(start_paused = true)]
async fn transient_failures_back_off_exponentially_then_recover() {
    let mut steps = vec![transient(); 6];
    steps.push(Step::Token(HOUR));
    let times = play(steps, 3400.0, |_, _| {}).await;
    // Ceilings 15, 30, 60, 120, 240, 300 s at half: 7.5, 15, 30, 60, 120, 150 s apart.
    assert_eq!(times, [0.0, 7.5, 22.5, 52.5, 112.5, 232.5, 382.5, 3082.5]);
}

#[tokio::test(start_paused = true)]
async fn backoff_never_sleeps_past_the_held_token() {
    // A token with 6 minutes left is cached; every refresh fails. No retry may be scheduled
    // past its expiry, however far the backoff has grown.
    let steps = vec![transient()];
    let times = play(steps, 420.0, |cache, clock| {
        hold(cache, clock, 360, 0, false)
    })
    .await;
    // Fresh until t=60 (the margin), so the first refresh waits until then; the backoff then
    // runs 7.5, 15, 30, 60, 120 s apart, and the next step (292.5 + 120) is cut to the
    // token's expiry at 360 s.
    assert_eq!(times, [60.0, 67.5, 82.5, 112.5, 172.5, 292.5, 360.0]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let limited = Step::Fail(
        Error::new(Class::RateLimited, "the platform is rate limiting us")
            .with_status(429)
            .with_retry_after(Some(Duration::from_secs(90))),
    );
    let times = play(vec![limited, Step::Token(HOUR)], 2800.0, |_, _| {}).await;
    assert_eq!(times, [0.0, 90.0, 2790.0]);
}

#[tokio::test(start_paused = true)]
async fn auth_failures_keep_the_interval_for_hours() {
    let denied =
        Step::Fail(Error::new(Class::Auth, "the platform rejected our bearer").with_status(401));
    let times = play(vec![denied], 3.0 * 3600.0 - 1.0, |_, _| {}).await;
    assert_eq!(
        times,
        [0.0, 2700.0, 5400.0, 8100.0],
        "4 requests in 3 hours"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stale_answer_backs_off_instead_of_spinning() {
    // Exactly the margin left: the expiry guard alone would say "now" forever.
    let steps = vec![Step::Token(Duration::from_secs(300)), Step::Token(HOUR)];
    let times = play(steps, 2800.0, |_, _| {}).await;
    assert_eq!(times, [0.0, 7.5, 2707.5]);
}

#[tokio::test(start_paused = true)]
async fn a_fresh_cache_waits_the_initial_delay() {
    let times = play(vec![Step::Token(HOUR)], 100.0, |cache, clock| {
        hold(cache, clock, 3000, 600, false)
    })
    .await;
    assert_eq!(times, [60.0]);
}

#[tokio::test(start_paused = true)]
async fn a_suspect_or_expiring_cache_primes_at_once() {
    for (expires_in, suspect) in [(3000, true), (200, false)] {
        let times = play(vec![Step::Token(HOUR)], 10.0, |cache, clock| {
            hold(cache, clock, expires_in, 600, suspect)
        })
        .await;
        assert_eq!(times, [0.0], "expires in {expires_in}s, suspect {suspect}");
    }
}

#[tokio::test(start_paused = true)]
async fn sighup_refreshes_now() {
    let played = run(
        vec![Step::Token(HOUR)],
        |_, _| {},
        |clock, controls| async move {
            until(&clock, 100.0).await;
            controls.hup.send(()).await.unwrap();
            until(&clock, 200.0).await;
            controls.stop.send(()).unwrap();
        },
    )
    .await;
    // Forced: the token from t=0 is fresh, yet SIGHUP fetches; the interval restarts from it.
    assert_eq!(played.times, [0.0, 100.0]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_abandons_a_hanging_call_and_leaves_the_cache_alone() {
    let played = run(
        vec![Step::Hang],
        |_, _| {},
        |clock, controls| async move {
            until(&clock, 5.0).await;
            controls.stop.send(()).unwrap();
        },
    )
    .await;
    assert_eq!(played.code, 0);
    assert_eq!(
        played.clock.elapsed(),
        Duration::from_secs(5),
        "stopped at once, not after a timeout"
    );
    let names: Vec<_> = std::fs::read_dir(&played.cache_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !names.iter().any(|n| n.to_string_lossy().contains("tmp")),
        "{names:?}"
    );
    assert!(!played.cache_dir.join("tokens.json").exists());
}

#[tokio::test(start_paused = true)]
async fn the_wall_clock_jumping_is_read_at_every_wake() {
    {
        // Forward: two hours pass for the wall clock while the daemon sleeps (a resumed VM). The
        // clock change wakes it (as the kernel cancels a CANCEL_ON_SET timerfd), the token it
        // holds is dead by the wall clock, and it refreshes at once instead of sleeping out a
        // timer set before the jump; the refresh after that is scheduled from the new reading.
        let played = run(
            vec![Step::Token(HOUR)],
            |_, _| {},
            |clock, controls| async move {
                until(&clock, 600.0).await;
                clock.jump(2 * 3600);
                until(&clock, 5900.0).await;
                controls.stop.send(()).unwrap();
            },
        )
        .await;
        assert_eq!(played.times, [0.0, 600.0, 3300.0]);
        let doc = CacheDir::open(&played.cache_dir).unwrap().read().unwrap();
        assert!(
            doc.entries["github.com"].expires_at > played.clock.now(),
            "the cache holds a live token"
        );
    }
    {
        // Backward: the wall clock goes back two hours. The held token looks three hours long;
        // the interval still bounds the wait.
        let played = run(
            vec![Step::Token(HOUR)],
            |_, _| {},
            |clock, controls| async move {
                until(&clock, 600.0).await;
                clock.jump(-2 * 3600);
                until(&clock, 5500.0).await;
                controls.stop.send(()).unwrap();
            },
        )
        .await;
        assert_eq!(played.times, [0.0, 2700.0, 5400.0]);
    }
}
