//! Child processes with a deadline: git for `configure` and `doctor`, gh for the daemon and
//! `doctor`, a signer command. Every child gets a timeout and is killed when it runs out; its
//! output is capped; its stderr is only ever shown redacted and shortened.
//!
//! A program that is not there is [`Class::MissingProgram`], whatever runs it; a child that
//! ran and failed is described by [`Failed`], which errors keep as their cause.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::error::{Class, Error, Result};
use crate::logging::redact;

/// Most output kept per stream: a child that prints more is cut off there.
pub const MAX_OUTPUT: u64 = 256 * 1024;

/// What a finished child left behind. Its `Debug` shows the streams' lengths only: a child's
/// output may hold a token (`gh auth token` prints one).
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output (capped).
    pub stdout: Vec<u8>,
    /// Standard error (capped).
    pub stderr: Vec<u8>,
    /// Whether a stream went past the cap (the child was then killed, and the stream cut).
    pub overflowed: bool,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Output {
            status,
            stdout,
            stderr,
            overflowed,
        } = self;
        f.debug_struct("Output")
            .field("status", status)
            .field("stdout", &format_args!("<{} bytes>", stdout.len()))
            .field("stderr", &format_args!("<{} bytes>", stderr.len()))
            .field("overflowed", overflowed)
            .finish()
    }
}

impl Output {
    /// Stderr as one line, redacted and shortened: what errors may quote ([`excerpt`]).
    pub fn stderr_excerpt(&self) -> String {
        excerpt(&self.stderr)
    }

    /// What went wrong with this child, `what` naming it, when it did not succeed.
    pub fn failed(&self, what: &str) -> Option<Failed> {
        (!self.status.success()).then(|| Failed {
            what: what.to_owned(),
            status: self.status,
            excerpt: self.stderr_excerpt(),
        })
    }

    /// This output when the child succeeded, else an error of `class` caused by its
    /// [`Failed`].
    pub fn check(self, class: Class, what: &str) -> Result<Self> {
        match self.failed(what) {
            None => Ok(self),
            Some(failed) => Err(Error::new(class, failed.to_string()).with_source(failed)),
        }
    }
}

/// A child that ran and did not succeed: its exit and the redacted last line of its stderr.
#[derive(Debug, Clone)]
pub struct Failed {
    /// What it was (`git config`, `gh auth login`).
    pub what: String,
    /// How it ended.
    pub status: ExitStatus,
    /// [`Output::stderr_excerpt`].
    pub excerpt: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::os::unix::process::ExitStatusExt;
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => write!(f, "{} exited {code}", self.what)?,
            (None, Some(signal)) => write!(f, "{} was killed by signal {signal}", self.what)?,
            (None, None) => write!(f, "{} failed", self.what)?,
        }
        if !self.excerpt.is_empty() {
            write!(f, ": {}", self.excerpt)?;
        }
        Ok(())
    }
}

impl std::error::Error for Failed {}

/// The error for a child that could not be started: [`Class::MissingProgram`] when the program
/// is not there, local-config otherwise (not executable, no resources); the `io::Error` is
/// kept as the cause.
fn spawn_error(program: &std::ffi::OsStr, what: &str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::new(
            Class::MissingProgram,
            format!(
                "cannot start {what}: {} not found",
                program.to_string_lossy()
            ),
        )
        .with_source(e)
    } else {
        Error::new(Class::LocalConfig, format!("cannot start {what}: {e}")).with_source(e)
    }
}

/// Most characters of an excerpt.
const EXCERPT_CHARS: usize = 200;

/// `bytes` as one line: its non-empty lines joined with ` | `, redacted, and when longer than
/// 200 characters its beginning and end around ` … ` (the headline and the final cause: gh
/// puts its error first and a hint last, a traceback ends with its exception). Redaction comes
/// before the cut, so a cut can never leave a token's body without the prefix that marks it.
pub fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = redact(&text);
    let line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= EXCERPT_CHARS {
        return line;
    }
    let half = EXCERPT_CHARS / 2;
    let head: String = chars[..half].iter().collect();
    let tail: String = chars[chars.len() - (half - 3)..].iter().collect();
    format!("{head} … {tail}")
}

/// Runs `command` with `stdin` (the only way a secret may reach a child), waiting at most
/// `timeout`. The child is killed if it overruns or if this future is dropped.
pub async fn run(
    command: impl Into<Command>,
    stdin: Option<&[u8]>,
    timeout: Duration,
    what: &str,
) -> Result<Output> {
    run_capped(command, stdin, timeout, MAX_OUTPUT, what).await
}

/// [`run`] keeping at most `cap` bytes of each stream: a child that prints more is killed at
/// once (rather than left blocked on a full pipe until the deadline), and its output is
/// marked [`Output::overflowed`].
pub async fn run_capped(
    command: impl Into<Command>,
    stdin: Option<&[u8]>,
    timeout: Duration,
    cap: u64,
    what: &str,
) -> Result<Output> {
    let mut command: Command = command.into();
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| spawn_error(command.as_std().get_program(), what, e))?;
    let mut input = child.stdin.take();
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let body = async {
        let feed = async {
            if let (Some(pipe), Some(bytes)) = (input.as_mut(), stdin) {
                // A child that exits without reading its input is its own business.
                let _ = pipe.write_all(bytes).await;
                let _ = pipe.shutdown().await;
            }
            drop(input.take());
        };
        let ((), read) = tokio::join!(feed, read_capped(&mut child, &mut out, &mut err, cap));
        let (stdout, stderr, overflowed) = read.map_err(|e| {
            Error::new(Class::LocalConfig, format!("reading {what}'s output: {e}")).with_source(e)
        })?;
        let status = child.wait().await.map_err(|e| {
            Error::new(Class::LocalConfig, format!("waiting for {what}: {e}")).with_source(e)
        })?;
        Ok(Output {
            status,
            stdout,
            stderr,
            overflowed,
        })
    };
    match tokio::time::timeout(timeout, body).await {
        Ok(result) => result,
        Err(_) => Err(Error::new(
            Class::Transient,
            format!(
                "{what} did not finish within {}s and was killed",
                timeout.as_secs()
            ),
        )),
    }
}

/// Reads both streams of `child`, at most `cap` bytes each. A stream that goes past the cap
/// gets the child killed at once, and the other stream is read no further: the child (or a
/// process it started, which a kill does not reach) may be blocked on a full pipe and would
/// never close it. Returns the streams and whether one overflowed.
async fn read_capped(
    child: &mut tokio::process::Child,
    out: &mut (impl tokio::io::AsyncRead + Unpin),
    err: &mut (impl tokio::io::AsyncRead + Unpin),
    cap: u64,
) -> std::io::Result<(Vec<u8>, Vec<u8>, bool)> {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    // One byte past the cap tells a stream that overflowed from one that filled it.
    let past = |read: std::io::Result<usize>| read.map(|n| n as u64 > cap);
    let overflowed = {
        let mut out_capped = out.take(cap + 1);
        let mut err_capped = err.take(cap + 1);
        let read_out = out_capped.read_to_end(&mut stdout);
        let read_err = err_capped.read_to_end(&mut stderr);
        tokio::pin!(read_out, read_err);
        let (first, out_first) = tokio::select! {
            read = &mut read_out => (past(read)?, true),
            read = &mut read_err => (past(read)?, false),
        };
        first
            || if out_first {
                past(read_err.await)?
            } else {
                past(read_out.await)?
            }
    };
    if overflowed {
        // Already exited, or gone by the time it is waited for; what it started gets EPIPE.
        let _ = child.start_kill();
    }
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    stdout.truncate(cap);
    stderr.truncate(cap);
    Ok((stdout, stderr, overflowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> std::process::Command {
        let mut c = std::process::Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    /// `sh -c script` to the end, with no input.
    async fn finished(script: &str) -> Output {
        run(sh(script), None, Duration::from_secs(5), "sh")
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn feeds_stdin_and_captures_output() {
        let out = run(
            sh("read x; echo \"got $x\"; echo oops >&2; exit 3"),
            Some(b"ghs_abc\n"),
            Duration::from_secs(5),
            "sh",
        )
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"got ghs_abc\n");
        assert_eq!(out.stderr_excerpt(), "oops");
    }

    #[tokio::test]
    async fn times_out_and_kills() {
        let start = std::time::Instant::now();
        let e = run(sh("sleep 30"), None, Duration::from_millis(200), "sleeper")
            .await
            .unwrap_err();
        assert_eq!(e.class(), Class::Transient);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_missing_program_has_its_own_class_and_keeps_its_cause() {
        use std::error::Error as _;
        let e = run(
            std::process::Command::new("/nonexistent/gh"),
            None,
            Duration::from_secs(1),
            "gh auth token",
        )
        .await
        .unwrap_err();
        assert_eq!(e.class(), Class::MissingProgram);
        assert_eq!(
            e.message(),
            "cannot start gh auth token: /nonexistent/gh not found"
        );
        let cause = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(
            cause.map(std::io::Error::kind),
            Some(std::io::ErrorKind::NotFound)
        );
        // Found but not executable: a local problem, not a missing program.
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("gh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let e = run(
            std::process::Command::new(&script),
            None,
            Duration::from_secs(1),
            "gh",
        )
        .await
        .unwrap_err();
        assert_eq!(e.class(), Class::LocalConfig, "{e}");
    }

    #[tokio::test]
    async fn a_failed_child_is_the_cause_of_its_error() {
        use std::error::Error as _;
        let out = finished("echo 'fatal: ghs_SECRET is bad' >&2; exit 4").await;
        let e = out.check(Class::Protocol, "the script").unwrap_err();
        assert_eq!(
            e.to_string(),
            "protocol: the script exited 4: fatal: ghs_[REDACTED] is bad"
        );
        let failed = e
            .source()
            .and_then(|s| s.downcast_ref::<Failed>())
            .expect("the exit is kept");
        assert_eq!(failed.status.code(), Some(4));
        let killed = finished("kill -9 $$").await;
        assert_eq!(
            killed.failed("sh").map(|f| f.to_string()).as_deref(),
            Some("sh was killed by signal 9")
        );
        let fine = finished("true").await;
        assert!(fine.check(Class::Protocol, "true").is_ok());
    }

    #[tokio::test]
    async fn debug_shows_lengths_not_output() {
        let out = finished("echo ghs_SECRET; echo ghs_SECRET >&2").await;
        let shown = format!("{out:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("stdout: <11 bytes>"), "{shown}");
    }

    #[tokio::test]
    async fn a_child_printing_past_the_cap_is_cut_and_killed() {
        let start = std::time::Instant::now();
        let out = run_capped(sh("yes"), None, Duration::from_secs(20), 4096, "yes")
            .await
            .unwrap();
        assert!(out.overflowed);
        assert_eq!(out.stdout.len(), 4096);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "not left to the deadline"
        );
        let out = run_capped(sh("printf 1234"), None, Duration::from_secs(5), 4, "printf")
            .await
            .unwrap();
        assert!(!out.overflowed, "exactly the cap is not past it");
        assert_eq!(out.stdout, b"1234");
    }

    #[test]
    fn excerpt_is_one_redacted_line() {
        assert_eq!(
            excerpt(b"first\n\n  error: bad token ghs_abcdef \n\n"),
            "first | error: bad token ghs_[REDACTED]"
        );
        // gh 2.23 on a refused token: the cause first, a hint last.
        assert_eq!(
            excerpt(
                b"error validating token: HTTP 401: Bad credentials (https://localhost/api/v3/)\n\
                  Try authenticating with:  gh auth login\n"
            ),
            "error validating token: HTTP 401: Bad credentials (https://localhost/api/v3/) | \
             Try authenticating with:  gh auth login"
        );
    }

    #[test]
    fn a_long_excerpt_keeps_both_ends_and_no_piece_of_a_token() {
        // A 2026 token (~520 characters with `.`, `_`, `-`) in the middle of a long message:
        // cut first and redacted after, the end would have kept its body without its prefix.
        let token = format!("ghs_{}", "aB3._-xY9".repeat(58));
        let text = format!(
            "error: {} refused {token} because {}: the end",
            "x".repeat(80),
            "y".repeat(200)
        );
        let e = excerpt(text.as_bytes());
        assert_eq!(e.chars().count(), 200);
        assert!(
            e.starts_with("error: xxx") && e.ends_with("yyy: the end"),
            "{e}"
        );
        for i in 4..token.len() - 20 {
            assert!(
                !e.contains(&token[i..i + 20]),
                "a piece of the token in {e}"
            );
        }
        let e = excerpt(format!("{}{token}", "z".repeat(150)).as_bytes());
        assert!(e.ends_with("ghs_[REDACTED]"), "{e}");
    }
}
