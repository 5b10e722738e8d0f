//! The line `--version` prints after the binary's name (DESIGN.md, "Releases"): the version,
//! the commit and the target, e.g. `0.1.0 (commit 1a2b3c4d5e6f, x86_64-unknown-linux-gnu,
//! static)`. The commit and target come from this crate's build script.

/// Version, commit and target, for clap's `version`.
pub const LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MOLECULE_BUILD_COMMIT"),
    ", ",
    env!("MOLECULE_BUILD_TARGET"),
    ")"
);

/// The commit this build came from (`unknown` when neither the builder nor git said): the
/// `commit` label of the daemon's `molecule_build_info`.
pub const COMMIT: &str = env!("MOLECULE_BUILD_COMMIT");
