//! Logs on stderr, text or JSON, with token-shaped strings redacted on the way out.
//!
//! Redaction is the second line of defence: [`crate::secret::Secret`] keeps tokens out of
//! log calls in the first place; this layer rewrites any `ghs_…`, `ghp_…`, `gho_…`, `ghu_…`,
//! `ghr_…` or `github_pat_…` that slips through anyway (from a dependency's error, say).
//! The panic hook does the same for panic messages.

use std::borrow::Cow;
use std::io::{self, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

use crate::config::{Config, LogFormat};

/// Prefixes of GitHub token formats.
pub const TOKEN_PREFIXES: [&str; 6] = ["github_pat_", "ghs_", "ghp_", "gho_", "ghu_", "ghr_"];
/// What a redacted token's body becomes.
pub const REDACTED: &str = "[REDACTED]";

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// Replaces the body of every token-shaped string in `text`, of any length, keeping the
/// prefix so a reader still sees which kind of token was there.
pub fn redact(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let hit = TOKEN_PREFIXES
            .iter()
            .find(|p| bytes[i..].starts_with(p.as_bytes()));
        let Some(prefix) = hit else {
            i += 1;
            continue;
        };
        let body_start = i + prefix.len();
        let mut end = body_start;
        while end < bytes.len() && is_token_byte(bytes[end]) {
            end += 1;
        }
        if end > body_start {
            let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
            // Prefixes are ASCII, so these are char boundaries.
            o.push_str(&text[copied..body_start]);
            o.push_str(REDACTED);
            copied = end;
        }
        i = end.max(i + 1);
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            Cow::Owned(o)
        }
    }
}

/// How a binary's log lines look in text form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// The credential helper: its stderr lands in the user's terminal mid-`git push`, so no
    /// timestamps or targets, just the level and the message.
    Terse,
    /// The daemon: RFC 3339 UTC timestamps, for log collectors.
    Timestamped,
}

/// Buffers one event and writes it redacted, in one write, when dropped.
pub struct RedactingWriter {
    buf: Vec<u8>,
}

impl Write for RedactingWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactingWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        // Nowhere to report a failed write to stderr.
        let _ = io::stderr().lock().write_all(redact(&text).as_bytes());
    }
}

/// Makes a [`RedactingWriter`] per event.
#[derive(Clone, Copy, Debug, Default)]
pub struct RedactingStderr;

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            buf: Vec::with_capacity(256),
        }
    }
}

struct UtcRfc3339;

impl FormatTime for UtcRfc3339 {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = time::OffsetDateTime::now_utc();
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        match now.format(&format) {
            Ok(s) => w.write_str(&s),
            Err(_) => write!(w, "{}", now.unix_timestamp()),
        }
    }
}

/// Installs the global subscriber: `MOLECULE_LOG` filter, `MOLECULE_LOG_FORMAT`, redacted
/// stderr. Returns a warning when the filter did not parse (the caller logs it once logging
/// works). Calling it twice keeps the first subscriber.
pub fn init(config: &Config, style: Style) -> Option<String> {
    let (filter, warning) = match EnvFilter::try_new(&config.log_filter) {
        Ok(f) => (f, None),
        Err(_) => (
            EnvFilter::new("info"),
            Some("MOLECULE_LOG is not a valid log filter; using info".to_owned()),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingStderr)
        .with_ansi(false);
    let result = match (config.log_format, style) {
        (LogFormat::Json, _) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_timer(UtcRfc3339)
            .try_init(),
        (LogFormat::Text, Style::Timestamped) => builder.with_timer(UtcRfc3339).try_init(),
        (LogFormat::Text, Style::Terse) => builder.without_time().with_target(false).try_init(),
    };
    // Err: a subscriber is already installed (tests); the first one stays.
    let _ = result;
    warning
}

/// Replaces the panic message printer with one that redacts and says which binary failed.
/// With `panic = "abort"` in release builds this is the last thing a panicking process says.
pub fn install_panic_hook(binary: &'static str) {
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let line = format!("{binary}: internal error: {message}{location}\n");
        let _ = io::stderr().write_all(redact(&line).as_bytes());
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_token_shape_of_any_length() {
        let long = format!("ghs_{}", "aB3._-".repeat(90));
        let text =
            format!("a ghs_x1 b ghp_ABC c gho_1 d ghu_z e ghr_q f github_pat_11AA_bb g {long} h");
        assert_eq!(
            redact(&text),
            "a ghs_[REDACTED] b ghp_[REDACTED] c gho_[REDACTED] d ghu_[REDACTED] e ghr_[REDACTED] f github_pat_[REDACTED] g ghs_[REDACTED] h"
        );
    }

    /// A stateless installation token as GitHub issues them from 2026: `ghs_` and ~516
    /// characters of a signed blob, with `.`, `_` and `-`.
    fn stateless_token(prefix: &str) -> String {
        let body: String = (0..516u32)
            .map(|i| char::from(b"eyJhbGciOiJSUzI1NiJ9.x_Y-z0AbQ"[(i * 7 % 30) as usize]))
            .collect();
        format!("{prefix}{body}")
    }

    #[test]
    fn no_twenty_character_piece_of_a_2026_token_survives_in_any_context() {
        for prefix in TOKEN_PREFIXES {
            let t = stateless_token(prefix);
            assert!(t.len() > 500);
            for text in [
                t.clone(),
                format!("token {t} refused"),
                format!(r#"{{"token":"{t}","expires_at":null}}"#),
                format!("https://x-access-token:{t}@github.com/acme/app.git"),
                format!("Authorization: Bearer {t}\r\n"),
                format!("GH_TOKEN={t}\nGITHUB_TOKEN={t}\n"),
                format!("('{t}'), <{t}>, [{t}]; {t}."),
                format!("{t},{t} {t}"),
                format!("error validating token: HTTP 401: Bad credentials: {t} (https://x/)"),
            ] {
                let out = redact(&text);
                let body = &t[prefix.len()..];
                for i in 0..body.len() - 20 {
                    assert!(
                        !out.contains(&body[i..i + 20]),
                        "{prefix}: a piece at {i} survived in {out}"
                    );
                }
                assert!(out.contains(&format!("{prefix}{REDACTED}")), "{out}");
            }
        }
    }

    #[test]
    fn leaves_other_text_alone() {
        assert!(matches!(
            redact("nothing here, ghs_ alone"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            redact("\"token\":\"ghs_abc\"}"),
            "\"token\":\"ghs_[REDACTED]\"}"
        );
        assert_eq!(redact("ghs_abc\n"), "ghs_[REDACTED]\n");
        assert_eq!(redact("é ghs_é"), "é ghs_é");
    }
}
