//! The git protocol actions: `get`, `store`, `erase` (DESIGN.md, "The credential protocol").

use std::io::{BufRead, Write};

use std::sync::Arc;

use molecule_credential::broker::{Broker, Served};
use molecule_credential::cache::{Entry, SOURCE_FALLBACK};
use molecule_credential::clock::{Clock, SystemClock};
use molecule_credential::config::Config;
use molecule_credential::protocol::{Answer, read_request, write_answer};
use molecule_credential::route::{Target, target};
use molecule_credential::source::Source;
use molecule_credential::store::CacheDir;
use molecule_credential::{Error, Secret};
use time::OffsetDateTime;

use crate::write_error;

/// The username installation tokens go with.
pub const USERNAME: &str = "x-access-token";

/// A token ready to hand out, with the expiry git should be told.
#[derive(Debug)]
pub struct Token {
    /// The token.
    pub token: Secret<String>,
    /// `password_expiry_utc`: expiry minus margin when fresh, the real expiry when degraded,
    /// `None` for the fallback (unknown).
    pub expiry: Option<OffsetDateTime>,
    /// When the token dies; `None` for the fallback (unknown).
    pub expires_at: Option<OffsetDateTime>,
    /// The cache's source name (`platform`, `github-app`) or `fallback`.
    pub source: String,
}

impl Token {
    /// A fresh token: git is told to drop it `margin` before it dies, so neither git nor any
    /// storage helper replays it past that point.
    fn fresh(entry: Entry, config: &Config) -> Self {
        Self {
            expiry: Some(entry.expires_at - config.margin),
            expires_at: Some(entry.expires_at),
            source: entry.source,
            token: entry.token,
        }
    }

    /// A token inside the margin: git is told its real expiry, so it drops it the moment it
    /// dies.
    fn degraded(entry: Entry) -> Self {
        Self {
            expiry: Some(entry.expires_at),
            expires_at: Some(entry.expires_at),
            source: entry.source,
            token: entry.token,
        }
    }
}

/// Runs the whole source order for `target` (the cache, a single-flight mint, then a degraded
/// or fallback answer) and says on stderr when the answer is degraded or the fallback. The
/// source is built only if a mint is needed.
pub fn obtain(config: &Config, target: &Target) -> Result<Token, Error> {
    let cache = CacheDir::open(&config.cache_dir)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let broker = Broker::new(Arc::new(config.clone()), cache, clock.clone());
    let key = target.key();
    let served = broker.obtain(&key, |cached| {
        Source::new(config)?.mint_blocking(config, target, cached, || clock.now())
    })?;
    Ok(match served {
        Served::Fresh(entry) => Token::fresh(entry, config),
        Served::Degraded { entry, cause } => {
            let left = (entry.expires_at - clock.now()).whole_seconds().max(0);
            match cause {
                Some(cause) => tracing::warn!(
                    host = %key,
                    "serving a token that expires in {left}s because the refresh failed: {cause}"
                ),
                None => tracing::debug!(
                    host = %key,
                    "serving a token that expires in {left}s: another process is refreshing, or the source answered one this close to expiry"
                ),
            }
            Token::degraded(entry)
        }
        Served::Fallback { fallback, cause } => {
            tracing::warn!(
                host = %key,
                class = %cause.class(),
                "the token source failed ({cause}); serving the fallback token from {}",
                fallback.origin
            );
            Token {
                token: fallback.token,
                expiry: None,
                expires_at: None,
                source: SOURCE_FALLBACK.to_owned(),
            }
        }
    })
}

/// `get`: answer from the cache, minting on a miss; print nothing for requests not ours.
///
/// The hot path is the first few lines: parse, route, read `tokens.json`, answer. Only when
/// that cannot answer does it call `start_logging` and run the source order.
pub fn get(
    config: &Config,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    start_logging: &dyn Fn(),
) -> Result<(), Error> {
    let request = read_request(input)?;
    let Some(target) = target(config, &request) else {
        return Ok(());
    };
    let cache = CacheDir::open(&config.cache_dir)?;
    let now = SystemClock.now();
    let token = match cache.entry(&target.key())? {
        Some(entry) if entry.is_fresh(now, config.margin) => Token::fresh(entry, config),
        _ => {
            start_logging();
            obtain(config, &target)?
        }
    };
    let Token { token, expiry, .. } = token;
    write_answer(
        out,
        &Answer {
            username: USERNAME,
            password: &token,
            password_expiry_utc: expiry.map(OffsetDateTime::unix_timestamp),
            ephemeral: request.has_capability("authtype"),
        },
    )
    .map_err(|e| write_error(&e))
}

/// `store`: the cache is ours and only holds what a source minted, so there is nothing to
/// store; the input is still checked so bad input is reported the same way for every action.
pub fn store(input: &mut dyn BufRead) -> Result<(), Error> {
    read_request(input).map(drop)
}

/// `erase`: a server rejected a credential. If it is the token we cache for that request's
/// host (and owner), mark it suspect so it is never served from the cache again; any other
/// credential changes nothing.
pub fn erase(config: &Config, input: &mut dyn BufRead) -> Result<(), Error> {
    let request = read_request(input)?;
    let (Some(target), Some(presented)) = (target(config, &request), request.presented_token())
    else {
        return Ok(());
    };
    let cache = CacheDir::open(&config.cache_dir)?;
    if cache.mark_suspect(&target.key(), &presented)? {
        tracing::info!(host = %target.key(), "a server rejected the cached token; it will not be served again");
    }
    Ok(())
}
