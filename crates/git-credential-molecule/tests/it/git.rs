//! Real git through the helper: `git credential fill` for hosts we must and must not answer,
//! and clone, commit, push and fetch over HTTPS against `git http-backend` that accepts only
//! the currently valid token.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use molecule_tests::authority::TokenAuthority;
use molecule_tests::git_server::{GitServer, init_bare_repo};
use molecule_tests::gitcmd;
use molecule_tests::platform::{PlatformOptions, PlatformStandIn};
use molecule_tests::tls::TestCa;

use crate::support::{BEARER, BIN, Sandbox, long_token};

/// `git` isolated from the machine, with the helper (and only the helper) configured and the
/// sandbox's environment passed on to it.
fn git(sb: &Sandbox, extra_env: &[(&str, &str)]) -> Command {
    let mut c = gitcmd::git(&sb.home);
    c.args(["-c", "credential.helper=", "-c"])
        .arg(format!("credential.helper=!{BIN}"))
        .env("CONFIGS_DIR", &sb.configs)
        .env("MOLECULE_LOG", "debug");
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c
}

fn fill(sb: &Sandbox, url: &str) -> Output {
    let mut child = git(sb, &[("PLATFORM_URL", "http://127.0.0.1:9")])
        .args(["credential", "fill"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("url={url}\n\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn credential_fill_answers_only_https_github_com() {
    let sb = Sandbox::new();
    let token = long_token("fill");
    sb.write_cache(&[("github.com", &token, 3000, false)]);

    let out = fill(&sb, "https://github.com/acme/repo.git");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("password={token}\n")),
        "git did not get the token"
    );
    assert!(stdout.contains("username=x-access-token\n"));
    sb.assert_no_secret(&String::from_utf8_lossy(&out.stderr));

    for url in [
        "http://github.com/acme/repo.git",
        "https://github.com.evil.test/acme/repo.git",
        "https://evilgithub.com/acme/repo.git",
        "https://github.com:8443/acme/repo.git",
        "https://GITHUB.COM.evil.test/",
        "https:///acme/repo.git",
        "https://x-access-token@evil.test/github.com",
    ] {
        let out = fill(&sb, url);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "{url}: git found a credential somewhere: {all}"
        );
        assert!(!all.contains("password="), "{url}: {all}");
        sb.assert_no_secret(&all);
    }
}

/// A local HTTPS git host and the platform stand-in sharing one token authority.
struct Forge {
    _dir: tempfile::TempDir,
    ca: TestCa,
    authority: TokenAuthority,
    platform: PlatformStandIn,
    server: GitServer,
}

impl Forge {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::generate(dir.path());
        let authority = TokenAuthority::new();
        let platform = PlatformStandIn::start(
            "127.0.0.1:0".parse().unwrap(),
            PlatformOptions {
                bearer: BEARER.into(),
                ..PlatformOptions::default()
            },
            authority.clone(),
        );
        let repos = dir.path().join("repos");
        std::fs::create_dir_all(&repos).unwrap();
        init_bare_repo(&repos, "repo.git");
        let server = GitServer::start(&repos, &ca, authority.clone());
        Self {
            _dir: dir,
            ca,
            authority,
            platform,
            server,
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "GIT_SSL_CAINFO",
                self.ca.ca_pem_path().display().to_string(),
            ),
            ("PLATFORM_URL", self.platform.url()),
            ("MOLECULE_GIT_HOSTS", self.server.host()),
        ]
    }

    fn repo_url(&self) -> String {
        format!("{}/repo.git", self.server.url())
    }
}

fn run_git(sb: &Sandbox, forge: &Forge, cwd: &Path, args: &[&str]) -> Output {
    let env = forge.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = git(sb, &env).current_dir(cwd).args(args).output().unwrap();
    if let Some(issued) = forge.platform.cached() {
        sb.secret(&issued.token);
    }
    sb.assert_no_secret(&String::from_utf8_lossy(&out.stderr));
    out
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn clone_commit_push_fetch_over_https_with_the_valid_token_only() {
    let forge = Forge::start();
    let sb = Sandbox::new();
    let work = sb.path("work");

    // Without the helper the server refuses: the check below is not vacuous.
    let refused = gitcmd::git(&sb.home)
        .env("GIT_SSL_CAINFO", forge.ca.ca_pem_path())
        .args(["clone", "-q", &forge.repo_url()])
        .arg(sb.path("nohelper"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401") || !refused.status.success());

    ok(
        &run_git(
            &sb,
            &forge,
            sb.dir.path(),
            &["clone", "-q", &forge.repo_url(), work.to_str().unwrap()],
        ),
        "clone",
    );
    std::fs::write(work.join("hello.txt"), "hello\n").unwrap();
    ok(&run_git(&sb, &forge, &work, &["add", "hello.txt"]), "add");
    ok(
        &run_git(&sb, &forge, &work, &["commit", "-q", "-m", "hello"]),
        "commit",
    );
    ok(
        &run_git(&sb, &forge, &work, &["push", "-q", "origin", "HEAD:main"]),
        "push",
    );
    ok(
        &run_git(&sb, &forge, &work, &["fetch", "-q", "origin"]),
        "fetch",
    );

    let log = Command::new("git")
        .args(["--git-dir"])
        .arg(forge.server.repos_root().join("repo.git"))
        .args(["log", "--format=%s", "main"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&log.stdout),
        "hello\n",
        "the push landed"
    );
    assert_eq!(
        forge.platform.minted(),
        1,
        "one token for the whole session"
    );
    assert!(forge.authority.accepted() >= 4);
}

#[test]
fn a_rejected_token_is_erased_by_git_and_replaced_on_the_next_operation() {
    let forge = Forge::start();
    let sb = Sandbox::new();
    // A token the server has never issued, cached as if it were good.
    let stale = long_token("revoked");
    let host = forge.server.host();
    sb.write_cache(&[(&host, &stale, 3000, false)]);

    let first = run_git(
        &sb,
        &forge,
        sb.dir.path(),
        &["ls-remote", &forge.repo_url()],
    );
    assert!(!first.status.success(), "the stale token must be refused");
    let entry = sb.entry(&host).unwrap();
    assert_eq!(
        entry["suspect"], true,
        "git's erase marked the token suspect"
    );

    let second = run_git(
        &sb,
        &forge,
        sb.dir.path(),
        &["ls-remote", &forge.repo_url()],
    );
    ok(&second, "ls-remote after erase");
    assert_eq!(forge.platform.minted(), 1);
    assert_eq!(sb.entry(&host).unwrap()["suspect"], false);
}

#[test]
fn git_2_46_and_later_store_nothing_after_an_ephemeral_answer() {
    let forge = Forge::start();
    let sb = Sandbox::new();
    let store = sb.path("store-file");
    // This machine has git 2.47 in /usr/local/bin beside Debian's 2.39; CI machines may have
    // only one of them.
    for (git_bin, should_store) in [("/usr/local/bin/git", false), ("/usr/bin/git", true)] {
        let version = Command::new(git_bin).arg("--version").output();
        let Ok(version) = version else { continue };
        let v = String::from_utf8_lossy(&version.stdout).to_string();
        let _ = std::fs::remove_file(&store);
        let env = forge.env();
        let mut c = gitcmd::git(&sb.home);
        c.env(
            "PATH",
            format!(
                "{}:/usr/bin:/bin",
                Path::new(git_bin).parent().unwrap().display()
            ),
        );
        c.args(["-c", "credential.helper=", "-c"])
            .arg(format!("credential.helper=!{BIN}"))
            .args(["-c"])
            .arg(format!(
                "credential.helper=store --file={}",
                store.display()
            ))
            .env("CONFIGS_DIR", &sb.configs)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .args(["ls-remote", &forge.repo_url()]);
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{v}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stored = std::fs::read_to_string(&store).unwrap_or_default();
        if git_credential_molecule::gitconfig::parse_version(&v) >= Some((2, 46)) {
            assert!(
                stored.is_empty(),
                "{v}: store kept the token after an ephemeral answer"
            );
        } else {
            // Older git has no authtype capability: password_expiry_utc is all it gets, and a
            // storage helper after ours stores. `configure` removes them for the host.
            assert_eq!(!stored.is_empty(), should_store, "{v}");
        }
        if let Some(issued) = forge.platform.cached() {
            sb.secret(&issued.token);
        }
        sb.assert_no_secret(&String::from_utf8_lossy(&out.stderr));
    }
}
