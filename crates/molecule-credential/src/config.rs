//! Configuration: every environment variable of DESIGN.md's table, read in one place.
//!
//! Precedence is flags, then environment, then defaults; an empty value means unset. Every
//! parsed variable is a typed [`setting`], bound there to its parser and its flag: an
//! environment value that does not parse is reported as a warning naming the variable but
//! never echoing the value (a misplaced value may be a secret) and the default is used
//! instead; a flag's value arrives already parsed (see `cli`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::host::normalize_host;
use crate::secret::Secret;

mod parse;
pub mod setting;

use setting::{Flags, Parsed, Setting};

/// Names of the environment variables this project reads. Each is part of the contract.
pub mod vars {
    /// Platform base URL.
    pub const PLATFORM_URL: &str = "PLATFORM_URL";
    /// Selects the workspace route of the platform endpoint.
    pub const WORKSPACE_ID: &str = "WORKSPACE_ID";
    /// Directory holding `.auth_token`, the platform bearer.
    pub const CONFIGS_DIR: &str = "CONFIGS_DIR";
    /// Sent as `X-Molecule-Org-Id`.
    pub const MOLECULE_ORG_ID: &str = "MOLECULE_ORG_ID";
    /// Cache directory (mode 0700).
    pub const MOLECULE_TOKEN_CACHE_DIR: &str = "MOLECULE_TOKEN_CACHE_DIR";
    /// Fallback token file saved by the entrypoint.
    pub const MOLECULE_FALLBACK_TOKEN_FILE: &str = "MOLECULE_FALLBACK_TOKEN_FILE";
    /// Comma-separated hosts the helper answers for (https only).
    pub const MOLECULE_GIT_HOSTS: &str = "MOLECULE_GIT_HOSTS";
    /// Daemon refresh interval in seconds.
    pub const TOKEN_REFRESH_INTERVAL_SEC: &str = "TOKEN_REFRESH_INTERVAL_SEC";
    /// Uniform ± jitter on the interval, in seconds.
    pub const TOKEN_REFRESH_JITTER_SEC: &str = "TOKEN_REFRESH_JITTER_SEC";
    /// The daemon's first wait when the cache is already fresh, in seconds.
    pub const TOKEN_REFRESH_INITIAL_DELAY_SEC: &str = "TOKEN_REFRESH_INITIAL_DELAY_SEC";
    /// A token this close to expiry is not served and is refreshed, in seconds.
    pub const TOKEN_REFRESH_MARGIN_SEC: &str = "TOKEN_REFRESH_MARGIN_SEC";
    /// Whole budget of one platform call, in seconds.
    pub const MOLECULE_HTTP_TIMEOUT_SEC: &str = "MOLECULE_HTTP_TIMEOUT_SEC";
    /// Log filter (tracing-subscriber `EnvFilter` syntax).
    pub const MOLECULE_LOG: &str = "MOLECULE_LOG";
    /// `text` or `json`.
    pub const MOLECULE_LOG_FORMAT: &str = "MOLECULE_LOG_FORMAT";
    /// `platform` or `github-app`.
    pub const MOLECULE_TOKEN_SOURCE: &str = "MOLECULE_TOKEN_SOURCE";
    /// The token file, for the `file` source.
    pub const MOLECULE_TOKEN_SOURCE_FILE: &str = "MOLECULE_TOKEN_SOURCE_FILE";
    /// Files the daemon keeps fresh: `FORMAT[@HOST[/OWNER]]:PATH,…`.
    pub const MOLECULE_TOKEN_SINKS: &str = "MOLECULE_TOKEN_SINKS";
    /// The group that may read the sinks (name or gid; mode 0640).
    pub const MOLECULE_TOKEN_SINK_GROUP: &str = "MOLECULE_TOKEN_SINK_GROUP";
    /// The Prometheus textfile (default `<cache dir>/metrics.prom`; set empty to disable).
    pub const MOLECULE_METRICS_FILE: &str = "MOLECULE_METRICS_FILE";
    /// `ADDR:PORT` to serve `/metrics` on (unset: no listener).
    pub const MOLECULE_METRICS_LISTEN: &str = "MOLECULE_METRICS_LISTEN";
    /// GitHub App ID (or its client ID), for the `github-app` source.
    pub const MOLECULE_GITHUB_APP_ID: &str = "MOLECULE_GITHUB_APP_ID";
    /// The App's client ID (`Iv…`), the JWT's `iss` when set.
    pub const MOLECULE_GITHUB_APP_CLIENT_ID: &str = "MOLECULE_GITHUB_APP_CLIENT_ID";
    /// The App's PEM private key file, for the `github-app` source.
    pub const MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE: &str = "MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE";
    /// A command (run by `sh -c`) that signs the App's JWT instead of a key file.
    pub const MOLECULE_GITHUB_APP_SIGNER: &str = "MOLECULE_GITHUB_APP_SIGNER";
    /// Default installation ID, for the `github-app` source.
    pub const MOLECULE_GITHUB_APP_INSTALLATION_ID: &str = "MOLECULE_GITHUB_APP_INSTALLATION_ID";
    /// `owner=id,owner=id` map for owner routing.
    pub const MOLECULE_GITHUB_APP_INSTALLATIONS: &str = "MOLECULE_GITHUB_APP_INSTALLATIONS";
    /// GitHub API base URL.
    pub const MOLECULE_GITHUB_API_URL: &str = "MOLECULE_GITHUB_API_URL";
    /// `host=url,host=url`: the API base per git host (GitHub Enterprise Server, GHE.com).
    pub const MOLECULE_GITHUB_API_URLS: &str = "MOLECULE_GITHUB_API_URLS";
    /// Comma-separated repository names to narrow App tokens to.
    pub const MOLECULE_GITHUB_APP_REPOSITORIES: &str = "MOLECULE_GITHUB_APP_REPOSITORIES";
    /// `name=level,…` permissions to narrow App tokens to (`contents=read`).
    pub const MOLECULE_GITHUB_APP_PERMISSIONS: &str = "MOLECULE_GITHUB_APP_PERMISSIONS";
    /// `1` to revoke App tokens the daemon minted when it stops.
    pub const MOLECULE_REVOKE_ON_EXIT: &str = "MOLECULE_REVOKE_ON_EXIT";
    /// Fallback token, first choice.
    pub const GH_TOKEN: &str = "GH_TOKEN";
    /// Fallback token, second choice.
    pub const GITHUB_TOKEN: &str = "GITHUB_TOKEN";
    /// gh's token variable for enterprise hosts (stripped from gh's environment).
    pub const GH_ENTERPRISE_TOKEN: &str = "GH_ENTERPRISE_TOKEN";
    /// gh's other token variable for enterprise hosts (stripped from gh's environment).
    pub const GITHUB_ENTERPRISE_TOKEN: &str = "GITHUB_ENTERPRISE_TOKEN";
    /// The token GitHub's MCP server reads at start. Only its presence is read (`doctor`, the
    /// daemon's start-up warning): it is no token source of ours.
    pub const GITHUB_PERSONAL_ACCESS_TOKEN: &str = "GITHUB_PERSONAL_ACCESS_TOKEN";
    /// The token the Copilot CLI reads before `GH_TOKEN`. Only its presence is read.
    pub const COPILOT_GITHUB_TOKEN: &str = "COPILOT_GITHUB_TOKEN";
    /// The program git asks for a username and password when no helper answers (`doctor`).
    pub const GIT_ASKPASS: &str = "GIT_ASKPASS";
    /// The executable search path: where `configure` finds the path this binary was installed
    /// at when it was started by name.
    pub const PATH: &str = "PATH";
    /// Home directory, for the default cache directory.
    pub const HOME: &str = "HOME";
}

/// Reads one variable from the process environment. The only place that does.
/// Empty means unset; a value that is not UTF-8 is returned lossily so that parsing rejects it
/// with a warning instead of silently treating it as unset.
#[expect(
    clippy::disallowed_methods,
    reason = "this is the one place the environment is read"
)]
pub fn process_env(name: &str) -> Option<String> {
    let value: OsString = std::env::var_os(name)?;
    match value.into_string() {
        Ok(s) if s.is_empty() => None,
        Ok(s) => Some(s),
        Err(raw) => Some(raw.to_string_lossy().into_owned()),
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human text lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where tokens come from before the fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSourceKind {
    /// The Molecule platform endpoint.
    Platform,
    /// Minted directly from a GitHub App.
    GithubApp,
    /// Read from a file another system keeps fresh.
    File,
}

/// Who a GitHub App JWT says it is from (its `iss`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Issuer {
    /// The App's numeric ID.
    AppId(u64),
    /// The App's client ID (`Iv…`), which GitHub recommends.
    ClientId(String),
}

impl std::fmt::Display for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Issuer::AppId(id) => write!(f, "{id}"),
            Issuer::ClientId(id) => f.write_str(id),
        }
    }
}

/// GitHub App settings, for the `github-app` token source.
#[derive(Clone, Debug, Default)]
pub struct GithubAppConfig {
    /// The App's numeric ID.
    pub app_id: Option<u64>,
    /// The App's client ID: `MOLECULE_GITHUB_APP_CLIENT_ID`, else a client ID given as
    /// `MOLECULE_GITHUB_APP_ID`.
    pub client_id: Option<String>,
    /// Path of the App's PEM private key.
    pub private_key_file: Option<PathBuf>,
    /// The command that signs JWTs instead of a key file (it may carry credentials).
    pub signer: Option<Secret<String>>,
    /// Default installation.
    pub installation_id: Option<u64>,
    /// Owner (lower-case) → installation ID.
    pub installations: BTreeMap<String, u64>,
    /// `MOLECULE_GITHUB_API_URL` when set: the API base for every host not in `api_urls`.
    pub api_url: Option<String>,
    /// Host → API base, without trailing slashes.
    pub api_urls: BTreeMap<String, String>,
    /// Repository names to narrow tokens to (empty: no narrowing).
    pub repositories: Vec<String>,
    /// Permission → level to narrow tokens to (empty: all the App has).
    pub permissions: BTreeMap<String, String>,
}

impl GithubAppConfig {
    /// The JWT's `iss`: the client ID when there is one (GitHub's recommendation), else the
    /// App ID.
    pub fn issuer(&self) -> Option<Issuer> {
        self.client_id
            .clone()
            .map(Issuer::ClientId)
            .or(self.app_id.map(Issuer::AppId))
    }

    /// The REST API base for git host `host` ([`crate::host::api_base`] with this
    /// configuration's overrides).
    pub fn api_base(&self, host: &str) -> String {
        crate::host::api_base(host, &self.api_urls, self.api_url.as_deref())
    }
}

/// The whole configuration, immutable once loaded.
#[derive(Clone, Debug)]
pub struct Config {
    /// Platform base URL, without a trailing slash.
    pub platform_url: String,
    /// Workspace route selector.
    pub workspace_id: Option<String>,
    /// Directory holding `.auth_token`.
    pub configs_dir: PathBuf,
    /// Organisation header value.
    pub org_id: Option<String>,
    /// Cache directory.
    pub cache_dir: PathBuf,
    /// Fallback token file.
    pub fallback_token_file: PathBuf,
    /// Hosts the helper answers for, normalised by [`normalize_host`].
    pub hosts: Vec<String>,
    /// Daemon interval.
    pub refresh_interval: Duration,
    /// Daemon ± jitter.
    pub refresh_jitter: Duration,
    /// Daemon first wait when the cache is fresh.
    pub initial_delay: Duration,
    /// Tokens this close to expiry are refreshed and not served.
    pub margin: Duration,
    /// Whole budget of one platform call.
    pub http_timeout: Duration,
    /// Log filter directives.
    pub log_filter: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Primary token source.
    pub token_source: TokenSourceKind,
    /// GitHub App settings.
    pub github_app: GithubAppConfig,
    /// The token file of the `file` source.
    pub token_source_file: Option<PathBuf>,
    /// The files the daemon keeps fresh.
    pub sinks: Vec<crate::sink::Sink>,
    /// The group that may read the sinks (a name or a gid), resolved by the daemon.
    pub sink_group: Option<String>,
    /// The Prometheus textfile; `None` when disabled.
    pub metrics_file: Option<PathBuf>,
    /// Where to serve `/metrics`; `None`: no listener.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Revoke App tokens the daemon minted when it stops.
    pub revoke_on_exit: bool,
    /// `GH_TOKEN` as the process saw it (fallback source 1).
    pub gh_token: Option<Secret<String>>,
    /// `GITHUB_TOKEN` as the process saw it (fallback source 2).
    pub github_token: Option<Secret<String>>,
    /// Whether `GITHUB_PERSONAL_ACCESS_TOKEN` is exported (its value is never kept).
    pub github_personal_access_token_exported: bool,
    /// Whether `COPILOT_GITHUB_TOKEN` is exported (its value is never kept).
    pub copilot_github_token_exported: bool,
    /// `GIT_ASKPASS`: a program path, not a secret.
    pub git_askpass: Option<String>,
    /// `PATH`, as the process saw it.
    pub search_path: Option<String>,
}

/// A loaded configuration and what was wrong with the input.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration, with defaults wherever a value was missing or bad.
    pub config: Config,
    /// One line per problem, naming the variable, never its value.
    pub warnings: Vec<String>,
}

/// What an exported `GH_TOKEN` or `GITHUB_TOKEN` does to every process that inherits it: the
/// one wording of this rule, for the daemon's start-up warning and `doctor`.
pub const EXPORTED_TOKEN_EFFECT: &str = "gh, and every tool that reads it, use that token \
    (dead within the hour) instead of gh's stored login, which gh-token-refresh keeps fresh";

/// A token variable exported in this process's environment that tools read in place of asking
/// for a fresh token. The rule is one table ([`Config::exported_tokens`]), so the daemon's
/// start-up warning and `doctor` always name the same variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportedToken {
    /// The variable.
    pub name: &'static str,
    /// Who reads it and what that does.
    pub effect: &'static str,
    /// Whether it is also a fallback source, which scripts/entrypoint.sh saves before
    /// unsetting it.
    pub fallback: bool,
}

/// The metrics textfile's name in the cache directory, when `MOLECULE_METRICS_FILE` is unset.
pub const METRICS_FILE: &str = "metrics.prom";

/// Whether `name` is exported with an empty value (for the one variable where that differs
/// from unset).
#[expect(
    clippy::disallowed_methods,
    reason = "this is the one place the environment is read"
)]
fn set_but_empty(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v.is_empty())
}

/// Default platform base URL (the platform's own default).
pub const DEFAULT_PLATFORM_URL: &str = "http://host.docker.internal:8080";

impl Config {
    /// Loads from the process environment with the values of `flags` on top.
    pub fn from_env(flags: &Flags) -> Loaded {
        Self::load_with(flags, |var| {
            if var == vars::MOLECULE_METRICS_FILE && set_but_empty(var) {
                // The one variable whose empty value means something: "no textfile".
                return Some(String::new());
            }
            process_env(var)
        })
    }

    /// Loads from `lookup` alone (no flags; empty means unset).
    pub fn load(lookup: impl Fn(&str) -> Option<String>) -> Loaded {
        Self::load_with(&Flags::default(), lookup)
    }

    /// Loads from `flags` over `lookup` (the environment; empty means unset).
    pub fn load_with(flags: &Flags, lookup: impl Fn(&str) -> Option<String>) -> Loaded {
        let mut p = Layers {
            flags,
            lookup: &lookup,
            warnings: Vec::new(),
        };
        let cache_dir = p.get(&setting::CACHE_DIR).unwrap_or_else(|| {
            let home = lookup(vars::HOME)
                .map(PathBuf::from)
                .or_else(dirs::home_dir)
                .unwrap_or_else(|| PathBuf::from("/"));
            home.join(".molecule-token-cache")
        });
        let hosts = p
            .get(&setting::HOSTS)
            .unwrap_or_else(|| vec!["github.com".to_owned()]);
        let config = Config {
            platform_url: p
                .get(&setting::PLATFORM_URL)
                .unwrap_or_else(|| DEFAULT_PLATFORM_URL.to_owned()),
            workspace_id: p.get(&setting::WORKSPACE_ID),
            configs_dir: p
                .get(&setting::CONFIGS_DIR)
                .unwrap_or_else(|| PathBuf::from("/configs")),
            org_id: p.get(&setting::ORG_ID),
            fallback_token_file: p
                .get(&setting::FALLBACK_TOKEN_FILE)
                .unwrap_or_else(|| cache_dir.join("fallback-token")),
            metrics_file: p.metrics_file(&cache_dir),
            cache_dir,
            sinks: p.sinks(&hosts),
            hosts,
            refresh_interval: p.seconds(&setting::INTERVAL, 2700),
            refresh_jitter: p.seconds(&setting::JITTER, 120),
            initial_delay: p.seconds(&setting::INITIAL_DELAY, 60),
            margin: p.seconds(&setting::MARGIN, 300),
            http_timeout: p.seconds(&setting::HTTP_TIMEOUT, 10),
            log_filter: p.get(&setting::LOG).unwrap_or_else(|| "info".to_owned()),
            log_format: p.get(&setting::LOG_FORMAT).unwrap_or(LogFormat::Text),
            token_source: p
                .get(&setting::TOKEN_SOURCE)
                .unwrap_or(TokenSourceKind::Platform),
            github_app: GithubAppConfig::load(&mut p),
            token_source_file: p.get(&setting::TOKEN_SOURCE_FILE),
            sink_group: p.get(&setting::SINK_GROUP),
            metrics_listen: p.get(&setting::METRICS_LISTEN),
            revoke_on_exit: p.get(&setting::REVOKE_ON_EXIT).unwrap_or(false),
            gh_token: lookup(vars::GH_TOKEN).map(Secret::new),
            github_token: lookup(vars::GITHUB_TOKEN).map(Secret::new),
            // Presence only: these are no source of ours, so their values are dropped here.
            github_personal_access_token_exported: lookup(vars::GITHUB_PERSONAL_ACCESS_TOKEN)
                .is_some(),
            copilot_github_token_exported: lookup(vars::COPILOT_GITHUB_TOKEN).is_some(),
            git_askpass: lookup(vars::GIT_ASKPASS),
            search_path: lookup(vars::PATH),
        };
        Loaded {
            config,
            warnings: p.warnings,
        }
    }

    /// The token variables exported in this process's environment that other tools read in
    /// place of asking for a fresh token.
    pub fn exported_tokens(&self) -> impl Iterator<Item = ExportedToken> {
        let token = |name, effect, fallback, set: bool| {
            set.then_some(ExportedToken {
                name,
                effect,
                fallback,
            })
        };
        [
            token(
                vars::GH_TOKEN,
                EXPORTED_TOKEN_EFFECT,
                true,
                self.gh_token.is_some(),
            ),
            token(
                vars::GITHUB_TOKEN,
                EXPORTED_TOKEN_EFFECT,
                true,
                self.github_token.is_some(),
            ),
            token(
                vars::GITHUB_PERSONAL_ACCESS_TOKEN,
                "GitHub's MCP server (github-mcp-server) reads it at start and sends that token, \
                 dead within the hour, for as long as it runs",
                false,
                self.github_personal_access_token_exported,
            ),
            token(
                vars::COPILOT_GITHUB_TOKEN,
                "the Copilot CLI reads it before GH_TOKEN and GITHUB_TOKEN, and sends that token, \
                 dead within the hour",
                false,
                self.copilot_github_token_exported,
            ),
        ]
        .into_iter()
        .flatten()
    }

    /// Whether `host` (as git sent it) is one we answer for: exact, case-insensitive, with the
    /// default https port folded away.
    pub fn serves_host(&self, host: &str) -> Option<String> {
        let host = normalize_host(host)?;
        self.hosts.contains(&host).then_some(host)
    }
}

impl GithubAppConfig {
    fn load(p: &mut Layers<'_>) -> Self {
        // MOLECULE_GITHUB_APP_ID also takes a client ID.
        let (app_id, client_id) = match p.get(&setting::APP_ID) {
            Some(Issuer::AppId(id)) => (Some(id), None),
            Some(Issuer::ClientId(id)) => (None, Some(id)),
            None => (None, None),
        };
        Self {
            app_id,
            client_id: p.get(&setting::APP_CLIENT_ID).or(client_id),
            private_key_file: p.get(&setting::APP_PRIVATE_KEY_FILE),
            signer: p.get(&setting::APP_SIGNER),
            installation_id: p.get(&setting::APP_INSTALLATION_ID),
            installations: p.get(&setting::APP_INSTALLATIONS).unwrap_or_default(),
            api_url: p.get(&setting::GITHUB_API_URL),
            api_urls: p.get(&setting::GITHUB_API_URLS).unwrap_or_default(),
            repositories: p.get(&setting::APP_REPOSITORIES).unwrap_or_default(),
            permissions: p.get(&setting::APP_PERMISSIONS).unwrap_or_default(),
        }
    }
}

/// The layers a setting's value comes from: a flag, else the environment (parsed, with a
/// warning per problem), else nothing (the caller's default).
struct Layers<'a> {
    flags: &'a Flags,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    warnings: Vec<String>,
}

impl Layers<'_> {
    fn get<T: Clone + 'static>(&mut self, setting: &Setting<T>) -> Option<T> {
        if let Some(value) = self.flags.get(setting) {
            return Some(value);
        }
        let raw = (self.lookup)(setting.var)?;
        let Parsed { value, problems } = (setting.parse)(&raw);
        // A list keeps its good entries; a value of which nothing is usable is replaced.
        let outcome = if value.is_some() {
            "ignored"
        } else {
            "using the default"
        };
        for problem in problems {
            let what = match problem.entry {
                None => String::new(),
                Some(n) => format!(" entry {n}"),
            };
            self.warnings.push(format!(
                "{}{what} is not {}; {outcome}",
                setting.var, problem.expected
            ));
        }
        value
    }

    fn seconds(&mut self, setting: &Setting<Duration>, default: u64) -> Duration {
        self.get(setting).unwrap_or(Duration::from_secs(default))
    }

    /// The sinks, bound to `hosts`: one naming a host that is not served is said and left out.
    fn sinks(&mut self, hosts: &[String]) -> Vec<crate::sink::Sink> {
        let mut sinks: Vec<crate::sink::Sink> = Vec::new();
        for (i, spec) in self
            .get(&setting::SINKS)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            match spec.resolve(hosts) {
                Some(s) if !sinks.iter().any(|o| o.path == s.path) => sinks.push(s),
                Some(_) => self.warnings.push(format!(
                    "{} sink {} names a path an earlier one has; ignored",
                    vars::MOLECULE_TOKEN_SINKS,
                    i + 1
                )),
                None => self.warnings.push(format!(
                    "{} sink {} names a host that is not in {}; ignored",
                    vars::MOLECULE_TOKEN_SINKS,
                    i + 1,
                    vars::MOLECULE_GIT_HOSTS
                )),
            }
        }
        sinks
    }

    /// The metrics textfile: the configured path, none when set empty, else in the cache
    /// directory.
    fn metrics_file(&mut self, cache_dir: &std::path::Path) -> Option<PathBuf> {
        if (self.lookup)(vars::MOLECULE_METRICS_FILE).is_some_and(|v| v.is_empty())
            && self.flags.get(&setting::METRICS_FILE).is_none()
        {
            return None;
        }
        Some(
            self.get(&setting::METRICS_FILE)
                .unwrap_or_else(|| cache_dir.join(METRICS_FILE)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Loaded {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::load(|k| map.get(k).filter(|v| !v.is_empty()).cloned())
    }

    #[test]
    fn defaults_follow_the_design_table() {
        let l = load(&[("HOME", "/home/agent")]);
        let c = l.config;
        assert!(l.warnings.is_empty());
        assert_eq!(c.platform_url, "http://host.docker.internal:8080");
        assert_eq!(c.workspace_id, None);
        assert_eq!(c.configs_dir, PathBuf::from("/configs"));
        assert_eq!(
            c.cache_dir,
            PathBuf::from("/home/agent/.molecule-token-cache")
        );
        assert_eq!(
            c.fallback_token_file,
            PathBuf::from("/home/agent/.molecule-token-cache/fallback-token")
        );
        assert_eq!(c.hosts, ["github.com"]);
        assert_eq!(c.refresh_interval, Duration::from_secs(2700));
        assert_eq!(c.refresh_jitter, Duration::from_secs(120));
        assert_eq!(c.initial_delay, Duration::from_secs(60));
        assert_eq!(c.margin, Duration::from_secs(300));
        assert_eq!(c.http_timeout, Duration::from_secs(10));
        assert_eq!(c.log_filter, "info");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.token_source, TokenSourceKind::Platform);
        assert_eq!(
            c.github_app.api_base("github.com"),
            "https://api.github.com"
        );
        assert!(!c.revoke_on_exit);
    }

    #[test]
    fn empty_means_unset() {
        let c = load(&[("HOME", "/h"), ("PLATFORM_URL", ""), ("WORKSPACE_ID", "")]).config;
        assert_eq!(c.platform_url, DEFAULT_PLATFORM_URL);
        assert_eq!(c.workspace_id, None);
    }

    #[test]
    fn flags_beat_the_environment() {
        let mut flags = Flags::default();
        flags.set(&setting::PLATFORM_URL, "http://flag:1".to_owned());
        flags.set(&setting::INTERVAL, Duration::from_secs(5));
        let env: BTreeMap<&str, &str> = [
            ("PLATFORM_URL", "http://env:2"),
            ("WORKSPACE_ID", "ws"),
            ("TOKEN_REFRESH_INTERVAL_SEC", "not a number"),
        ]
        .into();
        let l = Config::load_with(&flags, |k| env.get(k).map(|v| (*v).to_owned()));
        assert_eq!(l.config.platform_url, "http://flag:1");
        assert_eq!(l.config.workspace_id.as_deref(), Some("ws"));
        // The flag's value is used; the environment's bad one is not even parsed.
        assert_eq!(l.config.refresh_interval, Duration::from_secs(5));
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    }

    #[test]
    fn bad_values_warn_without_echoing_them() {
        let secret = "ghs_SECRETVALUE";
        let l = load(&[
            ("TOKEN_REFRESH_INTERVAL_SEC", secret),
            ("PLATFORM_URL", secret),
            ("MOLECULE_LOG_FORMAT", secret),
            ("MOLECULE_GIT_HOSTS", "github.com, ghs_SECRET/VALUE"),
            ("WORKSPACE_ID", "a/b"),
            (
                "MOLECULE_GITHUB_APP_INSTALLATIONS",
                "acme=1,ghs_SECRETVALUE",
            ),
        ]);
        assert_eq!(l.warnings.len(), 6, "{:?}", l.warnings);
        for w in &l.warnings {
            assert!(!w.contains("SECRET"), "warning echoed the value: {w}");
        }
        assert_eq!(l.config.refresh_interval, Duration::from_secs(2700));
        assert_eq!(l.config.hosts, ["github.com"]);
        assert_eq!(l.config.github_app.installations.get("acme"), Some(&1));
    }

    #[test]
    fn hosts_are_normalised() {
        let c = load(&[(
            "MOLECULE_GIT_HOSTS",
            " GitHub.com ,ghe.example.com:8443, github.com:443,",
        )])
        .config;
        assert_eq!(c.hosts, ["github.com", "ghe.example.com:8443"]);
    }

    #[test]
    fn host_matching_is_exact() {
        let c = load(&[("MOLECULE_GIT_HOSTS", "github.com,127.0.0.1:8443")]).config;
        assert_eq!(c.serves_host("GITHUB.COM").as_deref(), Some("github.com"));
        assert_eq!(
            c.serves_host("github.com:443").as_deref(),
            Some("github.com")
        );
        assert_eq!(
            c.serves_host("127.0.0.1:8443").as_deref(),
            Some("127.0.0.1:8443")
        );
        for bad in [
            "github.com.",
            "github.com.evil.test",
            "evilgithub.com",
            "github.com:8443",
            "127.0.0.1",
            "user@github.com",
            "github%2ecom",
            "",
            ":443",
            "github.com:",
            "github.com:99999",
            "github.com\n",
            "xn--github-com",
            // Found by the property tests: a colon inside the name.
            "github.com:443:443",
            "github.com:1:443",
        ] {
            assert_eq!(c.serves_host(bad), None, "{bad:?} must not match");
        }
    }

    #[test]
    fn api_base_per_host() {
        let c = load(&[(
            "MOLECULE_GITHUB_API_URLS",
            "ghe.corp:8443=https://ghe.corp:8443/api/v3/, bad",
        )]);
        assert_eq!(c.warnings.len(), 1);
        let a = &c.config.github_app;
        assert_eq!(a.api_base("github.com"), "https://api.github.com");
        assert_eq!(a.api_base("acme.ghe.com"), "https://api.acme.ghe.com");
        assert_eq!(
            a.api_base("ghe.example.com"),
            "https://ghe.example.com/api/v3"
        );
        assert_eq!(a.api_base("ghe.corp:8443"), "https://ghe.corp:8443/api/v3");
        let c = load(&[("MOLECULE_GITHUB_API_URL", "http://127.0.0.1:9/")]).config;
        assert_eq!(c.github_app.api_base("github.com"), "http://127.0.0.1:9");
        assert_eq!(c.github_app.api_base("anything"), "http://127.0.0.1:9");
    }

    #[test]
    fn narrowing_and_flags() {
        let l = load(&[
            ("MOLECULE_GITHUB_APP_REPOSITORIES", "app, tools ,bad/name"),
            (
                "MOLECULE_GITHUB_APP_PERMISSIONS",
                "contents=write,metadata=read,issues=owner",
            ),
            ("MOLECULE_REVOKE_ON_EXIT", "true"),
        ]);
        assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
        assert_eq!(l.config.github_app.repositories, ["app", "tools"]);
        assert_eq!(
            l.config.github_app.permissions,
            BTreeMap::from([
                ("contents".to_owned(), "write".to_owned()),
                ("metadata".to_owned(), "read".to_owned())
            ])
        );
        assert!(l.config.revoke_on_exit);
    }

    #[test]
    fn exported_tokens_are_named_and_only_the_fallbacks_kept() {
        let l = load(&[
            ("GH_TOKEN", "ghs_one"),
            ("GITHUB_PERSONAL_ACCESS_TOKEN", "ghp_PLANTED_pat"),
            ("COPILOT_GITHUB_TOKEN", "gho_PLANTED_copilot"),
        ]);
        let names: Vec<_> = l.config.exported_tokens().map(|t| t.name).collect();
        assert_eq!(
            names,
            [
                "GH_TOKEN",
                "GITHUB_PERSONAL_ACCESS_TOKEN",
                "COPILOT_GITHUB_TOKEN"
            ]
        );
        let fallback: Vec<_> = l.config.exported_tokens().map(|t| t.fallback).collect();
        assert_eq!(fallback, [true, false, false]);
        // Presence only: the value is nowhere in the configuration.
        assert!(!format!("{:?}", l.config).contains("PLANTED"));
        assert_eq!(load(&[]).config.exported_tokens().count(), 0);
    }

    #[test]
    fn sinks_metrics_and_the_file_source() {
        let l = load(&[
            ("MOLECULE_GIT_HOSTS", "github.com,ghe.example"),
            (
                "MOLECULE_TOKEN_SINKS",
                "json:/run/a.json, env@ghe.example:/run/b.env,yaml:/x,raw:/run/a.json,ghs_SECRET,raw@other.example:/y",
            ),
            ("MOLECULE_TOKEN_SINK_GROUP", "proxy"),
            ("MOLECULE_METRICS_LISTEN", "0.0.0.0:9464"),
            ("MOLECULE_TOKEN_SOURCE", "file"),
            (
                "MOLECULE_TOKEN_SOURCE_FILE",
                "/var/run/secrets/github/token",
            ),
            ("HOME", "/home/a"),
        ]);
        assert_eq!(l.warnings.len(), 4, "{:?}", l.warnings);
        assert!(l.warnings.iter().all(|w| !w.contains("SECRET")));
        let c = l.config;
        let sinks: Vec<String> = c.sinks.iter().map(ToString::to_string).collect();
        assert_eq!(
            sinks,
            ["json@github.com:/run/a.json", "env@ghe.example:/run/b.env"]
        );
        assert_eq!(c.sink_group.as_deref(), Some("proxy"));
        assert_eq!(c.metrics_listen, Some("0.0.0.0:9464".parse().unwrap()));
        assert_eq!(
            c.metrics_file,
            Some(PathBuf::from("/home/a/.molecule-token-cache/metrics.prom"))
        );
        assert_eq!(c.token_source, TokenSourceKind::File);
        assert_eq!(
            c.token_source_file,
            Some(PathBuf::from("/var/run/secrets/github/token"))
        );
        // Set but empty: no textfile (the one variable where empty differs from unset).
        let off = Config::load(|k| (k == "MOLECULE_METRICS_FILE").then(String::new)).config;
        assert_eq!(off.metrics_file, None);
        let bad = load(&[("MOLECULE_METRICS_LISTEN", "ghs_SECRET")]);
        assert_eq!(bad.config.metrics_listen, None);
        assert!(!bad.warnings[0].contains("SECRET"));
    }

    #[test]
    fn the_app_is_named_by_its_id_or_client_id() {
        let app = |pairs: &[(&str, &str)]| load(pairs).config.github_app;
        let a = app(&[("MOLECULE_GITHUB_APP_ID", "4242")]);
        assert_eq!(a.issuer(), Some(Issuer::AppId(4242)));
        // MOLECULE_GITHUB_APP_ID takes a client ID too.
        let a = app(&[("MOLECULE_GITHUB_APP_ID", "Iv1.8a61f9b3a7aba766")]);
        assert_eq!(
            (a.app_id, a.client_id.as_deref()),
            (None, Some("Iv1.8a61f9b3a7aba766"))
        );
        // The client ID is the issuer when both are given.
        let a = app(&[
            ("MOLECULE_GITHUB_APP_ID", "4242"),
            ("MOLECULE_GITHUB_APP_CLIENT_ID", "Iv23liAbCd"),
            ("MOLECULE_GITHUB_APP_SIGNER", "vault write …"),
        ]);
        assert_eq!(a.app_id, Some(4242));
        assert_eq!(a.issuer(), Some(Issuer::ClientId("Iv23liAbCd".into())));
        assert_eq!(
            a.signer.as_ref().map(|s| s.expose().as_str()),
            Some("vault write …")
        );
        assert!(
            !format!("{a:?}").contains("vault write"),
            "the command is kept secret"
        );
        let l = load(&[
            ("MOLECULE_GITHUB_APP_ID", "ghs_SECRET"),
            ("MOLECULE_GITHUB_APP_CLIENT_ID", "Ov23liOauthApp"),
        ]);
        assert_eq!(
            l.warnings,
            [
                "MOLECULE_GITHUB_APP_ID is not a GitHub App ID (a number) or client ID (Iv…); \
                 using the default",
                "MOLECULE_GITHUB_APP_CLIENT_ID is not a GitHub App client ID (Iv…); using the \
                 default"
            ]
        );
        assert_eq!(l.config.github_app.issuer(), None);
    }

    #[test]
    fn installations_map() {
        let c = load(&[("MOLECULE_GITHUB_APP_INSTALLATIONS", "Acme=12, other = 34")]).config;
        assert_eq!(
            c.github_app.installations,
            BTreeMap::from([("acme".to_owned(), 12), ("other".to_owned(), 34)])
        );
    }
}
