//! scripts/install.sh: installs both binaries and the container scripts (as
//! `molecule-entrypoint` and `molecule-respawn`, the names every release artifact installs),
//! configures git, and changes nothing when run again.

use std::process::Command;

use crate::support::*;

#[test]
fn installs_and_configures_idempotently() {
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("prefix");
    let gitconfig = t.path().join("gitconfig");
    let run = || {
        Command::new(script("install.sh"))
            .args([
                "--from",
                bin_dir().to_str().unwrap(),
                "--prefix",
                prefix.to_str().unwrap(),
                "--file",
                gitconfig.to_str().unwrap(),
            ])
            .env("HOME", t.path())
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    for b in [
        "git-credential-molecule",
        "gh-token-refresh",
        "molecule-entrypoint",
        "molecule-respawn",
    ] {
        assert_eq!(owner_mode(&prefix.join("bin").join(b)).1, 0o755, "{b}");
    }
    // The installed path is registered (configure's default), though prefix/bin is not on
    // PATH: git finds the helper whatever its caller's PATH.
    let helper = prefix
        .join("bin/git-credential-molecule")
        .display()
        .to_string();
    assert_eq!(
        git_config_all(&gitconfig, "credential.https://github.com.helper"),
        ["".to_owned(), helper.clone()]
    );

    let before = std::fs::read(&gitconfig).unwrap();
    let second = run();
    assert!(second.status.success());
    assert_eq!(
        std::fs::read(&gitconfig).unwrap(),
        before,
        "a second run changes nothing"
    );
    assert!(String::from_utf8_lossy(&second.stdout).contains("already configured"));

    let v = Command::new(prefix.join("bin/git-credential-molecule"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("git-credential-molecule "));
}
