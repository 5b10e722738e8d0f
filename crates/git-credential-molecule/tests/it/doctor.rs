//! `doctor` on deliberately broken setups: another helper first, useHttpPath off while the
//! App routes by owner, a stale GH_TOKEN exported; every way around the helper at once; a
//! registered helper path git cannot run. Each problem is reported with the command that fixes
//! it; after running those commands, the same checks pass.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use httpmock::MockServer;
use molecule_tests::TokenAuthority;
use molecule_tests::gitcmd;
use molecule_tests::github_api::{GithubApi, GithubApiOptions, test_app_key_path};

use crate::support::{BIN, Sandbox, in_secs, long_token};

fn doctor(sb: &Sandbox) -> (i32, serde_json::Value) {
    let r = sb.run(&["doctor", "--json"], "");
    (
        r.code,
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout)),
    )
}

fn finding<'a>(report: &'a serde_json::Value, check: &str) -> Vec<&'a serde_json::Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == check)
        .collect()
}

#[test]
fn doctor_names_each_problem_and_its_fix() {
    let api = GithubApi::start(
        "127.0.0.1:0".parse().unwrap(),
        GithubApiOptions::one_org(7, "acme", &[]),
        TokenAuthority::new(),
        None,
    );
    let mut sb = Sandbox::new();
    // Outside any repository, and without the machine's system config: what is checked is
    // only what this test sets up.
    let outside = sb.dir.path().to_owned();
    sb.cwd(&outside).env("GIT_CONFIG_NOSYSTEM", "1");
    sb.env("MOLECULE_TOKEN_SOURCE", "github-app")
        .env("MOLECULE_GITHUB_APP_ID", "424242")
        .env(
            "MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE",
            &test_app_key_path().display().to_string(),
        )
        .env("MOLECULE_GITHUB_API_URL", &api.url())
        .env("MOLECULE_GITHUB_APP_INSTALLATIONS", "acme=7")
        .env("GH_TOKEN", "ghs_stale_from_boot")
        .env("MOLECULE_LOG", "warn");
    sb.secret("ghs_stale_from_boot");
    // Another helper first: git's store, configured the way many machines have it.
    let git_config = |args: &[&str]| {
        let ok = Command::new("git")
            .env("HOME", &sb.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args(["config", "--global"])
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    git_config(&["credential.helper", "store"]);
    git_config(&["--add", "credential.https://github.com.helper", "molecule"]);

    let (code, report) = doctor(&sb);
    assert_eq!(code, 1);
    let helpers = finding(&report, "helpers");
    assert_eq!(helpers[0]["ok"], false);
    assert!(
        helpers[0]["detail"].as_str().unwrap().contains("`store`"),
        "{:?}",
        helpers[0]
    );
    assert_eq!(
        helpers[0]["fix"],
        "git-credential-molecule configure --host github.com"
    );
    let path = finding(&report, "useHttpPath");
    assert_eq!(path[0]["ok"], false);
    assert_eq!(
        path[0]["fix"],
        "git config --global credential.https://github.com.useHttpPath true"
    );
    let env = finding(&report, "environment");
    assert_eq!(env[0]["ok"], false);
    assert!(
        env[0]["fix"]
            .as_str()
            .unwrap()
            .starts_with("unset GH_TOKEN")
    );
    // The App itself is fine: GitHub's stand-in accepts its JWT, and the clocks agree.
    assert!(
        finding(&report, "source").iter().all(|f| f["ok"] == true),
        "{report:#}"
    );
    assert!(
        finding(&report, "clock").iter().all(|f| f["ok"] == true),
        "{report:#}"
    );
    assert!(
        report["git_version"]
            .as_str()
            .unwrap()
            .starts_with("git version")
    );
    assert!(!report.to_string().contains("stale_from_boot"));

    // The human form says the same, with the fixes.
    let text = sb.run(&["doctor"], "").stdout;
    assert!(
        text.contains("fix: git-credential-molecule configure --host github.com"),
        "{text}"
    );
    assert!(text.contains("problems found"));

    // Apply the fixes it named.
    let r = sb.run(
        &["configure", "--host", "github.com", "--use-http-path"],
        "",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    sb.unset("GH_TOKEN");
    let (_, report) = doctor(&sb);
    for check in [
        "helpers",
        "useHttpPath",
        "environment",
        "source",
        "clock",
        "git",
    ] {
        let found = finding(&report, check);
        assert!(
            found.iter().all(|f| f["ok"] == true),
            "{check} still failing: {found:?}"
        );
    }
    // What is left is the daemon, which nothing has started here.
    let remaining: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["ok"] == false)
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert!(remaining.iter().all(|c| *c == "daemon"), "{remaining:?}");
}

/// A gh that answers `auth token` and `auth login` from files, and, like the real one, will
/// not log in while a token variable is set; it refuses outright, so a doctor that forgot to
/// clear them would see no stored token at all.
const FAKE_GH: &str = r#"#!/bin/sh
if [ -n "${GH_TOKEN}${GITHUB_TOKEN}${GH_ENTERPRISE_TOKEN}${GITHUB_ENTERPRISE_TOKEN}" ]; then
  echo "fake gh: refusing, a token variable is set" >&2; exit 1
fi
case "$1 $2" in
  "auth token") cat "$FAKE_GH_STATE/token-$4" 2>/dev/null || { echo "no oauth token" >&2; exit 1; } ;;
  "auth login") IFS= read -r tok; printf %s "$tok" > "$FAKE_GH_STATE/token-$4" ;;
  *) exit 2 ;;
esac
"#;

/// A sandbox in which doctor finds nothing wrong: a platform that answers (with a `Date`), a
/// fresh cached token, a daemon that is due to wake, gh holding the cache's token, our helper
/// configured by its path, and a repository to run in. Returns the cached token.
fn healthy(sb: &mut Sandbox, platform: &MockServer) -> String {
    let bin = sb.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("gh"), FAKE_GH).unwrap();
    std::fs::set_permissions(bin.join("gh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = sb.path("ghstate");
    std::fs::create_dir_all(&state).unwrap();
    let path = format!(
        "{}:{}:{}",
        bin.display(),
        Path::new(BIN).parent().unwrap().display(),
        molecule_credential::config::process_env("PATH").unwrap_or_default()
    );
    sb.env("PATH", &path)
        .env("FAKE_GH_STATE", &state.display().to_string())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("MOLECULE_LOG", "warn");
    sb.platform(&platform.base_url());

    let token = long_token("current");
    sb.write_cache(&[("github.com", &token, 3000, false)]);
    std::fs::write(state.join("token-github.com"), &token).unwrap();
    let status = serde_json::json!({
        "version": 1, "pid": std::process::id(), "started_at": in_secs(-600),
        "updated_at": in_secs(-60), "next_wake_at": in_secs(600), "hosts": {}
    });
    let status_file = sb.cache.join("daemon.status.json");
    std::fs::write(&status_file, status.to_string()).unwrap();
    std::fs::set_permissions(&status_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let repo = sb.path("repo");
    let ok = gitcmd::git(&sb.home)
        .args(["init", "-q"])
        .arg(&repo)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    sb.cwd(&repo);
    let r = sb.run(&["configure"], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    token
}

/// `git config ARGS` in `sb`'s repository, with its home.
fn git_config(sb: &Sandbox, args: &[&str]) {
    let ok = gitcmd::git(&sb.home)
        .current_dir(sb.path("repo"))
        .arg("config")
        .args(args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "git config {args:?}");
}

/// Runs a printed fix as the user would: in sh, in the repository, with the sandbox's
/// environment.
fn apply(sb: &Sandbox, fix: &str) {
    apply_in(sb, &sb.path("repo"), fix);
}

/// [`apply`] in `dir`.
fn apply_in(sb: &Sandbox, dir: &Path, fix: &str) {
    let probe = sb.command(&[]);
    let out = Command::new("sh")
        .args(["-c", fix])
        .current_dir(dir)
        .env_clear()
        .envs(probe.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{fix}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn problems(report: &serde_json::Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] == "problem")
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_owned(),
                f["fix"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Issue 13, must show 3: a repository and a configuration holding every bypass at once;
/// doctor names each with the command that fixes it, never a token; after those commands it
/// is clean, in text and JSON.
#[test]
fn doctor_finds_every_bypass_and_is_clean_after_its_fixes() {
    let platform = MockServer::start();
    let mut sb = Sandbox::new();
    let current = healthy(&mut sb, &platform);
    let gitconfig = sb.home.join(".gitconfig").display().to_string();

    // Credentials of every kind, each distinctive, none of them ours.
    let remote_password = sb.secret("hunter2-PLANTED-remote-password");
    let instead_of = sb.secret("ghs_PLANTEDinsteadOf0123456789");
    let header_token = sb.secret("ghs_PLANTEDextraHeader0123456789");
    let header = sb.secret(
        &base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{header_token}")),
    );
    let gh_held = sb.secret("ghs_PLANTEDghStoredLogin0123456789");
    std::fs::write(sb.path("ghstate/token-github.com"), &gh_held).unwrap();
    git_config(
        &sb,
        &[
            "remote.origin.url",
            &format!("https://x-access-token:{remote_password}@github.com/acme/app.git"),
        ],
    );
    git_config(
        &sb,
        &[
            "--global",
            &format!("url.https://x-access-token:{instead_of}@github.com/.insteadOf"),
            "https://github.com/",
        ],
    );
    git_config(
        &sb,
        &[
            "http.https://github.com/.extraheader",
            &format!("AUTHORIZATION: basic {header}"),
        ],
    );
    git_config(&sb, &["core.askPass", "/usr/local/bin/planted-askpass"]);
    git_config(&sb, &["credential.helper", ""]);
    git_config(&sb, &["--add", "credential.helper", "store"]);
    sb.env("GIT_ASKPASS", "/usr/local/bin/planted-askpass-env");
    let exported = [
        "GH_TOKEN",
        "GITHUB_TOKEN",
        "GITHUB_PERSONAL_ACCESS_TOKEN",
        "COPILOT_GITHUB_TOKEN",
    ];
    for name in exported {
        let value = sb.secret(&format!("ghs_PLANTED{name}0123456789"));
        sb.env(name, &value);
    }

    let r = sb.run(&["doctor", "--json"], "");
    sb.assert_no_secret(&r.stdout);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let fp = |t: &str| molecule_credential::Secret::new(t.to_owned()).fingerprint();
    let gh_login = "git-credential-molecule token --host github.com | gh auth login --hostname github.com --git-protocol https --with-token";
    let expected: Vec<(String, String)> = [
        ("remote", "git remote set-url origin https://github.com/acme/app.git".to_owned()),
        (
            "insteadOf",
            format!(
                r#"git config --file {gitconfig} --name-only --get-regexp '^url\.https://[^@/]*@github\.com/\.insteadof$' | while IFS= read -r key; do git config --file {gitconfig} --unset-all "$key"; done"#
            ),
        ),
        (
            "extraHeader",
            "git config --local --unset-all http.https://github.com/.extraHeader '^AUTHORIZATION:'"
                .to_owned(),
        ),
        ("askPass", "unset GIT_ASKPASS".to_owned()),
        ("askPass", "git config --local --unset-all core.askPass".to_owned()),
        ("localHelper", "git config --local --unset-all credential.helper".to_owned()),
        ("environment", "unset GH_TOKEN".to_owned()),
        ("environment", "unset GITHUB_TOKEN".to_owned()),
        ("environment", "unset GITHUB_PERSONAL_ACCESS_TOKEN".to_owned()),
        ("environment", "unset COPILOT_GITHUB_TOKEN".to_owned()),
        ("gh", gh_login.to_owned()),
    ]
    .into_iter()
    .map(|(c, f)| (c.to_owned(), f))
    .collect();
    assert_eq!(problems(&report), expected, "{report:#}");
    assert_eq!(report["problems"], expected.len());

    let detail = |check: &str| -> Vec<String> {
        finding(&report, check)
            .iter()
            .map(|f| f["detail"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        detail("remote"),
        [format!(
            "remote origin's URL https://***@github.com/acme/app.git carries credentials ({}): git sends them and never asks git-credential-molecule",
            fp(&remote_password)
        )]
    );
    assert_eq!(
        detail("insteadOf"),
        [format!(
            "url.https://***@github.com/.insteadOf (global file:{gitconfig}) rewrites https://github.com/ into a URL carrying credentials ({}): git sends them and never asks git-credential-molecule",
            fp(&instead_of)
        )]
    );
    assert_eq!(
        detail("extraHeader"),
        [format!(
            "http.https://github.com/.extraHeader (local file:.git/config) sends `AUTHORIZATION: basic <{}>` on every request to github.com: git never asks git-credential-molecule there, and once that token dies every request fails",
            fp(&header)
        )]
    );
    assert_eq!(
        detail("localHelper"),
        [
            "credential.helper in this repository (local file:.git/config) resets the helper list: git never asks git-credential-molecule here, it asks `store` instead"
        ]
    );
    assert_eq!(
        detail("gh"),
        [format!(
            "gh holds {}, not the cache's current token {}: gh sends a token that dies first, or already has",
            fp(&gh_held),
            fp(&current)
        )]
    );
    // The helpers as configured are fine; in this repository git asks `store` alone.
    assert_eq!(finding(&report, "helpers")[0]["level"], "ok");
    assert_eq!(report["helpers"][0][1][0]["value"], "store");

    // The text form: the same findings, each fix on its own line.
    let r = sb.run(&["doctor"], "");
    sb.assert_no_secret(&r.stdout);
    assert_eq!(r.code, 1);
    for (_, fix) in &expected {
        assert!(
            r.stdout.lines().any(|l| l == format!("    fix: {fix}")),
            "no line for {fix}:\n{}",
            r.stdout
        );
    }
    assert!(
        r.stdout.contains(&format!(
            "FIX remote      github.com: remote origin's URL https://***@github.com/acme/app.git carries credentials ({})",
            fp(&remote_password)
        )),
        "{}",
        r.stdout
    );
    assert!(r.stdout.ends_with("11 problems found\n"), "{}", r.stdout);

    // Apply every fix, in the order given: the variables first, so gh may log in.
    for (_, fix) in &expected {
        match fix.strip_prefix("unset ") {
            Some(name) => {
                sb.unset(name);
            }
            None => apply(&sb, fix),
        }
    }

    let r = sb.run(&["doctor", "--json"], "");
    sb.assert_no_secret(&r.stdout);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(r.code, 0, "{report:#}");
    assert_eq!(
        (report["problems"].as_u64(), report["advice"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["level"] == "ok" && f["ok"] == true),
        "{report:#}"
    );
    assert_eq!(
        detail_of(&report, "gh"),
        [format!(
            "gh holds the cache's current token ({})",
            fp(&current)
        )]
    );
    assert_eq!(report["helpers"][0][1][0]["value"], BIN);
    let r = sb.run(&["doctor"], "");
    sb.assert_no_secret(&r.stdout);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        !r.stdout.contains("FIX") && !r.stdout.contains("TIP"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.ends_with("no problems found\n"), "{}", r.stdout);
    for line in [
        "ok  remote      no remote URL here carries credentials for a configured host",
        "ok  askPass     neither GIT_ASKPASS nor core.askPass is set",
        "ok  localHelper github.com: no credential.helper of this repository resets or follows ours",
    ] {
        assert!(r.stdout.lines().any(|l| l == line), "{line}:\n{}", r.stdout);
    }
}

/// The fixes doctor prints work where it ran: from a subdirectory of the repository and from
/// a linked worktree, where git names the repository's config by a relative path that is no
/// file there. Entries in the repository's config (`--local`), in a file it includes by a
/// relative path (`--file` with the absolute path), and in the worktree's own config
/// (`--worktree`).
#[test]
fn doctor_fixes_work_from_a_subdirectory_and_a_linked_worktree() {
    let platform = MockServer::start();
    let mut sb = Sandbox::new();
    healthy(&mut sb, &platform);
    let repo = sb.path("repo");
    let sub = repo.join("sub dir");
    let worktree = sb.path("wt");
    std::fs::create_dir_all(&sub).unwrap();
    let home = sb.home.clone();
    let in_repo = |args: &[&str]| {
        let ok = gitcmd::git(&home)
            .current_dir(&repo)
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    };
    in_repo(&["commit", "-q", "--allow-empty", "-m", "x"]);
    in_repo(&["worktree", "add", "-q", worktree.to_str().unwrap()]);
    in_repo(&["config", "extensions.worktreeConfig", "true"]);
    let included = sb.path("shared dir/creds.cfg");
    std::fs::create_dir_all(included.parent().unwrap()).unwrap();
    let header = sb.secret("ghs_PLANTEDincludedHeader0123456789");
    let plant = || {
        in_repo(&["config", "core.askPass", "/usr/local/bin/planted-askpass"]);
        std::fs::write(
            &included,
            format!(
                "[http \"https://github.com/\"]\n\textraheader = AUTHORIZATION: bearer {header}\n"
            ),
        )
        .unwrap();
        in_repo(&["config", "include.path", "../../shared dir/creds.cfg"]);
    };
    // git reads the include relative to .git, and doctor prints it absolute.
    let included_as_git_names_it = format!("'{}/.git/../../shared dir/creds.cfg'", repo.display());
    let expected = |worktree_helper: bool| {
        let mut fixes = vec![
            (
                "extraHeader".to_owned(),
                format!(
                    "git config --file {included_as_git_names_it} --unset-all http.https://github.com/.extraHeader '^AUTHORIZATION:'"
                ),
            ),
            (
                "askPass".to_owned(),
                "git config --local --unset-all core.askPass".to_owned(),
            ),
        ];
        if worktree_helper {
            fixes.push((
                "localHelper".to_owned(),
                "git config --worktree --unset-all credential.helper".to_owned(),
            ));
        }
        fixes
    };

    for (dir, own_helper) in [(&sub, false), (&worktree, true)] {
        plant();
        if own_helper {
            // The linked worktree resets the helper list in its own config.
            let ok = gitcmd::git(&home)
                .current_dir(dir)
                .args(["config", "--worktree", "credential.helper", ""])
                .status()
                .unwrap()
                .success();
            assert!(ok);
        }
        sb.cwd(dir);
        let (code, report) = doctor(&sb);
        assert_eq!(code, 1);
        assert_eq!(problems(&report), expected(own_helper), "{report:#}");
        sb.assert_no_secret(&report.to_string());
        for (_, fix) in expected(own_helper) {
            apply_in(&sb, dir, &fix);
        }
        let (code, report) = doctor(&sb);
        assert_eq!((code, problems(&report)), (0, vec![]), "{report:#}");
    }
}

fn detail_of(report: &serde_json::Value, check: &str) -> Vec<String> {
    finding(report, check)
        .iter()
        .map(|f| f["detail"].as_str().unwrap().to_owned())
        .collect()
}

/// How git starts our helper: a registered path that does not exist or is not executable is a
/// problem with its fix; the lookup form is advice, which leaves the exit code alone.
#[test]
fn doctor_checks_the_registered_helper_path() {
    let platform = MockServer::start();
    let mut sb = Sandbox::new();
    healthy(&mut sb, &platform);
    let configure = "git-credential-molecule configure --host github.com";
    let doctor = |sb: &Sandbox| -> (i32, serde_json::Value) {
        let (code, report) = self::doctor(sb);
        (code, finding(&report, "helperPath")[0].clone())
    };
    let (code, f) = doctor(&sb);
    assert_eq!(code, 0);
    assert_eq!(f["level"], "ok");
    assert_eq!(
        f["detail"],
        format!("git starts {BIN} itself: no second git process")
    );

    // A path that is not there.
    let r = sb.run(
        &[
            "configure",
            "--helper",
            "/nonexistent/bin/git-credential-molecule",
        ],
        "",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let gitconfig = sb.home.join(".gitconfig").display().to_string();
    let (code, f) = doctor(&sb);
    assert_eq!(code, 1);
    assert_eq!(f["level"], "problem");
    assert_eq!(
        f["detail"],
        format!(
            "git is to start /nonexistent/bin/git-credential-molecule (global file:{gitconfig}), which does not exist: it cannot, and moves on to a prompt"
        )
    );
    assert_eq!(f["fix"], configure);

    // A file that is not executable: chmod is the fix, and it works.
    // (Not in a directory on PATH: the fix below runs the real binary by name.)
    let script = sb.path("elsewhere/git-credential-molecule");
    std::fs::create_dir_all(script.parent().unwrap()).unwrap();
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = sb.run(&["configure", "--helper", script.to_str().unwrap()], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (code, f) = doctor(&sb);
    assert_eq!(code, 1);
    assert_eq!(
        f["detail"],
        format!(
            "git is to start {} (global file:{gitconfig}), which is not executable (mode 644): it cannot, and moves on to a prompt",
            script.display()
        )
    );
    assert_eq!(f["fix"], format!("chmod 755 {}", script.display()));
    apply(&sb, f["fix"].as_str().unwrap());
    let (code, f) = doctor(&sb);
    assert_eq!((code, f["level"].as_str()), (0, Some("ok")));

    // The lookup form: it works, at the price of a second git process: advice only.
    let r = sb.run(&["configure", "--helper", "molecule"], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (code, report) = self::doctor(&sb);
    assert_eq!(code, 0, "advice does not fail doctor: {report:#}");
    assert_eq!(
        (report["problems"].as_u64(), report["advice"].as_u64()),
        (Some(0), Some(1))
    );
    let f = finding(&report, "helperPath")[0];
    assert_eq!(
        (f["level"].as_str(), f["ok"].as_bool()),
        (Some("advice"), Some(true))
    );
    assert_eq!(
        f["detail"],
        format!(
            "`molecule` (global file:{gitconfig}) makes git start `git credential-molecule` for every lookup: a second git process before the helper runs; an absolute path skips it"
        )
    );
    assert_eq!(f["fix"], configure);
    let text = sb.run(&["doctor"], "").stdout;
    assert!(
        text.lines().any(|l| l
            == format!("TIP helperPath  github.com: `molecule` (global file:{gitconfig}) makes git start `git credential-molecule` for every lookup: a second git process before the helper runs; an absolute path skips it")),
        "{text}"
    );
    assert!(text.ends_with("no problems found, 1 tip\n"), "{text}");

    // The lookup form where git cannot find the binary: a problem.
    let mut lost = Sandbox::new();
    healthy(&mut lost, &platform);
    let gh_only = format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        lost.path("bin").display()
    );
    let r = lost.run(&["configure", "--helper", "molecule"], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    lost.env("PATH", &gh_only);
    let (code, f) = doctor(&lost);
    assert_eq!((code, f["level"].as_str()), (1, Some("problem")), "{f:#}");
    assert_eq!(f["fix"], configure);

    // The fix: configure again, from the installed binary.
    apply(&sb, configure);
    let (code, f) = doctor(&sb);
    assert_eq!((code, f["level"].as_str()), (0, Some("ok")));
}

/// Files others provision (the platform bearer, the file source's token) are used when others
/// may read them (a Kubernetes secret volume is 0644 by default); doctor reports the mode
/// with its fix, and says nothing once it is applied.
#[test]
fn doctor_reports_provisioned_files_others_can_read_with_the_fix() {
    let platform = MockServer::start();
    let mut sb = Sandbox::new();
    healthy(&mut sb, &platform);
    let bearer = sb.path("configs/.auth_token");
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    mode(&bearer, 0o644);
    let (code, report) = doctor(&sb);
    let found = exposed(&report);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("(the platform bearer) is readable by its group and everyone (mode 644); it is used anyway")
            && found[0].contains(&format!("=> chmod 600 {} (a Kubernetes secret volume: defaultMode: 0400)", bearer.display())),
        "{}",
        found[0]
    );
    // Used anyway: the source check itself passes.
    assert!(
        detail_of(&report, "source")
            .iter()
            .any(|d| d.starts_with("platform "))
    );
    mode(&bearer, 0o600);
    let (_, report) = doctor(&sb);
    assert!(
        problems(&report)
            .iter()
            .all(|(d, _)| !d.contains(".auth_token"))
    );

    // The file source: a token file as a secret volume mounts it, reported the same way, and
    // checked for what it holds.
    let token_file = sb.path("token.json");
    let expires = time::OffsetDateTime::now_utc() + time::Duration::minutes(40);
    std::fs::write(
        &token_file,
        format!(
            "{{\"token\":\"{}\",\"expires_at\":\"{}\"}}",
            long_token("file"),
            expires
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        ),
    )
    .unwrap();
    mode(&token_file, 0o644);
    sb.env("MOLECULE_TOKEN_SOURCE", "file").env(
        "MOLECULE_TOKEN_SOURCE_FILE",
        &token_file.display().to_string(),
    );
    let (_, report) = doctor(&sb);
    let source = detail_of(&report, "source");
    assert!(
        source.iter().any(|d| d
            .contains("(the token source file) is readable by its group and everyone (mode 644)")),
        "{source:?}"
    );
    assert!(
        source.iter().any(|d| d.starts_with(&format!(
            "token file {}: the token expires in 3",
            token_file.display()
        ))),
        "{source:?}"
    );
    std::fs::remove_file(&token_file).unwrap();
    let (code, report) = doctor(&sb);
    assert_eq!(code, 1);
    assert!(
        detail_of(&report, "source")
            .iter()
            .any(|d| d.contains("does not exist")),
        "{report:#}"
    );
}

/// The source check's problems about who may read a file, as `DETAIL => FIX`.
fn exposed(report: &serde_json::Value) -> Vec<String> {
    finding(report, "source")
        .into_iter()
        .filter(|f| {
            f["level"] == "problem" && f["detail"].as_str().unwrap().contains("is readable by")
        })
        .map(|f| {
            format!(
                "{} => {}",
                f["detail"].as_str().unwrap(),
                f["fix"].as_str().unwrap()
            )
        })
        .collect()
}
