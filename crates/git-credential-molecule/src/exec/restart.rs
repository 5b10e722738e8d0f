//! When `exec --restart` acts: pure functions of the clock reading, what the child holds and
//! injected randomness (DESIGN.md, "Tokens for tools that do not ask git"). Nothing here
//! sleeps, reads a clock or touches a process; the supervisor in [`super`] asks these functions
//! at every wake and does what they say.
//!
//! - A token with a known expiry is due [`LEAD`] before it enters the margin: at
//!   `expires_at − margin − lead` the supervisor looks for a new one ([`Next::At`], on the
//!   wall clock).
//! - A look that finds no fresh token (the source failed, another process is minting, the source
//!   answered a token inside the margin, or only the fallback is left) is repeated on the
//!   daemon's backoff series, starting at 15 s and doubling to 5 minutes ([`Next::After`], on a
//!   monotonic timer), with one last look just before the held token dies.
//! - The child is restarted only for a fresh token while its own is due ([`verdict`]): never
//!   for a degraded or fallback token, unless its own is about to die and the new one may
//!   outlive it.

use std::time::Duration;

use molecule_credential::config::Config;
use molecule_credential::schedule::{self, Dice, Policy};
use time::OffsetDateTime;

/// How long before a token enters the margin the child is restarted.
///
/// Two seconds. The margin (5 minutes by default) is what keeps a token from dying in use; the
/// lead only has to put the decision before the margin rather than on it, with room for the
/// restart itself (a look in a warm cache, SIGTERM, the child's exit, the new start: well under
/// two seconds for a well-behaved child), so that whenever a fresh token exists the new child
/// holds it before the old one enters the margin. A longer lead cannot make a new token exist
/// sooner: the platform re-mints only in a token's last 5 minutes, so with the default margin
/// the look at 302 s gets the same token back and the retry on the backoff series gets the new
/// one a few seconds into the margin (the github-app source mints on every call, and answers
/// at once).
pub const LEAD: Duration = Duration::from_secs(2);

/// Timing settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// `TOKEN_REFRESH_MARGIN_SEC`: a token this close to expiry is not served.
    pub margin: Duration,
    /// How long before the margin the child is restarted ([`LEAD`]).
    pub lead: Duration,
    /// The daemon's backoff series, for looks that found nothing.
    pub backoff: Policy,
}

impl Plan {
    /// The plan `config` describes, with the standard [`LEAD`].
    pub fn from_config(config: &Config) -> Self {
        Self {
            margin: config.margin,
            lead: LEAD,
            backoff: Policy::from_config(config),
        }
    }

    /// The margin the supervisor asks the broker with: a token with less than `margin + lead`
    /// left is due, so the broker refreshes it (single-flight) rather than serving it as fresh,
    /// and a child is never started with a token that would be due at once.
    pub fn due_margin(&self) -> Duration {
        self.margin.saturating_add(self.lead)
    }

    /// When a token that expires at `expires_at` is due for replacement.
    pub fn due_at(&self, expires_at: OffsetDateTime) -> OffsetDateTime {
        expires_at - self.due_margin()
    }

    /// Whether a token expiring at `expires_at` is not yet due at `now`.
    pub fn is_fresh(&self, expires_at: OffsetDateTime, now: OffsetDateTime) -> bool {
        now < self.due_at(expires_at)
    }
}

/// What a token is, as far as the supervisor knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// From the token source, expiring then (fresh or already inside the margin).
    Expires(OffsetDateTime),
    /// The fallback token (`GH_TOKEN`, `GITHUB_TOKEN` or the fallback file): expiry unknown.
    Unknown,
}

impl Held {
    /// Whether this token is fresh at `now` by `plan` (the fallback never is).
    pub fn is_fresh(self, plan: &Plan, now: OffsetDateTime) -> bool {
        match self {
            Held::Expires(at) => plan.is_fresh(at, now),
            Held::Unknown => false,
        }
    }
}

/// What the supervisor does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Sleep until the wall clock reads this (an alarm that also wakes when the clock is
    /// changed), then decide again.
    At(OffsetDateTime),
    /// Look for a new token now.
    Now,
    /// Look for a new token after this long (a retry; a monotonic timer).
    After(Duration),
}

fn until(at: OffsetDateTime, now: OffsetDateTime) -> Duration {
    Duration::try_from(at - now).unwrap_or(Duration::ZERO)
}

/// When to look for a new token for a child holding `held`. `misses` counts the looks since
/// the child was last (re)started that found no fresh token, the look that started it
/// included (so a child started with a degraded or fallback token begins at 1).
///
/// - Not yet due: sleep on the wall clock until due. This is also what a wake after the wall
///   clock moved comes back to: the decision is always taken from the clock reading, so a jump
///   forward past the due time acts at once and a jump back sleeps again.
/// - Due, nothing looked for yet: now.
/// - Due, looked in vain: the daemon's full-jitter backoff for the `misses`-th failure, but one
///   last look `lead` before the held token dies, so a dying child can still be handed whatever
///   outlives its token (see [`verdict`]).
/// - The fallback: its expiry is unknown, so it is never due by the clock; look for a real
///   token on the backoff series, since the fallback is the boot-time token and may die at any
///   moment.
pub fn next(
    plan: &Plan,
    held: Held,
    misses: u32,
    now: OffsetDateTime,
    dice: &mut dyn Dice,
) -> Next {
    match held {
        Held::Expires(expires_at) => {
            let due = plan.due_at(expires_at);
            if now < due {
                return Next::At(due);
            }
            if misses == 0 {
                return Next::Now;
            }
            let wait = schedule::backoff(&plan.backoff, misses, None, now, dice);
            let last = expires_at - plan.lead;
            if last > now {
                Next::After(wait.min(until(last, now)))
            } else {
                Next::After(wait)
            }
        }
        Held::Unknown => Next::After(schedule::backoff(
            &plan.backoff,
            misses.max(1),
            None,
            now,
            dice,
        )),
    }
}

/// What to do with a token a look found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Stop the child and start it again with the new token.
    Restart,
    /// Keep the child as it is.
    Keep,
}

/// Whether the child, holding `held`, is restarted for the token a look `found`. `same` says
/// the look found the very token the child holds.
///
/// Restart only when the child's token is due (a fallback always is, for a real token) and:
/// - the found token is fresh: it will not need replacing for a whole token lifetime; or
/// - the child's token is about to die (`lead` before its expiry, or past it) and the found
///   one may outlive it: a later degraded token, or the fallback, whose expiry is unknown but
///   which may still work where the child's token certainly will not.
///
/// Never otherwise: a restart costs the child its state, so it is not spent on a token that
/// would itself need replacing within the margin, nor ahead of the time the token requires.
pub fn verdict(plan: &Plan, held: Held, found: Held, same: bool, now: OffsetDateTime) -> Verdict {
    if same {
        return Verdict::Keep;
    }
    let (due, dying) = match held {
        Held::Expires(at) => (!plan.is_fresh(at, now), now >= at - plan.lead),
        Held::Unknown => (true, false),
    };
    if !due {
        return Verdict::Keep;
    }
    let outlives = match (held, found) {
        (_, found) if found.is_fresh(plan, now) => return Verdict::Restart,
        (Held::Expires(mine), Held::Expires(theirs)) => theirs > mine && theirs > now,
        (Held::Expires(_), Held::Unknown) => true,
        (Held::Unknown, _) => false,
    };
    if dying && outlives {
        Verdict::Restart
    } else {
        Verdict::Keep
    }
}
