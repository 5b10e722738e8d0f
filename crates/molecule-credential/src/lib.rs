//! The domain of the Molecule credential layer, shared by `git-credential-molecule` (git's
//! credential helper) and `gh-token-refresh` (the refresh sidecar).
//!
//! The contract is `DESIGN.md`: names, variables, files and exit codes are fixed there.
//! Each module owns one noun of it:
//!
//! - [`config`]: every environment variable, read once; flags override.
//! - [`protocol`]: git's credential protocol, parsed strictly.
//! - [`store`]: `tokens.json` and its locks; atomic, compare-and-swap writes; permission checks.
//! - [`platform`]: the platform endpoint and the classification of its every answer.
//! - [`fallback`]: `GH_TOKEN`, `GITHUB_TOKEN`, then the fallback file.
//! - [`github_app`]: the `github-app` source (JWTs, minting, discovery, revocation).
//! - [`route`]: which cache entry and installation a request maps to.
//! - [`sources`]: the source order and single-flight minting.
//! - [`error`]: the failure class carried end to end, and exit codes.
//! - [`secret`]: the `Secret` type. [`logging`]: stderr logs with token redaction.
//! - [`clock`]: injected time and RFC 3339. [`child`]: child processes with deadlines.
//! - [`schedule`]: when the daemon wakes (pure). [`status`]: `daemon.status.json`. `cli` (feature): flags shared by both binaries.
//!
//! The helper's cache-hit path uses only `config`, `protocol`, `store` and `secret`: no async
//! runtime, no HTTP client and no TLS configuration is built unless a token must be minted.

pub mod child;
#[cfg(feature = "cli")]
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod fallback;
pub mod github_app;
pub mod logging;
pub mod platform;
pub mod protocol;
pub mod route;
pub mod schedule;
pub mod secret;
pub mod sources;
pub mod status;
pub mod store;

pub use error::{Class, Error, Result};
pub use secret::Secret;

/// Runs a future to completion on a fresh single-threaded runtime: for synchronous callers
/// (the helper on a cache miss, one-shot commands) that need one async call.
pub fn block_on<F: std::future::Future>(future: F) -> Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Error::new(
                Class::LocalConfig,
                format!("starting the async runtime: {e}"),
            )
        })?;
    Ok(runtime.block_on(future))
}
