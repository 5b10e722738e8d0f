//! `daemon.status.json`: the daemon's last attempt, read by `status` commands and container
//! health checks. It never holds a token.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::cache::Document;
use crate::clock::format_rfc3339;
use crate::config::Config;
use crate::error::{Class, Error, JsonPosition, Result};
use crate::store::{CacheDir, DAEMON_STATUS_FILE, DaemonLock};

/// The version of the status document.
pub const STATUS_VERSION: u32 = 1;

/// One attempt to get a token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    /// When it finished.
    #[serde(with = "crate::clock::rfc3339")]
    pub at: OffsetDateTime,
    /// Its class.
    pub class: Class,
    /// The HTTP status, when a server answered.
    pub http_status: Option<u16>,
    /// The classified message (never a token, bearer or body).
    pub message: Option<String>,
}

/// Per-host state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct HostStatus {
    /// The last attempt for this host.
    pub last_attempt: Option<Attempt>,
    /// The last successful attempt.
    #[serde(default, with = "crate::clock::rfc3339::option")]
    pub last_success_at: Option<OffsetDateTime>,
    /// Failures since the last success.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Expiry of the token the cache holds.
    #[serde(default, with = "crate::clock::rfc3339::option")]
    pub token_expires_at: Option<OffsetDateTime>,
    /// The last `gh auth login` for this host.
    #[serde(default)]
    pub gh_login: Option<Attempt>,
}

/// The daemon's status document.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DaemonStatus {
    /// Always [`STATUS_VERSION`].
    pub version: u32,
    /// The daemon's process ID.
    pub pid: u32,
    /// When the daemon started.
    #[serde(with = "crate::clock::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When this document was written.
    #[serde(with = "crate::clock::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When the daemon will next wake up on its own.
    #[serde(default, with = "crate::clock::rfc3339::option")]
    pub next_wake_at: Option<OffsetDateTime>,
    /// Per host.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostStatus>,
    /// The token files the daemon keeps (`MOLECULE_TOKEN_SINKS`), by path.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkStatus>,
    /// What this daemon counted since it started (its metrics' counters).
    #[serde(default)]
    pub counters: Counters,
}

/// One sink's state, for `status` and the metrics. Never holds a token.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SinkStatus {
    /// `FORMAT@KEY`: what the sink holds.
    pub spec: String,
    /// `written` (holds a token), `removed` (nothing can be served) or `failed`.
    pub state: String,
    /// The source of the token it holds (`platform`, `github-app`, `file`, `fallback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// When it last changed.
    #[serde(default, with = "crate::clock::rfc3339::option")]
    pub changed_at: Option<OffsetDateTime>,
    /// Why the last write failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The upper bounds, in seconds, of the refresh-duration histogram's buckets (`+Inf` is
/// implied): a loopback platform answers in milliseconds, a GitHub App mint with discovery in
/// a second or two, and the whole budget of one call is `MOLECULE_HTTP_TIMEOUT_SEC` (10 s).
pub const DURATION_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Counts of successes and failures.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Outcomes {
    /// Successes.
    pub success: u64,
    /// Failures.
    pub failure: u64,
}

impl Outcomes {
    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: Outcomes) {
        self.success = self.success.saturating_add(other.success);
        self.failure = self.failure.saturating_add(other.failure);
    }

    /// Counts one outcome.
    pub fn add(&mut self, ok: bool) {
        let n = if ok {
            &mut self.success
        } else {
            &mut self.failure
        };
        *n = n.saturating_add(1);
    }
}

/// A histogram over [`DURATION_BUCKETS`]: `counts[i]` observations were at most
/// `DURATION_BUCKETS[i]` and above the bucket before (not cumulative; the exposition is).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Histogram {
    /// Per bucket, then one more for above the last bound.
    pub counts: Vec<u64>,
    /// Sum of the observations, in seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Adds one observation.
    pub fn observe(&mut self, seconds: f64) {
        self.counts.resize(DURATION_BUCKETS.len() + 1, 0);
        let i = DURATION_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(DURATION_BUCKETS.len());
        self.counts[i] = self.counts[i].saturating_add(1);
        self.sum += seconds;
        self.count = self.count.saturating_add(1);
    }

    /// Cumulative counts per bucket bound, `+Inf` last, as the exposition format wants them.
    pub fn cumulative(&self) -> Vec<u64> {
        let mut total = 0u64;
        (0..=DURATION_BUCKETS.len())
            .map(|i| {
                total = total.saturating_add(self.counts.get(i).copied().unwrap_or(0));
                total
            })
            .collect()
    }
}

/// The counters of the daemon's metrics, kept in the status file so that `gh-token-refresh
/// metrics` prints what the daemon serves. They count this daemon's own events since it
/// started (a restart starts them at zero, as Prometheus expects of a counter).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    /// Refresh attempts: host → metric class label (`ok`, `transient`, …) → count.
    #[serde(default)]
    pub refresh: BTreeMap<String, BTreeMap<String, u64>>,
    /// Duration of each refresh attempt, by host.
    #[serde(default)]
    pub refresh_seconds: BTreeMap<String, Histogram>,
    /// `gh auth login` attempts, by host.
    #[serde(default)]
    pub gh_login: BTreeMap<String, Outcomes>,
    /// Sink writes and removals.
    #[serde(default)]
    pub sink_writes: Outcomes,
}

impl Counters {
    /// Counts one refresh attempt for `host` that ended as `class` after `seconds`.
    pub fn refresh_attempt(&mut self, host: &str, class: Class, seconds: f64) {
        let n = self
            .refresh
            .entry(host.to_owned())
            .or_default()
            .entry(class.metric_label().to_owned())
            .or_default();
        *n = n.saturating_add(1);
        self.refresh_seconds
            .entry(host.to_owned())
            .or_default()
            .observe(seconds);
    }
}

/// How one refresh attempt for a host ended, as the status file records it.
#[derive(Debug)]
pub enum Recorded<'a> {
    /// A token is cached: minted now (`http_status` set) or by another process moments ago.
    Ok {
        /// The mint's HTTP status, when a call was made.
        http_status: Option<u16>,
        /// Expiry of the token the cache holds.
        expires_at: OffsetDateTime,
    },
    /// No new token.
    Failed {
        /// Why.
        error: &'a Error,
        /// Expiry of the token the cache still holds, if any.
        held_expiry: Option<OffsetDateTime>,
    },
}

impl DaemonStatus {
    /// A fresh status for daemon `pid` started at `now`.
    pub fn new(pid: u32, now: OffsetDateTime) -> Self {
        Self {
            version: STATUS_VERSION,
            pid,
            started_at: now,
            updated_at: now,
            next_wake_at: None,
            hosts: BTreeMap::new(),
            sinks: BTreeMap::new(),
            counters: Counters::default(),
        }
    }

    /// Records one refresh attempt for `host` at `now`. Returns the class of the host's
    /// previous attempt (`None` for its first), so callers can speak up once per change of
    /// state.
    pub fn record_refresh(
        &mut self,
        host: &str,
        recorded: &Recorded<'_>,
        now: OffsetDateTime,
    ) -> Option<Class> {
        let hs = self.hosts.entry(host.to_owned()).or_default();
        let previous = hs.last_attempt.as_ref().map(|a| a.class);
        match recorded {
            Recorded::Ok {
                http_status,
                expires_at,
            } => {
                hs.last_attempt = Some(Attempt {
                    at: now,
                    class: Class::Ok,
                    http_status: *http_status,
                    message: None,
                });
                hs.last_success_at = Some(now);
                hs.consecutive_failures = 0;
                hs.token_expires_at = Some(*expires_at);
            }
            Recorded::Failed { error, held_expiry } => {
                hs.last_attempt = Some(Attempt {
                    at: now,
                    class: error.class(),
                    http_status: error.status(),
                    message: Some(error.message().to_owned()),
                });
                hs.consecutive_failures = hs.consecutive_failures.saturating_add(1);
                hs.token_expires_at = *held_expiry;
            }
        }
        previous
    }

    /// Records the last `gh auth login` for `host`.
    pub fn record_gh_login(&mut self, host: &str, attempt: Attempt) {
        self.hosts.entry(host.to_owned()).or_default().gh_login = Some(attempt);
    }

    /// Reads the status file. `Ok(None)` when no daemon has written one.
    pub fn read(cache: &CacheDir) -> Result<Option<Self>> {
        let Some(bytes) = cache.read_file(DAEMON_STATUS_FILE)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::new(
                Class::LocalConfig,
                format!(
                    "{} is not a valid status file (line {}, column {})",
                    cache.path().join(DAEMON_STATUS_FILE).display(),
                    e.line(),
                    e.column()
                ),
            )
            .with_source(JsonPosition::from(&e))
        })
    }

    /// Writes the status file atomically (the daemon's lock is the permission).
    pub fn write(&self, cache: &CacheDir, lock: &DaemonLock) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| {
            Error::new(Class::LocalConfig, "serialising the daemon status failed").with_source(e)
        })?;
        bytes.push(b'\n');
        cache.write_file(DAEMON_STATUS_FILE, &bytes, lock)
    }
}

/// A daemon this late for its own wake-up is taken for dead.
pub const OVERDUE_GRACE: Duration = Duration::from_secs(120);

fn secs(d: time::Duration) -> i64 {
    d.whole_seconds()
}

/// Whether the daemon is alive at `now`: it has written its status and is waking on schedule
/// (pure). `Some(problem)` when not. A daemon whose source is failing is alive: restarting it
/// cannot repair the source (a liveness probe asks only this).
pub fn assess_daemon(status: Option<&DaemonStatus>, now: OffsetDateTime) -> Option<String> {
    match status {
        None => Some(
            "no daemon.status.json: the daemon has not run with this cache directory".to_owned(),
        ),
        Some(s) => match s.next_wake_at {
            None => Some(format!(
                "the daemon stopped at {}",
                format_rfc3339(s.updated_at)
            )),
            Some(wake) if now > wake + OVERDUE_GRACE => Some(format!(
                "the daemon was due to wake at {} and has not: it is not running",
                format_rfc3339(wake)
            )),
            Some(_) => None,
        },
    }
}

/// What is wrong with the daemon and the cache at `now`, one line each (pure: no I/O).
/// Healthy means every host holds a usable token, the daemon is waking on schedule, no host
/// is inside the margin with its last refresh failed, and every token file (sink) could be
/// written.
pub fn assess(
    config: &Config,
    status: Option<&DaemonStatus>,
    doc: &Document,
    now: OffsetDateTime,
) -> Vec<String> {
    let mut problems: Vec<String> = assess_daemon(status, now).into_iter().collect();
    if let Some(s) = status {
        for (path, sink) in s.sinks.iter().filter(|(_, k)| k.state == "failed") {
            problems.push(format!(
                "the token file {path} ({}) cannot be written: {}",
                sink.spec,
                sink.error.as_deref().unwrap_or("unknown error")
            ));
        }
    }
    for host in &config.hosts {
        let Some(entry) = doc.entries.get(host) else {
            problems.push(format!("{host}: no token cached"));
            continue;
        };
        if entry.suspect {
            problems.push(format!("{host}: a server rejected the cached token"));
        } else if !entry.is_usable(now) {
            problems.push(format!(
                "{host}: the cached token expired at {}",
                format_rfc3339(entry.expires_at)
            ));
        } else if !entry.is_fresh(now, config.margin) {
            let last = status
                .and_then(|s| s.hosts.get(host))
                .and_then(|h| h.last_attempt.as_ref());
            if let Some(a) = last.filter(|a| a.class != Class::Ok) {
                problems.push(format!(
                    "{host}: the token expires in {}s and the last refresh failed ({}{})",
                    secs(entry.expires_at - now),
                    a.class,
                    a.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;
    use crate::cache::Entry;
    use crate::clock::parse_rfc3339;
    use crate::error::Class;
    use crate::status::{Attempt, HostStatus};

    fn now() -> OffsetDateTime {
        parse_rfc3339("2026-11-22T18:00:00Z").unwrap()
    }

    fn config() -> Config {
        Config::load(|_| None).config
    }

    fn doc(expires_in_min: i64, suspect: bool) -> Document {
        let mut d = Document::default();
        let mut e = Entry::new(
            Secret::new("ghs_x".into()),
            now() + time::Duration::minutes(expires_in_min),
            now(),
            "platform",
        );
        e.suspect = suspect;
        d.entries.insert("github.com".into(), e);
        d
    }

    fn status(wake_in_min: Option<i64>, last: Class) -> DaemonStatus {
        let mut hosts = std::collections::BTreeMap::new();
        hosts.insert(
            "github.com".to_owned(),
            HostStatus {
                last_attempt: Some(Attempt {
                    at: now(),
                    class: last,
                    http_status: None,
                    message: Some("down".into()),
                }),
                ..HostStatus::default()
            },
        );
        DaemonStatus {
            version: 1,
            pid: 1,
            started_at: now(),
            updated_at: now(),
            next_wake_at: wake_in_min.map(|m| now() + time::Duration::minutes(m)),
            hosts,
            sinks: std::collections::BTreeMap::new(),
            counters: Counters::default(),
        }
    }

    #[test]
    fn recording_counts_failures_and_returns_the_previous_class() {
        let mut s = DaemonStatus::new(7, now());
        let down = Error::new(Class::Transient, "down").with_status(503);
        let failed = Recorded::Failed {
            error: &down,
            held_expiry: Some(now()),
        };
        assert_eq!(s.record_refresh("github.com", &failed, now()), None);
        assert_eq!(
            s.record_refresh("github.com", &failed, now()),
            Some(Class::Transient)
        );
        let h = &s.hosts["github.com"];
        assert_eq!(h.consecutive_failures, 2);
        let a = h.last_attempt.as_ref().unwrap();
        assert_eq!(
            (a.class, a.http_status, a.message.as_deref()),
            (Class::Transient, Some(503), Some("down"))
        );
        let ok = Recorded::Ok {
            http_status: Some(200),
            expires_at: now() + time::Duration::HOUR,
        };
        assert_eq!(
            s.record_refresh("github.com", &ok, now()),
            Some(Class::Transient)
        );
        let h = &s.hosts["github.com"];
        assert_eq!(h.consecutive_failures, 0);
        assert_eq!(h.last_success_at, Some(now()));
        assert_eq!(h.token_expires_at, Some(now() + time::Duration::HOUR));
    }

    #[test]
    fn healthy_daemon() {
        assert!(
            assess(
                &config(),
                Some(&status(Some(40), Class::Ok)),
                &doc(50, false),
                now()
            )
            .is_empty()
        );
        // A failed attempt while the token is still outside the margin is not yet a problem.
        assert!(
            assess(
                &config(),
                Some(&status(Some(1), Class::Transient)),
                &doc(50, false),
                now()
            )
            .is_empty()
        );
    }

    #[test]
    fn problems() {
        let c = config();
        let one = |s: Option<&DaemonStatus>, d: &Document| assess(&c, s, d, now());
        assert!(one(None, &doc(50, false))[0].contains("has not run"));
        assert!(
            one(Some(&status(Some(-5), Class::Ok)), &doc(50, false))[0].contains("not running")
        );
        assert!(one(Some(&status(None, Class::Ok)), &doc(50, false))[0].contains("stopped"));
        assert!(one(Some(&status(Some(1), Class::Ok)), &doc(-1, false))[0].contains("expired"));
        assert!(one(Some(&status(Some(1), Class::Ok)), &doc(50, true))[0].contains("rejected"));
        assert!(
            one(Some(&status(Some(1), Class::Ok)), &Document::default())[0].contains("no token")
        );
        let p = one(Some(&status(Some(1), Class::Transient)), &doc(3, false));
        assert!(
            p[0].contains("last refresh failed (transient: down)"),
            "{p:?}"
        );
    }
}
