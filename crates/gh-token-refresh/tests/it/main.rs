//! Integration tests for `gh-token-refresh`: the schedule under tokio's paused time (exact wake
//! times), the platform over real HTTP (httpmock) across simulated hours, the binary as a
//! process (locks, signals, crashes, health), and gh (a fake that refuses GH_TOKEN, and the
//! real Debian gh against a local GitHub Enterprise stand-in in its own network namespace).

#![expect(
    clippy::unwrap_used,
    reason = "a failed set-up step in a test should panic with its location"
)]

mod app;
mod flags;
mod gh;
mod health;
mod metrics;
mod platform;
mod process;
mod schedule;
mod support;
mod suspend;
mod waits;
