//! The configured token source — the Molecule platform, a GitHub App or a token file — as one
//! value that mints and revokes (DESIGN.md, "Token sources, in order", step 2).
//!
//! Building a [`Source`] costs an HTTP client (and, for the App, reading its key): the helper
//! builds one only on a cache miss, the daemon once at start, `status` never.

use std::time::Duration;

use time::OffsetDateTime;

use crate::cache::{Entry, SOURCE_FILE, SOURCE_GITHUB_APP, SOURCE_PLATFORM};
use crate::config::{Config, TokenSourceKind};
use crate::error::Result;
use crate::file_source::FileSource;
use crate::github_app::AppClient;
use crate::http::OVERRUN;
use crate::platform::PlatformClient;
use crate::route::{Target, known_installation};
use crate::secret::Secret;
use crate::store::TOKENS_LOCK_WAIT;
use crate::token::Minted;

/// HTTP calls one GitHub App mint can take at most: discovery (`/orgs/…`, then `/users/…`)
/// and the mint itself, each retried once after a JWT refused for its time claims.
const APP_CALLS: u32 = 6;

/// The `source` name recorded in the cache for tokens from the configured source.
pub fn name(config: &Config) -> &'static str {
    match config.token_source {
        TokenSourceKind::Platform => SOURCE_PLATFORM,
        TokenSourceKind::GithubApp => SOURCE_GITHUB_APP,
        TokenSourceKind::File => SOURCE_FILE,
    }
}

/// The longest one whole mint by the configured source can take, including the write that
/// follows it: how long a process waits on `refresh.lock` before it presumes the holder stuck
/// (DESIGN.md, `refresh.lock`).
pub fn budget(config: &Config) -> Duration {
    let call = config.http_timeout + OVERRUN;
    let calls = match config.token_source {
        TokenSourceKind::Platform => call,
        // A signer may sign for each call (a JWT refused for its time claims is signed anew).
        TokenSourceKind::GithubApp => match config.github_app.signer {
            Some(_) => (call + crate::github_app::signer::DEADLINE) * APP_CALLS,
            None => call * APP_CALLS,
        },
        // A file read: no network call, only the write that follows it.
        TokenSourceKind::File => Duration::ZERO,
    };
    calls + TOKENS_LOCK_WAIT + Duration::from_secs(1)
}

/// The primary token source.
#[derive(Debug)]
pub enum Source {
    /// The Molecule platform endpoint.
    Platform(PlatformClient),
    /// A GitHub App, minting directly (boxed: its key pair dwarfs the platform client).
    App(Box<AppClient>),
    /// A token file another system keeps fresh.
    File(FileSource),
}

impl Source {
    /// The source `config` selects.
    pub fn new(config: &Config) -> Result<Self> {
        Ok(match config.token_source {
            TokenSourceKind::Platform => Source::Platform(PlatformClient::new(config)?),
            TokenSourceKind::GithubApp => Source::App(Box::new(AppClient::new(config)?)),
            TokenSourceKind::File => {
                Source::File(FileSource::new(config.token_source_file.as_deref())?)
            }
        })
    }

    /// Mints a token for `target`. `cached` is what the cache holds for it (its installation
    /// is remembered, so discovery runs once per owner). `now` is read after each answer.
    pub async fn mint(
        &self,
        config: &Config,
        target: &Target,
        cached: Option<&Entry>,
        now: impl Fn() -> OffsetDateTime,
    ) -> Result<Minted> {
        match self {
            Source::Platform(client) => client.fetch(now).await,
            Source::File(file) => file.read(cached, now()),
            Source::App(client) => {
                let api = config.github_app.api_base(&target.host);
                let installation = match known_installation(config, target, cached)? {
                    Some(id) => id,
                    None => {
                        let owner = target
                            .owner
                            .as_deref()
                            .expect("only an owner's installation is discovered");
                        client.discover(&api, owner, &now).await?
                    }
                };
                client.mint(&api, installation, now).await
            }
        }
    }

    /// Revokes `token`, minted for `target`, if this source can: `Ok(false)` when it cannot.
    /// A platform token is the workspace's, shared with every holder in it, and a file's is the
    /// minting engine's, shared with every pod reading it: neither is ever revoked.
    pub async fn revoke(
        &self,
        config: &Config,
        target: &Target,
        token: &Secret<String>,
    ) -> Result<bool> {
        match self {
            Source::App(client) => {
                client
                    .revoke(&config.github_app.api_base(&target.host), token)
                    .await?;
                Ok(true)
            }
            // A platform token is the workspace's, a file's belongs to whoever minted it.
            Source::Platform(_) | Source::File(_) => Ok(false),
        }
    }

    /// [`Source::mint`] for synchronous callers, on a runtime of its own for this one call.
    pub fn mint_blocking(
        &self,
        config: &Config,
        target: &Target,
        cached: Option<&Entry>,
        now: impl Fn() -> OffsetDateTime,
    ) -> Result<Minted> {
        crate::block_on(self.mint(config, target, cached, now))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_allows_the_whole_mint() {
        let platform =
            Config::load(|k| (k == "MOLECULE_HTTP_TIMEOUT_SEC").then(|| "2".into())).config;
        assert_eq!(budget(&platform), Duration::from_millis(2250 + 2000));
        let app = Config::load(|k| match k {
            "MOLECULE_HTTP_TIMEOUT_SEC" => Some("2".into()),
            "MOLECULE_TOKEN_SOURCE" => Some("github-app".into()),
            _ => None,
        })
        .config;
        // Discovery and the mint, each with its skew retry: six calls.
        assert_eq!(budget(&app), Duration::from_millis(6 * 2250 + 2000));
        // And a signer's 10 s for each.
        let mut signed = app.clone();
        signed.github_app.signer = Some(Secret::new("vault write …".into()));
        assert_eq!(budget(&signed), Duration::from_millis(6 * 12_250 + 2000));
        assert_eq!(name(&platform), "platform");
        assert_eq!(name(&app), "github-app");
    }
}
