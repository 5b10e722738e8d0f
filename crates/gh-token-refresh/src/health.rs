//! `gh-token-refresh status`: the container health check. Reads `daemon.status.json` and
//! `tokens.json`; healthy means every host holds a usable token, the daemon is waking on
//! schedule, and no host is inside the margin with its last refresh failed.

use std::io::Write;

use molecule_credential::Error;
use molecule_credential::cache::Document;
use molecule_credential::clock::format_rfc3339;
use molecule_credential::config::Config;
use molecule_credential::status::{DaemonStatus, assess, assess_daemon};
use molecule_credential::store::CacheDir;
use serde::Serialize;
use time::OffsetDateTime;

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

/// The daemon's status file and the cache, as `status` and `metrics` read them: no status and
/// an empty cache when the directory does not exist yet.
fn read_files(config: &Config) -> Result<(Option<DaemonStatus>, Document), Error> {
    let Some(cache) = CacheDir::open_existing(&config.cache_dir)? else {
        return Ok((None, Document::default()));
    };
    Ok((DaemonStatus::read(&cache)?, cache.read()?))
}

/// `gh-token-refresh metrics`: the text the daemon serves, from its status file (the
/// counters) and the cache (the gauges). Exit 0, or 78 when the files cannot be read.
pub fn print_metrics(config: &Config, now: OffsetDateTime, out: &mut dyn Write) -> u8 {
    match read_files(config) {
        Ok((status, doc)) => {
            let text =
                crate::metrics::render(config, status.as_ref(), &doc, now, crate::daemon::BUILD);
            match out.write_all(text.as_bytes()) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!("writing to stdout: {e}");
                    molecule_credential::Class::BadInput.exit_code()
                }
            }
        }
        Err(e) => {
            tracing::error!(class = %e.class(), "{e}");
            e.class().exit_code()
        }
    }
}

/// What `status` judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything: the daemon, every host's token, the sinks (a health or readiness check).
    Health,
    /// Only whether the daemon runs and wakes on schedule (a liveness probe).
    Alive,
}

/// Reads the files and assesses. Errors reading them (insecure, corrupt) are problems too.
pub fn check(config: &Config, scope: Scope, now: OffsetDateTime) -> Health {
    match read_files(config) {
        Ok((status, doc)) => {
            let problems = match scope {
                Scope::Health => assess(config, status.as_ref(), &doc, now),
                Scope::Alive => assess_daemon(status.as_ref(), now).into_iter().collect(),
            };
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
pub fn run(
    config: &Config,
    scope: Scope,
    json: bool,
    now: OffsetDateTime,
    out: &mut dyn Write,
) -> u8 {
    let health = check(config, scope, now);
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
