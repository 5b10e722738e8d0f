//! "An hour, compressed": tokens live 6 seconds. The entrypoint starts as root with a stale
//! GH_TOKEN exported, drops to the agent, and runs an agent that clones, commits, pushes,
//! fetches and calls `gh api /user` without pause against a GitHub-like host (git and the API
//! on https://localhost, in a private network namespace). Across five and more rotations
//! nothing may fail. Then the daemon is killed: git keeps working on the helper's own refresh,
//! and the respawn loop brings the daemon back.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::stack::{AGENT_LOOP, Results, STALE, Stack, work_until};
use crate::support::*;

fn daemon_pid(cache: &Path) -> Option<u32> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("daemon.status.json")).ok()?).ok()?;
    let pid = v["pid"].as_u64()? as u32;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// An entrypoint started on this machine as a container runtime would start it: as root,
/// with a stale `GH_TOKEN` and `GITHUB_TOKEN` exported, the agent user present (in a private
/// mount namespace), the stand-ins of [`Stack`] on https://localhost, and the agent loop as
/// its command. In a private network namespace (the stand-ins own port 443).
pub struct HostRun {
    pub t: tempfile::TempDir,
    pub stack: Stack,
    pub results: Results,
    /// The agent's cache directory.
    pub cache: PathBuf,
    pub entrypoint: Child,
    log_path: PathBuf,
}

impl HostRun {
    /// Starts `entry` (scripts/entrypoint.sh, or an installed `molecule-entrypoint`) with
    /// `path` as PATH and `env` added.
    pub fn start(entry: &Path, path: &str, env: &[(&str, &str)]) -> HostRun {
        let t = open_tempdir();
        let stack = Stack::start(t.path(), "bearer-hour", "ws-hour");
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
        std::os::unix::fs::chown(t.path().join("configs/.auth_token"), Some(AGENT_UID), None)
            .unwrap();
        let agent = t.path().join("agent-loop.sh");
        std::fs::write(&agent, AGENT_LOOP).unwrap();
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (passwd, group) = user_db(t.path(), &home);
        let log_path = t.path().join("container.log");
        let mut c = with_agent_user(
            &passwd,
            &group,
            &[entry.to_str().unwrap(), agent.to_str().unwrap()],
        );
        c.env_clear()
            .env("PATH", path)
            .env("HOME", "/root")
            .env("GIT_CONFIG_SYSTEM", t.path().join("etc-gitconfig"))
            .envs(stack.deployment_env(stack.ca.ca_pem_path()))
            .env("CONFIGS_DIR", t.path().join("configs"))
            .env("MOLECULE_AGENT_USER", AGENT)
            .env("GH_TOKEN", STALE)
            .env("GITHUB_TOKEN", STALE)
            .env("OUT", &out)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap());
        let entrypoint = c.spawn().unwrap();
        HostRun {
            results: Results::new(&out),
            t,
            stack,
            cache,
            entrypoint,
            log_path,
        }
    }

    /// What the entrypoint, the daemon and the agent logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Works until five rotations and a `gh api` call succeeded, every operation
    /// succeeding. Returns the rotations.
    pub fn five_rotations(&self, what: &str) -> u64 {
        let platform = &self.stack.platform;
        let first_mint = platform.minted();
        assert!(
            work_until(
                &self.results,
                Duration::from_secs(90),
                what,
                &|| self.log(),
                || { platform.minted() >= first_mint + 5 && self.results.count("gh api") > 0 }
            ),
            "not enough rotations {what}: {}\n{}",
            platform.minted() - first_mint,
            self.log()
        );
        platform.minted() - first_mint
    }

    /// Asks the agent to finish; it exits cleanly, and the daemon and respawn loop it left
    /// behind are stopped. Panics if any operation failed.
    pub fn finish(&mut self) {
        self.results.stop();
        assert_eq!(
            wait_exit(&mut self.entrypoint, Duration::from_secs(30)),
            Some(0),
            "the agent exits cleanly"
        );
        stop_group(&self.entrypoint);
        self.results.assert_no_failure("at the end", &|| self.log());
        assert_eq!(
            self.results.agent_env(),
            "GH_TOKEN=unset GITHUB_TOKEN=unset"
        );
        assert!(
            !self.log().contains(STALE),
            "the boot token reached the log"
        );
    }
}

#[test]
fn an_hour_compressed() {
    if !molecule_tests::netns::in_private_netns("hour::an_hour_compressed") {
        return;
    }
    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin_dir().display());
    // Long enough that the helper alone carries git through at least one rotation.
    let mut run = HostRun::start(
        &script("entrypoint.sh"),
        &path,
        &[("MOLECULE_RESPAWN_MIN_DELAY_SEC", "8")],
    );
    let start = Instant::now();
    let first_mint = run.stack.platform.minted();

    // Five rotations with everything running.
    let rotations_before = run.five_rotations("before the kill");
    let (platform, results, cache, out) = (
        &run.stack.platform,
        &run.results,
        run.cache.clone(),
        run.t.path().join("out"),
    );
    let log = || run.log();

    // Kill the daemon. git must keep working on the helper's own refreshes.
    let old = daemon_pid(&cache).expect("the daemon runs");
    std::fs::write(out.join("daemon-down"), "").unwrap();
    let killed_at = platform.minted();
    signal(old, "KILL");
    let ops_at_kill = results.operations();
    // The respawn delay is 8 s; tokens live 6 s: at least one rotation happens without it.
    assert!(
        work_until(
            results,
            Duration::from_secs(7),
            "while the daemon was down",
            &log,
            || platform.minted() > killed_at
        ),
        "the helper did not refresh on its own"
    );
    assert_eq!(
        daemon_pid(&cache),
        None,
        "the token was minted while no daemon was running"
    );
    let minted_without_daemon = platform.minted() - killed_at;
    let ops_without_daemon = results.operations() - ops_at_kill;

    // The respawn loop brings it back.
    assert!(
        work_until(
            results,
            Duration::from_secs(20),
            "waiting for the respawn",
            &log,
            || daemon_pid(&cache).is_some_and(|p| p != old)
        ),
        "the daemon did not come back: {}",
        log()
    );
    // Let it log gh in, then check gh again across two more rotations.
    std::thread::sleep(Duration::from_secs(2));
    std::fs::remove_file(out.join("daemon-down")).unwrap();
    let back_at = platform.minted();
    let gh_ok_before = results.count("gh api");
    assert!(work_until(
        results,
        Duration::from_secs(30),
        "after the respawn",
        &log,
        || platform.minted() >= back_at + 2 && results.count("gh api") > gh_ok_before + 3
    ));

    run.finish();
    let (platform, results) = (&run.stack.platform, &run.results);
    for op in ["git clone", "git -C", "gh api"] {
        assert!(
            results.count(op) >= 10,
            "too few {op}: {}",
            results.count(op)
        );
    }
    let total = platform.minted() - first_mint;
    assert!(total >= 8, "{total} rotations");
    // The test's own report, in one line.
    report(
        "hour",
        &format!(
            "an hour, compressed: {:.0}s, {} ({rotations_before} rotations before the kill, \
             {minted_without_daemon} by the helper alone, {ops_without_daemon} operations while the daemon was down)",
            start.elapsed().as_secs_f64(),
            results.tally(total),
        ),
    );
    assert!(
        run.stack.forge.unauthorized() > 0,
        "git asked for credentials (401 first): the server does check them"
    );
}
