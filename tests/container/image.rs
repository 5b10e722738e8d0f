//! The shipped image, run: docker/Dockerfile built as shipped (binaries `prebuilt` from this
//! workspace), then started the way `docker run -i -e … IMAGE < agent.sh` starts it: the
//! image's own `Entrypoint` and `Cmd` (bash, reading the agent from stdin) as PID 1 under the
//! image's tini, as root so the entrypoint's root half runs, with the image's `Env` and a
//! stale `GH_TOKEN` exported. Inside, with the image's own git (Debian's 2.39) and gh: "an
//! hour, compressed" (`crate::stack`), with zero failures. Then the image's `HEALTHCHECK`,
//! run as Docker runs it, while healthy and after the platform has failed past the token's
//! expiry; then `docker stop`: SIGTERM to PID 1 ends every process in the container, the
//! daemon's last status record written first. Then a second container from the same image
//! with the `github-app` source and `--revoke-on-exit`: the revocation reaches the GitHub API
//! stand-in before PID 1 exits.

use std::path::Path;
use std::time::{Duration, Instant};

use molecule_tests::Fault;
use molecule_tests::github_api::{GithubApi, GithubApiOptions, test_app_key_path};

use crate::runtime::{Container, Image, Mount, Run, agent_image_in_netns};
use crate::stack::{AGENT_LOOP, Results, STALE, Stack, TTL, cached_expiry, work_until};
use crate::support::{
    TOKEN_VARIABLES, assert_no_token_variable, git_config_all, report, signal, wait_for,
};

const NAME: &str = "image::the_shipped_image_keeps_git_and_gh_working_as_pid_1";

/// Where the test's files appear inside the container (`docker run -v`).
const OUT: &str = "/molecule-test/out";
const CA: &str = "/molecule-test/ca.pem";

/// `docker run -i IMAGE < agent.sh`: the image's Cmd (bash) reads the agent from stdin. The
/// braces make bash read the whole loop before running any of it, so no command in it can
/// read the rest of the script as its own input. When the loop ends the agent stays, idle,
/// as a real one would: the health check and `docker stop` come after.
fn agent_on_stdin() -> String {
    format!("{{\n{AGENT_LOOP}\n}} < /dev/null\nexec sleep 3600\n")
}

/// The image's health check, run as Docker runs it: in the container, as the container's
/// user (root), with the container's environment, bounded by the check's own timeout.
fn health(container: &Container, image: &Image) -> (i32, String) {
    let hc = image
        .config
        .healthcheck
        .as_ref()
        .expect("the agent image has a HEALTHCHECK");
    let argv: Vec<&str> = hc.command.iter().map(String::as_str).collect();
    let out = container.exec(&argv, None, &[], hc.timeout);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A container of an agent image, started the way `docker run -i -e … -v … IMAGE <
/// agent.sh` starts it: the image's own `Entrypoint` and `Cmd` (bash, reading the agent from
/// stdin) as PID 1, as root so the entrypoint's root half runs, with the image's `Env`, the
/// deployment's variables and a stale `GH_TOKEN`. The agent is uid 1000 (the shipped image's,
/// and any template image's here).
pub struct AgentContainer {
    pub container: Container,
    pub results: Results,
    pub pid1: u32,
    pub started: Instant,
}

/// Starts `image` as an [`AgentContainer`] named `name`, against `stack`, with its volumes
/// under `dir`: the platform bearer (read-only), the CA, and a directory the agent reports
/// into.
pub fn start_agent(image: &Image, stack: &Stack, dir: &Path, name: &str) -> AgentContainer {
    let mut container = Container::create(image, name);
    let configs = dir.join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    // The agent's alone, as the helper requires of a secret file: readable by nobody else.
    molecule_tests::write_secret(&configs.join(".auth_token"), format!("{}\n", stack.bearer));
    std::os::unix::fs::chown(configs.join(".auth_token"), Some(1000), Some(1000)).unwrap();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::chown(&out, Some(1000), Some(1000)).unwrap();
    let secrets = Mount {
        host: configs,
        path: "/configs".into(),
        read_only: true,
    };
    let run_env = stack.deployment_env(Path::new(CA));
    start_as_docker_run(
        &mut container,
        image,
        stack,
        secrets,
        &out,
        run_env,
        agent_on_stdin(),
    );
    let started = Instant::now();
    let pid1 = container.wait_pid1();
    AgentContainer {
        container,
        results: Results::new(&out),
        pid1,
        started,
    }
}

impl AgentContainer {
    /// "An hour, compressed": five rotations and more, with git and `gh api /user` working
    /// without a failure. Returns the rotations.
    pub fn work_through_the_hour(&self, stack: &Stack, what: &str) -> u64 {
        let log = || self.container.log();
        let first_mint = stack.platform.minted();
        assert!(
            work_until(&self.results, Duration::from_secs(120), what, &log, || {
                stack.platform.minted() >= first_mint + 5 && self.results.count("gh api") >= 5
            }),
            "not enough rotations {what}: {} minted\n{}\n{}",
            stack.platform.minted() - first_mint,
            self.results.text(),
            log()
        );
        stack.platform.minted() - first_mint
    }
}

#[test]
fn the_shipped_image_keeps_git_and_gh_working_as_pid_1() {
    let Some(image) = agent_image_in_netns(NAME) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let stack = Stack::start(t.path(), "bearer-image", "ws-image");
    let agent = start_agent(&image, &stack, t.path(), "image");
    // The hour: five rotations and more, every operation succeeding.
    let rotations = agent.work_through_the_hour(&stack, "in the image");
    let AgentContainer {
        mut container,
        results,
        pid1,
        started,
    } = agent;
    let root = container.root.clone();
    let log_path = container.log_path();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // What ran is what the image ships: its git (Debian's), its gh, configured as root by
    // the entrypoint's root half, and PID 1 is the image's tini.
    let version = |tool: &str| {
        let out = container.exec(&[tool, "--version"], None, &[], Duration::from_secs(10));
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.lines().next().unwrap_or_default().to_owned();
        assert!(
            out.status.success(),
            "{tool} --version: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        first
    };
    let git_version = version("git");
    assert!(
        git_version.starts_with("git version 2.39."),
        "{git_version}"
    );
    let gh_version = version("gh");
    assert!(gh_version.starts_with("gh version 2.23."), "{gh_version}");
    // An empty entry (no other helper answers), then ours: by PATH lookup (`molecule`,
    // today's default) or by absolute path (DESIGN.md's default); both run the image's binary.
    let helpers = git_config_all(
        &root.join("etc/gitconfig"),
        "credential.https://localhost.helper",
    );
    assert!(
        helpers == ["", "molecule"] || helpers == ["", "/usr/local/bin/git-credential-molecule"],
        "the root half configured the image's system git: {helpers:?}"
    );
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid1}/comm"))
            .unwrap()
            .trim(),
        "tini"
    );

    // No process the entrypoint started as the agent holds a token variable: the stale one
    // was saved as the fallback and unset before anything else ran.
    assert_eq!(results.agent_env(), "GH_TOKEN=unset GITHUB_TOKEN=unset");
    let mut agent_processes = 0;
    for pid in container.processes(pid1) {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        if !status.lines().any(|l| l.starts_with("Uid:\t1000\t")) {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        agent_processes += 1;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_no_token_variable(
            &String::from_utf8_lossy(&environ).replace('\0', "\n"),
            &format!("process {pid} ({})", comm.trim()),
        );
    }
    // The agent, the respawn loop and the daemon, at least.
    assert!(agent_processes >= 3, "{agent_processes} agent processes");

    // Healthy while the platform answers.
    let (code, healthy) = health(&container, &image);
    assert_eq!(code, 0, "{healthy}");
    assert!(healthy.starts_with("healthy; next refresh "), "{healthy}");

    // The agent finishes its loop and stays; then the platform fails for good.
    results.stop();
    assert!(
        wait_for(Duration::from_secs(30), || results.text().contains("done ")),
        "the agent did not finish its loop"
    );
    results.assert_no_failure("at the end of the hour", &log);
    let tally = results.tally(rotations);
    let hour_secs = started.elapsed().as_secs_f64();

    let cache = root.join("home/agent/.molecule-token-cache");
    stack.platform.set_fault(Fault::Status(503));
    // The token the daemon holds now is the last one: once it has expired, the check fails.
    std::thread::sleep(Duration::from_millis(500));
    let (expiry, expires_at) = cached_expiry(&cache).expect("a cached token");
    let mut first_unhealthy = None;
    assert!(
        wait_for(TTL + Duration::from_secs(10), || {
            let (code, _) = health(&container, &image);
            if code != 0 && first_unhealthy.is_none() {
                first_unhealthy = Some(time::OffsetDateTime::now_utc());
            }
            time::OffsetDateTime::now_utc() > expires_at + time::Duration::seconds(1)
        }),
        "the token never expired"
    );
    let (code, unhealthy) = health(&container, &image);
    assert_eq!(code, 1, "{unhealthy}");
    assert_eq!(
        unhealthy,
        format!("unhealthy: localhost: the cached token expired at {expiry}\n")
    );
    let first_unhealthy = first_unhealthy.expect("the check failed before the expiry had passed");
    let unhealthy_before_expiry = (expires_at - first_unhealthy).as_seconds_f64();

    // `docker stop`: SIGTERM to PID 1. The entrypoint stops the daemon and waits for it, so
    // the daemon's last status record is written before PID 1 exits; then every process in
    // the container is gone.
    let sigterm = Instant::now();
    signal(pid1, "TERM");
    let exit = container.wait_exit(Duration::from_secs(15));
    let stop_secs = sigterm.elapsed().as_secs_f64();
    assert!(exit.is_some(), "PID 1 ignored SIGTERM for 15 s: {}", log());
    assert!(container.processes(pid1).is_empty());
    assert!(
        stop_secs <= 5.0,
        "the container took {stop_secs:.2}s to stop"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("daemon.status.json")).unwrap()).unwrap();
    assert!(
        status["next_wake_at"].is_null(),
        "the daemon did not record its stop before PID 1 exited:\n{}",
        log()
    );
    assert!(
        log().contains("entrypoint: gh-token-refresh stopped"),
        "{}",
        log()
    );
    assert!(
        !log().contains(STALE),
        "the boot token reached the container's log"
    );
    assert!(
        stack.forge.unauthorized() > 0,
        "git asked for credentials (401 first): the server does check them"
    );

    drop(container);
    let revoked = revoke_on_exit_reaches_github_before_pid_1_exits(&image, &stack, t.path());

    report(
        "image",
        &format!(
            "the image: {}\n\
             in the image ({git_version}, {gh_version}), PID 1 tini, root half then agent: an hour, compressed in {hour_secs:.0}s: {tally}; no agent process held any of {}\n\
             health check ({}, timeout {:?}): exit 0 \"{}\" while the platform answered; exit 1 \"{}\" once it had failed past the token's expiry (first non-zero {unhealthy_before_expiry:.1}s before the expiry, inside the {}s margin with the refresh failing)\n\
             SIGTERM to PID 1: every process gone in {stop_secs:.2}s (exit {:?}); the daemon recorded its stop first\n\
             {revoked}",
            image.build_report,
            TOKEN_VARIABLES.join("/"),
            image.config.healthcheck.as_ref().unwrap().command.join(" "),
            image.config.healthcheck.as_ref().unwrap().timeout,
            healthy.trim(),
            unhealthy.trim(),
            crate::stack::MARGIN_SECS,
            exit.and_then(|s| s.code()),
        ),
    );
}

/// Starts `container` the way `docker run -i -e … -v … IMAGE < agent` starts it: the image's
/// `Entrypoint` and `Cmd` as PID 1, as root; the volumes `secrets`, the stack's CA and `out`
/// (the agent's report directory, `$OUT`); the image's `Env`, then `run_env`, `$OUT`, and the
/// stale boot token under every name a container may be given it by.
fn start_as_docker_run(
    container: &mut Container,
    image: &Image,
    stack: &Stack,
    secrets: Mount,
    out: &Path,
    mut run_env: Vec<(String, String)>,
    agent: String,
) {
    let mounts = vec![
        secrets,
        Mount {
            host: stack.ca.ca_pem_path().to_path_buf(),
            path: CA.into(),
            read_only: true,
        },
        Mount {
            host: out.to_path_buf(),
            path: OUT.into(),
            read_only: false,
        },
    ];
    run_env.push(("OUT".to_owned(), OUT.to_owned()));
    run_env.extend(TOKEN_VARIABLES.map(|name| (name.to_owned(), STALE.to_owned())));
    let config = &image.config;
    let argv: Vec<String> = config
        .entrypoint
        .iter()
        .chain(&config.cmd)
        .cloned()
        .collect();
    container.start(Run {
        argv,
        env: config.env_with(&container.name, &run_env),
        user: None,
        mounts,
        stdin: Some(agent),
    });
}

/// The agent of the revocation run, fed to bash on stdin: one clone with the App's token,
/// then idle until SIGTERM, which it records before it exits with a status of its own (3),
/// which must come out as the container's.
const REVOKE_AGENT: &str = r#"{
trap 'echo term >> "$OUT/signals"; exit 3' TERM
if git clone -q https://localhost/acme/app.git "$HOME/app" > "$OUT/clone.log" 2>&1; then
  echo cloned > "$OUT/ready"
else
  echo "clone failed" > "$OUT/ready"
fi
while :; do sleep 0.1; done
} < /dev/null
"#;

/// `--revoke-on-exit` in the image (DESIGN.md, "The container story"): the `github-app`
/// source minting from the GitHub API stand-in (platform tokens are shared with the
/// workspace and never revoked), `MOLECULE_REVOKE_ON_EXIT=1`, then `docker stop`. The
/// revocation must reach the API before PID 1 exits: the stand-in answered
/// `DELETE /installation/token` before the test saw PID 1 gone, and what the daemon does
/// only after that answer (mark the token suspect, write its last status record) is done.
/// Returns the report's line.
fn revoke_on_exit_reaches_github_before_pid_1_exits(
    image: &Image,
    stack: &Stack,
    dir: &Path,
) -> String {
    let api = GithubApi::start(
        "127.0.0.1:0".parse().unwrap(),
        GithubApiOptions::one_org(11, "acme", &["app"]),
        stack.authority.clone(),
        None,
    );
    // The App key and the report directory: the agent's (uid 1000), as a secret volume
    // mounted for it would be.
    let secrets = dir.join("app-secrets");
    let out = dir.join("revoke-out");
    for d in [&secrets, &out] {
        std::fs::create_dir_all(d).unwrap();
        std::os::unix::fs::chown(d, Some(1000), Some(1000)).unwrap();
    }
    let key = secrets.join("app-key.pem");
    molecule_tests::write_secret(&key, std::fs::read(test_app_key_path()).unwrap());
    std::os::unix::fs::chown(&key, Some(1000), Some(1000)).unwrap();
    let secrets = Mount {
        host: secrets,
        path: "/secrets".into(),
        read_only: true,
    };
    let mut run_env = stack.deployment_env(Path::new(CA));
    run_env.retain(|(k, _)| k != "PLATFORM_URL" && k != "WORKSPACE_ID");
    run_env.extend(
        [
            ("MOLECULE_TOKEN_SOURCE", "github-app".to_owned()),
            ("MOLECULE_GITHUB_APP_ID", "424242".to_owned()),
            (
                "MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE",
                "/secrets/app-key.pem".to_owned(),
            ),
            ("MOLECULE_GITHUB_APP_INSTALLATION_ID", "11".to_owned()),
            ("MOLECULE_GITHUB_API_URL", api.url()),
            ("MOLECULE_REVOKE_ON_EXIT", "1".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let mut container = Container::create(image, "revoke");
    start_as_docker_run(
        &mut container,
        image,
        stack,
        secrets,
        &out,
        run_env,
        REVOKE_AGENT.to_owned(),
    );
    let pid1 = container.wait_pid1();
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    let cache = container.root.join("home/agent/.molecule-token-cache");
    let daemon_running = || {
        serde_json::from_slice::<serde_json::Value>(
            &std::fs::read(cache.join("daemon.status.json")).unwrap_or_default(),
        )
        .is_ok_and(|s| !s["next_wake_at"].is_null())
    };
    assert!(
        wait_for(Duration::from_secs(60), || !read("ready").is_empty()
            && daemon_running()),
        "the agent or the daemon did not start:\n{}",
        container.log()
    );
    assert_eq!(
        read("ready"),
        "cloned\n",
        "git with the App's token: {}\n{}",
        read("clone.log"),
        container.log()
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("tokens.json")).unwrap()).unwrap();
    let entry = &doc["entries"]["localhost"];
    // Messages name the entry's fields, never its token.
    assert_eq!(entry["source"], "github-app", "source of the cached entry");
    let token = entry["token"].as_str().unwrap().to_owned();
    assert!(stack.authority.is_valid(&token));
    assert_eq!(api.revoked(), 0);

    // `docker stop`.
    let sigterm = Instant::now();
    signal(pid1, "TERM");
    let exit = container
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("PID 1 ignored SIGTERM for 15 s: {}", container.log()));
    let exited = Instant::now();
    let log = container.log();
    assert!(container.processes(pid1).is_empty());
    assert_eq!(
        exit.code(),
        Some(3),
        "the agent's status is the container's:\n{log}"
    );
    assert_eq!(
        read("signals"),
        "term\n",
        "exactly one SIGTERM reached the agent"
    );

    // What the stand-in recorded, and when.
    let deletes: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.path == "/installation/token")
        .collect();
    assert_eq!(deletes.len(), 1, "{:?}\n{log}", api.requests());
    let delete = &deletes[0];
    assert_eq!(delete.status, 204);
    assert!(
        delete.answered_at > sigterm && delete.answered_at < exited,
        "the revocation was handled {:?} after SIGTERM, PID 1 seen gone {:?} after it",
        delete.answered_at.saturating_duration_since(sigterm),
        exited - sigterm
    );
    assert_eq!(api.revoked(), 1);
    assert!(!stack.authority.is_valid(&token), "revoked at GitHub");
    // What the daemon did after the answer, before it exited: the token marked suspect
    // (no helper serves it again), the last status record, in that order in the log.
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("tokens.json")).unwrap()).unwrap();
    assert_eq!(
        doc["entries"]["localhost"]["suspect"], true,
        "the revoked token is not marked suspect: the daemon was ended before it was done"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("daemon.status.json")).unwrap()).unwrap();
    assert!(status["next_wake_at"].is_null(), "{status}");
    let revoked_at = log.find("revoked the token at shutdown");
    let stopped_at = log.find("entrypoint: gh-token-refresh stopped");
    assert!(
        revoked_at.is_some() && revoked_at < stopped_at,
        "the daemon revoked, then the entrypoint saw it stopped:\n{log}"
    );
    assert!(
        !log.contains(&token[4..24]),
        "the App token reached the log"
    );
    assert!(!log.contains(STALE), "the boot token reached the log");
    format!(
        "--revoke-on-exit (github-app source, MOLECULE_REVOKE_ON_EXIT=1): SIGTERM to PID 1; DELETE /installation/token answered {:.0} ms later, PID 1 gone {:.0} ms after SIGTERM (exit {:?}, the agent's); one SIGTERM reached the agent; the daemon marked the token suspect and recorded its stop before PID 1 exited",
        (delete.answered_at - sigterm).as_secs_f64() * 1000.0,
        (exited - sigterm).as_secs_f64() * 1000.0,
        exit.code(),
    )
}
