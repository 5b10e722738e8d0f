//! Secrets as a type: tokens and the platform bearer live in [`Secret`], whose `Debug` prints
//! `REDACTED` and which has no `Display`, so the only way to the bytes is a visible
//! [`Secret::expose`] at the site that truly needs them.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Class, Error, Result};
use crate::files::{Links, open_regular};

/// The largest secret file read: a bearer or a PEM key is a few KiB.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// A value that must never reach a log, an error message, a panic or argv.
#[derive(Clone, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself. Every call site is a place where the secret leaves our hands.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl Secret<String> {
    /// Length in bytes: what logs may say about a token.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares with `other` in time independent of where the first difference is, so that
    /// `erase` does not become an oracle for the cached token.
    pub fn eq_str(&self, other: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), other.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// `sha256:` and the first 12 hex digits of the secret's SHA-256: what a report may show,
    /// so that a reader can tell two tokens apart (gh's and the cache's, say) without seeing
    /// either. 48 bits of a hash of a high-entropy token give nothing to recover it from.
    pub fn fingerprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.0.as_bytes());
        let hex: String = digest.as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("sha256:{hex}")
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(REDACTED)")
    }
}

impl PartialEq for Secret<String> {
    fn eq(&self, other: &Self) -> bool {
        self.eq_str(&other.0)
    }
}

impl Eq for Secret<String> {}

/// Serde glue for the one document that must hold tokens in clear: `tokens.json`.
/// Used field by field (`#[serde(with = "crate::secret::exposed")]`) so that serialising a secret
/// is always a visible decision, never a derive that happens to reach one.
pub mod exposed {
    use super::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the secret's value.
    pub fn serialize<S: Serializer>(secret: &Secret<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(secret.expose())
    }

    /// Reads a secret value.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret<String>, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// Whether `token` can be handed to git and gh as is: non-empty, visible ASCII only.
///
/// A token travels inside git's line protocol and on gh's stdin; a CR, LF, NUL or space in it
/// would let whoever produced it inject protocol lines (`host=`, `url=`) into what we print.
/// GitHub's tokens are `ghs_` plus letters, digits, `_`, `.` and `-`, of any length.
pub fn is_valid_token(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

/// Reads a secret file that someone else provisions (the platform bearer, the GitHub App's
/// private key). Symlinks are followed (Kubernetes projects secrets through them); it must be a
/// regular file (checked without blocking). A file its group or others may read is still used,
/// with one warning per process naming it ([`Exposure`]): a Kubernetes secret volume is 0644
/// unless `defaultMode` says otherwise, and refusing it broke deployments instead of protecting
/// anything. (What this project creates itself, the cache and its files, is held to the strict
/// rule in `store`.) Errors name the file and `what` it holds.
pub fn read_file(path: &Path, what: &str) -> Result<Secret<Vec<u8>>> {
    let Some((file, meta)) =
        open_regular(path, std::fs::OpenOptions::new().read(true), Links::Follow)?
    else {
        return Err(Error::new(
            Class::LocalConfig,
            format!("{} ({what}) does not exist", path.display()),
        ));
    };
    if let Some(exposure) = Exposure::of(path, meta.permissions().mode())
        && first_time(path)
    {
        tracing::warn!("{}", exposure.warning(what));
    }
    let mut bytes = Vec::with_capacity(4096);
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(Class::LocalConfig, "reading", path, &e))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(Error::new(
            Class::LocalConfig,
            format!(
                "{} ({what}) is larger than {MAX_SECRET_FILE} bytes",
                path.display()
            ),
        ));
    }
    Ok(Secret::new(bytes))
}

/// Who besides its owner may read a provisioned secret file, and how to stop it: what
/// [`read_file`] warns about and `doctor` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exposure {
    /// The file, as given.
    pub path: PathBuf,
    /// Its permission bits (`0o644`).
    pub mode: u32,
    /// Who else may read it: `its group`, `everyone`, or `its group and everyone`.
    pub readers: &'static str,
    /// The fix, for a plain file and for a Kubernetes secret volume.
    pub fix: String,
}

impl Exposure {
    /// The exposure of the provisioned secret file at `path` (symlinks followed, as
    /// [`read_file`] does): `None` when only its owner may read it. For `doctor`.
    pub fn of_file(path: &Path) -> std::io::Result<Option<Self>> {
        Ok(Self::of(
            path,
            std::fs::metadata(path)?.permissions().mode(),
        ))
    }

    /// The exposure of a file at `path` with permission bits `mode`.
    pub fn of(path: &Path, mode: u32) -> Option<Self> {
        let mode = mode & 0o777;
        let readers = match (mode & 0o040 != 0, mode & 0o004 != 0) {
            (false, false) => return None,
            (true, false) => "its group",
            (false, true) => "everyone",
            (true, true) => "its group and everyone",
        };
        Some(Self {
            path: path.to_owned(),
            mode,
            readers,
            fix: format!(
                "chmod 600 {} (a Kubernetes secret volume: defaultMode: 0400)",
                path.display()
            ),
        })
    }

    /// The warning for a file that holds `what`: names the file, never its content.
    pub fn warning(&self, what: &str) -> String {
        format!(
            "{} ({what}) is readable by {} (mode {:03o}); it is used anyway. To keep it \
             private: {}",
            self.path.display(),
            self.readers,
            self.mode,
            self.fix
        )
    }
}

/// True the first time `path` is asked about in this process.
fn first_time(path: &Path) -> bool {
    static SEEN: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
    SEEN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("ghs_abc".to_owned());
        assert_eq!(format!("{s:?}"), "Secret(REDACTED)");
        assert_eq!(format!("{:?}", Some(&s)), "Some(Secret(REDACTED))");
    }

    #[test]
    fn constant_time_compare_is_equality() {
        let s = Secret::new("ghs_abc".to_owned());
        assert!(s.eq_str("ghs_abc"));
        assert!(!s.eq_str("ghs_abd"));
        assert!(!s.eq_str("ghs_ab"));
        assert!(!s.eq_str(""));
    }

    #[test]
    fn fingerprints_are_short_sha256() {
        // printf %s abc | sha256sum → ba7816bf8f01cfea…
        assert_eq!(
            Secret::new("abc".to_owned()).fingerprint(),
            "sha256:ba7816bf8f01"
        );
        assert_ne!(
            Secret::new("ghs_a".to_owned()).fingerprint(),
            Secret::new("ghs_b".to_owned()).fingerprint()
        );
    }

    #[test]
    fn provisioned_files_are_used_whatever_their_mode_and_must_be_regular() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bearer");
        std::fs::write(&file, "b-1\n").unwrap();
        let mode = |m| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(m)).unwrap();
        // A Kubernetes secret volume's default (0644), fsGroup's 0440, and private modes.
        for m in [0o644, 0o444, 0o440, 0o640, 0o600, 0o400] {
            mode(m);
            assert_eq!(read_file(&file, "x").unwrap().expose(), b"b-1\n", "{m:o}");
        }
        // Followed through a symlink, as Kubernetes mounts secrets.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_file(&link, "x").unwrap().expose(), b"b-1\n");
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let e = read_file(&fifo, "x").unwrap_err();
        assert!(e.message().contains("not a regular file (a FIFO)"), "{e}");
        let e = read_file(&dir.path().join("missing"), "the platform bearer").unwrap_err();
        assert!(e.message().contains("does not exist"), "{e}");
    }

    #[test]
    fn exposure_says_who_can_read_and_the_fix() {
        let path = Path::new("/configs/.auth_token");
        assert_eq!(Exposure::of(path, 0o100_600), None);
        assert_eq!(Exposure::of(path, 0o400), None);
        let e = Exposure::of(path, 0o100_644).unwrap();
        assert_eq!((e.mode, e.readers), (0o644, "its group and everyone"));
        assert_eq!(
            e.warning("the platform bearer"),
            "/configs/.auth_token (the platform bearer) is readable by its group and everyone \
             (mode 644); it is used anyway. To keep it private: chmod 600 /configs/.auth_token \
             (a Kubernetes secret volume: defaultMode: 0400)"
        );
        assert_eq!(Exposure::of(path, 0o440).unwrap().readers, "its group");
        assert_eq!(Exposure::of(path, 0o604).unwrap().readers, "everyone");
        // From the file itself, through a symlink.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key.pem");
        std::fs::write(&file, "k").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(Exposure::of_file(&link).unwrap().unwrap().mode, 0o644);
        assert!(Exposure::of_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn token_validity() {
        assert!(is_valid_token("ghs_AZaz09._-"));
        for bad in [
            "",
            "ghs_a b",
            "ghs_a\nhost=evil",
            "ghs_\r",
            "ghs_\0",
            "ghs_é",
        ] {
            assert!(!is_valid_token(bad), "{bad:?} must be rejected");
        }
    }
}
