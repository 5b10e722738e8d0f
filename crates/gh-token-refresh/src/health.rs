//! `gh-token-refresh status`: the container health check. Reads `daemon.status.json` and
//! `tokens.json`; healthy means every host holds a usable token, the daemon is waking on
//! schedule, and no host is inside the margin with its last refresh failed.

use std::io::Write;
use std::time::Duration;

use molecule_credential::clock::format_rfc3339;
use molecule_credential::config::Config;
use molecule_credential::status::DaemonStatus;
use molecule_credential::store::{CacheDir, Document};
use molecule_credential::{Class, Error};
use serde::Serialize;
use time::OffsetDateTime;

/// A daemon this late for its own wake-up is taken for dead.
pub const OVERDUE_GRACE: Duration = Duration::from_secs(120);

/// The health report.
#[derive(Debug, Serialize)]
pub struct Health {
    /// Whether nothing is wrong.
    pub healthy: bool,
    /// What is wrong, one line each.
    pub problems: Vec<String>,
    /// The daemon's status file, when present.
    pub daemon: Option<DaemonStatus>,
}

fn secs(d: time::Duration) -> i64 {
    d.whole_seconds()
}

/// Judges health at `now` (pure: no I/O).
pub fn assess(
    config: &Config,
    status: Option<&DaemonStatus>,
    doc: &Document,
    now: OffsetDateTime,
) -> Vec<String> {
    let mut problems = Vec::new();
    match status {
        None => problems.push(
            "no daemon.status.json: the daemon has not run with this cache directory".to_owned(),
        ),
        Some(s) => match s.next_wake_at {
            None => problems.push(format!(
                "the daemon stopped at {}",
                format_rfc3339(s.updated_at)
            )),
            Some(wake) if now > wake + OVERDUE_GRACE => problems.push(format!(
                "the daemon was due to wake at {} and has not: it is not running",
                format_rfc3339(wake)
            )),
            Some(_) => {}
        },
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

/// Reads the files and assesses. Errors reading them (insecure, corrupt) are problems too.
pub fn check(config: &Config, now: OffsetDateTime) -> Health {
    let read = || -> Result<(Option<DaemonStatus>, Document), Error> {
        let Some(cache) = CacheDir::open_existing(&config.cache_dir)? else {
            return Ok((None, Document::default()));
        };
        Ok((DaemonStatus::read(&cache)?, cache.read()?))
    };
    match read() {
        Ok((status, doc)) => {
            let problems = assess(config, status.as_ref(), &doc, now);
            Health {
                healthy: problems.is_empty(),
                problems,
                daemon: status,
            }
        }
        Err(e) => Health {
            healthy: false,
            problems: vec![e.to_string()],
            daemon: None,
        },
    }
}

/// Prints the report; exit 0 when healthy, 1 otherwise.
pub fn run(config: &Config, json: bool, now: OffsetDateTime, out: &mut dyn Write) -> u8 {
    let health = check(config, now);
    let text = if json {
        serde_json::to_string_pretty(&health).expect("the report serialises") + "\n"
    } else if health.healthy {
        let mut s = String::from("healthy");
        if let Some(wake) = health.daemon.as_ref().and_then(|d| d.next_wake_at) {
            s.push_str(&format!("; next refresh {}", format_rfc3339(wake)));
        }
        s + "\n"
    } else {
        health
            .problems
            .iter()
            .map(|p| format!("unhealthy: {p}\n"))
            .collect()
    };
    let _ = out.write_all(text.as_bytes());
    u8::from(!health.healthy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use molecule_credential::Secret;
    use molecule_credential::clock::parse_rfc3339;
    use molecule_credential::status::{Attempt, HostStatus};
    use molecule_credential::store::Entry;

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
        }
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
