//! The refresh loop: prime, refresh on a schedule that respects expiry, back off on failure,
//! keep gh logged in, record every attempt in `daemon.status.json`.
//!
//! Everything the loop depends on is passed in: the clock, the dice, the minter, gh, and the
//! signals as values (a shutdown future and a refresh-now channel). The decisions about time
//! are the pure functions of [`molecule_credential::schedule`]; this module only sleeps.
//! Idle, the loop is parked in one `sleep`: no polling, no wakeups between scheduled events.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use molecule_credential::clock::{Clock, format_rfc3339};
use molecule_credential::config::Config;
use molecule_credential::platform::Minted;
use molecule_credential::route::{Target, refresh_targets};
use molecule_credential::schedule::{self, Dice, Outcome, Policy};
use molecule_credential::sources::{Begin, Broker, Refreshed, Source, source_name};
use molecule_credential::status::{Attempt, DaemonStatus, HostStatus, STATUS_VERSION};
use molecule_credential::store::{CacheDir, DaemonLock, Entry};
use molecule_credential::{Class, Error, Result, Secret};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::gh::{Gh, Login};

/// A scheduled refresh is skipped when another process fetched a fresh token this recently.
pub const SKIP_IF_NEWER_THAN: Duration = Duration::from_secs(60);
/// How often a waiter looks again while another process holds `refresh.lock`.
const LOCK_POLL: Duration = Duration::from_millis(100);

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
pub struct SourceMinter<'a> {
    source: Source,
    config: &'a Config,
    clock: &'a dyn Clock,
}

impl<'a> SourceMinter<'a> {
    /// A minter for `config`'s source.
    pub fn new(config: &'a Config, clock: &'a dyn Clock) -> Result<Self> {
        Ok(Self {
            source: Source::new(config)?,
            config,
            clock,
        })
    }
}

impl std::fmt::Debug for SourceMinter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceMinter")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Minter for SourceMinter<'_> {
    async fn mint(&self, target: &Target, cached: Option<&Entry>) -> Result<Minted> {
        self.source
            .mint(self.config, target, cached, || self.clock.now())
            .await
    }

    async fn revoke(&self, target: &Target, token: &Secret<String>) -> Result<bool> {
        match &self.source {
            Source::App(client) => {
                client
                    .revoke(&self.config.github_app.api_base(&target.host), token)
                    .await?;
                Ok(true)
            }
            // A platform token is the workspace's: other containers may hold it too.
            Source::Platform(_) => Ok(false),
        }
    }
}

/// Ends the daemon: SIGTERM or SIGINT, turned into a future by `main`.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the loop listens to besides its timer.
pub struct Signals {
    /// Resolves when the daemon should stop (after any in-flight write).
    pub shutdown: Shutdown,
    /// A message means "refresh now" (SIGHUP).
    pub refresh_now: mpsc::Receiver<()>,
}

/// How one host's attempt ended.
#[derive(Debug)]
enum HostResult {
    Refreshed(Refreshed),
    Failed(Error),
}

/// One cycle was interrupted by shutdown.
struct Interrupted;

/// The daemon's state.
pub struct Daemon<'a, M, D> {
    config: &'a Config,
    cache: CacheDir,
    clock: &'a dyn Clock,
    dice: D,
    minter: M,
    gh: Option<Gh>,
    policy: Policy,
    lock: Option<DaemonLock>,
    status: DaemonStatus,
    /// Consecutive cycles that did not end with a fresh token.
    failures: u32,
    /// Consecutive gh failures (excluding a missing gh).
    gh_failures: u32,
    /// The class of each host's last attempt, to warn once per change of state.
    last_class: BTreeMap<String, Class>,
}

/// Whether `--once` or the loop: decides whether a held daemon lock is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The long-running daemon: requires `daemon.lock`.
    Daemon,
    /// One forced refresh: runs beside a daemon, and writes status only if none runs.
    Once,
}

impl<'a, M: Minter, D: Dice> Daemon<'a, M, D> {
    /// Opens the cache and takes `daemon.lock` (for [`Mode::Daemon`]). `Ok(None)` when another
    /// daemon holds it.
    pub fn start(
        config: &'a Config,
        clock: &'a dyn Clock,
        dice: D,
        minter: M,
        gh: Option<Gh>,
        mode: Mode,
    ) -> Result<Option<Self>> {
        let cache = CacheDir::open(&config.cache_dir)?;
        let lock = cache.try_daemon_lock()?;
        if lock.is_none() && mode == Mode::Daemon {
            return Ok(None);
        }
        if lock.is_some() {
            let removed = cache.remove_stale_temp_files(Duration::from_secs(60));
            if removed > 0 {
                tracing::info!(removed, "removed temp files a killed writer left behind");
            }
        }
        if gh.is_some() {
            for host in config.hosts.iter().filter(|h| !crate::gh::supports_host(h)) {
                tracing::info!(host = %host, "gh does not accept a host with a port; git is served, gh is not logged in for it");
            }
        }
        let now = clock.now();
        Ok(Some(Self {
            config,
            cache,
            clock,
            dice,
            minter,
            gh,
            policy: Policy::from_config(config),
            lock,
            status: DaemonStatus {
                version: STATUS_VERSION,
                pid: std::process::id(),
                started_at: now,
                updated_at: now,
                next_wake_at: None,
                hosts: BTreeMap::new(),
            },
            failures: 0,
            gh_failures: 0,
            last_class: BTreeMap::new(),
        }))
    }

    /// The earliest expiry among usable cached tokens; `None` when any host has none (missing,
    /// suspect or inside the margin all mean "prime now").
    fn fresh_expiry(&self) -> Result<Option<OffsetDateTime>> {
        let doc = self.cache.read()?;
        let now = self.clock.now();
        let mut earliest: Option<OffsetDateTime> = None;
        for host in &self.config.hosts {
            match doc.entries.get(host) {
                Some(e) if e.is_fresh(now, self.policy.margin) => {
                    earliest = Some(earliest.map_or(e.expires_at, |t| t.min(e.expires_at)));
                }
                _ => return Ok(None),
            }
        }
        Ok(earliest)
    }

    /// Runs until shutdown. Refresh errors never end the loop.
    ///
    /// Two timers: the scheduled refresh, and — only while gh is behind the cache — a gh
    /// retry on the backoff series. A gh retry logs gh in again and touches nothing else: no
    /// platform call, no change to the refresh schedule.
    pub async fn run(mut self, signals: Signals) -> Result<u8> {
        let Signals {
            mut shutdown,
            mut refresh_now,
        } = signals;
        let now = self.clock.now();
        let first = schedule::initial_wait(&self.policy, self.fresh_expiry()?, now);
        if !first.is_zero() {
            tracing::info!(
                first_refresh_in_sec = first.as_secs(),
                "the cache is fresh; logging gh in with the cached tokens"
            );
            self.sync_gh().await;
        }
        let mut refresh_at = tokio::time::Instant::now() + first;
        let mut force = false;
        loop {
            let gh_retry_at = self.gh_retry_at();
            let wake_at = gh_retry_at.map_or(refresh_at, |g| g.min(refresh_at));
            self.status.next_wake_at = Some(
                self.clock.now()
                    + refresh_at.saturating_duration_since(tokio::time::Instant::now()),
            );
            self.write_status();
            tokio::select! {
                () = tokio::time::sleep_until(wake_at) => {}
                Some(()) = refresh_now.recv() => {
                    tracing::info!("SIGHUP: refreshing now");
                    force = true;
                }
                () = &mut shutdown => break,
            }
            if force || tokio::time::Instant::now() >= refresh_at {
                match self.cycle(force, &mut shutdown).await {
                    Ok(next) => refresh_at = tokio::time::Instant::now() + next,
                    Err(Interrupted) => break,
                }
                force = false;
            } else {
                self.sync_gh().await;
            }
        }
        tracing::info!("shutting down");
        if self.config.revoke_on_exit {
            self.revoke_all().await;
        }
        self.status.next_wake_at = None;
        self.write_status();
        Ok(0)
    }

    /// `--revoke-on-exit`: revokes every token this source minted that the cache still holds,
    /// and marks each suspect so no helper serves it again. Bounded: one call per token, each
    /// within the HTTP budget.
    async fn revoke_all(&mut self) {
        let Ok(doc) = self.cache.read() else { return };
        let source = source_name(self.config);
        for (key, entry) in doc
            .entries
            .iter()
            .filter(|(_, e)| e.source == source && !e.suspect)
        {
            let target = Target::from_key(key);
            match self.minter.revoke(&target, &entry.token).await {
                Ok(true) => {
                    let _ = self.cache.mark_suspect(key, &entry.token);
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
        (self.gh_failures > 0).then(|| {
            tokio::time::Instant::now()
                + schedule::backoff(&self.policy, self.gh_failures, &mut self.dice)
        })
    }

    /// `--once`: one forced refresh of every host, then gh. Returns the exit code of the first
    /// failed fetch (a fallback token does not make this succeed).
    pub async fn once(mut self, mut shutdown: Shutdown) -> u8 {
        let outcomes = match self.refresh_hosts(true, &mut shutdown).await {
            Ok(o) => o,
            Err(Interrupted) => return 143,
        };
        self.sync_gh().await;
        let code = outcomes
            .iter()
            .find_map(|(_, r)| match r {
                HostResult::Failed(e) => Some(e.class().exit_code()),
                HostResult::Refreshed(_) => None,
            })
            .unwrap_or(0);
        self.log_and_record(&outcomes, None);
        self.write_status();
        code
    }

    /// One refresh of every host, gh, the status file, and the wait until the next cycle.
    async fn cycle(
        &mut self,
        force: bool,
        shutdown: &mut Shutdown,
    ) -> Result<Duration, Interrupted> {
        let outcomes = self.refresh_hosts(force, shutdown).await?;
        self.sync_gh().await;
        let now = self.clock.now();
        let outcome = self.summarise(&outcomes, now);
        if matches!(outcome, Outcome::Fresh { .. }) {
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
        }
        let wait = schedule::next_wait(&self.policy, outcome, self.failures, now, &mut self.dice);
        self.log_and_record(&outcomes, Some(now + wait));
        Ok(wait)
    }

    /// The schedule's view of a cycle: the first failure if any, else fresh or stale by the
    /// earliest expiry.
    fn summarise(&self, outcomes: &[(String, HostResult)], now: OffsetDateTime) -> Outcome {
        let held = self.fresh_or_usable_expiry(now);
        let mut earliest: Option<OffsetDateTime> = None;
        for (_, result) in outcomes {
            match result {
                HostResult::Failed(e) => {
                    return Outcome::Failed {
                        class: e.class(),
                        retry_after: e.retry_after(),
                        holding: held,
                    };
                }
                HostResult::Refreshed(r) => {
                    let at = entry_of(r).expires_at;
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

    /// The earliest expiry of the still-usable tokens the cache holds.
    fn fresh_or_usable_expiry(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let doc = self.cache.read().ok()?;
        self.config
            .hosts
            .iter()
            .filter_map(|h| doc.entries.get(h))
            .filter(|e| e.is_usable(now))
            .map(|e| e.expires_at)
            .min()
    }

    async fn refresh_hosts(
        &mut self,
        force: bool,
        shutdown: &mut Shutdown,
    ) -> Result<Vec<(String, HostResult)>, Interrupted> {
        let doc = self.cache.read().unwrap_or_default();
        let targets = refresh_targets(self.config, &doc);
        let mut outcomes = Vec::with_capacity(targets.len());
        for target in &targets {
            let cached = doc.entries.get(&target.key());
            let result = match self.refresh_host(target, cached, force, shutdown).await? {
                Ok(r) => HostResult::Refreshed(r),
                Err(e) => HostResult::Failed(e),
            };
            outcomes.push((target.key(), result));
        }
        Ok(outcomes)
    }

    /// One host: take `refresh.lock` without blocking the loop, mint (abandoned on shutdown),
    /// then write under compare-and-swap (never abandoned once started).
    async fn refresh_host(
        &self,
        target: &Target,
        cached: Option<&Entry>,
        force: bool,
        shutdown: &mut Shutdown,
    ) -> Result<Result<Refreshed>, Interrupted> {
        let host = target.key();
        let host = host.as_str();
        let broker = Broker::new(self.config, &self.cache, self.clock);
        let skip = if force {
            None
        } else {
            Some(SKIP_IF_NEWER_THAN)
        };
        let deadline = tokio::time::Instant::now() + broker.lock_wait();
        let permit = loop {
            match broker.try_begin_refresh(host, skip) {
                Err(e) => return Ok(Err(e)),
                Ok(Begin::AlreadyFresh(e)) => return Ok(Ok(Refreshed::AlreadyFresh(e))),
                Ok(Begin::Permit(p)) => break p,
                Ok(Begin::Busy) if tokio::time::Instant::now() < deadline => {
                    tokio::select! {
                        () = tokio::time::sleep(LOCK_POLL) => {}
                        () = &mut *shutdown => return Err(Interrupted),
                    }
                }
                Ok(Begin::Busy) => {
                    return Ok(Err(Error::new(
                        Class::Transient,
                        "another process held refresh.lock for longer than a whole platform call",
                    )));
                }
            }
        };
        let minted = tokio::select! {
            m = self.minter.mint(target, cached) => m,
            () = &mut *shutdown => return Err(Interrupted),
        };
        Ok(minted.and_then(|m| permit.complete(source_name(self.config), m)))
    }

    /// Logs gh in with whatever usable token the cache holds for each host.
    async fn sync_gh(&mut self) {
        let Some(gh) = self.gh.as_mut() else { return };
        let Ok(doc) = self.cache.read() else { return };
        let now = self.clock.now();
        let mut failed = false;
        for host in self
            .config
            .hosts
            .iter()
            .filter(|h| crate::gh::supports_host(h))
        {
            let Some(entry) = doc.entries.get(host).filter(|e| e.is_usable(now)) else {
                continue;
            };
            let was_missing = gh.is_missing();
            let result = gh.ensure(host, &entry.token).await;
            let attempt = Attempt {
                at: self.clock.now(),
                class: result.as_ref().map_or_else(Error::class, |_| Class::Ok),
                http_status: None,
                message: result.as_ref().err().map(ToString::to_string),
            };
            match &result {
                Ok(Login::LoggedIn) => {
                    tracing::info!(host = %host, token_len = entry.token.len(), "gh logged in with the new token")
                }
                Ok(Login::AlreadyCurrent) => {
                    tracing::debug!(host = %host, "gh already holds the current token")
                }
                Err(e) if e.class() == Class::NotConfigured => {
                    if !was_missing {
                        tracing::warn!(error = %e, "gh is not installed; keeping the token cache fresh for git only");
                    }
                }
                Err(e) => {
                    failed = true;
                    let previous = self
                        .status
                        .hosts
                        .get(host)
                        .and_then(|h| h.gh_login.as_ref())
                        .map(|a| a.class);
                    if previous == Some(e.class()) {
                        tracing::info!(host = %host, class = %e.class(), error = %e, "gh login failed again");
                    } else {
                        tracing::warn!(host = %host, class = %e.class(), error = %e, "gh login failed; git is unaffected, retrying gh on the backoff series");
                    }
                }
            }
            self.status.hosts.entry(host.clone()).or_default().gh_login = Some(attempt);
        }
        self.gh_failures = if failed {
            self.gh_failures.saturating_add(1)
        } else {
            0
        };
    }

    fn log_and_record(
        &mut self,
        outcomes: &[(String, HostResult)],
        next_wake: Option<OffsetDateTime>,
    ) {
        let now = self.clock.now();
        let next = next_wake
            .map(format_rfc3339)
            .unwrap_or_else(|| "none".to_owned());
        for (host, result) in outcomes {
            let hs: &mut HostStatus = self.status.hosts.entry(host.clone()).or_default();
            match result {
                HostResult::Refreshed(r) => {
                    let e = entry_of(r);
                    let (status, note) = match r {
                        Refreshed::Minted {
                            status,
                            written: true,
                            ..
                        } => (Some(*status), "token refreshed"),
                        Refreshed::Minted {
                            status,
                            written: false,
                            ..
                        } => (Some(*status), "a later token was already cached"),
                        Refreshed::AlreadyFresh(_) => {
                            (None, "another process refreshed moments ago")
                        }
                    };
                    let recovered = self.last_class.get(host).is_some_and(|c| *c != Class::Ok);
                    tracing::info!(
                        host = %host,
                        class = "ok",
                        http_status = status,
                        expires_at = %format_rfc3339(e.expires_at),
                        next_wake = %next,
                        recovered,
                        "{note}"
                    );
                    hs.last_attempt = Some(Attempt {
                        at: now,
                        class: Class::Ok,
                        http_status: status,
                        message: None,
                    });
                    hs.last_success_at = Some(now);
                    hs.consecutive_failures = 0;
                    hs.token_expires_at = Some(e.expires_at);
                    self.last_class.insert(host.clone(), Class::Ok);
                }
                HostResult::Failed(e) => {
                    let changed = self.last_class.get(host) != Some(&e.class());
                    if changed {
                        tracing::warn!(host = %host, class = %e.class(), http_status = e.status(), next_wake = %next, "refresh failed: {}", e.message());
                    } else {
                        tracing::info!(host = %host, class = %e.class(), http_status = e.status(), next_wake = %next, "refresh failed again: {}", e.message());
                    }
                    hs.last_attempt = Some(Attempt {
                        at: now,
                        class: e.class(),
                        http_status: e.status(),
                        message: Some(e.message().to_owned()),
                    });
                    hs.consecutive_failures = hs.consecutive_failures.saturating_add(1);
                    hs.token_expires_at =
                        self.cache.entry(host).ok().flatten().map(|x| x.expires_at);
                    self.last_class.insert(host.clone(), e.class());
                }
            }
        }
    }

    fn write_status(&mut self) {
        let Some(lock) = &self.lock else { return };
        self.status.updated_at = self.clock.now();
        if let Err(e) = self.status.write(&self.cache, lock) {
            tracing::warn!(error = %e, "could not write daemon.status.json");
        }
    }
}

fn entry_of(r: &Refreshed) -> &Entry {
    match r {
        Refreshed::AlreadyFresh(e) | Refreshed::Minted { entry: e, .. } => e,
    }
}
