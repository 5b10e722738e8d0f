//! Opening the files this project reads, without ever blocking on them: a FIFO, socket, device
//! or directory where a file belongs is refused at once, naming the path (DESIGN.md, "Files in
//! the cache directory"); files of our own must also be private, as ssh wants its keys.
//!
//! A leaf: it uses nothing of the crate but [`crate::error`], so the cache directory
//! ([`crate::store`]), secret files ([`crate::secret`]) and the fallback file
//! ([`crate::fallback`]) can all build on it without depending on one another.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Class, Error, Result};

/// No file we read comes near this; a larger one is not ours.
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// The effective user ID, for ownership checks.
#[expect(unsafe_code, reason = "geteuid has no preconditions and cannot fail")]
pub fn current_uid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments, touches no memory we own and always succeeds.
    unsafe { libc::geteuid() }
}

/// A filesystem error of class local-config, naming what we were doing and where.
pub(crate) fn local(doing: &str, path: &Path, err: &io::Error) -> Error {
    Error::io(Class::LocalConfig, doing, path, err)
}

/// What a file that is not a regular file is, for messages.
fn kind_of(file_type: fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device"
    } else if file_type.is_symlink() {
        "a symlink"
    } else {
        "not a file"
    }
}

/// The error for something other than a regular file where one belongs.
pub(crate) fn not_regular(path: &Path, file_type: fs::FileType) -> Error {
    Error::new(
        Class::LocalConfig,
        format!(
            "{} is not a regular file ({}); remove it",
            path.display(),
            kind_of(file_type)
        ),
    )
}

/// Refuses metadata that is not ours alone (ssh's rule): wrong owner, or any group/other bit.
pub(crate) fn check_private(path: &Path, meta: &fs::Metadata, what: &str, uid: u32) -> Result<()> {
    if meta.uid() != uid {
        return Err(Error::new(
            Class::LocalConfig,
            format!(
                "{what} {} is owned by uid {}, not by the current user (uid {uid}); refusing to use it",
                path.display(),
                meta.uid()
            ),
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        let want = if meta.is_dir() { "700" } else { "600" };
        return Err(Error::new(
            Class::LocalConfig,
            format!(
                "{what} {} is accessible by group or others (mode {mode:03o}); run chmod {want} on it",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Whether symlinks are followed when opening.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    /// Refuse a symlink (the cache's files: ours alone, never redirected).
    Refuse,
    /// Follow it (secrets mounted by an orchestrator: Kubernetes projects them as symlinks).
    Follow,
}

/// Opens `path` without blocking whatever it is, and refuses anything but a regular file: a
/// FIFO, socket, device or directory in its place is reported at once, naming the path (a
/// blocking open of a FIFO waits for a writer forever). `Ok(None)` when it does not exist.
pub fn open_regular(
    path: &Path,
    options: &mut OpenOptions,
    links: Links,
) -> Result<Option<(File, fs::Metadata)>> {
    let nofollow = match links {
        Links::Refuse => libc::O_NOFOLLOW,
        Links::Follow => 0,
    };
    let opened = options
        .custom_flags(nofollow | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) && links == Links::Refuse => {
            return Err(Error::new(
                Class::LocalConfig,
                format!("{} is a symlink; refusing to follow it", path.display()),
            ));
        }
        // A socket cannot be opened (ENXIO), nor a directory for writing (EISDIR), nor a FIFO
        // for writing without a reader (ENXIO): say what is there instead.
        Err(e) => {
            return Err(match fs::symlink_metadata(path) {
                Ok(m) if !m.is_file() => not_regular(path, m.file_type()),
                _ => local("opening", path, &e),
            });
        }
    };
    let meta = file.metadata().map_err(|e| local("inspecting", path, &e))?;
    if !meta.is_file() {
        return Err(not_regular(path, meta.file_type()));
    }
    Ok(Some((file, meta)))
}

/// Opens a file we own for reading without following symlinks and checks it is private.
/// `Ok(None)` when it does not exist.
pub fn open_private_file(path: &Path) -> Result<Option<File>> {
    open_private(path, OpenOptions::new().read(true), current_uid())
}

pub(crate) fn open_private(
    path: &Path,
    options: &mut OpenOptions,
    uid: u32,
) -> Result<Option<File>> {
    let Some((file, meta)) = open_regular(path, options, Links::Refuse)? else {
        return Ok(None);
    };
    check_private(path, &meta, "file", uid)?;
    Ok(Some(file))
}

/// Reads a whole private file (at most a few MiB). `Ok(None)` when it does not exist.
pub fn read_private_file(path: &Path) -> Result<Option<Vec<u8>>> {
    let Some(file) = open_private_file(path)? else {
        return Ok(None);
    };
    read_capped(file, path).map(Some)
}

/// Reads at most a few MiB of an opened file.
pub fn read_capped(file: File, path: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(2048);
    file.take(MAX_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| local("reading", path, &e))?;
    if buf.len() as u64 > MAX_FILE {
        return Err(Error::new(
            Class::LocalConfig,
            format!("{} is larger than {MAX_FILE} bytes", path.display()),
        ));
    }
    Ok(buf)
}
