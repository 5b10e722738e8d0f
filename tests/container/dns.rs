//! Name resolution in every build of the helper this workspace holds: a container reaches its
//! platform by a name that only its own `/etc/hosts` knows (`host.docker.internal` is the
//! platform's default). The helper is linked three ways (a plain `cargo build`, and the static
//! musl or static glibc builds install.sh and the Dockerfile produce); each resolves through a
//! different libc path, so each is run here on a cold cache against a platform stand-in reached
//! by such a name, with a private `/etc/hosts` bind-mounted in its own mount namespace.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use molecule_tests::deadline::run_within;
use molecule_tests::{PlatformStandIn, skip};

use crate::support::*;

const NAME: &str = "dns::every_built_helper_reaches_the_platform_by_a_name_in_etc_hosts";

/// Every build of the helper present under target/: (what it is, its path).
fn builds() -> Vec<(String, PathBuf)> {
    let target = bin_dir().parent().unwrap().to_path_buf();
    let mut found = vec![(
        "debug".to_owned(),
        bin_dir().join("git-credential-molecule"),
    )];
    for (what, rel) in [
        ("release (plain cargo build)", "release"),
        ("static musl", "x86_64-unknown-linux-musl/release"),
        (
            "static glibc (install.sh)",
            "x86_64-unknown-linux-gnu/release",
        ),
    ] {
        let bin = target.join(rel).join("git-credential-molecule");
        if bin.is_file() {
            found.push((what.to_owned(), bin));
        }
    }
    found
}

/// A cold `get` by `helper` with the platform at `url`, inside a mount namespace whose
/// `/etc/hosts` is `hosts`. Returns (exit code, stdout).
fn cold_get(helper: &Path, url: &str, hosts: &Path, home: &Path) -> (Option<i32>, String) {
    // A fresh, private cache for each build: each must mint.
    let cache = tempfile::tempdir_in(home).unwrap().keep().join("cache");
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$0\" /etc/hosts && exec \"$1\" get")
        .arg(hosts)
        .arg(helper)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", home)
        .env("MOLECULE_TOKEN_CACHE_DIR", &cache)
        .env("CONFIGS_DIR", home.join("configs"))
        .env("PLATFORM_URL", url)
        .env("MOLECULE_LOG", "warn");
    let run = run_within(
        &mut cmd,
        b"protocol=https\nhost=github.com\n\n",
        Duration::from_secs(20),
    );
    assert!(!run.timed_out, "the get did not finish within 20 s");
    (run.code, run.stdout)
}

#[test]
fn every_built_helper_reaches_the_platform_by_a_name_in_etc_hosts() {
    if !skip::require_root(NAME) || !skip::require_tools(NAME, &["unshare", "mount"]) {
        return;
    }
    let platform = PlatformStandIn::local("dns-bearer");
    let port = platform.url().rsplit(':').next().unwrap().to_owned();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("configs")).unwrap();
    molecule_tests::write_secret(&home.path().join("configs/.auth_token"), "dns-bearer\n");
    let hosts = home.path().join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n127.0.0.1 platform.molecule.test\n",
    )
    .unwrap();
    let url = format!("http://platform.molecule.test:{port}");
    let mut seen = String::new();
    for (what, helper) in builds() {
        let (code, stdout) = cold_get(&helper, &url, &hosts, home.path());
        assert_eq!(
            code,
            Some(0),
            "the {what} build could not resolve the platform"
        );
        assert!(
            stdout.starts_with("username=x-access-token\npassword=ghs_"),
            "the {what} build answered something else"
        );
        seen.push_str(&format!("{what}: resolved and minted\n"));
    }
    assert_eq!(
        platform.requests(),
        builds().len() as u64,
        "one platform request per build"
    );
    report("dns", &seen);
}
