//! A token as a source hands it over: [`Minted`], read from the `{"token", "expires_at"}` shape
//! the platform, GitHub and the file source share, with its expiry corrected for clock skew
//! and capped.
//!
//! Messages never quote the body: a body may carry a token.

use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

use crate::clock::parse_rfc3339;
use crate::error::{Class, Error, JsonPosition, Result};
use crate::http::RawResponse;
use crate::secret::{Secret, is_valid_token};

/// How long we cache a token whose `expires_at` is missing or unparseable.
pub const UNKNOWN_EXPIRY_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// The longest we trust any token to live: GitHub installation tokens live one hour, so a
/// later `expires_at` (a platform bug, or year 2999) is capped and we ask again in an hour.
pub const MAX_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// A token a source handed us.
#[derive(Clone, Debug)]
pub struct Minted {
    /// The token.
    pub token: Secret<String>,
    /// When we treat it as dead: the source's `expires_at`, corrected for clock skew and capped.
    pub expires_at: OffsetDateTime,
    /// False when the source gave no usable expiry and [`UNKNOWN_EXPIRY_LIFETIME`] was assumed.
    pub expiry_known: bool,
    /// The HTTP status of the answer (`None` for a source that is not HTTP: the file source).
    pub status: Option<u16>,
    /// The GitHub App installation that minted it (the `github-app` source).
    pub installation_id: Option<u64>,
}

#[derive(Deserialize)]
struct TokenBody {
    token: Option<String>,
    expires_at: Option<String>,
}

/// Reads `{"token": …, "expires_at": …}` from a successful answer. `who` names the source in
/// messages.
pub fn parse_token_body(response: &RawResponse, now: OffsetDateTime, who: &str) -> Result<Minted> {
    let status = response.status;
    let Some(body) = &response.body else {
        return Err(Error::new(
            Class::Protocol,
            format!("{who}'s answer is larger than 64 KiB"),
        )
        .with_status(status));
    };
    let mut minted =
        parse_token_json(body, now, response.date, who).map_err(|e| e.with_status(status))?;
    minted.status = Some(status);
    Ok(minted)
}

/// Reads `{"token": …, "expires_at": …}` (other keys ignored), the shape the platform, GitHub
/// and the file source share. `server_date` is the answer's `Date`, for clock skew. Errors
/// are class protocol and never quote the body.
pub fn parse_token_json(
    body: &[u8],
    now: OffsetDateTime,
    server_date: Option<OffsetDateTime>,
    who: &str,
) -> Result<Minted> {
    let fail = |message: String| Err(Error::new(Class::Protocol, message));
    let parsed: TokenBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        // Only the position: serde's message may quote the body.
        Err(e) => {
            return Err(Error::new(
                Class::Protocol,
                format!(
                    "{who}'s answer is not the expected JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
            .with_source(JsonPosition::from(&e)));
        }
    };
    let token = match parsed.token {
        Some(t) => checked_token(t, who)?,
        None => return fail(format!("{who}'s answer has no token")),
    };
    let expires_at = parsed.expires_at.as_deref().and_then(parse_rfc3339);
    minted(token, expires_at, now, server_date, who)
}

/// `token` if it can be handed to git and gh as is; else why not (never quoting it).
pub fn checked_token(token: String, who: &str) -> Result<Secret<String>> {
    if is_valid_token(&token) {
        Ok(Secret::new(token))
    } else if token.is_empty() {
        Err(Error::new(
            Class::Protocol,
            format!("{who} answered an empty token"),
        ))
    } else {
        Err(Error::new(
            Class::Protocol,
            format!("{who}'s token has characters a token cannot have"),
        ))
    }
}

/// A minted token with the expiry we act on: `expires_at` corrected for skew and capped at
/// [`MAX_LIFETIME`], or [`UNKNOWN_EXPIRY_LIFETIME`] from `now` when the source gave none.
pub fn minted(
    token: Secret<String>,
    expires_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
    server_date: Option<OffsetDateTime>,
    who: &str,
) -> Result<Minted> {
    let (expires_at, expiry_known) = match expires_at {
        Some(at) => (effective_expiry(at, now, server_date), true),
        None => (now + UNKNOWN_EXPIRY_LIFETIME, false),
    };
    if expires_at <= now {
        return Err(Error::new(
            Class::Protocol,
            format!("{who} answered a token that has already expired"),
        ));
    }
    Ok(Minted {
        token,
        expires_at: expires_at
            .min(now.saturating_add(MAX_LIFETIME.try_into().unwrap_or(time::Duration::HOUR))),
        expiry_known,
        status: None,
        installation_id: None,
    })
}

/// The expiry we act on. With the server's `Date` we can tell how long the token has left by
/// the server's clock; whichever clock is wrong, acting on the earlier of the two readings
/// never serves a dead token. (Checked arithmetic: a server whose clock reads 1970 and a
/// token "expiring" in 9999 must not overflow.)
pub fn effective_expiry(
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
    server_date: Option<OffsetDateTime>,
) -> OffsetDateTime {
    match server_date.and_then(|date| now.checked_add(expires_at - date)) {
        Some(by_server) => expires_at.min(by_server),
        None => expires_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        parse_rfc3339("2026-11-22T18:00:00Z").unwrap()
    }

    #[test]
    fn skew_takes_the_earlier_reading() {
        let exp = parse_rfc3339("2026-11-22T19:00:00Z").unwrap();
        // Server clock 10 minutes ahead of ours: by its clock 50 minutes are left.
        let server = Some(parse_rfc3339("2026-11-22T18:10:00Z").unwrap());
        assert_eq!(
            effective_expiry(exp, now(), server),
            parse_rfc3339("2026-11-22T18:50:00Z").unwrap()
        );
        // Server clock behind ours: our own reading is the earlier one.
        let server = Some(parse_rfc3339("2026-11-22T17:50:00Z").unwrap());
        assert_eq!(effective_expiry(exp, now(), server), exp);
        assert_eq!(effective_expiry(exp, now(), None), exp);
    }
}
