//! `configure`: make git ask this helper, and only this helper, for each host.
//!
//! For `credential.https://HOST.helper` it writes an empty value and then the helper: the empty
//! value resets the helper list git has collected so far (a global `store` or `cache`, gh's own
//! helper), so nothing else can answer for the host with a stale token. Idempotent: when the
//! values are already exactly that, nothing is written; any other value (the lookup form
//! `molecule` that earlier versions wrote by default, a path from an earlier install) is
//! replaced.
//!
//! The helper written by default is the absolute path this binary is installed at. git starts a
//! helper given by absolute path itself (through `sh -c "PATH get"`, as it starts every
//! helper), where the lookup form `molecule` makes it start `git credential-molecule` first: a
//! second git process per lookup. The path is the one the binary was started by, not the file
//! it resolves to: a symlink such as /usr/local/bin/git-credential-molecule stays the symlink,
//! so an upgrade that points it at a new version (stow, Nix profiles, update-alternatives) or
//! renames a new file over it (scripts/install.sh) leaves the registered value valid, where a
//! resolved, versioned path would die with the old version.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use molecule_credential::child;
use molecule_credential::config::Config;
use molecule_credential::{Class, Error};

use crate::write_error;

/// The lookup form of the helper value: git resolves it to `git credential-molecule`.
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
    /// Helper value to register; default: this binary's absolute path. `molecule` registers
    /// git's lookup form, which costs a second git process per lookup
    #[arg(long, value_name = "VALUE")]
    pub helper: Option<String>,
    /// Also set credential.https://HOST.useHttpPath, so the repository owner reaches the
    /// helper (github-app owner routing; on by default for that source with an owner map)
    #[arg(long)]
    pub use_http_path: bool,
    /// How this process was started (`argv[0]`): where the installed binary is, for the
    /// default helper value. Set by the caller, not a flag.
    #[arg(skip)]
    pub invoked_as: Option<std::ffi::OsString>,
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

/// What git runs for a `credential.helper` value (git's `credential_do`: a `!` value is a shell
/// command, an absolute path is used as it is, anything else names `git credential-NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperProgram {
    /// `NAME [ARGS]`: git starts `git credential-NAME`, a second git process that looks the
    /// helper up on git's exec path and PATH.
    Lookup(String),
    /// An absolute path, bare or as the program of a `!` command.
    Path(PathBuf),
    /// The program of a `!` command that sh looks up on PATH.
    Shell(String),
}

/// The program a helper value runs, or `None` for an empty value.
pub fn helper_program(value: &str) -> Option<HelperProgram> {
    let value = value.trim();
    if let Some(command) = value.strip_prefix('!') {
        let word = first_shell_word(command)?;
        return Some(if word.starts_with('/') {
            HelperProgram::Path(word.into())
        } else {
            HelperProgram::Shell(word)
        });
    }
    if value.starts_with('/') {
        // git appends ` get` and hands the whole line to sh, which splits it into words.
        return first_shell_word(value).map(|w| HelperProgram::Path(w.into()));
    }
    value
        .split_whitespace()
        .next()
        .map(|name| HelperProgram::Lookup(name.to_owned()))
}

/// The first word of a shell command line, quotes and backslashes removed: enough of sh's
/// grammar for the program of a helper command. `None` when there is none.
fn first_shell_word(line: &str) -> Option<String> {
    let mut word = String::new();
    let mut chars = line.trim_start().chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => word.extend(chars.by_ref().take_while(|&c| c != '\'')),
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => word.push(n),
                            Some(n) => {
                                word.push('\\');
                                word.push(n);
                            }
                            None => break,
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() || ";&|<>()".contains(c) => break,
            c => word.push(c),
        }
    }
    (!word.is_empty()).then_some(word)
}

/// Characters that make git hand a helper command to sh instead of running it as one word
/// (git's `prepare_shell_cmd`): a path holding any of them must be quoted for sh.
const SHELL_META: &str = "|&;<>()$`\\\"' \t\n*?[#~=%";

/// The helper value that runs the binary at `path`: the path itself, or, when sh would split
/// or expand it, a `!` command with the path quoted for sh.
pub fn helper_value(path: &str) -> String {
    if path.contains(|c| SHELL_META.contains(c)) {
        format!("!{}", shell_quote(path))
    } else {
        path.to_owned()
    }
}

/// `s` as one sh word: as it is when it needs no quoting, else in single quotes.
pub fn shell_quote(s: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b);
    if !s.is_empty() && s.bytes().all(plain) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("'{}'", s.replace('\'', r"'\''")))
    }
}

/// The path this binary was installed at: `argv0` when it names a path (made absolute against
/// `cwd`), else the first directory of `search_path` (PATH) that holds `argv0`; each only when
/// it is this very file (`exe`, which the kernel reports with every symlink resolved).
/// Otherwise `exe`. Symlinks in the result are kept on purpose (see the module docs).
pub fn installed_path(
    argv0: Option<&OsStr>,
    search_path: Option<&str>,
    cwd: Option<&Path>,
    exe: &Path,
) -> PathBuf {
    let is_exe = |candidate: &Path| match (std::fs::metadata(candidate), std::fs::metadata(exe)) {
        (Ok(a), Ok(b)) => a.is_file() && (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    };
    let Some(argv0) = argv0.filter(|a| !a.is_empty()) else {
        return exe.to_owned();
    };
    let found = if argv0.as_bytes().contains(&b'/') {
        let path = Path::new(argv0);
        let absolute = match cwd {
            _ if path.is_absolute() => Some(path.to_owned()),
            Some(cwd) => Some(cwd.join(path)),
            None => None,
        };
        // `./bin/x` run from /opt: /opt/bin/x, without the `.` (`..` is kept: removing it by
        // hand is wrong across symlinks).
        absolute
            .map(|p| {
                p.components()
                    .filter(|c| *c != Component::CurDir)
                    .collect::<PathBuf>()
            })
            .filter(|p| is_exe(p))
    } else {
        search_path
            .unwrap_or_default()
            .split(':')
            // A relative PATH entry would make the registered helper depend on git's cwd.
            .filter(|dir| dir.starts_with('/'))
            .map(|dir| Path::new(dir).join(argv0))
            .find(|p| is_exe(p))
    };
    found.unwrap_or_else(|| exe.to_owned())
}

/// The default helper value: [`helper_value`] of [`installed_path`] for this process, started
/// as `argv0`.
pub fn default_helper(config: &Config, argv0: Option<&std::ffi::OsStr>) -> Result<String, Error> {
    let exe = std::env::current_exe().map_err(|e| {
        Error::new(
            Class::LocalConfig,
            format!("cannot tell where this binary is ({e}): pass --helper"),
        )
    })?;
    // Linux reports a binary deleted or renamed over since it started as "PATH (deleted)".
    if !exe.is_file() {
        return Err(Error::new(
            Class::LocalConfig,
            format!(
                "{} was replaced or removed while it ran: run configure again",
                exe.display()
            ),
        ));
    }
    let cwd = std::env::current_dir().ok();
    let path = installed_path(argv0, config.search_path.as_deref(), cwd.as_deref(), &exe);
    let path = path.to_str().ok_or_else(|| {
        Error::new(
            Class::LocalConfig,
            format!("{} is not UTF-8: pass --helper", path.display()),
        )
    })?;
    Ok(helper_value(path))
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
    let helper = match &args.helper {
        Some(h) => h.clone(),
        None => default_helper(config, args.invoked_as.as_deref())?,
    };
    let want = [String::new(), helper.clone()];
    molecule_credential::block_on(async {
        for host in &hosts {
            let key = helper_key(host);
            let state = if get_all(&scope, &key).await? == want {
                "already configured"
            } else {
                set(&scope, &["--replace-all", &key, ""]).await?;
                set(&scope, &["--add", &key, &helper]).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_git_runs_for_a_helper_value() {
        use HelperProgram::*;
        let p = |v| helper_program(v);
        assert_eq!(p("molecule"), Some(Lookup("molecule".into())));
        assert_eq!(p("molecule --log debug"), Some(Lookup("molecule".into())));
        assert_eq!(
            p("/usr/local/bin/git-credential-molecule"),
            Some(Path("/usr/local/bin/git-credential-molecule".into()))
        );
        assert_eq!(
            p("!'/opt/my tools/git-credential-molecule' --x"),
            Some(Path("/opt/my tools/git-credential-molecule".into()))
        );
        assert_eq!(
            p(r#"!"/opt/a\"b/x" get"#),
            Some(Path(r#"/opt/a"b/x"#.into()))
        );
        assert_eq!(
            p(r"!/opt/my\ tools/x"),
            Some(Path("/opt/my tools/x".into()))
        );
        assert_eq!(p("!gh auth git-credential"), Some(Shell("gh".into())));
        assert_eq!(p(""), None);
        assert_eq!(p("!"), None);
    }

    #[test]
    fn helper_values_survive_sh() {
        assert_eq!(
            helper_value("/usr/local/bin/git-credential-molecule"),
            "/usr/local/bin/git-credential-molecule"
        );
        for path in [
            "/opt/my tools/git-credential-molecule",
            "/opt/it's/git-credential-molecule",
            "/opt/$HOME/*/git-credential-molecule",
        ] {
            let value = helper_value(path);
            assert!(value.starts_with('!'), "{value}");
            assert_eq!(
                helper_program(&value),
                Some(HelperProgram::Path(path.into())),
                "{value}"
            );
        }
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("--file=/x/y.z"), "--file=/x/y.z");
    }

    #[test]
    fn the_installed_path_keeps_its_symlinks() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let versioned = dir.path().join("opt/molecule-0.1.0/bin");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&versioned).expect("mkdir");
        std::fs::create_dir_all(&bin).expect("mkdir");
        let exe = versioned.join("git-credential-molecule");
        std::fs::write(&exe, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let link = bin.join("git-credential-molecule");
        std::os::unix::fs::symlink(&exe, &link).expect("symlink");
        let name = OsStr::new("git-credential-molecule");
        let path = format!("/nonexistent:relative/bin:{}", bin.display());

        // Started by name: the PATH entry, symlink kept.
        assert_eq!(installed_path(Some(name), Some(&path), None, &exe), link);
        // Started by a path, relative to the working directory.
        assert_eq!(
            installed_path(
                Some(OsStr::new("./bin/git-credential-molecule")),
                None,
                Some(dir.path()),
                &exe
            ),
            link
        );
        // A name on PATH that is another file: not ours, so the kernel's path.
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).expect("mkdir");
        std::fs::copy(&exe, other.join("git-credential-molecule")).expect("copy");
        let other_path = other.display().to_string();
        assert_eq!(
            installed_path(Some(name), Some(&other_path), None, &exe),
            exe
        );
        assert_eq!(installed_path(None, Some(&path), None, &exe), exe);
    }
}
