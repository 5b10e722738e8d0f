//! `doctor` on a deliberately broken setup: another helper first, useHttpPath off while the
//! App routes by owner, a stale GH_TOKEN exported. Each problem is reported with the command
//! that fixes it; after running those commands, the same checks pass.

use std::process::Command;

use molecule_tests::TokenAuthority;
use molecule_tests::github_api::{
    GithubApi, GithubApiOptions, Installation, OwnerKind, test_app_key_path,
};

use crate::support::Sandbox;

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
