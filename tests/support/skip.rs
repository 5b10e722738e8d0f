//! Skipped tests, named and explained: a test that cannot run on this machine says so in one
//! place instead of failing, or passing without having run.
//!
//! A test that needs root, or a tool that may not be installed, asks first and returns when
//! the answer is `false`:
//!
//! ```no_run
//! use molecule_tests::skip;
//!
//! #[test]
//! fn the_image_builds() {
//!     const NAME: &str = "image::the_image_builds";
//!     if !skip::require_root(NAME) || !skip::require_tools(NAME, &["buildah", "mmdebstrap"]) {
//!         return;
//!     }
//!     // …
//! }
//! ```
//!
//! Each skip appends one line, `TEST: REASON`, to the skip file: `$MOLECULE_SKIP_FILE`, else
//! `target/skipped-tests.txt` in the workspace. `scripts/test.sh` empties it before
//! `cargo test`, adds its own steps' skips (shellcheck, the manifest validators) in the same
//! form, and prints it at the end: `skipped: N` and each line, or `skipped: none`. So a run
//! without root or without the tools passes everything it can and names the rest; nothing is
//! skipped silently. As root, `scripts/test.sh` installs every tool first, and a missing tool
//! is then worth a look: CI expects `skipped: none`.
//!
//! `NAME` is how the summary names the test; use the name libtest lists (`module::test`).
//! [`crate::netns::in_private_netns`] skips through here too.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Overrides where skips are recorded (`scripts/test.sh` sets it).
pub const FILE_VAR: &str = "MOLECULE_SKIP_FILE";

/// The file skips are appended to.
pub fn file() -> PathBuf {
    #[expect(
        clippy::disallowed_methods,
        reason = "test support reads its own switch"
    )]
    let configured = std::env::var_os(FILE_VAR).filter(|v| !v.is_empty());
    configured.map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/skipped-tests.txt")
                .to_path_buf()
        },
        PathBuf::from,
    )
}

/// Records that `test` did not run, and why. One `write` of one line to a file opened for
/// appending, so concurrent test processes never interleave their lines.
pub fn skip(test: &str, reason: &str) {
    let line = format!("{test}: {reason}\n");
    let path = file();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    // A skip nobody can see would be a silent pass: fail instead.
    if let Err(e) = written {
        panic!(
            "{test} must be skipped ({reason}), but {} cannot record it: {e}",
            path.display()
        );
    }
    note(&line);
}

#[expect(
    clippy::print_stderr,
    reason = "shown with --nocapture, beside the skip file"
)]
fn note(line: &str) {
    eprint!("skipped: {line}");
}

/// The effective uid of this process, from `/proc/self/status` (std has no `geteuid`, and
/// this keeps the support crate free of unsafe code).
pub fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .expect("/proc/self/status has a Uid: line with the effective uid")
}

/// `true` when running as root; otherwise records the skip of `test` and returns `false`.
pub fn require_root(test: &str) -> bool {
    if euid() == 0 {
        return true;
    }
    skip(
        test,
        "needs root (namespaces, mounts, port 443, other uids); run scripts/test.sh as root, as CI does",
    );
    false
}

/// `true` when every one of `tools` is an executable on `PATH`; otherwise records the skip
/// of `test`, naming the missing ones, and returns `false`.
pub fn require_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    skip(
        test,
        &format!(
            "needs {} on PATH, not installed here (scripts/test.sh installs it when run as root)",
            missing.join(", ")
        ),
    );
    false
}

/// The executable `name` would run as, searched on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    #[expect(
        clippy::disallowed_methods,
        reason = "test support searches PATH like a shell"
    )]
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn euid_matches_the_owner_of_a_file_this_process_creates() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("mine");
        std::fs::write(&f, "").expect("write");
        assert_eq!(euid(), std::fs::metadata(&f).expect("stat").uid());
    }

    #[test]
    fn which_finds_sh_and_not_a_made_up_name() {
        assert!(which("sh").is_some());
        assert_eq!(which("molecule-no-such-tool-4242"), None);
    }
}
