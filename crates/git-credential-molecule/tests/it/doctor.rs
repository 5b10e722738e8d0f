//! `doctor` on deliberately broken setups: another helper first, useHttpPath off while the
//! App routes by owner, a stale GH_TOKEN exported; a registered helper path git cannot run. Each problem is reported with the command that fixes
//! it; after running those commands, the same checks pass.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use httpmock::MockServer;
use molecule_tests::TokenAuthority;
use molecule_tests::gitcmd;
use molecule_tests::github_api::{
    GithubApi, GithubApiOptions, Installation, OwnerKind, test_app_key_path,
};

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
        GithubApiOptions {
            installations: vec![Installation {
                id: 7,
                owner: "acme".into(),
                kind: OwnerKind::Organization,
                repositories: vec![],
            }],
            ..GithubApiOptions::default()
        },
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

/// Runs a printed fix as the user would: in sh, in the repository, with the sandbox's
/// environment.
fn apply(sb: &Sandbox, fix: &str) {
    let probe = sb.command(&[]);
    let out = Command::new("sh")
        .args(["-c", fix])
        .current_dir(sb.path("repo"))
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
