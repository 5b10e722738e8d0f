//! The fallback token (DESIGN.md, "Token sources, in order", step 3): `GH_TOKEN`, then
//! `GITHUB_TOKEN`, then `MOLECULE_FALLBACK_TOKEN_FILE`.
//!
//! Used only when the primary source fails; never cached as if it came from the platform;
//! served without an expiry because we do not know it.

use crate::config::{Config, vars};
use crate::error::{Class, Error, Result};
use crate::files::read_private_file;
use crate::secret::{Secret, is_valid_token};

/// A fallback token and where it came from.
#[derive(Clone, Debug)]
pub struct Fallback {
    /// The token.
    pub token: Secret<String>,
    /// `GH_TOKEN`, `GITHUB_TOKEN` or `fallback file`: what logs may say about it.
    pub origin: &'static str,
}

/// The first usable fallback token, if any. A fallback file that is a symlink, not ours, or
/// readable by others is an error (it holds a token, so it gets the cache's rules); one that
/// is not a regular file at all is skipped with a warning.
pub fn fallback_token(config: &Config) -> Result<Option<Fallback>> {
    for (origin, value) in [
        (vars::GH_TOKEN, &config.gh_token),
        (vars::GITHUB_TOKEN, &config.github_token),
    ] {
        if let Some(token) = value.as_ref().filter(|t| is_valid_token(t.expose().trim())) {
            return Ok(Some(Fallback {
                token: Secret::new(token.expose().trim().to_owned()),
                origin,
            }));
        }
    }
    let path = &config.fallback_token_file;
    // A FIFO, socket or directory there is a local mess, not a token: skip it, say so.
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && !meta.is_file()
        && !meta.file_type().is_symlink()
    {
        tracing::warn!(
            "skipping the fallback file {}: it is not a regular file",
            path.display()
        );
        return Ok(None);
    }
    let Some(bytes) = read_private_file(path)? else {
        return Ok(None);
    };
    // The cause kept is the position only: a FromUtf8Error holds the bytes themselves.
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::new(
            Class::LocalConfig,
            format!("{} is not UTF-8", path.display()),
        )
        .with_source(e.utf8_error())
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Ok(None);
    }
    if !is_valid_token(token) {
        return Err(Error::new(
            Class::LocalConfig,
            format!(
                "{} does not hold a token (one line, no spaces)",
                path.display()
            ),
        ));
    }
    Ok(Some(Fallback {
        token: Secret::new(token.to_owned()),
        origin: "fallback file",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn config(pairs: &[(&str, &str)], file: &std::path::Path) -> Config {
        let mut c = Config::load(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
        .config;
        c.fallback_token_file = file.to_owned();
        c
    }

    #[test]
    fn order_is_gh_token_github_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fallback-token");
        std::fs::write(&file, "ghs_file\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();

        let f = fallback_token(&config(
            &[("GH_TOKEN", "ghs_a"), ("GITHUB_TOKEN", "ghs_b")],
            &file,
        ))
        .unwrap()
        .unwrap();
        assert_eq!((f.origin, f.token.expose().as_str()), ("GH_TOKEN", "ghs_a"));
        let f = fallback_token(&config(&[("GITHUB_TOKEN", "ghs_b")], &file))
            .unwrap()
            .unwrap();
        assert_eq!(
            (f.origin, f.token.expose().as_str()),
            ("GITHUB_TOKEN", "ghs_b")
        );
        let f = fallback_token(&config(&[], &file)).unwrap().unwrap();
        assert_eq!(
            (f.origin, f.token.expose().as_str()),
            ("fallback file", "ghs_file")
        );
        // A malformed variable is skipped rather than served.
        let f = fallback_token(&config(&[("GH_TOKEN", "a b")], &file))
            .unwrap()
            .unwrap();
        assert_eq!(f.origin, "fallback file");
    }

    #[test]
    fn none_and_insecure_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fallback-token");
        assert!(fallback_token(&config(&[], &file)).unwrap().is_none());
        std::fs::write(&file, "ghs_file\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = fallback_token(&config(&[], &file)).unwrap_err();
        assert_eq!(e.class(), Class::LocalConfig);
    }
}
