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

use crate::configure::flags_writing_to;
use crate::gitconfig::Entry;
use crate::gitconfig::helper_value::{HelperProgram, helper_program, shell_quote};

use super::{Context, Findings, is_ours};

/// For each host, how git starts the first of our entries it asks; git is asked about the
/// lookup form at most once.
pub(super) fn check(cx: &Context<'_>, f: &mut Findings) {
    let mut lookup_works = None;
    for host in &cx.config.hosts {
        let helpers = cx.configured_helpers(host);
        let Some(ours) = helpers
            .iter()
            .find(|e| e.value.as_deref().is_some_and(is_ours))
        else {
            continue;
        };
        let value = ours.value.as_deref().unwrap_or_default();
        // Configuring again writes the absolute path of the binary that runs it.
        let configure = format!(
            "{} configure{} --host {host}",
            crate::NAME,
            flags_writing_to(ours)
        );
        match helper_program(value) {
            Some(HelperProgram::Lookup(_)) => {
                let works = *lookup_works.get_or_insert_with(|| {
                    cx.git
                        .run(&["credential-molecule", "--version"])
                        .is_ok_and(|o| o.status.success())
                });
                lookup(host, ours, works, configure, f);
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
                        ours.whence()
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

/// The lookup form `molecule`: advice when git finds `git credential-molecule` (it costs a
/// second git process per lookup), a problem when it does not.
fn lookup(host: &str, ours: &Entry, works: bool, configure: String, f: &mut Findings) {
    let value = ours.value.as_deref().unwrap_or_default();
    let whence = ours.whence();
    if works {
        f.advice(
            "helperPath",
            Some(host),
            format!(
                "`{value}` ({whence}) makes git start `git credential-molecule` for every lookup: a second git process before the helper runs; an absolute path skips it"
            ),
            configure,
        );
    } else {
        f.problem(
            "helperPath",
            Some(host),
            format!(
                "`{value}` ({whence}) makes git run `git credential-molecule`, which git cannot find on its exec path or PATH: git never reaches the helper"
            ),
            configure,
        );
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

#[cfg(test)]
mod tests {
    use super::*;

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
