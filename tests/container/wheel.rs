//! The wheel, installed with its one line: `pip install` (offline, `--no-index`) into a fresh
//! venv puts both binaries and both scripts on the venv's PATH, with man pages and
//! completions under its prefix, and pip accepts the same file for glibc and for musl Linux.
//! Then "an hour, compressed" with the venv's `molecule-entrypoint` as the container's
//! entrypoint, and nothing of this checkout on PATH: the installed entrypoint finds the
//! installed binaries and `molecule-respawn`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use molecule_tests::{netns, skip};

use crate::hour::HostRun;
use crate::release::{self, BINARIES, DIST_VAR, SCRIPTS, dist};
use crate::support::{open_tempdir, report, run_ok};

const NAME: &str = "wheel::the_wheel_installs_with_pip_and_keeps_git_and_gh_working";

/// `pip install --no-index --only-binary=:all: --platform PLATFORM --target DIR WHEEL`:
/// whether pip on that platform would take the wheel (it refuses a wheel whose tags do not
/// match).
fn pip_takes_it_for(pip: &Path, wheel: &Path, platform: &str, dir: &Path) {
    run_ok(
        Command::new(pip)
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-index",
                "--only-binary=:all:",
                "--platform",
                platform,
                "--target",
            ])
            .arg(dir.join(platform))
            .arg(wheel),
        Duration::from_secs(120),
    );
}

#[test]
fn the_wheel_installs_with_pip_and_keeps_git_and_gh_working() {
    if !netns::is_inner(NAME) {
        // Outside: the artifacts need the package registries the namespace cannot reach.
        if release::available(NAME) && skip::require_root(NAME) {
            let dir = dist().dir.display().to_string();
            netns::in_private_netns_with(NAME, &[(DIST_VAR, &dir)]);
        }
        return;
    }
    assert!(netns::in_private_netns(NAME));
    let dist = dist();
    let wheel = dist.wheel();
    let t = open_tempdir();
    let venv = t.path().join("venv");
    run_ok(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        Duration::from_secs(120),
    );
    let pip = venv.join("bin/pip");
    // The one line, offline.
    run_ok(
        Command::new(&pip)
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-index",
            ])
            .arg(&wheel),
        Duration::from_secs(120),
    );
    let bin = venv.join("bin");
    let mut versions = Vec::new();
    for b in BINARIES {
        versions.push(release::assert_version(&bin.join(b), b, dist));
    }
    for s in SCRIPTS {
        assert!(bin.join(s).is_file(), "pip put no {s} on the venv's PATH");
    }
    for f in [
        "share/man/man1/git-credential-molecule.1.gz",
        "share/man/man1/gh-token-refresh.1.gz",
        "share/bash-completion/completions/git-credential-molecule",
        "share/doc/molecule-credential/LICENSE-APACHE",
    ] {
        assert!(venv.join(f).is_file(), "the wheel installed no {f}");
    }
    let arch = dist.target.split('-').next().unwrap();
    for platform in [
        format!("manylinux_2_17_{arch}"),
        format!("musllinux_1_1_{arch}"),
    ] {
        pip_takes_it_for(&pip, &wheel, &platform, t.path());
    }

    // The hour, with the venv's entrypoint and binaries only.
    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display());
    let mut run = HostRun::start(&bin.join("molecule-entrypoint"), &path, &[]);
    let rotations = run.five_rotations("with the wheel's binaries");
    let log = run.log();
    assert!(
        log.contains("gh-token-refresh running under molecule-respawn"),
        "{log}"
    );
    run.finish();
    report(
        "wheel",
        &format!(
            "pip install --no-index {}: {}; pip takes it for manylinux_2_17 and musllinux_1_1\n\
             the venv's molecule-entrypoint, as root with a stale GH_TOKEN: {}",
            wheel.file_name().unwrap().to_string_lossy(),
            versions.join("; "),
            run.results.tally(rotations)
        ),
    );
}
