//! git's configuration: the one home of every git rule `configure` and `doctor` rely on
//! (STYLE.md rule 14). Nothing else in this crate runs git, splits a config key or decides
//! which file an entry lives in.
//!
//! - Running git: [`Git`], every call bounded by [`GIT_TIMEOUT`] through
//!   [`molecule_credential::child`]. A git that is not installed is
//!   [`Class::MissingProgram`].
//! - Reading: [`Git::list`] parses `git config --null --list --show-origin --show-scope` into
//!   a [`Listing`] of [`Entry`]s, in git's own order (system, global, local, worktree, command
//!   line; an included file's entries right after the `include.path` that names them). NUL
//!   separated, so origins and values with spaces, `=` or newlines arrive as they are.
//! - Keys: [`Key`] splits `section.subsection.name` (the subsection may hold dots: it is a URL
//!   for `credential.*`, `http.*` and `url.*`).
//! - Where an entry lives, as `git config` edits exactly that file: [`Entry::target`]. See
//!   [`Listing::parse`] for the rule and why it is `--local` for the repository's own file.
//! - Which `credential.<url>.*` entries apply to a request: [`urlmatch`].
//! - What a `credential.helper` value runs: [`helper_value`]. The helpers git asks, in order:
//!   [`helpers`].

pub mod helper_value;
pub mod urlmatch;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use molecule_credential::child::{self, Output};
use molecule_credential::{Class, Error};

use self::helper_value::{is_reset, shell_quote};
use self::urlmatch::{Lookup, credential_matches};

/// Budget for one git call.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to run git: which program, where, with which environment changes. The default is
/// `git` from PATH, in this process's directory and environment.
#[derive(Debug, Clone)]
pub struct Git {
    program: OsString,
    dir: Option<PathBuf>,
    env: Vec<(OsString, Option<OsString>)>,
}

impl Default for Git {
    fn default() -> Self {
        Self {
            program: "git".into(),
            dir: None,
            env: Vec::new(),
        }
    }
}

impl Git {
    /// Runs git the way `command` would: its program, directory and environment changes (for
    /// tests that isolate git from the machine, or pick one git of several).
    pub fn like(command: &Command) -> Self {
        Self {
            program: command.get_program().to_owned(),
            dir: command.get_current_dir().map(Path::to_owned),
            env: command
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(OsStr::to_owned)))
                .collect(),
        }
    }

    fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(args);
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        for (key, value) in &self.env {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        cmd
    }

    /// Runs `git ARGS…` within [`GIT_TIMEOUT`]. `Err` only when git could not run to the end
    /// (missing, killed at the deadline); a failed git is an `Ok` with its status.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Output, Error> {
        let what = match args.first().and_then(|a| a.as_ref().to_str()) {
            Some(sub) if !sub.starts_with('-') => format!("git {sub}"),
            _ => "git".to_owned(),
        };
        molecule_credential::block_on(child::run(self.command(args), None, GIT_TIMEOUT, &what))?
    }

    /// `git --version`'s line.
    pub fn version(&self) -> Result<String, Error> {
        let out = self
            .run(&["--version"])?
            .check(Class::LocalConfig, "git --version")?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Every entry git reads here, in its order ([`Listing::parse`]).
    pub fn list(&self) -> Result<Listing, Error> {
        const ARGS: [&str; 5] = [
            "config",
            "--null",
            "--list",
            "--show-origin",
            "--show-scope",
        ];
        let out = self
            .run(&ARGS)?
            .check(Class::LocalConfig, "git config --list")?;
        if out.stdout.len() as u64 >= child::MAX_OUTPUT {
            return Err(Error::new(
                Class::LocalConfig,
                format!(
                    "git config --list printed more than {} bytes; not reading a partial listing",
                    child::MAX_OUTPUT
                ),
            ));
        }
        Ok(Listing::parse(&out.stdout, || self.base_dir()))
    }

    /// What git's relative origins are relative to: the top of the work tree git runs in
    /// (git moves there before it reads the repository's config), else the directory it was
    /// started in (a bare repository, `GIT_DIR` without a work tree).
    fn base_dir(&self) -> PathBuf {
        let started_in = || match &self.dir {
            Some(dir) => std::path::absolute(dir).unwrap_or_else(|_| dir.clone()),
            None => std::env::current_dir().unwrap_or_default(),
        };
        match self.run(&["rev-parse", "--show-toplevel"]) {
            Ok(out) if out.status.success() => {
                let top = out.stdout.strip_suffix(b"\n").unwrap_or(&out.stdout);
                match top {
                    [] => started_in(),
                    top => PathBuf::from(OsStr::from_bytes(top)),
                }
            }
            _ => started_in(),
        }
    }

    /// The values of `key` in `target`'s file (empty when unset).
    pub fn get_all(&self, target: &Target, key: &str) -> Result<Vec<String>, Error> {
        let mut args = vec![OsString::from("config")];
        args.extend(target.args());
        args.extend(["--null", "--get-all", key].map(OsString::from));
        let out = self.run(&args)?;
        match out.status.code() {
            Some(0) => {
                let mut values: Vec<String> = out
                    .stdout
                    .split(|&b| b == 0)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect();
                // Every value ends with a NUL: the last piece is the nothing after it.
                values.pop();
                Ok(values)
            }
            // 1: the key is not set.
            Some(1) => Ok(Vec::new()),
            _ => out
                .check(Class::LocalConfig, &format!("git config --get-all {key}"))
                .map(|_| Vec::new()),
        }
    }

    /// `git config TARGET ARGS…`, which must succeed.
    pub fn config(&self, target: &Target, args: &[&str]) -> Result<(), Error> {
        let mut all = vec![OsString::from("config")];
        all.extend(target.args());
        all.extend(args.iter().map(OsString::from));
        self.run(&all)?
            .check(
                Class::LocalConfig,
                &format!("git config {}", args.join(" ")),
            )
            .map(drop)
    }
}

/// `(major, minor)` of `git version 2.47.3`.
pub fn parse_version(s: &str) -> Option<(u32, u32)> {
    let v = s.trim().strip_prefix("git version ")?;
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// A config file, named the way `git config` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `--system`.
    System,
    /// `--global`: `~/.gitconfig`, or `$XDG_CONFIG_HOME/git/config` when only that exists.
    Global,
    /// `--local`: the repository's own `config`, shared by all its worktrees.
    Local,
    /// `--worktree`: this worktree's `config.worktree`.
    Worktree,
    /// `--file PATH`: any file.
    File(PathBuf),
}

impl Target {
    /// The flags, as arguments.
    pub fn args(&self) -> Vec<OsString> {
        match self {
            Target::System => vec!["--system".into()],
            Target::Global => vec!["--global".into()],
            Target::Local => vec!["--local".into()],
            Target::Worktree => vec!["--worktree".into()],
            Target::File(path) => vec!["--file".into(), path.into()],
        }
    }

    /// The flags for a command line printed for sh.
    pub fn shell(&self) -> String {
        match self {
            Target::File(path) => format!("--file {}", shell_quote(&path.to_string_lossy())),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Target {
    /// The flags as a person reads them (unquoted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::System => f.write_str("--system"),
            Target::Global => f.write_str("--global"),
            Target::Local => f.write_str("--local"),
            Target::Worktree => f.write_str("--worktree"),
            Target::File(path) => write!(f, "--file {}", path.display()),
        }
    }
}

/// Which of git's config scopes an entry was read in (`--show-scope`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The system file.
    System,
    /// The user's files.
    Global,
    /// The repository's config, and files it includes.
    Local,
    /// This worktree's `config.worktree`, and files it includes.
    Worktree,
    /// `-c`, `GIT_CONFIG_PARAMETERS`, `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`.
    Command,
    /// Anything a newer git may add.
    Other(String),
}

impl Scope {
    fn parse(s: &str) -> Self {
        match s {
            "system" => Scope::System,
            "global" => Scope::Global,
            "local" => Scope::Local,
            "worktree" => Scope::Worktree,
            "command" => Scope::Command,
            other => Scope::Other(other.to_owned()),
        }
    }

    /// As git names it.
    pub fn as_str(&self) -> &str {
        match self {
            Scope::System => "system",
            Scope::Global => "global",
            Scope::Local => "local",
            Scope::Worktree => "worktree",
            Scope::Command => "command",
            Scope::Other(s) => s,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A config key as git lists it: section and name lower-cased, the subsection as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// `credential`, `url`, `http`, `remote`, `core`, …
    pub section: String,
    /// What sits between the first and the last dot (a URL for `credential.*`).
    pub subsection: Option<String>,
    /// `helper`, `insteadof`, …
    pub name: String,
}

impl Key {
    /// Splits `section[.subsection].name`.
    pub fn parse(key: &str) -> Self {
        let (section, rest) = key.split_once('.').unwrap_or((key, ""));
        let (subsection, name) = match rest.rsplit_once('.') {
            Some((sub, name)) => (Some(sub.to_owned()), name),
            None => (None, rest),
        };
        Self {
            section: section.to_owned(),
            subsection,
            name: name.to_owned(),
        }
    }

    /// `credential.https://HOST.NAME`: the key `configure` writes for `host`.
    pub fn credential(host: &str, name: &str) -> Self {
        Self {
            section: "credential".into(),
            subsection: Some(format!("https://{host}")),
            name: name.to_owned(),
        }
    }

    /// The subsection, when this is `section.<subsection>.name` for one of `names` (all
    /// lower-case, as git lists them).
    pub fn subsection_of(&self, section: &str, names: &[&str]) -> Option<&str> {
        if self.section == section && names.contains(&self.name.as_str()) {
            self.subsection.as_deref()
        } else {
            None
        }
    }

    /// Whether this is `section.*.name` (both lower-case, as git lists them).
    pub fn is(&self, section: &str, name: &str) -> bool {
        self.section == section && self.name == name
    }

    /// The key with its name spelt as git's documentation spells it (git lists names
    /// lower-cased; both forms mean the same key).
    pub fn documented(&self) -> String {
        let name = match self.name.as_str() {
            "insteadof" => "insteadOf",
            "pushinsteadof" => "pushInsteadOf",
            "extraheader" => "extraHeader",
            "askpass" => "askPass",
            "usehttppath" => "useHttpPath",
            other => other,
        };
        self.with_name(name)
    }

    /// [`Key::documented`], with the subsection passed through `show` (to hide a credential
    /// in a URL).
    pub fn shown_with(&self, show: impl Fn(&str) -> String) -> String {
        Key {
            subsection: self.subsection.as_deref().map(show),
            ..self.clone()
        }
        .documented()
    }

    fn with_name(&self, name: &str) -> String {
        match &self.subsection {
            Some(sub) => format!("{}.{sub}.{name}", self.section),
            None => format!("{}.{name}", self.section),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_name(&self.name))
    }
}

/// One entry of the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The scope git read it in.
    pub scope: Scope,
    /// Where from, as git prints it: `file:.git/config`, `command line:`, …
    pub origin: String,
    /// The file it is in, absolute; `None` for the command line and the environment.
    pub file: Option<PathBuf>,
    /// How `git config` edits exactly that file; `None` when no file holds it.
    pub target: Option<Target>,
    /// The key.
    pub key: Key,
    /// The value; `None` for a key written without `=` (a boolean true).
    pub value: Option<String>,
}

impl Entry {
    /// `scope origin`, the way messages name where an entry is.
    pub fn whence(&self) -> String {
        format!("{} {}", self.scope, self.origin)
    }

    /// Whether this entry is `credential.<url>.name` for a `<url>` that applies to `lookup`
    /// (or `credential.name`, which applies to all).
    pub fn is_credential(&self, name: &str, lookup: &Lookup<'_>) -> bool {
        self.key.is("credential", name)
            && self
                .key
                .subsection
                .as_deref()
                .is_none_or(|url| credential_matches(url, lookup))
    }
}

/// Every entry git reads, in git's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The entries.
    pub entries: Vec<Entry>,
}

impl Listing {
    /// Parses `git config --null --list --show-origin --show-scope`: records of
    /// `scope NUL origin NUL key [LF value] NUL`. A relative origin is relative to the
    /// directory `base` returns (asked for only when one is).
    ///
    /// Which file an entry is in, for `git config` to edit ([`Entry::target`]): the
    /// repository's own config is `--local` and this worktree's `config.worktree` is
    /// `--worktree` (both name the right file from any directory of any worktree, where the
    /// relative origins git prints, `.git/config`, do not); every other file is `--file` with
    /// its absolute path (an included file is not what `--local` edits, and `--global`
    /// writes `~/.gitconfig` even for an entry read from `$XDG_CONFIG_HOME/git/config`). The
    /// repository's own file is the origin of the first `local` entry: git reads that file
    /// first, and lists an `include.path` before the entries of the file it includes, so the
    /// first `local` entry always comes from the file itself. Likewise for `worktree`.
    pub fn parse(raw: &[u8], base: impl FnOnce() -> PathBuf) -> Self {
        let mut base = Some(base);
        let mut resolved: Option<PathBuf> = None;
        let mut first_local: Option<String> = None;
        let mut first_worktree: Option<String> = None;
        let mut entries = Vec::new();
        let mut fields = raw.split(|&b| b == 0);
        while let (Some(scope), Some(origin), Some(kv)) =
            (fields.next(), fields.next(), fields.next())
        {
            if scope.is_empty() {
                break;
            }
            let scope = Scope::parse(&String::from_utf8_lossy(scope));
            let file = origin.strip_prefix(b"file:").map(|path| {
                let path = Path::new(OsStr::from_bytes(path));
                if path.is_absolute() {
                    path.to_owned()
                } else {
                    let dir = resolved
                        .get_or_insert_with(|| base.take().map(|b| b()).unwrap_or_default());
                    dir.join(path)
                }
            });
            let origin = String::from_utf8_lossy(origin).into_owned();
            let first: &str = match scope {
                Scope::Local => first_local.get_or_insert_with(|| origin.clone()),
                Scope::Worktree => first_worktree.get_or_insert_with(|| origin.clone()),
                _ => "",
            };
            let target = file.as_ref().map(|path| match scope {
                Scope::Local if first == origin => Target::Local,
                Scope::Worktree if first == origin => Target::Worktree,
                _ => Target::File(path.clone()),
            });
            let kv = String::from_utf8_lossy(kv);
            let (key, value) = match kv.split_once('\n') {
                Some((k, v)) => (k, Some(v.to_owned())),
                None => (&*kv, None),
            };
            entries.push(Entry {
                scope,
                origin,
                file,
                target,
                key: Key::parse(key),
                value,
            });
        }
        Self { entries }
    }
}

/// The `credential.helper` entries git asks for `lookup`, in order: every entry whose URL
/// applies, in config order, an empty value clearing the list so far (as does a key without
/// a value, which git itself refuses to run with).
pub fn helpers<'a>(
    entries: impl IntoIterator<Item = &'a Entry>,
    lookup: &Lookup<'_>,
) -> Vec<&'a Entry> {
    let mut list = Vec::new();
    for e in entries {
        if !e.is_credential("helper", lookup) {
            continue;
        }
        match e.value.as_deref() {
            None => list.clear(),
            Some(v) if is_reset(v) => list.clear(),
            Some(_) => list.push(e),
        }
    }
    list
}

/// Whether `credential.useHttpPath` is on for `lookup`: the last entry that applies wins.
pub fn use_http_path(entries: &[Entry], lookup: &Lookup<'_>) -> bool {
    entries
        .iter()
        .rfind(|e| e.is_credential("usehttppath", lookup))
        .is_some_and(|e| is_true(e.value.as_deref()))
}

/// git's boolean: a key without a value is true, and so are `true`, `yes`, `on` and `1`.
pub fn is_true(value: Option<&str>) -> bool {
    value.is_none_or(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "on" | "1"))
}

/// `s` escaped for a POSIX extended regular expression (what `git config --get-regexp` and
/// `--unset-all` take as patterns).
pub fn ere_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.^$|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Vec<Entry> {
        Listing::parse(raw, || PathBuf::from("/work/repo")).entries
    }

    #[test]
    fn parses_the_null_listing() {
        let raw = b"global\0file:/h/my home/.gitconfig\0credential.helper\nstore\0\
global\0file:/h/my home/.gitconfig\0credential.https://github.com.helper\n\0\
local\0file:.git/config\0include.path\n../shared config\0\
local\0file:.git/../shared config\0credential.https://GitHub.com.usehttppath\0\
local\0file:.git/config\0http.extraheader\nX-A: a=b\nc\0\
command\0command line:\0credential.helper\n!f() { echo; }; f\0";
        let e = parse(raw);
        // (scope, file, target, key, value), one row per record.
        let file = |p: &str| Some(PathBuf::from(p));
        let local = |p: &str| (file(p), Some(Target::Local));
        let other = |p: &str| (file(p), Some(Target::File(p.into())));
        let rows: Vec<_> = e
            .iter()
            .map(|e| {
                let Entry {
                    scope,
                    origin: _,
                    file,
                    target,
                    key,
                    value,
                } = e;
                (
                    scope.as_str(),
                    (file.clone(), target.clone()),
                    key.to_string(),
                    value.as_deref(),
                )
            })
            .collect();
        let home = "/h/my home/.gitconfig";
        let helper = "credential.https://github.com.helper";
        assert_eq!(
            rows,
            [
                (
                    "global",
                    other(home),
                    "credential.helper".into(),
                    Some("store")
                ),
                ("global", other(home), helper.into(), Some("")),
                (
                    "local",
                    local("/work/repo/.git/config"),
                    "include.path".into(),
                    Some("../shared config")
                ),
                // An included file: scope local, but not the file --local edits.
                (
                    "local",
                    other("/work/repo/.git/../shared config"),
                    "credential.https://GitHub.com.usehttppath".into(),
                    None
                ),
                (
                    "local",
                    local("/work/repo/.git/config"),
                    "http.extraheader".into(),
                    Some("X-A: a=b\nc")
                ),
                (
                    "command",
                    (None, None),
                    "credential.helper".into(),
                    Some("!f() { echo; }; f")
                ),
            ]
        );
        assert_eq!(e[0].whence(), "global file:/h/my home/.gitconfig");
        assert_eq!(e[3].key.subsection.as_deref(), Some("https://GitHub.com"));
    }

    #[test]
    fn the_base_directory_is_asked_for_only_when_needed() {
        let raw = b"worktree\0file:/r/.git/worktrees/w/config.worktree\0credential.helper\nx\0";
        let e = Listing::parse(raw, || panic!("no relative origin here")).entries;
        assert_eq!(e[0].target, Some(Target::Worktree));
        assert!(parse(b"").is_empty());
    }

    #[test]
    fn keys_split_at_the_first_and_last_dot() {
        let k = Key::parse("url.https://x-access-token:t@github.com/.insteadof");
        assert_eq!(k.section, "url");
        assert_eq!(
            k.subsection.as_deref(),
            Some("https://x-access-token:t@github.com/")
        );
        assert_eq!(k.name, "insteadof");
        assert_eq!(
            k.documented(),
            "url.https://x-access-token:t@github.com/.insteadOf"
        );
        assert_eq!(
            k.shown_with(|_| "https://***@github.com/".into()),
            "url.https://***@github.com/.insteadOf"
        );
        assert_eq!(
            k.subsection_of("url", &["pushinsteadof", "insteadof"]),
            k.subsection.as_deref()
        );
        assert_eq!(k.subsection_of("url", &["pushinsteadof"]), None);
        assert_eq!(k.subsection_of("http", &["insteadof"]), None);
        let k = Key::parse("core.askpass");
        assert_eq!((k.subsection, k.name.as_str()), (None, "askpass"));
        assert_eq!(
            Key::credential("ghe.corp:8443", "useHttpPath").to_string(),
            "credential.https://ghe.corp:8443.useHttpPath"
        );
    }

    #[test]
    fn helper_order_follows_config_order_and_resets() {
        let entry = |scope: &str, key: &str, value: Option<&str>| Entry {
            scope: Scope::parse(scope),
            origin: "file:/x".into(),
            file: Some("/x".into()),
            target: Some(Target::File("/x".into())),
            key: Key::parse(key),
            value: value.map(str::to_owned),
        };
        let entries = vec![
            entry("system", "credential.helper", Some("cache")),
            entry("global", "credential.helper", Some("store")),
            entry("global", "credential.https://github.com.helper", Some("")),
            entry(
                "global",
                "credential.https://github.com.helper",
                Some("molecule"),
            ),
            entry(
                "local",
                "credential.helper",
                Some("!gh auth git-credential"),
            ),
            entry("local", "credential.https://gitlab.com.usehttppath", None),
        ];
        let values = |host| -> Vec<&str> {
            helpers(&entries, &Lookup::https(host))
                .into_iter()
                .filter_map(|e| e.value.as_deref())
                .collect()
        };
        assert_eq!(
            values("github.com"),
            ["molecule", "!gh auth git-credential"]
        );
        assert_eq!(
            values("gitlab.com"),
            ["cache", "store", "!gh auth git-credential"]
        );
        assert!(use_http_path(&entries, &Lookup::https("gitlab.com")));
        assert!(!use_http_path(&entries, &Lookup::https("github.com")));
    }

    #[test]
    fn targets_name_their_file() {
        assert_eq!(Target::File("/a b/c".into()).shell(), "--file '/a b/c'");
        assert_eq!(Target::File("/a b/c".into()).to_string(), "--file /a b/c");
        assert_eq!(Target::Local.shell(), "--local");
        assert_eq!(
            Target::File("/x".into()).args(),
            [OsString::from("--file"), OsString::from("/x")]
        );
    }

    #[test]
    fn git_versions() {
        assert_eq!(parse_version("git version 2.47.3\n"), Some((2, 47)));
        assert_eq!(parse_version("git version 2.39.5"), Some((2, 39)));
        assert_eq!(parse_version("git version 2.46.0.windows.1"), Some((2, 46)));
        assert_eq!(parse_version("nope"), None);
    }

    #[test]
    fn booleans_and_patterns() {
        assert!(is_true(None) && is_true(Some("Yes")) && is_true(Some("1")));
        assert!(!is_true(Some("false")) && !is_true(Some("")));
        assert_eq!(ere_escape("a.b*(c)"), r"a\.b\*\(c\)");
    }
}
