//! What `--version` says about the build beside the version: the commit and the target.
//!
//! The commit is `MOLECULE_BUILD_COMMIT` when the builder sets it (a build from a source
//! archive, a container build without `.git`), else git's `HEAD` when built from a checkout,
//! else `unknown`. The target is cargo's `TARGET`, marked `static` when the C runtime is linked
//! in (`crt-static`, as the release artifacts are built).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Overrides the commit (the contract's builders: scripts/release.sh, docker/Dockerfile).
const COMMIT_VAR: &str = "MOLECULE_BUILD_COMMIT";

#[expect(
    clippy::disallowed_methods,
    reason = "a build script reads cargo's variables; the product reads through config"
)]
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed={COMMIT_VAR}");
    let dir = PathBuf::from(var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let commit = var(COMMIT_VAR)
        .or_else(|| git_head(&dir))
        .unwrap_or_else(|| "unknown".to_owned());
    let target = var("TARGET").expect("cargo sets TARGET for build scripts");
    let linkage = if var("CARGO_CFG_TARGET_FEATURE")
        .is_some_and(|f| f.split(',').any(|f| f == "crt-static"))
    {
        ", static"
    } else {
        ""
    };
    println!("cargo:rustc-env=MOLECULE_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=MOLECULE_BUILD_TARGET={target}{linkage}");
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

/// `HEAD`'s commit, and the files whose change moves it: `HEAD` itself (a checkout), the
/// branch it names (a commit) and the packed refs. Only files that exist are named: cargo
/// reruns a build script on every build while a file it names is missing.
fn git_head(dir: &Path) -> Option<String> {
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    let mut refs = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    refs.extend(git(dir, &["symbolic-ref", "-q", "HEAD"]));
    for r in refs {
        if let Some(path) = git(
            dir,
            &["rev-parse", "--path-format=absolute", "--git-path", &r],
        ) && Path::new(&path).is_file()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(commit)
}
