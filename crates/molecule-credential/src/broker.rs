//! Single-flight minting and the source order (DESIGN.md, "Token sources, in order" and
//! `refresh.lock`): the one path every caller takes to a new token.
//!
//! ```text
//! begin   take refresh.lock (bounded wait), re-read the cache: maybe another process minted
//! mint    the caller's own call to the source (sync in the helper, async in the daemon)
//! complete  compare-and-swap the minted token into the cache, release the lock
//! ```
//!
//! [`Broker::obtain`] (the helper's `get`, `token`, `exec`) and [`Broker::refresh`]
//! (`refresh`, `--once`) run the three steps in one call; the daemon runs [`Broker::begin`]
//! and [`Permit::complete`] on blocking threads around its async mint, so it stays responsive
//! to signals. Every type here owns its data, so it can cross threads.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::cache::{Entry, SOURCE_FALLBACK};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Class, Error, Result};
use crate::fallback::{Fallback, fallback_token};
use crate::store::{CacheDir, RefreshLock, poll_within};
use crate::token::Minted;

/// What a caller wants from the cache, which decides when another process's token will do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Any fresh token (`get`, `token`, `exec`).
    Fresh,
    /// A scheduled refresh: a fresh token fetched within this window (by another process)
    /// makes the call unnecessary.
    FetchedWithin(Duration),
    /// A new token whatever the cache holds (`refresh`, `--once`, SIGHUP).
    New,
}

/// Whether to wait for another process's mint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Not at all: the caller has a usable token to serve meanwhile.
    No,
    /// As long as a whole mint by the active source can take ([`crate::source::budget`]);
    /// past that the holder is presumed stuck and we mint without the lock.
    Budget,
}

/// How a mint can start.
#[derive(Debug)]
pub enum Begin {
    /// The cache already holds what is wanted: another process minted it.
    Cached(Entry),
    /// Another process is minting and the caller chose not to wait.
    Busy,
    /// Mint, then [`Permit::complete`].
    Mint(Permit),
}

/// The right to mint for one key: holds `refresh.lock` (when it could be taken) until
/// completed or dropped.
#[derive(Debug)]
pub struct Permit {
    broker: Broker,
    key: String,
    _lock: Option<RefreshLock>,
}

/// What completing a mint left behind.
#[derive(Debug)]
pub struct Completed {
    /// What the cache holds for the key now; the minted token itself when the cache could not
    /// be written (it is still good to serve).
    pub entry: Entry,
    /// Whether the minted token was written (false: a later one was already cached), or why
    /// the cache could not be written.
    pub written: Result<bool>,
    /// The mint's HTTP status (`None` for the file source).
    pub status: Option<u16>,
    /// False when the source gave no expiry.
    pub expiry_known: bool,
}

/// The result of a forced or scheduled refresh.
#[derive(Debug)]
pub enum Refreshed {
    /// Another process refreshed moments ago; no call was made.
    AlreadyFresh(Entry),
    /// A call was made and its token written (or a later one kept).
    Minted(Completed),
}

impl Refreshed {
    /// What the cache holds for the key now.
    pub fn entry(&self) -> &Entry {
        match self {
            Refreshed::AlreadyFresh(e) => e,
            Refreshed::Minted(c) => &c.entry,
        }
    }
}

/// How a token was found for a caller that must answer.
#[derive(Debug)]
pub enum Served {
    /// From the cache or a fresh mint, with more than the margin left.
    Fresh(Entry),
    /// Inside the margin but not expired, because minting failed or is in progress elsewhere.
    Degraded {
        /// The entry.
        entry: Entry,
        /// Why no fresh token: the mint's error, or `None` when another process is minting
        /// or the source itself answered a token inside the margin.
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

/// Cache, lock and policy for one cache directory. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    config: Arc<Config>,
    cache: CacheDir,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("cache", &self.cache.path())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker over `cache` using `config`'s margin, source and budget.
    pub fn new(config: Arc<Config>, cache: CacheDir, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            cache,
            clock,
        }
    }

    /// The cache directory.
    pub fn cache(&self) -> &CacheDir {
        &self.cache
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Whether `entry` is what `want` asks for, at `now`.
    fn satisfies(&self, entry: &Entry, want: Want, now: OffsetDateTime) -> bool {
        match want {
            Want::Fresh => entry.is_fresh(now, self.config.margin),
            // A fetch "in the future" means the wall clock went back: recency cannot be
            // trusted, and the next fetch re-anchors expiry on the server's Date.
            Want::FetchedWithin(window) => {
                entry.is_fresh(now, self.config.margin)
                    && entry.fetched_at <= now
                    && entry.fetched_at + window > now
            }
            Want::New => false,
        }
    }

    fn cached(&self, key: &str, want: Want) -> Result<Option<Entry>> {
        if want == Want::New {
            return Ok(None);
        }
        let now = self.now();
        Ok(self
            .cache
            .entry(key)?
            .filter(|e| self.satisfies(e, want, now)))
    }

    /// Step one: take `refresh.lock` for `key` (waiting as `wait` says), then look at the
    /// cache again, since whoever held the lock may have minted what we want. While waiting,
    /// a wanted token appearing in the cache ends the wait too.
    ///
    /// A lock that cannot be taken at all (a read-only or broken cache directory) or that a
    /// stuck process has held past the budget does not stop a mint: the permit then holds no
    /// lock, and the cache write that follows obeys the usual rules.
    pub fn begin(&self, key: &str, want: Want, wait: Wait) -> Result<Begin> {
        enum Step {
            Locked(RefreshLock),
            Cached(Entry),
        }
        let attempt = || -> Result<Option<Step>> {
            if let Some(lock) = self.cache.try_refresh_lock()? {
                return Ok(Some(Step::Locked(lock)));
            }
            Ok(self.cached(key, want)?.map(Step::Cached))
        };
        let waited = match wait {
            Wait::No => attempt(),
            Wait::Budget => poll_within(crate::source::budget(&self.config), attempt),
        };
        let lock = match waited {
            Ok(Some(Step::Cached(e))) => return Ok(Begin::Cached(e)),
            Ok(Some(Step::Locked(lock))) => Some(lock),
            Ok(None) if wait == Wait::No => return Ok(Begin::Busy),
            Ok(None) => {
                tracing::warn!(
                    "another process has held refresh.lock for more than {}s, longer than a whole mint can take; minting without it",
                    crate::source::budget(&self.config).as_secs()
                );
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot take refresh.lock; minting without single-flight");
                None
            }
        };
        if lock.is_some()
            && let Some(e) = self.cached(key, want)?
        {
            return Ok(Begin::Cached(e));
        }
        Ok(Begin::Mint(Permit {
            broker: self.clone(),
            key: key.to_owned(),
            _lock: lock,
        }))
    }

    /// The whole source order for `key`: the cache, a single-flight mint by `mint` (given what
    /// the cache holds for the key), then a still-usable cached token (degraded) or the
    /// fallback. `Err` carries [`Class::Exhausted`] when every source failed, or the local
    /// error that stopped us from looking (insecure or corrupt cache).
    pub fn obtain(
        &self,
        key: &str,
        mint: impl FnOnce(Option<&Entry>) -> Result<Minted>,
    ) -> Result<Served> {
        let cached = self.cache.entry(key)?;
        let now = self.now();
        if let Some(e) = cached
            .as_ref()
            .filter(|e| e.is_fresh(now, self.config.margin))
        {
            return Ok(Served::Fresh(e.clone()));
        }
        let usable = cached
            .clone()
            .filter(|e| e.is_usable(now) && e.source != SOURCE_FALLBACK);
        // With a usable token in hand we do not queue behind another minter: we serve it.
        let wait = if usable.is_some() {
            Wait::No
        } else {
            Wait::Budget
        };
        let permit = match self.begin(key, Want::Fresh, wait)? {
            Begin::Cached(e) => return Ok(Served::Fresh(e)),
            Begin::Busy => {
                return Ok(Served::Degraded {
                    entry: usable.expect("only a caller with a usable token does not wait"),
                    cause: None,
                });
            }
            Begin::Mint(permit) => permit,
        };
        match mint(cached.as_ref()) {
            Ok(minted) => {
                let done = permit.complete(minted);
                if let Err(e) = &done.written {
                    tracing::warn!(error = %e, "could not write the token cache; serving the new token uncached");
                }
                if done.entry.is_fresh(self.now(), self.config.margin) {
                    Ok(Served::Fresh(done.entry))
                } else {
                    // The source answered a token already inside the margin (the platform
                    // re-mints only under 5 minutes): still the best we have.
                    Ok(Served::Degraded {
                        entry: done.entry,
                        cause: None,
                    })
                }
            }
            Err(cause) => {
                drop(permit);
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

    fn fall_back(&self, cause: Error) -> Result<Served> {
        match fallback_token(&self.config) {
            Ok(Some(fallback)) => Ok(Served::Fallback { fallback, cause }),
            // The source's failure stays the cause: the class a caller may need ("gh is not
            // installed", "no App for this owner") is there, not only in the text.
            Ok(None) => Err(Error::new(
                Class::Exhausted,
                format!(
                    "no token: {cause}; no fallback token (GH_TOKEN, GITHUB_TOKEN or {})",
                    self.config.fallback_token_file.display()
                ),
            )
            .with_source(cause)),
            Err(fallback_error) => Err(Error::new(
                Class::Exhausted,
                format!("no token: {cause}; fallback unusable: {fallback_error}"),
            )
            .with_source(cause)),
        }
    }

    /// A refresh of `key` from synchronous code: [`Broker::begin`] waiting the budget, `mint`,
    /// [`Permit::complete`]. A failed mint, or a cache that could not be written, is an error;
    /// a failed mint leaves the cache as it was.
    pub fn refresh(
        &self,
        key: &str,
        want: Want,
        mint: impl FnOnce(Option<&Entry>) -> Result<Minted>,
    ) -> Result<Refreshed> {
        match self.begin(key, want, Wait::Budget)? {
            Begin::Cached(e) => Ok(Refreshed::AlreadyFresh(e)),
            // A begin that waits is never busy; should that change, the caller retries.
            Begin::Busy => Err(Error::new(Class::Transient, "another process is minting")),
            Begin::Mint(permit) => {
                let cached = self.cache.entry(key).ok().flatten();
                let minted = mint(cached.as_ref())?;
                permit.complete(minted).into_refreshed()
            }
        }
    }
}

impl Permit {
    /// The key this permit mints for.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Step three: offers the minted token to the cache (compare-and-swap) and releases the
    /// lock. The token is returned whether or not it could be written.
    pub fn complete(self, minted: Minted) -> Completed {
        let (status, expiry_known) = (minted.status, minted.expiry_known);
        let broker = &self.broker;
        let entry = Entry::from_minted(minted, crate::source::name(&broker.config), broker.now());
        let (entry, written) = match broker.cache.offer(&self.key, entry.clone()) {
            Ok((held, written)) => (held, Ok(written)),
            Err(e) => (entry, Err(e)),
        };
        Completed {
            entry,
            written,
            status,
            expiry_known,
        }
    }
}

impl Completed {
    /// A refresh's view: a cache that could not be written is the refresh's failure.
    pub fn into_refreshed(self) -> Result<Refreshed> {
        match &self.written {
            Ok(_) => Ok(Refreshed::Minted(self)),
            Err(e) => Err(e.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::SOURCE_PLATFORM;
    use crate::clock::parse_rfc3339;
    use crate::secret::Secret;
    use std::cell::Cell;

    struct Fixed(OffsetDateTime);
    impl Clock for Fixed {
        fn now(&self) -> OffsetDateTime {
            self.0
        }
    }

    fn setup_with(config: impl FnOnce(&mut Config)) -> (tempfile::TempDir, Broker, OffsetDateTime) {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = Config::load(|_| None).config;
        c.cache_dir = tmp.path().join("cache");
        c.fallback_token_file = tmp.path().join("cache/fallback-token");
        config(&mut c);
        let cache = CacheDir::open(&c.cache_dir).unwrap();
        let now = parse_rfc3339("2026-11-22T18:00:00Z").unwrap();
        let broker = Broker::new(Arc::new(c), cache, Arc::new(Fixed(now)));
        (tmp, broker, now)
    }

    fn setup() -> (tempfile::TempDir, Broker, OffsetDateTime) {
        setup_with(|_| {})
    }

    fn minted(token: &str, now: OffsetDateTime, mins: i64) -> Minted {
        Minted {
            token: Secret::new(token.to_owned()),
            expires_at: now + time::Duration::minutes(mins),
            expiry_known: true,
            status: Some(200),
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
        let (_t, b, now) = setup();
        put(b.cache(), "ghs_cached", now + time::Duration::minutes(30));
        let served = b
            .obtain("github.com", |_| panic!("no call on a fresh cache"))
            .unwrap();
        assert!(matches!(served, Served::Fresh(e) if e.token.eq_str("ghs_cached")));
    }

    #[test]
    fn miss_mints_and_caches() {
        let (_t, b, now) = setup();
        let calls = Cell::new(0);
        let served = b
            .obtain("github.com", |_| {
                calls.set(calls.get() + 1);
                Ok(minted("ghs_new", now, 60))
            })
            .unwrap();
        assert!(matches!(served, Served::Fresh(e) if e.token.eq_str("ghs_new")));
        assert_eq!(calls.get(), 1);
        assert!(
            b.cache()
                .entry("github.com")
                .unwrap()
                .unwrap()
                .token
                .eq_str("ghs_new")
        );
    }

    #[test]
    fn inside_margin_refreshes() {
        let (_t, b, now) = setup();
        put(b.cache(), "ghs_old", now + time::Duration::minutes(4));
        let served = b
            .obtain("github.com", |_| Ok(minted("ghs_new", now, 60)))
            .unwrap();
        assert!(matches!(served, Served::Fresh(e) if e.token.eq_str("ghs_new")));
    }

    #[test]
    fn inside_margin_degrades_on_failure_and_leaves_the_cache() {
        let (_t, b, now) = setup();
        put(b.cache(), "ghs_old", now + time::Duration::minutes(4));
        let before = std::fs::read(b.cache().path().join("tokens.json")).unwrap();
        let served = b
            .obtain("github.com", |_| Err(Error::new(Class::Transient, "down")))
            .unwrap();
        match served {
            Served::Degraded { entry, cause } => {
                assert!(entry.token.eq_str("ghs_old"));
                assert_eq!(cause.unwrap().class(), Class::Transient);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            std::fs::read(b.cache().path().join("tokens.json")).unwrap(),
            before
        );
    }

    #[test]
    fn suspect_is_never_served_and_falls_back() {
        let (_t, b, now) = setup_with(|c| c.gh_token = Some(Secret::new("ghs_env".into())));
        put(b.cache(), "ghs_bad", now + time::Duration::minutes(30));
        b.cache()
            .mark_suspect("github.com", &Secret::new("ghs_bad".into()))
            .unwrap();
        let served = b
            .obtain("github.com", |_| Err(Error::new(Class::Auth, "no")))
            .unwrap();
        match served {
            Served::Fallback { fallback, cause } => {
                assert!(fallback.token.eq_str("ghs_env"));
                assert_eq!(cause.class(), Class::Auth);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            b.cache().entry("github.com").unwrap().unwrap().suspect,
            "fallback is not cached"
        );
    }

    #[test]
    fn nothing_left_is_exhausted() {
        let (_t, b, _) = setup();
        let e = b
            .obtain("github.com", |_| {
                Err(Error::new(Class::NotConfigured, "no app"))
            })
            .unwrap_err();
        assert_eq!(e.class(), Class::Exhausted);
        assert!(e.message().contains("not-configured"), "{e}");
        let cause = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<Error>());
        assert_eq!(cause.map(Error::class), Some(Class::NotConfigured));
    }

    #[test]
    fn a_holder_with_a_usable_token_does_not_wait() {
        let (_t, b, now) = setup();
        put(b.cache(), "ghs_old", now + time::Duration::minutes(4));
        let _held = b.cache().try_refresh_lock().unwrap().unwrap();
        let start = std::time::Instant::now();
        let served = b.obtain("github.com", |_| panic!("must not mint")).unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(matches!(served, Served::Degraded { cause: None, .. }));
    }

    #[test]
    fn a_stuck_holder_is_waited_for_one_budget_then_minted_past() {
        let (_t, b, now) = setup_with(|c| c.http_timeout = Duration::from_secs(1));
        let _held = b.cache().try_refresh_lock().unwrap().unwrap();
        let start = std::time::Instant::now();
        let served = b
            .obtain("github.com", |_| Ok(minted("ghs_past", now, 60)))
            .unwrap();
        let waited = start.elapsed();
        assert!(matches!(served, Served::Fresh(e) if e.token.eq_str("ghs_past")));
        let budget = crate::source::budget(&Config {
            http_timeout: Duration::from_secs(1),
            ..Config::load(|_| None).config
        });
        assert!(waited >= budget, "{waited:?} < {budget:?}");
        assert!(waited < budget + Duration::from_secs(1), "{waited:?}");
        assert!(
            b.cache().entry("github.com").unwrap().is_some(),
            "tokens.lock was free: the token is cached"
        );
    }

    #[test]
    fn a_token_another_process_writes_ends_the_wait() {
        let (_t, b, now) = setup();
        let held = b.cache().try_refresh_lock().unwrap().unwrap();
        let cache = b.cache().clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            put(&cache, "ghs_theirs", now + time::Duration::minutes(60));
            // The other process would release only after its write; keep holding a while.
            std::thread::sleep(Duration::from_secs(3));
            drop(held);
        });
        let start = std::time::Instant::now();
        let served = b
            .obtain("github.com", |_| panic!("the other process minted"))
            .unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(matches!(served, Served::Fresh(e) if e.token.eq_str("ghs_theirs")));
        writer.join().unwrap();
    }

    #[test]
    fn refresh_failure_leaves_cache_unchanged() {
        let (_t, b, now) = setup();
        put(b.cache(), "ghs_good", now + time::Duration::minutes(30));
        let before = std::fs::read(b.cache().path().join("tokens.json")).unwrap();
        let e = b
            .refresh("github.com", Want::New, |_| {
                Err(Error::new(Class::Transient, "503").with_status(503))
            })
            .unwrap_err();
        assert_eq!(e.class(), Class::Transient);
        assert_eq!(
            std::fs::read(b.cache().path().join("tokens.json")).unwrap(),
            before
        );
    }

    #[test]
    fn a_fetch_in_the_future_is_not_recent() {
        // Regression: after the wall clock went back, "fetched moments ago" held for hours and
        // the daemon skipped every scheduled refresh.
        let (_t, b, now) = setup();
        b.cache()
            .offer(
                "github.com",
                Entry::new(
                    Secret::new("ghs_then".into()),
                    now + time::Duration::minutes(60),
                    now + time::Duration::hours(2),
                    SOURCE_PLATFORM,
                ),
            )
            .unwrap();
        let r = b
            .refresh(
                "github.com",
                Want::FetchedWithin(Duration::from_secs(60)),
                |_| Ok(minted("ghs_now", now, 61)),
            )
            .unwrap();
        assert!(matches!(
            r,
            Refreshed::Minted(Completed {
                written: Ok(true),
                ..
            })
        ));
    }

    #[test]
    fn refresh_skips_when_recently_refreshed() {
        let (_t, b, now) = setup();
        b.cache()
            .offer(
                "github.com",
                Entry::new(
                    Secret::new("ghs_just".into()),
                    now + time::Duration::minutes(60),
                    now,
                    SOURCE_PLATFORM,
                ),
            )
            .unwrap();
        let r = b
            .refresh(
                "github.com",
                Want::FetchedWithin(Duration::from_secs(30)),
                |_| panic!("must not mint"),
            )
            .unwrap();
        assert!(matches!(r, Refreshed::AlreadyFresh(_)));
        let r = b
            .refresh("github.com", Want::New, |_| {
                Ok(minted("ghs_forced", now, 61))
            })
            .unwrap();
        assert!(matches!(
            r,
            Refreshed::Minted(Completed {
                written: Ok(true),
                ..
            })
        ));
    }
}
