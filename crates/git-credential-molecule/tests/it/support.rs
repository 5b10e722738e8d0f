//! A sandboxed home, cache and platform bearer, and a runner for the helper binary.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use tempfile::TempDir;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The helper binary Cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_git-credential-molecule");
/// The platform bearer every sandbox uses.
pub const BEARER: &str = "test-bearer-7f3c9a";

/// A token of the newest GitHub shape: `ghs_` and ~500 characters including `.`, `_`, `-`.
pub fn long_token(tag: &str) -> String {
    let mut t = format!("ghs_{tag}_");
    while t.len() < 520 {
        t.push_str("aZ09.-_x");
    }
    t
}

/// RFC 3339, UTC, `secs` from now.
pub fn in_secs(secs: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::seconds(secs))
        .replace_nanosecond(0)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

/// The platform's success body.
pub fn token_body(token: &str, expires_in: i64) -> String {
    json!({"token": token, "expires_at": in_secs(expires_in)}).to_string()
}

/// The route the platform serves without WORKSPACE_ID.
pub const ADMIN_PATH: &str = "/admin/github-installation-token";

/// One finished run of the helper.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The `password=` the helper printed.
    pub fn password(&self) -> Option<&str> {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("password="))
    }

    /// The `password_expiry_utc=` the helper printed.
    pub fn expiry(&self) -> Option<i64> {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("password_expiry_utc="))
            .map(|v| v.parse().unwrap())
    }

    /// Asserts the contract for rejected input or failure: nothing on stdout, exactly one
    /// line on stderr, the given exit code.
    pub fn assert_one_line_error(&self, code: i32, contains: &str) {
        assert_eq!(self.stdout, "", "stdout must be empty on error");
        assert_eq!(self.code, code, "exit code; stderr: {}", self.stderr);
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "one line on stderr: {:?}",
            self.stderr
        );
        assert!(
            self.stderr.contains(contains),
            "stderr {:?} lacks {contains:?}",
            self.stderr
        );
    }
}

/// A home directory, a cache directory and a configs directory with the bearer.
pub struct Sandbox {
    pub dir: TempDir,
    pub home: PathBuf,
    pub cache: PathBuf,
    pub configs: PathBuf,
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    secrets: Mutex<Vec<String>>,
}

impl Sandbox {
    /// A fresh sandbox logging at trace level (so secrecy is checked at the most verbose level),
    /// answering for github.com.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let configs = dir.path().join("configs");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&configs).unwrap();
        molecule_tests::write_secret(&configs.join(".auth_token"), format!("  {BEARER}\n"));
        let cache = home.join(".molecule-token-cache");
        let mut env = BTreeMap::new();
        env.insert("HOME".into(), home.display().to_string());
        env.insert("CONFIGS_DIR".into(), configs.display().to_string());
        env.insert("MOLECULE_LOG".into(), "trace".into());
        // A closed port: a test that forgets to point at a platform fails fast, not at a real host.
        env.insert("PLATFORM_URL".into(), "http://127.0.0.1:9".into());
        Self {
            dir,
            home,
            cache,
            configs,
            env,
            cwd: None,
            secrets: Mutex::new(vec![BEARER.to_owned()]),
        }
    }

    /// Sets a variable for every run.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Removes a variable.
    pub fn unset(&mut self, key: &str) -> &mut Self {
        self.env.remove(key);
        self
    }

    /// Runs the helper in `dir` (default: the test's own working directory).
    pub fn cwd(&mut self, dir: &Path) -> &mut Self {
        self.cwd = Some(dir.to_owned());
        self
    }

    /// Points at a platform.
    pub fn platform(&mut self, base_url: &str) -> &mut Self {
        self.env("PLATFORM_URL", base_url)
    }

    /// Registers a string that must never appear on stderr.
    pub fn secret(&self, s: &str) -> String {
        self.secrets.lock().unwrap().push(s.to_owned());
        s.to_owned()
    }

    /// A command for the helper with this sandbox's environment only (PATH inherited unless
    /// the sandbox sets one).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args).env_clear().envs(&self.env);
        if !self.env.contains_key("PATH") {
            c.env(
                "PATH",
                molecule_credential::config::process_env("PATH").unwrap_or_default(),
            );
        }
        if let Some(dir) = &self.cwd {
            c.current_dir(dir);
        }
        c
    }

    /// Runs the helper with `stdin`; asserts no known secret reached stderr.
    pub fn run(&self, args: &[&str], stdin: &str) -> Run {
        self.run_bytes(args, stdin.as_bytes())
    }

    /// [`Sandbox::run`] for input that need not be UTF-8.
    pub fn run_bytes(&self, args: &[&str], stdin: &[u8]) -> Run {
        let child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.finish(child, stdin)
    }

    /// Feeds and waits for a spawned helper; asserts no known secret reached stderr.
    pub fn finish(&self, mut child: std::process::Child, stdin: &[u8]) -> Run {
        if let Some(mut pipe) = child.stdin.take() {
            // The helper may exit without reading (unknown actions): that is fine.
            let _ = pipe.write_all(stdin);
        }
        let out = child.wait_with_output().unwrap();
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        self.assert_no_secret(&run.stderr);
        run
    }

    /// Runs the helper with `stdin` under `deadline` (killed when it fires, and then this
    /// panics naming `what`); the run and its wall time. Asserts no known secret reached stderr.
    #[track_caller]
    pub fn run_within(
        &self,
        what: &str,
        args: &[&str],
        stdin: &str,
        deadline: Duration,
    ) -> (Run, Duration) {
        let finished = molecule_tests::deadline::run_within(
            &mut self.command(args),
            stdin.as_bytes(),
            deadline,
        );
        finished.assert_in_time(what);
        self.assert_no_secret(&finished.stderr);
        let run = Run {
            code: finished.code.unwrap_or(-1),
            stdout: finished.stdout,
            stderr: finished.stderr,
        };
        (run, finished.took)
    }

    /// Asserts that none of the registered secrets appear in `text`.
    pub fn assert_no_secret(&self, text: &str) {
        for s in self.secrets.lock().unwrap().iter() {
            assert!(
                !text.contains(s.as_str()),
                "a secret leaked into output (length {})",
                s.len()
            );
        }
    }

    /// `get` for `https://github.com`.
    pub fn get(&self) -> Run {
        self.run(&["get"], "protocol=https\nhost=github.com\n\n")
    }

    /// Writes `tokens.json` directly (0600 in a 0700 directory).
    pub fn write_cache(&self, entries: &[(&str, &str, i64, bool)]) {
        std::fs::create_dir_all(&self.cache).unwrap();
        std::fs::set_permissions(&self.cache, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut map = serde_json::Map::new();
        for (host, token, expires_in, suspect) in entries {
            self.secret(token);
            map.insert(
                (*host).to_owned(),
                json!({"token": token, "expires_at": in_secs(*expires_in), "fetched_at": in_secs(-60),
                       "source": "platform", "suspect": suspect}),
            );
        }
        let doc = json!({"version": 1, "entries": map});
        let path = self.cache.join("tokens.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// The raw bytes of `tokens.json`, if it exists.
    pub fn tokens_json(&self) -> Option<Vec<u8>> {
        std::fs::read(self.cache.join("tokens.json")).ok()
    }

    /// The parsed entry for `host`.
    pub fn entry(&self, host: &str) -> Option<serde_json::Value> {
        let bytes = self.tokens_json()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["entries"].get(host).cloned()
    }

    /// Path inside the sandbox.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

/// Mode bits of `path` without following symlinks.
pub fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}
