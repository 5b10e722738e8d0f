//! The typed settings: every configuration variable that is parsed, bound to the parser of
//! its value and, when it has one, to the flag that overrides it. Each binding is one row of
//! the table at the end of this file, so a flag, its variable and its parser can never drift
//! apart.
//!
//! The same parser serves both layers, with DESIGN.md's two rules ("Configuration"): a bad
//! environment value is a warning naming the variable, and the default is used; a bad flag
//! value is a usage error naming the flag (`cli`, which builds the flags from this table).
//! Neither ever echoes the value: a misplaced value may be a secret.
//!
//! Adding a variable: its name in [`vars`]; a row in the table (the constant, its value type,
//! `Setting::env(VAR, parser)`, and `.flag(…)`, `.switch(…)` or `.repeated(…)` when a flag
//! overrides it); a field of `Config` filled by `p.get(&setting::ROW)` in
//! `Config::load_with`. The flag, its `--help` line, its usage error and the tests that
//! every flag refuses a bad value without echoing it (`tests/support/flags.rs`) follow from
//! the row.

use std::any::Any;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::parse;
use super::{Issuer, LogFormat, TokenSourceKind, vars};
use crate::secret::Secret;

/// What is wrong with a value, said without the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The 1-based position of the bad entry in a comma-separated list, if that is where.
    pub entry: Option<usize>,
    /// What the value (or the entry) should have been: "an http:// or https:// URL".
    pub expected: Cow<'static, str>,
}

impl Problem {
    /// A whole value that is not `expected`.
    pub fn value(expected: impl Into<Cow<'static, str>>) -> Self {
        Self {
            entry: None,
            expected: expected.into(),
        }
    }

    /// Entry `index` (0-based) of a list that is not `expected`.
    pub fn entry(index: usize, expected: impl Into<Cow<'static, str>>) -> Self {
        Self {
            entry: Some(index + 1),
            expected: expected.into(),
        }
    }
}

/// As a flag's usage error says it: "not an http:// or https:// URL", "entry 2 is not a host
/// name".
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entry {
            None => write!(f, "not {}", self.expected),
            Some(n) => write!(f, "entry {n} is not {}", self.expected),
        }
    }
}

impl std::error::Error for Problem {}

/// A parsed value: what can be used of it, and what was wrong. A list with a bad entry has
/// both (the environment keeps the good entries; a flag is refused whole).
#[derive(Debug)]
pub struct Parsed<T> {
    /// The value, or `None` when nothing of it can be used.
    pub value: Option<T>,
    /// What was wrong, in order.
    pub problems: Vec<Problem>,
}

impl<T> Parsed<T> {
    /// A good value.
    pub fn ok(value: T) -> Self {
        Self {
            value: Some(value),
            problems: Vec::new(),
        }
    }

    /// A value of which nothing can be used.
    pub fn bad(expected: impl Into<Cow<'static, str>>) -> Self {
        Self {
            value: None,
            problems: vec![Problem::value(expected)],
        }
    }

    /// The strict reading, a flag's: the value only when nothing was wrong.
    pub fn strict(self) -> Result<T, Problem> {
        match (self.value, self.problems.into_iter().next()) {
            (Some(v), None) => Ok(v),
            (_, Some(problem)) => Err(problem),
            (None, None) => Err(Problem::value("a usable value")),
        }
    }
}

/// Where a flag is listed in `--help`, and which binary has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// The platform source.
    Platform,
    /// The GitHub App source.
    App,
    /// The cache and the hosts served.
    Cache,
    /// Log output.
    Logging,
    /// The daemon's schedule (the daemon only).
    Schedule,
    /// What the daemon writes and serves besides the cache (the daemon only).
    Outputs,
}

impl Group {
    /// Whether only `gh-token-refresh` has these flags.
    pub fn daemon_only(self) -> bool {
        matches!(self, Group::Schedule | Group::Outputs)
    }
}

/// How a flag takes its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagKind {
    /// `--flag VALUE`, at most once.
    Value,
    /// `--flag` alone, meaning the variable's value `1`.
    Switch,
    /// `--flag VALUE`, any number of times; the values are joined (see [`Setting::join`]).
    Repeated,
}

/// The flag that overrides a variable.
#[derive(Clone, Copy, Debug)]
pub struct Flag {
    /// The long name, without `--`.
    pub long: &'static str,
    /// The placeholder in `--help` (empty for a switch).
    pub value_name: &'static str,
    /// One line for `--help` (the variable's name is added to it).
    pub help: &'static str,
    /// Where it is listed, and which binary has it.
    pub group: Group,
    /// How it takes its value.
    pub kind: FlagKind,
}

/// One configuration variable: its name, how its value parses, and its flag.
pub struct Setting<T: 'static> {
    /// The environment variable (a constant of [`vars`]).
    pub var: &'static str,
    /// Parses a non-empty value.
    pub parse: fn(&str) -> Parsed<T>,
    /// The flag that overrides it, if any.
    pub flag: Option<Flag>,
    /// How the values of a [`FlagKind::Repeated`] flag combine into one.
    pub join: Option<fn(Vec<T>) -> T>,
}

impl<T> Setting<T> {
    /// A variable without a flag.
    pub const fn env(var: &'static str, parse: fn(&str) -> Parsed<T>) -> Self {
        Self {
            var,
            parse,
            flag: None,
            join: None,
        }
    }

    /// With a flag `--long VALUE_NAME`.
    pub const fn flag(
        self,
        group: Group,
        long: &'static str,
        value_name: &'static str,
        help: &'static str,
    ) -> Self {
        Self {
            flag: Some(Flag {
                long,
                value_name,
                help,
                group,
                kind: FlagKind::Value,
            }),
            ..self
        }
    }
}

impl Setting<bool> {
    /// With a flag `--long` that takes no value and means `1`.
    pub const fn switch(self, group: Group, long: &'static str, help: &'static str) -> Self {
        Self {
            flag: Some(Flag {
                long,
                value_name: "",
                help,
                group,
                kind: FlagKind::Switch,
            }),
            ..self
        }
    }
}

impl<X: 'static> Setting<Vec<X>> {
    /// With a flag `--long VALUE_NAME` that may be given many times, each value parsed like
    /// the variable's (a comma-separated list) and all of them concatenated.
    pub const fn repeated(
        self,
        group: Group,
        long: &'static str,
        value_name: &'static str,
        help: &'static str,
    ) -> Self {
        Self {
            flag: Some(Flag {
                long,
                value_name,
                help,
                group,
                kind: FlagKind::Repeated,
            }),
            join: Some(concat::<X>),
            ..self
        }
    }
}

fn concat<X>(parts: Vec<Vec<X>>) -> Vec<X> {
    parts.into_iter().flatten().collect()
}

/// Something that walks the table ([`visit_all`]): `cli` builds flags with one and reads
/// their values with another.
pub trait Visit {
    /// Called once per setting, in table order.
    fn visit<T: Clone + Send + Sync + 'static>(&mut self, setting: &'static Setting<T>);
}

/// Flag values, typed, keyed by the variable each overrides. Only [`Flags::set`] fills it, with
/// the value type of the setting it names, so [`Flags::get`] always finds that type.
#[derive(Clone, Default)]
pub struct Flags(BTreeMap<&'static str, Arc<dyn Any + Send + Sync>>);

impl Flags {
    /// Records the value a flag gave for `setting`.
    pub fn set<T: Send + Sync + 'static>(&mut self, setting: &Setting<T>, value: T) {
        self.0.insert(setting.var, Arc::new(value));
    }

    /// The value a flag gave for `setting`, if any.
    pub fn get<T: Clone + 'static>(&self, setting: &Setting<T>) -> Option<T> {
        self.0.get(setting.var)?.downcast_ref::<T>().cloned()
    }

    /// Adds every value of `other`, which wins where both have one.
    pub fn extend(&mut self, other: &Flags) {
        self.0
            .extend(other.0.iter().map(|(k, v)| (*k, Arc::clone(v))));
    }
}

/// Names the variables given, not their values.
impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Declares the settings (one row each: the constant, its value type, the variable, the
/// parser and the flag) and [`visit_all`] over exactly those rows.
macro_rules! settings {
    ($($(#[$doc:meta])* $name:ident: $ty:ty = $setting:expr;)*) => {
        $($(#[$doc])* pub const $name: Setting<$ty> = $setting;)*

        /// Calls `v` with every setting, in table order (the order `--help` lists flags in).
        pub fn visit_all(v: &mut impl Visit) {
            $(v.visit(&$name);)*
        }
    };
}

use Group::{App, Cache, Logging, Outputs, Platform, Schedule};

settings! {
    /// `PLATFORM_URL`, `--platform-url`.
    PLATFORM_URL: String = Setting::env(vars::PLATFORM_URL, parse::url)
        .flag(Platform, "platform-url", "URL", "Platform base URL");
    /// `WORKSPACE_ID`, `--workspace-id`.
    WORKSPACE_ID: String = Setting::env(vars::WORKSPACE_ID, parse::path_segment)
        .flag(Platform, "workspace-id", "ID",
            "Workspace ID (selects the workspace route)");
    /// `CONFIGS_DIR`, `--configs-dir`.
    CONFIGS_DIR: PathBuf = Setting::env(vars::CONFIGS_DIR, parse::path)
        .flag(Platform, "configs-dir", "DIR",
            "Directory holding .auth_token, the platform bearer");
    /// `MOLECULE_ORG_ID`, `--org-id`.
    ORG_ID: String = Setting::env(vars::MOLECULE_ORG_ID, parse::header_value)
        .flag(Platform, "org-id", "ID", "Organisation ID sent as X-Molecule-Org-Id");
    /// `MOLECULE_HTTP_TIMEOUT_SEC`, `--http-timeout-sec`.
    HTTP_TIMEOUT: Duration =
        Setting::env(vars::MOLECULE_HTTP_TIMEOUT_SEC, |v| parse::seconds(v, 1, 300))
        .flag(Platform, "http-timeout-sec", "SECS",
            "Whole budget of one platform call, in seconds");
    /// `MOLECULE_TOKEN_SOURCE`, `--token-source`.
    TOKEN_SOURCE: TokenSourceKind = Setting::env(vars::MOLECULE_TOKEN_SOURCE, parse::token_source)
        .flag(Platform, "token-source", "SOURCE", "platform, github-app or file");
    /// `MOLECULE_TOKEN_SOURCE_FILE`, `--token-source-file`.
    TOKEN_SOURCE_FILE: PathBuf = Setting::env(vars::MOLECULE_TOKEN_SOURCE_FILE, parse::path)
        .flag(Platform, "token-source-file", "FILE",
            "The token file another system keeps fresh, for the file source");
    /// `MOLECULE_GITHUB_APP_ID`, `--app-id`.
    APP_ID: Issuer = Setting::env(vars::MOLECULE_GITHUB_APP_ID, parse::app_id)
        .flag(App, "app-id", "ID", "GitHub App ID (or its client ID)");
    /// `MOLECULE_GITHUB_APP_CLIENT_ID`, `--app-client-id`.
    APP_CLIENT_ID: String = Setting::env(vars::MOLECULE_GITHUB_APP_CLIENT_ID, parse::client_id)
        .flag(App, "app-client-id", "ID", "GitHub App client ID (Iv…), the JWT's issuer");
    /// `MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE`, `--app-private-key-file`.
    APP_PRIVATE_KEY_FILE: PathBuf =
        Setting::env(vars::MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE, parse::path)
        .flag(App, "app-private-key-file", "FILE", "GitHub App private key (PEM)");
    /// `MOLECULE_GITHUB_APP_SIGNER`, `--app-signer`.
    APP_SIGNER: Secret<String> = Setting::env(vars::MOLECULE_GITHUB_APP_SIGNER, parse::command)
        .flag(App, "app-signer", "COMMAND",
            "Command that signs the App's JWT (sh -c; input on stdin), instead of a key file");
    /// `MOLECULE_GITHUB_APP_INSTALLATION_ID`, `--app-installation-id`.
    APP_INSTALLATION_ID: u64 =
        Setting::env(vars::MOLECULE_GITHUB_APP_INSTALLATION_ID, parse::number)
        .flag(App, "app-installation-id", "ID", "Default installation ID");
    /// `MOLECULE_GITHUB_APP_INSTALLATIONS`, `--app-installations`.
    APP_INSTALLATIONS: BTreeMap<String, u64> =
        Setting::env(vars::MOLECULE_GITHUB_APP_INSTALLATIONS, parse::installations)
        .flag(App, "app-installations", "MAP", "owner=id,owner=id installation map");
    /// `MOLECULE_GITHUB_API_URL`, `--github-api-url`.
    GITHUB_API_URL: String = Setting::env(vars::MOLECULE_GITHUB_API_URL, parse::url)
        .flag(App, "github-api-url", "URL", "GitHub API base URL");
    /// `MOLECULE_GITHUB_API_URLS`, `--github-api-urls`.
    GITHUB_API_URLS: BTreeMap<String, String> =
        Setting::env(vars::MOLECULE_GITHUB_API_URLS, parse::api_urls)
        .flag(App, "github-api-urls", "MAP", "host=url,host=url API base per git host");
    /// `MOLECULE_GITHUB_APP_REPOSITORIES`, `--app-repositories`.
    APP_REPOSITORIES: Vec<String> =
        Setting::env(vars::MOLECULE_GITHUB_APP_REPOSITORIES, parse::repositories)
        .flag(App, "app-repositories", "NAMES", "Narrow App tokens to these repositories");
    /// `MOLECULE_GITHUB_APP_PERMISSIONS`, `--app-permissions`.
    APP_PERMISSIONS: BTreeMap<String, String> =
        Setting::env(vars::MOLECULE_GITHUB_APP_PERMISSIONS, parse::permissions)
        .flag(App, "app-permissions", "MAP",
            "Narrow App tokens to these permissions, name=level,…");
    /// `MOLECULE_TOKEN_CACHE_DIR`, `--cache-dir`.
    CACHE_DIR: PathBuf = Setting::env(vars::MOLECULE_TOKEN_CACHE_DIR, parse::path)
        .flag(Cache, "cache-dir", "DIR", "Token cache directory");
    /// `MOLECULE_FALLBACK_TOKEN_FILE`, `--fallback-token-file`.
    FALLBACK_TOKEN_FILE: PathBuf = Setting::env(vars::MOLECULE_FALLBACK_TOKEN_FILE, parse::path)
        .flag(Cache, "fallback-token-file", "FILE", "Fallback token file");
    /// `MOLECULE_GIT_HOSTS`, `--hosts`.
    HOSTS: Vec<String> = Setting::env(vars::MOLECULE_GIT_HOSTS, parse::hosts)
        .flag(Cache, "hosts", "HOSTS", "Comma-separated hosts to answer for");
    /// `TOKEN_REFRESH_MARGIN_SEC`, `--margin-sec`.
    MARGIN: Duration =
        Setting::env(vars::TOKEN_REFRESH_MARGIN_SEC, |v| parse::seconds(v, 0, 3000))
        .flag(Cache, "margin-sec", "SECS",
            "Seconds before expiry at which a token is refreshed, not served");
    /// `MOLECULE_LOG`, `--log`.
    LOG: String = Setting::env(vars::MOLECULE_LOG, parse::log_filter)
        .flag(Logging, "log", "FILTER", "Log filter, e.g. debug");
    /// `MOLECULE_LOG_FORMAT`, `--log-format`.
    LOG_FORMAT: LogFormat = Setting::env(vars::MOLECULE_LOG_FORMAT, parse::log_format)
        .flag(Logging, "log-format", "FORMAT", "text or json");
    /// `TOKEN_REFRESH_INTERVAL_SEC`, `--interval-sec` (daemon).
    INTERVAL: Duration =
        Setting::env(vars::TOKEN_REFRESH_INTERVAL_SEC, |v| parse::seconds(v, 1, 86_400))
        .flag(Schedule, "interval-sec", "SECS", "Refresh interval in seconds");
    /// `TOKEN_REFRESH_JITTER_SEC`, `--jitter-sec` (daemon).
    JITTER: Duration =
        Setting::env(vars::TOKEN_REFRESH_JITTER_SEC, |v| parse::seconds(v, 0, 3600))
        .flag(Schedule, "jitter-sec", "SECS", "Uniform ± jitter in seconds");
    /// `TOKEN_REFRESH_INITIAL_DELAY_SEC`, `--initial-delay-sec` (daemon).
    INITIAL_DELAY: Duration =
        Setting::env(vars::TOKEN_REFRESH_INITIAL_DELAY_SEC, |v| parse::seconds(v, 0, 86_400))
        .flag(Schedule, "initial-delay-sec", "SECS",
            "First wait when the cache is fresh, in seconds");
    /// `MOLECULE_TOKEN_SINKS`, `--sink` (daemon, repeatable).
    SINKS: Vec<crate::sink::Spec> = Setting::env(vars::MOLECULE_TOKEN_SINKS, parse::sinks)
        .repeated(Outputs, "sink", "FORMAT[@HOST[/OWNER]]:PATH",
            "A file to keep holding the token (raw, json, header or env); repeatable");
    /// `MOLECULE_TOKEN_SINK_GROUP`, `--sink-group` (daemon).
    SINK_GROUP: String = Setting::env(vars::MOLECULE_TOKEN_SINK_GROUP, parse::group)
        .flag(Outputs, "sink-group", "GROUP", "Group that may read the sinks (mode 0640)");
    /// `MOLECULE_METRICS_FILE`, `--metrics-file` (daemon).
    METRICS_FILE: PathBuf = Setting::env(vars::MOLECULE_METRICS_FILE, parse::path)
        .flag(Outputs, "metrics-file", "FILE",
            "Prometheus textfile (default <cache dir>/metrics.prom; the variable set empty disables it)");
    /// `MOLECULE_METRICS_LISTEN`, `--metrics-listen` (daemon).
    METRICS_LISTEN: std::net::SocketAddr =
        Setting::env(vars::MOLECULE_METRICS_LISTEN, parse::socket_addr)
        .flag(Outputs, "metrics-listen", "ADDR:PORT", "Serve /metrics at this address");
    /// `MOLECULE_REVOKE_ON_EXIT`, `--revoke-on-exit` (daemon).
    REVOKE_ON_EXIT: bool = Setting::env(vars::MOLECULE_REVOKE_ON_EXIT, parse::switch)
        .switch(Schedule, "revoke-on-exit",
            "Revoke the App tokens this daemon minted when it stops");
}
