//! scripts/entrypoint.sh as root with a created agent user, and started directly as the agent.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use molecule_tests::{PlatformOptions, PlatformStandIn, TokenAuthority};

use crate::support::*;

const STALE: &str = "ghs_stale_boot_token_0123456789";

/// What the agent command records: its uid, its environment and the helper list git sees.
const RECORD: &str = "id -u > \"$OUT/uid\"; env > \"$OUT/env\"";

struct Scene {
    t: tempfile::TempDir,
    platform: PlatformStandIn,
    home: std::path::PathBuf,
    out: std::path::PathBuf,
    passwd: std::path::PathBuf,
    group: std::path::PathBuf,
}

impl Scene {
    fn new() -> Self {
        let t = open_tempdir();
        let platform = PlatformStandIn::start(
            "127.0.0.1:0".parse().unwrap(),
            PlatformOptions {
                bearer: "bearer-e".into(),
                ..PlatformOptions::default()
            },
            TokenAuthority::new(),
        );
        let home = agent_dir(&t.path().join("home/agent"));
        std::fs::set_permissions(
            t.path().join("home"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let out = agent_dir(&t.path().join("out"));
        std::fs::create_dir_all(t.path().join("configs")).unwrap();
        // The daemon runs as the agent: the bearer is the agent's alone, as a secret volume
        // mounted for its uid would be.
        molecule_tests::write_secret(&t.path().join("configs/.auth_token"), "bearer-e\n");
        std::os::unix::fs::chown(t.path().join("configs/.auth_token"), Some(AGENT_UID), None)
            .unwrap();
        let (passwd, group) = user_db(t.path(), &home);
        Self {
            t,
            platform,
            home,
            out,
            passwd,
            group,
        }
    }

    fn env(&self, c: &mut Command) {
        let fake = fake_gh(self.t.path());
        c.env_clear()
            .env(
                "PATH",
                format!(
                    "{}:{}:/usr/sbin:/usr/bin:/sbin:/bin",
                    fake.display(),
                    bin_dir().display()
                ),
            )
            .env("HOME", "/root")
            .env("GIT_CONFIG_SYSTEM", self.t.path().join("etc-gitconfig"))
            .env("PLATFORM_URL", self.platform.url())
            .env("CONFIGS_DIR", self.t.path().join("configs"))
            .env("MOLECULE_AGENT_USER", AGENT)
            .env("GH_TOKEN", STALE)
            .env("GITHUB_TOKEN", STALE)
            .env("OUT", &self.out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A file, not a pipe: the daemon the entrypoint leaves running inherits it, and a
            // pipe would never reach end of file.
            .stderr(std::fs::File::create(self.t.path().join("entrypoint.log")).unwrap());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.t.path().join("entrypoint.log")).unwrap_or_default()
    }

    fn cache(&self) -> std::path::PathBuf {
        self.home.join(".molecule-token-cache")
    }
}

/// The helper value `configure` registers when the entrypoint starts it by name: its path on
/// PATH (DESIGN.md: the absolute path of the installed binary).
fn installed_helper() -> String {
    bin_dir()
        .join("git-credential-molecule")
        .display()
        .to_string()
}

fn run_entrypoint(s: &Scene, mut c: Command) -> (i32, String, std::process::Child) {
    let mut child = c.spawn().unwrap();
    let code = wait_exit(&mut child, Duration::from_secs(60)).unwrap_or(-1);
    (code, s.log(), child)
}

#[test]
fn as_root_it_configures_git_owns_the_cache_and_drops_the_boot_token() {
    if !molecule_tests::netns::in_private_netns(
        "entrypoint::as_root_it_configures_git_owns_the_cache_and_drops_the_boot_token",
    ) {
        return;
    }
    let s = Scene::new();
    let entry = script("entrypoint.sh");
    let mut runs = Vec::new();
    for round in 1..=2 {
        let mut c = with_agent_user(
            &s.passwd,
            &s.group,
            &[entry.to_str().unwrap(), "sh", "-c", RECORD],
        );
        s.env(&mut c);
        let (code, err, child) = run_entrypoint(&s, c);
        assert_eq!(code, 0, "round {round}: {err}");
        assert!(!err.contains(STALE), "the boot token reached the log");
        runs.push((err, child));

        // git: exactly the empty entry, then ours by the path the entrypoint found it at on
        // PATH, however often the entrypoint runs.
        let helpers = git_config_all(
            &s.t.path().join("etc-gitconfig"),
            "credential.https://github.com.helper",
        );
        assert_eq!(
            helpers,
            ["".to_owned(), installed_helper()],
            "round {round}"
        );
        // The cache: the agent's, 0700. The fallback: the agent's, 0600, the boot token.
        assert_eq!(owner_mode(&s.cache()), (AGENT_UID, 0o700), "round {round}");
        let fallback = s.cache().join("fallback-token");
        assert_eq!(owner_mode(&fallback), (AGENT_UID, 0o600), "round {round}");
        assert_eq!(
            std::fs::read_to_string(&fallback).unwrap(),
            format!("{STALE}\n")
        );
        // The agent: its own uid and home, and no token variable at all.
        assert_eq!(
            std::fs::read_to_string(s.out.join("uid")).unwrap().trim(),
            AGENT_UID.to_string()
        );
        let env = std::fs::read_to_string(s.out.join("env")).unwrap();
        assert_no_token_variable(&env, &format!("round {round}: the agent"));
        assert!(
            env.lines()
                .any(|l| l == format!("HOME={}", s.home.display())),
            "round {round}"
        );
        // The prime worked: the cache holds a platform token, owned by the agent.
        assert_eq!(
            owner_mode(&s.cache().join("tokens.json")),
            (AGENT_UID, 0o600)
        );
    }
    assert!(runs[0].0.contains("cache and gh primed"), "{}", runs[0].0);
    // The second run found a daemon already holding the cache: its own exits at once.
    let daemon_status = s.cache().join("daemon.status.json");
    assert!(wait_for(Duration::from_secs(10), || daemon_status.exists()));
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&daemon_status).unwrap()).unwrap();
    let pid = status["pid"].as_u64().unwrap();
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the first daemon runs on"
    );
    for (_, child) in &runs {
        stop_group(child);
    }
    assert!(
        wait_for(Duration::from_secs(10), || !Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists()),
        "the daemon stops with its group"
    );
}

#[test]
fn started_directly_as_the_agent_it_configures_global_git() {
    if !molecule_tests::netns::in_private_netns(
        "entrypoint::started_directly_as_the_agent_it_configures_global_git",
    ) {
        return;
    }
    let s = Scene::new();
    let entry = script("entrypoint.sh");
    let uid = format!("--reuid={AGENT_UID}");
    let gid = format!("--regid={AGENT_UID}");
    let mut c = with_agent_user(
        &s.passwd,
        &s.group,
        &[
            "setpriv",
            &uid,
            &gid,
            "--clear-groups",
            "--",
            entry.to_str().unwrap(),
            "sh",
            "-c",
            RECORD,
        ],
    );
    s.env(&mut c);
    c.env("HOME", &s.home)
        .env_remove("GIT_CONFIG_SYSTEM")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    let (code, err, child) = run_entrypoint(&s, c);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        git_config_all(
            &s.home.join(".gitconfig"),
            "credential.https://github.com.helper"
        ),
        ["".to_owned(), installed_helper()]
    );
    assert_eq!(owner_mode(&s.cache()), (AGENT_UID, 0o700));
    assert_eq!(
        owner_mode(&s.cache().join("fallback-token")),
        (AGENT_UID, 0o600)
    );
    let env = std::fs::read_to_string(s.out.join("env")).unwrap();
    assert!(!env.contains("GH_TOKEN=") && !env.contains("GITHUB_TOKEN="));
    stop_group(&child);
}

#[test]
fn without_a_command_it_says_how_to_use_it() {
    let out = Command::new(script("entrypoint.sh"))
        .env("PATH", format!("{}:/usr/bin:/bin", bin_dir().display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: entrypoint.sh CMD"));
}
