//! The domain of the Molecule credential layer, shared by `git-credential-molecule` (git's
//! credential helper) and `gh-token-refresh` (the refresh sidecar).
//!
//! The contract is `DESIGN.md`: names, variables, files and exit codes are fixed there.
//! Each module owns one noun of it:
//!
//! - [`config`]: every environment variable, read once; flags override. [`host`]: host names
//!   and GitHub's API URL layout.
//! - [`protocol`]: git's credential protocol, parsed strictly. [`route`]: which cache entry and
//!   installation a request or a command maps to.
//! - [`cache`]: the `tokens.json` document and its rules (fresh, usable, compare-and-swap).
//!   [`store`]: the cache directory, its files and locks; every wait bounded. [`files`]: opening
//!   a file without blocking, regular and private (a leaf: the store, secret files and the
//!   fallback build on it). [`atomic`]: replacing a file so no reader sees it torn.
//! - [`source`]: the configured token source (mint, revoke, budget): [`platform`],
//!   [`github_app`] (over [`http`]) or [`file_source`]; what they hand over is a [`token::Minted`].
//!   [`fallback`]: `GH_TOKEN`, `GITHUB_TOKEN`, then the fallback file.
//! - [`broker`]: single-flight minting and the source order, the one path to a new token.
//!   [`sink`]: the token files the daemon keeps for readers that poll.
//! - [`schedule`]: when the daemon wakes (pure). [`alarm`]: waking at a wall-clock time,
//!   across suspend and clock changes. [`status`]: `daemon.status.json`.
//! - [`error`]: the failure class carried end to end, and exit codes. [`secret`]: the
//!   `Secret` type and secret files. [`logging`]: stderr logs with token redaction.
//! - [`clock`]: injected time and RFC 3339. [`child`]: child processes with deadlines.
//!   [`gh`]: how gh is run so that it reads its stored login. [`output`]: the formats a
//!   token is printed in for tools that do not ask git (`token --format`, the daemon's sinks).
//!   `cli` (feature): flags shared by both binaries; `completions` (feature): their shell
//!   completion scripts. [`version`]: what `--version` prints.
//!
//! The helper's cache-hit path uses only `config`, `protocol`, `route`, `store`, `cache` and
//! `secret`: no async runtime, no HTTP client and no TLS configuration is built unless a token
//! must be minted.

// Every function of src/ fits on a screen (threshold in clippy.toml); integration tests,
// whose stories read top to bottom, are crates of their own and not held to it.
#![warn(clippy::too_many_lines)]

pub mod alarm;
pub mod atomic;
pub mod broker;
pub mod cache;
pub mod child;
#[cfg(feature = "cli")]
pub mod cli;
pub mod clock;
#[cfg(feature = "cli")]
pub mod completions;
pub mod config;
pub mod error;
pub mod fallback;
pub mod file_source;
pub mod files;
pub mod gh;
pub mod github_app;
pub mod host;
pub mod http;
pub mod logging;
pub mod output;
pub mod platform;
pub mod protocol;
pub mod route;
pub mod schedule;
pub mod secret;
pub mod sink;
pub mod source;
pub mod status;
pub mod store;
pub mod token;
pub mod version;

pub use error::{Class, Error, Result};
pub use secret::Secret;

/// A single-threaded runtime with I/O and timers, the only kind this project starts outside
/// the daemon: built only where something async must run, never on the helper's cache hit.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Error::new(
                Class::LocalConfig,
                format!("starting the async runtime: {e}"),
            )
            .with_source(e)
        })
}

/// Runs a future to completion on a fresh [`runtime`]: for synchronous callers (the helper on
/// a cache miss, one-shot commands) that need one async call.
pub fn block_on<F: std::future::Future>(future: F) -> Result<F::Output> {
    Ok(runtime()?.block_on(future))
}
