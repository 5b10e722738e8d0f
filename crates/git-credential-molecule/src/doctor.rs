//! `doctor`: checks a setup end to end, and names for every problem the command that fixes it.
//!
//! - The helpers git will ask for each host, in order (git's own rule replayed on
//!   `git config --get-regexp`: config order, URL patterns, an empty value resets), and
//!   whether another helper answers before ours or can store our token.
//! - How git starts ours (`helper_path`): an absolute path that must be an executable file,
//!   or the slower lookup form `molecule`.
//! - `credential.useHttpPath`, where the `github-app` source routes by owner.
//! - The git version, and which parts of the credential protocol it speaks.
//! - What bypasses the helper (`bypass`): credentials in remote URLs, `insteadOf` and
//!   `extraHeader`, an askpass program, a repository-local helper, gh's stored token, token
//!   variables exported for tools that read them instead of asking.
//! - The token source: the platform bearer, or the App's key (and whether GitHub accepts its
//!   JWT), and the clock skew against that server's `Date`.
//! - The cache directory, each host's token and its time to expiry, the daemon's last outcome.
//!
//! Each finding has a level: `ok`, `advice` (works, but could be better; never changes the exit
//! code) or `problem`. No finding shows a token: a fingerprint
//! ([`molecule_credential::Secret::fingerprint`]) at most, and URLs with their userinfo
//! replaced by `***`.

mod bypass;
mod helper_path;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use molecule_credential::cache::Document;
use molecule_credential::child;
use molecule_credential::clock::{Clock, SystemClock};
use molecule_credential::config::{Config, TokenSourceKind};
use molecule_credential::file_source::FileSource;
use molecule_credential::github_app::AppClient;
use molecule_credential::http::Tls;
use molecule_credential::platform::read_bearer;
use molecule_credential::status::{DaemonStatus, assess};
use molecule_credential::store::CacheDir;
use molecule_credential::{Class, Error};
use serde::Serialize;
use time::OffsetDateTime;

use crate::configure::{HELPER, HelperProgram, helper_program, use_http_path_key};

/// How long doctor waits for any server.
const DOCTOR_TIMEOUT: Duration = Duration::from_secs(5);
use crate::commands::human_secs;
use crate::write_error;

/// `doctor` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, and could be better: reported with its fix, never counted as a problem.
    Advice,
    /// Broken, or bypassing the helper: counted, and doctor exits 1.
    Problem,
}

/// One finding.
#[derive(Debug, Serialize)]
pub struct Finding {
    /// What was checked (`git`, `helpers`, `useHttpPath`, …).
    pub check: &'static str,
    /// The host it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// How much it matters.
    pub level: Level,
    /// Whether it is no problem (`level` is not `problem`): kept for readers of the JSON from
    /// before `level`.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// The command that fixes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// A helper git will ask, with where it was configured.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Helper {
    /// The `credential.helper` value.
    pub value: String,
    /// `file:…` and scope, as git reports them.
    pub origin: String,
}

/// The report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `git --version`'s version.
    pub git_version: Option<String>,
    /// For each host, the helpers git will ask, in order.
    pub helpers: Vec<(String, Vec<Helper>)>,
    /// Everything checked.
    pub findings: Vec<Finding>,
    /// How many findings are problems.
    pub problems: usize,
    /// How many findings are advice.
    pub advice: usize,
}

/// One `credential.*` config entry, as git lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// `global`, `system`, `local`, `command`, …
    pub scope: String,
    /// `file:/path` and so on.
    pub origin: String,
    /// `credential.<url>.helper` with the variable lower-cased, subsection as written.
    pub key: String,
    /// The value (`None` for a key without `=`).
    pub value: Option<String>,
}

/// Parses `git config --null --show-origin --show-scope --get-regexp`.
pub fn parse_config_listing(raw: &[u8]) -> Vec<ConfigEntry> {
    let text = String::from_utf8_lossy(raw);
    let mut fields = text.split('\0');
    let mut out = Vec::new();
    while let (Some(scope), Some(origin), Some(kv)) = (fields.next(), fields.next(), fields.next())
    {
        if scope.is_empty() {
            break;
        }
        let (key, value) = match kv.split_once('\n') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (kv.to_owned(), None),
        };
        out.push(ConfigEntry {
            scope: scope.into(),
            origin: origin.into(),
            key,
            value,
        });
    }
    out
}

/// The URL pattern and variable of a `credential.*` key: `credential.https://x.helper` →
/// (`https://x`, `helper`); `credential.helper` → (``, `helper`).
fn split_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("credential.")?;
    Some(rest.rsplit_once('.').unwrap_or(("", rest)))
}

/// Whether a `credential.<pattern>.*` entry applies to `https://host` (no path), the way git's
/// urlmatch decides: scheme if given, host case-insensitively (a leading `*.` matches one
/// label), port (443 unless given). Patterns with a user or a path apply only to requests
/// with those, which a host-level lookup is not.
pub fn pattern_matches(pattern: &str, host: &str) -> bool {
    if pattern.is_empty() {
        return true;
    }
    let (scheme, rest) = match pattern.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, pattern),
    };
    if scheme.is_some_and(|s| !s.eq_ignore_ascii_case("https")) {
        return false;
    }
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') || authority.contains('@') {
        return false;
    }
    let split_port = |h: &str| -> (String, String) {
        match h.rsplit_once(':') {
            Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() => {
                (n.to_ascii_lowercase(), p.to_owned())
            }
            _ => (h.to_ascii_lowercase(), "443".to_owned()),
        }
    };
    let (want_name, want_port) = split_port(host);
    let (pat_name, pat_port) = split_port(authority);
    if want_port != pat_port {
        return false;
    }
    match pat_name.strip_prefix("*.") {
        Some(suffix) => want_name
            .split_once('.')
            .is_some_and(|(label, tail)| !label.is_empty() && tail == suffix),
        None => pat_name == want_name,
    }
}

/// The helpers git asks for `host`, in order: entries whose pattern matches, an empty value
/// clearing what came before.
pub fn helpers_for(entries: &[ConfigEntry], host: &str) -> Vec<Helper> {
    let mut list = Vec::new();
    for e in entries {
        let Some((pattern, var)) = split_key(&e.key) else {
            continue;
        };
        if var != "helper" || !pattern_matches(pattern, host) {
            continue;
        }
        match e.value.as_deref() {
            None | Some("") => list.clear(),
            Some(v) => list.push(Helper {
                value: v.to_owned(),
                origin: format!("{} {}", e.scope, e.origin),
            }),
        }
    }
    list
}

/// Whether `credential.useHttpPath` is on for `host` (the last matching entry wins).
pub fn use_http_path(entries: &[ConfigEntry], host: &str) -> bool {
    entries
        .iter()
        .filter_map(|e| {
            let (pattern, var) = split_key(&e.key)?;
            (var == "usehttppath" && pattern_matches(pattern, host)).then_some(e)
        })
        .next_back()
        .is_some_and(|e| {
            matches!(
                e.value.as_deref().map(str::to_ascii_lowercase).as_deref(),
                None | Some("true" | "yes" | "on" | "1")
            )
        })
}

/// Whether a helper value runs this helper: the lookup form `molecule`, or a path (bare or in a
/// `!` command, quoted or not) whose file name is this binary's.
pub fn is_ours(value: &str) -> bool {
    match helper_program(value) {
        Some(HelperProgram::Lookup(name)) => name == HELPER,
        Some(HelperProgram::Path(path)) => path.file_name() == Some(crate::NAME.as_ref()),
        Some(HelperProgram::Shell(word)) => word.rsplit('/').next() == Some(crate::NAME),
        None => false,
    }
}

/// `(major, minor)` of `git version 2.47.3`.
pub fn parse_git_version(s: &str) -> Option<(u32, u32)> {
    let v = s.trim().strip_prefix("git version ")?;
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn run_git(args: &[&str]) -> Option<child::Output> {
    let mut cmd = Command::new("git");
    cmd.args(args);
    molecule_credential::block_on(child::run(cmd, None, Duration::from_secs(10), "git"))
        .ok()?
        .ok()
}

/// The server's clock minus ours, from the `Date` of a GET to `url` (any status will do).
fn skew_against(url: &str) -> Result<time::Duration, Error> {
    let timeout = DOCTOR_TIMEOUT;
    let client = molecule_credential::http::client(timeout, Tls::for_url(url))?;
    let response = molecule_credential::block_on(molecule_credential::http::send(
        client.get(url),
        url,
        timeout,
    ))??;
    let date = response
        .date
        .ok_or_else(|| Error::new(Class::Protocol, "the answer had no Date header"))?;
    Ok(date - SystemClock.now())
}

struct Findings(Vec<Finding>);

impl Findings {
    fn push(
        &mut self,
        level: Level,
        check: &'static str,
        host: Option<&str>,
        detail: String,
        fix: Option<String>,
    ) {
        self.0.push(Finding {
            check,
            host: host.map(str::to_owned),
            level,
            ok: level != Level::Problem,
            detail,
            fix,
        });
    }

    fn ok(&mut self, check: &'static str, host: Option<&str>, detail: String) {
        self.push(Level::Ok, check, host, detail, None);
    }

    fn advice(&mut self, check: &'static str, host: Option<&str>, detail: String, fix: String) {
        self.push(Level::Advice, check, host, detail, Some(fix));
    }

    fn problem(&mut self, check: &'static str, host: Option<&str>, detail: String, fix: String) {
        self.push(Level::Problem, check, host, detail, Some(fix));
    }
}

/// Runs every check.
pub fn diagnose(config: &Config) -> Report {
    let mut f = Findings(Vec::new());
    let now = SystemClock.now();

    // git itself.
    let version =
        run_git(&["--version"]).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let parsed = version.as_deref().and_then(parse_git_version);
    match parsed {
        None => f.problem("git", None, "git is not installed or did not answer --version".into(), "install git (apt-get install git)".into()),
        Some(v) if v < (2, 41) => f.problem(
            "git",
            None,
            format!("git {}.{} ignores password_expiry_utc: a storage helper could replay an expired token", v.0, v.1),
            "upgrade git to 2.41 or later (2.46 or later to keep storage helpers from storing tokens at all)".into(),
        ),
        Some(v) if v < (2, 46) => f.ok(
            "git",
            None,
            format!("git {}.{}: password_expiry_utc and wwwauth[]; no authtype capability, so a storage helper after ours could store a token until its expiry", v.0, v.1),
        ),
        Some(v) => f.ok(
            "git",
            None,
            format!("git {}.{}: password_expiry_utc, wwwauth[], and capability[]=authtype (answers are ephemeral: storage helpers keep nothing)", v.0, v.1),
        ),
    }

    // The helpers git will ask, and everything else in git's configuration that decides which
    // credential git sends: one listing, in git's own order (system, global, local, worktree,
    // command line).
    let listing = run_git(&[
        "config",
        "--null",
        "--show-origin",
        "--show-scope",
        "--get-regexp",
        r"^(credential|url|http|remote)\.|^core\.askpass$",
    ])
    .map(|o| parse_config_listing(&o.stdout))
    .unwrap_or_default();
    let mut helper_lists = Vec::new();
    let mut paths = helper_path::Checker::default();
    for host in &config.hosts {
        // What git asks in this repository, and what it would ask without the repository's
        // own helper entries: those are reported, with their fix, as bypasses.
        let effective = helpers_for(&listing, host);
        let overrides = bypass::local_overrides(&listing, host);
        let configured: Vec<ConfigEntry> = listing
            .iter()
            .filter(|e| !overrides.iter().any(|o| std::ptr::eq(*o, *e)))
            .cloned()
            .collect();
        let list = helpers_for(&configured, host);
        let fix = format!("git-credential-molecule configure --host {host}");
        match list.iter().position(|h| is_ours(&h.value)) {
            None => f.problem(
                "helpers",
                Some(host),
                if list.is_empty() {
                    "git asks no credential helper: it will prompt, or fail".into()
                } else {
                    format!("git never asks git-credential-molecule; it asks {}", describe(&list))
                },
                fix,
            ),
            Some(0) if list.len() == 1 => f.ok(
                "helpers",
                Some(host),
                format!(
                    "git asks git-credential-molecule only ({}){}",
                    list[0].origin,
                    if overrides.is_empty() { "" } else { ", except in this repository (localHelper)" }
                ),
            ),
            Some(0) => f.problem(
                "helpers",
                Some(host),
                format!(
                    "after git-credential-molecule git also asks {}: if ours fails they answer with whatever they stored{}",
                    describe(&list[1..]),
                    if parsed.is_some_and(|v| v < (2, 46)) { ", and they are sent our token to store" } else { "" }
                ),
                fix,
            ),
            Some(_) => f.problem(
                "helpers",
                Some(host),
                format!("{} answers before git-credential-molecule and can replay a stale token", describe(&list[..1])),
                fix,
            ),
        }
        if let Some(ours) = list.iter().find(|h| is_ours(&h.value)) {
            paths.check(host, ours, &mut f);
        }
        helper_lists.push((host.clone(), effective));

        if config.token_source == TokenSourceKind::GithubApp {
            let routes = !config.github_app.installations.is_empty()
                || config.github_app.installation_id.is_none();
            match (use_http_path(&listing, host), routes) {
                (true, _) => f.ok("useHttpPath", Some(host), "git sends the repository path: the owner selects the installation".into()),
                (false, true) => f.problem(
                    "useHttpPath",
                    Some(host),
                    "credential.useHttpPath is off: git does not send the repository owner, so every repository gets the default installation's token".into(),
                    format!("git config --global {} true", use_http_path_key(host)),
                ),
                (false, false) => f.ok("useHttpPath", Some(host), "off: every repository uses the default installation".into()),
            }
        }
    }

    // The cache is read once, here: the bypass checks compare gh's token with it.
    let cache = CacheDir::open_existing(&config.cache_dir);
    let doc = match &cache {
        Ok(Some(c)) => Some(c.read().unwrap_or_default()),
        _ => None,
    };

    // What makes git or gh send a credential other than ours.
    bypass::check(config, &listing, doc.as_ref(), now, &mut f);

    // The token source, and the clock against its server.
    let skew_of = |url: &str, f: &mut Findings| match skew_against(url) {
        Ok(skew) if skew.whole_seconds().abs() > 60 => f.problem(
            "clock",
            None,
            format!(
                "this clock is {}s {} {url}'s: expiry times and JWTs are judged wrongly",
                skew.whole_seconds().abs(),
                if skew.is_positive() {
                    "behind"
                } else {
                    "ahead of"
                }
            ),
            "sync the clock (chronyd, systemd-timesyncd or ntpd)".into(),
        ),
        Ok(skew) => f.ok(
            "clock",
            None,
            format!("within {}s of {url}", skew.whole_seconds().abs()),
        ),
        Err(e) => f.problem(
            "clock",
            None,
            format!("cannot reach {url} to compare clocks: {e}"),
            "check the URL and the network path to it".into(),
        ),
    };
    match config.token_source {
        TokenSourceKind::Platform => {
            match read_bearer(&config.configs_dir) {
                Ok(_) => f.ok(
                    "source",
                    None,
                    format!(
                        "platform {} with a bearer from {}",
                        config.platform_url,
                        config.configs_dir.join(".auth_token").display()
                    ),
                ),
                Err(e) => f.problem(
                    "source",
                    None,
                    e.to_string(),
                    format!(
                        "write the platform bearer to {} (one line)",
                        config.configs_dir.join(".auth_token").display()
                    ),
                ),
            }
            skew_of(&config.platform_url, &mut f);
        }
        TokenSourceKind::GithubApp => {
            let app = &config.github_app;
            match (app.app_id, app.private_key_file.as_deref()) {
                (Some(id), Some(path)) => {
                    // The library's own client, as the helper and the daemon use it, with a
                    // doctor's shorter patience.
                    let patient = Config {
                        http_timeout: config.http_timeout.min(DOCTOR_TIMEOUT),
                        ..config.clone()
                    };
                    match AppClient::new(&patient) {
                        Ok(client) => {
                            f.ok("source", None, format!("GitHub App {id}, key {}", path.display()));
                            for host in &config.hosts {
                                check_app(&client, &app.api_base(host), host, &mut f);
                            }
                        }
                        Err(e) => f.problem("source", None, e.to_string(), "point MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE at the App's PEM key, readable by you alone (Settings → Developer settings → GitHub Apps → Private keys)".into()),
                    }
                }
                _ => f.problem(
                    "source",
                    None,
                    "MOLECULE_TOKEN_SOURCE=github-app needs MOLECULE_GITHUB_APP_ID and MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE".into(),
                    "export MOLECULE_GITHUB_APP_ID=<the App's ID> MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE=<its PEM key>".into(),
                ),
            }
        }
        TokenSourceKind::File => check_file_source(config, now, &mut f),
    }

    // The cache, the tokens, the daemon.
    match cache {
        Err(e) => f.problem(
            "cache",
            None,
            e.to_string(),
            format!(
                "chmod 700 {0}; chmod 600 {0}/*  (or remove it: it is recreated)",
                config.cache_dir.display()
            ),
        ),
        Ok(None) => f.ok(
            "cache",
            None,
            format!(
                "{} does not exist yet: the first git operation creates it",
                config.cache_dir.display()
            ),
        ),
        Ok(Some(cache)) => {
            let doc = doc.unwrap_or_default();
            tokens(config, &doc, now, &mut f);
            match DaemonStatus::read(&cache) {
                Ok(status) => {
                    let problems = assess(config, status.as_ref(), &doc, now);
                    if problems.is_empty() {
                        f.ok(
                            "daemon",
                            None,
                            "gh-token-refresh is running and its last refresh succeeded".into(),
                        );
                    }
                    for p in problems {
                        f.problem("daemon", None, p, "start gh-token-refresh (scripts/entrypoint.sh does; or systemctl --user enable --now gh-token-refresh), and see its log".into());
                    }
                }
                Err(e) => f.problem(
                    "daemon",
                    None,
                    e.to_string(),
                    format!(
                        "remove {}/daemon.status.json; the daemon rewrites it",
                        config.cache_dir.display()
                    ),
                ),
            }
        }
    }

    let count = |level| f.0.iter().filter(|x| x.level == level).count();
    let (problems, advice) = (count(Level::Problem), count(Level::Advice));
    Report {
        git_version: version,
        helpers: helper_lists,
        findings: f.0,
        problems,
        advice,
    }
}

fn tokens(config: &Config, doc: &Document, now: OffsetDateTime, f: &mut Findings) {
    for target in molecule_credential::route::refresh_targets(config, doc) {
        let key = target.key();
        match doc.entries.get(&key) {
            None => f.ok("token", Some(&key), "none cached yet".into()),
            Some(e) if e.suspect => f.ok(
                "token",
                Some(&key),
                "a server rejected the cached token: the next git operation fetches another".into(),
            ),
            Some(e) => {
                let left = (e.expires_at - now).whole_seconds();
                f.ok(
                    "token",
                    Some(&key),
                    format!(
                        "{} token, {} bytes, expires in {}",
                        e.source,
                        e.token.len(),
                        crate::commands::human_secs(left)
                    ),
                );
            }
        }
    }
}

/// Asks GitHub whether it accepts the App's JWT (`GET /app`), and compares clocks.
/// The file source: set, readable, parseable, and holding a token with time left.
fn check_file_source(config: &Config, now: OffsetDateTime, f: &mut Findings) {
    let source = match FileSource::new(config.token_source_file.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            return f.problem(
                "source",
                None,
                e.to_string(),
                "export MOLECULE_TOKEN_SOURCE_FILE=<the file another system keeps the token in>"
                    .into(),
            );
        }
    };
    let path = source.path().display().to_string();
    match source.parse(now) {
        Ok(minted) => {
            let left = (minted.expires_at - now).whole_seconds();
            let expiry = if minted.expiry_known {
                format!("expires in {}", human_secs(left))
            } else {
                "a bare token: its expiry is unknown, so it is cached for 10 minutes at a time"
                    .to_owned()
            };
            let detail = format!("token file {path}: {expiry}");
            if minted.expiry_known && left <= config.margin.as_secs() as i64 {
                f.problem(
                    "source",
                    None,
                    format!("{detail}, inside the {}s margin: whatever writes it has not rotated it", config.margin.as_secs()),
                    format!("check what keeps {path} fresh (its refresh interval must be shorter than the token's life)"),
                );
            } else {
                f.ok("source", None, detail);
            }
        }
        Err(e) => f.problem(
            "source",
            None,
            e.to_string(),
            format!("provision {path} with {{\"token\":…,\"expires_at\":…}} or a bare token (see docs/consumers.md)"),
        ),
    }
}

fn check_app(client: &AppClient, api: &str, host: &str, f: &mut Findings) {
    let result =
        molecule_credential::block_on(client.check(api, || SystemClock.now())).and_then(|r| r);
    match result {
        Ok((200, date)) => {
            f.ok("source", Some(host), format!("{api} accepts the App's JWT"));
            if let Some(d) = date {
                let skew = d - SystemClock.now();
                if skew.whole_seconds().abs() > 60 {
                    f.problem("clock", Some(host), format!("this clock is {}s off {api}'s: JWTs are re-timed on the server's clock, but expiries are judged on ours", skew.whole_seconds().abs()), "sync the clock (chronyd, systemd-timesyncd or ntpd)".into());
                } else {
                    f.ok("clock", Some(host), format!("within {}s of {api}", skew.whole_seconds().abs()));
                }
            }
        }
        Ok((status, _)) => f.problem(
            "source",
            Some(host),
            format!("{api} refused the App's JWT (http {status})"),
            "check MOLECULE_GITHUB_APP_ID against the key, and MOLECULE_GITHUB_API_URL(S) for this host".into(),
        ),
        Err(e) => f.problem("source", Some(host), format!("cannot reach {api}: {e}"), "check MOLECULE_GITHUB_API_URL(S) and the network path".into()),
    }
}

fn describe(list: &[Helper]) -> String {
    list.iter()
        .map(|h| format!("`{}` ({})", h.value, h.origin))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints the report; exit 0 without problems (advice does not count), 1 with.
pub fn run(config: &Config, args: &Args, out: &mut dyn Write) -> Result<u8, Error> {
    let report = diagnose(config);
    let text = if args.json {
        serde_json::to_string_pretty(&report).expect("the report serialises") + "\n"
    } else {
        let mut s = String::new();
        for x in &report.findings {
            let mark = match x.level {
                Level::Ok => "ok ",
                Level::Advice => "TIP",
                Level::Problem => "FIX",
            };
            let host = x
                .host
                .as_deref()
                .map(|h| format!("{h}: "))
                .unwrap_or_default();
            s.push_str(&format!("{mark} {:<11} {host}{}\n", x.check, x.detail));
            if let Some(fix) = &x.fix {
                s.push_str(&format!("    fix: {fix}\n"));
            }
        }
        s.push_str(&match report.problems {
            0 => "no problems found".to_owned(),
            1 => "1 problem found".to_owned(),
            n => format!("{n} problems found"),
        });
        s.push_str(&match report.advice {
            0 => "\n".to_owned(),
            1 => ", 1 tip\n".to_owned(),
            n => format!(", {n} tips\n"),
        });
        s
    };
    // No finding carries a token by construction; the redactor is the second line of
    // defence, as it is for logs.
    out.write_all(molecule_credential::logging::redact(&text).as_bytes())
        .map_err(|e| write_error(&e))?;
    Ok(u8::from(report.problems > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(scope: &str, key: &str, value: &str) -> ConfigEntry {
        ConfigEntry {
            scope: scope.into(),
            origin: "file:/x".into(),
            key: key.into(),
            value: Some(value.into()),
        }
    }

    #[test]
    fn parses_gits_null_listing() {
        let raw = b"global\0file:/h/.gitconfig\0credential.helper\nstore\0global\0file:/h/.gitconfig\0credential.https://github.com.helper\n\0global\0file:/h/.gitconfig\0credential.https://GitHub.com.usehttppath\ntrue\0";
        let e = parse_config_listing(raw);
        assert_eq!(e.len(), 3);
        assert_eq!(e[1].key, "credential.https://github.com.helper");
        assert_eq!(e[1].value.as_deref(), Some(""));
        assert_eq!(e[2].value.as_deref(), Some("true"));
    }

    #[test]
    fn url_patterns_match_like_git() {
        assert!(pattern_matches("", "github.com"));
        assert!(pattern_matches("https://github.com", "github.com"));
        assert!(pattern_matches("https://GitHub.com/", "github.com"));
        assert!(pattern_matches("github.com", "github.com"));
        assert!(pattern_matches("https://github.com:443", "github.com"));
        assert!(pattern_matches("https://*.example.com", "ghe.example.com"));
        assert!(!pattern_matches("https://*.example.com", "a.b.example.com"));
        assert!(!pattern_matches("http://github.com", "github.com"));
        assert!(!pattern_matches("https://github.com:8443", "github.com"));
        assert!(pattern_matches("https://ghe.corp:8443", "ghe.corp:8443"));
        assert!(
            !pattern_matches("https://github.com/acme", "github.com"),
            "path patterns need a path"
        );
        assert!(!pattern_matches("https://evilgithub.com", "github.com"));
    }

    #[test]
    fn helper_order_follows_config_order_and_resets() {
        let entries = vec![
            entry("system", "credential.helper", "cache"),
            entry("global", "credential.helper", "store"),
            entry("global", "credential.https://github.com.helper", ""),
            entry("global", "credential.https://github.com.helper", "molecule"),
            entry("local", "credential.helper", "!gh auth git-credential"),
        ];
        let list: Vec<String> = helpers_for(&entries, "github.com")
            .into_iter()
            .map(|h| h.value)
            .collect();
        assert_eq!(list, ["molecule", "!gh auth git-credential"]);
        let other: Vec<String> = helpers_for(&entries, "gitlab.com")
            .into_iter()
            .map(|h| h.value)
            .collect();
        assert_eq!(other, ["cache", "store", "!gh auth git-credential"]);
    }

    #[test]
    fn recognises_this_helper() {
        assert!(is_ours("molecule"));
        assert!(is_ours("molecule --cache-dir /x"));
        assert!(is_ours("/usr/local/bin/git-credential-molecule"));
        assert!(is_ours("!/opt/bin/git-credential-molecule --log debug"));
        assert!(is_ours("!'/opt/my tools/git-credential-molecule'"));
        assert!(!is_ours("store"));
        assert!(!is_ours("!molecule-impostor"));
        // A shell command named `molecule` is not git's lookup form.
        assert!(!is_ours("!molecule"));
        assert!(!is_ours("/opt/bin/git-credential-molecule-impostor"));
    }

    #[test]
    fn git_versions() {
        assert_eq!(parse_git_version("git version 2.47.3\n"), Some((2, 47)));
        assert_eq!(parse_git_version("git version 2.39.5"), Some((2, 39)));
        assert_eq!(
            parse_git_version("git version 2.46.0.windows.1"),
            Some((2, 46))
        );
        assert_eq!(parse_git_version("nope"), None);
    }

    #[test]
    fn use_http_path_last_wins() {
        let entries = vec![
            entry("global", "credential.usehttppath", "true"),
            entry(
                "global",
                "credential.https://github.com.usehttppath",
                "false",
            ),
        ];
        assert!(!use_http_path(&entries, "github.com"));
        assert!(use_http_path(&entries, "ghe.example.com"));
    }
}
