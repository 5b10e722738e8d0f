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

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use molecule_credential::config::Config;
use molecule_credential::{Class, Error};

use crate::gitconfig::helper_value::helper_value;
use crate::gitconfig::{Entry, Git, Key, Scope, Target};
use crate::write_error;

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
    /// The file configure writes.
    fn target(&self) -> Target {
        match (&self.file, self.system) {
            (Some(f), _) => Target::File(f.clone()),
            (None, true) => Target::System,
            (None, false) => Target::Global,
        }
    }
}

/// The flags of `configure` that write where `entry` is: `--system` and the global default
/// as git's scopes (they take effect wherever in the scope they land), any other file by its
/// path (configure has no `--local`; the path names the same file from anywhere).
pub fn flags_writing_to(entry: &Entry) -> String {
    match (&entry.scope, &entry.file) {
        (Scope::System, _) => " --system".into(),
        (Scope::Global, _) | (_, None) => String::new(),
        (_, Some(path)) => format!(" {}", Target::File(path.clone()).shell()),
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
        .with_source(e)
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
    let target = args.target();
    let use_http_path = args.use_http_path
        || (config.token_source == molecule_credential::config::TokenSourceKind::GithubApp
            && !config.github_app.installations.is_empty());
    let helper = match &args.helper {
        Some(h) => h.clone(),
        None => default_helper(config, args.invoked_as.as_deref())?,
    };
    let git = Git::default();
    for host in &hosts {
        // The empty value first: it resets the helpers collected before this file's entry.
        let mut keys = vec![(Key::credential(host, "helper"), vec!["", helper.as_str()])];
        if use_http_path {
            keys.push((Key::credential(host, "useHttpPath"), vec!["true"]));
        }
        for (key, want) in keys {
            let key = key.to_string();
            let state = ensure(&git, &target, &key, &want)?;
            writeln!(out, "{key}: {state} ({target})").map_err(|e| write_error(&e))?;
        }
    }
    Ok(0)
}

/// Makes `key` hold exactly the values `want`, in order, in `target`'s file, writing only
/// when it does not already; says which it was.
fn ensure(git: &Git, target: &Target, key: &str, want: &[&str]) -> Result<&'static str, Error> {
    if git.get_all(target, key)? == want {
        return Ok("already configured");
    }
    let (first, rest) = want
        .split_first()
        .expect("configure writes at least one value");
    git.config(target, &["--replace-all", key, first])?;
    for value in rest {
        git.config(target, &["--add", key, value])?;
    }
    Ok("configured")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configure_writes_where_the_entry_was() {
        let raw = b"system\0file:/etc/gitconfig\0credential.helper\nx\0\
global\0file:/root/.gitconfig\0credential.helper\nx\0\
local\0file:.git/config\0credential.helper\nx\0\
command\0command line:\0credential.helper\nx\0";
        let flags: Vec<String> = crate::gitconfig::Listing::parse(raw, || "/work/my repo".into())
            .entries
            .iter()
            .map(flags_writing_to)
            .collect();
        assert_eq!(
            flags,
            [" --system", "", " --file '/work/my repo/.git/config'", ""]
        );
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
