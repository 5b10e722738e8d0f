//! The single source of truth of which tokens are valid right now. The platform stand-in
//! issues tokens into it; the git and GitHub Enterprise stand-ins check against it; tests
//! expire or revoke tokens in it to force the helper through rotation and rejection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::RngExt;
use time::OffsetDateTime;

/// Characters of a new-style GitHub installation token after its `ghs_` prefix.
const TOKEN_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";

/// Length of the random part: GitHub's newer installation tokens run to about 500
/// characters, far past the 40 of the classic shape, and helpers must not truncate them.
const TOKEN_BODY_LEN: usize = 500;

/// A freshly issued token and the instant it stops being valid.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    /// The token: `ghs_` followed by random characters from `[A-Za-z0-9._-]`.
    pub token: String,
    /// When the token stops being accepted.
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for Issued {
    // Tokens must never reach test output, not even through a failed assertion.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("token", &format_args!("<{} chars>", self.token.len()))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Shared registry of valid tokens, cheap to clone (all clones see the same state).
#[derive(Clone, Default)]
pub struct TokenAuthority {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    tokens: Mutex<HashMap<String, OffsetDateTime>>,
    accepted: AtomicU64,
    rejected: AtomicU64,
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthority")
            .field("known", &self.tokens().len())
            .field("accepted", &self.accepted())
            .field("rejected", &self.rejected())
            .finish()
    }
}

impl TokenAuthority {
    /// An authority that knows no token.
    pub fn new() -> TokenAuthority {
        TokenAuthority::default()
    }

    /// Mints a new random token valid from now for `ttl`, and records it.
    pub fn issue(&self, ttl: Duration) -> Issued {
        let mut rng = rand::rng();
        let mut token = String::with_capacity(4 + TOKEN_BODY_LEN);
        token.push_str("ghs_");
        for _ in 0..TOKEN_BODY_LEN {
            let index = rng.random_range(0..TOKEN_ALPHABET.len());
            token.push(char::from(TOKEN_ALPHABET[index]));
        }
        let issued = Issued {
            token,
            expires_at: OffsetDateTime::now_utc() + ttl,
        };
        self.insert(&issued.token, issued.expires_at);
        issued
    }

    /// Records `token` as valid until `expires_at` (replacing any earlier expiry), e.g. a
    /// fixed token a test wants to hand out itself, or one whose expiry it moves.
    pub fn insert(&self, token: &str, expires_at: OffsetDateTime) {
        self.tokens().insert(token.to_owned(), expires_at);
    }

    /// Forgets `token`: from now on it is rejected, as after a revocation on GitHub.
    pub fn revoke(&self, token: &str) {
        self.tokens().remove(token);
    }

    /// Whether `token` is known and not yet expired. Counts the check as accepted or
    /// rejected.
    pub fn is_valid(&self, token: &str) -> bool {
        let valid = self
            .tokens()
            .get(token)
            .is_some_and(|&expires_at| OffsetDateTime::now_utc() < expires_at);
        let counter = if valid {
            &self.inner.accepted
        } else {
            &self.inner.rejected
        };
        counter.fetch_add(1, Ordering::Relaxed);
        valid
    }

    /// Number of checks that passed.
    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }

    /// Number of checks that failed.
    pub fn rejected(&self) -> u64 {
        self.inner.rejected.load(Ordering::Relaxed)
    }

    fn tokens(&self) -> MutexGuard<'_, HashMap<String, OffsetDateTime>> {
        // A panic while holding the lock cannot leave the map half-updated (every
        // operation is a single insert/remove/get), so a poisoned lock is still usable.
        self.inner
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_have_the_new_github_shape() {
        let authority = TokenAuthority::new();
        let issued = authority.issue(Duration::from_secs(60));
        assert!(issued.token.starts_with("ghs_"));
        assert_eq!(issued.token.len(), 4 + TOKEN_BODY_LEN);
        assert!(
            issued.token[4..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        );
        assert_ne!(issued, authority.issue(Duration::from_secs(60)));
    }

    #[test]
    fn validity_follows_expiry_and_revocation() {
        let authority = TokenAuthority::new();
        let live = authority.issue(Duration::from_secs(60));
        assert!(authority.is_valid(&live.token));
        assert!(!authority.is_valid("ghs_unknown"));
        authority.insert(
            &live.token,
            OffsetDateTime::now_utc() - Duration::from_secs(1),
        );
        assert!(!authority.is_valid(&live.token));
        let other = authority.issue(Duration::from_secs(60));
        authority.revoke(&other.token);
        assert!(!authority.is_valid(&other.token));
        assert_eq!((authority.accepted(), authority.rejected()), (1, 3));
    }
}
