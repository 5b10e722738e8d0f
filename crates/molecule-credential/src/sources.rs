//! The token source order (DESIGN.md, "Token sources, in order"): the cache, then a
//! single-flight mint from the primary source, then — only when that fails — a still-valid
//! cached token (degraded) or the fallback token.
//!
//! Minting is passed in as a closure so that the helper (which builds an HTTP client only on a
//! miss) and the daemon (which keeps one) share this logic, and tests can count calls.

use std::time::Duration;

use time::OffsetDateTime;

use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Class, Error, Result};
use crate::fallback::{Fallback, fallback_token};
use crate::platform::Minted;
use crate::route::Target;
use crate::store::{CacheDir, Entry, RefreshLock};

/// The `source` name recorded in the cache for tokens from the configured primary source.
pub fn source_name(config: &Config) -> &'static str {
    match config.token_source {
        crate::config::TokenSourceKind::Platform => crate::store::SOURCE_PLATFORM,
        crate::config::TokenSourceKind::GithubApp => "github-app",
    }
}

/// The primary token source, built once per process that needs it.
#[derive(Debug)]
pub enum Source {
    /// The Molecule platform endpoint.
    Platform(crate::platform::PlatformClient),
    /// A GitHub App, minting directly (boxed: its key pair dwarfs the platform client).
    App(Box<crate::github_app::AppClient>),
}

impl Source {
    /// The source `config` selects. Building it costs an HTTP client (and for the App, reading
    /// its key): only on a miss, never on the helper's cache hit.
    pub fn new(config: &Config) -> Result<Self> {
        Ok(match config.token_source {
            crate::config::TokenSourceKind::Platform => {
                Source::Platform(crate::platform::PlatformClient::new(config)?)
            }
            crate::config::TokenSourceKind::GithubApp => {
                Source::App(Box::new(crate::github_app::AppClient::new(config)?))
            }
        })
    }

    /// Mints a token for `target`. `cached` is what the cache holds for it (its installation
    /// is remembered, so discovery runs once per owner).
    pub async fn mint(
        &self,
        config: &Config,
        target: &Target,
        cached: Option<&Entry>,
        now: impl Fn() -> OffsetDateTime,
    ) -> Result<Minted> {
        match self {
            Source::Platform(client) => client.fetch(now).await,
            Source::App(client) => {
                let api = config.github_app.api_base(&target.host);
                let installation = match crate::route::known_installation(config, target, cached)? {
                    Some(id) => id,
                    None => {
                        let owner = target
                            .owner
                            .as_deref()
                            .expect("only an owner's installation is discovered");
                        client.discover(&api, owner, &now).await?
                    }
                };
                client.mint(&api, installation, now).await
            }
        }
    }
}

/// Mints one token for `target` synchronously: builds the source and a single-threaded
/// runtime for this one call. For the helper's miss path and one-shot commands; the daemon
/// keeps its own [`Source`].
pub fn mint_blocking(
    config: &Config,
    target: &Target,
    cached: Option<&Entry>,
    clock: &dyn Clock,
) -> Result<Minted> {
    let source = Source::new(config)?;
    crate::block_on(source.mint(config, target, cached, || clock.now()))?
}

/// How a token was found.
#[derive(Debug)]
pub enum Served {
    /// From the cache or a fresh mint, with more than the margin left.
    Fresh(Entry),
    /// Inside the margin but not expired, because minting failed or is in progress elsewhere.
    Degraded {
        /// The cached entry.
        entry: Entry,
        /// Why no fresh token: the mint's error, or `None` when another process is minting.
        cause: Option<Error>,
    },
    /// The fallback token, because the primary source failed.
    Fallback {
        /// The token and its origin.
        fallback: Fallback,
        /// Why the primary source failed.
        cause: Error,
    },
}

/// The result of a forced or scheduled refresh.
#[derive(Debug)]
pub enum Refreshed {
    /// Another process refreshed moments ago; no call was made.
    AlreadyFresh(Entry),
    /// A call was made; `entry` is what the cache holds now.
    Minted {
        /// The cached entry after the compare-and-swap.
        entry: Entry,
        /// Whether our token was written (false: a later one was already there).
        written: bool,
        /// The mint's HTTP status.
        status: u16,
        /// False when the source gave no expiry.
        expiry_known: bool,
    },
}

/// Cache, lock and policy for one cache directory.
pub struct Broker<'a> {
    config: &'a Config,
    cache: &'a CacheDir,
    clock: &'a dyn Clock,
}

impl std::fmt::Debug for Broker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("cache", &self.cache.path())
            .finish_non_exhaustive()
    }
}

impl<'a> Broker<'a> {
    /// A broker over `cache` using `config`'s margin and budgets.
    pub fn new(config: &'a Config, cache: &'a CacheDir, clock: &'a dyn Clock) -> Self {
        Self {
            config,
            cache,
            clock,
        }
    }

    /// How long a process waits for another's mint: that mint's whole budget, plus slack for
    /// the write.
    pub fn lock_wait(&self) -> Duration {
        self.config.http_timeout + Duration::from_secs(2)
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// The whole source order for `key`. `Err` carries [`Class::Exhausted`] when every source
    /// failed, or the local error that stopped us from looking (insecure or corrupt cache).
    pub fn obtain(
        &self,
        key: &str,
        source: &str,
        mint: impl FnOnce() -> Result<Minted>,
    ) -> Result<Served> {
        let cached = self.cache.entry(key)?;
        let now = self.now();
        if let Some(e) = cached
            .as_ref()
            .filter(|e| e.is_fresh(now, self.config.margin))
        {
            return Ok(Served::Fresh(e.clone()));
        }
        let usable =
            cached.filter(|e| e.is_usable(now) && e.source != crate::store::SOURCE_FALLBACK);
        // With a usable token in hand we do not queue behind another minter: we serve it.
        let wait = if usable.is_some() {
            Duration::ZERO
        } else {
            self.lock_wait()
        };
        let lock = match self.cache.refresh_lock(wait) {
            Ok(lock) => lock,
            // A cache we can read but not lock (read-only, full): coordination is lost, but
            // git must still get a token. Mint without the lock; the write will fail the same
            // way and the token is served uncached.
            Err(e) => {
                tracing::warn!(error = %e, "cannot take refresh.lock; minting without single-flight");
                return self.mint_unlocked(key, source, usable, mint);
            }
        };
        let Some(lock) = lock else {
            return match usable {
                Some(entry) => Ok(Served::Degraded { entry, cause: None }),
                None => self.fall_back(Error::new(
                    Class::Transient,
                    format!(
                        "another process held refresh.lock for more than {}s",
                        wait.as_secs()
                    ),
                )),
            };
        };
        // Whoever held the lock before us may have refreshed already.
        if let Some(e) = self
            .cache
            .entry(key)?
            .filter(|e| e.is_fresh(self.now(), self.config.margin))
        {
            return Ok(Served::Fresh(e));
        }
        match mint() {
            Ok(m) => {
                let entry = self.store_minted(key, source, m);
                drop(lock);
                if entry.is_fresh(self.now(), self.config.margin) {
                    Ok(Served::Fresh(entry))
                } else {
                    // The source answered a token already inside the margin (the platform
                    // re-mints only under 5 minutes): still the best we have.
                    Ok(Served::Degraded { entry, cause: None })
                }
            }
            Err(cause) => {
                drop(lock);
                match usable {
                    Some(entry) => Ok(Served::Degraded {
                        entry,
                        cause: Some(cause),
                    }),
                    None => self.fall_back(cause),
                }
            }
        }
    }

    fn mint_unlocked(
        &self,
        key: &str,
        source: &str,
        usable: Option<Entry>,
        mint: impl FnOnce() -> Result<Minted>,
    ) -> Result<Served> {
        match mint() {
            Ok(m) => Ok(Served::Fresh(self.store_minted(key, source, m))),
            Err(cause) => match usable {
                Some(entry) => Ok(Served::Degraded {
                    entry,
                    cause: Some(cause),
                }),
                None => self.fall_back(cause),
            },
        }
    }

    /// Caches a minted token under compare-and-swap. If the cache cannot be written (disk
    /// full, read-only), the token is still good to serve now: log and carry on.
    fn store_minted(&self, key: &str, source: &str, m: Minted) -> Entry {
        let mut entry = Entry::new(m.token, m.expires_at, self.now(), source);
        entry.installation_id = m.installation_id;
        match self.cache.offer(key, entry.clone()) {
            Ok((held, _)) => held,
            Err(e) => {
                tracing::warn!(error = %e, "could not write the token cache; serving the new token uncached");
                entry
            }
        }
    }

    fn fall_back(&self, cause: Error) -> Result<Served> {
        match fallback_token(self.config) {
            Ok(Some(fallback)) => Ok(Served::Fallback { fallback, cause }),
            Ok(None) => Err(Error::new(
                Class::Exhausted,
                format!(
                    "no token: {cause}; no fallback token (GH_TOKEN, GITHUB_TOKEN or {})",
                    self.config.fallback_token_file.display()
                ),
            )),
            Err(fallback_error) => Err(Error::new(
                Class::Exhausted,
                format!("no token: {cause}; fallback unusable: {fallback_error}"),
            )),
        }
    }

    /// Refreshes `key` under the single-flight lock, waiting for it at most
    /// [`Broker::lock_wait`]. With `skip_if_newer_than`, a fresh entry fetched within that
    /// window (by another process) is kept and no call is made; without it the call is always
    /// made (`refresh`, `--once`). A failed mint leaves the cache as it was.
    pub fn refresh(
        &self,
        key: &str,
        source: &str,
        skip_if_newer_than: Option<Duration>,
        mint: impl FnOnce() -> Result<Minted>,
    ) -> Result<Refreshed> {
        let wait = self.lock_wait();
        let Some(lock) = self.cache.refresh_lock(wait)? else {
            return Err(busy(wait));
        };
        match self.begin_with(key, skip_if_newer_than, lock)? {
            Begin::AlreadyFresh(entry) => Ok(Refreshed::AlreadyFresh(entry)),
            Begin::Permit(permit) => permit.complete(source, mint()?),
            Begin::Busy => Err(busy(wait)),
        }
    }

    /// The first half of [`Broker::refresh`] without waiting: for callers that wait for the
    /// lock their own way (the daemon, which must stay responsive to signals meanwhile) and mint
    /// asynchronously between [`Broker::try_begin_refresh`] and [`RefreshPermit::complete`].
    pub fn try_begin_refresh(
        &self,
        key: &str,
        skip_if_newer_than: Option<Duration>,
    ) -> Result<Begin<'_>> {
        match self.cache.refresh_lock(Duration::ZERO)? {
            Some(lock) => self.begin_with(key, skip_if_newer_than, lock),
            None => Ok(Begin::Busy),
        }
    }

    fn begin_with(
        &self,
        key: &str,
        skip_if_newer_than: Option<Duration>,
        lock: RefreshLock,
    ) -> Result<Begin<'_>> {
        if let Some(window) = skip_if_newer_than {
            let now = self.now();
            if let Some(e) = self.cache.entry(key)?.filter(|e| {
                // A fetch "in the future" means the wall clock went back: recency cannot be
                // trusted, and the next fetch re-anchors expiry on the platform's Date.
                e.is_fresh(now, self.config.margin)
                    && e.fetched_at <= now
                    && e.fetched_at + window > now
            }) {
                return Ok(Begin::AlreadyFresh(e));
            }
        }
        Ok(Begin::Permit(RefreshPermit {
            broker: self,
            key: key.to_owned(),
            _lock: lock,
        }))
    }
}

fn busy(wait: Duration) -> Error {
    Error::new(
        Class::Transient,
        format!(
            "another process held refresh.lock for more than {}s",
            wait.as_secs()
        ),
    )
}

/// How a refresh can start.
#[derive(Debug)]
pub enum Begin<'a> {
    /// Another process refreshed moments ago.
    AlreadyFresh(Entry),
    /// Another process is minting right now.
    Busy,
    /// We hold `refresh.lock`: mint, then [`RefreshPermit::complete`].
    Permit(RefreshPermit<'a>),
}

/// The right to mint for one key: holds `refresh.lock` until completed or dropped.
#[derive(Debug)]
pub struct RefreshPermit<'a> {
    broker: &'a Broker<'a>,
    key: String,
    _lock: RefreshLock,
}

impl RefreshPermit<'_> {
    /// Offers the minted token to the cache (compare-and-swap) and releases the lock.
    pub fn complete(self, source: &str, minted: Minted) -> Result<Refreshed> {
        let Minted {
            token,
            expires_at,
            expiry_known,
            status,
            installation_id,
        } = minted;
        let mut entry = Entry::new(token, expires_at, self.broker.now(), source);
        entry.installation_id = installation_id;
        let (entry, written) = self.broker.cache.offer(&self.key, entry)?;
        Ok(Refreshed::Minted {
            entry,
            written,
            status,
            expiry_known,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_rfc3339;
    use crate::secret::Secret;
    use crate::store::SOURCE_PLATFORM;
    use std::cell::Cell;

    struct Fixed(OffsetDateTime);
    impl Clock for Fixed {
        fn now(&self) -> OffsetDateTime {
            self.0
        }
    }

    fn setup() -> (tempfile::TempDir, Config, CacheDir, Fixed) {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = Config::load(|_| None).config;
        config.cache_dir = tmp.path().join("cache");
        config.fallback_token_file = tmp.path().join("cache/fallback-token");
        let cache = CacheDir::open(&config.cache_dir).unwrap();
        (
            tmp,
            config,
            cache,
            Fixed(parse_rfc3339("2026-11-22T18:00:00Z").unwrap()),
        )
    }

    fn minted(token: &str, now: OffsetDateTime, mins: i64) -> Minted {
        Minted {
            token: Secret::new(token.to_owned()),
            expires_at: now + time::Duration::minutes(mins),
            expiry_known: true,
            status: 200,
            installation_id: None,
        }
    }

    fn put(cache: &CacheDir, token: &str, expires: OffsetDateTime) {
        cache
            .offer(
                "github.com",
                Entry::new(
                    Secret::new(token.into()),
                    expires,
                    expires - time::Duration::hours(1),
                    SOURCE_PLATFORM,
                ),
            )
            .unwrap();
    }

    #[test]
    fn fresh_cache_makes_no_call() {
        let (_t, config, cache, clock) = setup();
        put(&cache, "ghs_cached", clock.0 + time::Duration::minutes(30));
        let b = Broker::new(&config, &cache, &clock);
        let served = b
            .obtain("github.com", SOURCE_PLATFORM, || {
                panic!("no call on a fresh cache")
            })
            .unwrap();
        assert!(matches!(served, Served::Fresh(e) if e.token.eq_str("ghs_cached")));
    }

    #[test]
    fn miss_mints_and_caches() {
        let (_t, config, cache, clock) = setup();
        let b = Broker::new(&config, &cache, &clock);
        let calls = Cell::new(0);
        let served = b
            .obtain("github.com", SOURCE_PLATFORM, || {
                calls.set(calls.get() + 1);
                Ok(minted("ghs_new", clock.0, 60))
            })
            .unwrap();
        assert!(matches!(served, Served::Fresh(e) if e.token.eq_str("ghs_new")));
        assert_eq!(calls.get(), 1);
        assert!(
            cache
                .entry("github.com")
                .unwrap()
                .unwrap()
                .token
                .eq_str("ghs_new")
        );
    }

    #[test]
    fn inside_margin_refreshes_and_degrades_on_failure() {
        let (_t, config, cache, clock) = setup();
        put(&cache, "ghs_old", clock.0 + time::Duration::minutes(4));
        let b = Broker::new(&config, &cache, &clock);
        let served = b
            .obtain("github.com", SOURCE_PLATFORM, || {
                Ok(minted("ghs_new", clock.0, 60))
            })
            .unwrap();
        assert!(matches!(served, Served::Fresh(e) if e.token.eq_str("ghs_new")));

        put(&cache, "ghs_x", clock.0 + time::Duration::minutes(61));
        let (_t, config, cache, clock) = setup();
        put(&cache, "ghs_old", clock.0 + time::Duration::minutes(4));
        let b = Broker::new(&config, &cache, &clock);
        let before = std::fs::read(cache.path().join("tokens.json")).unwrap();
        let served = b
            .obtain("github.com", SOURCE_PLATFORM, || {
                Err(Error::new(Class::Transient, "down"))
            })
            .unwrap();
        match served {
            Served::Degraded { entry, cause } => {
                assert!(entry.token.eq_str("ghs_old"));
                assert_eq!(cause.unwrap().class(), Class::Transient);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            std::fs::read(cache.path().join("tokens.json")).unwrap(),
            before
        );
    }

    #[test]
    fn suspect_is_never_served_and_falls_back() {
        let (_t, mut config, cache, clock) = setup();
        put(&cache, "ghs_bad", clock.0 + time::Duration::minutes(30));
        cache
            .mark_suspect("github.com", &Secret::new("ghs_bad".into()))
            .unwrap();
        config.gh_token = Some(Secret::new("ghs_env".into()));
        let b = Broker::new(&config, &cache, &clock);
        let served = b
            .obtain("github.com", SOURCE_PLATFORM, || {
                Err(Error::new(Class::Auth, "no"))
            })
            .unwrap();
        match served {
            Served::Fallback { fallback, cause } => {
                assert!(fallback.token.eq_str("ghs_env"));
                assert_eq!(cause.class(), Class::Auth);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            cache.entry("github.com").unwrap().unwrap().suspect,
            "fallback is not cached"
        );
    }

    #[test]
    fn nothing_left_is_exhausted() {
        let (_t, config, cache, clock) = setup();
        let b = Broker::new(&config, &cache, &clock);
        let e = b
            .obtain("github.com", SOURCE_PLATFORM, || {
                Err(Error::new(Class::NotConfigured, "no app"))
            })
            .unwrap_err();
        assert_eq!(e.class(), Class::Exhausted);
        assert!(e.message().contains("not-configured"), "{e}");
    }

    #[test]
    fn a_holder_with_a_usable_token_does_not_wait() {
        let (_t, config, cache, clock) = setup();
        put(&cache, "ghs_old", clock.0 + time::Duration::minutes(4));
        let _held = cache.refresh_lock(Duration::ZERO).unwrap().unwrap();
        let b = Broker::new(&config, &cache, &clock);
        let start = std::time::Instant::now();
        let served = b
            .obtain("github.com", SOURCE_PLATFORM, || panic!("must not mint"))
            .unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(matches!(served, Served::Degraded { cause: None, .. }));
    }

    #[test]
    fn refresh_failure_leaves_cache_unchanged() {
        let (_t, config, cache, clock) = setup();
        put(&cache, "ghs_good", clock.0 + time::Duration::minutes(30));
        let before = std::fs::read(cache.path().join("tokens.json")).unwrap();
        let b = Broker::new(&config, &cache, &clock);
        let e = b
            .refresh("github.com", SOURCE_PLATFORM, None, || {
                Err(Error::new(Class::Transient, "503").with_status(503))
            })
            .unwrap_err();
        assert_eq!(e.class(), Class::Transient);
        assert_eq!(
            std::fs::read(cache.path().join("tokens.json")).unwrap(),
            before
        );
    }

    #[test]
    fn a_fetch_in_the_future_is_not_recent() {
        // Regression: after the wall clock went back, "fetched moments ago" held for hours and
        // the daemon skipped every scheduled refresh.
        let (_t, config, cache, clock) = setup();
        cache
            .offer(
                "github.com",
                Entry::new(
                    Secret::new("ghs_then".into()),
                    clock.0 + time::Duration::minutes(60),
                    clock.0 + time::Duration::hours(2),
                    SOURCE_PLATFORM,
                ),
            )
            .unwrap();
        let b = Broker::new(&config, &cache, &clock);
        let r = b
            .refresh(
                "github.com",
                SOURCE_PLATFORM,
                Some(Duration::from_secs(60)),
                || Ok(minted("ghs_now", clock.0, 61)),
            )
            .unwrap();
        assert!(matches!(r, Refreshed::Minted { written: true, .. }));
    }

    #[test]
    fn refresh_skips_when_recently_refreshed() {
        let (_t, config, cache, clock) = setup();
        cache
            .offer(
                "github.com",
                Entry::new(
                    Secret::new("ghs_just".into()),
                    clock.0 + time::Duration::minutes(60),
                    clock.0,
                    SOURCE_PLATFORM,
                ),
            )
            .unwrap();
        let b = Broker::new(&config, &cache, &clock);
        let r = b
            .refresh(
                "github.com",
                SOURCE_PLATFORM,
                Some(Duration::from_secs(30)),
                || panic!("must not mint"),
            )
            .unwrap();
        assert!(matches!(r, Refreshed::AlreadyFresh(_)));
        let r = b
            .refresh("github.com", SOURCE_PLATFORM, None, || {
                Ok(minted("ghs_forced", clock.0, 61))
            })
            .unwrap();
        assert!(matches!(r, Refreshed::Minted { written: true, .. }));
    }
}
