//! "An hour, compressed", the parts every container test shares: the GitHub-like host and
//! the token platform (tokens living 6 seconds), the agent that works without pause against
//! them, and the tally of what it did. `hour` runs it on the machine through
//! scripts/entrypoint.sh; `image` runs it inside the image docker/Dockerfile builds; `pod`
//! runs its host and platform beside the Kubernetes example.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use molecule_tests::{GitServer, PlatformOptions, PlatformStandIn, TestCa, TokenAuthority};

/// How long each minted token lives: an hour, compressed 600 times.
pub const TTL: Duration = Duration::from_secs(6);
/// The platform re-mints only below this (as the real one does below 5 minutes).
pub const REMINT_BELOW: Duration = Duration::from_secs(3);
/// `TOKEN_REFRESH_MARGIN_SEC` for the helper and the daemon.
pub const MARGIN_SECS: u64 = 2;
/// What the container was started with: a token that is already dead.
pub const STALE: &str = "ghs_stale_from_container_start";

/// The world an agent works in: a GitHub-like host (git smart HTTP and the API on
/// `https://localhost`, real TLS from a throw-away CA) and the token platform, sharing one
/// token authority. Binds 127.0.0.1:443: call it inside a private network namespace.
pub struct Stack {
    pub ca: TestCa,
    /// Which tokens the git host and its API accept: the platform mints into it, and so may a
    /// GitHub API stand-in, or a test that provisions tokens some other way (the file source).
    pub authority: TokenAuthority,
    pub platform: PlatformStandIn,
    pub forge: GitServer,
    pub bearer: String,
    pub workspace: String,
}

impl Stack {
    /// Starts both stand-ins, with the CA and the repositories under `dir`.
    pub fn start(dir: &Path, bearer: &str, workspace: &str) -> Stack {
        let ca = TestCa::generate(dir);
        // Whoever runs git (an agent user, a container) must read the CA.
        std::fs::set_permissions(ca.ca_pem_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let authority = TokenAuthority::new();
        let platform = PlatformStandIn::start(
            "127.0.0.1:0".parse().unwrap(),
            PlatformOptions {
                ttl: TTL,
                remint_below: REMINT_BELOW,
                bearer: bearer.into(),
                workspace_id: Some(workspace.into()),
            },
            authority.clone(),
        );
        let repos = dir.join("repos");
        std::fs::create_dir_all(repos.join("acme")).unwrap();
        molecule_tests::init_bare_repo(&repos, "acme/app.git");
        let forge = GitServer::start_with_api(
            "127.0.0.1:443".parse().unwrap(),
            &repos,
            &ca,
            authority.clone(),
        );
        Stack {
            ca,
            authority,
            platform,
            forge,
            bearer: bearer.into(),
            workspace: workspace.into(),
        }
    }

    /// The variables a deployment of the agent sets, with the CA at `ca` as the agent sees
    /// it: where the platform is, which host the helper answers for, the compressed margin,
    /// the CA, a commit identity. `TOKEN_REFRESH_INTERVAL_SEC` is long: expiry, not the
    /// interval, drives every refresh here.
    pub fn deployment_env(&self, ca: &Path) -> Vec<(String, String)> {
        [
            ("PLATFORM_URL", self.platform.url()),
            ("WORKSPACE_ID", self.workspace.clone()),
            ("MOLECULE_GIT_HOSTS", "localhost".into()),
            ("TOKEN_REFRESH_MARGIN_SEC", MARGIN_SECS.to_string()),
            ("TOKEN_REFRESH_INTERVAL_SEC", "60".into()),
            ("GIT_SSL_CAINFO", ca.display().to_string()),
            ("SSL_CERT_FILE", ca.display().to_string()),
            ("GH_NO_UPDATE_NOTIFIER", "1".into()),
            ("GIT_TERMINAL_PROMPT", "0".into()),
            ("GIT_AUTHOR_NAME", "Agent".into()),
            ("GIT_AUTHOR_EMAIL", "agent@molecule.invalid".into()),
            ("GIT_COMMITTER_NAME", "Agent".into()),
            ("GIT_COMMITTER_EMAIL", "agent@molecule.invalid".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// The agent: git and gh in a loop, one line per operation in $OUT/results. gh is skipped
/// while $OUT/daemon-down exists: only git is promised to work without the daemon. Ends once
/// $OUT/stop exists; then execs its arguments, if any (an agent that stays, idle). Runs
/// under sh and bash alike, as a file or fed to a shell on stdin.
pub const AGENT_LOOP: &str = r#"#!/bin/sh
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
[ $# -eq 0 ] || exec "$@"
"#;

/// The agent's `$OUT` directory, as this test sees it.
pub struct Results {
    dir: PathBuf,
}

impl Results {
    pub fn new(dir: &Path) -> Results {
        Results {
            dir: dir.to_path_buf(),
        }
    }

    /// Every line the agent wrote so far.
    pub fn text(&self) -> String {
        std::fs::read_to_string(self.dir.join("results")).unwrap_or_default()
    }

    /// Successful operations whose first words are `op` (`git clone`, `git -C`, `gh api`).
    pub fn count(&self, op: &str) -> usize {
        self.text().matches(&format!("ok {op}")).count()
    }

    /// How many operations the agent has finished, failed or not.
    pub fn operations(&self) -> usize {
        self.text()
            .lines()
            .filter(|l| l.starts_with("ok ") || l.starts_with("FAIL "))
            .count()
    }

    /// Panics with the failed operation and `log` if any operation failed.
    pub fn assert_no_failure(&self, what: &str, log: &dyn Fn() -> String) {
        let r = self.text();
        assert!(
            !r.contains("FAIL"),
            "{what}: an operation failed:\n{r}\n--- container log ---\n{}",
            log()
        );
    }

    /// What the agent found in its environment: `GH_TOKEN=… GITHUB_TOKEN=…`.
    pub fn agent_env(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent-env"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// Asks the agent to finish its loop.
    pub fn stop(&self) {
        std::fs::write(self.dir.join("stop"), "").unwrap();
    }

    /// The agent's tally in one phrase.
    pub fn tally(&self, rotations: u64) -> String {
        format!(
            "{rotations} rotations, {} operations: {} git clones, {} pushes/fetches, {} gh api calls, {} failures",
            self.operations(),
            self.count("git clone"),
            self.count("git -C"),
            self.count("gh api"),
            self.text().matches("FAIL").count(),
        )
    }
}

/// The `expires_at` of the token cached for `localhost` in the cache directory `cache`: as
/// tokens.json spells it, and parsed.
pub fn cached_expiry(cache: &Path) -> Option<(String, time::OffsetDateTime)> {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("tokens.json")).ok()?).ok()?;
    let text = doc["entries"]["localhost"]["expires_at"]
        .as_str()?
        .to_owned();
    let at =
        time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).ok()?;
    Some((text, at))
}

/// Waits up to `timeout` for `done`, checking after every poll that no operation failed.
pub fn work_until(
    results: &Results,
    timeout: Duration,
    what: &str,
    log: &dyn Fn() -> String,
    mut done: impl FnMut() -> bool,
) -> bool {
    crate::support::wait_for(timeout, || {
        results.assert_no_failure(what, log);
        done()
    })
}
