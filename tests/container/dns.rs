//! Name resolution in every build of the helper this workspace holds: a container reaches its
//! platform by a name that only its own `/etc/hosts` knows (`host.docker.internal` is the
//! platform's default). The helper is linked three ways (a plain `cargo build`, and the static
//! musl or static glibc builds install.sh, release.sh and the Dockerfile produce); each
//! resolves through a different libc path, so each is run here on a cold cache against a
//! platform stand-in reached by such a name, with a private `/etc/hosts` bind-mounted in its
//! own mount namespace.
//!
//! Then the release archive's helper in a root filesystem holding nothing but it, `/etc/hosts`
//! and `/etc/resolv.conf` (and what it reads: the bearer, an App key, a CA): no C library, no
//! NSS module, as in a `scratch` or distroless image (DESIGN.md, "Releases"). It resolves
//! names both ways, and verifies TLS against `SSL_CERT_FILE` or the system roots of that
//! root filesystem, refusing a server when it has neither.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use molecule_tests::deadline::run_within;
use molecule_tests::{
    DnsStandIn, GithubApi, GithubApiOptions, PlatformStandIn, TestCa, TokenAuthority, skip,
    test_app_key_path,
};

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
            "static glibc (release.sh, install.sh)",
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

const EMPTY_ROOT: &str = "dns::the_archives_helper_resolves_in_a_root_holding_nothing_else";

/// Every file and directory under `root`, relative to it.
fn tree(root: &Path) -> Vec<String> {
    let mut all = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            all.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() {
                dirs.push(path);
            }
        }
    }
    all.sort();
    all
}

/// A root filesystem in `dir` holding the release archive's helper (at /), `/etc/hosts`
/// (`hosts`) and an `/etc/resolv.conf` naming 127.0.0.1.
fn empty_root(dist: &crate::release::Dist, dir: &Path, hosts: &str) -> PathBuf {
    let unpacked = dist.unpack(dir);
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy(
        unpacked.join("bin/git-credential-molecule"),
        root.join("git-credential-molecule"),
    )
    .unwrap();
    std::fs::write(root.join("etc/hosts"), hosts).unwrap();
    std::fs::write(root.join("etc/resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    root
}

/// A cold `get` by the helper at /git-credential-molecule in `root` (`chroot`), with `env`
/// beside HOME and the log level. Returns (exit code, stdout, stderr).
fn cold_get_in(root: &Path, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    // By its path: the environment is cleared, PATH with it.
    let mut cmd = Command::new(skip::which("chroot").expect("chroot is installed"));
    cmd.arg(root)
        .args(["/git-credential-molecule", "get"])
        .env_clear()
        .env("HOME", "/")
        .env("MOLECULE_LOG", "warn")
        .envs(env.iter().copied());
    let run = run_within(
        &mut cmd,
        b"protocol=https\nhost=github.com\n\n",
        Duration::from_secs(20),
    );
    assert!(!run.timed_out, "the get did not finish within 20 s");
    (run.code, run.stdout, run.stderr)
}

#[test]
fn the_archives_helper_resolves_in_a_root_holding_nothing_else() {
    if !molecule_tests::netns::is_inner(EMPTY_ROOT) {
        // Outside: the artifacts need the package registries the namespace cannot reach.
        if crate::release::available(EMPTY_ROOT) && skip::require_tools(EMPTY_ROOT, &["chroot"]) {
            let dir = crate::release::dist().dir.display().to_string();
            molecule_tests::netns::in_private_netns_with(
                EMPTY_ROOT,
                &[(crate::release::DIST_VAR, &dir)],
            );
        }
        return;
    }
    // Inside a network namespace of its own: the resolver /etc/resolv.conf names, on
    // 127.0.0.1:53, is this test's.
    assert!(molecule_tests::netns::in_private_netns(EMPTY_ROOT));
    let dist = crate::release::dist();
    let t = tempfile::tempdir().unwrap();
    // One name only /etc/hosts knows, one only the DNS server knows.
    let (by_hosts, by_dns) = ("platform.molecule.test", "platform-dns.molecule.test");
    let root = empty_root(
        dist,
        t.path(),
        &format!("127.0.0.1 localhost\n127.0.0.1 {by_hosts}\n"),
    );
    let dns = DnsStandIn::start(
        "127.0.0.1:53".parse().unwrap(),
        &[(by_dns, std::net::Ipv4Addr::LOCALHOST)],
    );
    // What the helper reads: the bearer. The caches it creates itself.
    std::fs::create_dir(root.join("configs")).unwrap();
    molecule_tests::write_secret(&root.join("configs/.auth_token"), "dns-bearer\n");
    assert_eq!(
        tree(&root),
        [
            "configs",
            "configs/.auth_token",
            "etc",
            "etc/hosts",
            "etc/resolv.conf",
            "git-credential-molecule"
        ],
        "the root holds no C library, no NSS module, no nsswitch.conf"
    );
    let platform = PlatformStandIn::local("dns-bearer");
    let port = platform.url().rsplit(':').next().unwrap().to_owned();
    let mut seen = Vec::new();
    for (name, cache) in [(by_hosts, "/cache-hosts"), (by_dns, "/cache-dns")] {
        let url = format!("http://{name}:{port}");
        let (code, stdout, stderr) = cold_get_in(
            &root,
            &[
                ("PLATFORM_URL", &url),
                ("CONFIGS_DIR", "/configs"),
                ("MOLECULE_TOKEN_CACHE_DIR", cache),
            ],
        );
        assert_eq!(
            code,
            Some(0),
            "the archive's helper could not reach {name}: {stderr}"
        );
        assert!(
            stdout.starts_with("username=x-access-token\npassword=ghs_"),
            "it answered something else for {name}"
        );
        assert!(root.join(&cache[1..]).join("tokens.json").is_file());
        seen.push(format!("{name}: {} DNS queries", dns.queries(name)));
    }
    assert_eq!(platform.requests(), 2);
    assert_eq!(dns.queries(by_hosts), 0, "{by_hosts} came from /etc/hosts");
    assert!(
        dns.queries(by_dns) >= 1,
        "{by_dns} came through /etc/resolv.conf"
    );
    report(
        "dns-empty-root",
        &format!(
            "{}'s helper, a cold get in a root holding only it, /etc/hosts, /etc/resolv.conf and the bearer: reached the platform by a name only /etc/hosts knows and by one only the DNS server /etc/resolv.conf names knows ({})",
            dist.tarball().file_name().unwrap().to_string_lossy(),
            seen.join("; ")
        ),
    );
}

const TLS_ROOTS: &str = "dns::the_archives_helper_verifies_tls_against_the_roots_it_is_given";

#[test]
fn the_archives_helper_verifies_tls_against_the_roots_it_is_given() {
    if !crate::release::available(TLS_ROOTS)
        || !skip::require_root(TLS_ROOTS)
        || !skip::require_tools(TLS_ROOTS, &["chroot"])
    {
        return;
    }
    let dist = crate::release::dist();
    let t = tempfile::tempdir().unwrap();
    let ca = TestCa::generate(t.path());
    // The GitHub API over TLS, with a certificate for localhost from the test's own CA: the
    // github-app source mints there.
    let api = GithubApi::start(
        "127.0.0.1:0".parse().unwrap(),
        GithubApiOptions::one_org(11, "acme", &["app"]),
        TokenAuthority::new(),
        Some(&ca),
    );
    let root = empty_root(dist, t.path(), "127.0.0.1 localhost\n");
    molecule_tests::write_secret(
        &root.join("app.pem"),
        std::fs::read(test_app_key_path()).unwrap(),
    );
    let url = format!("https://localhost:{}", api.addr().port());
    let get = |cache: &str, extra: &[(&str, &str)]| {
        let mut env = vec![
            ("MOLECULE_TOKEN_SOURCE", "github-app"),
            ("MOLECULE_GITHUB_APP_ID", "424242"),
            ("MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE", "/app.pem"),
            ("MOLECULE_GITHUB_APP_INSTALLATION_ID", "11"),
            ("MOLECULE_GITHUB_API_URL", &url),
            ("MOLECULE_TOKEN_CACHE_DIR", cache),
        ];
        env.extend_from_slice(extra);
        cold_get_in(&root, &env)
    };
    let minted = |out: &str| out.starts_with("username=x-access-token\npassword=ghs_");

    // Refused, with the refusal as the helper says it: no answer, nothing minted.
    let refused = |cache: &str, what: &str| {
        let (code, stdout, stderr) = get(cache, &[]);
        assert_ne!(code, Some(0), "{what}: it reached the server");
        assert!(
            stdout.is_empty(),
            "{what}: it answered without a verified server"
        );
        stderr
    };
    // No CA anywhere in the root: no TLS at all.
    let no_roots = refused("/cache-none", "no roots");
    // Another CA in the system bundle: the server's certificate is refused.
    let bundle = root.join("etc/ssl/certs/ca-certificates.crt");
    std::fs::create_dir_all(bundle.parent().unwrap()).unwrap();
    let stranger = TestCa::generate(&t.path().join("stranger"));
    std::fs::copy(stranger.ca_pem_path(), &bundle).unwrap();
    let refusal = refused("/cache-stranger", "a stranger's CA");
    assert!(
        refusal.to_ascii_lowercase().contains("certificate"),
        "the refusal names the certificate: {refusal}"
    );
    assert!(api.issued().is_empty());

    // SSL_CERT_FILE names the right CA (the bundle still holds the stranger).
    std::fs::copy(ca.ca_pem_path(), root.join("ca.pem")).unwrap();
    let (code, stdout, stderr) = get("/cache-env", &[("SSL_CERT_FILE", "/ca.pem")]);
    assert_eq!(code, Some(0), "SSL_CERT_FILE: {stderr}");
    assert!(minted(&stdout));
    std::fs::remove_file(root.join("ca.pem")).unwrap();

    // The system roots: the right CA in the bundle Debian and Alpine images keep.
    std::fs::copy(ca.ca_pem_path(), &bundle).unwrap();
    let (code, stdout, stderr) = get("/cache-system", &[]);
    assert_eq!(code, Some(0), "the system roots: {stderr}");
    assert!(minted(&stdout));
    assert_eq!(api.issued().len(), 2);
    report(
        "tls-empty-root",
        &format!(
            "{}'s helper in a root holding only it, /etc/hosts, /etc/resolv.conf and an App key: no roots: refused (\"{}\"); another CA in /etc/ssl/certs/ca-certificates.crt: refused (\"{}\"); minted over TLS with SSL_CERT_FILE, and with the right CA in /etc/ssl/certs/ca-certificates.crt",
            dist.tarball().file_name().unwrap().to_string_lossy(),
            no_roots.lines().next().unwrap_or_default(),
            refusal.lines().next().unwrap_or_default()
        ),
    );
}
