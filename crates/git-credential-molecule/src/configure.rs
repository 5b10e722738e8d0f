//! `configure`: make git ask this helper, and only this helper, for each host.
//!
//! For `credential.https://HOST.helper` it writes an empty value and then `molecule`: the empty
//! value resets the helper list git has collected so far (a global `store` or `cache`, gh's own
//! helper), so nothing else can answer for the host with a stale token. Idempotent: when the
//! values are already exactly that, nothing is written.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use molecule_credential::child;
use molecule_credential::config::Config;
use molecule_credential::{Class, Error};

use crate::write_error;

/// The helper value git resolves to `git credential-molecule`.
pub const HELPER: &str = "molecule";
/// Budget for one `git config` call.
const GIT_TIMEOUT: Duration = Duration::from_secs(10);

/// `configure` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Write to the user's global config (~/.gitconfig): the default
    #[arg(long, conflicts_with_all = ["system", "file"])]
    pub global: bool,
    /// Write to the system config (/etc/gitconfig)
    #[arg(long, conflicts_with = "file")]
    pub system: bool,
    /// Write to this config file
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Host to configure (repeatable); default: MOLECULE_GIT_HOSTS
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Helper value to register (an absolute path skips git's PATH lookup)
    #[arg(long, value_name = "VALUE", default_value = HELPER)]
    pub helper: String,
    /// Also set credential.https://HOST.useHttpPath, so the repository owner reaches the
    /// helper (github-app owner routing; on by default for that source with an owner map)
    #[arg(long)]
    pub use_http_path: bool,
}

impl Args {
    fn scope(&self) -> Vec<String> {
        match (&self.file, self.system) {
            (Some(f), _) => vec!["--file".into(), f.display().to_string()],
            (None, true) => vec!["--system".into()],
            (None, false) => vec!["--global".into()],
        }
    }
}

/// The config key that makes git send `path` to helpers for `host`.
pub fn use_http_path_key(host: &str) -> String {
    format!("credential.https://{host}.useHttpPath")
}

/// The config key for `host`'s helper list.
pub fn helper_key(host: &str) -> String {
    format!("credential.https://{host}.helper")
}

async fn git_config(scope: &[String], args: &[&str]) -> Result<child::Output, Error> {
    let mut cmd = std::process::Command::new("git");
    cmd.arg("config").args(scope).args(args);
    child::run(cmd, None, GIT_TIMEOUT, "git config").await
}

/// The values of `key` in `scope` (empty when unset).
pub async fn get_all(scope: &[String], key: &str) -> Result<Vec<String>, Error> {
    let out = git_config(scope, &["--get-all", key]).await?;
    match out.status.code() {
        Some(0) => Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()),
        // 1: the key is not set.
        Some(1) => Ok(Vec::new()),
        _ => Err(Error::new(
            Class::LocalConfig,
            format!(
                "git config --get-all {key} failed: {}",
                out.stderr_excerpt()
            ),
        )),
    }
}

async fn set(scope: &[String], args: &[&str]) -> Result<(), Error> {
    let out = git_config(scope, args).await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::new(
            Class::LocalConfig,
            format!(
                "git config {} failed: {}",
                args.join(" "),
                out.stderr_excerpt()
            ),
        ))
    }
}

/// Configures each host; prints one line per host.
pub fn run(config: &Config, args: &Args, out: &mut dyn Write) -> Result<u8, Error> {
    let hosts: Vec<String> = if args.hosts.is_empty() {
        config.hosts.clone()
    } else {
        args.hosts
            .iter()
            .map(|h| {
                molecule_credential::host::normalize_host(h).ok_or_else(|| {
                    Error::new(
                        Class::LocalConfig,
                        format!("--host {h:?} is not a host name"),
                    )
                })
            })
            .collect::<Result<_, _>>()?
    };
    if hosts.is_empty() {
        return Err(Error::new(
            Class::LocalConfig,
            "no hosts to configure (MOLECULE_GIT_HOSTS is empty)",
        ));
    }
    let scope = args.scope();
    let use_http_path = args.use_http_path
        || (config.token_source == molecule_credential::config::TokenSourceKind::GithubApp
            && !config.github_app.installations.is_empty());
    let want = [String::new(), args.helper.clone()];
    molecule_credential::block_on(async {
        for host in &hosts {
            let key = helper_key(host);
            let state = if get_all(&scope, &key).await? == want {
                "already configured"
            } else {
                set(&scope, &["--replace-all", &key, ""]).await?;
                set(&scope, &["--add", &key, &args.helper]).await?;
                "configured"
            };
            writeln!(out, "{key}: {state} ({})", scope.join(" ")).map_err(|e| write_error(&e))?;
            if use_http_path {
                let key = use_http_path_key(host);
                let state = if get_all(&scope, &key).await? == ["true"] {
                    "already configured"
                } else {
                    set(&scope, &["--replace-all", &key, "true"]).await?;
                    "configured"
                };
                writeln!(out, "{key}: {state} ({})", scope.join(" "))
                    .map_err(|e| write_error(&e))?;
            }
        }
        Ok(0)
    })?
}
