//! Integration tests for `git-credential-molecule`, run as a process the way git runs it.
//! Organised by behaviour: the protocol, the platform's answers, the cache, concurrency, real
//! git, and secrecy. Every run goes through [`support::Sandbox`], which asserts that no token
//! or bearer it knows of ever appears on stderr.

#![expect(
    clippy::unwrap_used,
    reason = "a failed set-up step in a test should panic with its location"
)]

mod cache;
mod commands;
mod cves;
mod doctor;
mod exec;
mod faults;
mod flags;
mod git;
mod gitconfig;
mod github_app;
mod hotpath;
mod platform;
mod props;
mod protocol;
mod secrecy;
mod signer;
mod stampede;
mod support;
mod waits;
