//! `status`: what the cache holds for each host and what the daemon did last, as text or JSON.
//! Never a token: lengths, sources, times and classes only.

use std::io::Write;

use molecule_credential::Error;
use molecule_credential::cache::Entry;
use molecule_credential::clock::{Clock, SystemClock, format_rfc3339};
use molecule_credential::config::Config;
use molecule_credential::status::DaemonStatus;
use molecule_credential::store::CacheDir;
use serde::Serialize;
use time::OffsetDateTime;

use crate::commands::human_secs;
use crate::write_error;

/// `status` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// The state of one host's cached token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// More than the margin left.
    Fresh,
    /// Inside the margin: the next `get` refreshes it.
    Expiring,
    /// Dead.
    Expired,
    /// A server rejected it.
    Suspect,
    /// Nothing cached.
    Missing,
}

impl State {
    fn of(entry: Option<&Entry>, now: OffsetDateTime, config: &Config) -> Self {
        match entry {
            None => State::Missing,
            Some(e) if e.suspect => State::Suspect,
            Some(e) if e.is_fresh(now, config.margin) => State::Fresh,
            Some(e) if e.is_usable(now) => State::Expiring,
            Some(_) => State::Expired,
        }
    }

    fn usable(self) -> bool {
        matches!(self, State::Fresh | State::Expiring)
    }
}

/// One host in the report.
#[derive(Debug, Serialize)]
pub struct HostReport {
    /// The host key.
    pub host: String,
    /// Its state.
    pub state: State,
    /// Where the token came from.
    pub source: Option<String>,
    /// Token length in bytes.
    pub token_length: Option<usize>,
    /// Expiry.
    #[serde(with = "molecule_credential::clock::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Seconds until expiry (negative when expired).
    pub expires_in_sec: Option<i64>,
    /// When it was fetched.
    #[serde(with = "molecule_credential::clock::rfc3339::option")]
    pub fetched_at: Option<OffsetDateTime>,
    /// The GitHub App installation that minted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The cache directory.
    pub cache_dir: String,
    /// Whether it exists.
    pub cache_exists: bool,
    /// Per configured host.
    pub hosts: Vec<HostReport>,
    /// The daemon's status file, when a daemon has written one.
    pub daemon: Option<DaemonStatus>,
}

/// Builds the report (no network, no writes).
pub fn build(config: &Config, now: OffsetDateTime) -> Result<Report, Error> {
    let cache = CacheDir::open_existing(&config.cache_dir)?;
    let doc = match &cache {
        Some(c) => c.read()?,
        None => Default::default(),
    };
    // Every host, and (github-app) every owner known to the map or the cache.
    let hosts = molecule_credential::route::refresh_targets(config, &doc)
        .into_iter()
        .map(|target| {
            let host = target.key();
            let entry = doc.entries.get(&host);
            HostReport {
                state: State::of(entry, now, config),
                source: entry.map(|e| e.source.clone()),
                token_length: entry.map(|e| e.token.len()),
                expires_at: entry.map(|e| e.expires_at),
                expires_in_sec: entry.map(|e| (e.expires_at - now).whole_seconds()),
                fetched_at: entry.map(|e| e.fetched_at),
                installation_id: entry.and_then(|e| e.installation_id),
                host,
            }
        })
        .collect();
    let daemon = match &cache {
        Some(c) => DaemonStatus::read(c)?,
        None => None,
    };
    Ok(Report {
        cache_dir: config.cache_dir.display().to_string(),
        cache_exists: cache.is_some(),
        hosts,
        daemon,
    })
}

/// Prints the report. Exit 0 when every host has a usable cached token, 1 otherwise.
pub fn run(config: &Config, args: &Args, out: &mut dyn Write) -> Result<u8, Error> {
    let now = SystemClock.now();
    let report = build(config, now)?;
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&report).expect("the report serialises");
        s.push('\n');
        s
    } else {
        render(&report, now)
    };
    out.write_all(text.as_bytes())
        .map_err(|e| write_error(&e))?;
    Ok(if report.hosts.iter().all(|h| h.state.usable()) {
        0
    } else {
        1
    })
}

fn render(report: &Report, now: OffsetDateTime) -> String {
    let mut s = format!(
        "cache: {}{}\n",
        report.cache_dir,
        if report.cache_exists {
            ""
        } else {
            " (not created yet)"
        }
    );
    for h in &report.hosts {
        let state = serde_json::to_value(h.state).expect("a unit enum serialises");
        let state = state.as_str().unwrap_or("?");
        match (&h.source, h.expires_at, h.fetched_at) {
            (Some(source), Some(exp), Some(fetched)) => s.push_str(&format!(
                "{}: {state}: {source} token ({} bytes), expires {} (in {}), fetched {}\n",
                h.host,
                h.token_length.unwrap_or(0),
                format_rfc3339(exp),
                human_secs((exp - now).whole_seconds()),
                format_rfc3339(fetched),
            )),
            _ => s.push_str(&format!("{}: {state}\n", h.host)),
        }
    }
    match &report.daemon {
        None => s.push_str("daemon: no status file (not running, or never ran here)\n"),
        Some(d) => {
            s.push_str(&format!(
                "daemon: pid {}, started {}, updated {}",
                d.pid,
                format_rfc3339(d.started_at),
                format_rfc3339(d.updated_at)
            ));
            if let Some(w) = d.next_wake_at {
                s.push_str(&format!(", next wake {}", format_rfc3339(w)));
            }
            s.push('\n');
            for (host, hs) in &d.hosts {
                if let Some(a) = &hs.last_attempt {
                    s.push_str(&format!(
                        "daemon: {host}: last attempt {} {}{}{}\n",
                        format_rfc3339(a.at),
                        a.class,
                        a.http_status
                            .map(|c| format!(" (http {c})"))
                            .unwrap_or_default(),
                        a.message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default(),
                    ));
                }
            }
        }
    }
    s
}
