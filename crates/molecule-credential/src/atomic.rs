//! Replacing a file so that no reader ever sees it empty, partial or mixed: the whole content
//! goes to a temp file in the same directory, which is fsynced and renamed over the target.
//! The one way this project writes a file others read: `tokens.json` and the daemon's status
//! (through [`crate::store`]), the daemon's token files (sinks) and its metrics textfile.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Prefix and suffix of temp files, so a killed writer's leftovers can be recognised.
pub const TEMP_PREFIX: &str = ".tmp-";
/// See [`TEMP_PREFIX`].
pub const TEMP_SUFFIX: &str = ".partial";

/// How the replacement is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replace {
    /// The new file's mode, exactly (set on the descriptor, so the umask has no say).
    pub mode: u32,
    /// The group to give it (the owner is whoever writes).
    pub gid: Option<u32>,
    /// Also fsync the directory, so the rename itself survives a crash (the cache's files);
    /// a file rewritten at every event can skip it.
    pub sync_dir: bool,
}

/// Replaces `path` with `bytes` as `how` says. The directory must exist. On error the target
/// is untouched and the temp file is gone.
pub fn replace(path: &Path, bytes: &[u8], how: Replace) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    if let Some(gid) = how.gid {
        std::os::unix::fs::fchown(tmp.as_file(), None, Some(gid))?;
    }
    // After the chown: changing the group may clear set-id bits, and the mode must be exact.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(how.mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if how.sync_dir {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_mode_is_exact_whatever_the_umask_and_nothing_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("metrics.prom");
        for (mode, text) in [(0o644, "one\n"), (0o600, "two\n")] {
            replace(
                &target,
                text.as_bytes(),
                Replace {
                    mode,
                    gid: None,
                    sync_dir: false,
                },
            )
            .unwrap();
            let meta = fs::metadata(&target).unwrap();
            assert_eq!(meta.mode() & 0o7777, mode);
            assert_eq!(fs::read_to_string(&target).unwrap(), text);
        }
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["metrics.prom"]);
        let missing = dir.path().join("no/such/dir/file");
        let how = Replace {
            mode: 0o600,
            gid: None,
            sync_dir: true,
        };
        assert!(replace(&missing, b"x", how).is_err());
    }
}
