//! Test support for the molecule workspace: local stand-ins for the three peers the
//! credential helper talks to, run against real `git` and real `gh`.
//!
//! - [`tls`]: a throw-away CA and server certificate, so real clients verify TLS.
//! - [`authority`]: which tokens are valid right now, shared by every stand-in.
//! - [`git_server`]: HTTPS smart-HTTP git backed by the real `git http-backend`.
//! - [`ghe`]: a GitHub Enterprise API stand-in, enough for `gh auth login` and `gh api`.
//! - [`github_api`]: the GitHub REST API as a GitHub App sees it: strict JWT checks, a
//!   skewable clock, installation discovery and scoped installation tokens.
//! - [`platform`]: the token platform that mints installation tokens, with fault injection.
//! - [`netns`]: runs one test in its own network namespace, so it may own port 443.
//! - [`dns`]: a DNS server answering `A` queries for chosen names, for `/etc/resolv.conf`.
//! - [`prometheus`]: a real Prometheus server scraping a target on loopback, and its query
//!   API.
//! - [`deadline`]: every child under a deadline, and a guard that kills it on drop.
//! - [`flags`]: a token-shaped bad value for every configuration flag of the settings table.
//! - [`leak`]: whether any 20-character piece of a secret reached some output.
//! - [`stuck`]: locks held by a stopped process, and non-regular files where a file belongs.
//! - [`table`]: table-driven tests that run every case and report every failure.
//! - [`gitcmd`]: a `git` command isolated from the machine's configuration.
//! - [`skip`]: how a test that cannot run here (not root, a tool missing) says so, by name.
//!
//! Every server runs on its own thread with its own tokio runtime, so plain synchronous
//! `#[test]`s can use them, and stops (and joins) when dropped.

pub mod authority;
pub mod deadline;
pub mod dns;
pub mod flags;
pub mod ghe;
pub mod git_server;
pub mod gitcmd;
pub mod github_api;
pub mod leak;
pub mod netns;
pub mod platform;
pub mod prometheus;
mod server;
pub mod skip;
pub mod stuck;
pub mod table;
pub mod tls;

pub use authority::{Issued, TokenAuthority, owner_scoped_rule};
pub use dns::DnsStandIn;
pub use ghe::GheServer;
pub use git_server::{GitServer, init_bare_repo};
pub use github_api::{
    GithubApi, GithubApiOptions, Installation, IssuedInfo, OwnerKind, RequestRecord,
    test_app_key_path, test_app_public_key_path,
};
pub use platform::{Fault, PlatformOptions, PlatformStandIn};
pub use tls::TestCa;

/// Writes a secret file the way a careful operator does: readable by its owner alone (the
/// helper refuses a bearer or key file that others can read).
pub fn write_secret(path: &std::path::Path, contents: impl AsRef<[u8]>) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    f.write_all(contents.as_ref())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
