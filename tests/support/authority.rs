//! The single source of truth of which tokens are valid right now. The platform stand-in
//! issues tokens into it; the git and GitHub Enterprise stand-ins check against it; tests
//! expire or revoke tokens in it to force the helper through rotation and rejection.
//!
//! A token may carry the scope GitHub gives an installation token: the account (owner) it
//! was issued for and, when narrowed, the repositories it may reach.
//! [`owner_scoped_rule`] turns that scope into a git server access rule.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::RngExt;
use time::OffsetDateTime;

use crate::git_server::AuthRule;

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
    tokens: Mutex<HashMap<String, Entry>>,
    accepted: AtomicU64,
    rejected: AtomicU64,
}

/// What the authority knows of one token.
struct Entry {
    expires_at: OffsetDateTime,
    /// The account the token was issued for; `None` for a token of no installation
    /// (from [`TokenAuthority::issue`] or [`TokenAuthority::insert`]).
    owner: Option<String>,
    /// The repositories a narrowed token may reach; `None` for all of the owner's.
    repositories: Option<Vec<String>>,
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

    /// Mints a new random token valid from now for `ttl`, and records it without an owner.
    pub fn issue(&self, ttl: Duration) -> Issued {
        self.mint(ttl, None, None)
    }

    /// As [`TokenAuthority::issue`], for the installation on account `owner` (an
    /// organization or user login): [`TokenAuthority::owner_of`] tells it back.
    pub fn issue_for(&self, owner: &str, ttl: Duration) -> Issued {
        self.mint(ttl, Some(owner.to_owned()), None)
    }

    /// As [`TokenAuthority::issue_for`], narrowed to `repositories` (names without the
    /// owner) when given, as a token minted with a `repositories` list on GitHub.
    pub fn issue_scoped(
        &self,
        owner: &str,
        ttl: Duration,
        repositories: Option<Vec<String>>,
    ) -> Issued {
        self.mint(ttl, Some(owner.to_owned()), repositories)
    }

    fn mint(
        &self,
        ttl: Duration,
        owner: Option<String>,
        repositories: Option<Vec<String>>,
    ) -> Issued {
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
        self.tokens().insert(
            issued.token.clone(),
            Entry {
                expires_at: issued.expires_at,
                owner,
                repositories,
            },
        );
        issued
    }

    /// Records `token` as valid until `expires_at` (replacing any earlier expiry), e.g. a
    /// fixed token a test wants to hand out itself, or one whose expiry it moves. A known
    /// token keeps its owner and repositories; a new one has none.
    pub fn insert(&self, token: &str, expires_at: OffsetDateTime) {
        self.tokens()
            .entry(token.to_owned())
            .and_modify(|entry| entry.expires_at = expires_at)
            .or_insert(Entry {
                expires_at,
                owner: None,
                repositories: None,
            });
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
            .is_some_and(|entry| OffsetDateTime::now_utc() < entry.expires_at);
        let counter = if valid {
            &self.inner.accepted
        } else {
            &self.inner.rejected
        };
        counter.fetch_add(1, Ordering::Relaxed);
        valid
    }

    /// The account `token` was issued for, whether or not it is still valid; `None` for an
    /// unknown token or one issued without an owner. Not counted as a check.
    pub fn owner_of(&self, token: &str) -> Option<String> {
        self.tokens().get(token)?.owner.clone()
    }

    /// The repositories a narrowed `token` may reach; `None` for an unknown token or one
    /// not narrowed (it reaches all of its owner's). Not counted as a check.
    pub fn repositories_of(&self, token: &str) -> Option<Vec<String>> {
        self.tokens().get(token)?.repositories.clone()
    }

    /// Number of checks that passed.
    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }

    /// Number of checks that failed.
    pub fn rejected(&self) -> u64 {
        self.inner.rejected.load(Ordering::Relaxed)
    }

    fn tokens(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock cannot leave the map half-updated (every
        // operation is a single insert/remove/get), so a poisoned lock is still usable.
        self.inner
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A git server access rule (for [`crate::GitServer::set_auth_rule`]) that accepts request
/// path `/OWNER/REPO[.git]/…` only with a valid token issued for `OWNER`
/// (compared case-insensitively, as GitHub compares logins), and, for a narrowed token,
/// only when `REPO` is one of its repositories (also case-insensitively). Tokens without
/// an owner are refused: a test that wants them accepted keeps the default rule.
pub fn owner_scoped_rule(authority: TokenAuthority) -> AuthRule {
    Box::new(move |path: &str, token: &str| {
        let mut segments = path.trim_start_matches('/').split('/');
        let owner = segments.next().unwrap_or_default();
        let repo = segments.next().unwrap_or_default();
        let repo = repo.strip_suffix(".git").unwrap_or(repo);
        if owner.is_empty() || repo.is_empty() {
            return false;
        }
        // Counted as a check even when the scope then refuses, as a real host first
        // authenticates the token and only then authorizes the repository.
        if !authority.is_valid(token) {
            return false;
        }
        let Some(token_owner) = authority.owner_of(token) else {
            return false;
        };
        token_owner.eq_ignore_ascii_case(owner)
            && authority
                .repositories_of(token)
                .is_none_or(|allowed| allowed.iter().any(|name| name.eq_ignore_ascii_case(repo)))
    })
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

    #[test]
    fn owners_and_repositories_are_recorded() {
        let authority = TokenAuthority::new();
        let plain = authority.issue(Duration::from_secs(60));
        let owned = authority.issue_for("acme", Duration::from_secs(60));
        let narrowed = authority.issue_scoped(
            "acme",
            Duration::from_secs(60),
            Some(vec!["app".to_owned()]),
        );
        assert_eq!(authority.owner_of(&plain.token), None);
        assert_eq!(authority.owner_of(&owned.token).as_deref(), Some("acme"));
        assert_eq!(authority.repositories_of(&owned.token), None);
        assert_eq!(
            authority.repositories_of(&narrowed.token),
            Some(vec!["app".to_owned()])
        );
        // Moving the expiry keeps the scope.
        authority.insert(
            &narrowed.token,
            OffsetDateTime::now_utc() + Duration::from_secs(120),
        );
        assert_eq!(authority.owner_of(&narrowed.token).as_deref(), Some("acme"));
        assert_eq!(authority.owner_of("ghs_unknown"), None);
        assert_eq!((authority.accepted(), authority.rejected()), (0, 0));
    }

    #[test]
    fn owner_scoped_rule_follows_owner_and_repositories() {
        let authority = TokenAuthority::new();
        let rule = owner_scoped_rule(authority.clone());
        let acme = authority.issue_for("Acme", Duration::from_secs(60)).token;
        let narrowed = authority
            .issue_scoped(
                "acme",
                Duration::from_secs(60),
                Some(vec!["App".to_owned()]),
            )
            .token;
        let plain = authority.issue(Duration::from_secs(60)).token;
        let revoked = authority.issue_for("acme", Duration::from_secs(60)).token;
        authority.revoke(&revoked);

        assert!(rule("/acme/app.git/info/refs", &acme));
        assert!(rule("/ACME/lib.git/git-upload-pack", &acme));
        assert!(
            rule("/acme/lib/info/refs", &acme),
            "without .git, as GitHub"
        );
        assert!(!rule("/other/app.git/info/refs", &acme));
        assert!(rule("/acme/app.git/git-receive-pack", &narrowed));
        assert!(!rule("/acme/lib.git/info/refs", &narrowed));
        assert!(!rule("/acme/app.git/info/refs", &plain), "no owner");
        assert!(!rule("/acme/app.git/info/refs", &revoked));
        assert!(!rule("/acme/app.git/info/refs", "ghs_unknown"));
        assert!(!rule("/", &acme));
        assert!(!rule("/acme", &acme));
    }
}
