//! How git starts our helper, for each host: the value `configure` wrote, checked the way git
//! will use it (DESIGN.md, "The credential protocol", `configure`).
//!
//! - An absolute path (bare, or the program of a `!` command) must be an executable file: if
//!   it is not, git cannot start the helper and moves on to the next helper or a prompt, and
//!   nothing says why.
//! - The lookup form `molecule` works, but git starts `git credential-molecule` first: a second
//!   git process for every lookup. That is advice, not a problem; unless git cannot find the
//!   binary that way at all.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::configure::{HelperProgram, helper_program, shell_quote};

use super::{Findings, Helper, run_git};

/// Checks each host's helper, asking git about the lookup form at most once.
#[derive(Default)]
pub(super) struct Checker {
    /// Whether `git credential-molecule --version` ran, once asked.
    lookup_works: Option<bool>,
}

impl Checker {
    /// Reports how git starts `ours` (the first of our entries git asks for `host`).
    pub(super) fn check(&mut self, host: &str, ours: &Helper, f: &mut Findings) {
        // Configuring again writes the absolute path of the binary that runs it.
        let configure = format!(
            "{} configure{} --host {host}",
            crate::NAME,
            configure_scope(&ours.origin)
        );
        match helper_program(&ours.value) {
            Some(HelperProgram::Lookup(_)) => {
                let works = *self.lookup_works.get_or_insert_with(|| {
                    run_git(&["credential-molecule", "--version"])
                        .is_some_and(|o| o.status.success())
                });
                if works {
                    f.advice(
                        "helperPath",
                        Some(host),
                        format!(
                            "`{}` ({}) makes git start `git credential-molecule` for every lookup: a second git process before the helper runs; an absolute path skips it",
                            ours.value, ours.origin
                        ),
                        configure,
                    );
                } else {
                    f.problem(
                        "helperPath",
                        Some(host),
                        format!(
                            "`{}` ({}) makes git run `git credential-molecule`, which git cannot find on its exec path or PATH: git never reaches the helper",
                            ours.value, ours.origin
                        ),
                        configure,
                    );
                }
            }
            Some(HelperProgram::Path(path)) => match unusable(&path) {
                None => f.ok(
                    "helperPath",
                    Some(host),
                    format!(
                        "git starts {} itself: no second git process",
                        path.display()
                    ),
                ),
                Some((why, fix)) => f.problem(
                    "helperPath",
                    Some(host),
                    format!(
                        "git is to start {} ({}), which {why}: it cannot, and moves on to a prompt",
                        path.display(),
                        ours.origin
                    ),
                    fix.unwrap_or(configure),
                ),
            },
            Some(HelperProgram::Shell(word)) => f.ok(
                "helperPath",
                Some(host),
                format!("git starts `{word}` through sh, found on PATH"),
            ),
            None => {}
        }
    }
}

/// Why git cannot execute `path`, and a fix more direct than configuring again, if there is one.
fn unusable(path: &Path) -> Option<(String, Option<String>)> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(("does not exist".into(), None));
        }
        Err(e) => return Some((format!("cannot be read ({e})"), None)),
    };
    if !meta.is_file() {
        return Some(("is not a regular file".into(), None));
    }
    let mode = meta.permissions().mode();
    // The execute bit that applies to us: the owner's when we own it, any other otherwise
    // (group membership is not worth a lookup here); root may run anything with any bit.
    let uid = molecule_credential::store::current_uid();
    let bits = match (uid, std::os::unix::fs::MetadataExt::uid(&meta)) {
        (0, _) => 0o111,
        (me, owner) if me == owner => 0o100,
        _ => 0o011,
    };
    (mode & bits == 0).then(|| {
        (
            format!("is not executable (mode {:03o})", mode & 0o777),
            Some(format!(
                "chmod 755 {}",
                shell_quote(&path.display().to_string())
            )),
        )
    })
}

/// The `configure` flags that write where the entry `origin` (`scope file:PATH`) came from:
/// none for the global config (configure's default).
fn configure_scope(origin: &str) -> String {
    let (scope, source) = origin.split_once(' ').unwrap_or((origin, ""));
    match (scope, source.strip_prefix("file:")) {
        ("system", _) => " --system".into(),
        ("global", _) | (_, None) => String::new(),
        (_, Some(path)) => format!(" --file {}", shell_quote(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configure_writes_where_the_entry_was() {
        assert_eq!(configure_scope("system file:/etc/gitconfig"), " --system");
        assert_eq!(configure_scope("global file:/root/.gitconfig"), "");
        assert_eq!(
            configure_scope("local file:.git/config"),
            " --file .git/config"
        );
        assert_eq!(configure_scope("command command line:"), "");
    }

    #[test]
    fn unusable_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("git-credential-molecule");
        assert_eq!(
            unusable(&file).map(|u| u.0).as_deref(),
            Some("does not exist")
        );
        std::fs::write(&file, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let (why, fix) = unusable(&file).expect("not executable");
        assert_eq!(why, "is not executable (mode 644)");
        assert_eq!(fix, Some(format!("chmod 755 {}", file.display())));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(unusable(&file), None);
        assert_eq!(
            unusable(dir.path()).map(|u| u.0).as_deref(),
            Some("is not a regular file")
        );
    }
}
