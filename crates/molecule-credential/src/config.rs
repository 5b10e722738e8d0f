//! Configuration: every environment variable of DESIGN.md's table, read in one place.
//!
//! Precedence is flags, then environment, then defaults; an empty value means unset. A value
//! that does not parse is reported as a warning naming the variable but never echoing the
//! value (a misplaced value may be a secret) and the default is used instead. Flags are passed
//! in as overrides keyed by the variable they replace, so both go through the same parsing.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::host::normalize_host;
use crate::secret::Secret;

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
    /// `platform`, `github-app` or `file`.
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
    /// GitHub App ID, for the `github-app` source.
    pub const MOLECULE_GITHUB_APP_ID: &str = "MOLECULE_GITHUB_APP_ID";
    /// The App's PEM private key file, for the `github-app` source.
    pub const MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE: &str = "MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE";
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

/// Whether `name` is exported with an empty value (for the one variable where that differs
/// from unset).
#[expect(
    clippy::disallowed_methods,
    reason = "this is the one place the environment is read"
)]
fn set_but_empty(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v.is_empty())
}

/// Flag values that override the environment, keyed by the variable they replace.
#[derive(Clone, Debug, Default)]
pub struct Overrides(BTreeMap<&'static str, String>);

impl Overrides {
    /// Records `value` for `var` when the flag was given (and is not empty).
    pub fn set(&mut self, var: &'static str, value: Option<impl Into<String>>) -> &mut Self {
        if let Some(v) = value.map(Into::into).filter(|v| !v.is_empty()) {
            self.0.insert(var, v);
        }
        self
    }

    /// The override for `var`, if a flag gave one.
    pub fn get(&self, var: &str) -> Option<&str> {
        self.0.get(var).map(String::as_str)
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

/// GitHub App settings, for the `github-app` token source.
#[derive(Clone, Debug, Default)]
pub struct GithubAppConfig {
    /// The App's numeric ID.
    pub app_id: Option<u64>,
    /// Path of the App's PEM private key.
    pub private_key_file: Option<PathBuf>,
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

/// Default platform base URL (the platform's own default).
pub const DEFAULT_PLATFORM_URL: &str = "http://host.docker.internal:8080";

impl Config {
    /// Loads from the process environment with `overrides` from flags on top.
    pub fn from_env(overrides: &Overrides) -> Loaded {
        Self::load(|var| {
            overrides.get(var).map(str::to_owned).or_else(|| {
                if var == vars::MOLECULE_METRICS_FILE {
                    // The one variable whose empty value means something: "no textfile".
                    return set_but_empty(var)
                        .then(String::new)
                        .or_else(|| process_env(var));
                }
                process_env(var)
            })
        })
    }

    /// Loads from `lookup` (flags already layered over the environment; empty means unset).
    pub fn load(lookup: impl Fn(&str) -> Option<String>) -> Loaded {
        let mut p = Parser {
            lookup: &lookup,
            warnings: Vec::new(),
        };
        let cache_dir = p.path(vars::MOLECULE_TOKEN_CACHE_DIR).unwrap_or_else(|| {
            let home = lookup(vars::HOME)
                .map(PathBuf::from)
                .or_else(dirs::home_dir)
                .unwrap_or_else(|| PathBuf::from("/"));
            home.join(".molecule-token-cache")
        });
        let fallback_token_file = p
            .path(vars::MOLECULE_FALLBACK_TOKEN_FILE)
            .unwrap_or_else(|| cache_dir.join("fallback-token"));
        let hosts = p.hosts();
        let sinks = p.sinks(&hosts);
        let metrics_file = match lookup(vars::MOLECULE_METRICS_FILE) {
            Some(v) if v.is_empty() => None,
            Some(v) => Some(PathBuf::from(v)),
            None => Some(cache_dir.join(METRICS_FILE)),
        };
        let config = Config {
            platform_url: p
                .url(vars::PLATFORM_URL)
                .unwrap_or_else(|| DEFAULT_PLATFORM_URL.to_owned()),
            workspace_id: p.path_segment(vars::WORKSPACE_ID),
            configs_dir: p
                .path(vars::CONFIGS_DIR)
                .unwrap_or_else(|| PathBuf::from("/configs")),
            org_id: p.header_value(vars::MOLECULE_ORG_ID),
            cache_dir,
            fallback_token_file,
            hosts,
            refresh_interval: p.seconds(vars::TOKEN_REFRESH_INTERVAL_SEC, 2700, 1..=86_400),
            refresh_jitter: p.seconds(vars::TOKEN_REFRESH_JITTER_SEC, 120, 0..=3600),
            initial_delay: p.seconds(vars::TOKEN_REFRESH_INITIAL_DELAY_SEC, 60, 0..=86_400),
            margin: p.seconds(vars::TOKEN_REFRESH_MARGIN_SEC, 300, 0..=3000),
            http_timeout: p.seconds(vars::MOLECULE_HTTP_TIMEOUT_SEC, 10, 1..=300),
            log_filter: lookup(vars::MOLECULE_LOG).unwrap_or_else(|| "info".to_owned()),
            log_format: match lookup(vars::MOLECULE_LOG_FORMAT).as_deref() {
                None | Some("text") => LogFormat::Text,
                Some("json") => LogFormat::Json,
                Some(_) => {
                    p.warn(
                        vars::MOLECULE_LOG_FORMAT,
                        "is neither text nor json; using text",
                    );
                    LogFormat::Text
                }
            },
            token_source: match lookup(vars::MOLECULE_TOKEN_SOURCE).as_deref() {
                None | Some("platform") => TokenSourceKind::Platform,
                Some("github-app") => TokenSourceKind::GithubApp,
                Some("file") => TokenSourceKind::File,
                Some(_) => {
                    p.warn(
                        vars::MOLECULE_TOKEN_SOURCE,
                        "is not platform, github-app or file; using platform",
                    );
                    TokenSourceKind::Platform
                }
            },
            github_app: GithubAppConfig {
                app_id: p.number(vars::MOLECULE_GITHUB_APP_ID),
                private_key_file: p.path(vars::MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE),
                installation_id: p.number(vars::MOLECULE_GITHUB_APP_INSTALLATION_ID),
                installations: p.pairs(
                    vars::MOLECULE_GITHUB_APP_INSTALLATIONS,
                    "owner=installation-id",
                    is_name,
                    |v| v.parse::<u64>().ok(),
                ),
                api_url: p.url(vars::MOLECULE_GITHUB_API_URL),
                api_urls: p
                    .pairs(
                        vars::MOLECULE_GITHUB_API_URLS,
                        "host=url",
                        |h| normalize_host(h).is_some(),
                        |v| valid_url(v).then(|| v.trim_end_matches('/').to_owned()),
                    )
                    .into_iter()
                    .filter_map(|(h, u)| Some((normalize_host(&h)?, u)))
                    .collect(),
                repositories: p.list(
                    vars::MOLECULE_GITHUB_APP_REPOSITORIES,
                    "a repository name",
                    is_name,
                ),
                permissions: p.pairs(
                    vars::MOLECULE_GITHUB_APP_PERMISSIONS,
                    "permission=read|write|admin",
                    is_name,
                    |v| matches!(v, "read" | "write" | "admin").then(|| v.to_owned()),
                ),
            },
            revoke_on_exit: p.flag(vars::MOLECULE_REVOKE_ON_EXIT),
            gh_token: lookup(vars::GH_TOKEN).map(Secret::new),
            github_token: lookup(vars::GITHUB_TOKEN).map(Secret::new),
            // Presence only: these are no source of ours, so their values are dropped here.
            github_personal_access_token_exported: lookup(vars::GITHUB_PERSONAL_ACCESS_TOKEN)
                .is_some(),
            copilot_github_token_exported: lookup(vars::COPILOT_GITHUB_TOKEN).is_some(),
            git_askpass: lookup(vars::GIT_ASKPASS),
            search_path: lookup(vars::PATH),
            token_source_file: p.path(vars::MOLECULE_TOKEN_SOURCE_FILE),
            sinks,
            sink_group: p.sink_group(),
            metrics_file,
            metrics_listen: p.socket_addr(vars::MOLECULE_METRICS_LISTEN),
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

struct Parser<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    warnings: Vec<String>,
}

impl Parser<'_> {
    fn warn(&mut self, var: &str, problem: &str) {
        self.warnings.push(format!("{var} {problem}"));
    }

    fn path(&mut self, var: &str) -> Option<PathBuf> {
        (self.lookup)(var).map(PathBuf::from)
    }

    fn url(&mut self, var: &str) -> Option<String> {
        let v = (self.lookup)(var)?;
        if valid_url(&v) {
            Some(v.trim_end_matches('/').to_owned())
        } else {
            self.warn(var, "is not an http:// or https:// URL; using the default");
            None
        }
    }

    fn path_segment(&mut self, var: &str) -> Option<String> {
        let v = (self.lookup)(var)?;
        if v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
            && v != "."
            && v != ".."
        {
            Some(v)
        } else {
            self.warn(
                var,
                "has characters not allowed in a URL path segment; ignored",
            );
            None
        }
    }

    fn header_value(&mut self, var: &str) -> Option<String> {
        let v = (self.lookup)(var)?;
        if v.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            Some(v)
        } else {
            self.warn(var, "has characters not allowed in an HTTP header; ignored");
            None
        }
    }

    fn number(&mut self, var: &str) -> Option<u64> {
        let v = (self.lookup)(var)?;
        match v.trim().parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                self.warn(var, "is not a whole number; ignored");
                None
            }
        }
    }

    fn seconds(
        &mut self,
        var: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Duration {
        let secs = match (self.lookup)(var) {
            None => default,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if range.contains(&n) => n,
                _ => {
                    self.warn(
                        var,
                        &format!(
                            "is not a whole number of seconds from {} to {}; using {default}",
                            range.start(),
                            range.end()
                        ),
                    );
                    default
                }
            },
        };
        Duration::from_secs(secs)
    }

    fn hosts(&mut self) -> Vec<String> {
        let raw =
            (self.lookup)(vars::MOLECULE_GIT_HOSTS).unwrap_or_else(|| "github.com".to_owned());
        let mut hosts = Vec::new();
        for (i, item) in raw.split(',').map(str::trim).enumerate() {
            if item.is_empty() {
                continue;
            }
            match normalize_host(item) {
                Some(h) if !hosts.contains(&h) => hosts.push(h),
                Some(_) => {}
                None => self.warn(
                    vars::MOLECULE_GIT_HOSTS,
                    &format!(
                        "entry {} is not a host name (host or host:port); ignored",
                        i + 1
                    ),
                ),
            }
        }
        hosts
    }

    /// `key=value,key=value`, keys lower-cased; a bad item is reported by position and
    /// skipped.
    fn pairs<V>(
        &mut self,
        var: &str,
        shape: &str,
        valid_key: impl Fn(&str) -> bool,
        parse: impl Fn(&str) -> Option<V>,
    ) -> BTreeMap<String, V> {
        let mut map = BTreeMap::new();
        let Some(raw) = (self.lookup)(var) else {
            return map;
        };
        for (i, item) in raw.split(',').map(str::trim).enumerate() {
            if item.is_empty() {
                continue;
            }
            let parsed = item.split_once('=').and_then(|(k, v)| {
                let k = k.trim();
                valid_key(k).then_some(())?;
                Some((k.to_ascii_lowercase(), parse(v.trim())?))
            });
            match parsed {
                Some((k, v)) => {
                    map.insert(k, v);
                }
                None => self.warn(var, &format!("entry {} is not {shape}; ignored", i + 1)),
            }
        }
        map
    }

    /// A comma-separated list; a bad item is reported by position and skipped.
    fn list(&mut self, var: &str, what: &str, valid: impl Fn(&str) -> bool) -> Vec<String> {
        let Some(raw) = (self.lookup)(var) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in raw.split(',').map(str::trim).enumerate() {
            if item.is_empty() {
                continue;
            }
            if valid(item) {
                out.push(item.to_owned());
            } else {
                self.warn(var, &format!("entry {} is not {what}; ignored", i + 1));
            }
        }
        out
    }

    /// `MOLECULE_TOKEN_SINKS`: each bad entry is reported by position and skipped.
    fn sinks(&mut self, hosts: &[String]) -> Vec<crate::sink::Sink> {
        let var = vars::MOLECULE_TOKEN_SINKS;
        let Some(raw) = (self.lookup)(var) else {
            return Vec::new();
        };
        let mut sinks: Vec<crate::sink::Sink> = Vec::new();
        for (i, item) in raw.split(',').enumerate() {
            if item.trim().is_empty() {
                continue;
            }
            match crate::sink::parse(item, hosts) {
                Ok(s) if sinks.iter().any(|o| o.path == s.path) => self.warn(
                    var,
                    &format!("entry {} names a path an earlier entry has; ignored", i + 1),
                ),
                Ok(s) => sinks.push(s),
                Err(e) => self.warn(var, &format!("entry {} {e}; ignored", i + 1)),
            }
        }
        sinks
    }

    /// `MOLECULE_TOKEN_SINK_GROUP`: a group name or a gid.
    fn sink_group(&mut self) -> Option<String> {
        let v = (self.lookup)(vars::MOLECULE_TOKEN_SINK_GROUP)?;
        if v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            Some(v)
        } else {
            self.warn(
                vars::MOLECULE_TOKEN_SINK_GROUP,
                "is not a group name or gid; the sinks stay 0600",
            );
            None
        }
    }

    fn socket_addr(&mut self, var: &str) -> Option<std::net::SocketAddr> {
        let v = (self.lookup)(var)?;
        match v.trim().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.warn(
                    var,
                    "is not ADDR:PORT (127.0.0.1:9464, [::1]:9464); ignored",
                );
                None
            }
        }
    }

    fn flag(&mut self, var: &str) -> bool {
        match (self.lookup)(var)
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("0" | "false" | "no" | "off") => false,
            Some("1" | "true" | "yes" | "on") => true,
            Some(_) => {
                self.warn(var, "is not 1 or 0; using 0");
                false
            }
        }
    }
}

/// A GitHub owner, repository or permission name.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn valid_url(v: &str) -> bool {
    (v.starts_with("http://") || v.starts_with("https://"))
        && v.len() > "https://".len()
        && v.bytes().all(|b| b.is_ascii_graphic())
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
    fn overrides_beat_the_environment() {
        let mut o = Overrides::default();
        o.set(vars::PLATFORM_URL, Some("http://flag:1"));
        o.set(vars::WORKSPACE_ID, None::<String>);
        let env: BTreeMap<&str, &str> =
            [("PLATFORM_URL", "http://env:2"), ("WORKSPACE_ID", "ws")].into();
        let c = Config::load(|k| {
            o.get(k)
                .map(str::to_owned)
                .or_else(|| env.get(k).map(|v| (*v).to_owned()))
        })
        .config;
        assert_eq!(c.platform_url, "http://flag:1");
        assert_eq!(c.workspace_id.as_deref(), Some("ws"));
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
                "json:/run/a.json, env@ghe.example:/run/b.env,yaml:/x,raw:/run/a.json,ghs_SECRET",
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
        assert_eq!(l.warnings.len(), 3, "{:?}", l.warnings);
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
    fn installations_map() {
        let c = load(&[("MOLECULE_GITHUB_APP_INSTALLATIONS", "Acme=12, other = 34")]).config;
        assert_eq!(
            c.github_app.installations,
            BTreeMap::from([("acme".to_owned(), 12), ("other".to_owned(), 34)])
        );
    }
}
