//! Secrets as a type: tokens and the platform bearer live in [`Secret`], whose `Debug` prints
//! `REDACTED` and which has no `Display`, so the only way to the bytes is a visible
//! [`Secret::expose`] at the site that truly needs them.

use std::fmt;

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
