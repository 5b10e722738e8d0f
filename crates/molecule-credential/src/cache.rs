//! The token cache as data: the `tokens.json` document, its entries, and the rules that decide
//! what may be served and what may replace what (DESIGN.md, "Files in the cache directory").
//!
//! Pure: no file, lock or clock is touched here. [`crate::store`] reads and writes the
//! document under its locks; everything that decides uses the functions below.
//!
//! - An entry is [fresh](Entry::is_fresh) while more than the margin is left, and
//!   [usable](Entry::is_usable) (servable as a degraded answer) until it expires; a suspect
//!   entry (a server rejected it) is neither.
//! - [`should_replace`] is the compare-and-swap rule every write goes through.
//! - [`Entry::from_minted`] is the one conversion of a minted token into an entry.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::error::{Class, Error, JsonPosition, Result};
use crate::secret::Secret;
use crate::token::Minted;

/// The token cache document's file name in the cache directory.
pub const TOKENS_FILE: &str = "tokens.json";
/// The version of [`TOKENS_FILE`] this build reads and writes.
pub const DOCUMENT_VERSION: u32 = 1;
/// `source` of entries minted by the platform.
pub const SOURCE_PLATFORM: &str = "platform";
/// `source` of entries minted straight from a GitHub App.
pub const SOURCE_GITHUB_APP: &str = "github-app";
/// `source` of entries read by the file source.
pub const SOURCE_FILE: &str = "file";
/// `source` of entries that came from the fallback token.
pub const SOURCE_FALLBACK: &str = "fallback";

/// `tokens.json`. Unknown fields are kept on rewrite and otherwise ignored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Document {
    /// Always [`DOCUMENT_VERSION`].
    pub version: u32,
    /// Keyed by lower-case host, with `:port` when not 443 (`HOST/OWNER` for owner routing).
    #[serde(default)]
    pub entries: BTreeMap<String, Entry>,
    /// Fields a newer writer added.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Document {
    /// Parses a `tokens.json` document read from `path` (named in errors, which give the
    /// position only, never content).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        // serde_json's messages can quote the offending value, which may be a token: report
        // only the position.
        let doc: Document = serde_json::from_slice(bytes).map_err(|e| {
            Error::new(
                Class::LocalConfig,
                format!(
                    "{} is not a valid token cache ({:?} error at line {}, column {}); remove it to start over",
                    path.display(),
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            )
            .with_source(JsonPosition::from(&e))
        })?;
        // A token read back goes into git's line protocol as is: one with a newline would
        // inject lines, whoever wrote the file.
        if let Some(host) = doc
            .entries
            .iter()
            .find(|(_, e)| !crate::secret::is_valid_token(e.token.expose()))
            .map(|(h, _)| h)
        {
            return Err(Error::new(
                Class::LocalConfig,
                format!(
                    "{}: the entry for {host} holds a malformed token; remove the file to start over",
                    path.display()
                ),
            ));
        }
        if doc.version != DOCUMENT_VERSION {
            return Err(Error::new(
                Class::LocalConfig,
                format!(
                    "{} has version {}; this build understands version {DOCUMENT_VERSION}",
                    path.display(),
                    doc.version
                ),
            ));
        }
        Ok(doc)
    }

    /// [`Document::parse`] for bytes with no file behind them (fuzzing, tests).
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        Self::parse(bytes, Path::new(TOKENS_FILE))
    }

    /// The bytes written to `tokens.json` for this document.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| {
            Error::new(Class::LocalConfig, "serialising the token cache failed").with_source(e)
        })?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

impl Default for Document {
    fn default() -> Self {
        Self {
            version: DOCUMENT_VERSION,
            entries: BTreeMap::new(),
            extra: Map::new(),
        }
    }
}

/// One cached token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// The token itself.
    #[serde(with = "crate::secret::exposed")]
    pub token: Secret<String>,
    /// When the token dies (the source's `expires_at`, or a bounded guess when it gave none).
    #[serde(with = "crate::clock::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// When we obtained it.
    #[serde(with = "crate::clock::rfc3339")]
    pub fetched_at: OffsetDateTime,
    /// `platform`, `github-app`, or `fallback`.
    pub source: String,
    /// Set by `erase`: a server rejected this token, so it is never served from the cache again.
    #[serde(default)]
    pub suspect: bool,
    /// The GitHub App installation that minted it (`github-app` source): also the remembered
    /// answer of installation discovery for this owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    /// Fields a newer writer added.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Entry {
    /// A new, unsuspected entry.
    pub fn new(
        token: Secret<String>,
        expires_at: OffsetDateTime,
        fetched_at: OffsetDateTime,
        source: &str,
    ) -> Self {
        Self {
            token,
            expires_at,
            fetched_at,
            source: source.to_owned(),
            suspect: false,
            installation_id: None,
            extra: Map::new(),
        }
    }

    /// The entry for a token `source` minted at `fetched_at`: every field of the mint that the
    /// cache keeps (destructured whole, so a new field cannot be dropped unnoticed).
    pub fn from_minted(minted: Minted, source: &str, fetched_at: OffsetDateTime) -> Self {
        let Minted {
            token,
            expires_at,
            expiry_known: _,
            status: _,
            installation_id,
        } = minted;
        Self {
            installation_id,
            ..Self::new(token, expires_at, fetched_at, source)
        }
    }

    /// Whether this entry may be served as fresh at `now`: not suspect, and more than `margin`
    /// before expiry.
    pub fn is_fresh(&self, now: OffsetDateTime, margin: Duration) -> bool {
        !self.suspect && now + margin < self.expires_at
    }

    /// Whether this entry may still be served in a degraded answer: not suspect, not expired.
    pub fn is_usable(&self, now: OffsetDateTime) -> bool {
        !self.suspect && now < self.expires_at
    }
}

/// The compare-and-swap rule for offering `new` where `old` is cached.
///
/// - Nothing cached: write.
/// - A fallback token never replaces a token from a real source, and always gives way to one.
/// - A suspect entry (a server rejected it) gives way to anything else from a real source,
///   including the same token fetched again, which clears the flag.
/// - Otherwise the later `expires_at` wins; equal expiry takes the newer fetch.
pub fn should_replace(old: Option<&Entry>, new: &Entry) -> bool {
    let Some(old) = old else { return true };
    match (old.source == SOURCE_FALLBACK, new.source == SOURCE_FALLBACK) {
        (false, true) => return false,
        (true, false) => return true,
        _ => {}
    }
    if old.suspect {
        return true;
    }
    new.expires_at >= old.expires_at
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::parse_rfc3339;

    /// Documents that must be refused, and what the refusal says (never their content).
    pub(crate) const CORRUPT: [(&str, &str); 4] = [
        (r#"{"version":"ghs_SECRET"}"#, "not a valid token cache"),
        ("{not json", "not a valid token cache"),
        (r#"{"version":2,"entries":{}}"#, "has version 2"),
        (
            r#"{"version":1,"entries":{"github.com":{"token":"ghs_x\nhost=evil","expires_at":"2099-01-01T00:00:00Z","fetched_at":"2026-01-01T00:00:00Z","source":"platform"}}}"#,
            "malformed token",
        ),
    ];

    /// An RFC 3339 literal.
    pub(crate) fn t(s: &str) -> OffsetDateTime {
        parse_rfc3339(s).unwrap()
    }

    /// An entry fetched at 18:00 on the test day.
    pub(crate) fn entry(token: &str, expires: &str, source: &str) -> Entry {
        Entry::new(
            Secret::new(token.to_owned()),
            t(expires),
            t("2026-11-22T18:00:00Z"),
            source,
        )
    }

    #[test]
    fn cas_rule() {
        let old = entry("a", "2026-11-22T19:00:00Z", SOURCE_PLATFORM);
        assert!(should_replace(None, &old));
        assert!(should_replace(
            Some(&old),
            &entry("b", "2026-11-22T19:30:00Z", SOURCE_PLATFORM)
        ));
        assert!(should_replace(
            Some(&old),
            &entry("b", "2026-11-22T19:00:00Z", SOURCE_PLATFORM)
        ));
        assert!(!should_replace(
            Some(&old),
            &entry("b", "2026-11-22T18:59:59Z", SOURCE_PLATFORM)
        ));
        assert!(!should_replace(
            Some(&old),
            &entry("f", "2099-01-01T00:00:00Z", SOURCE_FALLBACK)
        ));
        let mut suspect = old.clone();
        suspect.suspect = true;
        assert!(should_replace(
            Some(&suspect),
            &entry("a", "2026-11-22T19:00:00Z", SOURCE_PLATFORM)
        ));
        assert!(should_replace(
            Some(&suspect),
            &entry("b", "2026-11-22T18:00:00Z", SOURCE_PLATFORM)
        ));
        assert!(!should_replace(
            Some(&suspect),
            &entry("f", "2099-01-01T00:00:00Z", SOURCE_FALLBACK)
        ));
        let fb = entry("f", "2026-11-22T19:00:00Z", SOURCE_FALLBACK);
        assert!(should_replace(
            Some(&fb),
            &entry("a", "2026-11-22T18:30:00Z", SOURCE_PLATFORM)
        ));
        assert!(should_replace(
            Some(&fb),
            &entry("a", "2026-11-22T19:30:00Z", SOURCE_PLATFORM)
        ));
    }

    #[test]
    fn freshness() {
        let e = entry("a", "2026-11-22T19:00:00Z", SOURCE_PLATFORM);
        let margin = Duration::from_secs(300);
        assert!(e.is_fresh(t("2026-11-22T18:54:59Z"), margin));
        assert!(!e.is_fresh(t("2026-11-22T18:55:00Z"), margin));
        assert!(e.is_usable(t("2026-11-22T18:59:59Z")));
        assert!(!e.is_usable(t("2026-11-22T19:00:00Z")));
        let mut s = e.clone();
        s.suspect = true;
        assert!(!s.is_fresh(t("2026-11-22T18:00:00Z"), margin));
        assert!(!s.is_usable(t("2026-11-22T18:00:00Z")));
    }

    #[test]
    fn a_minted_token_keeps_every_field_the_cache_holds() {
        // Regression: one of two conversions dropped the installation, so discovery ran again
        // for every token the daemon minted.
        let minted = Minted {
            token: Secret::new("ghs_m".into()),
            expires_at: t("2026-11-22T19:00:00Z"),
            expiry_known: true,
            status: Some(201),
            installation_id: Some(42),
        };
        let e = Entry::from_minted(minted, SOURCE_GITHUB_APP, t("2026-11-22T18:00:00Z"));
        assert!(e.token.eq_str("ghs_m"));
        assert_eq!(e.expires_at, t("2026-11-22T19:00:00Z"));
        assert_eq!(e.fetched_at, t("2026-11-22T18:00:00Z"));
        assert_eq!(e.source, SOURCE_GITHUB_APP);
        assert_eq!(e.installation_id, Some(42));
        assert!(!e.suspect);
    }

    #[test]
    fn corrupt_or_future_documents_are_errors_without_content() {
        for (raw, want) in CORRUPT {
            let e = Document::from_slice(raw.as_bytes()).unwrap_err();
            assert!(e.message().contains(want), "{e}");
            assert!(!e.message().contains("SECRET"), "{e}");
        }
    }
}
