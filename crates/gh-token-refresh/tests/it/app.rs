//! The daemon with the `github-app` source: it mints from a GitHub API stand-in that verifies
//! the App's JWT, keeps owner entries warm, and with --revoke-on-exit revokes what it minted
//! when it stops (and marks it suspect, so no helper serves a dead token).

use molecule_tests::TokenAuthority;
use molecule_tests::github_api::{
    GithubApi, GithubApiOptions, Installation, OwnerKind, test_app_key_path,
};

use crate::support::{Proc, exit_within, signal, wait_for};

fn api(authority: &TokenAuthority) -> GithubApi {
    GithubApi::start(
        "127.0.0.1:0".parse().unwrap(),
        GithubApiOptions {
            installations: vec![
                Installation {
                    id: 11,
                    owner: "acme".into(),
                    kind: OwnerKind::Organization,
                    repositories: vec![],
                },
                Installation {
                    id: 22,
                    owner: "globex".into(),
                    kind: OwnerKind::Organization,
                    repositories: vec![],
                },
            ],
            ..GithubApiOptions::default()
        },
        authority.clone(),
        None,
    )
}

fn app_proc(api: &GithubApi) -> Proc {
    let mut p = Proc::new("http://127.0.0.1:9");
    p.set("MOLECULE_TOKEN_SOURCE", "github-app")
        .set("MOLECULE_GITHUB_APP_ID", "424242")
        .set(
            "MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE",
            &test_app_key_path().display().to_string(),
        )
        .set("MOLECULE_GITHUB_API_URL", &api.url())
        .set("MOLECULE_GITHUB_APP_INSTALLATIONS", "acme=11,globex=22")
        .set("MOLECULE_GITHUB_APP_INSTALLATION_ID", "11");
    p
}

fn entries(p: &Proc) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p.path("cache/tokens.json")).unwrap_or_default())
        .unwrap_or_default()
}

#[test]
fn the_daemon_keeps_each_owner_warm_and_revokes_on_exit() {
    let authority = TokenAuthority::new();
    let api = api(&authority);
    let p = app_proc(&api);
    let mut daemon = p.spawn("d.log", &["--revoke-on-exit"]);
    // The host (default installation) and both mapped owners.
    assert!(
        wait_for(15, || entries(&p)["entries"]
            .as_object()
            .is_some_and(|e| e.len() == 3)),
        "{}",
        p.log("d.log")
    );
    let doc = entries(&p);
    assert_eq!(doc["entries"]["github.com"]["installation_id"], 11);
    assert_eq!(doc["entries"]["github.com/acme"]["installation_id"], 11);
    assert_eq!(doc["entries"]["github.com/globex"]["installation_id"], 22);
    let tokens: Vec<String> = ["github.com", "github.com/acme", "github.com/globex"]
        .iter()
        .map(|k| doc["entries"][k]["token"].as_str().unwrap().to_owned())
        .collect();
    assert!(tokens.iter().all(|t| authority.is_valid(t)));
    assert!(api.jwt_rejections().is_empty());

    signal(&daemon, "TERM");
    assert_eq!(exit_within(&mut daemon, 15), Some(0));
    assert_eq!(api.revoked(), 3, "{}", p.log("d.log"));
    // As `Bearer`, which GitHub takes for every token shape (`token` is the older scheme).
    assert_eq!(api.revocation_schemes(), ["bearer"; 3]);
    assert!(
        tokens.iter().all(|t| !authority.is_valid(t)),
        "revoked at GitHub"
    );
    let doc = entries(&p);
    for k in ["github.com", "github.com/acme", "github.com/globex"] {
        assert_eq!(
            doc["entries"][k]["suspect"], true,
            "{k}: a revoked token must not be served"
        );
    }
    let log = p.log("d.log");
    assert_eq!(
        log.matches("revoked the token at shutdown").count(),
        3,
        "{log}"
    );
    for t in &tokens {
        assert!(!log.contains(&t[4..40]));
    }
}

#[test]
fn without_the_flag_nothing_is_revoked() {
    let authority = TokenAuthority::new();
    let api = api(&authority);
    let p = app_proc(&api);
    let mut daemon = p.spawn("d.log", &[]);
    assert!(wait_for(15, || entries(&p)["entries"]
        .as_object()
        .is_some_and(|e| e.len() == 3)));
    signal(&daemon, "TERM");
    assert_eq!(exit_within(&mut daemon, 10), Some(0));
    assert_eq!(api.revoked(), 0);
}
