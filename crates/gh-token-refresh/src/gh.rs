//! Keeping `gh` logged in: `gh auth login --hostname HOST --with-token`, the token on stdin.
//!
//! gh runs with the environment [`molecule_credential::gh::command`] gives it (no token
//! variable, no prompts), every call has a 20 s deadline, and a login is skipped when gh
//! already holds that token.

use std::collections::HashMap;
use std::ffi::OsString;
use std::process::Command;
use std::time::Duration;

use molecule_credential::cache::Document;
use molecule_credential::child;
use molecule_credential::clock::Clock;
use molecule_credential::status::Attempt;
use molecule_credential::{Class, Error, Secret};

/// Deadline for one gh call.
pub const GH_TIMEOUT: Duration = Duration::from_secs(20);

pub use molecule_credential::gh::{TOKEN_VARS, supports_host};

/// What a login attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// gh already holds this token for the host.
    AlreadyCurrent,
    /// gh accepted the token.
    LoggedIn,
}

/// What one host's sync did.
#[derive(Debug)]
pub struct Synced {
    /// The host.
    pub host: String,
    /// Its outcome, as the status file records it.
    pub attempt: Attempt,
    /// Whether `gh auth login` ran (it does not when gh already holds the token).
    pub ran: bool,
}

/// Drives the gh CLI.
#[derive(Debug)]
pub struct Gh {
    program: OsString,
    timeout: Duration,
    /// The token gh holds per host, as far as we know: what we last logged in with.
    current: HashMap<String, Secret<String>>,
    missing_reported: bool,
    /// The class of each host's last login, to warn once per change of state.
    last_class: HashMap<String, Class>,
    /// Consecutive syncs with a failed login (a missing gh is not a failure).
    failures: u32,
}

impl Gh {
    /// Drives `program` (normally `gh`, found on PATH).
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            timeout: GH_TIMEOUT,
            current: HashMap::new(),
            missing_reported: false,
            last_class: HashMap::new(),
            failures: 0,
        }
    }

    /// Consecutive syncs that ended with a failed login: while non-zero the daemon retries gh
    /// on the backoff series.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Logs gh in to each of `hosts` (those gh accepts) with the usable token `doc` holds for
    /// it, and says what happened: one line per new login, a warning per change of state.
    /// Returns each host's outcome, for the status file and the metrics.
    pub async fn sync(
        &mut self,
        hosts: &[String],
        doc: &Document,
        clock: &dyn Clock,
    ) -> Vec<Synced> {
        let now = clock.now();
        let mut attempts = Vec::new();
        let mut failed = false;
        for host in hosts.iter().filter(|h| supports_host(h)) {
            let Some(entry) = doc.entries.get(host).filter(|e| e.is_usable(now)) else {
                continue;
            };
            let was_missing = self.is_missing();
            let result = self.ensure(host, &entry.token).await;
            let class = result.as_ref().map_or_else(Error::class, |_| Class::Ok);
            let previous = self.last_class.insert(host.clone(), class);
            match &result {
                Ok(Login::LoggedIn) => {
                    tracing::info!(host = %host, token_len = entry.token.len(), "gh logged in with the new token")
                }
                Ok(Login::AlreadyCurrent) => {
                    tracing::debug!(host = %host, "gh already holds the current token")
                }
                Err(e) if e.class() == Class::MissingProgram => {
                    if !was_missing {
                        tracing::warn!(error = %e, "gh is not installed; keeping the token cache fresh for git only");
                    }
                }
                Err(e) => {
                    failed = true;
                    if previous == Some(e.class()) {
                        tracing::info!(host = %host, class = %e.class(), error = %e, "gh login failed again");
                    } else {
                        tracing::warn!(host = %host, class = %e.class(), error = %e, "gh login failed; git is unaffected, retrying gh on the backoff series");
                    }
                }
            }
            // `gh auth login` ran unless gh already held the token or is not installed.
            let ran = match &result {
                Ok(login) => *login == Login::LoggedIn,
                Err(e) => e.class() != Class::MissingProgram,
            };
            attempts.push(Synced {
                host: host.clone(),
                attempt: Attempt {
                    at: clock.now(),
                    class,
                    http_status: None,
                    message: result.err().map(|e| e.to_string()),
                },
                ran,
            });
        }
        self.failures = if failed {
            self.failures.saturating_add(1)
        } else {
            0
        };
        attempts
    }

    fn command(&self, args: &[&str]) -> Command {
        molecule_credential::gh::command(&self.program, args)
    }

    /// Makes sure gh is logged in to `host` with `token`.
    pub async fn ensure(&mut self, host: &str, token: &Secret<String>) -> Result<Login, Error> {
        if self.current.get(host).is_some_and(|t| t == token) {
            return Ok(Login::AlreadyCurrent);
        }
        // After a restart we do not know what gh holds: ask it before logging in again.
        let held = child::run(
            self.command(&["auth", "token", "--hostname", host]),
            None,
            self.timeout,
            "gh auth token",
        )
        .await;
        match held {
            Ok(out)
                if out.status.success()
                    && token.eq_str(String::from_utf8_lossy(&out.stdout).trim()) =>
            {
                self.current.insert(host.to_owned(), token.clone());
                return Ok(Login::AlreadyCurrent);
            }
            Err(e) if e.class() == Class::MissingProgram => return Err(self.missing(e)),
            _ => {}
        }
        let mut stdin = Vec::with_capacity(token.len() + 1);
        stdin.extend_from_slice(token.expose().as_bytes());
        stdin.push(b'\n');
        let out = child::run(
            self.command(&[
                "auth",
                "login",
                "--hostname",
                host,
                "--git-protocol",
                "https",
                "--with-token",
            ]),
            Some(&stdin),
            self.timeout,
            "gh auth login",
        )
        .await
        .map_err(|e| {
            if e.class() == Class::MissingProgram {
                self.missing(e)
            } else {
                e
            }
        })?;
        let Some(failed) = out.failed("gh auth login") else {
            self.current.insert(host.to_owned(), token.clone());
            return Ok(Login::LoggedIn);
        };
        Err(Error::new(
            classify_failure(&failed.excerpt),
            format!("gh auth login --hostname {host} failed: {}", failed.excerpt),
        )
        .with_source(failed))
    }

    /// Whether gh was found missing (and reported once).
    pub fn is_missing(&self) -> bool {
        self.missing_reported
    }

    fn missing(&mut self, e: Error) -> Error {
        self.missing_reported = true;
        e
    }
}

/// gh exits 1 for every failure, so its message is all there is to classify: a rejected token
/// is `auth`, a network or server problem is `transient`, anything else `protocol`.
pub fn classify_failure(stderr: &str) -> Class {
    let s = stderr.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| s.contains(n));
    if any(&["401", "bad credentials", "missing required scope", "403"]) {
        Class::Auth
    } else if any(&[
        "timeout",
        "timed out",
        "connection",
        "no such host",
        "dial tcp",
        "http 5",
        "eof",
        "tls",
    ]) {
        Class::Transient
    } else {
        Class::Protocol
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_gh_messages() {
        assert_eq!(
            classify_failure(
                "error validating token: HTTP 401: Bad credentials (https://localhost/api/v3/)"
            ),
            Class::Auth
        );
        assert_eq!(
            classify_failure("error validating token: missing required scope 'read:org'"),
            Class::Auth
        );
        assert_eq!(
            classify_failure(
                "error connecting to localhost: dial tcp 127.0.0.1:443: connect: connection refused"
            ),
            Class::Transient
        );
        assert_eq!(classify_failure("HTTP 502: Bad Gateway"), Class::Transient);
        assert_eq!(classify_failure("something new"), Class::Protocol);
    }

    /// A gh that is not installed is its own class, recorded as such, reported once, and no
    /// login failure: the daemon does not retry it on the backoff series.
    #[tokio::test]
    async fn a_missing_gh_is_a_missing_program_not_a_failure() {
        use molecule_credential::cache::Entry;
        use molecule_credential::clock::SystemClock;
        let now = SystemClock.now();
        let mut doc = Document::default();
        doc.entries.insert(
            "github.com".into(),
            Entry::new(
                Secret::new("ghs_current".into()),
                now + time::Duration::hours(1),
                now,
                "platform",
            ),
        );
        let mut gh = Gh::new("/nonexistent/bin/gh");
        let e = gh
            .ensure("github.com", &Secret::new("ghs_current".into()))
            .await
            .unwrap_err();
        assert_eq!(e.class(), Class::MissingProgram);
        assert_eq!(e.class().exit_code(), 69);
        assert!(gh.is_missing());
        let attempts = gh
            .sync(&["github.com".to_owned()], &doc, &SystemClock)
            .await;
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].attempt.class, Class::MissingProgram);
        assert!(!attempts[0].ran, "a missing gh is no login attempt");
        assert_eq!(gh.failures(), 0);
    }
}
