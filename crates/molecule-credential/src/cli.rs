//! Command-line flags that override configuration variables, shared by both binaries so a
//! flag means the same everywhere. Each flag maps to the variable it overrides.

use std::io::Write;

use crate::config::{Overrides, vars};
use crate::logging::redact;

/// Prints clap's message (help, version, or a usage error) with token-shaped arguments
/// redacted: clap quotes what it could not parse, and argv may hold a token. Returns the exit
/// code clap would use.
pub fn print_clap_error(e: &clap::Error) -> u8 {
    let text = e.render().to_string();
    let text = redact(&text);
    if e.use_stderr() {
        let _ = std::io::stderr().write_all(text.as_bytes());
        2
    } else {
        let _ = std::io::stdout().write_all(text.as_bytes());
        0
    }
}

/// `--help` headings for the shared flags: each command lists its own options first, then
/// these groups (as cargo and uv do).
const PLATFORM: &str = "Platform";
const APP: &str = "GitHub App";
const CACHE: &str = "Cache and hosts";
const LOGGING: &str = "Logging";
const SCHEDULE: &str = "Schedule";

/// Flags of the same meaning as the environment variables of DESIGN.md; a flag beats its
/// variable.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ConfigArgs {
    /// Platform base URL [env: PLATFORM_URL]
    #[arg(long, global = true, help_heading = PLATFORM, value_name = "URL")]
    pub platform_url: Option<String>,
    /// Workspace ID (selects the workspace route) [env: WORKSPACE_ID]
    #[arg(long, global = true, help_heading = PLATFORM, value_name = "ID")]
    pub workspace_id: Option<String>,
    /// Directory holding .auth_token, the platform bearer [env: CONFIGS_DIR]
    #[arg(long, global = true, help_heading = PLATFORM, value_name = "DIR")]
    pub configs_dir: Option<String>,
    /// Organisation ID sent as X-Molecule-Org-Id [env: MOLECULE_ORG_ID]
    #[arg(long, global = true, help_heading = PLATFORM, value_name = "ID")]
    pub org_id: Option<String>,
    /// Whole budget of one platform call, in seconds [env: MOLECULE_HTTP_TIMEOUT_SEC]
    #[arg(long, global = true, help_heading = PLATFORM, value_name = "SECS")]
    pub http_timeout_sec: Option<String>,
    /// platform or github-app [env: MOLECULE_TOKEN_SOURCE]
    #[arg(long, global = true, help_heading = PLATFORM, value_name = "SOURCE")]
    pub token_source: Option<String>,
    /// GitHub App ID [env: MOLECULE_GITHUB_APP_ID]
    #[arg(long, global = true, help_heading = APP, value_name = "ID")]
    pub app_id: Option<String>,
    /// GitHub App private key (PEM) [env: MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE]
    #[arg(long, global = true, help_heading = APP, value_name = "FILE")]
    pub app_private_key_file: Option<String>,
    /// Default installation ID [env: MOLECULE_GITHUB_APP_INSTALLATION_ID]
    #[arg(long, global = true, help_heading = APP, value_name = "ID")]
    pub app_installation_id: Option<String>,
    /// owner=id,owner=id installation map [env: MOLECULE_GITHUB_APP_INSTALLATIONS]
    #[arg(long, global = true, help_heading = APP, value_name = "MAP")]
    pub app_installations: Option<String>,
    /// GitHub API base URL [env: MOLECULE_GITHUB_API_URL]
    #[arg(long, global = true, help_heading = APP, value_name = "URL")]
    pub github_api_url: Option<String>,
    /// host=url,host=url API base per git host [env: MOLECULE_GITHUB_API_URLS]
    #[arg(long, global = true, help_heading = APP, value_name = "MAP")]
    pub github_api_urls: Option<String>,
    /// Narrow App tokens to these repositories [env: MOLECULE_GITHUB_APP_REPOSITORIES]
    #[arg(long, global = true, help_heading = APP, value_name = "NAMES")]
    pub app_repositories: Option<String>,
    /// Narrow App tokens to these permissions, name=level,… [env: MOLECULE_GITHUB_APP_PERMISSIONS]
    #[arg(long, global = true, help_heading = APP, value_name = "MAP")]
    pub app_permissions: Option<String>,
    /// Token cache directory [env: MOLECULE_TOKEN_CACHE_DIR]
    #[arg(long, global = true, help_heading = CACHE, value_name = "DIR")]
    pub cache_dir: Option<String>,
    /// Fallback token file [env: MOLECULE_FALLBACK_TOKEN_FILE]
    #[arg(long, global = true, help_heading = CACHE, value_name = "FILE")]
    pub fallback_token_file: Option<String>,
    /// Comma-separated hosts to answer for [env: MOLECULE_GIT_HOSTS]
    #[arg(long, global = true, help_heading = CACHE, value_name = "HOSTS")]
    pub hosts: Option<String>,
    /// Seconds before expiry at which a token is refreshed, not served [env: TOKEN_REFRESH_MARGIN_SEC]
    #[arg(long, global = true, help_heading = CACHE, value_name = "SECS")]
    pub margin_sec: Option<String>,
    /// Log filter, e.g. debug [env: MOLECULE_LOG]
    #[arg(long, global = true, help_heading = LOGGING, value_name = "FILTER")]
    pub log: Option<String>,
    /// text or json [env: MOLECULE_LOG_FORMAT]
    #[arg(long, global = true, help_heading = LOGGING, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

/// Flags only the daemon has.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ScheduleArgs {
    /// Refresh interval in seconds [env: TOKEN_REFRESH_INTERVAL_SEC]
    #[arg(long, global = true, help_heading = SCHEDULE, value_name = "SECS")]
    pub interval_sec: Option<String>,
    /// Uniform ± jitter in seconds [env: TOKEN_REFRESH_JITTER_SEC]
    #[arg(long, global = true, help_heading = SCHEDULE, value_name = "SECS")]
    pub jitter_sec: Option<String>,
    /// First wait when the cache is fresh, in seconds [env: TOKEN_REFRESH_INITIAL_DELAY_SEC]
    #[arg(long, global = true, help_heading = SCHEDULE, value_name = "SECS")]
    pub initial_delay_sec: Option<String>,
    /// Revoke the App tokens this daemon minted when it stops [env: MOLECULE_REVOKE_ON_EXIT]
    #[arg(long, global = true, help_heading = SCHEDULE)]
    pub revoke_on_exit: bool,
}

impl ConfigArgs {
    /// The overrides these flags make. Destructured whole so a new flag cannot be forgotten.
    pub fn overrides(&self) -> Overrides {
        let ConfigArgs {
            platform_url,
            workspace_id,
            configs_dir,
            org_id,
            cache_dir,
            fallback_token_file,
            hosts,
            margin_sec,
            http_timeout_sec,
            log,
            log_format,
            token_source,
            app_id,
            app_private_key_file,
            app_installation_id,
            app_installations,
            github_api_url,
            github_api_urls,
            app_repositories,
            app_permissions,
        } = self.clone();
        let mut o = Overrides::default();
        o.set(vars::PLATFORM_URL, platform_url)
            .set(vars::WORKSPACE_ID, workspace_id)
            .set(vars::CONFIGS_DIR, configs_dir)
            .set(vars::MOLECULE_ORG_ID, org_id)
            .set(vars::MOLECULE_TOKEN_CACHE_DIR, cache_dir)
            .set(vars::MOLECULE_FALLBACK_TOKEN_FILE, fallback_token_file)
            .set(vars::MOLECULE_GIT_HOSTS, hosts)
            .set(vars::TOKEN_REFRESH_MARGIN_SEC, margin_sec)
            .set(vars::MOLECULE_HTTP_TIMEOUT_SEC, http_timeout_sec)
            .set(vars::MOLECULE_LOG, log)
            .set(vars::MOLECULE_LOG_FORMAT, log_format)
            .set(vars::MOLECULE_TOKEN_SOURCE, token_source)
            .set(vars::MOLECULE_GITHUB_APP_ID, app_id)
            .set(
                vars::MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE,
                app_private_key_file,
            )
            .set(
                vars::MOLECULE_GITHUB_APP_INSTALLATION_ID,
                app_installation_id,
            )
            .set(vars::MOLECULE_GITHUB_APP_INSTALLATIONS, app_installations)
            .set(vars::MOLECULE_GITHUB_API_URL, github_api_url)
            .set(vars::MOLECULE_GITHUB_API_URLS, github_api_urls)
            .set(vars::MOLECULE_GITHUB_APP_REPOSITORIES, app_repositories)
            .set(vars::MOLECULE_GITHUB_APP_PERMISSIONS, app_permissions);
        o
    }
}

impl ScheduleArgs {
    /// Adds the daemon's overrides to `o`.
    pub fn add_overrides(&self, o: &mut Overrides) {
        let ScheduleArgs {
            interval_sec,
            jitter_sec,
            initial_delay_sec,
            revoke_on_exit,
        } = self.clone();
        o.set(vars::TOKEN_REFRESH_INTERVAL_SEC, interval_sec)
            .set(vars::TOKEN_REFRESH_JITTER_SEC, jitter_sec)
            .set(vars::TOKEN_REFRESH_INITIAL_DELAY_SEC, initial_delay_sec)
            .set(vars::MOLECULE_REVOKE_ON_EXIT, revoke_on_exit.then_some("1"));
    }
}
