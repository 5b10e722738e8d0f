//! The file source (DESIGN.md, "The file source"): installation tokens another system keeps
//! fresh in a file (a Kubernetes Secret kept by External Secrets Operator or
//! github-token-manager, a Vault Agent template, another daemon's sink), so a fleet mints once
//! for many pods.
//!
//! - Every mint reads the file again: the platform's JSON shape (`{"token", "expires_at"}`,
//!   other keys ignored) or a bare token, whose expiry is unknown and which is cached for at
//!   most [`UNKNOWN_EXPIRY_LIFETIME`](crate::token::UNKNOWN_EXPIRY_LIFETIME).
//! - Symlinks are followed: Kubernetes swaps a `..data` symlink atomically, and a reader that
//!   opens the path always sees a whole file, old or new.
//! - The file is provisioned by someone else: the secret-file rule applies
//!   ([`crate::secret::read_file`]).
//! - A token equal to one a server rejected (marked suspect by `erase`) is not served again:
//!   class transient ("the source has not rotated yet"), so the fallback applies and the
//!   daemon retries on its backoff series until the file holds a new token.
//! - A missing file is class not-configured: nothing has provisioned it (yet).

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::cache::Entry;
use crate::error::{Class, Error, Result};
use crate::secret::read_file;
use crate::token::{Minted, checked_token, minted, parse_token_json};

/// How messages name the source.
const WHO: &str = "the token source file";

/// A token file.
#[derive(Clone, Debug)]
pub struct FileSource {
    path: PathBuf,
}

impl FileSource {
    /// The file source reading `path` (`MOLECULE_TOKEN_SOURCE_FILE`), which must be set.
    pub fn new(path: Option<&Path>) -> Result<Self> {
        let path = path.ok_or_else(|| {
            Error::new(
                Class::LocalConfig,
                "MOLECULE_TOKEN_SOURCE=file needs MOLECULE_TOKEN_SOURCE_FILE (the token file's path)",
            )
        })?;
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the token the file holds now. `cached` is what the cache holds for the key: a
    /// token it marked suspect is refused until the file changes.
    pub fn read(&self, cached: Option<&Entry>, now: OffsetDateTime) -> Result<Minted> {
        let minted = self.parse(now)?;
        if cached.is_some_and(|e| e.suspect && e.token == minted.token) {
            return Err(Error::new(
                Class::Transient,
                format!(
                    "{} still holds the token a server rejected; waiting for it to rotate",
                    self.path.display()
                ),
            ));
        }
        Ok(minted)
    }

    /// Reads and parses the file, without the suspect rule (for `doctor`).
    pub fn parse(&self, now: OffsetDateTime) -> Result<Minted> {
        if !self.path.try_exists().unwrap_or(true) {
            return Err(Error::new(
                Class::NotConfigured,
                format!(
                    "{} ({WHO}) does not exist: nothing has provisioned it yet",
                    self.path.display()
                ),
            ));
        }
        let bytes = read_file(&self.path, WHO)?;
        let text = std::str::from_utf8(bytes.expose()).map_err(|_| {
            Error::new(
                Class::Protocol,
                format!("{} ({WHO}) is not UTF-8 text", self.path.display()),
            )
        })?;
        let text = text.trim();
        let parsed = if text.starts_with('{') {
            parse_token_json(text.as_bytes(), now, None, WHO)
        } else {
            checked_token(text.to_owned(), WHO).and_then(|t| minted(t, None, now, None, WHO))
        };
        parsed.map_err(|e| {
            Error::new(
                e.class(),
                format!("{}: {}", self.path.display(), e.message()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;
    use crate::clock::parse_rfc3339;
    use crate::token::UNKNOWN_EXPIRY_LIFETIME;
    use std::os::unix::fs::PermissionsExt;

    fn now() -> OffsetDateTime {
        parse_rfc3339("2026-12-06T20:00:00Z").unwrap()
    }

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[test]
    fn json_and_bare_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let source = FileSource::new(Some(&path)).unwrap();
        write(
            &path,
            r#"{"token":"ghs_json.A-1","expires_at":"2026-12-06T21:45:00+01:00","kind":"x"}"#,
        );
        let m = source.read(None, now()).unwrap();
        assert_eq!(m.token.expose(), "ghs_json.A-1");
        // +01:00: 20:45 UTC, 45 minutes from now; other keys ignored.
        assert_eq!(m.expires_at, parse_rfc3339("2026-12-06T20:45:00Z").unwrap());
        assert!(m.expiry_known);
        assert_eq!(m.status, None);
        write(&path, "  ghs_bare_token\n");
        let m = source.read(None, now()).unwrap();
        assert_eq!(m.token.expose(), "ghs_bare_token");
        assert_eq!(m.expires_at, now() + UNKNOWN_EXPIRY_LIFETIME);
        assert!(!m.expiry_known);
    }

    #[test]
    fn suspect_missing_and_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let source = FileSource::new(Some(&path)).unwrap();
        let e = source.read(None, now()).unwrap_err();
        assert_eq!(e.class(), Class::NotConfigured, "{e}");
        write(&path, "ghs_rejected");
        let mut cached = Entry::new(
            Secret::new("ghs_rejected".into()),
            now() + time::Duration::minutes(5),
            now(),
            "file",
        );
        cached.suspect = true;
        let e = source.read(Some(&cached), now()).unwrap_err();
        assert_eq!(e.class(), Class::Transient, "{e}");
        write(&path, "ghs_rotated");
        assert_eq!(
            source.read(Some(&cached), now()).unwrap().token.expose(),
            "ghs_rotated"
        );
        for bad in [
            "",
            "ghs_two words",
            "{\"token\":\"ghs_SECRET_x\"",
            "{\"expires_at\":null}",
        ] {
            write(&path, bad);
            let e = source.read(None, now()).unwrap_err();
            assert_eq!(e.class(), Class::Protocol, "{bad:?}: {e}");
            assert!(!e.to_string().contains("SECRET"), "{e}");
        }
        assert_eq!(
            FileSource::new(None).unwrap_err().class(),
            Class::LocalConfig
        );
    }

    #[test]
    fn symlinks_are_followed_like_a_kubernetes_secret_volume() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("..2026_12_06_v1");
        std::fs::create_dir(&v1).unwrap();
        write(&v1.join("token"), "ghs_v1");
        std::os::unix::fs::symlink("..2026_12_06_v1", dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/token", dir.path().join("token")).unwrap();
        let source = FileSource::new(Some(&dir.path().join("token"))).unwrap();
        assert_eq!(source.read(None, now()).unwrap().token.expose(), "ghs_v1");
    }
}
