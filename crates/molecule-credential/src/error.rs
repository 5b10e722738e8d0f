//! Failure classes and the error type that carries one end to end.
//!
//! Exit codes, log fields and retry decisions are all derived from [`Class`], never from the
//! text of a message (DESIGN.md, "Failure classes and exit codes"): [`Class::exit_code`] is the
//! only place an exit code is decided for a failure.
//!
//! An [`Error`] keeps what caused it ([`std::error::Error::source`]): the `io::Error` of a file
//! or a child that could not start, a child's [`crate::child::Failed`] exit, a request's
//! `reqwest::Error` (without its URL), a JSON error reduced to its position. Its `Display` is
//! the whole one-line report, written for people: the class and a message that already says,
//! redacted, what the cause said. Reporters print that line and do not walk the chain; the
//! chain is for code that must tell causes apart, and for a debugger.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
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
    /// A program we run is not installed, or not on PATH: git for `configure`, gh for the
    /// daemon's login, a signer command. Installing it is the fix; no setting is wrong.
    MissingProgram,
}

impl Class {
    /// The process exit code for this class (sysexits.h numbers, as DESIGN.md fixes them).
    pub fn exit_code(self) -> u8 {
        match self {
            Class::Ok => 0,
            Class::Usage => 64,
            Class::BadInput => 65,
            // EX_UNAVAILABLE: "a service is unavailable; a support program or file does not
            // exist". Every source failing is that same condition seen from the caller: nothing
            // in the call or in the configuration is wrong, what it depends on is not there.
            Class::Exhausted | Class::MissingProgram => 69,
            Class::Transient | Class::RateLimited => 75,
            Class::Protocol => 76,
            Class::Auth => 77,
            Class::NotConfigured | Class::LocalConfig => 78,
        }
    }

    /// The `class` label of the refresh counter (DESIGN.md, "Metrics"): the five failure
    /// classes a refresh can end in, `ok`, and, for a local cause (a missing bearer, an
    /// insecure file, a signer program that is not installed), `not_configured`: fixed by
    /// changing this machine's setup, like a source that is not configured.
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
            | Class::MissingProgram
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
            Class::MissingProgram => "missing-program",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What caused an [`Error`]; shared, so that errors stay `Clone`.
type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// An error with its class and its cause. Messages are lower-case, have no trailing period,
/// name the path for filesystem errors, and never contain a token, a bearer or a response
/// body; neither does a cause (see the module docs for what is kept).
#[derive(Debug, Clone)]
pub struct Error {
    class: Class,
    message: String,
    status: Option<u16>,
    retry_after: Option<Duration>,
    source: Option<Source>,
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
            source: None,
        }
    }

    /// A filesystem error that names what we were doing and where, caused by `err`.
    pub fn io(class: Class, doing: &str, path: &Path, err: &std::io::Error) -> Self {
        Self::new(class, format!("{doing} {}: {err}", path.display())).with_source(copy_io(err))
    }

    /// Attaches what caused this error. The cause must hold no secret: its text is not
    /// redacted by whoever walks the chain.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
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

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// An owned copy of a borrowed `io::Error` (which is not `Clone`) with the same kind and OS
/// error number, so a cause can be kept where only a reference was at hand.
pub fn copy_io(err: &std::io::Error) -> std::io::Error {
    match err.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(err.kind(), err.to_string()),
    }
}

/// A JSON parse error reduced to what is safe to keep: serde_json's own message can quote the
/// offending value, which may be a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonPosition {
    /// serde_json's category (syntax, data, end of input, I/O).
    pub category: serde_json::error::Category,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl From<&serde_json::Error> for JsonPosition {
    fn from(e: &serde_json::Error) -> Self {
        Self {
            category: e.classify(),
            line: e.line(),
            column: e.column(),
        }
    }
}

impl fmt::Display for JsonPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} error at line {}, column {}",
            self.category, self.line, self.column
        )
    }
}

impl std::error::Error for JsonPosition {}

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
        assert_eq!(Class::MissingProgram.exit_code(), 69);
    }

    #[test]
    fn causes_stay_attached() {
        use std::error::Error as _;
        let io = std::io::Error::from_raw_os_error(libc::EACCES);
        let e = Error::io(Class::LocalConfig, "reading", Path::new("/x/y"), &io);
        assert_eq!(
            e.to_string(),
            "local-config: reading /x/y: Permission denied (os error 13)"
        );
        let cause = e
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .expect("the io error is kept");
        assert_eq!(cause.raw_os_error(), Some(libc::EACCES));
        assert_eq!(cause.kind(), std::io::ErrorKind::PermissionDenied);
        // Cloning keeps the cause; wrapping keeps the whole chain.
        let outer = Error::new(Class::LocalConfig, "opening the cache").with_source(e.clone());
        let inner = outer
            .source()
            .and_then(|s| s.downcast_ref::<Error>())
            .expect("an Error can be a cause");
        assert!(inner.source().is_some());
        assert!(Error::new(Class::Auth, "x").source().is_none());
    }

    #[test]
    fn json_causes_keep_the_position_not_the_value() {
        let parsed = serde_json::from_str::<u64>(r#""ghs_SECRET""#).unwrap_err();
        assert!(
            parsed.to_string().contains("ghs_SECRET"),
            "serde_json quotes it"
        );
        let kept = JsonPosition::from(&parsed);
        assert_eq!(kept.to_string(), "Data error at line 1, column 12");
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
