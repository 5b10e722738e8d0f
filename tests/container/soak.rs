//! The soak: a few minutes (SOAK_SECS, default 270) of tokens rotating every few seconds,
//! faults from the matrix injected at random (platform errors, hangs, resets, a dribbling body,
//! the daemon killed and restarted, SIGHUP), and git operations through the helper without
//! pause. Every fault is shorter than the margin, so a valid token always exists: any failed
//! operation is a real failure. Ends with a one-line summary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use molecule_tests::{
    Fault, GitServer, PlatformOptions, PlatformStandIn, TestCa, TokenAuthority, gitcmd,
    init_bare_repo,
};
use rand::RngExt;

use crate::support::bin_dir;

const TTL: u64 = 8;
const MARGIN: u64 = 3;

struct Env {
    home: PathBuf,
    vars: Vec<(String, String)>,
}

impl Env {
    fn git(&self, cwd: &Path) -> Command {
        let mut c = gitcmd::git(&self.home);
        c.current_dir(cwd)
            .args(["-c", "credential.helper=", "-c"])
            .arg(format!(
                "credential.helper=!{}",
                bin_dir().join("git-credential-molecule").display()
            ))
            .envs(self.vars.iter().map(|(k, v)| (k, v)));
        c
    }

    fn daemon(&self, log: &Path) -> Child {
        Command::new(bin_dir().join("gh-token-refresh"))
            .env_clear()
            .env("PATH", "/nonexistent")
            .env("HOME", &self.home)
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap(),
            )
            .spawn()
            .unwrap()
    }
}

#[derive(Default)]
struct Tally {
    ops: AtomicU64,
    failures: Mutex<Vec<String>>,
    excused: AtomicU64,
}

#[test]
fn soak() {
    let secs: u64 = molecule_credential::config::process_env("SOAK_SECS")
        .and_then(|s| s.parse().ok())
        .unwrap_or(270);
    let t = tempfile::tempdir().unwrap();
    let ca = TestCa::generate(t.path());
    let authority = TokenAuthority::new();
    let platform = Arc::new(PlatformStandIn::start(
        "127.0.0.1:0".parse().unwrap(),
        PlatformOptions {
            ttl: Duration::from_secs(TTL),
            remint_below: Duration::from_secs(MARGIN + 1),
            bearer: "soak-bearer".into(),
            workspace_id: None,
        },
        authority.clone(),
    ));
    let repos = t.path().join("repos");
    std::fs::create_dir_all(&repos).unwrap();
    init_bare_repo(&repos, "soak.git");
    let server = GitServer::start(&repos, &ca, authority.clone());
    std::fs::create_dir_all(t.path().join("configs")).unwrap();
    molecule_tests::write_secret(&t.path().join("configs/.auth_token"), "soak-bearer");
    let home = t.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let env = Arc::new(Env {
        home: home.clone(),
        vars: vec![
            (
                "MOLECULE_TOKEN_CACHE_DIR".into(),
                t.path().join("cache").display().to_string(),
            ),
            (
                "CONFIGS_DIR".into(),
                t.path().join("configs").display().to_string(),
            ),
            ("PLATFORM_URL".into(), platform.url()),
            ("MOLECULE_GIT_HOSTS".into(), server.host()),
            ("TOKEN_REFRESH_MARGIN_SEC".into(), MARGIN.to_string()),
            ("TOKEN_REFRESH_INTERVAL_SEC".into(), "60".into()),
            ("MOLECULE_HTTP_TIMEOUT_SEC".into(), "2".into()),
            ("MOLECULE_LOG".into(), "warn".into()),
            (
                "GIT_SSL_CAINFO".into(),
                ca.ca_pem_path().display().to_string(),
            ),
        ],
    });
    let url = format!("{}/soak.git", server.url());
    let daemon_log = t.path().join("daemon.log");
    let daemon = Arc::new(Mutex::new(Some(env.daemon(&daemon_log))));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let first_mint = platform.minted();

    // The agent: clone, commit, push, fetch, ls-remote, without pause.
    let agent = {
        let (env, stop, tally, platform, url) = (
            env.clone(),
            stop.clone(),
            tally.clone(),
            platform.clone(),
            url.clone(),
        );
        let work = t.path().join("work");
        std::thread::spawn(move || {
            let record = |what: &str, out: std::io::Result<std::process::Output>| {
                tally.ops.fetch_add(1, Ordering::Relaxed);
                let out = out.unwrap();
                if !out.status.success() {
                    // Excused only when no valid token existed at all at that moment.
                    let valid = platform
                        .cached()
                        .is_some_and(|i| i.expires_at > time::OffsetDateTime::now_utc());
                    if valid {
                        tally.failures.lock().unwrap().push(format!(
                            "{what}: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ));
                    } else {
                        tally.excused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            };
            let root = work.parent().unwrap().to_path_buf();
            record(
                "clone",
                env.git(&root)
                    .args(["clone", "-q", &url, work.to_str().unwrap()])
                    .output(),
            );
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                std::fs::write(work.join("n"), n.to_string()).unwrap();
                let _ = env.git(&work).args(["add", "n"]).output();
                let _ = env
                    .git(&work)
                    .args(["commit", "-qm", &format!("soak {n}")])
                    .output();
                record(
                    "push",
                    env.git(&work)
                        .args(["push", "-q", "origin", "HEAD:main"])
                        .output(),
                );
                record(
                    "fetch",
                    env.git(&work).args(["fetch", "-q", "origin"]).output(),
                );
                record(
                    "ls-remote",
                    env.git(&work).args(["ls-remote", "-q", &url]).output(),
                );
                if n % 5 == 0 {
                    let fresh = root.join("fresh");
                    let _ = std::fs::remove_dir_all(&fresh);
                    record(
                        "clone",
                        env.git(&root)
                            .args(["clone", "-q", &url, fresh.to_str().unwrap()])
                            .output(),
                    );
                }
            }
        })
    };

    // The chaos: a fault at a time, each shorter than the margin, with quiet gaps between.
    let mut faults: std::collections::BTreeMap<&str, u64> = Default::default();
    let mut rng = rand::rng();
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(rng.random_range(2500..5000)));
        let kind = rng.random_range(0..8);
        let hold = Duration::from_millis(rng.random_range(500..2000));
        let name = match kind {
            0 => {
                platform.set_fault(Fault::Status(500));
                "500"
            }
            1 => {
                platform.set_fault(Fault::Status(503));
                "503"
            }
            2 => {
                platform.set_fault(Fault::Status(429));
                "429"
            }
            3 => {
                platform.set_fault(Fault::Hang);
                "hang"
            }
            4 => {
                platform.set_fault(Fault::ResetConnection);
                "reset"
            }
            5 => {
                platform.set_fault(Fault::SlowBody(Duration::from_millis(400)));
                "slow body"
            }
            6 => {
                // kill -9, then a respawn a little later.
                if let Some(mut d) = daemon.lock().unwrap().take() {
                    let _ = d.kill();
                    let _ = d.wait();
                }
                "daemon kill -9"
            }
            _ => {
                if let Some(d) = daemon.lock().unwrap().as_ref() {
                    let _ = Command::new("kill")
                        .args(["-HUP", &d.id().to_string()])
                        .status();
                }
                "SIGHUP"
            }
        };
        *faults.entry(name).or_default() += 1;
        std::thread::sleep(hold);
        platform.set_fault(Fault::None);
        let mut slot = daemon.lock().unwrap();
        if slot.is_none() {
            *slot = Some(env.daemon(&daemon_log));
        }
    }
    stop.store(true, Ordering::Relaxed);
    agent.join().unwrap();
    if let Some(mut d) = daemon.lock().unwrap().take() {
        let _ = Command::new("kill")
            .args(["-TERM", &d.id().to_string()])
            .status();
        let _ = d.wait();
    }

    let failures = tally.failures.lock().unwrap().clone();
    let rotations = platform.minted() - first_mint;
    let total_faults: u64 = faults.values().sum();
    let summary = format!(
        "soak: {}s, {} git operations, {} failures while a valid token existed ({} while none did), {rotations} token rotations, {total_faults} faults injected ({})",
        start.elapsed().as_secs(),
        tally.ops.load(Ordering::Relaxed),
        failures.len(),
        tally.excused.load(Ordering::Relaxed),
        faults
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    crate::support::report("soak", &summary);
    assert!(
        failures.is_empty(),
        "{summary}\n{}\n--- daemon log ---\n{}",
        failures.join("\n"),
        std::fs::read_to_string(&daemon_log).unwrap_or_default()
    );
    assert!(rotations >= secs / TTL / 2, "{summary}");
    assert!(total_faults >= secs / 6, "{summary}");
}
