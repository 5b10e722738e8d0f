//! `doctor`: checks a setup end to end, and names for every problem the command that fixes it.
//!
//! How it is built: [`Context::gather`] asks git and the cache once (git's version, its
//! configuration as [`crate::gitconfig`] reads it, the cache document); then each check in
//! [`CHECKS`] reads that context and adds its findings, in that order. A check is one function
//! `fn(&Context, &mut Findings)`: adding a check is writing one and naming it in [`CHECKS`].
//! Every git rule a check needs (urlmatch, the helper grammar, which file an entry lives in)
//! comes from [`crate::gitconfig`].
//!
//! The checks:
//! - `git`: the version, which parts of the credential protocol it speaks, and whether it can
//!   read its configuration.
//! - `helpers`: the helpers git will ask for each host, in order (git's own rule: config
//!   order, URL patterns, an empty value resets), and whether another helper answers before
//!   ours or can store our token.
//! - `helperPath` (`doctor/helper_path.rs`): how git starts ours: an absolute path that must
//!   be an executable file, or the slower lookup form `molecule`.
//! - `useHttpPath`, where the `github-app` source routes by owner.
//! - What bypasses the helper (`doctor/bypass.rs`): credentials in remote URLs, `insteadOf`
//!   and `extraHeader`, an askpass program, a repository-local helper, exported token
//!   variables, gh's stored token.
//! - The token source (`doctor/source.rs`): the platform bearer, or the App's key (and
//!   whether GitHub accepts its JWT), and the clock skew against that server's `Date`; or the
//!   token file (readable, parseable, its expiry and time left).
//! - The cache directory, each host's token and its time to expiry, the daemon's last outcome
//!   (`doctor/cache.rs`).
//!
//! Each finding has a level: `ok`, `advice` (works, but could be better; never changes the exit
//! code) or `problem`. No finding shows a token: a fingerprint
//! ([`molecule_credential::Secret::fingerprint`]) at most, and URLs with their userinfo
//! replaced by `***`.

mod bypass;
mod cache;
mod helper_path;
mod source;

use std::io::Write;
use std::time::Duration;

use molecule_credential::cache::Document;
use molecule_credential::clock::{Clock, SystemClock};
use molecule_credential::config::{Config, TokenSourceKind};
use molecule_credential::store::CacheDir;
use molecule_credential::{Class, Error};
use serde::Serialize;
use time::OffsetDateTime;

use crate::gitconfig::urlmatch::Lookup;
use crate::gitconfig::{Entry, Git, Key, Listing, helper_value, helpers, parse_version};
use crate::write_error;

/// How long doctor waits for any server.
const DOCTOR_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The scope and origin, as git reports them (`global file:/root/.gitconfig`).
    pub origin: String,
}

impl From<&Entry> for Helper {
    fn from(e: &Entry) -> Self {
        Self {
            value: e.value.clone().unwrap_or_default(),
            origin: e.whence(),
        }
    }
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

/// What every check may read, gathered once: git's answers and the cache.
pub struct Context<'a> {
    /// The configuration doctor runs with.
    pub config: &'a Config,
    /// When doctor started.
    pub now: OffsetDateTime,
    /// How git is run.
    pub git: Git,
    /// `git --version`'s line, or why git did not answer.
    pub git_version: Result<String, Error>,
    /// git's configuration here, or why it could not be read.
    pub listing: Result<Listing, Error>,
    /// The cache directory (`None`: not created yet).
    pub cache: Result<Option<CacheDir>, Error>,
    /// The cache's document, when the directory could be opened (empty when unreadable).
    pub doc: Option<Document>,
}

impl<'a> Context<'a> {
    /// Asks git, in this process's directory, and reads the cache.
    pub fn gather(config: &'a Config) -> Self {
        let git = Git::default();
        let cache = CacheDir::open_existing(&config.cache_dir);
        let doc = match &cache {
            Ok(Some(c)) => Some(c.read().unwrap_or_default()),
            _ => None,
        };
        Self {
            config,
            now: SystemClock.now(),
            git_version: git.version(),
            listing: git.list(),
            git,
            cache,
            doc,
        }
    }

    /// Every entry of git's configuration (none when it could not be read).
    pub fn entries(&self) -> &[Entry] {
        self.listing.as_ref().map_or(&[], |l| &l.entries)
    }

    /// The `(major, minor)` version of git.
    fn version(&self) -> Option<(u32, u32)> {
        self.git_version.as_deref().ok().and_then(parse_version)
    }

    /// The helpers git asks for `host` as configured, without the repository's own entries
    /// that reset or follow ours: those are reported, with their fix, as bypasses.
    fn configured_helpers(&self, host: &str) -> Vec<&Entry> {
        let overrides = bypass::local_overrides(self.entries(), host);
        helpers(
            self.entries()
                .iter()
                .filter(|e| !overrides.iter().any(|o| std::ptr::eq(*o, *e))),
            &Lookup::https(host),
        )
    }
}

/// One check: reads the context, adds its findings.
pub type Check = fn(&Context<'_>, &mut Findings);

/// Every check, in the order its findings are reported.
pub const CHECKS: &[Check] = &[
    git,
    helper_order,
    helper_path::check,
    use_http_path,
    bypass::remotes,
    bypass::instead_of,
    bypass::extra_headers,
    bypass::askpass,
    bypass::local_helpers,
    bypass::environment,
    bypass::gh,
    source::platform,
    source::github_app,
    source::file,
    cache::directory,
    cache::tokens,
    cache::daemon,
];

/// The findings so far.
#[derive(Default)]
pub struct Findings(Vec<Finding>);

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
    let cx = Context::gather(config);
    let mut f = Findings::default();
    for check in CHECKS {
        check(&cx, &mut f);
    }
    let count = |level| f.0.iter().filter(|x| x.level == level).count();
    let (problems, advice) = (count(Level::Problem), count(Level::Advice));
    Report {
        git_version: cx.git_version.as_ref().ok().cloned(),
        helpers: config
            .hosts
            .iter()
            .map(|host| {
                let asked = helpers(cx.entries(), &Lookup::https(host));
                (host.clone(), asked.into_iter().map(Helper::from).collect())
            })
            .collect(),
        findings: f.0,
        problems,
        advice,
    }
}

/// Whether a helper value runs this helper.
fn is_ours(value: &str) -> bool {
    helper_value::runs(value, crate::NAME)
}

/// git itself: there, which protocol features its version has, able to read its config.
fn git(cx: &Context<'_>, f: &mut Findings) {
    const INSTALL: &str = "install git (apt-get install git)";
    match (&cx.git_version, cx.version()) {
        (Err(e), _) if e.class() == Class::MissingProgram => {
            let why = e.message();
            f.problem("git", None, format!("git is not installed ({why})"), INSTALL.into());
            return;
        }
        (Err(e), _) => f.problem("git", None, format!("git did not answer --version: {e}"), INSTALL.into()),
        (Ok(line), None) => f.problem("git", None, format!("cannot read git's version from {line:?}"), INSTALL.into()),
        (Ok(_), Some(v)) if v < (2, 41) => f.problem(
            "git",
            None,
            format!("git {}.{} ignores password_expiry_utc: a storage helper could replay an expired token", v.0, v.1),
            "upgrade git to 2.41 or later (2.46 or later to keep storage helpers from storing tokens at all)".into(),
        ),
        (Ok(_), Some(v)) if v < (2, 46) => f.ok(
            "git",
            None,
            format!("git {}.{}: password_expiry_utc and wwwauth[]; no authtype capability, so a storage helper after ours could store a token until its expiry", v.0, v.1),
        ),
        (Ok(_), Some(v)) => f.ok(
            "git",
            None,
            format!("git {}.{}: password_expiry_utc, wwwauth[], and capability[]=authtype (answers are ephemeral: storage helpers keep nothing)", v.0, v.1),
        ),
    }
    if let Err(e) = &cx.listing {
        f.problem(
            "git",
            None,
            format!("git cannot read its configuration here: {e}"),
            "correct the file git names (git config --list --show-origin shows the same)".into(),
        );
    }
}

/// The helpers git asks for each host, and whether ours is the only one.
fn helper_order(cx: &Context<'_>, f: &mut Findings) {
    let old_git = cx.version().is_some_and(|v| v < (2, 46));
    for host in &cx.config.hosts {
        let list: Vec<Helper> = cx
            .configured_helpers(host)
            .into_iter()
            .map(Helper::from)
            .collect();
        let local = !bypass::local_overrides(cx.entries(), host).is_empty();
        let fix = format!("{} configure --host {host}", crate::NAME);
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
                    if local { ", except in this repository (localHelper)" } else { "" }
                ),
            ),
            Some(0) => f.problem(
                "helpers",
                Some(host),
                format!(
                    "after git-credential-molecule git also asks {}: if ours fails they answer with whatever they stored{}",
                    describe(&list[1..]),
                    if old_git { ", and they are sent our token to store" } else { "" }
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
    }
}

/// `credential.useHttpPath`, for the `github-app` source when it routes by owner.
fn use_http_path(cx: &Context<'_>, f: &mut Findings) {
    let app = &cx.config.github_app;
    if cx.config.token_source != TokenSourceKind::GithubApp {
        return;
    }
    let routes = !app.installations.is_empty() || app.installation_id.is_none();
    for host in &cx.config.hosts {
        match (crate::gitconfig::use_http_path(cx.entries(), &Lookup::https(host)), routes) {
            (true, _) => f.ok("useHttpPath", Some(host), "git sends the repository path: the owner selects the installation".into()),
            (false, true) => f.problem(
                "useHttpPath",
                Some(host),
                "credential.useHttpPath is off: git does not send the repository owner, so every repository gets the default installation's token".into(),
                format!("git config --global {} true", Key::credential(host, "useHttpPath")),
            ),
            (false, false) => f.ok("useHttpPath", Some(host), "off: every repository uses the default installation".into()),
        }
    }
}

fn describe(list: &[Helper]) -> String {
    list.iter()
        .map(|h| format!("`{}` ({})", h.value, h.origin))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report as text: a line per finding, its fix below it, and a count.
fn render(report: &Report) -> String {
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
}

/// Prints the report; exit 0 without problems (advice does not count), 1 with.
pub fn run(config: &Config, args: &Args, out: &mut dyn Write) -> Result<u8, Error> {
    let report = diagnose(config);
    let text = if args.json {
        serde_json::to_string_pretty(&report).expect("the report serialises") + "\n"
    } else {
        render(&report)
    };
    // No finding carries a token by construction; the redactor is the second line of
    // defence, as it is for logs.
    out.write_all(molecule_credential::logging::redact(&text).as_bytes())
        .map_err(|e| write_error(&e))?;
    Ok(u8::from(report.problems > 0))
}
