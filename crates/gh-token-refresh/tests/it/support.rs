//! In-process harness: a clock that follows tokio's (paused) time, scripted and HTTP minters,
//! and a way to run the daemon until a given simulated moment.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use gh_token_refresh::Cli;
use gh_token_refresh::daemon::{Minter, Signals};
use gh_token_refresh::gh::Gh;
use molecule_credential::alarm::Alarm;
use molecule_credential::cache::Entry;
use molecule_credential::clock::{Clock, parse_rfc3339};
use molecule_credential::config::Config;
use molecule_credential::platform::PlatformClient;
use molecule_credential::route::Target;
use molecule_credential::schedule::FixedDice;
use molecule_credential::token::Minted;
use molecule_credential::{Error, Result, Secret};
use molecule_tests::deadline::Guard;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

/// Wall time that advances with tokio's clock, so paused time moves expiries too; `jump`
/// moves the wall clock without moving monotonic time (NTP corrections, a resumed VM) and, as
/// the kernel does for a timerfd armed with TFD_TIMER_CANCEL_ON_SET, wakes a waiting
/// [`TokioAlarm`].
#[derive(Clone)]
pub struct TokioClock {
    base: OffsetDateTime,
    start: tokio::time::Instant,
    jumped: std::sync::Arc<std::sync::atomic::AtomicI64>,
    changed: std::sync::Arc<tokio::sync::Notify>,
}

impl TokioClock {
    /// Starts at a fixed wall time, now.
    pub fn new() -> Self {
        Self {
            base: parse_rfc3339("2026-11-22T18:00:00Z").unwrap(),
            start: tokio::time::Instant::now(),
            jumped: std::sync::Arc::default(),
            changed: std::sync::Arc::default(),
        }
    }

    /// Moves the wall clock by `secs` (negative: backwards), and says so to alarms.
    pub fn jump(&self, secs: i64) {
        self.jumped
            .fetch_add(secs, std::sync::atomic::Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// An alarm on this clock.
    pub fn alarm(&self) -> TokioAlarm {
        TokioAlarm(self.clone())
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> OffsetDateTime {
        self.base
            + self.start.elapsed()
            + time::Duration::seconds(self.jumped.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// The wall-clock alarm on [`TokioClock`]: paused tokio time until the wall clock reads `at`,
/// or until the clock jumps.
pub struct TokioAlarm(TokioClock);

impl Alarm for TokioAlarm {
    async fn wait_until(&mut self, at: OffsetDateTime) {
        let left = Duration::try_from(at - self.0.now()).unwrap_or(Duration::ZERO);
        tokio::select! {
            () = tokio::time::sleep(left) => {}
            () = self.0.changed.notified() => {}
        }
    }
}

/// One scripted answer.
#[derive(Clone)]
pub enum Step {
    /// A token living this long.
    Token(Duration),
    /// A failure.
    Fail(Error),
    /// Never answers (until shutdown abandons it).
    Hang,
}

/// A minter that plays a script (repeating its last step) and records when it was called.
/// When a test minter was called, on the test clock.
#[derive(Default)]
pub struct Calls(RefCell<Vec<Duration>>);

impl Calls {
    /// Notes a call now; returns how many there have been.
    fn record(&self, clock: &TokioClock) -> usize {
        let mut calls = self.0.borrow_mut();
        calls.push(clock.elapsed());
        calls.len()
    }

    /// Call times in seconds since the start.
    pub fn times(&self) -> Vec<f64> {
        self.0.borrow().iter().map(Duration::as_secs_f64).collect()
    }
}

pub struct Scripted {
    clock: TokioClock,
    script: RefCell<VecDeque<Step>>,
    pub calls: Calls,
}

impl Scripted {
    pub fn new(clock: TokioClock, steps: Vec<Step>) -> Self {
        Self {
            clock,
            script: RefCell::new(steps.into()),
            calls: Calls::default(),
        }
    }

    /// Call times in seconds since the start.
    pub fn times(&self) -> Vec<f64> {
        self.calls.times()
    }
}

impl Minter for &Scripted {
    async fn mint(&self, _target: &Target, _cached: Option<&Entry>) -> Result<Minted> {
        let n = self.calls.record(&self.clock);
        let step = {
            let mut s = self.script.borrow_mut();
            if s.len() > 1 {
                s.pop_front().unwrap()
            } else {
                s.front().cloned().unwrap()
            }
        };
        match step {
            Step::Token(life) => Ok(Minted {
                token: Secret::new(format!("ghs_scripted_{n}")),
                expires_at: self.clock.now() + life,
                expiry_known: true,
                status: Some(200),
                installation_id: None,
            }),
            Step::Fail(e) => Err(e),
            Step::Hang => std::future::pending().await,
        }
    }
}

/// The real platform client over real HTTP, run on its own real-time runtime through
/// `spawn_blocking`, which holds the paused clock still while the call is in flight.
pub struct HttpMinter {
    clock: TokioClock,
    client: Arc<PlatformClient>,
    runtime: Option<Arc<tokio::runtime::Runtime>>,
    pub calls: Calls,
}

impl Drop for HttpMinter {
    fn drop(&mut self) {
        // Tests end inside the paused runtime, where a runtime may not be dropped blocking.
        if let Some(rt) = self.runtime.take().and_then(|rt| Arc::try_unwrap(rt).ok()) {
            rt.shutdown_background();
        }
    }
}

impl HttpMinter {
    pub fn new(config: &Config, clock: TokioClock) -> Self {
        Self {
            clock,
            client: Arc::new(PlatformClient::new(config).unwrap()),
            runtime: Some(Arc::new(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap(),
            )),
            calls: Calls::default(),
        }
    }

    pub fn times(&self) -> Vec<f64> {
        self.calls.times()
    }
}

impl Minter for &HttpMinter {
    async fn mint(&self, _target: &Target, _cached: Option<&Entry>) -> Result<Minted> {
        self.calls.record(&self.clock);
        let runtime = self.runtime.clone().expect("present until drop");
        let (client, now) = (self.client.clone(), self.clock.now());
        tokio::task::spawn_blocking(move || runtime.block_on(client.fetch(|| now)))
            .await
            .unwrap()
    }
}

/// A config for a temp cache directory, platform at `platform_url`.
pub fn config(dir: &std::path::Path, platform_url: &str, extra: &[(&str, &str)]) -> Config {
    std::fs::create_dir_all(dir.join("configs")).unwrap();
    molecule_tests::write_secret(&dir.join("configs/.auth_token"), "bearer-xyz\n");
    let cache = dir.join("cache").display().to_string();
    let configs = dir.join("configs").display().to_string();
    let mut pairs: Vec<(String, String)> = vec![
        ("MOLECULE_TOKEN_CACHE_DIR".into(), cache),
        ("CONFIGS_DIR".into(), configs),
        ("PLATFORM_URL".into(), platform_url.into()),
        ("HOME".into(), dir.display().to_string()),
    ];
    pairs.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Config::load(|k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())).config
}

/// Handles to steer a running daemon.
pub struct Controls {
    pub stop: oneshot::Sender<()>,
    pub hup: mpsc::Sender<()>,
}

pub fn signals() -> (Signals, Controls) {
    let (stop, stop_rx) = oneshot::channel();
    let (hup, refresh_now) = mpsc::channel(1);
    (
        Signals {
            shutdown: Box::pin(async move {
                let _ = stop_rx.await;
            }),
            refresh_now,
        },
        Controls { stop, hup },
    )
}

/// Runs the daemon loop with `minter` while `driver` steers it; the driver must end by
/// stopping it. Returns the daemon's exit code.
pub async fn run_daemon<M: Minter>(
    config: &Config,
    clock: &TokioClock,
    minter: M,
    gh: Option<Gh>,
    signals: Signals,
    driver: impl std::future::Future<Output = ()>,
) -> u8 {
    let cli = Cli::parse_from(["gh-token-refresh"]);
    let deps = gh_token_refresh::Deps {
        clock: Arc::new(clock.clone()),
        dice: FixedDice(0.5),
        minter,
        alarm: clock.alarm(),
        gh,
        signals,
    };
    let daemon = gh_token_refresh::run(&cli, Arc::new(config.clone()), deps);
    let (code, ()) = tokio::join!(daemon, driver);
    code
}

/// Sleeps until `secs` of simulated time have passed since the clock started.
pub async fn until(clock: &TokioClock, secs: f64) {
    let target = Duration::from_secs_f64(secs);
    let now = clock.elapsed();
    if target > now {
        tokio::time::sleep(target - now).await;
    }
}

/// The daemon binary Cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_gh-token-refresh");

/// A sandbox for running the real binary: cache, configs, an env, a stderr log file.
pub struct Proc {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Proc {
    pub fn new(platform_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("configs")).unwrap();
        molecule_tests::write_secret(&dir.path().join("configs/.auth_token"), "bearer-xyz\n");
        let p = |rel: &str| dir.path().join(rel).display().to_string();
        let env = vec![
            ("HOME".into(), p("")),
            // The daemon runs nothing but gh, found on PATH: an empty bin/ means "no gh";
            // tests that want one put a fake there, or add /usr/bin for the real one.
            ("PATH".into(), p("bin")),
            ("MOLECULE_TOKEN_CACHE_DIR".into(), p("cache")),
            ("CONFIGS_DIR".into(), p("configs")),
            ("PLATFORM_URL".into(), platform_url.into()),
            ("MOLECULE_LOG".into(), "info".into()),
        ];
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        Self { dir, env }
    }

    pub fn set(&mut self, k: &str, v: &str) -> &mut Self {
        self.env.retain(|(n, _)| n != k);
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    pub fn command(&self, bin: &str, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(bin);
        c.args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Starts the daemon with stderr going to `log` (a file in the sandbox).
    pub fn spawn(&self, log: &str, args: &[&str]) -> std::process::Child {
        self.daemon_command(log, args).spawn().unwrap()
    }

    /// [`Proc::spawn`] under a guard that SIGKILLs and reaps it when dropped (also when the
    /// test panics), in its own process group.
    pub fn spawn_guarded(&self, log: &str, args: &[&str]) -> Guard {
        Guard::spawn(&mut self.daemon_command(log, args))
    }

    fn daemon_command(&self, log: &str, args: &[&str]) -> std::process::Command {
        let err = std::fs::File::create(self.path(log)).unwrap();
        let mut c = self.command(BIN, args);
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(err);
        c
    }

    /// The cache directory, created private (0700) as the daemon would.
    pub fn cache_dir(&self) -> std::path::PathBuf {
        let cache = self.path("cache");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
        cache
    }

    /// The parsed `daemon.status.json`, if there is a whole one.
    pub fn status(&self) -> Option<serde_json::Value> {
        let bytes = std::fs::read(self.path("cache/daemon.status.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.path(log)).unwrap_or_default()
    }

    pub fn cached_token(&self) -> Option<String> {
        let bytes = std::fs::read(self.path("cache/tokens.json")).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        v["entries"]["github.com"]["token"]
            .as_str()
            .map(str::to_owned)
    }
}

/// Polls `cond` every 20 ms for up to `secs`.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Sends `signal` (e.g. "TERM") to `child`.
pub fn signal(child: &std::process::Child, signal: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal}");
}

/// Waits for `child` to exit within `secs`; its exit code.
pub fn exit_within(child: &mut std::process::Child, secs: u64) -> Option<i32> {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if std::time::Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process did not exit within {secs}s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The first executable named `tool` on this test's PATH (children here get their own PATH).
pub fn which(tool: &str) -> Option<std::path::PathBuf> {
    let path = molecule_credential::config::process_env("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
