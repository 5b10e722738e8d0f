//! The `github-app` source against a stand-in of GitHub's API that checks the JWT's RS256
//! signature with the App's public key and its `iat`/`exp` by its own clock: minting,
//! narrowing, clock skew, discovery by owner, and real git pushing to two owners' repositories
//! with `credential.useHttpPath`, each accepted only with its owner's token.

use std::path::Path;
use std::process::{Command, Output};

use molecule_tests::github_api::{
    GithubApi, GithubApiOptions, Installation, OwnerKind, test_app_key_path,
};
use molecule_tests::{
    GitServer, TestCa, TokenAuthority, gitcmd, init_bare_repo, owner_scoped_rule,
};

use crate::support::{BIN, Sandbox};

const APP_ID: u64 = 424_242;

fn installations() -> Vec<Installation> {
    vec![
        Installation {
            id: 11,
            owner: "acme".into(),
            kind: OwnerKind::Organization,
            repositories: vec!["app".into(), "tools".into()],
        },
        Installation {
            id: 22,
            owner: "globex".into(),
            kind: OwnerKind::User,
            repositories: vec!["lib".into()],
        },
    ]
}

fn api(authority: &TokenAuthority, skew: time::Duration) -> GithubApi {
    GithubApi::start(
        "127.0.0.1:0".parse().unwrap(),
        GithubApiOptions {
            installations: installations(),
            clock_skew: skew,
            ..GithubApiOptions::default()
        },
        authority.clone(),
        None,
    )
}

fn app_sandbox(api: &GithubApi, extra: &[(&str, &str)]) -> Sandbox {
    let mut sb = Sandbox::new();
    sb.env("MOLECULE_TOKEN_SOURCE", "github-app")
        .env("MOLECULE_GITHUB_APP_ID", &APP_ID.to_string())
        .env(
            "MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE",
            &test_app_key_path().display().to_string(),
        )
        .env("MOLECULE_GITHUB_API_URL", &api.url())
        .env("MOLECULE_LOG", "info");
    for (k, v) in extra {
        sb.env(k, v);
    }
    sb
}

#[test]
fn mints_with_a_verified_jwt_and_caches_by_expiry() {
    let authority = TokenAuthority::new();
    let api = api(&authority, time::Duration::ZERO);
    let sb = app_sandbox(&api, &[("MOLECULE_GITHUB_APP_INSTALLATION_ID", "11")]);
    let r = sb.run(&["token"], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let token = r.stdout.trim().to_owned();
    sb.secret(&token);
    assert!(authority.is_valid(&token), "GitHub's stand-in issued it");
    assert_eq!(authority.owner_of(&token).as_deref(), Some("acme"));
    assert!(
        api.jwt_rejections().is_empty(),
        "{:?}",
        api.jwt_rejections()
    );
    let e = sb.entry("github.com").unwrap();
    assert_eq!(e["source"], "github-app");
    assert_eq!(e["installation_id"], 11);
    // A second call is a cache hit: no new token.
    assert_eq!(sb.run(&["token"], "").stdout.trim(), token);
    assert_eq!(api.issued().len(), 1);
}

#[test]
fn narrowing_to_repositories_and_permissions() {
    let authority = TokenAuthority::new();
    let api = api(&authority, time::Duration::ZERO);
    let sb = app_sandbox(
        &api,
        &[
            ("MOLECULE_GITHUB_APP_INSTALLATION_ID", "11"),
            ("MOLECULE_GITHUB_APP_REPOSITORIES", "app"),
            (
                "MOLECULE_GITHUB_APP_PERMISSIONS",
                "contents=read,metadata=read",
            ),
        ],
    );
    let r = sb.run(&["refresh"], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let issued = api.issued();
    assert_eq!(issued.len(), 1);
    let repos = issued[0].repositories.clone().unwrap();
    assert!(
        repos.iter().any(|r| r.ends_with("app")) && repos.len() == 1,
        "{repos:?}"
    );
    let perms = issued[0].permissions.clone().unwrap();
    assert_eq!(perms.get("contents").map(String::as_str), Some("read"));

    // A repository the installation cannot reach: GitHub's 422, a local-config class.
    let sb = app_sandbox(
        &api,
        &[
            ("MOLECULE_GITHUB_APP_INSTALLATION_ID", "11"),
            ("MOLECULE_GITHUB_APP_REPOSITORIES", "secret-repo"),
        ],
    );
    let r = sb.run(&["refresh"], "");
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert!(r.stderr.contains("http 422"), "{}", r.stderr);
}

#[test]
fn clock_skew_either_way_is_read_from_date_and_corrected() {
    for (skew_min, reason) in [(10, "expired"), (-5, "iat-future")] {
        let authority = TokenAuthority::new();
        let api = api(&authority, time::Duration::minutes(skew_min));
        let sb = app_sandbox(&api, &[("MOLECULE_GITHUB_APP_INSTALLATION_ID", "22")]);
        let r = sb.run(&["token"], "");
        assert_eq!(r.code, 0, "skew {skew_min} min: {}", r.stderr);
        sb.secret(r.stdout.trim());
        // The first JWT, timed by our clock, was refused for its time claim; the retry, timed
        // by the server's Date, was accepted.
        assert_eq!(api.jwt_rejections(), [reason], "skew {skew_min} min");
        assert_eq!(api.issued().len(), 1);
        // The cached expiry takes the earlier of the two readings (expires_at as written, and
        // an hour after the server's Date): whichever clock is wrong, never a dead token. Server
        // ahead: an hour from now. Server behind: its expires_at is 55 minutes from our now.
        let e = sb.entry("github.com").unwrap();
        let exp =
            molecule_credential::clock::parse_rfc3339(e["expires_at"].as_str().unwrap()).unwrap();
        let left = (exp - time::OffsetDateTime::now_utc()).whole_seconds();
        let want = 3600 - 60 * skew_min.min(0).abs();
        assert!(
            (want - 10..=want).contains(&left),
            "skew {skew_min} min: {left}s left, want about {want}"
        );
    }
}

#[test]
fn the_owner_selects_the_installation_and_discovery_is_remembered() {
    let authority = TokenAuthority::new();
    let api = api(&authority, time::Duration::ZERO);
    // No map: both owners are discovered (acme as an org, globex as a user).
    let sb = app_sandbox(&api, &[]);
    let get = |path: &str| {
        sb.run(
            &["get"],
            &format!("protocol=https\nhost=github.com\npath={path}\n\n"),
        )
    };
    let acme = get("acme/app.git");
    let globex = get("globex/lib.git");
    assert_eq!(
        (acme.code, globex.code),
        (0, 0),
        "{}{}",
        acme.stderr,
        globex.stderr
    );
    let (ta, tg) = (
        acme.password().unwrap().to_owned(),
        globex.password().unwrap().to_owned(),
    );
    sb.secret(&ta);
    sb.secret(&tg);
    assert_ne!(ta, tg);
    assert_eq!(authority.owner_of(&ta).as_deref(), Some("acme"));
    assert_eq!(authority.owner_of(&tg).as_deref(), Some("globex"));
    assert_eq!(sb.entry("github.com/acme").unwrap()["installation_id"], 11);
    assert_eq!(
        sb.entry("github.com/globex").unwrap()["installation_id"],
        22
    );
    let discovered = api.discoveries();
    assert_eq!(discovered, 3, "acme: orgs; globex: orgs (404) then users");

    // Rejected by a server: erase, then the next get mints again without rediscovering.
    sb.run(
        &["erase"],
        &format!("protocol=https\nhost=github.com\npath=acme/app.git\npassword={ta}\n\n"),
    );
    let again = get("acme/app.git");
    assert_eq!(again.code, 0);
    sb.secret(again.password().unwrap());
    assert_eq!(
        api.discoveries(),
        discovered,
        "the installation was remembered"
    );
    assert_eq!(api.issued().len(), 3);

    // An owner the App is not installed for: nothing (not-configured), nothing cached.
    let r = get("initech/x.git");
    assert_eq!((r.code, r.stdout.as_str()), (69, ""));
    assert!(
        r.stderr.contains("not installed for initech"),
        "{}",
        r.stderr
    );

    // Without a path (useHttpPath off) and without a default installation: a clear error.
    let r = sb.run(&["get"], "protocol=https\nhost=github.com\n\n");
    assert_eq!(r.code, 69);
    assert!(r.stderr.contains("useHttpPath"), "{}", r.stderr);
}

fn git(
    home: &Path,
    ca: &Path,
    sb: &Sandbox,
    api: &GithubApi,
    host: &str,
    cwd: &Path,
    args: &[&str],
) -> Output {
    let mut c = gitcmd::git(home);
    c.current_dir(cwd)
        .env("GIT_SSL_CAINFO", ca)
        .env("MOLECULE_TOKEN_SOURCE", "github-app")
        .env("MOLECULE_GITHUB_APP_ID", APP_ID.to_string())
        .env("MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE", test_app_key_path())
        .env("MOLECULE_GITHUB_API_URL", api.url())
        .env("MOLECULE_GITHUB_APP_INSTALLATIONS", "acme=11,globex=22")
        .env("MOLECULE_TOKEN_CACHE_DIR", &sb.cache)
        .env("MOLECULE_GIT_HOSTS", host)
        .env("MOLECULE_LOG", "warn")
        .args(args);
    let out = c.output().unwrap();
    sb.assert_no_secret(&String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn git_with_use_http_path_pushes_to_two_owners_with_two_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::generate(dir.path());
    let authority = TokenAuthority::new();
    let api = api(&authority, time::Duration::ZERO);
    let repos = dir.path().join("repos");
    std::fs::create_dir_all(repos.join("acme")).unwrap();
    std::fs::create_dir_all(repos.join("globex")).unwrap();
    init_bare_repo(&repos, "acme/app.git");
    init_bare_repo(&repos, "globex/lib.git");
    let server = GitServer::start(&repos, &ca, authority.clone());
    // /OWNER/... only with a token of that owner's installation.
    server.set_auth_rule(owner_scoped_rule(authority.clone()));
    let host = server.host();

    let sb = app_sandbox(&api, &[("MOLECULE_GIT_HOSTS", &host)]);
    let home = &sb.home;
    // configure turns on useHttpPath for the github-app source with an owner map.
    let mut cfg = sb.command(&["configure", "--host", &host]);
    cfg.env("MOLECULE_GITHUB_APP_INSTALLATIONS", "acme=11,globex=22")
        .env("MOLECULE_GIT_HOSTS", &host);
    let out = cfg.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("useHttpPath: configured"));
    let gitconfig = std::fs::read_to_string(home.join(".gitconfig")).unwrap();
    assert!(gitconfig.contains("useHttpPath = true"), "{gitconfig}");
    // The helper by absolute path, and only it, for this test's git: configure wrote the same
    // path; the `-c` pair keeps the test independent of that.
    let run = |cwd: &Path, args: &[&str]| {
        let mut full = vec!["-c", "credential.helper=", "-c"];
        let helper = format!("credential.helper=!{BIN}");
        full.push(&helper);
        full.extend_from_slice(args);
        let full: Vec<String> = full.iter().map(|s| (*s).to_owned()).collect();
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        git(home, ca.ca_pem_path(), &sb, &api, &host, cwd, &refs)
    };
    for (owner, repo) in [("acme", "app"), ("globex", "lib")] {
        let work = sb.path(owner);
        let url = format!("{}/{owner}/{repo}.git", server.url());
        let out = run(
            sb.dir.path(),
            &["clone", "-q", &url, work.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "{owner}: clone: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(work.join("f"), owner).unwrap();
        assert!(run(&work, &["add", "f"]).status.success());
        assert!(run(&work, &["commit", "-qm", owner]).status.success());
        let out = run(&work, &["push", "-q", "origin", "HEAD:main"]);
        assert!(
            out.status.success(),
            "{owner}: push: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Two installations, two tokens, one per owner.
    let issued = api.issued();
    let owners: Vec<(u64, &str)> = issued
        .iter()
        .map(|i| (i.installation_id, i.owner.as_str()))
        .collect();
    assert_eq!(owners, [(11, "acme"), (22, "globex")]);
    let acme = sb.entry(&format!("{host}/acme")).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let globex = sb.entry(&format!("{host}/globex")).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    sb.secret(&acme);
    sb.secret(&globex);
    assert_ne!(acme, globex);
    // Each accepted only for its owner: acme's token cannot read globex's repository.
    let probe = Command::new("git")
        .env("GIT_SSL_CAINFO", ca.ca_pem_path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home)
        .env("GIT_TERMINAL_PROMPT", "0")
        .args(["-c", "credential.helper=", "-c"])
        .arg("credential.helper=!f() { echo username=x-access-token; echo password=$TOK; }; f")
        .env("TOK", &acme)
        .args(["ls-remote", &format!("{}/globex/lib.git", server.url())])
        .output()
        .unwrap();
    assert!(
        !probe.status.success(),
        "acme's token opened globex's repository"
    );
    sb.assert_no_secret(&String::from_utf8_lossy(&probe.stderr));
}
