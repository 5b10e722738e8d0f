//! The file source (DESIGN.md, "The file source") through a hand-built Kubernetes secret
//! volume ([`SecretVolume`]: timestamped directories, `..data` swapped by an atomic rename,
//! `token` -> `..data/token`, files 0644 as a volume without `defaultMode` has them), with
//! the project's binaries as processes:
//!
//! - served, with one warning per process naming the group/world-readable file; swapped (the
//!   new token served once the old one is due, never before: the cache serves until then);
//!   the token git erased never served again (class transient until the file rotates, the
//!   fallback meanwhile); a bare token cached for at most 10 minutes; a missing file
//!   not-configured (`refresh` exits 78; `token`, which walks the whole source order, 69);
//! - an agent (git clone, push, fetch, `gh api /user`, without pause) across three swaps with
//!   no failure, `gh-token-refresh` (source `file`) logging gh in with each new token. The
//!   tokens come from the authority the git host and its API check, each valid until its own
//!   expiry as GitHub's are. This one needs root (a network namespace: gh wants port 443).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use molecule_tests::deadline::Guard;
use molecule_tests::{Issued, TokenAuthority};

use crate::harness::{Env, assert_exhausted, cached, file_source, git_reject, now, within};
use crate::secret_volume::SecretVolume;
use crate::stack::{AGENT_LOOP, Results, Stack, work_until};
use crate::support::{bin_dir, report, signal};

/// The mode a secret volume gives its files without `defaultMode`.
const VOLUME_MODE: u32 = 0o644;

/// `{"token":…,"expires_at":…}`, the platform's shape, as another system writes it.
fn json(issued: &Issued) -> Vec<u8> {
    serde_json::json!({
        "token": issued.token,
        "expires_at": issued
            .expires_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
    })
    .to_string()
    .into_bytes()
}

/// `token --format json`, parsed: (token, source, expires_at as printed).
fn token_json(env: &Env) -> (String, String, serde_json::Value, String) {
    let out = env.helper(&["token", "--format", "json"], "");
    assert_eq!(out.code, Some(0), "token: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    (
        v["token"].as_str().unwrap().to_owned(),
        v["source"].as_str().unwrap().to_owned(),
        v["expires_at"].clone(),
        out.stderr,
    )
}

/// Lines of `stderr` that name `path`.
fn naming(stderr: &str, path: &Path) -> usize {
    let p = path.display().to_string();
    stderr.lines().filter(|l| l.contains(&p)).count()
}

#[test]
fn a_secret_volume_is_served_swapped_and_an_erased_token_never_again() {
    let t = tempfile::tempdir().unwrap();
    let authority = TokenAuthority::new();
    let mut volume = SecretVolume::new(&t.path().join("secret"));
    let mut env = file_source(t.path(), &volume.path("token"));
    env.set("TOKEN_REFRESH_MARGIN_SEC", "2");
    let token_path = volume.path("token");

    // Served: the platform's JSON shape, from a 0644 file, with one warning naming it.
    let a = authority.issue(Duration::from_secs(6));
    volume.publish(&[("token", &json(&a))], VOLUME_MODE, None);
    let (token, source, expires_at, stderr) = token_json(&env);
    assert_eq!(
        (token.as_str(), source.as_str()),
        (a.token.as_str(), "file")
    );
    assert_eq!(
        expires_at,
        a.expires_at
            .replace_nanosecond(0)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
            .as_str()
    );
    assert_eq!(naming(&stderr, &token_path), 1, "one warning: {stderr}");
    assert!(!stderr.contains(&a.token));

    // Swapped: the next token is provisioned while the first still lives. The cache serves
    // the first until it is due (inside the 2 s margin), then the file's new one.
    let b = authority.issue(Duration::from_secs(6));
    volume.publish(&[("token", &json(&b))], VOLUME_MODE, None);
    assert_eq!(
        token_json(&env).0,
        a.token,
        "served the new token before the old one was due"
    );
    let due = a.expires_at - time::Duration::seconds(2);
    std::thread::sleep(Duration::try_from(due - now()).unwrap_or_default());
    let swapped_at = Instant::now();
    let (token, ..) = token_json(&env);
    assert_eq!(
        token, b.token,
        "the swapped-in token once the old one was due"
    );
    let swap_ms = swapped_at.elapsed().as_millis();

    // Erased: git rejects the token it got; the file still holds it. It is never served
    // again: class transient ("not rotated yet"), so the fallback, or nothing.
    git_reject(&env, "github.com", &b.token, t.path());
    let entry = cached(&t.path().join("cache"), "github.com").unwrap();
    assert!(
        entry.token == b.token && entry.suspect,
        "erase did not mark it suspect"
    );
    let out = env.helper(&["token"], "");
    assert_exhausted(&out);
    assert!(out.stderr.contains("rotate"), "{}", out.stderr);
    let fallback = authority.issue(Duration::from_secs(3600));
    let mut with_fallback = env.clone();
    with_fallback.set("GH_TOKEN", &fallback.token);
    let (token, source, ..) = token_json(&with_fallback);
    assert_eq!(
        (token.as_str(), source.as_str()),
        (fallback.token.as_str(), "fallback")
    );
    let got = with_fallback.helper(&["get"], "protocol=https\nhost=github.com\n\n");
    assert!(
        got.stdout
            .contains(&format!("password={}\n", fallback.token))
    );
    assert!(!got.stdout.contains(&b.token) && !got.stderr.contains(&b.token));
    // The file rotates: the new token is served, from the cache again.
    let c = authority.issue(Duration::from_secs(6));
    volume.publish(&[("token", &json(&c))], VOLUME_MODE, None);
    assert_eq!(token_json(&with_fallback).0, c.token);

    // A bare token: its expiry is unknown, so it is cached for at most 10 minutes.
    let d = authority.issue(Duration::from_secs(3600));
    volume.publish(
        &[("token", format!("{}\n", d.token).as_bytes())],
        VOLUME_MODE,
        None,
    );
    let out = env.helper(&["refresh"], "");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let entry = cached(&t.path().join("cache"), "github.com").unwrap();
    assert_eq!(
        (entry.token.as_str(), entry.source.as_str()),
        (d.token.as_str(), "file")
    );
    let lifetime = (entry.expires_at - entry.fetched_at).whole_seconds();
    assert!(
        (590..=600).contains(&lifetime),
        "bare token cached for {lifetime}s"
    );

    // Missing: the key is gone from the secret. Not configured: `refresh` (the source's own
    // class) exits 78; `token` walks the whole source order and, with nothing cached and no
    // fallback, exits 69 naming the file.
    volume.publish(&[("other", b"x")], VOLUME_MODE, None);
    let out = env.helper(&["refresh"], "");
    assert_eq!(out.code, Some(78), "{}", out.stderr);
    assert!(naming(&out.stderr, &token_path) >= 1, "{}", out.stderr);
    let mut fresh = env.clone();
    fresh.set("MOLECULE_TOKEN_CACHE_DIR", t.path().join("cache-2"));
    let out = fresh.helper(&["token"], "");
    assert_exhausted(&out);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    report(
        "file-source",
        &format!(
            "file source through a secret volume (0644, `..data` swapped by rename): served with \
             one warning naming the file; the swapped-in token served once the old one was due \
             ({swap_ms} ms to read it); the erased token never served again (exit 69, then the \
             fallback, then the rotated file's token); a bare token cached for {lifetime}s; a \
             missing file: `refresh` exit 78, `token` exit 69"
        ),
    );
}

const SWAPS: usize = 3;
/// Tokens live 12 s; a new one is provisioned every 6 s (ESO's advice, compressed: refresh
/// at half the token's life), so each is swapped in with the old one 6 s from its expiry,
/// and the cache takes it when the old one enters the margin, [`MARGIN_SECS`]: the 300 s of
/// a real deployment compressed as much as a loaded 2-core CI machine allows, where one
/// `gh auth login` was seen to take over 2 s.
const LIFE: Duration = Duration::from_secs(12);
const EVERY: Duration = Duration::from_secs(6);
const MARGIN_SECS: &str = "4";

#[test]
fn an_agent_works_across_three_swaps_with_gh_logged_in_after_each() {
    const NAME: &str =
        "file_source::an_agent_works_across_three_swaps_with_gh_logged_in_after_each";
    if !molecule_tests::netns::in_private_netns(NAME) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let stack = Stack::start(t.path(), "bearer-unused", "ws-unused");
    let home = t.path().join("home");
    let out = t.path().join("out");
    let gh_config = home.join(".config/gh");
    for d in [&home, &out, &gh_config] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut volume = SecretVolume::new(&t.path().join("secret"));
    let mut env = Env::default();
    for (k, v) in stack.deployment_env(stack.ca.ca_pem_path()) {
        env.set(&k, v);
    }
    env.set("PATH", format!("{}:/usr/bin:/bin", bin_dir().display()))
        .set("HOME", &home)
        .set("GIT_CONFIG_NOSYSTEM", "1")
        .set("GH_CONFIG_DIR", &gh_config)
        .set(
            "MOLECULE_TOKEN_CACHE_DIR",
            home.join(".molecule-token-cache"),
        )
        .set("MOLECULE_TOKEN_SOURCE", "file")
        .set("MOLECULE_TOKEN_SOURCE_FILE", volume.path("token"))
        .set("TOKEN_REFRESH_JITTER_SEC", "0")
        .set("TOKEN_REFRESH_MARGIN_SEC", MARGIN_SECS)
        .set("OUT", &out);
    let configured = env.helper(&["configure", "--global"], "");
    assert_eq!(configured.code, Some(0), "{}", configured.stderr);

    let mut tokens = vec![stack.authority.issue(LIFE)];
    volume.publish(&[("token", &json(&tokens[0]))], VOLUME_MODE, None);
    let mut swapped_at = Instant::now();
    let log = t.path().join("daemon.log");
    let mut daemon = env.daemon(&[], &log);
    let show = || std::fs::read_to_string(&log).unwrap_or_default();
    let hosts = gh_config.join("hosts.yml");
    let gh_holds = |token: &str| std::fs::read_to_string(&hosts).is_ok_and(|h| h.contains(token));
    assert!(
        within(Duration::from_secs(10), || gh_holds(&tokens[0].token)).is_some(),
        "the daemon did not log gh in:\n{}",
        show()
    );

    let agent = t.path().join("agent-loop.sh");
    std::fs::write(&agent, AGENT_LOOP).unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut loop_ = {
        let mut c = std::process::Command::new("/bin/sh");
        c.env_clear()
            .envs(env.0.iter().map(|(k, v)| (k, v)))
            .arg(&agent)
            .current_dir(&home)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(t.path().join("agent.log")).unwrap());
        Guard::spawn(&mut c)
    };
    let results = Results::new(&out);
    let logins = || show().matches("gh logged in with the new token").count();
    let mut seen_in_gh = Vec::new();
    for swap in 1..=SWAPS {
        let wait = EVERY.saturating_sub(swapped_at.elapsed());
        assert!(!work_until(&results, wait, "before a swap", &show, || {
            false
        }));
        let before = logins();
        tokens.push(stack.authority.issue(LIFE));
        volume.publish(&[("token", &json(&tokens[swap]))], VOLUME_MODE, None);
        swapped_at = Instant::now();
        // The daemon takes it when the previous token is due, and logs gh in with it.
        let limit = Duration::try_from(tokens[swap - 1].expires_at - now()).unwrap_or_default();
        // gh holds it once `gh auth login` has written hosts.yml; the daemon says so when gh
        // has exited, moments later: both, by the deadline.
        assert!(
            work_until(&results, limit, "after a swap", &show, || gh_holds(
                &tokens[swap].token
            ) && logins()
                > before),
            "gh was not logged in with swap {swap}'s token before the previous one expired:\n{}",
            show()
        );
        seen_in_gh.push(swapped_at.elapsed().as_millis());
    }
    // Work on with the last token for a while: gh and git both.
    let gh_calls = results.count("gh api");
    assert!(work_until(
        &results,
        Duration::from_secs(20),
        "at the end",
        &show,
        || { results.count("gh api") >= gh_calls + 3 }
    ));
    results.stop();
    assert_eq!(loop_.exit_within(Duration::from_secs(30)), Some(Some(0)));
    results.assert_no_failure("across the swaps", &show);
    for op in ["git clone", "git -C", "gh api"] {
        assert!(
            results.count(op) >= 5,
            "too few {op}: {}",
            results.tally(SWAPS as u64)
        );
    }
    signal(daemon.id(), "TERM");
    assert_eq!(daemon.exit_within(Duration::from_secs(10)), Some(Some(0)));
    let text = show();
    // The volume's 0644 file: one warning per process, however often it is read.
    assert_eq!(
        text.lines()
            .filter(
                |l| l.contains("WARN") && l.contains(&volume.path("token").display().to_string())
            )
            .count(),
        1,
        "{text}"
    );
    for issued in &tokens {
        assert!(!text.contains(&issued.token), "a token in the daemon's log");
    }
    report(
        "file-source-agent",
        &format!(
            "an agent on the file source across {SWAPS} swaps of a secret volume (tokens living \
             {}s, a new one every {}s, margin {MARGIN_SECS}s): {}; gh logged in with each swapped-in token \
             {seen_in_gh:?} ms after its swap ({} logins in the daemon's log)",
            LIFE.as_secs(),
            EVERY.as_secs(),
            results.tally(SWAPS as u64),
            logins(),
        ),
    );
}
