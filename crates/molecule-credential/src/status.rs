//! `daemon.status.json`: the daemon's last attempt, read by `status` commands and container
//! health checks. It never holds a token.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Class, Error, Result};
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
}

impl DaemonStatus {
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
        })
    }

    /// Writes the status file atomically (the daemon's lock is the permission).
    pub fn write(&self, cache: &CacheDir, lock: &DaemonLock) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|_| Error::new(Class::LocalConfig, "serialising the daemon status failed"))?;
        bytes.push(b'\n');
        cache.write_file(DAEMON_STATUS_FILE, &bytes, lock)
    }
}
