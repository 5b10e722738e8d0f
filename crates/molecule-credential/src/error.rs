//! Failure classes and the error type that carries one end to end.
//!
//! Exit codes, log fields and retry decisions are all derived from [`Class`], never from the
//! text of a message (DESIGN.md, "Failure classes and exit codes").

use std::fmt;
use std::path::Path;
use std::time::Duration;

/// The classified outcome of getting a token. `Ok` is a class too, so that status files and log
/// lines can record every attempt with the same field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// A token was obtained.
    Ok,
    /// 5xx, connect error, timeout: try again later, with backoff.
    Transient,
    /// 429: try again after the server's `Retry-After`.
    RateLimited,
    /// The platform answered something we cannot use (bad JSON, empty token, oversized body).
    Protocol,
    /// 401/403: our bearer is wrong. Retrying soon will not help; do not hammer.
    Auth,
    /// 404: no GitHub App configured for this workspace.
    NotConfigured,
    /// Our own configuration or files are wrong (missing bearer, insecure cache, bad flags).
    LocalConfig,
    /// Bad input on the credential protocol (CR, NUL, a line without `=`).
    BadInput,
    /// A command used in a way it refuses (a token to a terminal without `--reveal`).
    Usage,
    /// Every token source failed.
    Exhausted,
}

impl Class {
    /// The process exit code for this class (sysexits.h numbers, as DESIGN.md fixes them).
    pub fn exit_code(self) -> u8 {
        match self {
            Class::Ok => 0,
            Class::Usage => 64,
            Class::BadInput => 65,
            Class::Exhausted => 69,
            Class::Transient | Class::RateLimited => 75,
            Class::Protocol => 76,
            Class::Auth => 77,
            Class::NotConfigured | Class::LocalConfig => 78,
        }
    }

    /// The `class` label of the refresh counter (DESIGN.md, "Metrics"): the five failure
    /// classes a refresh can end in, `ok`, and, for a local cause (a missing bearer, an
    /// insecure file), `not_configured`, which shares its exit code.
    pub fn metric_label(self) -> &'static str {
        match self {
            Class::Ok => "ok",
            Class::Transient => "transient",
            Class::RateLimited => "rate_limited",
            Class::Protocol => "protocol",
            Class::Auth => "auth",
            Class::NotConfigured
            | Class::LocalConfig
            | Class::BadInput
            | Class::Usage
            | Class::Exhausted => "not_configured",
        }
    }

    /// The class's name as written in logs and status files.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Ok => "ok",
            Class::Transient => "transient",
            Class::RateLimited => "rate-limited",
            Class::Protocol => "protocol",
            Class::Auth => "auth",
            Class::NotConfigured => "not-configured",
            Class::LocalConfig => "local-config",
            Class::BadInput => "bad-input",
            Class::Usage => "usage",
            Class::Exhausted => "exhausted",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with its class. Messages are lower-case, have no trailing period, name the path
/// for filesystem errors, and never contain a token, a bearer or a response body.
#[derive(Debug, Clone)]
pub struct Error {
    class: Class,
    message: String,
    status: Option<u16>,
    retry_after: Option<Duration>,
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `class` described by `message`.
    pub fn new(class: Class, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            status: None,
            retry_after: None,
        }
    }

    /// A filesystem error that names what we were doing and where.
    pub fn io(class: Class, doing: &str, path: &Path, err: &std::io::Error) -> Self {
        Self::new(class, format!("{doing} {}: {err}", path.display()))
    }

    /// Attaches the HTTP status that produced this error.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Attaches the server's `Retry-After`.
    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// The failure class.
    pub fn class(&self) -> Class {
        self.class
    }

    /// The HTTP status, when a server answered.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// How long the server asked us to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The message without the class.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.message)?;
        if let Some(status) = self.status {
            write!(f, " (http {status})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(Class::Ok.exit_code(), 0);
        assert_eq!(Class::Usage.exit_code(), 64);
        assert_eq!(Class::Transient.exit_code(), 75);
        assert_eq!(Class::RateLimited.exit_code(), 75);
        assert_eq!(Class::Protocol.exit_code(), 76);
        assert_eq!(Class::Auth.exit_code(), 77);
        assert_eq!(Class::NotConfigured.exit_code(), 78);
        assert_eq!(Class::LocalConfig.exit_code(), 78);
        assert_eq!(Class::Exhausted.exit_code(), 69);
    }

    #[test]
    fn display_carries_class_and_status() {
        let e = Error::new(Class::Auth, "platform rejected our bearer").with_status(401);
        assert_eq!(
            e.to_string(),
            "auth: platform rejected our bearer (http 401)"
        );
    }
}
