//! The refresh loop: prime, refresh on a schedule that respects expiry, back off on failure,
//! keep gh logged in, record every attempt in `daemon.status.json`.
//!
//! Everything the loop depends on is passed in: the clock, the dice, the minter, the alarm,
//! gh, and the signals as values (a shutdown future and a refresh-now channel). The decisions
//! about time are the pure functions of [`molecule_credential::schedule`]; this module sleeps
//! and acts.
//!
//! - Idle, the loop is parked in one `select!`: a monotonic timer for the schedule and a
//!   wall-clock [`Alarm`] at the moment the held token enters the margin. No polling.
//! - The alarm also fires when the wall clock is changed (a resume from suspend, a snapshot
//!   restore, an NTP step): the loop then reads the wall clock and refreshes at once if a token
//!   is inside the margin or expired, instead of sleeping out a timer set before the pause.
//! - File work (lock waits, reads, fsyncs) runs on blocking threads, so signals are answered
//!   while a lock holder is stuck; a mint or a lock wait is abandoned on shutdown, a cache
//!   write never is.
//! - The cache directory is watched ([`CacheWatch`]): whoever writes `tokens.json`, the sinks
//!   and the metrics follow within moments, and a token a server rejected (`erase`) is
//!   replaced at once. After every wake, before anything else, the cache as it is now is
//!   published ([`Daemon::publish`]): sinks, the metrics text (textfile and listener). And
//!   while a refresh waits (for `refresh.lock`, for the source), the held token's expiry is
//!   watched too (`meanwhile`): a token that expires while a refresh hangs is out of every
//!   sink at once, not when the call gives up.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use molecule_credential::alarm::Alarm;
use molecule_credential::atomic::{self, Replace};
use molecule_credential::broker::{Begin, Broker, Refreshed, Wait, Want};
use molecule_credential::cache::{Document, Entry};
use molecule_credential::clock::{Clock, format_rfc3339};
use molecule_credential::config::Config;
use molecule_credential::fallback::fallback_token;
use molecule_credential::route::{Target, refresh_targets};
use molecule_credential::schedule::{self, Dice, Outcome, Policy};
use molecule_credential::source::{self, Source};
use molecule_credential::status::{DaemonStatus, Recorded};
use molecule_credential::store::{CacheDir, DaemonLock};
use molecule_credential::token::Minted;
use molecule_credential::{Class, Error, Result, Secret};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};

use crate::gh::Gh;
use crate::metrics::{self, Build};
use crate::sinks::Sinks;
use crate::watch::CacheWatch;

/// Where tokens come from.
pub trait Minter {
    /// Mints one token for `target`; `cached` is what the cache holds for it.
    fn mint(&self, target: &Target, cached: Option<&Entry>)
    -> impl Future<Output = Result<Minted>>;

    /// Revokes `token` if this source can (the `github-app` source). `Ok(false)`: it cannot.
    fn revoke(
        &self,
        _target: &Target,
        _token: &Secret<String>,
    ) -> impl Future<Output = Result<bool>> {
        async { Ok(false) }
    }
}

/// The configured source (platform or GitHub App), through one long-lived client.
pub struct SourceMinter {
    source: Source,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
}

impl SourceMinter {
    /// A minter for `config`'s source.
    pub fn new(config: Arc<Config>, clock: Arc<dyn Clock>) -> Result<Self> {
        Ok(Self {
            source: Source::new(&config)?,
            config,
            clock,
        })
    }
}

impl std::fmt::Debug for SourceMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceMinter")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Minter for SourceMinter {
    async fn mint(&self, target: &Target, cached: Option<&Entry>) -> Result<Minted> {
        self.source
            .mint(&self.config, target, cached, || self.clock.now())
            .await
    }

    async fn revoke(&self, target: &Target, token: &Secret<String>) -> Result<bool> {
        self.source.revoke(&self.config, target, token).await
    }
}

/// Ends the daemon: SIGTERM or SIGINT, turned into a future by `main`.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the loop listens to besides its timers.
pub struct Signals {
    /// Resolves when the daemon should stop (after any in-flight write).
    pub shutdown: Shutdown,
    /// A message means "refresh now" (SIGHUP).
    pub refresh_now: mpsc::Receiver<()>,
}

/// One cycle was interrupted by shutdown.
struct Interrupted;

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Woke {
    /// The monotonic timer: the schedule or a gh retry.
    Timer,
    /// The wall-clock alarm: a token's margin reached, or the clock changed.
    WallClock,
    /// SIGHUP.
    RefreshNow,
    /// `tokens.json` changed (another process, or our own write).
    CacheChanged,
}

/// Runs `work` on a blocking thread: the one way the daemon touches its files.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Whether `--once` or the loop: decides whether a held daemon lock is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The long-running daemon: requires `daemon.lock`.
    Daemon,
    /// One forced refresh: runs beside a daemon, and writes status only if none runs.
    Once,
}

/// The daemon's state.
pub struct Daemon<M, D, A> {
    config: Arc<Config>,
    broker: Broker,
    clock: Arc<dyn Clock>,
    dice: D,
    minter: M,
    alarm: A,
    gh: Option<Gh>,
    policy: Policy,
    lock: Option<Arc<DaemonLock>>,
    status: DaemonStatus,
    /// Consecutive cycles that did not end with a fresh token.
    failures: u32,
    /// The sinks and the metrics, published after every wake.
    outputs: Outputs,
    /// The cache directory's watch (daemon mode only; `None` if inotify is unavailable).
    watch: Option<CacheWatch>,
}

/// What the daemon publishes: the token files and the metrics.
struct Outputs {
    /// The token files kept fresh (daemon mode only; empty with `--once`).
    sinks: Sinks,
    /// The latest metrics text, for the listener and the textfile.
    metrics: watch::Sender<String>,
    /// The last textfile write failed (said once per change of state).
    textfile_failing: bool,
}

/// What publishing needs, borrowed field by field from the daemon, so that it can run while
/// a mint (which borrows the minter) is in flight.
struct Publisher<'a> {
    outputs: &'a mut Outputs,
    status: &'a mut DaemonStatus,
    config: &'a Arc<Config>,
    clock: &'a Arc<dyn Clock>,
    cache: &'a CacheDir,
}

/// What this build says about itself in `molecule_build_info`.
pub const BUILD: Build = Build {
    version: env!("CARGO_PKG_VERSION"),
    commit: molecule_credential::version::COMMIT,
};

impl<M: Minter, D: Dice, A: Alarm> Daemon<M, D, A> {
    /// Opens the cache, checks its files and takes `daemon.lock` (for [`Mode::Daemon`]).
    /// `Ok(None)` when another daemon holds it.
    pub async fn start(
        config: Arc<Config>,
        clock: Arc<dyn Clock>,
        dice: D,
        minter: M,
        alarm: A,
        gh: Option<Gh>,
        mode: Mode,
    ) -> Result<Option<Self>> {
        let dir = config.cache_dir.clone();
        let (cache, lock) = blocking(move || -> Result<(CacheDir, Option<DaemonLock>)> {
            let cache = CacheDir::open(&dir)?;
            // A FIFO or directory where a cache file belongs would fail every wake: say so now.
            cache.check_files()?;
            let lock = cache.try_daemon_lock()?;
            if lock.is_some() {
                let removed = cache.remove_stale_temp_files(Duration::from_secs(60));
                if removed > 0 {
                    tracing::info!(removed, "removed temp files a killed writer left behind");
                }
            }
            Ok((cache, lock))
        })
        .await?;
        if lock.is_none() && mode == Mode::Daemon {
            return Ok(None);
        }
        if gh.is_some() {
            for host in config.hosts.iter().filter(|h| !crate::gh::supports_host(h)) {
                tracing::info!(host = %host, "gh does not accept a host with a port; git is served, gh is not logged in for it");
            }
        }
        let now = clock.now();
        let (sinks, watch) = match mode {
            Mode::Daemon => (Sinks::new(&config), Self::watch_cache(&config)),
            Mode::Once => (Sinks::default(), None),
        };
        Ok(Some(Self {
            outputs: Outputs {
                sinks,
                metrics: watch::Sender::new(String::new()),
                textfile_failing: false,
            },
            watch,
            broker: Broker::new(config.clone(), cache, clock.clone()),
            policy: Policy::from_config(&config),
            config,
            clock,
            dice,
            minter,
            alarm,
            gh,
            lock: lock.map(Arc::new),
            status: DaemonStatus::new(std::process::id(), now),
            failures: 0,
        }))
    }

    /// The watch on the cache directory; without one (no inotify), sinks and metrics follow
    /// the daemon's own events only.
    fn watch_cache(config: &Config) -> Option<CacheWatch> {
        match CacheWatch::new(&config.cache_dir) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    "cannot watch {} ({e}): tokens other processes write reach the sinks and metrics only at this daemon's next wake",
                    config.cache_dir.display()
                );
                None
            }
        }
    }

    /// The latest metrics text, for the listener.
    pub fn metrics(&self) -> watch::Receiver<String> {
        self.outputs.metrics.subscribe()
    }

    /// Reads `tokens.json` on a blocking thread.
    async fn read(&self) -> Result<Document> {
        let cache = self.broker.cache().clone();
        blocking(move || cache.read()).await
    }

    /// The earliest expiry among the configured hosts' tokens when every one is fresh; `None`
    /// when any is missing, suspect or inside the margin.
    fn fresh_expiry(&self, doc: &Document, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let mut earliest: Option<OffsetDateTime> = None;
        for host in &self.config.hosts {
            match doc.entries.get(host) {
                Some(e) if e.is_fresh(now, self.policy.margin) => {
                    earliest = Some(earliest.map_or(e.expires_at, |t| t.min(e.expires_at)));
                }
                _ => return None,
            }
        }
        earliest
    }

    /// When the wall clock next says "refresh": the first moment a held token enters the
    /// margin, or, for one already inside it, the moment it expires. `None` with no usable
    /// token (the backoff schedule is all there is then).
    fn wall_deadline(&self, doc: &Document, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.config
            .hosts
            .iter()
            .filter_map(|h| doc.entries.get(h))
            .filter(|e| e.is_usable(now))
            .map(|e| {
                let margin_at = e.expires_at - self.policy.margin;
                if margin_at > now {
                    margin_at
                } else {
                    e.expires_at
                }
            })
            .min()
    }

    /// Runs until shutdown. Refresh errors never end the loop.
    ///
    /// Four wake-ups: the scheduled refresh, the wall-clock alarm, a change of `tokens.json`,
    /// and — only while gh is behind the cache — a gh retry on the backoff series. A gh retry
    /// logs gh in again and touches nothing else: no platform call, no change to the refresh
    /// schedule.
    pub async fn run(mut self, signals: Signals) -> Result<u8> {
        let Signals {
            mut shutdown,
            mut refresh_now,
        } = signals;
        let doc = self.read().await?;
        let now = self.clock.now();
        let first = schedule::initial_wait(&self.policy, self.fresh_expiry(&doc, now), now);
        if !first.is_zero() {
            tracing::info!(
                first_refresh_in_sec = first.as_secs(),
                "the cache is fresh; logging gh in with the cached tokens"
            );
            self.sync_gh(&doc).await;
        }
        let mut refresh_at = tokio::time::Instant::now() + first;
        loop {
            let gh_retry_at = self.gh_retry_at();
            let wake_at = gh_retry_at.map_or(refresh_at, |g| g.min(refresh_at));
            let now = self.clock.now();
            self.status.next_wake_at =
                Some(now + refresh_at.saturating_duration_since(tokio::time::Instant::now()));
            let doc = self.read().await.unwrap_or_default();
            // The status first: a health check reading it next to the new token sees the
            // attempt that brought it.
            self.write_status().await;
            if self.publish(&doc).await {
                self.write_status().await;
            }
            let deadline = self.wall_deadline(&doc, now);
            let Some(woke) = self
                .wait(wake_at, deadline, &mut refresh_now, &mut shutdown)
                .await
            else {
                break;
            };
            // Whatever woke us, the cache as it is now reaches the sinks and the metrics
            // first: a token that expired is out of every sink before a refresh that may hang.
            let doc = self.read().await.unwrap_or_default();
            if self.publish(&doc).await {
                self.write_status().await;
            }
            if self.due(woke, &doc, refresh_at) {
                match self.cycle(woke == Woke::RefreshNow, &mut shutdown).await {
                    Ok(next) => refresh_at = tokio::time::Instant::now() + next,
                    Err(Interrupted) => break,
                }
            } else if matches!(woke, Woke::Timer | Woke::CacheChanged) {
                self.sync_gh(&doc).await;
            }
        }
        tracing::info!("shutting down");
        if self.config.revoke_on_exit {
            self.revoke_all().await;
        }
        self.status.next_wake_at = None;
        let doc = self.read().await.unwrap_or_default();
        self.publish(&doc).await;
        self.write_status().await;
        Ok(0)
    }

    /// Parks until the next event; `None` on shutdown.
    async fn wait(
        &mut self,
        wake_at: tokio::time::Instant,
        deadline: Option<OffsetDateTime>,
        refresh_now: &mut mpsc::Receiver<()>,
        shutdown: &mut Shutdown,
    ) -> Option<Woke> {
        let (alarm, watch) = (&mut self.alarm, &mut self.watch);
        let woke = tokio::select! {
            () = tokio::time::sleep_until(wake_at) => Ok(Woke::Timer),
            () = async {
                match deadline {
                    Some(at) => alarm.wait_until(at).await,
                    None => std::future::pending().await,
                }
            } => Ok(Woke::WallClock),
            Some(()) = refresh_now.recv() => Ok(Woke::RefreshNow),
            changed = async {
                match watch.as_mut() {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            } => changed.map(|()| Woke::CacheChanged),
            () = &mut *shutdown => return None,
        };
        Some(woke.unwrap_or_else(|e| {
            tracing::warn!("the cache directory's watch failed ({e}); going on without it");
            self.watch = None;
            Woke::CacheChanged
        }))
    }

    /// Whether a wake calls for a refresh.
    fn due(&self, woke: Woke, doc: &Document, refresh_at: tokio::time::Instant) -> bool {
        match woke {
            Woke::RefreshNow => {
                tracing::info!("SIGHUP: refreshing now");
                true
            }
            Woke::Timer => tokio::time::Instant::now() >= refresh_at,
            Woke::WallClock => {
                // Fired at a token's margin, or because the clock was changed: what matters is
                // what the wall clock says now.
                let due = self.fresh_expiry(doc, self.clock.now()).is_none();
                if due && tokio::time::Instant::now() < refresh_at {
                    tracing::info!(
                        "by the wall clock a token is inside the margin or expired (a suspend, a snapshot restore or a clock change); refreshing now"
                    );
                }
                due
            }
            // Only a rejection: a token another process wrote (or we did) needs nothing, and
            // a token inside the margin is the schedule's business (re-minting it on every
            // write would loop against a platform that re-mints only under 5 minutes).
            Woke::CacheChanged => {
                let rejected = doc.entries.iter().any(|(key, e)| {
                    e.suspect && self.config.hosts.contains(&Target::from_key(key).host)
                });
                if rejected {
                    tracing::info!("a server rejected the cached token; refreshing now");
                }
                rejected
            }
        }
    }

    /// Brings the sinks and the metrics (the listener's text, the textfile) to what `doc`
    /// says now. Cheap when nothing changed: a sink already holding the right token is not
    /// rewritten, the textfile only when its text changed.
    /// True when a sink was written or removed (the status file has news).
    async fn publish(&mut self, doc: &Document) -> bool {
        let now = self.clock.now();
        self.outputs
            .publish(&self.config, now, &mut self.status, doc)
            .await
    }

    /// `--revoke-on-exit`: revokes every token this source minted that the cache still holds,
    /// and marks each suspect so no helper serves it again. Bounded: one call per token, each
    /// within the HTTP budget.
    async fn revoke_all(&mut self) {
        let Ok(doc) = self.read().await else { return };
        let source = source::name(&self.config);
        for (key, entry) in doc
            .entries
            .into_iter()
            .filter(|(_, e)| e.source == source && !e.suspect)
        {
            let target = Target::from_key(&key);
            match self.minter.revoke(&target, &entry.token).await {
                Ok(true) => {
                    let cache = self.broker.cache().clone();
                    let (k, token) = (key.clone(), entry.token.clone());
                    let _ = blocking(move || cache.mark_suspect(&k, &token)).await;
                    tracing::info!(host = %key, "revoked the token at shutdown");
                }
                Ok(false) => {
                    tracing::info!(
                        "the platform's tokens are shared with other holders: not revoking them"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(host = %key, class = %e.class(), "could not revoke the token: {e}")
                }
            }
        }
    }

    /// When to try gh again, while its last login failed.
    fn gh_retry_at(&mut self) -> Option<tokio::time::Instant> {
        let failures = self.gh.as_ref().map_or(0, Gh::failures);
        (failures > 0).then(|| {
            tokio::time::Instant::now()
                + schedule::backoff(
                    &self.policy,
                    failures,
                    None,
                    self.clock.now(),
                    &mut self.dice,
                )
        })
    }

    /// `--once`: one forced refresh of every host, then gh. Returns the exit code of the first
    /// failed fetch (a fallback token does not make this succeed).
    pub async fn once(mut self, mut shutdown: Shutdown) -> u8 {
        let outcomes = match self.refresh_hosts(true, &mut shutdown).await {
            Ok(o) => o,
            Err(Interrupted) => return 143,
        };
        let doc = self.read().await.unwrap_or_default();
        self.sync_gh(&doc).await;
        let code = outcomes
            .iter()
            .find_map(|(_, r)| r.as_ref().err().map(|e| e.class().exit_code()))
            .unwrap_or(0);
        self.log_and_record(&outcomes, &doc, None);
        self.write_status().await;
        code
    }

    /// One refresh of every host, gh, the status file, and the wait until the next cycle.
    async fn cycle(
        &mut self,
        force: bool,
        shutdown: &mut Shutdown,
    ) -> Result<Duration, Interrupted> {
        let outcomes = self.refresh_hosts(force, shutdown).await?;
        let doc = self.read().await.unwrap_or_default();
        self.sync_gh(&doc).await;
        let now = self.clock.now();
        let outcome = self.summarise(&outcomes, &doc, now);
        if matches!(outcome, Outcome::Fresh { .. }) {
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
        }
        let wait = schedule::next_wait(&self.policy, outcome, self.failures, now, &mut self.dice);
        self.log_and_record(&outcomes, &doc, Some(now + wait));
        Ok(wait)
    }

    /// The schedule's view of a cycle: the first failure if any, else fresh or stale by the
    /// earliest expiry.
    fn summarise(
        &self,
        outcomes: &[(String, Result<Refreshed>)],
        doc: &Document,
        now: OffsetDateTime,
    ) -> Outcome {
        // The earliest expiry of the still-usable tokens the cache holds.
        let held = self
            .config
            .hosts
            .iter()
            .filter_map(|h| doc.entries.get(h))
            .filter(|e| e.is_usable(now))
            .map(|e| e.expires_at)
            .min();
        let mut earliest: Option<OffsetDateTime> = None;
        for (_, result) in outcomes {
            match result {
                Err(e) => {
                    return Outcome::Failed {
                        class: e.class(),
                        retry_after: e.retry_after(),
                        holding: held,
                    };
                }
                Ok(r) => {
                    let at = r.entry().expires_at;
                    earliest = Some(earliest.map_or(at, |t| t.min(at)));
                }
            }
        }
        match earliest {
            Some(at) if now + self.policy.margin < at => Outcome::Fresh { expires_at: at },
            Some(at) => Outcome::Stale { expires_at: at },
            None => Outcome::Failed {
                class: Class::LocalConfig,
                retry_after: None,
                holding: held,
            },
        }
    }

    async fn refresh_hosts(
        &mut self,
        force: bool,
        shutdown: &mut Shutdown,
    ) -> Result<Vec<(String, Result<Refreshed>)>, Interrupted> {
        let doc = self.read().await.unwrap_or_default();
        let targets = refresh_targets(&self.config, &doc);
        // When the first token still held dies: a mint that hangs past it must not keep it
        // in the sinks.
        let now = self.clock.now();
        let expiry = doc
            .entries
            .values()
            .filter(|e| e.is_usable(now))
            .map(|e| e.expires_at)
            .min();
        let mut outcomes = Vec::with_capacity(targets.len());
        for target in &targets {
            let cached = doc.entries.get(&target.key());
            let started = tokio::time::Instant::now();
            let result = self
                .refresh_host(target, cached, force, expiry, shutdown)
                .await?;
            let class = match &result {
                Ok(Refreshed::AlreadyFresh(_)) => None,
                Ok(Refreshed::Minted(_)) => Some(Class::Ok),
                Err(e) => Some(e.class()),
            };
            if let Some(class) = class {
                let took = started.elapsed().as_secs_f64();
                self.status
                    .counters
                    .refresh_attempt(&target.host, class, took);
            }
            outcomes.push((target.key(), result));
        }
        Ok(outcomes)
    }

    /// One host, by the broker's one path: begin (a bounded wait for `refresh.lock`, abandoned
    /// on shutdown), mint (abandoned on shutdown), complete (a compare-and-swap write, never
    /// abandoned once started). While it waits, a held token reaching its `expiry` is
    /// published at once (`meanwhile`).
    async fn refresh_host(
        &mut self,
        target: &Target,
        cached: Option<&Entry>,
        force: bool,
        expiry: Option<OffsetDateTime>,
        shutdown: &mut Shutdown,
    ) -> Result<Result<Refreshed>, Interrupted> {
        let want = if force {
            Want::New
        } else {
            Want::FetchedWithin(schedule::skip_window(&self.policy))
        };
        let Self {
            broker,
            minter,
            alarm,
            outputs,
            status,
            config,
            clock,
            ..
        } = self;
        let mut publisher = Publisher {
            outputs,
            status,
            config,
            clock,
            cache: broker.cache(),
        };
        let (lock, key) = (broker.clone(), target.key());
        let begin = meanwhile(
            blocking(move || lock.begin(&key, want, Wait::Budget)),
            expiry,
            alarm,
            shutdown,
            &mut publisher,
        )
        .await?;
        let permit = match begin {
            Err(e) => return Ok(Err(e)),
            Ok(Begin::Cached(e)) => return Ok(Ok(Refreshed::AlreadyFresh(e))),
            Ok(Begin::Busy) => {
                return Ok(Err(Error::new(
                    Class::Transient,
                    "another process is minting",
                )));
            }
            Ok(Begin::Mint(permit)) => permit,
        };
        let minted = meanwhile(
            minter.mint(target, cached),
            expiry,
            alarm,
            shutdown,
            &mut publisher,
        )
        .await?;
        Ok(match minted {
            Ok(minted) => blocking(move || permit.complete(minted))
                .await
                .into_refreshed(),
            Err(e) => Err(e),
        })
    }

    /// Logs gh in with whatever usable token the cache holds for each host.
    async fn sync_gh(&mut self, doc: &Document) {
        let Some(gh) = self.gh.as_mut() else { return };
        for synced in gh.sync(&self.config.hosts, doc, self.clock.as_ref()).await {
            if synced.ran {
                let ok = synced.attempt.class == Class::Ok;
                let counts = self.status.counters.gh_login.entry(synced.host.clone());
                counts.or_default().add(ok);
            }
            self.status.record_gh_login(&synced.host, synced.attempt);
        }
    }

    fn log_and_record(
        &mut self,
        outcomes: &[(String, Result<Refreshed>)],
        doc: &Document,
        next_wake: Option<OffsetDateTime>,
    ) {
        let now = self.clock.now();
        let next = next_wake
            .map(format_rfc3339)
            .unwrap_or_else(|| "none".to_owned());
        for (host, result) in outcomes {
            match result {
                Ok(r) => {
                    let (http_status, note) = match r {
                        Refreshed::Minted(done) => (
                            done.status,
                            match done.written {
                                Ok(false) => "a later token was already cached",
                                _ => "token refreshed",
                            },
                        ),
                        Refreshed::AlreadyFresh(_) => {
                            (None, "another process refreshed moments ago")
                        }
                    };
                    let expires_at = r.entry().expires_at;
                    let previous = self.status.record_refresh(
                        host,
                        &Recorded::Ok {
                            http_status,
                            expires_at,
                        },
                        now,
                    );
                    let recovered = previous.is_some_and(|c| c != Class::Ok);
                    tracing::info!(
                        host = %host,
                        class = "ok",
                        http_status,
                        expires_at = %format_rfc3339(expires_at),
                        next_wake = %next,
                        recovered,
                        "{note}"
                    );
                }
                Err(e) => {
                    let held_expiry = doc.entries.get(host).map(|x| x.expires_at);
                    let previous = self.status.record_refresh(
                        host,
                        &Recorded::Failed {
                            error: e,
                            held_expiry,
                        },
                        now,
                    );
                    if previous != Some(e.class()) {
                        tracing::warn!(host = %host, class = %e.class(), http_status = e.status(), next_wake = %next, "refresh failed: {}", e.message());
                    } else {
                        tracing::info!(host = %host, class = %e.class(), http_status = e.status(), next_wake = %next, "refresh failed again: {}", e.message());
                    }
                }
            }
        }
    }

    /// Writes `daemon.status.json` (only the holder of `daemon.lock` does), on a blocking
    /// thread.
    async fn write_status(&mut self) {
        let Some(lock) = self.lock.clone() else {
            return;
        };
        self.status.updated_at = self.clock.now();
        let (status, cache) = (self.status.clone(), self.broker.cache().clone());
        if let Err(e) = blocking(move || status.write(&cache, &lock)).await {
            tracing::warn!(error = %e, "could not write daemon.status.json");
        }
    }
}

impl Outputs {
    /// Brings the sinks and the metrics (the listener's text, the textfile) to what `doc`
    /// says now. Cheap when nothing changed: a sink already holding the right token is not
    /// rewritten, the textfile only when its text changed. True when a sink was written or
    /// removed.
    async fn publish(
        &mut self,
        config: &Arc<Config>,
        now: OffsetDateTime,
        status: &mut DaemonStatus,
        doc: &Document,
    ) -> bool {
        let mut sinks_changed = false;
        if !self.sinks.is_empty() {
            let (config, snapshot) = (config.clone(), doc.clone());
            let mut sinks = std::mem::take(&mut self.sinks);
            let (sinks, outcomes) = blocking(move || {
                let fallback = fallback_token(&config).unwrap_or_else(|e| {
                    tracing::debug!("no fallback token for the sinks: {e}");
                    None
                });
                let outcomes = sinks.update(&snapshot, fallback.as_ref(), now);
                (sinks, outcomes)
            })
            .await;
            self.sinks = sinks;
            sinks_changed = outcomes.success + outcomes.failure > 0;
            status.counters.sink_writes.merge(outcomes);
            status.sinks = self.sinks.statuses().collect();
        }
        let text = metrics::render(config, Some(status), doc, now, BUILD);
        let changed = self.metrics.send_if_modified(|old| {
            let changed = *old != text;
            if changed {
                *old = text;
            }
            changed
        });
        if let (true, Some(path)) = (changed, config.metrics_file.clone()) {
            let text = self.metrics.borrow().clone();
            let how = Replace {
                mode: 0o644,
                gid: None,
                sync_dir: false,
            };
            let written = blocking(move || atomic::replace(&path, text.as_bytes(), how)).await;
            match (written, self.textfile_failing) {
                (Ok(()), _) => self.textfile_failing = false,
                (Err(e), false) => {
                    tracing::warn!(
                        path = %config.metrics_file.as_deref().unwrap_or(Path::new("")).display(),
                        "cannot write the metrics textfile: {e}"
                    );
                    self.textfile_failing = true;
                }
                (Err(_), true) => {}
            }
        }
        sinks_changed
    }
}

impl Publisher<'_> {
    /// Publishes the cache as it is now.
    async fn publish(&mut self) {
        let cache = self.cache.clone();
        let doc = blocking(move || cache.read()).await.unwrap_or_default();
        self.outputs
            .publish(self.config, self.clock.now(), self.status, &doc)
            .await;
    }
}

/// Awaits `work` (a lock wait, a mint) while the wall clock goes on: when a held token
/// expires meanwhile (`expiry`), the cache as it is then is published at once, so a refresh
/// that hangs for its whole budget never leaves a dead token in a sink. `Err` on shutdown.
async fn meanwhile<T>(
    work: impl Future<Output = T>,
    mut expiry: Option<OffsetDateTime>,
    alarm: &mut impl Alarm,
    shutdown: &mut Shutdown,
    publisher: &mut Publisher<'_>,
) -> Result<T, Interrupted> {
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return Ok(out),
            () = &mut *shutdown => return Err(Interrupted),
            () = async {
                match expiry {
                    Some(at) => alarm.wait_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                publisher.publish().await;
                // The alarm also fires when the clock is changed: wait on if it is not time.
                if expiry.is_some_and(|at| publisher.clock.now() >= at) {
                    expiry = None;
                }
            }
        }
    }
}
