//! The two binaries as processes on this machine, sharing one cache directory: the helper run
//! to completion under a deadline, the daemon under a guard that kills it when the test ends
//! (also by panic). Every process gets a cleared environment plus what the test names: nothing
//! of the machine's (tokens, CA settings, proxies) leaks in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use molecule_tests::deadline::{Finished, Guard, run_within};
use molecule_tests::{Issued, PlatformOptions, PlatformStandIn, TokenAuthority};
use time::OffsetDateTime;

use crate::support::bin_dir;

/// The variables every process of a test gets.
#[derive(Clone, Debug, Default)]
pub struct Env(pub Vec<(String, String)>);

impl Env {
    /// `name=value`, replacing an earlier value of `name`.
    pub fn set(&mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> &mut Env {
        let value = value.as_ref().to_string_lossy().into_owned();
        self.0.retain(|(k, _)| k != name);
        self.0.push((name.to_owned(), value));
        self
    }

    /// One of the project's binaries with exactly these variables.
    pub fn command(&self, binary: &str) -> Command {
        let mut c = Command::new(bin_dir().join(binary));
        c.env_clear().envs(self.0.iter().map(|(k, v)| (k, v)));
        c
    }

    /// `git-credential-molecule ARGS` with `stdin`, to completion (at most 20 s).
    pub fn helper(&self, args: &[&str], stdin: &str) -> Finished {
        let mut c = self.command("git-credential-molecule");
        c.args(args);
        let done = run_within(&mut c, stdin.as_bytes(), Duration::from_secs(20));
        done.assert_in_time(&format!("git-credential-molecule {args:?}"));
        done
    }

    /// `gh-token-refresh ARGS` as a daemon, its stderr (the log) appended to `log`.
    pub fn daemon(&self, args: &[&str], log: &Path) -> Guard {
        let mut c = self.command("gh-token-refresh");
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap(),
            );
        Guard::spawn(&mut c)
    }
}

/// The platform stand-in on a free port of 127.0.0.1, minting tokens living `ttl` and
/// re-minted below `remint_below`, remembering each token's expiry (as the authority the git
/// host checks against knows it), and the environment that points the helper at it with
/// `dir` for its cache, bearer and home.
pub struct Platform {
    pub stand_in: PlatformStandIn,
    pub authority: TokenAuthority,
    pub expiries: Expiries,
    pub env: Env,
    pub cache: PathBuf,
}

/// Every token the stand-in minted, with its expiry; shared with reader threads.
#[derive(Clone, Default)]
pub struct Expiries(Arc<Mutex<HashMap<String, OffsetDateTime>>>);

impl Expiries {
    /// When `token` expires; `None` for a token the stand-in never minted.
    pub fn of(&self, token: &str) -> Option<OffsetDateTime> {
        self.0.lock().unwrap().get(token).copied()
    }
}

impl Platform {
    pub fn start(dir: &Path, ttl: Duration, remint_below: Duration) -> Platform {
        let authority = TokenAuthority::new();
        let stand_in = PlatformStandIn::start(
            "127.0.0.1:0".parse().unwrap(),
            PlatformOptions {
                ttl,
                remint_below,
                bearer: "bearer-sinks".into(),
                workspace_id: Some("ws-sinks".into()),
            },
            authority.clone(),
        );
        let expiries = Expiries::default();
        let seen = expiries.clone();
        stand_in.on_mint(Box::new(move |_, issued: &Issued| {
            seen.0
                .lock()
                .unwrap()
                .insert(issued.token.clone(), issued.expires_at);
        }));
        std::fs::create_dir_all(dir.join("configs")).unwrap();
        molecule_tests::write_secret(&dir.join("configs/.auth_token"), "bearer-sinks\n");
        // Nothing on PATH: no gh (the daemon would log it in to github.com), no git.
        std::fs::create_dir_all(dir.join("empty-path")).unwrap();
        let cache = dir.join("cache");
        let mut env = Env::default();
        env.set("PATH", dir.join("empty-path"))
            .set("HOME", dir)
            .set("PLATFORM_URL", stand_in.url())
            .set("WORKSPACE_ID", "ws-sinks")
            .set("CONFIGS_DIR", dir.join("configs"))
            .set("MOLECULE_TOKEN_CACHE_DIR", &cache)
            .set("MOLECULE_GIT_HOSTS", "github.com")
            .set("TOKEN_REFRESH_JITTER_SEC", "0")
            .set("MOLECULE_LOG", "info");
        Platform {
            stand_in,
            authority,
            expiries,
            env,
            cache,
        }
    }
}

/// The helper's environment for the file source reading `file`, with its cache and home
/// under `dir` and nothing on PATH.
pub fn file_source(dir: &Path, file: &Path) -> Env {
    std::fs::create_dir_all(dir.join("empty-path")).unwrap();
    let mut env = Env::default();
    env.set("PATH", dir.join("empty-path"))
        .set("HOME", dir)
        .set("MOLECULE_TOKEN_CACHE_DIR", dir.join("cache"))
        .set("MOLECULE_GIT_HOSTS", "github.com")
        .set("MOLECULE_TOKEN_SOURCE", "file")
        .set("MOLECULE_TOKEN_SOURCE_FILE", file);
    env
}

/// What `tokens.json` in `cache` holds for `key`: the token, its expiry, whether it is
/// suspect, and when it was fetched.
pub struct Cached {
    pub token: String,
    pub expires_at: OffsetDateTime,
    pub fetched_at: OffsetDateTime,
    pub suspect: bool,
    pub source: String,
}

pub fn cached(cache: &Path, key: &str) -> Option<Cached> {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("tokens.json")).ok()?).ok()?;
    let e = &doc["entries"][key];
    let at = |field: &str| {
        OffsetDateTime::parse(
            e[field].as_str()?,
            &time::format_description::well_known::Rfc3339,
        )
        .ok()
    };
    Some(Cached {
        token: e["token"].as_str()?.to_owned(),
        expires_at: at("expires_at")?,
        fetched_at: at("fetched_at")?,
        suspect: e["suspect"].as_bool().unwrap_or(false),
        source: e["source"].as_str()?.to_owned(),
    })
}

/// The credential git sends to `erase` after a server rejected it: `git credential reject`
/// with the helper as the one helper for `host`, so git itself calls `erase`.
pub fn git_reject(env: &Env, host: &str, token: &str, home: &Path) -> Finished {
    let helper = bin_dir().join("git-credential-molecule");
    let mut c = Command::new("git");
    c.env_clear().envs(env.0.iter().map(|(k, v)| (k, v)));
    molecule_tests::gitcmd::isolate(&mut c, home);
    c.env("PATH", "/usr/bin:/bin")
        .args(["-c", "credential.helper="])
        .arg("-c")
        .arg(format!("credential.helper={}", helper.display()))
        .args(["credential", "reject"]);
    let input =
        format!("protocol=https\nhost={host}\nusername=x-access-token\npassword={token}\n\n");
    let done = run_within(&mut c, input.as_bytes(), Duration::from_secs(20));
    done.assert_in_time("git credential reject");
    assert_eq!(done.code, Some(0), "git credential reject: {}", done.stderr);
    done
}

/// `done` served nothing: exit 69 (every source failed), nothing on stdout.
#[track_caller]
pub fn assert_exhausted(done: &Finished) {
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(69), ""),
        "{}",
        done.stderr
    );
}

/// Polls `cond` every 5 ms for at most `limit`; the time it took when it held.
pub fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = std::time::Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The wall clock now.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
