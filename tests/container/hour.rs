//! "An hour, compressed": tokens live 6 seconds. The entrypoint starts as root with a stale
//! GH_TOKEN exported, drops to the agent, and runs an agent that clones, commits, pushes,
//! fetches and calls `gh api /user` without pause against a GitHub-like host (git and the API
//! on https://localhost, in a private network namespace). Across five and more rotations
//! nothing may fail. Then the daemon is killed: git keeps working on the helper's own refresh,
//! and the respawn loop brings the daemon back.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use molecule_tests::{
    GitServer, PlatformOptions, PlatformStandIn, TestCa, TokenAuthority, init_bare_repo,
};

use crate::support::*;

/// The agent: git and gh in a loop, one line per operation in $OUT/results. gh is skipped
/// while $OUT/daemon-down exists: only git is promised to work without the daemon.
const AGENT_LOOP: &str = r#"#!/bin/sh
set -u
out=$OUT
echo "GH_TOKEN=${GH_TOKEN:-unset} GITHUB_TOKEN=${GITHUB_TOKEN:-unset}" > "$out/agent-env"
cd "$HOME"
op() {
  if "$@" > "$out/op.log" 2>&1; then
    echo "ok $1 $2 $(date +%s.%N)" >> "$out/results"
  else
    echo "FAIL $* :: $(tr '\n' ' ' < "$out/op.log")" >> "$out/results"
  fi
}
op git clone -q https://localhost/acme/app.git work
n=0
while [ ! -f "$out/stop" ]; do
  n=$((n + 1))
  op git clone -q https://localhost/acme/app.git "fresh"
  rm -rf fresh
  echo "$n" >> work/counter && git -C work add counter && git -C work commit -qm "change $n"
  op git -C work push -q origin HEAD:main
  op git -C work fetch -q origin
  [ -f "$out/daemon-down" ] || op gh api --hostname localhost /user
  sleep 0.2
done
echo "done $n" >> "$out/results"
"#;

fn results(out: &Path) -> String {
    std::fs::read_to_string(out.join("results")).unwrap_or_default()
}

fn daemon_pid(cache: &Path) -> Option<u32> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("daemon.status.json")).ok()?).ok()?;
    let pid = v["pid"].as_u64()? as u32;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

#[test]
fn an_hour_compressed() {
    if !molecule_tests::netns::in_private_netns("hour::an_hour_compressed") {
        return;
    }
    let t = open_tempdir();
    let ca = TestCa::generate(t.path());
    std::fs::set_permissions(ca.ca_pem_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let authority = TokenAuthority::new();
    let platform = PlatformStandIn::start(
        "127.0.0.1:0".parse().unwrap(),
        PlatformOptions {
            ttl: Duration::from_secs(6),
            remint_below: Duration::from_secs(3),
            bearer: "bearer-hour".into(),
            workspace_id: Some("ws-hour".into()),
        },
        authority.clone(),
    );
    let repos = t.path().join("repos");
    std::fs::create_dir_all(repos.join("acme")).unwrap();
    init_bare_repo(&repos, "acme/app.git");
    let forge = GitServer::start_with_api(
        "127.0.0.1:443".parse().unwrap(),
        &repos,
        &ca,
        authority.clone(),
    );

    let home = agent_dir(&t.path().join("home/agent"));
    std::fs::set_permissions(
        t.path().join("home"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let out = agent_dir(&t.path().join("out"));
    let cache = home.join(".molecule-token-cache");
    std::fs::create_dir_all(t.path().join("configs")).unwrap();
    // The daemon runs as the agent: the bearer is the agent's alone, as a secret volume
    // mounted for its uid would be.
    molecule_tests::write_secret(&t.path().join("configs/.auth_token"), "bearer-hour\n");
    std::os::unix::fs::chown(t.path().join("configs/.auth_token"), Some(AGENT_UID), None).unwrap();
    let agent = t.path().join("agent-loop.sh");
    std::fs::write(&agent, AGENT_LOOP).unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (passwd, group) = user_db(t.path(), &home);

    let entry = script("entrypoint.sh");
    let mut c = with_agent_user(
        &passwd,
        &group,
        &[entry.to_str().unwrap(), agent.to_str().unwrap()],
    );
    c.env_clear()
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin_dir().display()),
        )
        .env("HOME", "/root")
        .env("GIT_CONFIG_SYSTEM", t.path().join("etc-gitconfig"))
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Agent")
        .env("GIT_AUTHOR_EMAIL", "agent@molecule.invalid")
        .env("GIT_COMMITTER_NAME", "Agent")
        .env("GIT_COMMITTER_EMAIL", "agent@molecule.invalid")
        .env("GIT_SSL_CAINFO", ca.ca_pem_path())
        .env("SSL_CERT_FILE", ca.ca_pem_path())
        .env("GH_NO_UPDATE_NOTIFIER", "1")
        .env("PLATFORM_URL", platform.url())
        .env("WORKSPACE_ID", "ws-hour")
        .env("CONFIGS_DIR", t.path().join("configs"))
        .env("MOLECULE_AGENT_USER", AGENT)
        .env("MOLECULE_GIT_HOSTS", "localhost")
        .env("TOKEN_REFRESH_MARGIN_SEC", "2")
        .env("TOKEN_REFRESH_INTERVAL_SEC", "60")
        // Long enough that the helper alone carries git through at least one rotation.
        .env("MOLECULE_RESPAWN_MIN_DELAY_SEC", "8")
        // What the container was started with: a token that is already dead.
        .env("GH_TOKEN", "ghs_stale_from_container_start")
        .env("GITHUB_TOKEN", "ghs_stale_from_container_start")
        .env("OUT", &out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(t.path().join("container.log")).unwrap());
    let mut container = c.spawn().unwrap();
    let log = || std::fs::read_to_string(t.path().join("container.log")).unwrap_or_default();
    let start = Instant::now();
    let fail_fast = |what: &str| {
        let r = results(&out);
        assert!(
            !r.contains("FAIL"),
            "{what}: an operation failed:\n{r}\n--- container log ---\n{}",
            log()
        );
    };

    // Five rotations with everything running.
    let first_mint = platform.minted();
    assert!(
        wait_for(Duration::from_secs(90), || {
            fail_fast("before the kill");
            platform.minted() >= first_mint + 5 && results(&out).contains("ok gh api")
        }),
        "not enough rotations: {}\n{}",
        platform.minted(),
        log()
    );
    let rotations_before = platform.minted() - first_mint;

    // Kill the daemon. git must keep working on the helper's own refreshes.
    let old = daemon_pid(&cache).expect("the daemon runs");
    std::fs::write(out.join("daemon-down"), "").unwrap();
    let killed_at = platform.minted();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &old.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let ops_at_kill = results(&out).lines().count();
    // The respawn delay is 8 s; tokens live 6 s: at least one rotation happens without it.
    assert!(
        wait_for(Duration::from_secs(7), || {
            fail_fast("while the daemon was down");
            platform.minted() > killed_at
        }),
        "the helper did not refresh on its own"
    );
    assert_eq!(
        daemon_pid(&cache),
        None,
        "the token was minted while no daemon was running"
    );
    let minted_without_daemon = platform.minted() - killed_at;
    let ops_without_daemon = results(&out).lines().count() - ops_at_kill;

    // The respawn loop brings it back.
    assert!(
        wait_for(Duration::from_secs(20), || {
            fail_fast("waiting for the respawn");
            daemon_pid(&cache).is_some_and(|p| p != old)
        }),
        "the daemon did not come back: {}",
        log()
    );
    // Let it log gh in, then check gh again across two more rotations.
    std::thread::sleep(Duration::from_secs(2));
    std::fs::remove_file(out.join("daemon-down")).unwrap();
    let back_at = platform.minted();
    let gh_ok_before = results(&out).matches("ok gh api").count();
    assert!(wait_for(Duration::from_secs(30), || {
        fail_fast("after the respawn");
        platform.minted() >= back_at + 2
            && results(&out).matches("ok gh api").count() > gh_ok_before + 3
    }));

    std::fs::write(out.join("stop"), "").unwrap();
    assert_eq!(
        wait_exit(&mut container, Duration::from_secs(30)),
        Some(0),
        "the agent exits cleanly"
    );
    stop_group(&container);
    fail_fast("at the end");

    let r = results(&out);
    let count = |op: &str| r.matches(&format!("ok {op}")).count();
    assert_eq!(
        std::fs::read_to_string(out.join("agent-env"))
            .unwrap()
            .trim(),
        "GH_TOKEN=unset GITHUB_TOKEN=unset"
    );
    for op in ["git clone", "git -C", "gh api"] {
        assert!(count(op) >= 10, "too few {op}: {}", count(op));
    }
    let total = platform.minted() - first_mint;
    assert!(total >= 8, "{total} rotations");
    assert!(
        !log().contains("stale_from_container_start"),
        "the boot token reached the log"
    );
    // The test's own report, in one line.
    let summary = format!(
        "an hour, compressed: {:.0}s, {} rotations ({rotations_before} before the kill, {minted_without_daemon} by the helper alone), \
         {} git clones, {} pushes/fetches, {} gh api calls, {ops_without_daemon} operations while the daemon was down, 0 failures",
        start.elapsed().as_secs_f64(),
        total,
        count("git clone"),
        count("git -C"),
        count("gh api"),
    );
    std::fs::write(root().join("target/hour-compressed.txt"), &summary).unwrap();
    assert!(
        forge.unauthorized() > 0,
        "git asked for credentials (401 first): the server does check them"
    );
}
