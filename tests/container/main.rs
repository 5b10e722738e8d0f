//! The container story end to end (DESIGN.md, "The container story"): the entrypoint run as
//! root with a created agent user, run directly as the agent, the respawn loop, install.sh, and
//! "an hour, compressed": tokens living 6 seconds, continuous git and gh through five and more
//! rotations, the daemon killed and brought back. Then the shipped artifacts themselves: the
//! image docker/Dockerfile builds, run as a container with "an hour, compressed" inside
//! (`image`), and docker/kubernetes/agent-with-sidecar.yaml run as a simulated pod (`pod`).
//! And the token files and sources for tools beyond git (issue 18): the daemon's sinks under
//! a polling reader (`sinks`), the file source through a Kubernetes secret volume
//! (`file_source`), and the consumer recipes of docs/consumers.md (`recipes`).
//!
//! Tests that run the root half create their agent user in a private mount namespace (copies of
//! /etc/passwd and /etc/group bind-mounted over the real ones) and a private network namespace,
//! so they change nothing on the machine and reach nothing beyond loopback. They need root, as
//! CI has; without it they are skipped and named (`molecule_tests::skip`).

#![expect(
    clippy::unwrap_used,
    reason = "a failed set-up step in a test should panic with its location"
)]

mod deb;
mod dns;
mod entrypoint;
mod file_source;
mod harness;
mod hour;
mod image;
mod install;
mod pod;
mod recipes;
mod redaction;
mod release;
mod respawn;
mod runtime;
mod secret_volume;
mod sinks;
mod soak;
mod stack;
mod support;
mod template;
mod wheel;
